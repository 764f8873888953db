//! The per-invocation store data: WASI context, limits, and the host imports.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::Invocation;
use super::bindings::fnhost::function::log::{Host as LogHost, Level};
use super::output::{GuestOutput, Stream};

/// What one invocation's `Store` carries.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    invocation: Invocation,
    max_memory_bytes: usize,
    /// Set when the epoch callback stopped the guest at its deadline.
    pub(super) timed_out: bool,
    /// Set when a memory growth was refused at the limit.
    pub(super) memory_exhausted: bool,
}

impl HostState {
    pub(super) fn new(
        invocation: &Invocation,
        env: &[(String, String)],
        max_memory_bytes: usize,
    ) -> Self {
        let wasi = WasiCtx::builder()
            .envs(env)
            .stdout(GuestOutput::new(invocation, Stream::Stdout))
            .stderr(GuestOutput::new(invocation, Stream::Stderr))
            .build();
        HostState {
            wasi,
            table: ResourceTable::new(),
            invocation: invocation.clone(),
            max_memory_bytes,
            timed_out: false,
            memory_exhausted: false,
        }
    }
}

impl HostState {
    pub(super) fn function(&self) -> &str {
        &self.invocation.function
    }

    pub(super) fn invocation_id(&self) -> &str {
        &self.invocation.id
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl ResourceLimiter for HostState {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = desired <= self.max_memory_bytes;
        if !allowed {
            self.memory_exhausted = true;
        }
        Ok(allowed)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl LogHost for HostState {
    fn log(&mut self, level: Level, message: String) {
        let f = &*self.invocation.function;
        let id = &*self.invocation.id;
        match level {
            Level::Trace => {
                tracing::trace!(target: "function", function = f, invocation = id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "function", function = f, invocation = id, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "function", function = f, invocation = id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "function", function = f, invocation = id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "function", function = f, invocation = id, "{message}")
            }
        }
    }
}
