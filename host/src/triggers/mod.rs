//! Triggers: what turns the outside world's events into invocations.
//! They look functions up in the catalog and call the runtime; they know
//! nothing of wasmtime.
//!
//! HTTP serves the port (see [`http`]); the other kinds implement
//! [`TriggerKind`] and run under [`Triggers`], which starts a listener for
//! each function of the kind as its folder loads and stops it when the folder
//! unloads or its trigger changes.

pub mod blob;
pub mod blob_path;
pub mod http;
pub mod lease;
pub mod queue;
pub mod schedule;
pub mod timer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::bindings::Connections;
use crate::catalog::{Catalog, FunctionEntry};
use crate::config::{HostConfig, Trigger};
use crate::runtime::{Invocation, Runtime};

/// What every trigger kind works with.
#[derive(Clone)]
pub struct TriggerContext {
    pub catalog: Arc<Catalog>,
    pub runtime: Arc<Runtime>,
    pub connections: Arc<Connections>,
    pub host: Arc<HostConfig>,
    /// Azure's host id (`AzureFunctionsWebHost__hostid`, else from the site or hub
    /// name): hosts of one app share it, and with it receipts and timer status.
    pub host_id: String,
}

/// One kind of non-HTTP trigger: given a function of its kind, listen for
/// its events and invoke it until told to stop.
pub trait TriggerKind: Send + Sync + 'static {
    /// Whether functions with `trigger` are this kind's.
    fn handles(&self, trigger: &Trigger) -> bool;

    /// Listen for `function`'s events until `stop` turns true, then finish
    /// (or give back) what is in flight and return. Invoke the catalog's
    /// current entry of that name, so a redeployed component takes over.
    fn listen(
        &self,
        ctx: TriggerContext,
        function: Arc<FunctionEntry>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()>;
}

/// How often the listeners are matched with the catalog (folder loads and unloads).
const CATALOG_CHECK: Duration = Duration::from_millis(250);

/// The running non-HTTP triggers.
pub struct Triggers {
    stop: watch::Sender<bool>,
    supervisor: JoinHandle<()>,
}

struct Running {
    trigger: Trigger,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Triggers {
    /// Start `kinds`: a listener for each of their functions now in the
    /// catalog, and for each that loads later.
    pub fn start(ctx: TriggerContext, kinds: Vec<Box<dyn TriggerKind>>) -> Triggers {
        let (stop, mut stopped) = watch::channel(false);
        let supervisor = tokio::spawn(async move {
            let mut running: HashMap<String, Running> = HashMap::new();
            // Listeners told to stop, finishing what they hold.
            let mut draining: Vec<JoinHandle<()>> = Vec::new();
            let mut seen: Option<Arc<crate::catalog::FunctionTable>> = None;
            loop {
                let table = ctx.catalog.table();
                if !seen.as_ref().is_some_and(|s| Arc::ptr_eq(s, &table)) {
                    draining.retain(|t| !t.is_finished());
                    draining.extend(reconcile(&ctx, &kinds, &table, &mut running));
                    seen = Some(table);
                }
                tokio::select! {
                    _ = tokio::time::sleep(CATALOG_CHECK) => {}
                    _ = stopped.wait_for(|s| *s) => break,
                }
            }
            for r in running.values() {
                let _ = r.stop.send(true);
            }
            for task in running.into_values().map(|r| r.task).chain(draining) {
                let _ = task.await;
            }
        });
        Triggers { stop, supervisor }
    }

    /// Stop every listener and wait for the invocations in flight.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.supervisor.await;
    }
}

/// Start listeners for new functions, stop those of functions gone or
/// changed; returns the stopped ones, still finishing their work.
fn reconcile(
    ctx: &TriggerContext,
    kinds: &[Box<dyn TriggerKind>],
    table: &crate::catalog::FunctionTable,
    running: &mut HashMap<String, Running>,
) -> Vec<JoinHandle<()>> {
    let wanted: HashMap<String, (&Arc<FunctionEntry>, &dyn TriggerKind)> = table
        .functions
        .iter()
        .filter_map(|f| {
            kinds
                .iter()
                .find(|k| k.handles(&f.trigger))
                .map(|k| (f.name.clone(), (f, k.as_ref())))
        })
        .collect();
    let gone: Vec<String> = running
        .iter()
        .filter(|(name, r)| {
            wanted
                .get(*name)
                .is_none_or(|(f, _)| f.trigger != r.trigger)
        })
        .map(|(name, _)| name.clone())
        .collect();
    let mut stopped = Vec::new();
    for name in gone {
        if let Some(r) = running.remove(&name) {
            let _ = r.stop.send(true);
            stopped.push(r.task);
        }
    }
    for (name, (function, kind)) in wanted {
        if running.contains_key(&name) {
            continue;
        }
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(kind.listen(ctx.clone(), function.clone(), stopped));
        running.insert(
            name,
            Running {
                trigger: function.trigger.clone(),
                stop,
                task,
            },
        );
    }
    stopped
}

