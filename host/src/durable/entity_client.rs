//! The client side of entities: signals, state reads, listing and deletion,
//! for functions (the `durable-client` import) and the management API.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Trigger;
use crate::storage::StorageError;

use super::Engine;
use super::client::ClientError;
use super::entity::{EntityOp, Envelope, instance_id};
use super::instances::{self, Filter};
use super::model::{ControlEvent, ControlMessage, InstanceRow, iso, now_ms};
use super::partition::Work;

/// One entity as the listing shows it.
pub struct EntitySummary {
    pub name: String,
    pub key: String,
    pub last_operation: u64,
    pub state: Option<String>,
}

impl Engine {
    /// Send `operation` to the entity `name`/`key`, one-way. Returns once the
    /// signal is durable: checkpointed by this host when it owns the
    /// entity's partition (no queue message), else stored in the queue.
    pub async fn signal_entity(
        self: &Arc<Self>,
        name: &str,
        key: &str,
        operation: &str,
        input: Option<String>,
        scheduled: Option<u64>,
    ) -> Result<(), ClientError> {
        if self
            .catalog
            .table()
            .find(name, |t| matches!(t, Trigger::Entity))
            .is_none()
        {
            return Err(ClientError::BadRequest(format!(
                "no entity function named '{name}' is loaded"
            )));
        }
        if name.is_empty() || name.contains('@') || key.is_empty() {
            return Err(ClientError::BadRequest(format!(
                "'{name}' / '{key}' is not an entity id: a name without @ and a key"
            )));
        }
        if operation.is_empty() {
            return Err(ClientError::BadRequest(
                "an operation name is required (?op=...)".into(),
            ));
        }
        if let Some(input) = &input
            && serde_json::from_str::<Value>(input).is_err()
        {
            return Err(ClientError::BadRequest(
                "the operation's input is not valid JSON".into(),
            ));
        }
        let id = instance_id(name, key);
        let now = now_ms();
        let scheduled = scheduled.filter(|at| *at > now);
        let message = ControlMessage {
            instance_id: id.clone(),
            execution_id: None,
            event: ControlEvent::Entity(Box::new(EntityOp {
                operation: operation.to_string(),
                input,
                scheduled,
                caller: None,
            })),
            parent: None,
            id: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        if let Some(at) = scheduled {
            let delay = Duration::from_millis(at - now).min(Duration::from_secs(6 * 24 * 3600));
            self.hub.send_control(&message, delay).await?;
            return Ok(());
        }
        let partition = self.hub.partition_of(&id);
        if let Some(part) = self.owned(partition).filter(|p| p.is_active()) {
            let (done, applied) = tokio::sync::oneshot::channel();
            part.push(
                self,
                &id,
                vec![Work::Message {
                    message,
                    held: None,
                    ack: Some(Arc::new(std::sync::Mutex::new(Some(done)))),
                    new_id: false,
                }],
            );
            return match tokio::time::timeout(Duration::from_secs(30), applied).await {
                Ok(Ok(())) => Ok(()),
                _ => Err(ClientError::Storage(StorageError::Unavailable(format!(
                    "the signal to '{id}' was not confirmed: it may or may not have been applied"
                )))),
            };
        }
        super::outbox::send_control(self, vec![message]).await?;
        Ok(())
    }

    /// The entity's row and envelope; NotFound if it has no record.
    async fn entity_record(
        &self,
        name: &str,
        key: &str,
    ) -> Result<(InstanceRow, Envelope), ClientError> {
        let id = instance_id(name, key);
        let row = instances::get(&self.hub, &id)
            .await?
            .ok_or_else(|| ClientError::NotFound(id.clone()))?;
        let envelope =
            Envelope::of(&row).map_err(|e| ClientError::Storage(StorageError::Other(e)))?;
        Ok((row, envelope))
    }

    /// The entity's state (JSON text); None if it has none.
    pub async fn read_entity_state(
        &self,
        name: &str,
        key: &str,
    ) -> Result<Option<String>, ClientError> {
        match self.entity_record(name, key).await {
            Ok((_, envelope)) => Ok(envelope.state_json()),
            Err(ClientError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Entities named `name` (all entities when None), a page at a time.
    pub async fn list_entities(
        &self,
        name: Option<&str>,
        from: Option<u64>,
        to: Option<u64>,
        top: Option<u32>,
        continuation: Option<&str>,
        fetch_state: bool,
    ) -> Result<(Vec<EntitySummary>, Option<String>), ClientError> {
        let prefix = match name {
            Some(n) => format!("@{}@", n.to_lowercase()),
            None => "@".to_string(),
        };
        let filter = Filter {
            prefix: Some(prefix),
            updated_from: from,
            updated_to: to,
            ..Filter::default()
        };
        let (rows, next) = instances::query(&self.hub, &filter, top, continuation).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let Some((name, key)) = super::entity::parse(&row.instance_id) else {
                continue;
            };
            let envelope = Envelope::of(&row).unwrap_or_default();
            if !envelope.exists {
                continue;
            }
            out.push(EntitySummary {
                name: name.to_string(),
                key: key.to_string(),
                last_operation: row.last_updated,
                state: if fetch_state {
                    envelope.state_json()
                } else {
                    None
                },
            });
        }
        Ok((out, next))
    }

    /// Delete the entity's record; whether it existed.
    pub async fn delete_entity(&self, name: &str, key: &str) -> Result<bool, ClientError> {
        let id = instance_id(name, key);
        let existed = instances::delete(&self.hub, &id).await?;
        self.forget_history(&id);
        Ok(existed)
    }
}

/// DF's listing entry: `{"entityId": {"name", "key"}, "lastOperationTime", "state"}`.
pub fn summary_json(e: &EntitySummary) -> Value {
    let mut v = json!({
        "entityId": {"name": e.name, "key": e.key},
        "lastOperationTime": iso(e.last_operation),
    });
    if let Some(state) = &e.state {
        v["state"] = serde_json::from_str(state).unwrap_or(Value::Null);
    }
    v
}
