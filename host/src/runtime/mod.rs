//! The WebAssembly runtime: one engine, components compiled once (cached on
//! disk), an `InstancePre` per component, a fresh `Store` per invocation.
//!
//! Nothing here knows HTTP: triggers hand in the WIT request records and get
//! WIT records back.

mod bindings_host;
mod cache;
mod client;
mod outbound;
mod output;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::config::AllowedHosts;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

pub use bindings_host::{OutputBindings, SharedBindings};
pub use client::{DurableClient, SharedClient};
pub use state::HostState;

/// Types and traits generated from `sdk/wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "function",
        imports: {
            "fnhost:function/durable-client": async,
            "fnhost:function/bindings": async,
        },
        // History events and actions are stored as JSON by the durable engine.
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq],
        exports: { default: async },
    });
}

use bindings::exports::fnhost::function::activity::GuestIndices as ActivityIndices;
use bindings::exports::fnhost::function::blob::GuestIndices as BlobIndices;
use bindings::exports::fnhost::function::entity::GuestIndices as EntityIndices;
use bindings::exports::fnhost::function::http::GuestIndices as HttpIndices;
use bindings::exports::fnhost::function::orchestrator::GuestIndices as OrchestratorIndices;
use bindings::exports::fnhost::function::queue::GuestIndices as QueueIndices;
use bindings::exports::fnhost::function::timer::GuestIndices as TimerIndices;
pub use bindings::fnhost::function::durable_types as durable;
pub use bindings::fnhost::function::trigger_types::{BlobItem, QueueMessage, TimerInfo};
pub use bindings::fnhost::function::types::{HttpRequest, HttpResponse};

/// The exported interface that `httpTrigger` functions need.
pub const HTTP_INTERFACE: &str = "fnhost:function/http@0.1.0";
/// The exported interface that `orchestrationTrigger` functions need.
pub const ORCHESTRATOR_INTERFACE: &str = "fnhost:function/orchestrator@0.1.0";
/// The exported interface that `activityTrigger` functions need.
pub const ACTIVITY_INTERFACE: &str = "fnhost:function/activity@0.1.0";
/// The exported interface that `queueTrigger` functions need.
pub const QUEUE_INTERFACE: &str = "fnhost:function/queue@0.1.0";
/// The exported interface that `blobTrigger` functions need.
pub const BLOB_INTERFACE: &str = "fnhost:function/blob@0.1.0";
/// The exported interface that `timerTrigger` functions need.
pub const TIMER_INTERFACE: &str = "fnhost:function/timer@0.1.0";
/// The exported interface that `entityTrigger` functions need.
pub const ENTITY_INTERFACE: &str = "fnhost:function/entity@0.1.0";

/// How often the epoch advances: the granularity of `functionTimeout`, and the
/// slice after which a long-running guest yields to other work (10 ms).
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Settings of the runtime, from host.toml and local.settings.toml.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// An invocation running longer is stopped (host.toml `functionTimeout`).
    pub function_timeout: Duration,
    /// Linear memory one instance may grow to.
    pub max_memory_bytes: usize,
    /// Instances alive at once; more invocations wait for a slot.
    pub max_instances: u32,
    /// Where compiled components are kept between runs.
    pub cache_dir: PathBuf,
    /// Environment variables of every function (the app settings).
    pub env: Vec<(String, String)>,
}

/// A component that cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid WebAssembly component: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path} needs an import this host does not provide ({reason}); build it with fnhost-sdk \
         against sdk/wit"
    )]
    Link { path: PathBuf, reason: String },
    #[error(
        "{path} does not implement the fnhost world: it does not export `{interface}` (needed by \
         {needed_by}); build it with fnhost-sdk of this host's version"
    )]
    MissingExport {
        path: PathBuf,
        interface: &'static str,
        needed_by: String,
    },
}

/// Why an invocation failed. The host keeps serving either way.
#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("the function trapped: {0}")]
    Trap(String),
    #[error("the function ran past functionTimeout ({0:?}) and was stopped")]
    Timeout(Duration),
    #[error("the function exceeded its memory limit of {0} MiB")]
    OutOfMemory(usize),
    #[error("the component does not export `{0}`")]
    NotExported(&'static str),
}

impl InvokeError {
    /// A short description for HTTP clients; the console gets the details.
    pub fn summary(&self) -> String {
        match self {
            InvokeError::Trap(_) => "the function trapped (see the host console)".into(),
            other => other.to_string(),
        }
    }
}

