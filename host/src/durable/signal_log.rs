//! A partition's signal log: signals that clients send to entities of a
//! partition this host owns are stored as rows of one table partition
//! (`{Hub}Partitions`, PartitionKey `signals-NN`), many in one transaction,
//! and the client's 202 comes once they are stored. The entities apply them
//! afterwards, several per write, and the rows are deleted, up to 100 per
//! transaction, once applied. So a signal costs about one storage call per
//! batch of concurrent clients plus its share of the entity's write, not an
//! entity write of its own (100 entities signalled by 32 HTTP clients: one
//! signal in flight per entity at best, so one write per signal before).
//!
//! Every append also replaces the log's `fence` row with the ETag this host
//! got when it took the partition. A new owner changes the fence before it
//! reads the log, so a former owner that has not noticed yet can no longer
//! add a row the new owner would never read: its append fails, it reads the
//! fence again, finds another owner and stops using the log for good (it
//! never takes the fence back), and its clients' signals take the older way
//! (the 202 waits for the entity's write). Appends also stop a second before
//! the partition's lease may lapse. The new owner applies every row
//! it finds before it takes anything from the control queue (so a client's
//! signals keep their order across the move); rows applied already are
//! recognised by their signal ids (see [`super::seen`]) and only deleted.
//! Row keys start with the time the owner took the partition, so rows of
//! successive owners sort in that order.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use crate::storage::{Entity, StorageError, TableOp};

use super::Engine;
use super::holds::Held;
use super::model::{ControlMessage, now_ms};
use super::partition::{Partition, Work};

/// Rows per append: a table transaction holds 100 writes, one is the fence.
const APPEND: usize = 99;
/// Bytes of signals (quoted, as the transaction's body carries them) per
/// append: a transaction's body holds 4 MB.
const APPEND_BYTES: usize = 3_500_000;
/// Signals larger than this (JSON) are not logged: a table property holds
/// 32K characters. They take the older way (the 202 waits for the entity).
const MAX_MESSAGE: usize = 30_000;
/// Settled rows are deleted when this many wait, or this long after the first.
const DELETE_BATCH: usize = 100;
const DELETE_AFTER: Duration = Duration::from_millis(500);
/// Failed readings of the log (2 s apart) after which the partition's
/// control queue is processed without waiting for it.
const GIVE_UP_ORDER: u32 = 15;
/// No append starts later than this before the partition's lease may lapse.
const LEASE_MARGIN: Duration = Duration::from_secs(1);

/// The log of one partition, while this host owns it.
pub struct Lane {
    inner: Mutex<Inner>,
    /// Rows settled, or the log must be read again.
    wake: Notify,
    /// A logged signal was given back, or an append may or may not have been
    /// stored: read the log again.
    rescan: AtomicBool,
    /// The log has been read once since the takeover (or cannot be).
    opened: AtomicBool,
    opened_wake: Notify,
    /// Row keys: when this lane began, a random id, then a count.
    prefix: String,
}

impl Default for Lane {
    fn default() -> Lane {
        Lane {
            inner: Mutex::default(),
            wake: Notify::new(),
            rescan: AtomicBool::new(false),
            opened: AtomicBool::new(false),
            opened_wake: Notify::new(),
            prefix: format!("{:013}-{}", now_ms(), uuid::Uuid::new_v4().simple()),
        }
    }
}

#[derive(Default)]
struct Inner {
    /// The fence's ETag as this host last wrote it.
    fence: Option<String>,
    /// Appends go ahead (the log was read with the fence ours).
    ready: bool,
    /// This host took the fence at the takeover: later readings only check it is still ours.
    taken: bool,
    /// Another host took the fence: this lane never appends again.
    lost: bool,
    waiting: Vec<Pending>,
    in_flight: bool,
    settled: Vec<String>,
    next: u64,
}

struct Pending {
    message: ControlMessage,
    text: String,
    /// Bytes of `text` quoted into a transaction's body.
    quoted: usize,
    done: oneshot::Sender<bool>,
}

fn partition_key(partition: u32) -> String {
    format!("signals-{partition:02}")
}

const FENCE: &str = "fence";

