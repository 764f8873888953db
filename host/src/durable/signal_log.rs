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
//! add a row the new owner would never read: its append fails, and its
//! clients' signals go through the control queue instead. The new owner
//! applies every row it finds; rows applied already are recognised by their
//! signal ids (see [`super::seen`]) and only deleted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use crate::storage::{Entity, StorageError, TableOp};

use super::Engine;
use super::holds::Held;
use super::model::ControlMessage;
use super::partition::{Partition, Work};

/// Rows per append: a table transaction holds 100 writes, one is the fence.
const APPEND: usize = 99;
/// Signals larger than this (JSON) are not logged: a table property holds
/// 32K characters. They take the older way (the 202 waits for the entity).
const MAX_MESSAGE: usize = 30_000;
/// Settled rows are deleted when this many wait, or this long after the first.
const DELETE_BATCH: usize = 100;
const DELETE_AFTER: Duration = Duration::from_millis(500);

/// The log of one partition, while this host owns it.
#[derive(Default)]
pub struct Lane {
    inner: Mutex<Inner>,
    /// Rows settled, or the log must be read again.
    wake: Notify,
    /// A logged signal was given back: read the log again (see `Holds::abandon`).
    rescan: AtomicBool,
}

#[derive(Default)]
struct Inner {
    /// The fence's ETag: None until this host has read the log after taking
    /// the partition (appends wait meanwhile), or after an append that may
    /// or may not have been stored (then the log is read again).
    fence: Option<String>,
    ready: bool,
    waiting: Vec<Pending>,
    in_flight: bool,
    settled: Vec<String>,
    /// Row keys: this process's run id and a count.
    next: u64,
}

struct Pending {
    message: ControlMessage,
    done: oneshot::Sender<bool>,
}

fn partition_key(partition: u32) -> String {
    format!("signals-{partition:02}")
}

const FENCE: &str = "fence";

fn run_id() -> &'static str {
    static RUN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    RUN.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
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
}