/// One compiled component, ready to instantiate.
pub struct Component {
    pre: InstancePre<HostState>,
    http: Result<HttpIndices, String>,
    orchestrator: Result<OrchestratorIndices, String>,
    activity: Result<ActivityIndices, String>,
    queue: Result<QueueIndices, String>,
    blob: Result<BlobIndices, String>,
    timer: Result<TimerIndices, String>,
    entity: Result<EntityIndices, String>,
    /// Where its functions may send HTTP requests (function.toml `allowedOutboundHosts`).
    allowed_hosts: Arc<AllowedHosts>,
    /// SHA-256 of the `.wasm`, hex.
    pub hash: String,
    /// The `.wasm` it was loaded from.
    pub path: PathBuf,
}

impl Component {
    /// Let its functions (but orchestrators) send HTTP requests to `hosts`.
    pub fn with_allowed_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.allowed_hosts = Arc::new(hosts);
        self
    }

    /// Check that the component exports `interface` (one of the `*_INTERFACE` names).
    pub fn require_export(
        &self,
        interface: &'static str,
        needed_by: &str,
    ) -> Result<(), LoadError> {
        let present = match interface {
            HTTP_INTERFACE => self.http.is_ok(),
            ORCHESTRATOR_INTERFACE => self.orchestrator.is_ok(),
            ACTIVITY_INTERFACE => self.activity.is_ok(),
            QUEUE_INTERFACE => self.queue.is_ok(),
            BLOB_INTERFACE => self.blob.is_ok(),
            TIMER_INTERFACE => self.timer.is_ok(),
            ENTITY_INTERFACE => self.entity.is_ok(),
            _ => false,
        };
        if present {
            Ok(())
        } else {
            Err(LoadError::MissingExport {
                path: self.path.clone(),
                interface,
                needed_by: needed_by.to_string(),
            })
        }
    }
}

/// One call into a guest, by trigger kind.
enum Call {
    Http(HttpRequest),
    Activity(Option<String>),
    Queue(QueueMessage),
    Blob(BlobItem),
    Timer(TimerInfo),
    Entity(durable::EntityBatch),
}

/// The guest's answer to a [`Call`] of the same kind.
enum Reply {
    Http(HttpResponse),
    Activity(Result<Option<String>, durable::Failure>),
    /// A queue, blob or timer function: its error message, if it failed.
    Done(Result<(), String>),
    Entity(durable::EntityBatchResult),
}

/// The input of a queue, blob or timer invocation.
pub enum TriggerInput {
    Queue(QueueMessage),
    Blob(BlobItem),
    Timer(TimerInfo),
}

/// The deterministic world of an orchestrator episode.
#[derive(Debug, Clone, Copy)]
pub struct Sandbox {
    /// The orchestration's current time (ms since the Unix epoch).
    pub now_ms: u64,
    /// Seed of the guest's random numbers (derived from the instance id).
    pub seed: u64,
}

/// Who is being invoked, for logs and errors.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub function: Arc<str>,
    pub id: Arc<str>,
}

/// The engine and everything shared by all components.
pub struct Runtime {
    engine: Engine,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    slots: Semaphore,
    durable: std::sync::OnceLock<SharedClient>,
    outputs: std::sync::OnceLock<SharedBindings>,
    /// Orchestrator instances kept alive between episodes (extended sessions).
    sessions: Arc<std::sync::atomic::AtomicUsize>,
    max_sessions: usize,
}

/// An orchestrator's wasm instance kept alive between the episodes of one
/// orchestration (an extended session): the next episode passes only the new
/// events instead of replaying the whole history. The engine keeps it with
/// the instance's cached history and drops it when in doubt; a fresh
/// instance then reaches the same state by replay.
pub struct OrchestratorSession {
    store: Unshared<Store<HostState>>,
    guest: bindings::exports::fnhost::function::orchestrator::Guest,
    /// The component it runs (a redeployed folder ends the session).
    hash: String,
    execution: String,
    /// Guest history events it has processed.
    events: usize,
    alive: Arc<std::sync::atomic::AtomicUsize>,
}

/// A value only ever used through `&mut`: shareable between threads because
/// a shared reference gives no access to it (what `std::sync::Exclusive`
/// does). It lets a session's `Store`, which is `Send` but not `Sync`, sit in
/// data that async code borrows across awaits.
struct Unshared<T>(T);

// SAFETY: `Unshared` exposes its value only through `&mut self`, so a `&Unshared`
// on another thread can do nothing with it.
unsafe impl<T: Send> Sync for Unshared<T> {}

impl<T> Unshared<T> {
    fn get(&mut self) -> &mut T {
        &mut self.0
    }
}

