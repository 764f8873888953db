//! A partition this host owns: its control-queue poller, and its instances,
//! each processed by one episode at a time as its messages arrive.
//!
//! Work for an instance comes from the control queue (packed messages are
//! unpacked here), from activities that ran on this host (their results go
//! straight to the instance, no queue), and from the engine itself (recovery
//! after a takeover, deferred status writes). While an episode runs, new work
//! for the instance waits and is taken by the next episode, so a busy
//! instance is checkpointed once per batch of results, not once per result.
//!
//! Polling: 100 ms, doubling while the queue stays empty, up to
//! maxQueuePollingInterval. After that the queue is parked: polled again when
//! this host sends to it, when another host rings the doorbell, when a timer
//! or retry this host knows of falls due, and at the latest after ten times
//! maxQueuePollingInterval.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::runtime::OrchestratorSession;
use crate::storage::StorageError;

use super::Engine;
use super::history::History;
use super::holds::Held;
use super::model::{ControlMessage, InstanceRow, RuntimeStatus};

/// Work items waiting in a partition beyond which it stops receiving.
const MAX_BACKLOG: usize = 5000;

/// One unit of work for an instance's next episode.
// Nearly every value is a Message: boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Work {
    /// A control message (from the queue, with the queue message to settle,
    /// or from a local activity).
    Message {
        message: ControlMessage,
        held: Option<Arc<Held>>,
    },
    /// Check the instance for work a dead host left unfinished.
    Recover,
    /// Write the status row that an earlier episode deferred.
    FlushRow,
}

/// What this host keeps of an instance between its episodes.
pub struct Cached {
    pub history: History,
    /// The row as this host last wrote it, and its ETag.
    pub row: Option<(InstanceRow, String)>,
    /// A newer row not written yet (a non-final change, written within a second).
    pub dirty: Option<InstanceRow>,
    /// The orchestrator's live wasm instance (extended sessions).
    pub session: Option<OrchestratorSession>,
    pub last_used: Instant,
}

#[derive(Default)]
struct Slot {
    pending: Vec<Work>,
    running: bool,
    cache: Option<Cached>,
    /// Task ids of the current execution running on this host now.
    local: HashSet<u32>,
    /// When a deferred row write is due.
    flush_at: Option<Instant>,
    /// Episodes that failed in a row.
    failures: u32,
}

/// An owned partition.
pub struct Partition {
    pub number: u32,
    pub queue: String,
    wake: Notify,
    slots: Mutex<HashMap<String, Slot>>,
    /// Items waiting in slots (backlog bound).
    backlog: AtomicUsize,
    /// Cleared when the partition is being drained or was lost: no new episodes.
    active: AtomicBool,
    episodes: AtomicUsize,
    idle: Notify,
    /// Renewals keep this ahead of now; past it the partition is not ours.
    valid_until: Mutex<Instant>,
    /// The earliest time a message this host knows of becomes visible (timers).
    due: Mutex<Option<Instant>>,
}

impl Partition {
    pub fn new(engine: &Engine, number: u32, renewed_at: Instant) -> Partition {
        Partition {
            number,
            queue: engine.hub.control_queue(number),
            wake: Notify::new(),
            slots: Mutex::new(HashMap::new()),
            backlog: AtomicUsize::new(0),
            active: AtomicBool::new(true),
            episodes: AtomicUsize::new(0),
            idle: Notify::new(),
            valid_until: Mutex::new(renewed_at + validity(engine)),
            due: Mutex::new(None),
        }
    }

    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    pub fn valid_until(&self) -> Instant {
        *self.valid_until.lock().expect("partition lock")
    }

    pub fn renewed(&self, engine: &Engine, at: Instant) {
        *self.valid_until.lock().expect("partition lock") = at + validity(engine);
    }

    /// Poll now.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// A message becomes visible at `at`: poll then.
    pub fn due_at(&self, at: Instant) {
        let mut due = self.due.lock().expect("partition lock");
        if due.is_none_or(|d| at < d) {
            *due = Some(at);
        }
        drop(due);
        self.wake.notify_one();
    }

