//! Durable entities: instances `@name@key` (DTFx's naming) whose operations
//! arrive as control messages on the partition of that id (or from the
//! partition's signal log), and run one at a time, in arrival order, in
//! batches: an episode hands every operation waiting for the entity to its
//! function in one call and stores the new state with one write.
//!
//! The record of an entity is its Instances row: `Input` holds an envelope
//! (as Durable Functions keeps one there) with the state, and `Seen` what it
//! has applied (see [`super::seen`]), written with the row's ETag. Signals a
//! dead host had applied but not yet deleted come again: they are recognised
//! and skipped. Signals and starts an operation sends are stored with the
//! state, then sent, with ids derived from the operation's, so sending them
//! again after a crash delivers them once.

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
use super::hub::max_delay;
use super::model::{ControlEvent, ControlMessage, InstanceRow, RuntimeStatus, now_ms};
use super::partition::{Cached, Partition, Work};
use super::seen::{self, Seen};

/// Operations handed to the function in one call (and stored with one write).
const MAX_BATCH: usize = 1000;
/// When a recovery message comes back (see `LockOp::Recover`): after a
/// dead host's lease ends and the partition has a new owner.
const RECOVER_AFTER: Duration = Duration::from_secs(45);
/// Early releases remembered (see `Envelope::released`).
const RELEASED: usize = 100;

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
    /// The orchestration that sent a signal: an entity it has locked runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// A lock request or release of a critical section instead of an operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock: Option<LockOp>,
}

impl EntityOp {
    /// An operation named `operation`, from no orchestration.
    pub fn new(operation: impl Into<String>, input: Option<String>) -> EntityOp {
        EntityOp {
            operation: operation.into(),
            input,
            scheduled: None,
            caller: None,
            from: None,
            lock: None,
        }
    }

    /// The orchestration that sent it, if one did.
    fn sender(&self) -> Option<&str> {
        self.caller
            .as_ref()
            .map(|c| c.instance_id.as_str())
            .or(self.from.as_deref())
    }
}

/// The locks of a critical section. An orchestration locks its entities one
/// after the other, in a fixed order (sorted by name, then key), so two
/// sections never wait for each other: the request goes to the first entity,
/// which takes the lock and passes the request on; the last one answers the
/// orchestration. A release goes to every entity at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LockOp {
    /// Take this entity's lock for the caller, then ask `remaining` (entity
    /// instance ids, in lock order).
    #[serde(rename_all = "camelCase")]
    Acquire {
        lock_id: String,
        remaining: Vec<String>,
    },
    /// Give the lock `lock_id` back (sent by the holder).
    #[serde(rename_all = "camelCase")]
    Release { lock_id: String },
    /// Not a lock: sent by the entity to itself after an episode whose
    /// operations no queue message holds (a client's signal): if the host
    /// dies before sending what that episode stored in its outbox, this
    /// message comes back as a repeat and the outbox is sent again.
    Recover,
}

/// A message an episode sends, kept in the entity's record until the next
/// write: `at` for a scheduled one (ms since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outgoing {
    pub message: ControlMessage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<u64>,
}

/// An operation waiting in the entity's queue (behind another orchestration's lock).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queued {
    /// The message id it came with (the origin of the ids its effects get).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub op: EntityOp,
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
    /// The orchestration holding this entity's lock (a critical section).
    #[serde(default, rename = "lockedBy", skip_serializing_if = "Option::is_none")]
    pub locked_by: Option<String>,
    #[serde(default, rename = "lockId", skip_serializing_if = "Option::is_none")]
    pub lock_id: Option<String>,
    /// Operations from others, waiting for the lock's release, in arrival order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub queue: Vec<Queued>,
    /// Locks released before their request came here (the orchestration
    /// ended while taking them): that request is dropped when it comes.
    #[serde(default, skip_serializing_if = "VecDeque::is_empty")]
    pub released: VecDeque<String>,
    /// What the last episode sends, stored with its state (written first,
    /// then sent): a host that dies in between leaves them here, and the
    /// repeat of one of that episode's operations (`outbox_from`, hashes of
    /// their ids) sends them again. Receivers drop what they already have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox: Vec<Outgoing>,
    #[serde(default, rename = "outboxFrom", skip_serializing_if = "Vec::is_empty")]
    pub outbox_from: Vec<u64>,
    /// Signals this entity has sent: their ids are `{stream}:{n}`, one
    /// stream per entity, so that receivers remember few bytes per sender.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent: u64,
    /// The operations applied lately (see [`super::seen`]). Kept in the
    /// row's `Seen` column, beside the state, so that `Input` holds what
    /// readers want.
    #[serde(skip)]
    pub seen: Seen,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// An entity's row, its applied ids and its ETag, as stored.
