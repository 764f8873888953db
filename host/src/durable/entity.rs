//! Durable entities: instances `@name@key` (DTFx's naming) whose operations
//! arrive as control messages on the partition of that id, and run one at a
//! time, in arrival order, in batches: an episode hands every operation
//! waiting for the entity to its function in one call and stores the new
//! state with one write.
//!
//! The record of an entity is its Instances row: `Input` holds an envelope
//! (as Durable Functions keeps one there) with the state and the ids of the
//! operations applied lately, written with the row's ETag. Signals a dead
//! host had applied but not yet deleted from the queue come again: their ids
//! are in the envelope and they are skipped. Signals and starts an operation
//! sends go out before the state is written, with ids derived from the
//! operation's, so sending them again after a crash delivers them once.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::Trigger;
use crate::runtime::durable::{
    EntityBatch, EntityBatchResult, EntityId, EntityOperation, ExecutionStarted, HistoryEvent,
    OperationResult,
};
use crate::storage::{Entity, StorageError, TableOp};

use super::Engine;
use super::episode::{Outcome, derived_id, failure};
use super::history::History;
use super::model::{ControlEvent, ControlMessage, InstanceRow, RuntimeStatus, now_ms};
use super::partition::{Cached, Partition, Work};

/// Operations handed to the function in one call (and stored with one write).
const MAX_BATCH: usize = 1000;
/// Ids of applied operations kept for deduplication, newest last. A
/// redelivered message comes within minutes (visibility 30 s, a lease
/// 30 s); 2,000 ids cover that at well over 100 operations a second.
const RECENT: usize = 2000;
/// The longest a delayed queue message may wait (Azure's limit is 7 days).
const MAX_DELAY: Duration = Duration::from_secs(6 * 24 * 3600);

/// Whether `instance_id` names an entity.
pub fn is_entity(instance_id: &str) -> bool {
    instance_id.starts_with('@')
}

/// `@counter@my-counter`: the name in lower case, as Durable Functions keeps it.
pub fn instance_id(name: &str, key: &str) -> String {
    format!("@{}@{key}", name.to_lowercase())
}

/// (name, key) of an entity's instance id.
pub fn parse(instance_id: &str) -> Option<(&str, &str)> {
    instance_id.strip_prefix('@')?.split_once('@')
}

/// An operation on an entity, as a control message carries it. The
/// message's `id` identifies it for deduplication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityOp {
    pub operation: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Not before this time (ms since the epoch): a scheduled signal.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<u64>,
    /// A call: the orchestration waiting for the result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller: Option<Caller>,
}

/// The orchestration that called an entity, and the call's sequence id there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Caller {
    pub instance_id: String,
    pub execution_id: String,
    pub event_id: u32,
}

/// What an entity's Instances row keeps in `Input`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Envelope {
    pub exists: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// Hashes of the ids of the operations applied lately, oldest first. Kept
    /// in the row's `Recent` column (base64 of 8 bytes each, ~22 KB for
    /// 2,000), beside the state, so that `Input` holds what readers want.
    #[serde(skip)]
    pub recent: VecDeque<u64>,
}

/// `Recent` as stored: the hashes' big-endian bytes, base64.
fn encode_recent(recent: &VecDeque<u64>) -> String {
    use base64::Engine as _;
    let bytes: Vec<u8> = recent.iter().flat_map(|h| h.to_be_bytes()).collect();
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

fn decode_recent(text: &str) -> VecDeque<u64> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(text)
        .unwrap_or_default();
    bytes
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("chunks of 8")))
        .collect()
}

/// An entity's row, its applied ids and its ETag, as stored.
async fn load(
    engine: &Arc<Engine>,
    id: &str,
) -> Result<Option<(InstanceRow, VecDeque<u64>, String)>, StorageError> {
    let hub = &engine.hub;
    let Some(e) = hub
        .storage
        .tables
        .get(&hub.instances_table(), id, "")
        .await?
    else {
        return Ok(None);
    };
    let recent = decode_recent(e.str("Recent").unwrap_or_default());
    let etag = e.etag.clone().unwrap_or_default();
    let row = super::instances::from_entity(hub, &e).await?;
    Ok(Some((row, recent, etag)))
}