    /// Hand `works` to the instance; start its episode if none runs.
    pub fn push(self: &Arc<Self>, engine: &Arc<Engine>, instance: &str, works: Vec<Work>) {
        if works.is_empty() {
            return;
        }
        let start = {
            let mut slots = self.slots.lock().expect("partition lock");
            let slot = slots.entry(instance.to_string()).or_default();
            self.backlog.fetch_add(works.len(), Ordering::Relaxed);
            slot.pending.extend(works);
            let start = !slot.running && self.is_active();
            slot.running |= start;
            start
        };
        if start {
            tokio::spawn(run_instance(
                engine.clone(),
                self.clone(),
                instance.to_string(),
            ));
        }
    }

    /// Record that task `id` of `instance` runs here now (or stopped running).
    pub fn set_local(&self, instance: &str, ids: &[u32], running: bool) {
        let mut slots = self.slots.lock().expect("partition lock");
        let slot = slots.entry(instance.to_string()).or_default();
        for id in ids {
            if running {
                slot.local.insert(*id);
            } else {
                slot.local.remove(id);
            }
        }
    }

    pub fn local_tasks(&self, instance: &str) -> HashSet<u32> {
        self.slots
            .lock()
            .expect("partition lock")
            .get(instance)
            .map(|s| s.local.clone())
            .unwrap_or_default()
    }

    /// Ask for a row write within `delay` (an episode deferred it).
    pub fn flush_later(&self, instance: &str, delay: Duration) {
        let mut slots = self.slots.lock().expect("partition lock");
        let slot = slots.entry(instance.to_string()).or_default();
        let at = Instant::now() + delay;
        if slot.flush_at.is_none_or(|t| at < t) {
            slot.flush_at = Some(at);
        }
    }

    /// Stop taking work. Episodes under way finish (their checkpoints are
    /// still guarded by the history's ETag).
    pub fn deactivate(&self) {
        self.active.store(false, Ordering::Release);
        self.wake.notify_one();
        self.idle.notify_waiters();
    }

    /// Wait until no episode runs (at most `limit`).
    pub async fn wait_idle(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.episodes.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            let _ = tokio::time::timeout(Duration::from_millis(50), self.idle.notified()).await;
        }
    }

    pub fn is_idle(&self) -> bool {
        self.episodes.load(Ordering::Acquire) == 0
    }

    /// Instances with cached state, for the cache bound.
    pub fn cached_count(&self) -> usize {
        self.slots
            .lock()
            .expect("partition lock")
            .values()
            .filter(|s| s.cache.is_some())
            .count()
    }

    /// Drop cached histories and sessions idle longer than `idle` (all of
    /// them for zero), and start the row writes that fell due.
    fn sweep(self: &Arc<Self>, engine: &Arc<Engine>, session_idle: Duration) {
        let now = Instant::now();
        let mut flush = Vec::new();
        {
            let mut slots = self.slots.lock().expect("partition lock");
            for (id, slot) in slots.iter_mut() {
                if let Some(c) = slot.cache.as_mut()
                    && c.session.is_some()
                    && now.duration_since(c.last_used) > session_idle
                {
                    c.session = None;
                }
                if slot.flush_at.is_some_and(|t| t <= now) {
                    slot.flush_at = None;
                    flush.push(id.clone());
                }
            }
            slots.retain(|_, s| {
                s.running
                    || !s.pending.is_empty()
                    || s.cache.is_some()
                    || !s.local.is_empty()
                    || s.flush_at.is_some()
            });
        }
        for id in flush {
            self.push(engine, &id, vec![Work::FlushRow]);
        }
    }

    /// Forget the cached history of one instance (purged or rewound by a client).
    pub fn forget(&self, instance: &str) {
        if let Some(slot) = self.slots.lock().expect("partition lock").get_mut(instance)
            && !slot.running
        {
            slot.cache = None;
        }
    }

    /// Forget every cached history and session (the cache bound was reached).
    pub fn forget_caches(&self) {
        for slot in self.slots.lock().expect("partition lock").values_mut() {
            if !slot.running && slot.cache.as_ref().is_none_or(|c| c.dirty.is_none()) {
                slot.cache = None;
            }
        }
    }
}

/// How long after a renewal the partition is surely still ours: the lease
/// less a margin for clocks and the time the renewal took.
fn validity(engine: &Engine) -> Duration {
    engine.config.lease.saturating_sub(Duration::from_secs(5))
}