/// Store `message` (a client's signal to an entity of `part`) in the log and
/// hand it to its entity. False if it was not logged (the log is not ready,
/// or the append failed): the caller sends it another way. An append whose
/// outcome is unknown also answers false: if it was stored after all, the
/// log's next reading applies it, and the copy sent the other way is then
/// recognised as a repeat by its id.
pub async fn append(engine: &Arc<Engine>, part: &Arc<Partition>, message: ControlMessage) -> bool {
    if serde_json::to_string(&message).map_or(true, |t| t.len() > MAX_MESSAGE) {
        return false;
    }
    let (done, stored) = oneshot::channel();
    let start = {
        let mut inner = part.log.inner.lock().expect("log lock");
        if !inner.ready || !part.is_active() {
            return false;
        }
        inner.waiting.push(Pending { message, done });
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
            let fence = inner.fence.clone().filter(|_| part.is_active());
            if inner.waiting.is_empty() || fence.is_none() {
                inner.in_flight = false;
                // Not ready any more: the waiting go the other way.
                let waiting = std::mem::take(&mut inner.waiting);
                drop(inner);
                for p in waiting {
                    let _ = p.done.send(false);
                }
                return;
            }
            let n = inner.waiting.len().min(APPEND);
            let batch: Vec<Pending> = inner.waiting.drain(..n).collect();
            let first = inner.next;
            inner.next += batch.len() as u64;
            (batch, fence.unwrap_or_default(), first)
        };
        let rows: Vec<(String, String)> = batch
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let text = serde_json::to_string(&p.message).expect("messages serialize");
                (format!("{}-{:012}", run_id(), first + i as u64), text)
            })
            .collect();
        // A transaction holds at most 4 MB: 99 rows of 30 KB fit.
        let mut ops = vec![TableOp::Replace {
            entity: Entity::new(&pk, FENCE).with("Owner", engine.host_id.as_str()),
            etag: fence,
        }];
        ops.extend(rows.iter().map(|(key, text)| {
            TableOp::Insert(Entity::new(&pk, key.as_str()).with("Message", text.as_str()))
        }));
        let result = engine
            .hub
            .storage
            .tables
            .batch(&engine.hub.partitions_table(), ops)
            .await;
        match result {
            Ok(etags) => {
                let fence = etags.first().cloned().flatten();
                if fence.is_none() {
                    // Unexpected; the log is read again, which takes the fence anew.
                    part.log.inner.lock().expect("log lock").ready = false;
                    part.log.given_back();
                }
                part.log.inner.lock().expect("log lock").fence = fence;
                super::Stats::add(&engine.stats.logged_signals, batch.len());
                super::Stats::add(&engine.stats.log_appends, 1);
                let mut by_instance: HashMap<String, Vec<Work>> = HashMap::new();
                for (p, (key, _)) in batch.iter().zip(rows) {
                    by_instance
                        .entry(p.message.instance_id.clone())
                        .or_default()
                        .push(work(&part, p.message.clone(), key));
                }
                for (instance, works) in by_instance {
                    part.push(&engine, &instance, works);
                }
                for p in batch {
                    let _ = p.done.send(true);
                }
            }
            Err(e) => {
                // Conflict: another host took the partition. Otherwise the
                // rows may or may not be stored: read the log again.
                if !matches!(e, StorageError::Conflict(_)) {
                    tracing::debug!(
                        "partition {}: appending to the signal log: {e}",
                        part.number
                    );
                }
                {
                    let mut inner = part.log.inner.lock().expect("log lock");
                    inner.fence = None;
                    inner.ready = false;
                }
                part.log.given_back();
                for p in batch {
                    let _ = p.done.send(false);
                }
            }
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
    let pk = partition_key(part.number);
    let table = engine.hub.partitions_table();
    let mut failures = 0u32;
    loop {
        if !part.is_active() {
            delete_settled(&engine, &part, usize::MAX).await;
            return;
        }
        if part.log.rescan.swap(false, Ordering::AcqRel) {
            part.log.inner.lock().expect("log lock").ready = false;
        }
        if !part.log.inner.lock().expect("log lock").ready {
            if let Err(e) = read(&engine, &part, &pk, &table).await {
                failures += 1;
                if failures == 1 || failures.is_power_of_two() {
                    crate::storage::log_retrying(
                        format_args!("partition {}: reading the signal log", part.number),
                        &e,
                    );
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
        delete_settled(&engine, &part, DELETE_BATCH).await;
    }
}

/// Change the fence, then hand every row of the log to its entity.
async fn read(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    pk: &str,
    table: &str,
) -> Result<(), StorageError> {
    let fence = engine
        .hub
        .storage
        .tables
        .execute(
            table,
            TableOp::Upsert(Entity::new(pk, FENCE).with("Owner", engine.host_id.as_str())),
        )
        .await?
        .ok_or_else(|| StorageError::Other("the signal log's fence got no ETag".into()))?;
    let rows = engine.hub.storage.tables.query_partition(table, pk).await?;
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
    if count > 0 {
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
    for (instance, works) in by_instance {
        part.push(engine, &instance, works);
    }
    Ok(())
}

/// Delete up to `max` settled rows, 100 to a transaction (one by one if a
/// transaction fails: a row another host deleted first fails the lot).
pub(super) async fn delete_settled(engine: &Arc<Engine>, part: &Arc<Partition>, max: usize) {
    let pk = partition_key(part.number);
    let table = engine.hub.partitions_table();
    let keys: Vec<String> = {
        let mut inner = part.log.inner.lock().expect("log lock");
        let n = inner.settled.len().min(max);
        inner.settled.drain(..n).collect()
    };
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
                // Left for the partition's next reading of the log.
                Err(e) => tracing::debug!("deleting signal log row {key}: {e}"),
            }
        }
    }
}
