//! Which host processes which partition: one row per control queue in the
//! `{Hub}Partitions` table (as DTFx's table partition manager keeps them:
//! `CurrentOwner`, `NextOwner`, `ExpiresAt`), plus a `doorbell` row.
//!
//! Every 10 s a host renews the rows it owns (ExpiresAt = now + 30 s), so a
//! dead host's partitions are free 30 s after its last renewal and taken at
//! the next tick of another host. All rows share one table partition, so a
//! host renews every partition it owns, and claims or hands over others, in
//! one entity group transaction. A host holding everything makes one call a
//! tick: the transaction also checks the doorbell's ETag, so it only reads
//! the table when something changed (another host asked for a partition, or
//! rang the doorbell).
//!
//! Balance: a host owning fewer than its fair share (ceil(partitions / live
//! hosts)) claims free or expired rows, or asks for a row of a host with more
//! than its share by setting `NextOwner`; that host drains the partition
//! (finishes its episodes, returns its messages) and hands it over.
//!
//! The doorbell: a host that sends to a partition another host owns "rings"
//! (merges a time into the doorbell row, at most once a second). The owner
//! sees the change at its next tick and polls its queues at once, so idle
//! queues need no frequent polling.
//!
//! Expiry compares the writer's clock with the reader's: clocks must agree
//! within a few seconds (NTP). A disagreement costs duplicate work, never
//! correctness: the history's sentinel ETag still lets one writer win.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::{Entity, StorageError, TableOp};

use super::Engine;
use super::model::now_ms;

const PK: &str = "";
const DOORBELL: &str = "doorbell";
/// A host rings at most this often.
const RING_EVERY: Duration = Duration::from_secs(1);

/// One partition's row as last read or written.
#[derive(Debug, Clone)]
struct Row {
    owner: String,
    next_owner: String,
    /// ms since the epoch, writer's clock.
    expires: u64,
    etag: String,
}

/// What this host knows of the table.
#[derive(Default)]
pub struct Ownership {
    rows: Mutex<HashMap<u32, Row>>,
    doorbell: Mutex<Option<String>>,
    last_ring: Mutex<Option<Instant>>,
    /// Other hosts that were live at the last read.
    others: Mutex<usize>,
    /// The last tick's transaction succeeded with every partition ours.
    sole: AtomicBool,
    /// Tick again before the renewal period ends: a handover is under way.
    soon: AtomicBool,
    /// A drain finished: hand the partition over now.
    pub(crate) nudge: tokio::sync::Notify,
}

impl Ownership {
    /// A client (no host of its own): tell the hosts of every send.
    pub fn assume_others(&self) {
        *self.others.lock().expect("ownership lock") = 1;
    }

    pub fn other_hosts(&self) -> usize {
        *self.others.lock().expect("ownership lock")
    }
}

fn row_key(engine: &Engine, partition: u32) -> String {
    engine.hub.control_queue(partition)
}

fn lease_entity(engine: &Engine, partition: u32, owner: &str, next: &str, expires: u64) -> Entity {
    Entity::new(PK, row_key(engine, partition))
        .with("CurrentOwner", owner)
        .with("NextOwner", next)
        .with("ExpiresAt", super::model::iso(expires))
        .with("ExpiresAtMs", expires.to_string())
}

/// Hold partitions while the engine runs.
pub async fn manage(engine: Arc<Engine>) {
    let mut stop = engine.stop.subscribe();
    loop {
        if let Err(e) = tick(&engine).await {
            crate::storage::log_retrying("partition ownership", &e);
        }
        // While a handover is under way, look again in 2 s instead of 10.
        let pause = if engine.ownership.soon.swap(false, Ordering::AcqRel) {
            Duration::from_secs(2).min(engine.config.lease_renewal)
        } else {
            engine.config.lease_renewal
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = engine.ownership.nudge.notified() => {}
            _ = stop.changed() => return,
        }
    }
}

/// One renewal round.
async fn tick(engine: &Arc<Engine>) -> Result<(), StorageError> {
    lose_expired(engine).await;
    if engine.ownership.sole.load(Ordering::Acquire) && renew_sole(engine).await? {
        return Ok(());
    }
    engine.ownership.sole.store(false, Ordering::Release);
    rebalance(engine).await
}