async fn load(
    engine: &Arc<Engine>,
    id: &str,
) -> Result<Option<(InstanceRow, Seen, String, Option<String>)>, StorageError> {
    let hub = &engine.hub;
    let Some(e) = hub
        .storage
        .tables
        .get(&hub.instances_table(), id, "")
        .await?
    else {
        return Ok(None);
    };
    let etag = e.etag.clone().unwrap_or_default();
    let blob = e
        .str("InputBlob")
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    let row = super::instances::from_entity(hub, &e).await?;
    let seen = match (e.str("Seen"), e.str("Recent")) {
        (Some(seen), _) => Seen::decode(seen, id),
        // Written before operation ids named streams.
        (None, Some(hashes)) => Seen::from_hashes(hashes, row.last_updated),
        (None, None) => Seen::default(),
    };
    Ok(Some((row, seen, etag, blob)))
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
                early.push((message.clone(), left.min(max_delay())));
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
        if let Some((row, seen, etag, blob)) = load(engine, id).await? {
            // The applied ids ride along in memory in the cached row's output.
            let mut row = row;
            row.output = Some(seen.encode());
            fresh.row = Some((row, etag));
            fresh.payload_blob = blob;
        }
        *cache = Some(fresh);
    }
    let cached = cache.as_mut().expect("set above");
    let mut envelope = match &cached.row {
        Some((row, _)) => {
            let mut envelope = Envelope::of(row).map_err(StorageError::Other)?;
            envelope.seen = Seen::decode(row.output.as_deref().unwrap_or_default(), id);
            envelope
        }
        None => Envelope::default(),
    };
    let created = cached.row.as_ref().map_or(now, |(r, _)| r.created);

    // What is older than the window counts as new again (as after it is
    // forgotten): a stream an entity restarted after a deletion is new.
    let window = u64::try_from(engine.config.entity_idle.as_millis()).unwrap_or(u64::MAX);
    envelope.seen.trim(now, window, seen::BUDGET);
    // Operations already applied (a message delivered again) are skipped.
    // `taken`: hashes of this episode's ids, for `outbox_from`.
    let mut taken: HashSet<u64> = HashSet::new();
    let mut keys: Vec<seen::Key> = Vec::new();
    let mut fresh_ops: Vec<Queued> = Vec::new();
    let mut repeated = false;
    for (m, op) in ops {
        if let Some(mid) = &m.id {
            let h = seen::id_hash(mid);
            repeated |= envelope.outbox_from.contains(&h);
            if envelope.seen.has(mid) || !taken.insert(h) {
                continue;
            }
            keys.push(seen::key(mid));
        }
        fresh_ops.push(Queued {
            id: m.id.clone(),
            op: op.clone(),
        });
    }
    if repeated && !envelope.outbox.is_empty() {
        // The episode that stored this outbox may have died before sending it.
        tracing::debug!(
            "entity '{id}': an operation came again; sending its episode's {} message(s) again",
            envelope.outbox.len()
        );
        send_outgoing(engine, &envelope.outbox).await?;
    }
    if fresh_ops.is_empty() {
        return Ok(Outcome::Done(settle()));
    }
    let received = fresh_ops.len();
    // Locks first: what runs now, what waits for a release, what the locks send.
    let (runnable, mut sends) = order(&mut envelope, fresh_ops, id);

    let entity = EntityId {
        name: name.to_string(),
        key: key.to_string(),
    };
    let mut state = envelope.state_json();
    let mut delayed: Vec<(ControlMessage, Duration)> = Vec::new();
    // The entity's signals: one stream for each life of the entity (one
    // deleted and signalled again starts at 1 on a new stream).
    let stream = derived_id(&[id, &created.to_string(), "signals"]);
    for chunk in runnable.chunks(MAX_BATCH) {
        let operations: Vec<EntityOperation> = chunk
            .iter()
            .map(|Queued { op, .. }| EntityOperation {
                name: op.operation.clone(),
                input: op.input.clone(),
            })
            .collect();
        let result = invoke(engine, &function, &entity, state.clone(), operations).await;
        state = result.state.clone();
        for (Queued { id: mid, op }, outcome) in chunk.iter().zip(result.results) {
            if let Err(f) = &outcome.outcome {
                tracing::warn!(
                    "entity '{id}': operation '{}' failed: {}",
                    op.operation,
                    f.message
                );
            }
            let origin = mid.clone().unwrap_or_default();
            if let Some(caller) = &op.caller {
                sends.push(reply(caller, &outcome.outcome));
            }
            effects(
                id,
                (&stream, &mut envelope.sent),
                &origin,
                outcome,
                now,
                &mut sends,
                &mut delayed,
            );
        }
    }

    // 1. What the operations send goes into the record with the new state,
    // and out once that is stored: an episode done again (a conflict, a
    // host that died) sends nothing it did not store.
    let mut outbox: Vec<Outgoing> = sends
        .into_iter()
        .map(|message| Outgoing { message, at: None })
        .chain(delayed.into_iter().map(|(message, delay)| Outgoing {
            message,
            at: Some(now + u64::try_from(delay.as_millis()).unwrap_or(u64::MAX)),
        }))
        .collect();
    let unheld = works
        .iter()
        .any(|w| matches!(w, Work::Message { held: None, .. }));
    if unheld && !outbox.is_empty() {
        // No queue message will come again for a client's signal: this one will.
        let recover = ControlMessage {
            instance_id: id.to_string(),
            execution_id: None,
            event: ControlEvent::Entity(Box::new(EntityOp {
                lock: Some(LockOp::Recover),
                ..EntityOp::new("", None)
            })),
            parent: None,
            id: Some(uuid::Uuid::new_v4().simple().to_string()),
        };
        let recover_id = recover.id.as_deref().unwrap_or_default();
        taken.insert(seen::id_hash(recover_id));
        keys.push(seen::key(recover_id));
        engine.hub.send_control(&recover, RECOVER_AFTER).await?;
    }
    envelope.outbox_from = if outbox.is_empty() {
        Vec::new()
    } else {
        taken.iter().copied().collect()
    };
    envelope.outbox = std::mem::take(&mut outbox);

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
    for key in keys {
        envelope.seen.insert(key, now);
    }
    envelope.seen.trim(now, window, seen::BUDGET);
    let row = InstanceRow {
        instance_id: id.to_string(),
        name: name.to_string(),
        execution_id: String::new(),
        status: RuntimeStatus::Running,
        input: Some(serde_json::to_string(&envelope).expect("envelopes serialize")),
        output: Some(envelope.seen.encode()),
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
    let (etag, blob) = write(engine, &row, etag).await?;
    retire_blob(engine, cached, blob).await;
    // 3. Out it goes; what this host keeps knows it is sent.
    send_outgoing(engine, &envelope.outbox).await?;
    let mut row = row;
    if !envelope.outbox.is_empty() {
        envelope.outbox.clear();
        envelope.outbox_from.clear();
        row.input = Some(serde_json::to_string(&envelope).expect("envelopes serialize"));
    }
    cached.row = Some((row, etag));
    tracing::debug!(
        "entity '{id}': {received} message(s), {} operation(s) run, {} waiting, in one write",
        runnable.len(),
        envelope.queue.len()
    );
    Ok(Outcome::Done(settle()))
}

