//! The WebAssembly runtime: one engine, components compiled once (cached on
//! disk), an `InstancePre` per component, a fresh `Store` per invocation.
//!
//! Nothing here knows HTTP: triggers hand in the WIT request records and get
//! WIT records back.

mod cache;
mod output;
mod state;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use wasmtime::component::{HasSelf, InstancePre, Linker};
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, UpdateDeadline,
};

pub use state::HostState;

/// Types and traits generated from `sdk/wit`.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../sdk/wit",
        world: "function",
        exports: { default: async },
    });
}

use bindings::exports::fnhost::function::http::GuestIndices as HttpIndices;
pub use bindings::fnhost::function::types::{HttpRequest, HttpResponse};

/// The exported interface that `httpTrigger` functions need.
pub const HTTP_INTERFACE: &str = "fnhost:function/http@0.1.0";

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
    /// SHA-256 of the `.wasm`, hex.
    pub hash: String,
    /// The `.wasm` it was loaded from.
    pub path: PathBuf,
}

impl Component {
    /// Check that the component exports `interface` (one of the `*_INTERFACE` names).
    pub fn require_export(
        &self,
        interface: &'static str,
        needed_by: &str,
    ) -> Result<(), LoadError> {
        let present = match interface {
            HTTP_INTERFACE => self.http.is_ok(),
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
}

impl Runtime {
    /// Create the engine (pooling allocator, epoch interruption) and the linker.
    pub fn new(config: RuntimeConfig) -> anyhow::Result<Arc<Runtime>> {
        let mut pool = PoolingAllocationConfig::default();
        let n = config.max_instances;
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
        bindings::fnhost::function::log::add_to_linker::<HostState, HasSelf<HostState>>(
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
        Ok(Component {
            pre,
            http,
            hash,
            path: path.to_owned(),
        })
    }

    /// Whether `path`'s compiled form is in the cache (for start-up messages).
    pub fn is_cached(&self, wasm: &[u8]) -> bool {
        cache::is_cached(&self.engine, &self.config.cache_dir, wasm)
    }

    /// Call the `httpTrigger` function `invocation.function` of `component`.
    pub async fn invoke_http(
        &self,
        component: &Component,
        invocation: &Invocation,
        request: HttpRequest,
    ) -> Result<HttpResponse, InvokeError> {
        let Ok(indices) = &component.http else {
            return Err(InvokeError::NotExported(HTTP_INTERFACE));
        };
        // Waits only when max_instances invocations already run.
        let _slot = self
            .slots
            .acquire()
            .await
            .expect("the semaphore is never closed");
        let mut store = self.store(invocation);
        let result = async {
            let instance = component.pre.instantiate_async(&mut store).await?;
            let guest = indices.load(&mut store, &instance)?;
            guest
                .call_handle(&mut store, &invocation.function, &request)
                .await
        }
        .await;
        result.map_err(|e| self.classify(&store, e))
    }

    /// A fresh store for one invocation, with its deadline and memory limit.
    fn store(&self, invocation: &Invocation) -> Store<HostState> {
        let deadline = Instant::now() + self.config.function_timeout;
        let state = HostState::new(invocation, &self.config.env, self.config.max_memory_bytes);
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| s);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |mut ctx| {
            if Instant::now() >= deadline {
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