/// Partitions whose renewal has not succeeded for a whole lease are not ours
/// any more (storage was unreachable): stop processing them.
async fn lose_expired(engine: &Arc<Engine>) {
    let expired: Vec<u32> = engine
        .partitions
        .lock()
        .expect("partitions lock")
        .values()
        .filter(|p| p.valid_until() < Instant::now())
        .map(|p| p.number)
        .collect();
    if expired.is_empty() {
        return;
    }
    // One line for all of them: an outage costs every partition at once.
    let mut expired = expired;
    expired.sort();
    let numbers: Vec<String> = expired.iter().map(u32::to_string).collect();
    tracing::warn!(
        "Host {} could not renew its ownership of partition{} {} in time; it stops processing \
         {} until it holds {} again",
        engine.host_id,
        if expired.len() == 1 { "" } else { "s" },
        numbers.join(", "),
        if expired.len() == 1 { "it" } else { "them" },
        if expired.len() == 1 { "it" } else { "them" },
    );
    for p in expired {
        engine.stop_partition(p, false).await;
    }
    // Read the table next: the rows may still be ours (nobody else could
    // reach storage either), and are then claimed again, not just renewed.
    engine.ownership.sole.store(false, Ordering::Release);
}

/// The one-call renewal of a host that owns every partition. False when the
/// table changed (someone asked for a partition, or rang): read it then.
async fn renew_sole(engine: &Arc<Engine>) -> Result<bool, StorageError> {
    let now = now_ms();
    let expires = now + engine.config.lease.as_millis() as u64;
    let held = engine.owned_partitions();
    let (mut ops, partitions) = {
        let rows = engine.ownership.rows.lock().expect("ownership lock");
        // A row renewed for a partition this host no longer processes would
        // keep it from everyone: the full round sorts that out.
        if rows.keys().any(|p| !held.contains(p)) {
            return Ok(false);
        }
        let mut ops = Vec::new();
        let mut partitions = Vec::new();
        for (p, row) in rows.iter() {
            ops.push(TableOp::Replace {
                entity: lease_entity(engine, *p, &engine.host_id, "", expires),
                etag: row.etag.clone(),
            });
            partitions.push(*p);
        }
        (ops, partitions)
    };
    let Some(bell) = engine
        .ownership
        .doorbell
        .lock()
        .expect("ownership lock")
        .clone()
    else {
        return Ok(false);
    };
    ops.push(TableOp::Replace {
        entity: Entity::new(PK, DOORBELL).with("Ring", "0"),
        etag: bell,
    });
    let started = Instant::now();
    match engine
        .hub
        .storage
        .tables
        .batch(&engine.hub.partitions_table(), ops)
        .await
    {
        Ok(etags) => {
            let mut rows = engine.ownership.rows.lock().expect("ownership lock");
            for (p, etag) in partitions.iter().zip(&etags) {
                if let (Some(row), Some(etag)) = (rows.get_mut(p), etag) {
                    row.etag = etag.clone();
                    row.expires = expires;
                }
            }
            *engine.ownership.doorbell.lock().expect("ownership lock") =
                etags.last().cloned().flatten();
            drop(rows);
            engine.renewed(&partitions, started);
            Ok(true)
        }
        Err(StorageError::Conflict(_)) | Err(StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Read the table, then renew, claim, ask for and hand over partitions in one transaction.
async fn rebalance(engine: &Arc<Engine>) -> Result<(), StorageError> {
    let table = engine.hub.partitions_table();
    let storage = &engine.hub.storage;
    let read = storage.tables.query_partition(&table, PK).await?;
    let started = Instant::now();
    let now = now_ms();
    let me = engine.host_id.as_str();

    let mut rows: HashMap<u32, Row> = HashMap::new();
    let mut bell: Option<String> = None;
    for e in &read {
        if e.row_key == DOORBELL {
            bell = e.etag.clone();
            continue;
        }
        let Some(p) = (0..engine.hub.partitions).find(|p| row_key(engine, *p) == e.row_key) else {
            continue;
        };
        rows.insert(
            p,
            Row {
                owner: e.str("CurrentOwner").unwrap_or_default().to_string(),
                next_owner: e.str("NextOwner").unwrap_or_default().to_string(),
                expires: e
                    .str("ExpiresAtMs")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                etag: e.etag.clone().unwrap_or_default(),
            },
        );
    }
    if rows.len() < engine.hub.partitions as usize || bell.is_none() {
        create_rows(engine, &rows, bell.is_none()).await?;
        return Box::pin(rebalance(engine)).await;
    }
    // A ring since our last look: poll every queue we own now.
    let rang = {
        let mut known = engine.ownership.doorbell.lock().expect("ownership lock");
        let rang = known.is_some() && *known != bell;
        *known = bell;
        rang
    };
    if rang {
        engine.wake_all();
    }

    let live = |r: &Row| !r.owner.is_empty() && r.expires > now;
    let mut hosts: Vec<String> = rows
        .values()
        .filter(|r| live(r))
        .map(|r| r.owner.clone())
        .chain(
            rows.values()
                .map(|r| r.next_owner.clone())
                .filter(|n| !n.is_empty()),
        )
        .chain([me.to_string()])
        .collect();
    hosts.sort();
    hosts.dedup();
    let fair = (engine.hub.partitions as usize).div_ceil(hosts.len());
    *engine.ownership.others.lock().expect("ownership lock") = hosts.len() - 1;

    let expires = now + engine.config.lease.as_millis() as u64;
    let held = engine.owned_partitions();
    let mut ops = Vec::new();
    let mut claimed = Vec::new();
    let mut renewed = Vec::new();
    let mut mine = 0usize;
    let mut order: Vec<u32> = rows.keys().copied().collect();
    order.sort();
    for p in &order {
        let r = &rows[p];
        if r.owner == me && live(r) {
            if !held.contains(p) {
                // Ours by the table, not running here (we lost it a moment ago): let it expire.
                continue;
            }
            if !r.next_owner.is_empty() && r.next_owner != me {
                // Asked for: drain it, then hand it over.
                if engine.drained(*p) {
                    tracing::info!(
                        "Host {me} hands partition {p} ({}) over to host {}",
                        row_key(engine, *p),
                        r.next_owner
                    );
                    ops.push(TableOp::Replace {
                        entity: lease_entity(engine, *p, &r.next_owner, "", expires),
                        etag: r.etag.clone(),
                    });
                } else {
                    engine.begin_drain(*p);
                    ops.push(TableOp::Replace {
                        entity: lease_entity(engine, *p, me, &r.next_owner, expires),
                        etag: r.etag.clone(),
                    });
                    renewed.push(*p);
                }
                continue;
            }
            mine += 1;
            renewed.push(*p);
            ops.push(TableOp::Replace {
                entity: lease_entity(engine, *p, me, "", expires),
                etag: r.etag.clone(),
            });
        }
    }
    // Partitions ours by the table but not by this process (lost, then the
    // row came back to us, or handed over to us): start them as claims.
    for p in &order {
        let r = &rows[p];
        let handed_to_me = r.owner == me && live(r) && !held.contains(p);
        let free = !live(r);
        if mine < fair && (free || handed_to_me) {
            mine += 1;
            claimed.push(*p);
            ops.push(TableOp::Replace {
                entity: lease_entity(engine, *p, me, "", expires),
                etag: r.etag.clone(),
            });
        }
    }
    // Partitions already asked for count as ours: ask for no more than the share.
    mine += rows
        .values()
        .filter(|r| live(r) && r.owner != me && r.next_owner == me)
        .count();
    let mut asked = false;
    if mine < fair {
        // Ask hosts with more than their share for partitions, up to ours.
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in rows.values().filter(|r| live(r)) {
            *counts.entry(r.owner.clone()).or_default() += 1;
        }
        for p in &order {
            if mine >= fair {
                break;
            }
            let r = &rows[p];
            let over = counts.get(&r.owner).is_some_and(|c| *c > fair);
            if live(r) && r.owner != me && r.next_owner.is_empty() && over {
                *counts.get_mut(&r.owner).expect("counted") -= 1;
                mine += 1;
                asked = true;
                ops.push(TableOp::Replace {
                    entity: lease_entity(engine, *p, &r.owner, me, r.expires),
                    etag: r.etag.clone(),
                });
            }
        }
    }
    // Waiting for partitions handed over to us, or handing ours over.
    let handing = rows.values().any(|r| live(r) && !r.next_owner.is_empty());
    if handing || asked {
        engine.ownership.soon.store(true, Ordering::Release);
    }
    if ops.is_empty() {
        *engine.ownership.rows.lock().expect("ownership lock") = rows;
        return Ok(());
    }
    let written: Vec<u32> = ops
        .iter()
        .filter_map(|op| match op {
            TableOp::Replace { entity, .. } => {
                (0..engine.hub.partitions).find(|p| row_key(engine, *p) == entity.row_key)
            }
            _ => None,
        })
        .collect();
    let entities: Vec<Entity> = ops
        .iter()
        .filter_map(|op| match op {
            TableOp::Replace { entity, .. } => Some(entity.clone()),
            _ => None,
        })
        .collect();
    let etags = match storage.tables.batch(&table, ops).await {
        Ok(etags) => etags,
        // Someone wrote between our read and our write: next tick.
        Err(StorageError::Conflict(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    for ((p, entity), etag) in written.iter().zip(&entities).zip(etags) {
        rows.insert(
            *p,
            Row {
                owner: entity.str("CurrentOwner").unwrap_or_default().to_string(),
                next_owner: entity.str("NextOwner").unwrap_or_default().to_string(),
                expires: entity
                    .str("ExpiresAtMs")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                etag: etag.unwrap_or_default(),
            },
        );
    }
    let handed: Vec<u32> = written
        .iter()
        .copied()
        .filter(|p| rows[p].owner != me)
        .collect();
    let sole = rows.values().all(|r| r.owner == me) && hosts.len() == 1;
    *engine.ownership.rows.lock().expect("ownership lock") = rows;
    engine.renewed(&renewed, started);
    for p in handed {
        engine.stop_partition(p, true).await;
    }
    for p in claimed {
        tracing::info!(
            "Host {me} took partition {p} ({})",
            engine.hub.control_queue(p)
        );
        engine.start_partition(p, started);
    }
    engine.ownership.sole.store(sole, Ordering::Release);
    Ok(())
}

/// The rows of a new task hub (or of partitions added since), and the doorbell.
async fn create_rows(
    engine: &Engine,
    existing: &HashMap<u32, Row>,
    doorbell: bool,
) -> Result<(), StorageError> {
    let mut ops: Vec<TableOp> = (0..engine.hub.partitions)
        .filter(|p| !existing.contains_key(p))
        .map(|p| TableOp::Insert(lease_entity(engine, p, "", "", 0)))
        .collect();
    if doorbell {
        ops.push(TableOp::Insert(Entity::new(PK, DOORBELL).with("Ring", "0")));
    }
    match engine
        .hub
        .storage
        .tables
        .batch(&engine.hub.partitions_table(), ops)
        .await
    {
        // Another host created them at the same moment.
        Ok(_) | Err(StorageError::Conflict(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Tell the owners of other partitions to poll now (at most once a second).
pub async fn ring(engine: &Engine) {
    {
        let mut last = engine.ownership.last_ring.lock().expect("ownership lock");
        if last.is_some_and(|t| t.elapsed() < RING_EVERY) {
            return;
        }
        *last = Some(Instant::now());
    }
    let bell = Entity::new(PK, DOORBELL)
        .with("Ring", now_ms().to_string())
        .with("RungBy", engine.host_id.as_str());
    if let Err(e) = engine
        .hub
        .storage
        .tables
        .execute(&engine.hub.partitions_table(), TableOp::Merge(bell))
        .await
    {
        tracing::debug!("ringing the doorbell: {e}");
    }
}

/// Give up every partition (at shutdown), in one transaction.
pub async fn release_all(engine: &Engine, partitions: &[u32]) {
    let ops: Vec<TableOp> = {
        let rows = engine.ownership.rows.lock().expect("ownership lock");
        partitions
            .iter()
            .filter_map(|p| {
                let r = rows.get(p)?;
                Some(TableOp::Replace {
                    entity: lease_entity(engine, *p, "", "", 0),
                    etag: r.etag.clone(),
                })
            })
            .collect()
    };
    if ops.is_empty() {
        return;
    }
    if let Err(e) = engine
        .hub
        .storage
        .tables
        .batch(&engine.hub.partitions_table(), ops)
        .await
    {
        tracing::debug!("releasing partitions: {e}");
    }
}