impl OrchestratorSession {
    /// Whether it can continue `execution` of `component` whose history holds `events` guest events.
    pub fn fits(&self, component: &Component, execution: &str, events: usize) -> bool {
        self.hash == component.hash && self.execution == execution && self.events == events
    }

    /// It has now seen `events` guest events of `execution`.
    pub fn seen(&mut self, execution: &str, events: usize) {
        self.execution = execution.to_string();
        self.events = events;
    }
}

impl Drop for OrchestratorSession {
    fn drop(&mut self) {
        self.alive
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

impl Runtime {
    /// Create the engine (pooling allocator, epoch interruption) and the linker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Arc<Runtime>> {
        let mut pool = PoolingAllocationConfig::default();
        // Room for the invocations and for the sessions kept between them.
        let max_sessions = (config.max_instances / 4).max(1);
        let n = config.max_instances + max_sessions;
        // A Rust component holds a few core instances (the program plus small
        // shims), usually one memory and a few tables; room for 4x that each.
        pool.total_component_instances(n)
            .total_core_instances(n.saturating_mul(8))
            .total_memories(n.saturating_mul(2))
            .total_tables(n.saturating_mul(8))
            .total_stacks(n)
            .max_core_instances_per_component(32)
            .max_memories_per_component(4)
            .max_tables_per_component(16)
            .max_memory_size(config.max_memory_bytes);
        let mut wasm = Config::new();
        wasm.epoch_interruption(true)
            .wasm_component_model(true)
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&wasm)?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        // Only components that import wasi:http link it; the gate is `Outbound`.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        bindings::fnhost::function::log::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        bindings::fnhost::function::replay_clock::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        bindings::fnhost::function::durable_client::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;
        bindings::fnhost::function::bindings::add_to_linker::<HostState, HasSelf<HostState>>(
            &mut linker,
            |s| s,
        )?;

        // The epoch ticker lives as long as the engine does.
        let weak = engine.weak();
        std::thread::Builder::new()
            .name("epoch-ticker".into())
            .spawn(move || {
                while let Some(engine) = weak.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(EPOCH_TICK);
                }
            })?;