impl Envelope {
    /// The envelope of a row; Err if it holds something else.
    pub fn of(row: &InstanceRow) -> Result<Envelope, String> {
        match row.input.as_deref() {
            None => Ok(Envelope::default()),
            Some(text) => serde_json::from_str(text)
                .map_err(|e| format!("entity '{}' has an unreadable record: {e}", row.instance_id)),
        }
    }

    /// The state as JSON text, if the entity has one.
    pub fn state_json(&self) -> Option<String> {
        self.state
            .as_ref()
            .filter(|_| self.exists)
            .map(Value::to_string)
    }
}

fn id_hash(id: &str) -> u64 {
    // FNV-1a, 64 bits: stable across hosts and versions (unlike std's hasher).
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One entity episode, done again from a fresh read if another writer
/// stored the entity first.
pub async fn run(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    works: &[Work],
    cache: &mut Option<Cached>,
    tries: u32,
) -> Result<Outcome, StorageError> {
    match attempt(engine, part, id, works, cache, tries).await {
        Err(StorageError::Conflict(_)) => {
            tracing::debug!("entity '{id}': changed under us; reading it again");
            *cache = None;
            attempt(engine, part, id, works, cache, tries).await
        }
        other => other,
    }
}

async fn attempt(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    works: &[Work],
    cache: &mut Option<Cached>,
    tries: u32,
) -> Result<Outcome, StorageError> {
    let settle = || {
        works
            .iter()
            .filter(|w| matches!(w, Work::Message { .. }))
            .cloned()
            .collect::<Vec<_>>()
    };
    let mut ops: Vec<(&ControlMessage, &EntityOp)> = Vec::new();
    let mut early: Vec<(ControlMessage, Duration)> = Vec::new();
    let now = now_ms();
    for w in works {
        let Work::Message { message, .. } = w else {
            continue;
        };
        match &message.event {
            ControlEvent::Entity(op) if op.scheduled.is_some_and(|at| at > now + 1000) => {
                // A scheduled signal further out than a queue message may wait.
                let left = Duration::from_millis(op.scheduled.unwrap_or(now) - now);
                early.push((message.clone(), left.min(MAX_DELAY)));
            }
            ControlEvent::Entity(op) => ops.push((message, op)),
            other => tracing::debug!(
                "entity '{id}': ignoring a message that is not an operation: {other:?}"
            ),
        }
    }
    if !early.is_empty() {
        let sends = early
            .iter()
            .map(|(m, delay)| engine.hub.send_control(m, *delay));
        futures::future::try_join_all(sends).await?;
    }
    if ops.is_empty() {
        return Ok(Outcome::Done(settle()));
    }
    let Some((name, key)) = parse(id) else {
        tracing::warn!("'{id}' is not an entity id (@name@key): dropping its operations");
        return Ok(Outcome::Done(settle()));
    };
    let Some(function) = engine
        .catalog
        .table()
        .find(name, |t| matches!(t, Trigger::Entity))
    else {
        if tries < 5 {
            tracing::warn!(
                "entity '{id}': no entity function '{name}' is loaded; retrying in 10 s"
            );
            return Ok(Outcome::Retry(Duration::from_secs(10)));
        }
        tracing::error!(
            "entity '{id}': no entity function '{name}' is loaded: failing {} operation(s)",
            ops.len()
        );
        // Callers get the error instead of waiting forever.
        let missing = Err(failure(
            "EntityNotFound",
            &format!("no entity function named '{name}' is loaded"),
        ));
        let replies: Vec<ControlMessage> = ops
            .iter()
            .filter_map(|(_, op)| op.caller.as_ref().map(|c| reply(c, &missing)))
            .collect();
        super::outbox::send_control(engine, replies).await?;
        return Ok(Outcome::Done(settle()));
    };

    if cache.is_none() {
        let mut fresh = Cached::new(History::default());
        if let Some((row, recent, etag)) = load(engine, id).await? {
            // The applied ids ride along in memory in the cached row's output.
            let mut row = row;
            row.output = Some(encode_recent(&recent));
            fresh.row = Some((row, etag));
        }
        *cache = Some(fresh);
    }
    let cached = cache.as_mut().expect("set above");
    let mut envelope = match &cached.row {
        Some((row, _)) => {
            let mut envelope = Envelope::of(row).map_err(StorageError::Other)?;
            envelope.recent = decode_recent(row.output.as_deref().unwrap_or_default());
            envelope
        }
        None => Envelope::default(),
    };
    let created = cached.row.as_ref().map_or(now, |(r, _)| r.created);

    // Operations already applied (a message delivered again) are skipped.
    let recent: HashSet<u64> = envelope.recent.iter().copied().collect();
    let mut taken: HashSet<u64> = HashSet::new();
    let mut fresh_ops: Vec<(&ControlMessage, &EntityOp)> = Vec::new();
    for (m, op) in ops {
        if let Some(mid) = &m.id {
            let h = id_hash(mid);
            if recent.contains(&h) || !taken.insert(h) {
                continue;
            }
        }
        fresh_ops.push((m, op));
    }
    if fresh_ops.is_empty() {
        return Ok(Outcome::Done(settle()));
    }

    let entity = EntityId {
        name: name.to_string(),
        key: key.to_string(),
    };
    let mut state = envelope.state_json();
    let mut sends: Vec<ControlMessage> = Vec::new();
    let mut delayed: Vec<(ControlMessage, Duration)> = Vec::new();
    for chunk in fresh_ops.chunks(MAX_BATCH) {
        let operations: Vec<EntityOperation> = chunk
            .iter()
            .map(|(_, op)| EntityOperation {
                name: op.operation.clone(),
                input: op.input.clone(),
            })
            .collect();
        let result = invoke(engine, &function, &entity, state.clone(), operations).await;
        state = result.state.clone();
        for ((m, op), outcome) in chunk.iter().zip(result.results) {
            if let Err(f) = &outcome.outcome {
                tracing::warn!(
                    "entity '{id}': operation '{}' failed: {}",
                    op.operation,
                    f.message
                );
            }
            let origin = m.id.clone().unwrap_or_default();
            if let Some(caller) = &op.caller {
                sends.push(reply(caller, &outcome.outcome));
            }
            effects(id, &origin, outcome, now, &mut sends, &mut delayed);
        }
    }

    // 1. What the operations send, before the state that records them.
    let (control, later) = futures::join!(
        super::outbox::send_control(engine, sends),
        futures::future::try_join_all(
            delayed
                .iter()
                .map(|(m, delay)| engine.hub.send_control(m, *delay))
        )
    );
    control?;
    later?;

    // 2. The new state and the applied ids, guarded by the row's ETag.
    envelope.exists = state.is_some();
    envelope.state = match &state {
        Some(text) => Some(serde_json::from_str(text).map_err(|e| {
            StorageError::Other(format!(
                "entity '{id}': its function returned a state that is not JSON: {e}"
            ))
        })?),
        None => None,
    };
    envelope.recent.extend(taken);
    while envelope.recent.len() > RECENT {
        envelope.recent.pop_front();
    }
    let row = InstanceRow {
        instance_id: id.to_string(),
        name: name.to_string(),
        execution_id: String::new(),
        status: RuntimeStatus::Running,
        input: Some(serde_json::to_string(&envelope).expect("envelopes serialize")),
        output: Some(encode_recent(&envelope.recent)),
        custom_status: None,
        created,
        last_updated: now,
        completed: None,
    };
    let etag = cached.row.as_ref().map(|(_, e)| e.clone());
    if etag.is_none() && part.valid_until() < Instant::now() {
        return Err(StorageError::Conflict(format!(
            "partition {} may have moved: not writing entity '{id}'",
            part.number
        )));
    }
    let etag = write(engine, &row, etag).await?;
    cached.row = Some((row, etag));
    tracing::debug!(
        "entity '{id}': {} operation(s) applied in one write",
        fresh_ops.len()
    );
    Ok(Outcome::Done(settle()))
}

/// Call the entity function; if the batch traps, each operation alone, so
/// that only the one that traps fails.
async fn invoke(
    engine: &Arc<Engine>,
    function: &crate::catalog::FunctionEntry,
    entity: &EntityId,
    state: Option<String>,
    operations: Vec<EntityOperation>,
) -> EntityBatchResult {
    let call = |state: Option<String>, operations: Vec<EntityOperation>| {
        let invocation = crate::triggers::invocation(&function.name);
        let batch = EntityBatch {
            id: entity.clone(),
            state,
            operations,
        };
        async move {
            crate::triggers::log_executing(&invocation, "(null)");
            let started = Instant::now();
            let r = engine
                .runtime
                .invoke_entity(&function.component, &invocation, batch)
                .await;
            let error = r.as_ref().err().map(|e| e as &dyn std::fmt::Display);
            crate::triggers::log_executed(&invocation, error, started.elapsed());
            r
        }
    };
    let count = operations.len();
    match call(state.clone(), operations.clone()).await {
        Ok(r) if r.results.len() == count => return r,
        Ok(r) => tracing::error!(
            "entity '@{}@{}': the function answered {} results for {count} operations",
            entity.name,
            entity.key,
            r.results.len()
        ),
        Err(_) if count == 1 => {}
        Err(_) => tracing::warn!(
            "entity '@{}@{}': a batch of {count} operations failed; running them one at a time",
            entity.name,
            entity.key
        ),
    }
    let mut state = state;
    let mut results = Vec::with_capacity(count);
    for op in operations {
        let name = op.name.clone();
        match call(state.clone(), vec![op]).await {
            Ok(mut r) if r.results.len() == 1 => {
                state = r.state;
                results.push(r.results.remove(0));
            }
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(_) => "the function answered no result".into(),
                };
                results.push(OperationResult {
                    outcome: Err(failure(
                        "EntityOperationFailed",
                        &format!("operation '{name}' failed: {why}"),
                    )),
                    signals: Vec::new(),
                    starts: Vec::new(),
                });
            }
        }
    }
    EntityBatchResult { state, results }
}

