//! The durable engine: orchestrations, activities and their task hub on
//! Azure Storage (DTFx's layout), shared by every host pointed at the same
//! storage account and hub.
//!
//! Control queues are partitioned (FNV-1a of the instance id); a host
//! processes the partitions it owns in the `{Hub}Partitions` table (30 s
//! leases renewed every 10 s, so a dead host's partitions move within about
//! 40 s). Activities run on the owner of their instance when it has a free
//! slot, else any host takes them from the shared work-item queue.

pub mod activities;
pub mod client;
pub mod entity;
pub mod entity_client;
mod episode;
pub mod history;
mod holds;
pub mod hub;
pub mod inspect;
pub mod instances;
pub mod model;
mod outbox;
mod ownership;
mod partition;
mod poison;
mod seen;
mod signal_log;
mod state;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore, broadcast, watch};

use crate::catalog::Catalog;
use crate::runtime::Runtime;
use crate::storage::{Storage, StorageError};
use hub::Hub;
use partition::Partition;

/// Settings of the engine (host.toml `extensions.durableTask`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub hub_name: String,
    pub partition_count: u32,
    /// Control messages taken per receive (at most 32).
    pub control_batch: u32,
    /// Longest pause between polls of a queue that has been busy lately;
    /// an idle queue is parked (see [`partition`]).
    pub max_polling_interval: Duration,
    pub max_activities: usize,
    pub max_orchestrations: usize,
    /// A received control message stays hidden this long, renewed while held;
    /// if this host dies holding it, another host sees it again after that.
    pub control_visibility: Duration,
    /// Same for activity work items.
    pub work_item_visibility: Duration,
    /// Partition lease length and renewal period.
    pub lease: Duration,
    pub lease_renewal: Duration,
    /// Run the activities an episode schedules on this host when it has free
    /// slots (host.toml `localDispatch`, default true).
    pub local_dispatch: bool,
    /// Keep orchestrators' wasm instances between episodes (`extendedSessionsEnabled`).
    pub extended_sessions: bool,
    /// A session unused this long is dropped (`extendedSessionIdleTimeoutInSeconds`).
    pub session_idle: Duration,
    /// Entities idle less than this are left alone by clean-up
    /// (`entityMessageReorderWindowInMinutes`).
    pub entity_idle: Duration,
}

/// The running engine.
pub struct Engine {
    pub(crate) hub: Hub,
    runtime: Arc<Runtime>,
    catalog: Arc<Catalog>,
    pub(crate) config: EngineConfig,
    /// The partitions this host processes now.
    partitions: Mutex<HashMap<u32, Arc<Partition>>>,
    /// Partitions asked for by another host whose draining has finished.
    drained: Mutex<HashSet<u32>>,
    ownership: ownership::Ownership,
    activities: activities::Pool,
    outbox: outbox::Outbox,
    holds: holds::Holds,
    /// Ids of the signals this host sends for clients.
    signal_ids: entity_client::SignalIds,
    /// Episodes running at once (maxConcurrentOrchestratorFunctions).
    episode_slots: Arc<Semaphore>,
    activity_waker: Notify,
    /// Instance ids that finished on this host (for wait-for-completion).
    finished: broadcast::Sender<String>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Identifies this host in the partition table and logs.
    pub(crate) host_id: String,
    /// Counters for `/admin/metrics`.
    pub stats: Stats,
}