        Ok(Arc::new(Runtime {
            engine,
            linker,
            slots: Semaphore::new(config.max_instances as usize),
            durable: std::sync::OnceLock::new(),
            outputs: std::sync::OnceLock::new(),
            sessions: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max_sessions: max_sessions as usize,
            config,
        }))
    }

    /// Load the component at `path`: from the compile cache when this exact
    /// file was compiled before by this wasmtime, else compiled and cached.
    /// CPU-heavy on a cache miss: call from a blocking thread.
    pub fn load(&self, path: &Path) -> Result<Component, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        let (component, hash) =
            cache::load_or_compile(&self.engine, &self.config.cache_dir, &bytes).map_err(|e| {
                LoadError::Invalid {
                    path: path.to_owned(),
                    reason: format!("{e:#}"),
                }
            })?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(|e| LoadError::Link {
                path: path.to_owned(),
                reason: format!("{e:#}"),
            })?;
        let http = HttpIndices::new(&pre).map_err(|e| format!("{e:#}"));
        let orchestrator = OrchestratorIndices::new(&pre).map_err(|e| format!("{e:#}"));
        let activity = ActivityIndices::new(&pre).map_err(|e| format!("{e:#}"));
        let queue = QueueIndices::new(&pre).map_err(|e| format!("{e:#}"));
        let blob = BlobIndices::new(&pre).map_err(|e| format!("{e:#}"));
        let timer = TimerIndices::new(&pre).map_err(|e| format!("{e:#}"));
        let entity = EntityIndices::new(&pre).map_err(|e| format!("{e:#}"));
        Ok(Component {
            pre,
            http,
            orchestrator,
            activity,
            queue,
            blob,
            timer,
            entity,
            allowed_hosts: Arc::default(),
            hash,
            path: path.to_owned(),
        })
    }

    /// Call the `httpTrigger` function `invocation.function` of `component`.
    pub async fn invoke_http(
        &self,
        component: &Component,
        invocation: &Invocation,
        request: HttpRequest,
    ) -> Result<HttpResponse, InvokeError> {
        match self.run(component, invocation, Call::Http(request)).await? {
            Reply::Http(r) => Ok(r),
            _ => unreachable!("an HTTP call answers with an HTTP reply"),
        }
    }

    /// Run one episode of the orchestrator `invocation.function`, deterministically:
    /// the guest's clocks read `sandbox.now_ms`, its random numbers come from
    /// `sandbox.seed`, and it has no network and no durable client.
    ///
    /// With `session` (from the instance's previous episode, `request.continued`
    /// set) the call goes to that live instance. With `keep`, the instance is
    /// handed back for the next episode (None once too many are alive, or
    /// after a failure).
    pub async fn invoke_orchestrator(
        &self,
        component: &Component,
        invocation: &Invocation,
        request: durable::OrchestratorRequest,
        sandbox: Sandbox,
        session: Option<OrchestratorSession>,
        keep: bool,
    ) -> (
        Result<durable::OrchestratorResponse, InvokeError>,
        Option<OrchestratorSession>,
    ) {
        use std::sync::atomic::Ordering;
        if component.orchestrator.is_err() {
            return (Err(InvokeError::NotExported(ORCHESTRATOR_INTERFACE)), None);
        }
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let deadline = Instant::now() + self.config.function_timeout;
        let mut session = match session {
            Some(mut s) => {
                let store = s.store.get();
                store.data_mut().deadline = deadline;
                store.data().set_clock(sandbox.now_ms);
                s
            }
            None => {
                let mut store = self.new_store(component, invocation, Some(sandbox), deadline);
                let guest = async {
                    let instance = component.pre.instantiate_async(&mut store).await?;
                    component
                        .orchestrator
                        .as_ref()
                        .expect("checked above")
                        .load(&mut store, &instance)
                }
                .await;
                let guest = match guest {
                    Ok(g) => g,
                    Err(e) => return (Err(self.classify(&store, e)), None),
                };
                self.sessions.fetch_add(1, Ordering::Relaxed);
                OrchestratorSession {
                    store: Unshared(store),
                    guest,
                    hash: component.hash.clone(),
                    execution: String::new(),
                    events: 0,
                    alive: self.sessions.clone(),
                }
            }
        };
        let name = &*invocation.function;
        let guest = session.guest.clone();
        let result = guest.call_run(session.store.get(), name, &request).await;
        match result {
            Ok(response) => {
                let finished = response.actions.iter().any(|a| {
                    matches!(
                        a,
                        durable::Action::Complete(_) | durable::Action::ContinueAsNew(_)
                    )
                });
                let kept = (keep
                    && !finished
                    && self.sessions.load(Ordering::Relaxed) <= self.max_sessions)
                    .then_some(session);
                (Ok(response), kept)
            }
            Err(e) => (Err(self.classify(session.store.get(), e)), None),
        }
    }

    /// Call the activity `invocation.function` with its JSON input.
    pub async fn invoke_activity(
        &self,
        component: &Component,
        invocation: &Invocation,
        input: Option<String>,
    ) -> Result<Result<Option<String>, durable::Failure>, InvokeError> {
        match self
            .run(component, invocation, Call::Activity(input))
            .await?
        {
            Reply::Activity(r) => Ok(r),
            _ => unreachable!("an activity call answers with an activity reply"),
        }
    }

    /// Call the `queueTrigger`, `blobTrigger` or `timerTrigger` function
    /// `invocation.function`; `Ok(Err(message))` when the function reported a failure.
    pub async fn invoke_trigger(
        &self,
        component: &Component,
        invocation: &Invocation,
        input: TriggerInput,
    ) -> Result<Result<(), String>, InvokeError> {
        let call = match input {
            TriggerInput::Queue(m) => Call::Queue(m),
            TriggerInput::Blob(b) => Call::Blob(b),
            TriggerInput::Timer(t) => Call::Timer(t),
        };
        match self.run(component, invocation, call).await? {
            Reply::Done(r) => Ok(r),
            _ => unreachable!("a trigger call answers with a done reply"),
        }
    }

    /// What the `bindings` import talks to. Set once, at start-up.
    pub fn set_output_bindings(&self, outputs: SharedBindings) {
        let _ = self.outputs.set(outputs);
    }

    /// Run a batch of operations of the entity `invocation.function`.
    pub async fn invoke_entity(
        &self,
        component: &Component,
        invocation: &Invocation,
        batch: durable::EntityBatch,
    ) -> Result<durable::EntityBatchResult, InvokeError> {
        match self.run(component, invocation, Call::Entity(batch)).await? {
            Reply::Entity(r) => Ok(r),
            _ => unreachable!("an entity call answers with an entity reply"),
        }
    }

    /// The durable engine that the `durable-client` import talks to. Set once,
    /// after start-up has connected to storage.
    pub fn set_durable_client(&self, client: SharedClient) {
        let _ = self.durable.set(client);
    }

    /// Instantiate `component` in a fresh store and make `call`.
    async fn run(
        &self,
        component: &Component,
        invocation: &Invocation,
        call: Call,
    ) -> Result<Reply, InvokeError> {
        let missing = match &call {
            Call::Http(_) => component.http.as_ref().err().map(|_| HTTP_INTERFACE),
            Call::Activity(_) => component
                .activity
                .as_ref()
                .err()
                .map(|_| ACTIVITY_INTERFACE),
            Call::Queue(_) => component.queue.as_ref().err().map(|_| QUEUE_INTERFACE),
            Call::Blob(_) => component.blob.as_ref().err().map(|_| BLOB_INTERFACE),
            Call::Timer(_) => component.timer.as_ref().err().map(|_| TIMER_INTERFACE),
            Call::Entity(_) => component.entity.as_ref().err().map(|_| ENTITY_INTERFACE),
        };
        if let Some(interface) = missing {
            return Err(InvokeError::NotExported(interface));
        }
        // Waits only when max_instances invocations already run.
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let deadline = Instant::now() + self.config.function_timeout;
        let mut store = self.new_store(component, invocation, None, deadline);
        let result = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            let name = &*invocation.function;
            wasmtime::Result::Ok(match call {
                Call::Http(request) => {
                    let guest = component
                        .http
                        .as_ref()
                        .expect("checked above")
                        .load(&mut store, &instance)?;
                    Reply::Http(guest.call_handle(&mut store, name, &request).await?)
                }
                Call::Activity(input) => {
                    let guest = component
                        .activity
                        .as_ref()
                        .expect("checked above")
                        .load(&mut store, &instance)?;
                    Reply::Activity(guest.call_run(&mut store, name, input.as_ref()).await?)
                }
                Call::Queue(message) => {
                    let guest = component
                        .queue
                        .as_ref()
                        .expect("checked above")
                        .load(&mut store, &instance)?;
                    Reply::Done(guest.call_handle(&mut store, name, &message).await?)
                }
                Call::Blob(blob) => {
                    let guest = component
                        .blob
                        .as_ref()
                        .expect("checked above")
                        .load(&mut store, &instance)?;
                    Reply::Done(guest.call_handle(&mut store, name, &blob).await?)
                }
                Call::Timer(timer) => {
                    let guest = component
                        .timer
                        .as_ref()
                        .expect("checked above")
                        .load(&mut store, &instance)?;
                    Reply::Done(guest.call_handle(&mut store, name, timer).await?)
                }
                Call::Entity(batch) => {
                    let guest = component
                        .entity
                        .as_ref()
                        .expect("checked above")
                        .load(&mut store, &instance)?;
                    Reply::Entity(guest.call_run(&mut store, name, &batch).await?)
                }
            })
        }
        .await;
        result.map_err(|e| self.classify(&store, e))
    }

    /// A fresh store with the limits, the deadline and (for orchestrators) the
    /// sandbox. Every kind but orchestrators gets the component's outbound HTTP.
    fn new_store(
        &self,
        component: &Component,
        invocation: &Invocation,
        sandbox: Option<Sandbox>,
        deadline: Instant,
    ) -> Store<HostState> {
        let durable = if sandbox.is_some() {
            None
        } else {
            self.durable.get().cloned()
        };
        let state = HostState::new(
            invocation,
            &self.config.env,
            self.config.max_memory_bytes,
            durable,
            sandbox,
            deadline,
            sandbox.is_none().then(|| component.allowed_hosts.clone()),
        );
        let mut state = state;
        if sandbox.is_none() {
            state.outputs = self.outputs.get().cloned();
        }
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= ctx.data().deadline {
                ctx.data_mut().timed_out = true;
                wasmtime::bail!("functionTimeout reached");
            }
            // Yield every tick so that a busy guest shares the thread fairly.
            Ok(UpdateDeadline::Yield(1))
        });
        store
    }

    fn classify(&self, store: &Store<HostState>, error: wasmtime::Error) -> InvokeError {
        let state = store.data();
        if state.timed_out {
            InvokeError::Timeout(self.config.function_timeout)
        } else if state.memory_exhausted {
            InvokeError::OutOfMemory(self.config.max_memory_bytes >> 20)
        } else {
            // The wasm backtrace is for --verbose; the console line gets the reason.
            tracing::debug!(
                "{} ({}): {error:?}",
                state.function(),
                state.invocation_id()
            );
            match error.downcast_ref::<wasmtime::Trap>() {
                Some(trap) => InvokeError::Trap(format!("wasm trap: {trap}")),
                None => InvokeError::Trap(format!("{error}")),
            }
        }
    }
}
