//! The Instances table: one row per instance with its status, for queries
//! and the management API.

use crate::storage::{Entity, StorageError, TableOp};

use super::hub::Hub;
use super::model::{InstanceRow, RuntimeStatus, iso, parse_iso};

/// Write the whole row (create, or reset for a restart).
pub async fn put(hub: &Hub, row: &InstanceRow) -> Result<(), StorageError> {
    let entity = to_entity(hub, row).await?;
    hub.storage
        .tables
        .execute(&hub.instances_table(), TableOp::Upsert(entity))
        .await?;
    Ok(())
}

pub async fn get(hub: &Hub, instance_id: &str) -> Result<Option<InstanceRow>, StorageError> {
    match hub
        .storage
        .tables
        .get(&hub.instances_table(), instance_id, "")
        .await?
    {
        Some(e) => Ok(Some(from_entity(hub, &e).await?)),
        None => Ok(None),
    }
}

pub async fn delete(hub: &Hub, instance_id: &str) -> Result<bool, StorageError> {
    let op = TableOp::Delete {
        partition_key: instance_id.to_string(),
        row_key: String::new(),
        etag: None,
    };
    match hub.storage.tables.execute(&hub.instances_table(), op).await {
        Ok(_) => Ok(true),
        Err(StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Filters of the list and purge-by-filter APIs.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub created_from: Option<u64>,
    pub created_to: Option<u64>,
    pub statuses: Vec<RuntimeStatus>,
    pub prefix: Option<String>,
}

impl Filter {
    fn odata(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(from) = self.created_from {
            parts.push(format!("CreatedTime ge '{}'", iso(from)));
        }
        if let Some(to) = self.created_to {
            parts.push(format!("CreatedTime le '{}'", iso(to)));
        }
        if !self.statuses.is_empty() {
            let any: Vec<String> = self
                .statuses
                .iter()
                .map(|s| format!("RuntimeStatus eq '{}'", s.as_str()))
                .collect();
            parts.push(format!("({})", any.join(" or ")));
        }
        if let Some(prefix) = self.prefix.as_deref().filter(|p| !p.is_empty()) {
            // Prefix as a key range: [prefix, prefix + U+FFFF).
            let escaped = prefix.replace('\'', "''");
            parts.push(format!(
                "PartitionKey ge '{escaped}' and PartitionKey lt '{escaped}\u{ffff}'"
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" and "))
    }
}

/// One page of instances matching `filter`.
pub async fn query(
    hub: &Hub,
    filter: &Filter,
    top: Option<u32>,
    continuation: Option<&str>,
) -> Result<(Vec<InstanceRow>, Option<String>), StorageError> {
    let odata = filter.odata();
    let page = hub
        .storage
        .tables
        .query(&hub.instances_table(), odata.as_deref(), top, continuation)
        .await?;
    let mut rows = Vec::with_capacity(page.entities.len());
    for e in &page.entities {
        rows.push(from_entity(hub, e).await?);
    }
    Ok((rows, page.continuation))
}

async fn to_entity(hub: &Hub, row: &InstanceRow) -> Result<Entity, StorageError> {
    let id = row.instance_id.as_str();
    let mut e = Entity::new(id, "")
        .with("Name", row.name.as_str())
        .with("Version", "")
        .with("ExecutionId", row.execution_id.as_str())
        .with("RuntimeStatus", row.status.as_str())
        .with("CreatedTime", iso(row.created))
        .with("LastUpdatedTime", iso(row.last_updated))
        .with("CompletedTime", row.completed.map(iso).unwrap_or_default());
    hub.set_payload(&mut e, "Input", id, row.input.as_deref())
        .await?;
    hub.set_payload(&mut e, "Output", id, row.output.as_deref())
        .await?;
    hub.set_payload(&mut e, "CustomStatus", id, row.custom_status.as_deref())
        .await?;
    Ok(e)
}

async fn from_entity(hub: &Hub, e: &Entity) -> Result<InstanceRow, StorageError> {
    let time = |name: &str| e.str(name).and_then(parse_iso);
    Ok(InstanceRow {
        instance_id: e.partition_key.clone(),
        name: e.str("Name").unwrap_or_default().to_string(),
        execution_id: e.str("ExecutionId").unwrap_or_default().to_string(),
        status: e
            .str("RuntimeStatus")
            .and_then(RuntimeStatus::parse)
            .unwrap_or(RuntimeStatus::Pending),
        input: hub.payload(e, "Input").await?,
        output: hub.payload(e, "Output").await?,
        custom_status: hub.payload(e, "CustomStatus").await?,
        created: time("CreatedTime").unwrap_or(0),
        last_updated: time("LastUpdatedTime").unwrap_or(0),
        completed: time("CompletedTime"),
    })
}