/// What the engine did, for `/admin/metrics`.
#[derive(Default)]
pub struct Stats {
    /// Activities run on the instance's owner without a queue message.
    pub local_activities: std::sync::atomic::AtomicU64,
    /// Activities sent to `{hub}-workitems`.
    pub queued_activities: std::sync::atomic::AtomicU64,
    /// Orchestrator episodes that continued a live session.
    pub continued_episodes: std::sync::atomic::AtomicU64,
    /// Orchestrator episodes that replayed the history.
    pub replayed_episodes: std::sync::atomic::AtomicU64,
    /// Timer messages that arrived before their time (long timers) and went back.
    pub timer_rearms: std::sync::atomic::AtomicU64,
    /// Client signals stored in a partition's signal log, and the appends that stored them.
    pub logged_signals: std::sync::atomic::AtomicU64,
    pub log_appends: std::sync::atomic::AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &std::sync::atomic::AtomicU64, n: usize) {
        counter.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// Prometheus text of the counters.
    pub fn prometheus(&self) -> String {
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        format!(
            "# HELP fnhost_durable_activities_total Activities scheduled by this host's episodes, by how they were dispatched.\n\
             # TYPE fnhost_durable_activities_total counter\n\
             fnhost_durable_activities_total{{dispatch=\"local\"}} {}\n\
             fnhost_durable_activities_total{{dispatch=\"queue\"}} {}\n\
             # HELP fnhost_durable_episodes_total Orchestrator episodes, by whether a session continued or the history was replayed.\n\
             # TYPE fnhost_durable_episodes_total counter\n\
             fnhost_durable_episodes_total{{replay=\"continued\"}} {}\n\
             fnhost_durable_episodes_total{{replay=\"full\"}} {}\n\
             # HELP fnhost_durable_timer_rearms_total Timer messages that came before their time (timers beyond the queue's longest delay) and were sent again.\n\
             # TYPE fnhost_durable_timer_rearms_total counter\n\
             fnhost_durable_timer_rearms_total {}\n\
             # HELP fnhost_durable_logged_signals_total Client signals to entities stored in a partition's signal log.\n\
             # TYPE fnhost_durable_logged_signals_total counter\n\
             fnhost_durable_logged_signals_total {}\n\
             # HELP fnhost_durable_signal_log_appends_total Table transactions that stored them.\n\
             # TYPE fnhost_durable_signal_log_appends_total counter\n\
             fnhost_durable_signal_log_appends_total {}\n",
            get(&self.local_activities),
            get(&self.queued_activities),
            get(&self.continued_episodes),
            get(&self.replayed_episodes),
            get(&self.timer_rearms),
            get(&self.logged_signals),
            get(&self.log_appends),
        )
    }
}

/// Instances whose history stays cached; beyond it the caches start over.
const HISTORY_CACHE: usize = 4000;

