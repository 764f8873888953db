//! blobTrigger: new and overwritten blobs → invocations, once per blob
//! version (ETag) across restarts and hosts, with Azure's receipts.
//!
//! Each scan is one listing of the container (one call per 5,000 blobs,
//! narrowed by the path's literal prefix), compared in memory with the
//! versions already done; a blob version not done yet is claimed through its
//! receipt `azure-webjobs-hosts/blobreceipts/{hostId}/Host.Functions.{name}/
//! "{etag}"/{container}/{blob}`: created if absent, leased by the host that
//! runs it (so two hosts never run it both), marked `IncompleteInvocationId`
//! while it runs and cleared when done. At start the receipts are listed once
//! (not read one by one), so 10,000 processed blobs cost two listings and
//! none runs again. A version that fails `poisonBlobThreshold` (5) times is
//! reported in the `webjobs-blobtrigger-poison` queue, as Azure does, and not
//! retried. Scans run 1 s apart after a change, backing off to 10 s when
//! idle (six listings a minute); a blob this host writes through the output
//! binding wakes the listener of its container at once.
//!
//! Versions run in tasks of their own (at most `maxDegreeOfParallelism` at
//! once), so scans go on while a slow function runs and a new blob does not
//! wait for it. A version whose receipt another host holds is tried again
//! [`HELD_RETRY`] later, not at every scan: if that host died, its lease
//! lapses within 60 s and this host runs the version at its next try after
//! that (within about 70 s of the death).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use super::blob_path::BlobPath;
use super::lease::{self, HOSTS_CONTAINER};
use super::{TriggerContext, TriggerKind};
use crate::catalog::FunctionEntry;
use crate::config::Trigger;
use crate::runtime::TriggerInput;
use crate::storage::{BlobItem, PutOptions, Storage, StorageError};

/// The scan interval after a change, doubling to [`MAX_SCAN`] while nothing changes.
const MIN_SCAN: Duration = Duration::from_secs(1);
const MAX_SCAN: Duration = Duration::from_secs(10);

/// A storage error is reported at most this often per listener.
const ERROR_REPORT: Duration = Duration::from_secs(30);

/// How long a version whose receipt another host holds is left alone (two
/// calls a try): the holder finishes it, or dies and its 60 s lease lapses.
const HELD_RETRY: Duration = Duration::from_secs(5);

/// Container listings made by the blob listeners since start (for
/// `/admin/metrics`: storage calls per scan).
pub static SCANS: AtomicU64 = AtomicU64::new(0);

/// Where blob versions that keep failing are reported (Azure's name).
pub const POISON_QUEUE: &str = "webjobs-blobtrigger-poison";

/// Receipt metadata: the invocation running the version (absent when done).
const INCOMPLETE: &str = "IncompleteInvocationId";
/// Receipt metadata: attempts so far (this host's addition; Azure counts
/// them in its internal queue).
const ATTEMPTS: &str = "Attempts";
/// How read metadata names them ([`BlobItem::metadata`] keys are lower case).
const INCOMPLETE_KEY: &str = "incompleteinvocationid";
const ATTEMPTS_KEY: &str = "attempts";
/// A receipt created but not yet run.
const NOT_STARTED: &str = "00000000-0000-0000-0000-000000000000";

/// The blobTrigger kind.
pub struct BlobTrigger;

impl TriggerKind for BlobTrigger {
    fn handles(&self, trigger: &Trigger) -> bool {
        matches!(trigger, Trigger::Blob { .. })
    }

    fn listen(
        &self,
        ctx: TriggerContext,
        function: Arc<FunctionEntry>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(listen(ctx, function, stop))
    }
}

struct Listener {
    ctx: TriggerContext,
    function: String,
    path: BlobPath,
    /// The account of the trigger's `connection`.
    blobs: Storage,
    /// The host's own account (AzureWebJobsStorage): receipts and poison queue.
    hosts: Storage,
    /// `blobreceipts/{hostId}/Host.Functions.{name}/`.
    receipts: String,
    /// Blob name → the ETag done (run, poisoned or superseded).
    done: Mutex<HashMap<String, String>>,
    /// Blob names whose versions this host's tasks have in hand (a newer
    /// version of one waits for the scan after it).
    running: Mutex<HashSet<String>>,
    /// Blob name → (ETag, when to try again): versions another host holds.
    held: Mutex<HashMap<String, (String, Instant)>>,
    /// `maxDegreeOfParallelism`: versions run at once.
    slots: Arc<Semaphore>,
    max_attempts: u32,
}

/// What [`Listener::process`] did with a version.
enum Outcome {
    /// Run, recorded, or given up on for now (the next scan tries again).
    Tried,
    /// Another host holds its receipt.
    Held,
}

