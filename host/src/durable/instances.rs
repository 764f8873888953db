//! The Instances table: one row per instance with its status, for queries
//! and the management API.

use crate::storage::{Entity, StorageError, TableOp};

use super::hub::Hub;
use super::model::{InstanceRow, RuntimeStatus, iso, parse_iso};

/// Write the whole row, unconditionally (repairs, tools).
pub async fn put(hub: &Hub, row: &InstanceRow) -> Result<(), StorageError> {
    let entity = to_entity(hub, row, None).await?;
    hub.storage
        .tables
        .execute(&hub.instances_table(), TableOp::Upsert(entity))
        .await?;
    Ok(())
}

/// How the owner of an instance writes its row.
#[derive(Debug, Clone)]
pub enum Guard {
    /// The first write of this host: unconditional.
    None,
    /// Replace only the version this host wrote last (its ETag).
    Etag(String),
}

/// Write the owner's view of the row, versioned by `sequence` (the history's
/// next sequence number when it was taken). A row that someone else changed
/// since our last write is replaced only if it is older than ours: a former
/// owner that lost its partition never overwrites a newer status. The new
/// ETag, or None when a newer row was kept.
pub async fn write(
    hub: &Hub,
    row: &InstanceRow,
    sequence: u64,
    guard: Guard,
) -> Result<Option<String>, StorageError> {
    let table = hub.instances_table();
    let entity = to_entity(hub, row, Some(sequence)).await?;
    let op = match guard {
        Guard::None => TableOp::Upsert(entity.clone()),
        Guard::Etag(etag) => TableOp::Replace {
            entity: entity.clone(),
            etag,
        },
    };
    match hub.storage.tables.execute(&table, op).await {
        Ok(etag) => Ok(etag),
        Err(StorageError::Conflict(_)) | Err(StorageError::NotFound(_)) => {
            // Someone else wrote (or purged) it: look before replacing.
            match hub.storage.tables.get(&table, &row.instance_id, "").await? {
                Some(current)
                    if current.str("ExecutionId") == Some(row.execution_id.as_str())
                        && row_sequence(&current) > sequence =>
                {
                    Ok(None)
                }
                Some(current) => {
                    let etag = current.etag.clone().unwrap_or_default();
                    hub.storage
                        .tables
                        .execute(&table, TableOp::Replace { entity, etag })
                        .await
                }
                None => {
                    hub.storage
                        .tables
                        .execute(&table, TableOp::Insert(entity))
                        .await
                }
            }
        }
        Err(e) => Err(e),
    }
}

/// The client's Pending row of a start: only if no row exists (`etag` None)
/// or the row is still the finished one it read (`etag`). If the new
/// execution already wrote its row, that row stays.
pub async fn put_pending(
    hub: &Hub,
    row: &InstanceRow,
    etag: Option<String>,
) -> Result<(), StorageError> {
    let entity = to_entity(hub, row, Some(0)).await?;
    let op = match etag {
        None => TableOp::Insert(entity),
        Some(etag) => TableOp::Replace { entity, etag },
    };
    match hub.storage.tables.execute(&hub.instances_table(), op).await {
        Ok(_) | Err(StorageError::Conflict(_)) | Err(StorageError::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

fn row_sequence(e: &Entity) -> u64 {
    e.str("Sequence").and_then(|s| s.parse().ok()).unwrap_or(0)
}

/// The row and its ETag.
pub async fn get_versioned(
    hub: &Hub,
    instance_id: &str,
) -> Result<Option<(InstanceRow, String)>, StorageError> {
    match hub
        .storage
        .tables
        .get(&hub.instances_table(), instance_id, "")
        .await?
    {
        Some(e) => {
            let etag = e.etag.clone().unwrap_or_default();
            Ok(Some((from_entity(hub, &e).await?, etag)))
        }
        None => Ok(None),
    }
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
    /// Last updated within (entities: their last operation).
    pub updated_from: Option<u64>,
    pub updated_to: Option<u64>,
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
        if let Some(from) = self.updated_from {
            parts.push(format!("LastUpdatedTime ge '{}'", iso(from)));
        }
        if let Some(to) = self.updated_to {
            parts.push(format!("LastUpdatedTime le '{}'", iso(to)));
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

/// One page (up to 1,000) of the ids of instances matching `filter`,
/// without fetching their payloads.
pub async fn query_ids(
    hub: &Hub,
    filter: &Filter,
    continuation: Option<&str>,
) -> Result<(Vec<String>, Option<String>), StorageError> {
    let odata = filter.odata();
    let page = hub
        .storage
        .tables
        .query(
            &hub.instances_table(),
            odata.as_deref(),
            Some(1000),
            continuation,
        )
        .await?;
    Ok((
        page.entities.into_iter().map(|e| e.partition_key).collect(),
        page.continuation,
    ))
}

async fn to_entity(
    hub: &Hub,
    row: &InstanceRow,
    sequence: Option<u64>,
) -> Result<Entity, StorageError> {
    let id = row.instance_id.as_str();
    let mut e = Entity::new(id, "")
        .with("Name", row.name.as_str())
        .with("Version", "")
        .with("ExecutionId", row.execution_id.as_str())
        .with("RuntimeStatus", row.status.as_str())
        .with("CreatedTime", iso(row.created))
        .with("LastUpdatedTime", iso(row.last_updated))
        .with("CompletedTime", row.completed.map(iso).unwrap_or_default());
    if let Some(sequence) = sequence {
        // A string: table integers are 32-bit unless annotated.
        e = e.with("Sequence", sequence.to_string());
    }
    hub.set_payload(&mut e, "Input", id, row.input.as_deref())
        .await?;
    hub.set_payload(&mut e, "Output", id, row.output.as_deref())
        .await?;
    hub.set_payload(&mut e, "CustomStatus", id, row.custom_status.as_deref())
        .await?;
    Ok(e)
}

pub(super) async fn from_entity(hub: &Hub, e: &Entity) -> Result<InstanceRow, StorageError> {
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