impl Engine {
    /// Create the task hub if needed and start taking work.
    pub async fn start(
        storage: Storage,
        runtime: Arc<Runtime>,
        catalog: Arc<Catalog>,
        config: EngineConfig,
    ) -> Result<Arc<Engine>, StorageError> {
        let hub = Hub::new(&config.hub_name, config.partition_count, storage);
        hub.create().await?;
        let host_id = format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
            std::process::id()
        );
        let engine = Arc::new(Engine::new(hub, runtime, catalog, config, host_id));
        let tasks = [
            tokio::spawn(ownership::manage(engine.clone())),
            tokio::spawn(activities::poll(engine.clone())),
            tokio::spawn(maintain(engine.clone())),
        ];
        engine.tasks.lock().expect("tasks lock").extend(tasks);
        Ok(engine)
    }

    /// A client of the hub only (`host durable ...`): the client methods work,
    /// but it takes no partitions and polls no queue, so it runs no episode and
    /// no activity. Nothing is created or read here; `catalog` is what
    /// `start_new` checks orchestrator names against.
    pub fn client(
        storage: Storage,
        runtime: Arc<Runtime>,
        catalog: Arc<Catalog>,
        config: EngineConfig,
    ) -> Arc<Engine> {
        let hub = Hub::new(&config.hub_name, config.partition_count, storage);
        let id = format!("client-{}", std::process::id());
        let engine = Engine::new(hub, runtime, catalog, config, id);
        // Every host is another host to a client: ring for work items too.
        engine.ownership.assume_others();
        Arc::new(engine)
    }

    fn new(
        hub: Hub,
        runtime: Arc<Runtime>,
        catalog: Arc<Catalog>,
        config: EngineConfig,
        host_id: String,
    ) -> Engine {
        Engine {
            outbox: outbox::Outbox::new(config.partition_count),
            activities: activities::Pool::new(config.max_activities),
            episode_slots: Arc::new(Semaphore::new(config.max_orchestrations.max(1))),
            hub,
            runtime,
            catalog,
            config,
            partitions: Mutex::new(HashMap::new()),
            drained: Mutex::new(HashSet::new()),
            ownership: ownership::Ownership::default(),
            holds: holds::Holds::default(),
            signal_ids: entity_client::SignalIds::default(),
            activity_waker: Notify::new(),
            finished: broadcast::channel(1024).0,
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            host_id,
            stats: Stats::default(),
        }
    }

    /// Stop taking work, let the activities and episodes in hand finish (for
    /// at most 20 s), give back the messages not finished, and release the
    /// partitions so that another host takes over at once.
    pub async fn stop(self: &Arc<Self>) {
        let _ = self.stop.send(true);
        self.activity_waker.notify_one();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for t in tasks {
            let _ = t.await;
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline
            && (self.activities.busy(self.config.max_activities) > 0
                || self.partitions().iter().any(|p| !p.is_idle()))
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let owned = self.owned_partitions();
        for p in &owned {
            self.stop_partition(*p, true).await;
        }
        for held in self.holds.of(None) {
            self.holds
                .abandon(&self.hub.storage, &held, Duration::ZERO)
                .await;
        }
        ownership::release_all(self, &owned).await;
    }

    fn partitions(&self) -> Vec<Arc<Partition>> {
        self.partitions
            .lock()
            .expect("partitions lock")
            .values()
            .cloned()
            .collect()
    }

    /// The partition `number` if this host processes it.
    fn owned(&self, number: u32) -> Option<Arc<Partition>> {
        self.partitions
            .lock()
            .expect("partitions lock")
            .get(&number)
            .cloned()
    }

    /// Partitions this host holds now.
    pub fn owned_partitions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .partitions
            .lock()
            .expect("partitions lock")
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }

    /// Begin processing a partition just claimed (renewed at `at`).
    fn start_partition(self: &Arc<Self>, number: u32, at: Instant) {
        let part = Arc::new(Partition::new(self, number, at));
        self.partitions
            .lock()
            .expect("partitions lock")
            .insert(number, part.clone());
        self.drained.lock().expect("drained lock").remove(&number);
        let poller = tokio::spawn(partition::poll(self.clone(), part.clone()));
        tokio::spawn(signal_log::keep(self.clone(), part.clone()));
        tokio::spawn(partition::scan(self.clone(), part));
        self.tasks.lock().expect("tasks lock").push(poller);
    }

    /// Stop processing a partition; `graceful`: write what its episodes
    /// deferred, let them finish and give its messages back at once (else
    /// they reappear after their timeout).
    async fn stop_partition(self: &Arc<Self>, number: u32, graceful: bool) {
        let Some(part) = self
            .partitions
            .lock()
            .expect("partitions lock")
            .remove(&number)
        else {
            return;
        };
        if graceful {
            // What episodes deferred is written before the partition goes.
            part.flush_all(self, Duration::from_secs(10)).await;
        }
        part.deactivate();
        if graceful {
            part.wait_idle(Duration::from_secs(10)).await;
            signal_log::delete_settled(self, &part, usize::MAX).await;
            for held in self.holds.of(Some(number)) {
                self.holds
                    .abandon(&self.hub.storage, &held, Duration::ZERO)
                    .await;
            }
        } else {
            self.holds.drop_partition(number);
        }
    }

    /// Another host asked for `number`: stop taking its work and give back
    /// its messages; `drained` says when it can be handed over.
    fn begin_drain(self: &Arc<Self>, number: u32) {
        let Some(part) = self.owned(number) else {
            return;
        };
        if !part.is_active()
            || part
                .draining
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let engine = self.clone();
        tokio::spawn(async move {
            part.flush_all(&engine, Duration::from_secs(10)).await;
            part.deactivate();
            part.wait_idle(Duration::from_secs(10)).await;
            signal_log::delete_settled(&engine, &part, usize::MAX).await;
            for held in engine.holds.of(Some(number)) {
                engine
                    .holds
                    .abandon(&engine.hub.storage, &held, Duration::ZERO)
                    .await;
            }
            engine.drained.lock().expect("drained lock").insert(number);
            engine.ownership.nudge.notify_one();
        });
    }

    fn drained(&self, number: u32) -> bool {
        self.drained.lock().expect("drained lock").contains(&number)
    }

    /// The ownership rows of `numbers` were renewed at `at`.
    fn renewed(&self, numbers: &[u32], at: Instant) {
        for n in numbers {
            if let Some(p) = self.owned(*n) {
                p.renewed(self, at);
            }
        }
    }

    /// Poll every queue now (the doorbell rang).
    fn wake_all(&self) {
        for p in self.partitions() {
            p.wake();
        }
        self.activity_waker.notify_one();
    }

    /// A message was stored in `partition`'s control queue: poll it now if
    /// it is ours, else ring the doorbell for its owner (at most once a second).
    async fn sent_to_partition(&self, partition: u32) {
        match self.owned(partition) {
            Some(p) => p.wake(),
            None => ownership::ring(self).await,
        }
    }

    /// Work items were stored in `{hub}-workitems`.
    async fn sent_work(&self) {
        self.activity_waker.notify_one();
        if self.ownership.other_hosts() > 0 {
            ownership::ring(self).await;
        }
    }

    pub(crate) fn finished(&self, instance_id: &str) {
        let _ = self.finished.send(instance_id.to_string());
    }

    /// Forget what this host cached of an instance (purge, rewind).
    pub(crate) fn forget_history(&self, instance_id: &str) {
        if let Some(p) = self.owned(self.hub.partition_of(instance_id)) {
            p.forget(instance_id);
        }
    }

    /// Storage transactions made so far by this host.
    pub fn storage_calls(&self) -> crate::storage::CallCounts {
        self.hub.storage.calls()
    }
}