async fn listen(
    ctx: TriggerContext,
    function: Arc<FunctionEntry>,
    mut stop: watch::Receiver<bool>,
) {
    let Trigger::Blob { path, connection } = &function.trigger else {
        return;
    };
    let unable = |why: String| {
        tracing::error!(
            "The listener for function 'Functions.{}' was unable to start: {why}",
            function.name
        )
    };
    let path = match BlobPath::parse(path) {
        Ok(p) => p,
        Err(e) => return unable(e),
    };
    let (blobs, hosts) = match (ctx.connections.get(connection), ctx.connections.get("")) {
        (Ok(b), Ok(h)) => (b, h),
        (Err(e), _) | (_, Err(e)) => return unable(e),
    };
    let settings = &ctx.host.extensions.blobs;
    let parallel = settings
        .max_degree_of_parallelism
        .unwrap_or_else(|| 8 * std::thread::available_parallelism().map_or(1, |n| n.get() as u32));
    let listener = Arc::new(Listener {
        receipts: format!(
            "blobreceipts/{}/{}/",
            ctx.host_id,
            super::full_name(&function.name)
        ),
        function: function.name.clone(),
        max_attempts: settings.poison_blob_threshold.unwrap_or(5).max(1),
        path,
        blobs,
        hosts,
        done: Mutex::default(),
        running: Mutex::default(),
        held: Mutex::default(),
        slots: Arc::new(Semaphore::new(parallel.max(1) as usize)),
        ctx: ctx.clone(),
    });
    let wake = ctx
        .connections
        .waker(connection, &format!("/{}", listener.path.container));
    let mut loaded = false;
    let mut delay = MIN_SCAN;
    let mut reported: Option<Instant> = None;
    let mut tasks = JoinSet::new();
    while !*stop.borrow() {
        while tasks.try_join_next().is_some() {}
        let scanned = if loaded {
            listener.scan(&mut tasks, &stop).await
        } else {
            match listener.load_receipts().await {
                Ok(()) => {
                    loaded = true;
                    listener.scan(&mut tasks, &stop).await
                }
                Err(e) => Err(e),
            }
        };
        match scanned {
            Ok(true) => delay = MIN_SCAN,
            Ok(false) => {}
            Err(e) => {
                // An outage is reported once by the storage layer.
                if !e.is_unavailable() && reported.is_none_or(|t| t.elapsed() > ERROR_REPORT) {
                    tracing::warn!(
                        "Function 'Functions.{}': scanning container '{}' or reading its receipts \
                         failed (retrying): {e}",
                        listener.function,
                        listener.path.container
                    );
                    reported = Some(Instant::now());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => delay = (delay * 2).min(MAX_SCAN),
            _ = wake.notified() => delay = MIN_SCAN,
            _ = super::stopped(&mut stop) => {}
        }
    }
    // Finish the versions in flight; those still waiting for a slot are left
    // to the next scan (of this host or another).
    while tasks.join_next().await.is_some() {}
    ctx.connections.drop_waker(&wake);
}

impl Listener {
    /// Learn the versions done from the receipts (one listing per 5,000).
    async fn load_receipts(&self) -> Result<(), StorageError> {
        let items = match self
            .hosts
            .blobs
            .list_items(HOSTS_CONTAINER, &self.receipts, true)
            .await
        {
            Ok(items) => items,
            Err(StorageError::NotFound(_)) => return Ok(()), // no receipts yet
            Err(e) => return Err(e),
        };
        let mut done = self.done.lock().expect("receipts lock");
        for item in items {
            if item.metadata.contains_key(INCOMPLETE_KEY) {
                continue;
            }
            let Some(rest) = item.name.strip_prefix(&self.receipts) else {
                continue;
            };
            // "{etag}"/{container}/{blob}
            let Some((etag, rest)) = rest.strip_prefix('"').and_then(|r| r.split_once("\"/"))
            else {
                continue;
            };
            if let Some(name) = rest
                .strip_prefix(self.path.container.as_str())
                .and_then(|r| r.strip_prefix('/'))
            {
                done.insert(name.to_string(), etag.to_string());
            }
        }
        Ok(())
    }

    /// One listing; start a task for each version not done, not in hand and
    /// not held elsewhere. Whether there was a version not seen before.
    async fn scan(
        self: &Arc<Self>,
        tasks: &mut JoinSet<()>,
        stop: &watch::Receiver<bool>,
    ) -> Result<bool, StorageError> {
        let listed = self
            .blobs
            .blobs
            .list_items(&self.path.container, self.path.prefix(), false)
            .await;
        let items = match listed {
            Ok(items) => items,
            // Not created yet: fine, it works once it exists.
            Err(StorageError::NotFound(_)) => {
                SCANS.fetch_add(1, Ordering::Relaxed);
                return Ok(false);
            }
            Err(e) => return Err(e),
        };
        SCANS.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let (todo, fresh) = {
            let mut done = self.done.lock().expect("receipts lock");
            let mut held = self.held.lock().expect("receipts lock");
            let running = self.running.lock().expect("receipts lock");
            // Forget deleted blobs.
            let names: HashSet<&str> = items.iter().map(|b| b.name.as_str()).collect();
            done.retain(|name, _| names.contains(name.as_str()));
            held.retain(|name, _| names.contains(name.as_str()));
            let todo: Vec<(BlobItem, Vec<(String, String)>)> = items
                .iter()
                .filter(|b| done.get(&b.name) != Some(&b.etag))
                .filter(|b| !running.contains(&b.name))
                .filter(|b| {
                    held.get(&b.name)
                        .is_none_or(|(etag, until)| *etag != b.etag || *until <= now)
                })
                .filter_map(|b| self.path.matches(&b.name).map(|p| (b.clone(), p)))
                .collect();
            // Another try of a held version is not a change: no faster scans for it.
            let fresh = todo
                .iter()
                .any(|(b, _)| held.get(&b.name).is_none_or(|(etag, _)| *etag != b.etag));
            (todo, fresh)
        };
        for (blob, params) in todo {
            let version = (blob.name.clone(), blob.etag.clone());
            self.running
                .lock()
                .expect("receipts lock")
                .insert(version.0.clone());
            let (listener, stop) = (self.clone(), stop.clone());
            tasks.spawn(async move {
                let slot = listener.slots.clone().acquire_owned().await;
                let outcome = if slot.is_ok() && !*stop.borrow() {
                    listener.process(blob, params).await
                } else {
                    Outcome::Tried // stopping: left for the next scan
                };
                let mut held = listener.held.lock().expect("receipts lock");
                match outcome {
                    Outcome::Held => {
                        held.insert(
                            version.0.clone(),
                            (version.1.clone(), Instant::now() + HELD_RETRY),
                        );
                    }
                    Outcome::Tried => {
                        held.remove(&version.0);
                    }
                }
                drop(held);
                listener
                    .running
                    .lock()
                    .expect("receipts lock")
                    .remove(&version.0);
            });
        }
        Ok(fresh)
    }

    fn receipt_name(&self, blob: &BlobItem) -> String {
        format!(
            "{}\"{}\"/{}/{}",
            self.receipts, blob.etag, self.path.container, blob.name
        )
    }

    fn mark_done(&self, blob: &BlobItem) {
        self.done
            .lock()
            .expect("receipts lock")
            .insert(blob.name.clone(), blob.etag.clone());
    }

    fn warn(&self, what: &str, blob: &BlobItem, e: impl std::fmt::Display) {
        tracing::warn!(
            "Function 'Functions.{}': {what} for blob '{}/{}' failed (retrying): {e}",
            self.function,
            self.path.container,
            blob.name
        );
    }

    /// Claim the version's receipt, run it (up to the attempts left), record the outcome.
    async fn process(&self, blob: BlobItem, params: Vec<(String, String)>) -> Outcome {
        let receipt = self.receipt_name(&blob);
        let hosts = &self.hosts.blobs;
        let created = PutOptions {
            metadata: vec![(INCOMPLETE.into(), NOT_STARTED.into())],
            ..Default::default()
        };
        if let Err(e) =
            lease::ensure_blob(hosts.as_ref(), HOSTS_CONTAINER, &receipt, &created).await
        {
            self.warn("creating the receipt", &blob, e);
            return Outcome::Tried;
        }
        let held = match lease::acquire(&self.hosts, HOSTS_CONTAINER, &receipt).await {
            Ok(Some(held)) => held,
            Ok(None) => return Outcome::Held, // another host runs it
            Err(e) => {
                self.warn("leasing the receipt", &blob, e);
                return Outcome::Tried;
            }
        };
        self.run_leased(&held, &receipt, blob, params).await;
        held.release().await;
        Outcome::Tried
    }

    /// Run the version whose `receipt` this host holds (up to the attempts
    /// left) and record the outcome in the receipt.
    async fn run_leased(
        &self,
        held: &lease::Held,
        receipt: &str,
        blob: BlobItem,
        params: Vec<(String, String)>,
    ) {
        let hosts = &self.hosts.blobs;
        // Read under the lease: a host that finished it cleared the mark first.
        let metadata = match hosts.properties(HOSTS_CONTAINER, receipt).await {
            Ok(Some(p)) => p.metadata,
            Ok(None) => return,
            Err(e) => {
                self.warn("reading the receipt", &blob, e);
                return;
            }
        };
        if !metadata.contains_key(INCOMPLETE_KEY) {
            self.mark_done(&blob);
            return;
        }
        let mut attempts: u32 = metadata
            .get(ATTEMPTS_KEY)
            .and_then(|a| a.parse().ok())
            .unwrap_or(0);
        let content = match self.blobs.blobs.get(&self.path.container, &blob.name).await {
            Ok(Some((data, etag))) if etag == blob.etag => Some(data),
            // Deleted or overwritten since the listing: the next scan sees the new version.
            Ok(_) => None,
            Err(e) => {
                self.warn("reading", &blob, e);
                return;
            }
        };
        let mut outcome = Vec::new();
        if let Some(content) = content {
            let mut succeeded = false;
            while attempts < self.max_attempts && !held.is_lost() {
                attempts += 1;
                let invocation = super::invocation(&self.function);
                let mark = PutOptions {
                    metadata: vec![
                        (INCOMPLETE.into(), invocation.id.to_string()),
                        (ATTEMPTS.into(), attempts.to_string()),
                    ],
                    lease_id: Some(held.id.clone()),
                    ..Default::default()
                };
                if let Err(e) = hosts
                    .put_with(HOSTS_CONTAINER, receipt, Vec::new(), &mark)
                    .await
                {
                    self.warn("marking the receipt", &blob, e);
                    return;
                }
                let input = crate::runtime::BlobItem {
                    container: self.path.container.clone(),
                    name: blob.name.clone(),
                    params: params.clone(),
                    content: content.clone(),
                    length: blob.length,
                    content_type: blob.content_type.clone(),
                    etag: blob.etag.clone(),
                    last_modified: super::queue::millis(blob.last_modified),
                };
                let reason = format!(
                    "New blob detected({}): {}/{}",
                    blob.content_type, self.path.container, blob.name
                );
                match super::run_trigger_as(
                    &self.ctx,
                    invocation,
                    &reason,
                    TriggerInput::Blob(input),
                )
                .await
                {
                    Some(Ok(())) => {
                        succeeded = true;
                        break;
                    }
                    Some(Err(_)) => {}
                    None => return, // unloaded: the next listener runs it
                }
            }
            if held.is_lost() {
                return;
            }
            if !succeeded {
                self.poison(&blob).await;
                outcome.push(("Poisoned".to_string(), "true".to_string()));
            }
        } else {
            outcome.push(("Superseded".to_string(), "true".to_string()));
        }
        // Done: the receipt without IncompleteInvocationId.
        outcome.push((ATTEMPTS.into(), attempts.to_string()));
        let complete = PutOptions {
            metadata: outcome,
            lease_id: Some(held.id.clone()),
            ..Default::default()
        };
        match hosts
            .put_with(HOSTS_CONTAINER, receipt, Vec::new(), &complete)
            .await
        {
            Ok(()) => self.mark_done(&blob),
            Err(e) => self.warn("completing the receipt", &blob, e),
        }
    }

    /// Azure's poison message: which function gave up on which blob version.
    async fn poison(&self, blob: &BlobItem) {
        tracing::error!(
            "Function 'Functions.{}' failed {} times on blob '{}/{}' (ETag {}); giving up and \
             moving a message naming it to queue '{POISON_QUEUE}'",
            self.function,
            self.max_attempts,
            self.path.container,
            blob.name,
            blob.etag
        );
        let message = serde_json::json!({
            "Type": "BlobTrigger",
            "FunctionId": super::full_name(&self.function),
            "BlobType": "BlockBlob",
            "ContainerName": self.path.container,
            "BlobName": blob.name,
            "ETag": format!("\"{}\"", blob.etag),
        });
        let Ok(text) = self
            .ctx
            .connections
            .encoding()
            .encode(message.to_string().into_bytes())
        else {
            return;
        };
        let queues = &self.hosts.queues;
        let sent = match queues.send(POISON_QUEUE, &text, Duration::ZERO).await {
            Err(StorageError::NotFound(_)) => match queues.create_queue(POISON_QUEUE).await {
                Ok(()) => queues.send(POISON_QUEUE, &text, Duration::ZERO).await,
                Err(e) => Err(e),
            },
            other => other,
        };
        if let Err(e) = sent {
            tracing::error!(
                "Function 'Functions.{}': sending the poison message for blob '{}/{}' failed: {e}",
                self.function,
                self.path.container,
                blob.name
            );
        }
    }
}