/// Send `outgoing`: the immediate ones packed per queue, the scheduled ones
/// with what is left of their delay.
async fn send_outgoing(engine: &Arc<Engine>, outgoing: &[Outgoing]) -> Result<(), StorageError> {
    if outgoing.is_empty() {
        return Ok(());
    }
    let now = now_ms();
    let (later, at_once): (Vec<&Outgoing>, Vec<&Outgoing>) = outgoing
        .iter()
        .partition(|o| o.at.is_some_and(|at| at > now));
    let (control, delayed) = futures::join!(
        super::outbox::send_control(engine, at_once.iter().map(|o| o.message.clone()).collect()),
        futures::future::try_join_all(later.iter().map(|o| {
            let left = Duration::from_millis(o.at.unwrap_or(now).saturating_sub(now));
            engine.hub.send_control(&o.message, left.min(max_delay()))
        }))
    );
    control?;
    delayed?;
    Ok(())
}

/// Sort `fresh` (after the operations already waiting) into what runs now,
/// in order, and what waits behind another orchestration's lock; apply the
/// lock requests and releases among them to `envelope`. The messages the
/// locks send (a request passed on, a lock granted).
fn order(
    envelope: &mut Envelope,
    fresh: Vec<Queued>,
    id: &str,
) -> (Vec<Queued>, Vec<ControlMessage>) {
    let mut pending: VecDeque<Queued> = envelope.queue.drain(..).chain(fresh).collect();
    let mut waiting: Vec<Queued> = Vec::new();
    let mut runnable = Vec::new();
    let mut sends = Vec::new();
    while let Some(item) = pending.pop_front() {
        if let Some(LockOp::Release { lock_id }) = &item.op.lock {
            if envelope.lock_id.as_ref() == Some(lock_id) {
                envelope.locked_by = None;
                envelope.lock_id = None;
                // What waited for this lock goes first, in its order.
                for w in waiting.drain(..).rev() {
                    pending.push_front(w);
                }
            } else {
                // Released before its request came (or while it waits here).
                let request = |q: &Queued| matches!(&q.op.lock, Some(LockOp::Acquire { lock_id: l, .. }) if l == lock_id);
                waiting.retain(|q| !request(q));
                pending.retain(|q| !request(q));
                envelope.released.push_back(lock_id.clone());
                while envelope.released.len() > RELEASED {
                    envelope.released.pop_front();
                }
            }
            continue;
        }
        if matches!(item.op.lock, Some(LockOp::Recover)) {
            continue;
        }
        if let Some(holder) = &envelope.locked_by
            && item.op.sender() != Some(holder.as_str())
        {
            waiting.push(item);
            continue;
        }
        let Some(LockOp::Acquire { lock_id, remaining }) = &item.op.lock else {
            runnable.push(item);
            continue;
        };
        let Some(caller) = &item.op.caller else {
            tracing::warn!("entity '{id}': dropping a lock request that names no orchestration");
            continue;
        };
        if envelope.released.contains(lock_id) {
            tracing::debug!("entity '{id}': lock {lock_id} was released before it was taken");
            continue;
        }
        envelope.locked_by = Some(caller.instance_id.clone());
        envelope.lock_id = Some(lock_id.clone());
        sends.push(match remaining.split_first() {
            Some((next, rest)) => ControlMessage {
                instance_id: next.clone(),
                execution_id: None,
                event: ControlEvent::Entity(Box::new(EntityOp {
                    lock: Some(LockOp::Acquire {
                        lock_id: lock_id.clone(),
                        remaining: rest.to_vec(),
                    }),
                    ..item.op.clone()
                })),
                parent: None,
                id: Some(derived_id(&[lock_id, "acquire", next])),
            },
            None => reply(caller, &Ok(None)),
        });
    }
    envelope.queue = waiting;
    (runnable, sends)
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
    let json = |state: &Option<String>| {
        state
            .as_deref()
            .is_none_or(|t| serde_json::from_str::<Value>(t).is_ok())
    };
    match call(state.clone(), operations.clone()).await {
        Ok(r) if r.results.len() == count && json(&r.state) => return r,
        Ok(r) if r.results.len() == count => tracing::error!(
            "entity '@{}@{}': the function returned a state that is not JSON; \
             running the {count} operation(s) one at a time",
            entity.name,
            entity.key
        ),
        Ok(r) => tracing::error!(
            "entity '@{}@{}': the function answered {} results for {count} operations",
            entity.name,
            entity.key,
            r.results.len()
        ),
        // One operation that trapped: it fails, and is not run again.
        Err(e) if count == 1 => {
            return EntityBatchResult {
                state,
                results: vec![OperationResult {
                    outcome: Err(failure(
                        "EntityOperationFailed",
                        &format!("operation '{}' failed: {e}", operations[0].name),
                    )),
                    signals: Vec::new(),
                    starts: Vec::new(),
                }],
            };
        }
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
            Ok(mut r) if r.results.len() == 1 && json(&r.state) => {
                state = r.state;
                results.push(r.results.remove(0));
            }
            other => {
                let why = match other {
                    Err(e) => e.to_string(),
                    Ok(r) if r.results.len() == 1 => "its new state is not JSON".into(),
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

/// The messages an operation's signals and starts become. Signals take the
/// next places (`sent`) of the entity's own `stream`; starts get ids derived
/// from the operation's.
fn effects(
    from: &str,
    (stream, sent): (&str, &mut u64),
    origin: &str,
    outcome: OperationResult,
    now: u64,
    sends: &mut Vec<ControlMessage>,
    delayed: &mut Vec<(ControlMessage, Duration)>,
) {
    for s in outcome.signals {
        *sent += 1;
        let message = ControlMessage {
            instance_id: instance_id(&s.target.name, &s.target.key),
            execution_id: None,
            event: ControlEvent::Entity(Box::new(EntityOp {
                scheduled: s.scheduled_time,
                ..EntityOp::new(s.operation, s.input)
            })),
            parent: None,
            id: Some(format!("{stream}:{sent}")),
        };
        match s.scheduled_time {
            Some(at) if at > now => {
                delayed.push((message, Duration::from_millis(at - now).min(max_delay())));
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

/// Delete the entity's row if it is still the version last updated at
/// `last_updated` (read again for its ETag); whether it was deleted.
pub async fn delete_unchanged(
    engine: &Arc<Engine>,
    id: &str,
    last_updated: u64,
) -> Result<bool, StorageError> {
    let Some((row, _, etag, _)) = load(engine, id).await? else {
        return Ok(false);
    };
    if row.last_updated != last_updated {
        return Ok(false);
    }
    let op = TableOp::Delete {
        partition_key: id.to_string(),
        row_key: String::new(),
        etag: Some(etag),
    };
    let hub = &engine.hub;
    match hub.storage.tables.execute(&hub.instances_table(), op).await {
        Ok(_) => {
            // Blobs of this record and the ones before it; not those of a new
            // life of the entity begun since (clean-up takes entities idle
            // for the reorder window, so a minute covers clocks apart).
            let until = std::time::UNIX_EPOCH + Duration::from_millis(last_updated + 60_000);
            hub.delete_large_until(id, until).await?;
            Ok(true)
        }
        Err(StorageError::Conflict(_) | StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// How long a blob that held an earlier state of an entity is kept: a reader
/// that has just read the row before the write may still fetch it.
const RETIRED_BLOB: Duration = Duration::from_secs(10);

/// The entity's record is now in `blob` (None: in its row): the blob before
/// it is deleted once no reader can want it, instead of staying forever (a
/// large entity writes a new blob at every write).
async fn retire_blob(engine: &Arc<Engine>, cached: &mut Cached, blob: Option<String>) {
    if cached.payload_blob != blob
        && let Some(old) = std::mem::replace(&mut cached.payload_blob, blob)
    {
        cached.retired.push((old, Instant::now()));
    }
    let container = engine.hub.large_messages_container();
    while let Some((name, at)) = cached.retired.first() {
        if at.elapsed() < RETIRED_BLOB {
            break;
        }
        match engine.hub.storage.blobs.delete(&container, name).await {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            // Left for purge or deletion of the entity.
            Err(e) => tracing::debug!("deleting an earlier state blob {name}: {e}"),
        }
        cached.retired.remove(0);
    }
}

/// Write an entity's row: replace the version read (`etag`), or insert a new
/// one. Conflict if someone else wrote it since. The new ETag, and the blob
/// that holds the record when it is too large for the row.
async fn write(
    engine: &Arc<Engine>,
    row: &InstanceRow,
    etag: Option<String>,
) -> Result<(String, Option<String>), StorageError> {
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
        .with("Seen", row.output.as_deref().unwrap_or_default());
    hub.set_payload(&mut entity, "Input", id, row.input.as_deref())
        .await?;
    let blob = entity
        .str("InputBlob")
        .filter(|b| !b.is_empty())
        .map(str::to_string);
    let op = match etag {
        Some(etag) => TableOp::Replace { entity, etag },
        None => TableOp::Insert(entity),
    };
    let result = match hub.storage.tables.execute(&hub.instances_table(), op).await {
        Ok(Some(etag)) => Ok((etag, blob.clone())),
        Ok(None) => Err(StorageError::Other(format!(
            "the write of entity '{id}' returned no ETag"
        ))),
        Err(StorageError::NotFound(e)) => Err(StorageError::Conflict(e)),
        Err(e) => Err(e),
    };
    if let (Err(StorageError::Conflict(_)), Some(blob)) = (&result, &blob) {
        // Surely not written: nothing refers to the blob just made.
        let _ = hub
            .storage
            .blobs
            .delete(&hub.large_messages_container(), blob)
            .await;
    }
    result
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
    fn envelopes_read_back() {
        let env = Envelope {
            exists: true,
            state: Some(serde_json::json!({"n": 5})),
            ..Envelope::default()
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
    }

    fn op(id: &str, from: Option<&str>, lock: Option<LockOp>) -> Queued {
        Queued {
            id: Some(id.into()),
            op: EntityOp {
                caller: from.filter(|_| lock.is_some()).map(|f| Caller {
                    instance_id: f.into(),
                    execution_id: "e".into(),
                    event_id: 3,
                }),
                from: from.map(str::to_string),
                lock,
                ..EntityOp::new(id, None)
            },
        }
    }

    fn acquire(lock: &str, remaining: &[&str]) -> Option<LockOp> {
        Some(LockOp::Acquire {
            lock_id: lock.into(),
            remaining: remaining.iter().map(|r| r.to_string()).collect(),
        })
    }

    fn release(lock: &str) -> Option<LockOp> {
        Some(LockOp::Release {
            lock_id: lock.into(),
        })
    }

    fn names(run: &[Queued]) -> Vec<&str> {
        run.iter().map(|q| q.op.operation.as_str()).collect()
    }

    #[test]
    fn a_lock_passes_the_request_on_and_holds_back_others_until_released() {
        let mut env = Envelope::default();
        let (run, sends) = order(
            &mut env,
            vec![
                op("a1", None, None),
                op("lock", Some("o1"), acquire("L1", &["@c@b"])),
                op("o1-op", Some("o1"), None),
                op("other", Some("o2"), None),
                op("signal", None, None),
            ],
            "@c@a",
        );
        assert_eq!(names(&run), ["a1", "o1-op"]);
        assert_eq!(env.locked_by.as_deref(), Some("o1"));
        assert_eq!(names(&env.queue), ["other", "signal"]);
        // The request goes on to the next entity, with the caller.
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0].instance_id, "@c@b");
        let ControlEvent::Entity(next) = &sends[0].event else {
            panic!("{:?}", sends[0])
        };
        assert_eq!(next.lock, acquire("L1", &[]));
        assert_eq!(next.caller.as_ref().unwrap().instance_id, "o1");

        // Another lock waits its turn; the release lets the queue run in order.
        let (run, sends) = order(
            &mut env,
            vec![
                op("lock2", Some("o2"), acquire("L2", &[])),
                op("late", None, None),
                op("unlock", Some("o1"), release("L1")),
            ],
            "@c@a",
        );
        assert_eq!(names(&run), ["other", "signal"]);
        assert_eq!(env.locked_by.as_deref(), Some("o2"));
        assert_eq!(names(&env.queue), ["late"]);
        // The last entity grants the lock: the caller's call completes.
        assert_eq!(sends.len(), 1);
        assert_eq!(sends[0].instance_id, "o2");
        assert!(matches!(
            &sends[0].event,
            ControlEvent::Event(HistoryEvent::EntityCallCompleted(c)) if c.task_scheduled_id == 3
        ));
    }

    #[test]
    fn a_release_before_its_request_drops_the_request() {
        let mut env = Envelope::default();
        let (run, sends) = order(
            &mut env,
            vec![op("unlock", Some("o1"), release("L1"))],
            "@c@b",
        );
        assert!(run.is_empty() && sends.is_empty());
        let (run, sends) = order(
            &mut env,
            vec![
                op("lock", Some("o1"), acquire("L1", &[])),
                op("after", None, None),
            ],
            "@c@b",
        );
        assert_eq!(names(&run), ["after"]);
        assert!(sends.is_empty() && env.locked_by.is_none());
        // A release of a request still waiting here removes it from the queue.
        env.locked_by = Some("o2".into());
        env.lock_id = Some("L2".into());
        let (_, _) = order(
            &mut env,
            vec![op("lock3", Some("o3"), acquire("L3", &[]))],
            "@c@b",
        );
        assert_eq!(names(&env.queue), ["lock3"]);
        order(
            &mut env,
            vec![op("unlock3", Some("o3"), release("L3"))],
            "@c@b",
        );
        assert!(env.queue.is_empty());
        assert_eq!(env.locked_by.as_deref(), Some("o2"));
    }
}
