//! The client side of entities: signals, state reads, listing and deletion,
//! for functions (the `durable-client` import) and the management API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::config::Trigger;
use crate::storage::StorageError;

use super::Engine;
use super::client::ClientError;
use super::entity::{EntityOp, Envelope, LockOp, instance_id};
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

/// Ids of the signals this host sends for clients: `{stream}:{n}`, `n`
/// counting per entity from 1, so that an entity remembers one run of
/// positions per host, however many signals it gets (see `super::seen`).
pub struct SignalIds {
    inner: Mutex<(String, HashMap<String, u64>)>,
}

/// Entities counted for at most; past that a new stream starts.
const COUNTED: usize = 100_000;

impl Default for SignalIds {
    fn default() -> SignalIds {
        SignalIds {
            inner: Mutex::new((new_stream(), HashMap::new())),
        }
    }
}

fn new_stream() -> String {
    format!("c{}", uuid::Uuid::new_v4().simple())
}

impl SignalIds {
    /// The id of the next signal to `entity` (its instance id).
    pub fn next(&self, entity: &str) -> String {
        let mut inner = self.inner.lock().expect("signal ids lock");
        if inner.1.len() >= COUNTED && !inner.1.contains_key(entity) {
            *inner = (new_stream(), HashMap::new());
        }
        let n = {
            let n = inner.1.entry(entity.to_string()).or_insert(0);
            *n += 1;
            *n
        };
        format!("{}:{n}", inner.0)
    }
}

impl Engine {
    /// Send `operation` to the entity `name`/`key`, one-way. Returns once the
    /// signal is durable: in the partition's signal log when this host owns
    /// the entity's partition (or, for a large input or while the log is not
    /// ready, in the entity's next write), else stored in the control queue.
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
                scheduled,
                ..EntityOp::new(operation, input)
            })),
            parent: None,
            id: Some(self.signal_ids.next(&id)),
        };
        if let Some(at) = scheduled {
            let delay = Duration::from_millis(at - now).min(Duration::from_secs(6 * 24 * 3600));
            self.hub.send_control(&message, delay).await?;
            return Ok(());
        }
        let partition = self.hub.partition_of(&id);
        if let Some(part) = self.owned(partition).filter(|p| p.is_active()) {
            // Just after a takeover, what the former owner logged goes first.
            let _ = tokio::time::timeout(
                Duration::from_secs(5),
                part.log.wait_opened(|| part.is_active()),
            )
            .await;
            if super::signal_log::append(self, &part, message.clone()).await {
                return Ok(());
            }
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
        // Signals this host has stored for the entity are applied first, so
        // that a client reads what it has just sent (waiting a second at most).
        let id = instance_id(name, key);
        if let Some(part) = self.owned(self.hub.partition_of(&id)) {
            part.hurry(&id);
            part.wait_applied(&id, Duration::from_secs(1)).await;
        }
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

    /// Durable Functions' clean-entity-storage: remove entities that have no
    /// state, hold no lock and wait for nothing, and release locks whose
    /// orchestration no longer runs (purged, or ended without releasing).
    /// Entities with an operation within `entity_idle` are left alone: a
    /// message may still be on its way to them, and an orchestration that
    /// has just taken a lock may not have written its status yet. Returns
    /// (entities removed, locks released).
    pub async fn clean_entity_storage(
        self: &Arc<Self>,
        remove_empty: bool,
        release_orphaned: bool,
    ) -> Result<(u32, u32), ClientError> {
        let idle_since = now_ms()
            .saturating_sub(u64::try_from(self.config.entity_idle.as_millis()).unwrap_or(u64::MAX));
        let filter = Filter {
            prefix: Some("@".into()),
            updated_to: Some(idle_since),
            ..Filter::default()
        };
        let (mut removed, mut released) = (0, 0);
        let mut continuation = None;
        loop {
            let (rows, next) =
                instances::query(&self.hub, &filter, Some(1000), continuation.as_deref()).await?;
            for row in rows {
                if row.last_updated > idle_since {
                    continue;
                }
                let Ok(envelope) = Envelope::of(&row) else {
                    continue;
                };
                let locked = envelope.locked_by.as_ref().zip(envelope.lock_id.as_ref());
                if let Some((holder, lock_id)) = locked
                    && release_orphaned
                    && self.lock_is_orphaned(holder, lock_id).await?
                {
                    tracing::info!(
                        "entity '{}': releasing the lock of '{holder}', which no longer runs",
                        row.instance_id
                    );
                    let release = ControlMessage {
                        instance_id: row.instance_id.clone(),
                        execution_id: None,
                        event: ControlEvent::Entity(Box::new(EntityOp {
                            from: Some(holder.clone()),
                            lock: Some(LockOp::Release {
                                lock_id: lock_id.clone(),
                            }),
                            ..EntityOp::new("", None)
                        })),
                        parent: None,
                        id: Some(uuid::Uuid::new_v4().simple().to_string()),
                    };
                    super::outbox::send_control(self, vec![release]).await?;
                    released += 1;
                } else if locked.is_none()
                    && remove_empty
                    && !envelope.exists
                    && envelope.queue.is_empty()
                    // Only the version read: an operation since keeps it.
                    && super::entity::delete_unchanged(self, &row.instance_id, row.last_updated)
                        .await?
                {
                    self.forget_history(&row.instance_id);
                    removed += 1;
                }
            }
            match next {
                Some(n) => continuation = Some(n),
                None => return Ok((removed, released)),
            }
        }
    }

    /// Whether the orchestration `holder` that took `lock_id` no longer
    /// runs: purged, or finished, or a later execution runs.
    async fn lock_is_orphaned(&self, holder: &str, lock_id: &str) -> Result<bool, ClientError> {
        let execution = lock_id
            .strip_prefix(holder)
            .and_then(|rest| rest.strip_prefix(':'))
            .and_then(|rest| rest.rsplit_once(":lock:"))
            .map(|(execution, _)| execution);
        Ok(match instances::get(&self.hub, holder).await? {
            None => true,
            Some(row) => {
                row.status.is_terminal()
                    || row.status == super::model::RuntimeStatus::ContinuedAsNew
                    || execution.is_some_and(|e| e != row.execution_id)
            }
        })
    }

    /// Delete the entity's record; whether it existed.
    pub async fn delete_entity(&self, name: &str, key: &str) -> Result<bool, ClientError> {
        let id = instance_id(name, key);
        if let Ok((_, envelope)) = self.entity_record(name, key).await
            && (envelope.locked_by.is_some() || !envelope.queue.is_empty())
        {
            return Err(ClientError::Conflict(format!(
                "entity '{id}' is locked by '{}' with {} operation(s) waiting: \
                 it can be deleted once the lock is released",
                envelope.locked_by.unwrap_or_default(),
                envelope.queue.len()
            )));
        }
        let existed = instances::delete(&self.hub, &id).await?;
        self.forget_history(&id);
        Ok(existed)
    }
}

/// DF's CleanEntityStorageResult.
pub fn cleaned_json(removed: u32, released: u32) -> Value {
    json!({
        "numberOfEmptyEntitiesRemoved": removed,
        "numberOfOrphanedLocksRemoved": released,
    })
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
