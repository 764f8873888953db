//! Triggers: what turns the outside world's events into invocations.
//! They look functions up in the catalog and call the runtime; they know
//! nothing of wasmtime.

pub mod http;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, RwLock};
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