/// Episodes of one instance, one after another, while it has work.
async fn run_instance(engine: Arc<Engine>, part: Arc<Partition>, id: String) {
    loop {
        let permit = engine
            .episode_slots
            .clone()
            .acquire_owned()
            .await
            .expect("never closed");
        let (works, mut cache, tries) = {
            let mut slots = part.slots.lock().expect("partition lock");
            let slot = slots.entry(id.clone()).or_default();
            if slot.pending.is_empty() || !part.is_active() {
                slot.running = false;
                return;
            }
            let works = std::mem::take(&mut slot.pending);
            part.backlog.fetch_sub(works.len(), Ordering::Relaxed);
            (works, slot.cache.take(), slot.failures)
        };
        part.episodes.fetch_add(1, Ordering::AcqRel);
        let result = super::episode::run(&engine, &part, &id, &works, &mut cache, tries).await;
        drop(permit);
        let retry = match result {
            Ok(super::episode::Outcome::Done) => {
                let helds: Vec<Arc<Held>> = works
                    .iter()
                    .filter_map(|w| match w {
                        Work::Message { held, .. } => held.clone(),
                        _ => None,
                    })
                    .collect();
                for held in &helds {
                    engine.holds.settle(&engine.hub.storage, held).await;
                }
                None
            }
            Ok(super::episode::Outcome::Retry(delay)) => Some((delay, None)),
            Err(e) => {
                cache = None;
                Some((Duration::from_secs(1), Some(e)))
            }
        };
        let failures = {
            let mut slots = part.slots.lock().expect("partition lock");
            let slot = slots.entry(id.clone()).or_default();
            slot.cache = cache;
            if let Some(c) = slot.cache.as_mut() {
                c.last_used = Instant::now();
            }
            match &retry {
                Some(_) => {
                    part.backlog.fetch_add(works.len(), Ordering::Relaxed);
                    let later = std::mem::replace(&mut slot.pending, works);
                    slot.pending.extend(later);
                    slot.failures += 1;
                }
                None => slot.failures = 0,
            }
            slot.failures
        };
        part.episodes.fetch_sub(1, Ordering::AcqRel);
        part.idle.notify_waiters();
        if let Some((delay, error)) = retry {
            if let Some(e) = &error {
                report_failure(&id, failures, e);
            }
            // Back off while storage is unwell; a poison message stops after 5 tries.
            let pause = delay.max(Duration::from_millis(250 * u64::from(failures.min(20))));
            tokio::time::sleep(pause).await;
            if failures >= 5
                && error
                    .as_ref()
                    .is_some_and(|e| !matches!(e, StorageError::Unavailable(_)))
            {
                super::episode::set_aside(&engine, &part, &id).await;
            }
        }
        let mut slots = part.slots.lock().expect("partition lock");
        let slot = slots.entry(id.clone()).or_default();
        if slot.pending.is_empty() || !part.is_active() {
            slot.running = false;
            return;
        }
    }
}

fn report_failure(id: &str, failures: u32, e: &StorageError) {
    if failures == 1 || failures.is_power_of_two() {
        tracing::warn!("orchestration '{id}': episode failed ({failures}x), will retry: {e}");
    } else {
        tracing::debug!("orchestration '{id}': episode failed ({failures}x): {e}");
    }
}

/// Take the items waiting for `instance` (for setting poison messages aside).
pub fn take_pending(part: &Partition, instance: &str) -> Vec<Work> {
    let mut slots = part.slots.lock().expect("partition lock");
    let Some(slot) = slots.get_mut(instance) else {
        return Vec::new();
    };
    let works = std::mem::take(&mut slot.pending);
    part.backlog.fetch_sub(works.len(), Ordering::Relaxed);
    slot.failures = 0;
    works
}