/// Wait until `stop` is true.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// A new invocation of `function`, with a fresh id.
pub fn invocation(function: &str) -> Invocation {
    Invocation {
        function: function.into(),
        id: uuid::Uuid::new_v4().to_string().into(),
    }
}

/// `Executing 'Functions.hello' (Reason='...', Id=...)`, as Core Tools prints it.
pub fn log_executing(invocation: &Invocation, reason: &str) {
    tracing::info!(
        "Executing 'Functions.{}' (Reason='{reason}', Id={})",
        invocation.function,
        invocation.id
    );
}

/// Invoke the current catalog entry `function` of a queue, blob or timer
/// trigger with `input`, logging `Executing` (with `reason`) and `Executed`.
/// None if the function is no longer loaded; else its error, if it failed.
pub(crate) async fn run_trigger(
    ctx: &TriggerContext,
    function: &str,
    reason: &str,
    input: crate::runtime::TriggerInput,
) -> Option<Result<(), String>> {
    run_trigger_as(ctx, invocation(function), reason, input).await
}

/// [`run_trigger`] with an invocation id chosen by the caller.
pub(crate) async fn run_trigger_as(
    ctx: &TriggerContext,
    invocation: Invocation,
    reason: &str,
    input: crate::runtime::TriggerInput,
) -> Option<Result<(), String>> {
    let entry = ctx
        .catalog
        .table()
        .find(&invocation.function, |t| !matches!(t, Trigger::Http { .. }))?;
    log_executing(&invocation, reason);
    let started = std::time::Instant::now();
    let result = ctx
        .runtime
        .invoke_trigger(&entry.component, &invocation, input)
        .await;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(message)) => Some(message),
        Err(e) => Some(e.to_string()),
    };
    log_executed(
        &invocation,
        error.as_ref().map(|e| e as &dyn std::fmt::Display),
        started.elapsed(),
    );
    Some(error.map_or(Ok(()), Err))
}

/// `Host.Functions.{name}`: the full name Azure keys receipts, timer status and locks by.
pub(crate) fn full_name(function: &str) -> String {
    format!("Host.Functions.{function}")
}

/// Invocations finished since start: succeeded, failed (for `/admin/metrics`).
pub static INVOCATIONS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// `Executed 'Functions.hello' (Succeeded, Id=..., Duration=3ms)`.
pub fn log_executed(
    invocation: &Invocation,
    error: Option<&dyn std::fmt::Display>,
    took: Duration,
) {
    INVOCATIONS[usize::from(error.is_some())].fetch_add(1, Ordering::Relaxed);
    count_for(&invocation.function)[usize::from(error.is_some())].fetch_add(1, Ordering::Relaxed);
    let ms = took.as_millis();
    match error {
        None => tracing::info!(
            "Executed 'Functions.{}' (Succeeded, Id={}, Duration={ms}ms)",
            invocation.function,
            invocation.id
        ),
        Some(e) => tracing::error!(
            "Executed 'Functions.{}' (Failed, Id={}, Duration={ms}ms)\n  {e}",
            invocation.function,
            invocation.id
        ),
    }
}

/// Per-function counters: succeeded, failed.
type Counters = Arc<[AtomicU64; 2]>;

/// Invocations finished since start, by function name (for `/admin/functions`
/// and the dashboard). A read lock and an atomic add per invocation: the write
/// lock is taken once per function name.
static PER_FUNCTION: LazyLock<RwLock<HashMap<String, Counters>>> = LazyLock::new(Default::default);

fn count_for(function: &str) -> Counters {
    if let Some(c) = PER_FUNCTION.read().expect("counters lock").get(function) {
        return c.clone();
    }
    PER_FUNCTION
        .write()
        .expect("counters lock")
        .entry(function.to_string())
        .or_default()
        .clone()
}

/// Invocations of `function` finished since start: (succeeded, failed).
pub fn invocation_counts(function: &str) -> (u64, u64) {
    PER_FUNCTION
        .read()
        .expect("counters lock")
        .get(function)
        .map_or((0, 0), |c| {
            (c[0].load(Ordering::Relaxed), c[1].load(Ordering::Relaxed))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_per_function() {
        let ok = invocation("counted_fn");
        log_executed(&ok, None, Duration::ZERO);
        log_executed(&ok, None, Duration::ZERO);
        log_executed(&ok, Some(&"boom"), Duration::ZERO);
        assert_eq!(invocation_counts("counted_fn"), (2, 1));
        assert_eq!(invocation_counts("never_ran"), (0, 0));
    }
}