/// The result of a call, for the orchestration waiting for it (deduplicated
/// there by the call's sequence id).
fn reply(
    caller: &Caller,
    outcome: &Result<Option<String>, crate::runtime::durable::Failure>,
) -> ControlMessage {
    use crate::runtime::durable::{TaskCompleted, TaskFailed};
    let event = match outcome {
        Ok(output) => HistoryEvent::EntityCallCompleted(TaskCompleted {
            task_scheduled_id: caller.event_id,
            output: output.clone(),
        }),
        Err(failure) => HistoryEvent::EntityCallFailed(TaskFailed {
            task_scheduled_id: caller.event_id,
            failure: failure.clone(),
        }),
    };
    ControlMessage {
        instance_id: caller.instance_id.clone(),
        execution_id: Some(caller.execution_id.clone()),
        event: ControlEvent::Event(event),
        parent: None,
        id: None,
    }
}

/// The messages an operation's signals and starts become, with ids derived
/// from the operation's own.
fn effects(
    from: &str,
    origin: &str,
    outcome: OperationResult,
    now: u64,
    sends: &mut Vec<ControlMessage>,
    delayed: &mut Vec<(ControlMessage, Duration)>,
) {
    for (i, s) in outcome.signals.into_iter().enumerate() {
        let message = ControlMessage {
            instance_id: instance_id(&s.target.name, &s.target.key),
            execution_id: None,
            event: ControlEvent::Entity(Box::new(EntityOp {
                operation: s.operation,
                input: s.input,
                scheduled: s.scheduled_time,
                caller: None,
            })),
            parent: None,
            id: Some(derived_id(&[from, origin, "signal", &i.to_string()])),
        };
        match s.scheduled_time {
            Some(at) if at > now => {
                delayed.push((message, Duration::from_millis(at - now).min(MAX_DELAY)));
            }
            _ => sends.push(message),
        }
    }
    for (i, s) in outcome.starts.into_iter().enumerate() {
        let instance = s
            .instance_id
            .unwrap_or_else(|| derived_id(&[from, origin, "start", &i.to_string()]));
        sends.push(ControlMessage {
            execution_id: Some(derived_id(&[&instance, from, origin, &i.to_string()])),
            instance_id: instance,
            event: ControlEvent::Event(HistoryEvent::ExecutionStarted(ExecutionStarted {
                name: s.name,
                input: s.input,
                timestamp: now,
            })),
            parent: None,
            id: None,
        });
    }
}

