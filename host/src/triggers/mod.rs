//! Triggers: what turns the outside world's events into invocations.
//! They look functions up in the catalog and call the runtime; they know
//! nothing of wasmtime.

pub mod http;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::runtime::Invocation;

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

/// Invocations finished since start: succeeded, failed (for `/admin/metrics`).
pub static INVOCATIONS: [AtomicU64; 2] = [AtomicU64::new(0), AtomicU64::new(0)];

/// `Executed 'Functions.hello' (Succeeded, Id=..., Duration=3ms)`.
pub fn log_executed(
    invocation: &Invocation,
    error: Option<&dyn std::fmt::Display>,
    took: Duration,
) {
    INVOCATIONS[usize::from(error.is_some())].fetch_add(1, Ordering::Relaxed);
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