/// Receive the control queue while the partition is ours.
pub async fn poll(engine: Arc<Engine>, part: Arc<Partition>) {
    let max = engine.config.max_polling_interval;
    let min = Duration::from_millis(100).min(max);
    let parked_poll = max * 10;
    let mut interval = min;
    let mut parked = false;
    let mut stop = engine.stop.subscribe();
    let sweep_every = Duration::from_secs(1);
    let mut last_sweep = Instant::now();
    loop {
        if !part.is_active() || *stop.borrow() {
            return;
        }
        if last_sweep.elapsed() >= sweep_every {
            part.sweep(&engine, engine.config.session_idle);
            last_sweep = Instant::now();
        }
        if part.backlog.load(Ordering::Relaxed) >= MAX_BACKLOG {
            let _ = tokio::time::timeout(Duration::from_millis(50), part.idle.notified()).await;
            continue;
        }
        let got = receive(&engine, &part).await;
        match got {
            Ok(n) if n >= engine.config.control_batch as usize => {
                interval = min;
                parked = false;
                continue;
            }
            Ok(n) if n > 0 => {
                interval = min;
                parked = false;
            }
            Ok(_) => {
                if interval >= max {
                    parked = true;
                }
                interval = (interval * 2).min(max);
            }
            Err(e) => {
                tracing::warn!("reading {}: {e}", part.queue);
                interval = (interval * 2).min(max);
            }
        }
        let now = Instant::now();
        let mut wait = if parked { parked_poll } else { interval };
        if let Some(due) = *part.due.lock().expect("partition lock") {
            wait = wait.min(due.saturating_duration_since(now));
        }
        // Wake at least every second for the sweep (in memory, no storage call).
        let deadline = now + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(left.min(sweep_every)) => {
                    part.sweep(&engine, engine.config.session_idle);
                    last_sweep = Instant::now();
                }
                _ = part.wake.notified() => {
                    interval = min;
                    parked = false;
                    break;
                }
                _ = stop.changed() => return,
            }
        }
        let mut due = part.due.lock().expect("partition lock");
        if due.is_some_and(|d| d <= Instant::now()) {
            *due = None;
        }
    }
}

/// One receive: hold the messages and hand their content to the instances.
async fn receive(engine: &Arc<Engine>, part: &Arc<Partition>) -> Result<usize, StorageError> {
    let messages = engine
        .hub
        .storage
        .queues
        .receive(
            &part.queue,
            engine.config.control_batch,
            engine.config.control_visibility,
        )
        .await?;
    let count = messages.len();
    let mut by_instance: HashMap<String, Vec<Work>> = HashMap::new();
    for message in messages {
        let inner = match engine.hub.decode_control(&message.text).await {
            Ok(inner) if !inner.is_empty() => inner,
            Ok(_) => {
                let _ = engine
                    .hub
                    .storage
                    .queues
                    .delete(&part.queue, &message)
                    .await;
                continue;
            }
            Err(e) => {
                super::poison::unreadable(engine, &part.queue, &message, &e).await;
                continue;
            }
        };
        let Some(held) = engine
            .holds
            .hold(
                &part.queue,
                message,
                inner.len(),
                engine.config.control_visibility,
                Some(part.number),
            )
            .await
        else {
            continue;
        };
        for m in inner {
            by_instance
                .entry(m.instance_id.clone())
                .or_default()
                .push(Work::Message {
                    message: m,
                    held: Some(held.clone()),
                });
        }
    }
    for (id, works) in by_instance {
        part.push(engine, &id, works);
    }
    Ok(count)
}

/// After a takeover: every instance of this partition that may have work in
/// flight gets a recovery check (activities the dead host ran locally are
/// run again; its timers are noted). One query page per 1,000 unfinished
/// instances of the hub, and a history read for each of this partition's.
pub async fn scan(engine: Arc<Engine>, part: Arc<Partition>) {
    let filter = super::instances::Filter {
        statuses: vec![
            RuntimeStatus::Pending,
            RuntimeStatus::Running,
            RuntimeStatus::Suspended,
            RuntimeStatus::ContinuedAsNew,
        ],
        ..Default::default()
    };
    let mut continuation: Option<String> = None;
    loop {
        if !part.is_active() {
            return;
        }
        match super::instances::query_ids(&engine.hub, &filter, continuation.as_deref()).await {
            Ok((ids, next)) => {
                for id in ids {
                    if engine.hub.partition_of(&id) == part.number {
                        part.push(&engine, &id, vec![Work::Recover]);
                    }
                }
                match next {
                    Some(n) => continuation = Some(n),
                    None => return,
                }
            }
            Err(e) => {
                tracing::warn!(
                    "partition {}: looking for unfinished instances: {e}",
                    part.number
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