/// Write an entity's row: replace the version read (`etag`), or insert a new
/// one. Conflict if someone else wrote it since.
async fn write(
    engine: &Arc<Engine>,
    row: &InstanceRow,
    etag: Option<String>,
) -> Result<String, StorageError> {
    let hub = &engine.hub;
    let id = row.instance_id.as_str();
    let mut entity = Entity::new(id, "")
        .with("Name", row.name.as_str())
        .with("Version", "")
        .with("ExecutionId", "")
        .with("RuntimeStatus", row.status.as_str())
        .with("CreatedTime", super::model::iso(row.created))
        .with("LastUpdatedTime", super::model::iso(row.last_updated))
        .with("CompletedTime", "")
        .with("Recent", row.output.as_deref().unwrap_or_default());
    hub.set_payload(&mut entity, "Input", id, row.input.as_deref())
        .await?;
    let op = match etag {
        Some(etag) => TableOp::Replace { entity, etag },
        None => TableOp::Insert(entity),
    };
    match hub.storage.tables.execute(&hub.instances_table(), op).await {
        Ok(Some(etag)) => Ok(etag),
        Ok(None) => Err(StorageError::Other(format!(
            "the write of entity '{id}' returned no ETag"
        ))),
        Err(StorageError::NotFound(e)) => Err(StorageError::Conflict(e)),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_name_the_entity_in_lower_case() {
        assert_eq!(instance_id("Counter", "My-Key"), "@counter@My-Key");
        assert_eq!(parse("@counter@My-Key"), Some(("counter", "My-Key")));
        assert_eq!(parse("@counter@a@b"), Some(("counter", "a@b")));
        assert_eq!(parse("counter"), None);
        assert!(is_entity("@counter@x") && !is_entity("abc"));
    }

    #[test]
    fn envelopes_read_back_and_hashes_are_stable() {
        let env = Envelope {
            exists: true,
            state: Some(serde_json::json!({"n": 5})),
            recent: [1, 2].into(),
        };
        let row = InstanceRow {
            instance_id: "@c@k".into(),
            name: "c".into(),
            execution_id: String::new(),
            status: RuntimeStatus::Running,
            input: Some(serde_json::to_string(&env).unwrap()),
            output: None,
            custom_status: None,
            created: 0,
            last_updated: 0,
            completed: None,
        };
        let back = Envelope::of(&row).unwrap();
        assert_eq!(back.state_json().as_deref(), Some(r#"{"n":5}"#));
        let recent = decode_recent(&encode_recent(&env.recent));
        assert_eq!(recent, VecDeque::from([1, 2]));
        assert_eq!(encode_recent(&[7u64; 2000].into()).len(), 21_334);
        assert_eq!(id_hash("abc"), 0xe71f_a219_0541_574b);
    }
}
