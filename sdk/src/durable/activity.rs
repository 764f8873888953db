//! Glue for the `#[activity]` and `#[orchestrator]` wrappers: JSON in and out, errors to failures.

use std::cell::Cell;
use std::fmt::Display;

use serde::{Serialize, de::DeserializeOwned};

use super::error::{OrchestrationError, TaskError};
use crate::bindings::fnhost::function::durable_types::Failure;

/// What the `#[activity]` wrapper is: JSON input to JSON output or failure.
pub type ActivityFn = fn(Option<String>) -> Result<Option<String>, Failure>;

/// The activity's parameter from its JSON input (no input reads as `null`).
pub fn activity_input<T: DeserializeOwned>(
    function: &str,
    input: Option<String>,
) -> Result<T, Failure> {
    super::decode(input.as_deref()).map_err(|e| Failure {
        error_type: "InvalidInput".into(),
        message: format!(
            "the input of activity '{function}' does not fit its parameter type: {e}; check \
             what the orchestrator passes to call_activity"
        ),
        details: None,
    })
}

/// The activity's return value as JSON.
pub fn activity_output<U: Serialize>(function: &str, output: U) -> Result<Option<String>, Failure> {
    super::encode(&output).map_err(|e| serialization_failure("activity", function, &e))
}

/// The orchestrator's return value as JSON.
pub fn orchestration_output<T: Serialize>(
    function: &str,
    output: T,
) -> Result<Option<String>, Failure> {
    super::encode(&output).map_err(|e| serialization_failure("orchestrator", function, &e))
}

fn serialization_failure(kind: &str, function: &str, e: &serde_json::Error) -> Failure {
    Failure {
        error_type: "SerializationError".into(),
        message: format!(
            "{kind} '{function}' returned a value that cannot be serialized to JSON: {e}"
        ),
        details: None,
    }
}

/// An error on its way to a `Failure`. The wrappers call `(&ErrorWrap::new(e)).…_failure()`:
/// method lookup picks the impl on `ErrorWrap` when the error converts into the SDK's
/// error type (keeping its `error_type`), and falls back to the one on `&ErrorWrap`
/// (any `Display`) otherwise.
pub struct ErrorWrap<E>(Cell<Option<E>>);

impl<E> ErrorWrap<E> {
    /// Wrap `error`.
    pub fn new(error: E) -> Self {
        Self(Cell::new(Some(error)))
    }

    fn take(&self) -> E {
        self.0
            .take()
            .expect("the generated wrapper converts each error once")
    }
}

/// An activity error that is a [`TaskError`]: its type, message and details are kept.
pub trait ActivityFailureViaTaskError {
    fn activity_failure(&self) -> Failure;
}

impl<E: Into<TaskError>> ActivityFailureViaTaskError for ErrorWrap<E> {
    fn activity_failure(&self) -> Failure {
        Failure::from(Into::<TaskError>::into(self.take()))
    }
}

/// Any other activity error: an `ActivityError` with its text.
pub trait ActivityFailureViaDisplay {
    fn activity_failure(&self) -> Failure;
}

impl<E: Display> ActivityFailureViaDisplay for &ErrorWrap<E> {
    fn activity_failure(&self) -> Failure {
        Failure {
            error_type: "ActivityError".into(),
            message: self.take().to_string(),
            details: None,
        }
    }
}

/// An orchestrator error that converts into [`OrchestrationError`] (it, `TaskError`,
/// `serde_json::Error`, strings): its type, message and details are kept.
pub trait OrchestrationFailureViaInto {
    fn orchestration_failure(&self) -> Failure;
}

impl<E: Into<OrchestrationError>> OrchestrationFailureViaInto for ErrorWrap<E> {
    fn orchestration_failure(&self) -> Failure {
        Failure::from(Into::<OrchestrationError>::into(self.take()))
    }
}

/// Any other orchestrator error: an `OrchestrationError` with its text.
pub trait OrchestrationFailureViaDisplay {
    fn orchestration_failure(&self) -> Failure;
}

impl<E: Display> OrchestrationFailureViaDisplay for &ErrorWrap<E> {
    fn orchestration_failure(&self) -> Failure {
        Failure {
            error_type: "OrchestrationError".into(),
            message: self.take().to_string(),
            details: None,
        }
    }
}
