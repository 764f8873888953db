//! Durable orchestrations and activities: the replaying context, its tasks and the executor.
//!
//! An orchestrator is an `async fn` that takes an [`OrchestrationContext`]. The host calls
//! it once per *episode* with the instance's history; the SDK replays the function
//! against that history (completed work resolves from the record, nothing runs twice)
//! and hands back only the new actions. Orchestrator code must therefore be
//! deterministic: the same calls in the same order on every replay. Use the context's
//! clock, GUIDs and timers, never your own.
//!
//! ```no_run
//! use fnhost_sdk::{OrchestrationContext, OrchestrationError, activity, orchestrator};
//!
//! #[orchestrator]
//! async fn hello_sequence(ctx: OrchestrationContext) -> Result<Vec<String>, OrchestrationError> {
//!     let mut out = Vec::new();
//!     for city in ["Tokyo", "Seattle", "London"] {
//!         out.push(ctx.call_activity::<String>("say_hello", city).await?);
//!     }
//!     Ok(out)
//! }
//!
//! #[activity]
//! fn say_hello(city: String) -> String {
//!     format!("Hello, {city}!")
//! }
//!
//! fnhost_sdk::export_functions!(hello_sequence, say_hello);
//! ```

mod activity;
mod context;
mod entity;
mod error;
mod events;
mod executor;
mod futures;
mod guid;
mod retry;
mod state;
#[cfg(test)]
mod tests;

pub use context::{CriticalSection, OrchestrationContext};
pub use entity::{EntityContext, EntityError, EntityId};
pub use error::{OrchestrationError, TaskError};
pub use futures::{Either, ExternalEvent, Race, Task, Timer, WhenAll, WhenAny};
pub use retry::RetryOptions;

#[doc(hidden)]
pub use activity::{
    ActivityFailureViaDisplay, ActivityFailureViaTaskError, ActivityFn, ErrorWrap,
    OrchestrationFailureViaDisplay, OrchestrationFailureViaInto, activity_input, activity_output,
    orchestration_output,
};
#[doc(hidden)]
pub use entity::{EntityFn, run_entity};
#[doc(hidden)]
pub use executor::{OrchestratorFuture, run_orchestrator};

use serde::{Serialize, de::DeserializeOwned};

/// JSON text of `value`; JSON `null` becomes no payload, as the host stores it.
fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Option<String>, serde_json::Error> {
    let json = serde_json::to_string(value)?;
    Ok((json != "null").then_some(json))
}

/// `T` from a payload; no payload reads as JSON `null` (so `Option` and `()` accept it).
///
/// A payload that does not fit `T` but is a JSON string holding JSON that
/// does is read from that inner JSON: Durable Functions' Python client
/// encodes inputs twice (`json.dumps`, then posted as JSON), so its `100`
/// arrives as `"100"`, which the Python worker would decode again.
fn decode<T: DeserializeOwned>(json: Option<&str>) -> Result<T, serde_json::Error> {
    let text = json.unwrap_or("null");
    match serde_json::from_str(text) {
        Ok(value) => Ok(value),
        Err(e) => match serde_json::from_str::<String>(text) {
            Ok(inner) => serde_json::from_str(&inner).map_err(|_| e),
            Err(_) => Err(e),
        },
    }
}

/// Milliseconds since the Unix epoch; times before it clamp to 0.
fn millis(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod decode_tests {
    #[test]
    fn doubly_encoded_payloads_are_read_when_they_fit_no_other_way() {
        assert_eq!(super::decode::<i64>(Some("100")).unwrap(), 100);
        assert_eq!(super::decode::<i64>(Some("\"100\"")).unwrap(), 100);
        assert_eq!(super::decode::<String>(Some("\"100\"")).unwrap(), "100");
        assert!(super::decode::<i64>(Some("\"ten\"")).is_err());
        assert_eq!(super::decode::<Option<i64>>(None).unwrap(), None);
    }
}