/// Who holds the fence: this host, and this lane of it (a host that loses a
/// partition and takes it again has a new lane).
fn owner(engine: &Engine, part: &Partition) -> String {
    format!("{} {}", engine.host_id, part.log.prefix)
}

impl Lane {
    /// `row_key`'s signal is applied: its row can go.
    pub fn settled(&self, row_key: String) {
        let notify = {
            let mut inner = self.inner.lock().expect("log lock");
            inner.settled.push(row_key);
            inner.settled.len() == 1 || inner.settled.len() >= DELETE_BATCH
        };
        if notify {
            self.wake.notify_one();
        }
    }

    /// A logged signal was given back without being applied: the log is read
    /// again (every unsettled row comes back; repeats are recognised).
    pub fn given_back(&self) {
        self.rescan.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn open(&self) {
        self.opened.store(true, Ordering::Release);
        self.opened_wake.notify_waiters();
    }

    /// Wait until the log has been read after the takeover, while `active` holds.
    pub async fn wait_opened(&self, active: impl Fn() -> bool) {
        while !self.opened.load(Ordering::Acquire) && active() {
            let _ =
                tokio::time::timeout(Duration::from_millis(500), self.opened_wake.notified()).await;
        }
    }
}

/// Store `message` (a client's signal to an entity of `part`) in the log and
/// hand it to its entity. False if it was not logged (the log is not ready,
/// the lease is about to lapse, or the append failed): the caller sends it
/// another way. An append whose outcome is unknown also answers false: if it
/// was stored after all, the log's next reading applies it, and the copy
/// sent the other way is then recognised as a repeat by its id.
pub async fn append(engine: &Arc<Engine>, part: &Arc<Partition>, message: ControlMessage) -> bool {
    let Ok(text) = serde_json::to_string(&message) else {
        return false;
    };
    if text.len() > MAX_MESSAGE {
        return false;
    }
    let (done, stored) = oneshot::channel();
    let start = {
        let mut inner = part.log.inner.lock().expect("log lock");
        if !inner.ready || inner.lost || !part.is_active() {
            return false;
        }
        let quoted = serde_json::to_string(&text).map_or(text.len() * 2, |q| q.len());
        inner.waiting.push(Pending {
            message,
            text,
            quoted,
            done,
        });
        !std::mem::replace(&mut inner.in_flight, true)
    };
    if start {
        tokio::spawn(flush(engine.clone(), part.clone()));
    }
    stored.await.unwrap_or(false)
}

/// Append what waits, one transaction after the other, until nothing does.
async fn flush(engine: Arc<Engine>, part: Arc<Partition>) {
    let pk = partition_key(part.number);
    loop {
        let (batch, fence, first) = {
            let mut inner = part.log.inner.lock().expect("log lock");
            let usable = inner.ready
                && !inner.lost
                && part.is_active()
                && part.valid_until() > Instant::now() + LEASE_MARGIN;
            let fence = inner.fence.clone().filter(|_| usable);
            if inner.waiting.is_empty() || fence.is_none() {
                inner.in_flight = false;
                // Not usable now: the waiting go the other way.
                let waiting = std::mem::take(&mut inner.waiting);
                drop(inner);
                for p in waiting {
                    let _ = p.done.send(false);
                }
                return;
            }
            let mut bytes = 0;
            let n = inner
                .waiting
                .iter()
                .take(APPEND)
                .take_while(|p| {
                    bytes += p.quoted + 300;
                    bytes <= APPEND_BYTES
                })
                .count()
                .max(1);
            let batch: Vec<Pending> = inner.waiting.drain(..n).collect();
            let first = inner.next;
            inner.next += batch.len() as u64;
            (batch, fence.unwrap_or_default(), first)
        };
        let keys: Vec<String> = (0..batch.len())
            .map(|i| format!("{}-{:020}", part.log.prefix, first + i as u64))
            .collect();
        let mut ops = vec![TableOp::Replace {
            entity: Entity::new(&pk, FENCE).with("Owner", owner(&engine, &part)),
            etag: fence,
        }];
        ops.extend(batch.iter().zip(&keys).map(|(p, key)| {
            TableOp::Insert(Entity::new(&pk, key.as_str()).with("Message", p.text.as_str()))
        }));
        let result = engine
            .hub
            .storage
            .tables
            .batch(&engine.hub.partitions_table(), ops)
            .await;
        let fence = match result {
            Ok(etags) => etags.first().cloned().flatten(),
            Err(StorageError::Conflict(e)) => {
                // The fence changed: another host has taken the partition,
                // or (a reading raced an append) our ETag is stale. Nothing
                // of this batch is stored either way; the log is read again,
                // which tells the two apart.
                tracing::debug!(
                    "partition {}: the signal log's fence changed ({e})",
                    part.number
                );
                part.log.inner.lock().expect("log lock").ready = false;
                part.log.given_back();
                None
            }
            Err(e) => {
                // Stored or not: the log is read again before the next append.
                tracing::debug!(
                    "partition {}: appending to the signal log: {e}",
                    part.number
                );
                part.log.inner.lock().expect("log lock").ready = false;
                part.log.given_back();
                None
            }
        };
        let Some(fence) = fence else {
            for p in batch {
                let _ = p.done.send(false);
            }
            continue;
        };
        part.log.inner.lock().expect("log lock").fence = Some(fence);
        super::Stats::add(&engine.stats.logged_signals, batch.len());
        super::Stats::add(&engine.stats.log_appends, 1);
        let mut by_instance: HashMap<String, Vec<Work>> = HashMap::new();
        let mut dones = Vec::with_capacity(batch.len());
        for (p, key) in batch.into_iter().zip(keys) {
            by_instance
                .entry(p.message.instance_id.clone())
                .or_default()
                .push(work(&part, p.message, key));
            dones.push(p.done);
        }
        for (instance, works) in by_instance {
            part.push(&engine, &instance, works);
        }
        for done in dones {
            let _ = done.send(true);
        }
    }
}

fn work(part: &Arc<Partition>, message: ControlMessage, row_key: String) -> Work {
    Work::Message {
        message,
        held: Some(Held::logged(part.log_lane(), row_key, part.number)),
        ack: None,
        new_id: false,
    }
}

/// While `part` is ours: take the fence and apply what the log holds (after
/// a takeover: what the former owner logged and had not applied), then
/// delete settled rows as they come, and read the log again when asked.
pub async fn keep(engine: Arc<Engine>, part: Arc<Partition>) {
    let mut failures = 0u32;
    loop {
        if !part.is_active() {
            part.log.open();
            delete_settled(&engine, &part, usize::MAX).await;
            return;
        }
        if part.log.rescan.swap(false, Ordering::AcqRel) {
            part.log.inner.lock().expect("log lock").ready = false;
        }
        let (ready, lost) = {
            let inner = part.log.inner.lock().expect("log lock");
            (inner.ready, inner.lost)
        };
        if lost {
            part.log.open();
        } else if !ready {
            if let Err(e) = read(&engine, &part).await {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    crate::storage::log_retrying(
                        format_args!("partition {}: reading the signal log", part.number),
                        &e,
                    );
                }
                if failures == GIVE_UP_ORDER && !part.log.opened.load(Ordering::Acquire) {
                    // The rest of the partition waits for no log: its
                    // control queue is taken now, and the log's signals come
                    // once it can be read (after what came meanwhile).
                    tracing::warn!(
                        "partition {}: the signal log could not be read for 30 s; \
                         processing the control queue without it",
                        part.number
                    );
                    part.log.open();
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
                continue;
            }
            failures = 0;
        }
        let due = part.log.inner.lock().expect("log lock").settled.len();
        if due == 0 {
            let _ = tokio::time::timeout(Duration::from_secs(1), part.log.wake.notified()).await;
            continue;
        }
        if due < DELETE_BATCH {
            // Wait for more to delete together, unless a full batch comes first.
            let _ = tokio::time::timeout(DELETE_AFTER, part.log.wake.notified()).await;
        }
        if !delete_settled(&engine, &part, DELETE_BATCH).await {
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }
}

/// Take the fence (at the takeover; later, check it is still ours), then
/// hand every row of the log to its entity.
async fn read(engine: &Arc<Engine>, part: &Arc<Partition>) -> Result<(), StorageError> {
    let pk = partition_key(part.number);
    let table = engine.hub.partitions_table();
    let tables = &engine.hub.storage.tables;
    let taken = part.log.inner.lock().expect("log lock").taken;
    if taken {
        // Appends stopped when `ready` went; let the one under way land, so
        // that the fence read below is not older than its.
        let deadline = Instant::now() + Duration::from_secs(60);
        while part.log.inner.lock().expect("log lock").in_flight && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let fence = if taken {
        // Our own appends changed it since; another host's reading changes its owner.
        let row = tables.get(&table, &pk, FENCE).await?;
        let me = owner(engine, part);
        match row.filter(|r| r.str("Owner") == Some(me.as_str())) {
            Some(row) => row.etag.unwrap_or_default(),
            None => {
                tracing::debug!(
                    "partition {}: the signal log's fence is another host's: not using the log again",
                    part.number
                );
                part.log.inner.lock().expect("log lock").lost = true;
                part.log.open();
                return Ok(());
            }
        }
    } else {
        if part.valid_until() <= Instant::now() + LEASE_MARGIN {
            return Err(StorageError::Unavailable(format!(
                "partition {}: its lease is not renewed",
                part.number
            )));
        }
        let upsert = Entity::new(&pk, FENCE).with("Owner", owner(engine, part));
        let etag = tables
            .execute(&table, TableOp::Upsert(upsert))
            .await?
            .ok_or_else(|| StorageError::Other("the signal log's fence got no ETag".into()))?;
        part.log.inner.lock().expect("log lock").taken = true;
        etag
    };
    let rows = tables.query_partition(&table, &pk).await?;
    let mut by_instance: HashMap<String, Vec<Work>> = HashMap::new();
    let mut unreadable = Vec::new();
    for row in rows {
        if row.row_key == FENCE {
            continue;
        }
        match row
            .str("Message")
            .and_then(|t| serde_json::from_str::<ControlMessage>(t).ok())
        {
            Some(message) => by_instance
                .entry(message.instance_id.clone())
                .or_default()
                .push(work(part, message, row.row_key.clone())),
            None => unreadable.push(row.row_key.clone()),
        }
    }
    let count: usize = by_instance.values().map(Vec::len).sum();
    if count > 0 && !taken {
        tracing::info!(
            "partition {}: {count} signal(s) in the log to apply",
            part.number
        );
    }
    for key in unreadable {
        tracing::error!(
            "partition {}: signal log row '{key}' is not a signal; deleting it",
            part.number
        );
        part.log.settled(key);
    }
    {
        let mut inner = part.log.inner.lock().expect("log lock");
        inner.fence = Some(fence);
        inner.ready = true;
    }
    // Rows sort by owner, then in append order: each instance gets them so.
    for (instance, works) in by_instance {
        part.push(engine, &instance, works);
    }
    part.log.open();
    Ok(())
}

/// Delete up to `max` settled rows, 100 to a transaction (one by one if a
/// transaction fails: a row deleted already fails the lot). Rows whose
/// delete failed wait for the next round; false if any did.
pub(super) async fn delete_settled(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    max: usize,
) -> bool {
    let pk = partition_key(part.number);
    let table = engine.hub.partitions_table();
    // A row handed out twice (a reading of the log while it was in hand) is settled twice.
    let keys: BTreeSet<String> = {
        let mut inner = part.log.inner.lock().expect("log lock");
        let n = inner.settled.len().min(max);
        inner.settled.drain(..n).collect()
    };
    let keys: Vec<String> = keys.into_iter().collect();
    let mut failed = Vec::new();
    for chunk in keys.chunks(DELETE_BATCH) {
        let delete = |key: &String| TableOp::Delete {
            partition_key: pk.clone(),
            row_key: key.clone(),
            etag: None,
        };
        let storage = &engine.hub.storage;
        if storage
            .tables
            .batch(&table, chunk.iter().map(delete).collect())
            .await
            .is_ok()
        {
            continue;
        }
        for key in chunk {
            match storage.tables.execute(&table, delete(key)).await {
                Ok(_) | Err(StorageError::NotFound(_)) => {}
                Err(e) => {
                    tracing::debug!("deleting signal log row {key}: {e}");
                    failed.push(key.clone());
                }
            }
        }
    }
    let ok = failed.is_empty();
    if !ok {
        part.log
            .inner
            .lock()
            .expect("log lock")
            .settled
            .extend(failed);
    }
    ok
}
