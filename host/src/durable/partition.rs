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

use std::collections::{BTreeSet, HashMap, HashSet};
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
#[derive(Clone)]
pub enum Work {
    /// A control message (from the queue, with the queue message to settle,
    /// or from a local activity).
    Message {
        message: ControlMessage,
        held: Option<Arc<Held>>,
        /// A client waits for this start to be durable (a local start).
        ack: Option<Ack>,
        /// A start of an id the client generated: no history can exist.
        new_id: bool,
    },
    /// Check the instance for work a dead host left unfinished.
    Recover,
    /// Write what earlier episodes deferred: the history records not
    /// checkpointed yet, and the status row once it is due (`all`: now).
    Flush { all: bool },
}

/// Told once the start it belongs to is checkpointed (its status row written).
pub type Ack = Arc<Mutex<Option<tokio::sync::oneshot::Sender<()>>>>;

impl Work {
    /// A client waits on it.
    pub fn acked(&self) -> bool {
        matches!(self, Work::Message { ack: Some(_), .. })
    }
}

/// What this host keeps of an instance between its episodes.
pub struct Cached {
    /// The history; its last `unwritten` records are not checkpointed yet.
    pub history: History,
    /// The work whose effects are in those records: settled (its queue
    /// messages deleted) once they are written, taken again if they are lost.
    pub tail_works: Vec<Work>,
    /// The row as this host last wrote it, and its ETag.
    pub row: Option<(InstanceRow, String)>,
    /// A newer row not written yet (a non-final change), and when it is due.
    pub dirty: Option<InstanceRow>,
    pub row_due: Option<Instant>,
    /// The orchestrator's live wasm instance (extended sessions).
    pub session: Option<OrchestratorSession>,
    pub last_used: Instant,
    /// An entity's record blob (when too large for its row), and the blobs
    /// of its earlier records, with when they were replaced.
    pub payload_blob: Option<String>,
    pub retired: Vec<(String, Instant)>,
}

impl Cached {
    pub fn new(history: History) -> Cached {
        Cached {
            history,
            tail_works: Vec::new(),
            row: None,
            dirty: None,
            row_due: None,
            session: None,
            last_used: Instant::now(),
            payload_blob: None,
            retired: Vec::new(),
        }
    }
}

#[derive(Default)]
struct Slot {
    pending: Vec<Work>,
    running: bool,
    cache: Option<Cached>,
    /// Task ids of the current execution running on this host now.
    local: HashSet<u32>,
    /// When the next deferred write is due (a timer pushes a Flush then).
    flush_at: Option<Instant>,
    /// Episodes that failed in a row.
    failures: u32,
    /// When its last episode began.
    last_episode: Option<Instant>,
    /// Set while its next episode waits out [`BATCH_WINDOW`]: wakes it early.
    early: Option<Arc<Notify>>,
    /// Works handed to it, and works its finished episodes took (for readers
    /// waiting for what was sent before they read).
    pushed: u64,
    finished: u64,
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
    /// Another host asked for it: a drain is under way.
    pub draining: AtomicBool,
    episodes: AtomicUsize,
    idle: Notify,
    /// Renewals keep this ahead of now; past it the partition is not ours.
    valid_until: Mutex<Instant>,
    /// When messages this host knows of become visible (timers), earliest first.
    due: Mutex<BTreeSet<Instant>>,
    /// Client signals to this partition's entities, stored before they apply.
    pub log: Arc<super::signal_log::Lane>,
}

/// How long signals to a busy entity gather before its next episode: a
/// stream of signals is applied twice a second, as many per write as came
/// meanwhile (100 entities signalled by 32 HTTP clients: ~6 per write, not 1).
/// A call, a lock, a flush or a reader of the entity's state does not wait.
const BATCH_WINDOW: Duration = Duration::from_millis(500);

