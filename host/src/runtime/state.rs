//! The per-invocation store data: WASI context, limits, and the host imports.

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

use super::bindings::fnhost::function::log::{Host as LogHost, Level};
use super::bindings::fnhost::function::replay_clock::Host as ReplayClockHost;
use super::outbound::Outbound;
use super::output::{GuestOutput, Stream};
use super::{Invocation, Sandbox};
use crate::config::AllowedHosts;

/// What one invocation's `Store` carries.
pub struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    http: WasiHttpCtx,
    outbound: Outbound,
    invocation: Invocation,
    max_memory_bytes: usize,
    /// Set when the epoch callback stopped the guest at its deadline.
    pub(super) timed_out: bool,
    /// Set when a memory growth was refused at the limit.
    pub(super) memory_exhausted: bool,
    /// The durable engine, when storage is configured.
    pub(super) durable: Option<super::SharedClient>,
    /// When the current call must end (functionTimeout).
    pub(super) deadline: Instant,
    /// An orchestrator's clock (ms since the epoch), set before each episode.
    pub(super) clock: Option<Arc<AtomicU64>>,
    /// Output bindings (queues, blobs); None for orchestrators.
    pub(super) outputs: Option<super::SharedBindings>,
}

impl HostState {
    pub(super) fn new(
        invocation: &Invocation,
        env: &[(String, String)],
        max_memory_bytes: usize,
        durable: Option<super::SharedClient>,
        sandbox: Option<Sandbox>,
        deadline: Instant,
        allowed_hosts: Option<Arc<AllowedHosts>>,
    ) -> Self {
        let mut wasi = WasiCtx::builder();
        wasi.envs(env)
            .stdout(GuestOutput::new(invocation, Stream::Stdout))
            .stderr(GuestOutput::new(invocation, Stream::Stderr))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let mut clock = None;
        if let Some(sandbox) = sandbox {
            // Replay must see the same world every time: the orchestration's
            // clock, and random numbers from a seed fixed per instance.
            let now = Arc::new(AtomicU64::new(sandbox.now_ms));
            clock = Some(now.clone());
            wasi.wall_clock(FixedClock(now.clone()))
                .monotonic_clock(FixedClock(now))
                .secure_random(StdRng::seed_from_u64(sandbox.seed))
                .insecure_random(StdRng::seed_from_u64(sandbox.seed.rotate_left(17)))
                .insecure_random_seed(u128::from(sandbox.seed));
        }
        let wasi = wasi.build();
        // A response body may take a quarter of the instance's memory: the
        // guest holds it whole, and growing a Vec to it needs twice that.
        let max_body = (max_memory_bytes / 4) as u64;
        HostState {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            outbound: Outbound::new(allowed_hosts, invocation, deadline, max_body),
            invocation: invocation.clone(),
            max_memory_bytes,
            timed_out: false,
            memory_exhausted: false,
            durable,
            deadline,
            clock,
            outputs: None,
        }
    }

    /// Set the orchestration's clock for the next episode of a session.
    pub(super) fn set_clock(&self, now_ms: u64) {
        if let Some(clock) = &self.clock {
            clock.store(now_ms, Ordering::Relaxed);
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

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.outbound,
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

impl ReplayClockHost for HostState {
    /// An orchestrator's SDK at a new replay position: its clocks read that
    /// time (only sandboxed stores have a settable clock).
    fn set_time(&mut self, now: u64) {
        self.set_clock(now);
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

/// A clock stopped at the orchestration's current time.
struct FixedClock(Arc<AtomicU64>);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.load(Ordering::Relaxed))
    }
}

impl HostMonotonicClock for FixedClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        self.0.load(Ordering::Relaxed).saturating_mul(1_000_000)
    }
}
