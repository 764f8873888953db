//! The durable engine: orchestrations, activities and their task hub on
//! Azure Storage (DTFx's layout), shared by every host pointed at the same
//! storage account and hub.
//!
//! Control queues are partitioned (FNV-1a of the instance id); a host
//! processes the partitions whose lease blob it holds (30 s leases renewed
//! every 10 s, so a dead host's partitions move within 30 s). Any host runs
//! activities from the shared work-items queue.

pub mod activities;
pub mod client;
pub mod history;
pub mod hub;
pub mod inspect;
pub mod instances;
pub mod model;
pub mod orchestrations;
mod partitions;
mod state;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, broadcast, watch};

use crate::catalog::Catalog;
use crate::runtime::Runtime;
use crate::storage::{Storage, StorageError};
use hub::Hub;

/// Settings of the engine (host.toml `extensions.durableTask`).
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub hub_name: String,
    pub partition_count: u32,
    /// Control messages taken per receive (at most 32).
    pub control_batch: u32,
    /// Longest pause between polls of an idle queue.
    pub max_polling_interval: Duration,
    pub max_activities: usize,
    pub max_orchestrations: usize,
    /// A received control message stays hidden this long; if this host dies
    /// holding it, another host sees it again after that.
    pub control_visibility: Duration,
    /// Same for activity work items; renewed while the activity runs.
    pub work_item_visibility: Duration,
    /// Partition lease length and renewal period.
    pub lease: Duration,
    pub lease_renewal: Duration,
}

/// The running engine.
pub struct Engine {
    pub(crate) hub: Hub,
    runtime: Arc<Runtime>,
    catalog: Arc<Catalog>,
    pub(crate) config: EngineConfig,
    /// Partitions this host holds, with their lease ids.
    owned: Mutex<HashMap<u32, String>>,
    /// Wakes a partition's poller when this host enqueued to it.
    partition_wakers: Vec<Notify>,
    activity_waker: Notify,
    /// Instance ids that finished on this host (for wait-for-completion).
    finished: broadcast::Sender<String>,
    stop: watch::Sender<bool>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Identifies this host in lease blobs and logs.
    pub(crate) host_id: String,
    /// Histories of running instances as this host last wrote them, so an
    /// episode need not read back what it wrote (a fan-out of 1,000 would
    /// otherwise reread a growing history some 30 times).
    histories: Mutex<HashMap<String, history::History>>,
}

/// Instances whose history stays cached; beyond it the cache starts over.
const HISTORY_CACHE: usize = 2000;

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
        let engine = Arc::new(Engine {
            partition_wakers: (0..config.partition_count).map(|_| Notify::new()).collect(),
            hub,
            runtime,
            catalog,
            config,
            owned: Mutex::new(HashMap::new()),
            activity_waker: Notify::new(),
            finished: broadcast::channel(1024).0,
            stop: watch::channel(false).0,
            tasks: Mutex::new(Vec::new()),
            histories: Mutex::new(HashMap::new()),
            host_id: format!(
                "{}-{}",
                std::env::var("HOSTNAME").unwrap_or_else(|_| "host".into()),
                std::process::id()
            ),
        });
        let leases = tokio::spawn(partitions::manage(engine.clone()));
        let activities = tokio::spawn(activities::poll(engine.clone()));
        engine
            .tasks
            .lock()
            .expect("tasks lock")
            .extend([leases, activities]);
        Ok(engine)
    }

    /// A client of the hub only (`host durable ...`): the client methods work,
    /// but it takes no leases and polls no queue, so it runs no episode and no
    /// activity. Nothing is created or read here; `catalog` is what
    /// `start_new` checks orchestrator names against.
    pub fn client(
        storage: Storage,
        runtime: Arc<Runtime>,
        catalog: Arc<Catalog>,
        config: EngineConfig,
    ) -> Arc<Engine> {
        Arc::new(Engine {
            partition_wakers: (0..config.partition_count).map(|_| Notify::new()).collect(),
            hub: Hub::new(&config.hub_name, config.partition_count, storage),
            runtime,
            catalog,
            config,
            owned: Mutex::new(HashMap::new()),
            activity_waker: Notify::new(),
            finished: broadcast::channel(1).0,
            stop: watch::channel(true).0,
            tasks: Mutex::new(Vec::new()),
            histories: Mutex::new(HashMap::new()),
            host_id: format!("client-{}", std::process::id()),
        })
    }

    /// Stop taking work, finish what is in hand (messages not finished are
    /// made visible again), and release the partition leases so another host
    /// takes over at once.
    pub async fn stop(&self) {
        let _ = self.stop.send(true);
        for w in &self.partition_wakers {
            w.notify_one();
        }
        self.activity_waker.notify_one();
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock().expect("tasks lock"));
        for t in tasks {
            let _ = t.await;
        }
        partitions::release_all(self).await;
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Whether this host holds `partition` under `lease`.
    pub(crate) fn holds(&self, partition: u32, lease: &str) -> bool {
        self.owned
            .lock()
            .expect("owned lock")
            .get(&partition)
            .is_some_and(|l| l == lease)
    }

    /// Partitions this host holds now.
    pub fn owned_partitions(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .owned
            .lock()
            .expect("owned lock")
            .keys()
            .copied()
            .collect();
        v.sort();
        v
    }

    pub(crate) fn wake_partition(&self, partition: u32) {
        if let Some(w) = self.partition_wakers.get(partition as usize) {
            w.notify_one();
        }
    }

    pub(crate) fn wake_activities(&self) {
        self.activity_waker.notify_one();
    }

    pub(crate) fn finished(&self, instance_id: &str) {
        let _ = self.finished.send(instance_id.to_string());
    }

    pub(crate) fn cached_history(&self, instance_id: &str) -> Option<history::History> {
        self.histories
            .lock()
            .expect("history cache lock")
            .get(instance_id)
            .cloned()
    }

    pub(crate) fn cache_history(&self, instance_id: &str, history: history::History) {
        let mut cache = self.histories.lock().expect("history cache lock");
        if cache.len() >= HISTORY_CACHE && !cache.contains_key(instance_id) {
            cache.clear();
        }
        cache.insert(instance_id.to_string(), history);
    }

    /// Partitions moved: any cached history may be outdated by another host.
    pub(crate) fn forget_all_histories(&self) {
        self.histories.lock().expect("history cache lock").clear();
    }

    pub(crate) fn forget_history(&self, instance_id: &str) {
        self.histories
            .lock()
            .expect("history cache lock")
            .remove(instance_id);
    }

    /// Storage transactions made so far by this host.
    pub fn storage_calls(&self) -> crate::storage::CallCounts {
        self.hub.storage.calls()
    }
}

/// Adaptive polling: 100 ms doubling up to the maximum, reset on work.
pub(crate) struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            current: Duration::from_millis(100).min(max),
            max,
        }
    }

    pub fn reset(&mut self) {
        self.current = Duration::from_millis(100).min(self.max);
    }

    /// Wait the current interval (or until woken), then double it.
    pub async fn wait(&mut self, waker: &Notify) {
        let _ = tokio::time::timeout(self.current, waker.notified()).await;
        self.current = (self.current * 2).min(self.max);
    }
}