/// Every second: keep held messages hidden, and bound the caches.
async fn maintain(engine: Arc<Engine>) {
    let mut stop = engine.stop.subscribe();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
        engine.holds.renew_due(&engine.hub.storage).await;
        let parts = engine.partitions();
        if parts.iter().map(|p| p.cached_count()).sum::<usize>() > HISTORY_CACHE {
            for p in &parts {
                p.forget_caches();
            }
        }
    }
}

/// Adaptive polling of a queue: 100 ms doubling while it stays empty, up to
/// the maximum; then parked until woken, or ten times the maximum.
pub(crate) struct Pacer {
    interval: Duration,
    min: Duration,
    max: Duration,
    parked: bool,
}

impl Pacer {
    pub fn new(max: Duration) -> Pacer {
        let min = Duration::from_millis(100).min(max);
        Pacer {
            interval: min,
            min,
            max,
            parked: false,
        }
    }

    /// The last poll found messages.
    pub fn busy(&mut self) {
        self.interval = self.min;
        self.parked = false;
    }

    /// The last poll found nothing (or failed).
    pub fn empty(&mut self) {
        if self.interval >= self.max {
            self.parked = true;
        }
        self.interval = (self.interval * 2).min(self.max);
    }

    /// The pause before the next poll.
    pub fn pause(&self) -> Duration {
        if self.parked {
            self.max * 10
        } else {
            self.interval
        }
    }

    /// Wait the pause, or until woken (then poll at once) or `due`. True when the engine stops.
    pub async fn wait(
        &mut self,
        waker: &Notify,
        due: Option<Instant>,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let mut pause = self.pause();
        if let Some(due) = due {
            pause = pause.min(due.saturating_duration_since(Instant::now()));
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => false,
            _ = waker.notified() => {
                self.busy();
                false
            }
            _ = stop.changed() => true,
        }
    }
}