/// A signal to an entity that a queue message or the signal log holds: no
/// one waits for it, so it can wait for others.
fn stored_signal(work: &Work) -> bool {
    matches!(work, Work::Message { message, held: Some(_), .. }
        if matches!(&message.event, super::model::ControlEvent::Entity(op)
            if op.caller.is_none() && op.lock.is_none()))
}

/// A delayed message shows up to a second after its due time (queue delays are
/// whole seconds) plus the send's latency: the partition polls often from a due
/// time until this long after it.
const DUE_GRACE: Duration = Duration::from_secs(3);
/// How often it polls meanwhile.
const DUE_POLL: Duration = Duration::from_millis(250);

impl Partition {
    pub fn new(engine: &Engine, number: u32, renewed_at: Instant) -> Partition {
        Partition {
            number,
            queue: engine.hub.control_queue(number),
            wake: Notify::new(),
            slots: Mutex::new(HashMap::new()),
            backlog: AtomicUsize::new(0),
            active: AtomicBool::new(true),
            draining: AtomicBool::new(false),
            episodes: AtomicUsize::new(0),
            idle: Notify::new(),
            valid_until: Mutex::new(renewed_at + validity(engine)),
            due: Mutex::new(BTreeSet::new()),
            log: Arc::default(),
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

    /// A message becomes visible at `at`: poll then (and shortly after).
    pub fn due_at(&self, at: Instant) {
        let mut due = self.due.lock().expect("partition lock");
        // Due times a few ms apart need no poll each: round to 100 ms.
        let first = due
            .range(at.checked_sub(DUE_POLL / 2).unwrap_or(at)..)
            .next()
            .copied();
        if first.is_none_or(|d| d > at + DUE_POLL / 2) {
            due.insert(at);
        }
        drop(due);
        self.wake.notify_one();
    }

    pub fn log_lane(&self) -> Arc<super::signal_log::Lane> {
        self.log.clone()
    }

    /// Hand `works` to the instance; start its episode if none runs. Stored
    /// signals for an entity that had an episode less than [`BATCH_WINDOW`]
    /// ago wait for the rest of that window, so that a busy entity applies
    /// its signals several to a write.
    pub fn push(self: &Arc<Self>, engine: &Arc<Engine>, instance: &str, works: Vec<Work>) {
        if works.is_empty() {
            return;
        }
        let wait = works.iter().all(stored_signal);
        let (start, after) = {
            let mut slots = self.slots.lock().expect("partition lock");
            let slot = slots.entry(instance.to_string()).or_default();
            self.backlog.fetch_add(works.len(), Ordering::Relaxed);
            slot.pushed += works.len() as u64;
            slot.pending.extend(works);
            let start = !slot.running && self.is_active();
            slot.running |= start;
            let after = slot
                .last_episode
                .map(|t| t + BATCH_WINDOW)
                .filter(|t| start && wait && *t > Instant::now())
                .map(|t| (t, slot.early.insert(Arc::new(Notify::new())).clone()));
            if !wait && let Some(early) = slot.early.take() {
                // Someone waits for this work: the episode goes now.
                early.notify_one();
            }
            (start, after)
        };
        if start {
            let run = run_instance(engine.clone(), self.clone(), instance.to_string());
            match after {
                Some((at, early)) => {
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = tokio::time::sleep_until(at.into()) => {}
                            _ = early.notified() => {}
                        }
                        run.await
                    });
                }
                None => {
                    tokio::spawn(run);
                }
            }
        }
    }

    /// Start the episode of `instance` now if it waits out the batch window.
    pub fn hurry(&self, instance: &str) {
        if let Some(early) = self
            .slots
            .lock()
            .expect("partition lock")
            .get_mut(instance)
            .and_then(|s| s.early.take())
        {
            early.notify_one();
        }
    }

    /// Wait until the work handed to `instance` so far has been through an
    /// episode (at most `limit`; not at all when the partition is going).
    pub async fn wait_applied(&self, instance: &str, limit: Duration) {
        let target = match self.slots.lock().expect("partition lock").get(instance) {
            Some(s) => s.pushed,
            None => return,
        };
        let deadline = Instant::now() + limit;
        while self.is_active() && Instant::now() < deadline {
            let done = self
                .slots
                .lock()
                .expect("partition lock")
                .get(instance)
                .is_none_or(|s| s.finished >= target);
            if done {
                return;
            }
            let _ = tokio::time::timeout(Duration::from_millis(20), self.idle.notified()).await;
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

    /// Push a Flush for `instance` after `delay` (an episode deferred a write).
    pub fn flush_later(self: &Arc<Self>, engine: &Arc<Engine>, instance: &str, delay: Duration) {
        let at = Instant::now() + delay;
        {
            let mut slots = self.slots.lock().expect("partition lock");
            let slot = slots.entry(instance.to_string()).or_default();
            if slot.flush_at.is_some_and(|t| t <= at) {
                return;
            }
            slot.flush_at = Some(at);
        }
        let (engine, part, instance) = (engine.clone(), self.clone(), instance.to_string());
        tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            let due = {
                let mut slots = part.slots.lock().expect("partition lock");
                match slots.get_mut(&instance) {
                    Some(slot) if slot.flush_at == Some(at) => {
                        slot.flush_at = None;
                        true
                    }
                    _ => false,
                }
            };
            if due {
                part.push(&engine, &instance, vec![Work::Flush { all: false }]);
            }
        });
    }

    /// Write every deferred history and row now (before the partition is
    /// handed over or the host stops), waiting at most `limit`.
    pub async fn flush_all(self: &Arc<Self>, engine: &Arc<Engine>, limit: Duration) {
        let pending: Vec<String> = {
            let slots = self.slots.lock().expect("partition lock");
            slots
                .iter()
                .filter(|(_, s)| {
                    s.cache
                        .as_ref()
                        .is_some_and(|c| c.history.unwritten > 0 || c.dirty.is_some())
                        || s.running
                })
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in &pending {
            self.push(engine, id, vec![Work::Flush { all: true }]);
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            let left = {
                let slots = self.slots.lock().expect("partition lock");
                slots.values().any(|s| {
                    s.running
                        || s.cache
                            .as_ref()
                            .is_some_and(|c| c.history.unwritten > 0 || c.dirty.is_some())
                })
            };
            if !left {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
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

    /// Drop the sessions idle longer than `idle`, and forget idle slots.
    fn sweep(&self, session_idle: Duration) {
        let now = Instant::now();
        let mut slots = self.slots.lock().expect("partition lock");
        for slot in slots.values_mut() {
            if let Some(c) = slot.cache.as_mut()
                && c.session.is_some()
                && now.duration_since(c.last_used) > session_idle
            {
                c.session = None;
            }
        }
        slots.retain(|_, s| {
            s.running
                || !s.pending.is_empty()
                || s.cache.is_some()
                || !s.local.is_empty()
                || s.flush_at.is_some()
                || s.last_episode
                    .is_some_and(|t| now.duration_since(t) < BATCH_WINDOW)
        });
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
            if !slot.running
                && slot
                    .cache
                    .as_ref()
                    .is_none_or(|c| c.dirty.is_none() && c.history.unwritten == 0)
            {
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
            slot.last_episode = Some(Instant::now());
            slot.early = None;
            (works, slot.cache.take(), slot.failures)
        };
        part.episodes.fetch_add(1, Ordering::AcqRel);
        let result = super::episode::run(&engine, &part, &id, &works, &mut cache, tries).await;
        drop(permit);
        let retry = match result {
            Ok(super::episode::Outcome::Done(settled)) => {
                for w in &settled {
                    if let Work::Message { held, ack, .. } = w {
                        if let Some(held) = held {
                            engine.holds.settle(&engine.hub.storage, held).await;
                        }
                        if let Some(sender) = ack
                            .as_ref()
                            .and_then(|a| a.lock().expect("ack lock").take())
                        {
                            let _ = sender.send(());
                        }
                    }
                }
                None
            }
            Ok(super::episode::Outcome::Retry(delay)) => Some((delay, None)),
            Err(e) => Some((Duration::from_secs(1), Some(e))),
        };
        let taken = works.len() as u64;
        // Work whose effects were lost with the cache is taken again.
        let mut works = works;
        if retry.is_some() {
            if let Some(c) = cache.take_if(|_| matches!(retry, Some((_, Some(_))))) {
                let mut again = c.tail_works;
                again.append(&mut works);
                works = again;
            }
        } else {
            works.clear();
        }
        // A finished instance is not cached: clients (a rewind, a restart,
        // `host durable` in another process) may change it behind our back.
        if cache
            .as_ref()
            .is_some_and(|c| c.history.is_finished() && c.history.unwritten == 0)
        {
            cache = None;
        }
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
                None => {
                    slot.failures = 0;
                    slot.finished += taken;
                }
            }
            slot.failures
        };
        part.episodes.fetch_sub(1, Ordering::AcqRel);
        part.idle.notify_waiters();
        if let Some((delay, error)) = retry {
            if let Some(e) = &error {
                report_failure(&id, failures, e);
            }
            // Back off while storage is unwell; a poison message (the same kind of
            // refusal 5 times: not an outage, not a competing writer) stops after 5 tries.
            let pause = delay.max(Duration::from_millis(250 * u64::from(failures.min(20))));
            tokio::time::sleep(pause).await;
            if failures >= 5
                && let Some(e) = error
                    .as_ref()
                    .filter(|e| matches!(e, StorageError::Other(_) | StorageError::NotFound(_)))
            {
                super::episode::set_aside(&engine, &part, &id, e).await;
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
    // An outage is reported once by the storage layer, not once per instance.
    if !e.is_unavailable() && (failures == 1 || failures.is_power_of_two()) {
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
    // Set aside: readers waiting for them wait no more.
    slot.finished += works.len() as u64;
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
    // What the signal log holds goes first: a client's later signals may be in the queue.
    part.log
        .wait_opened(|| part.is_active() && !*stop.borrow())
        .await;
    loop {
        if !part.is_active() || *stop.borrow() {
            return;
        }
        if last_sweep.elapsed() >= sweep_every {
            part.sweep(engine.config.session_idle);
            last_sweep = Instant::now();
        }
        if part.backlog.load(Ordering::Relaxed) >= MAX_BACKLOG {
            let _ = tokio::time::timeout(Duration::from_millis(50), part.idle.notified()).await;
            continue;
        }
        let polled_at = Instant::now();
        let got = receive(&engine, &part).await;
        if matches!(got, Ok(n) if n > 0) {
            // What was due by now has most likely come: stop polling for it.
            let mut due = part.due.lock().expect("partition lock");
            while due.first().is_some_and(|d| *d <= polled_at) {
                due.pop_first();
            }
        }
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
                crate::storage::log_retrying(format_args!("reading {}", part.queue), &e);
                interval = (interval * 2).min(max);
            }
        }
        let now = Instant::now();
        let mut wait = if parked { parked_poll } else { interval };
        {
            let mut due = part.due.lock().expect("partition lock");
            while due.first().is_some_and(|d| *d + DUE_GRACE <= now) {
                due.pop_first();
            }
            if let Some(first) = due.first() {
                wait = wait.min(if *first <= now {
                    DUE_POLL
                } else {
                    *first - now
                });
            }
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
                    part.sweep(engine.config.session_idle);
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
                    ack: None,
                    new_id: false,
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
                crate::storage::log_retrying(
                    format_args!(
                        "partition {}: looking for unfinished instances",
                        part.number
                    ),
                    &e,
                );
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}
