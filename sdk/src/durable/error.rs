//! Errors of durable tasks (`TaskError`) and of whole orchestrations (`OrchestrationError`).

use std::fmt;

use crate::bindings::fnhost::function::durable_types::Failure;

/// Why an awaited task failed: an activity or sub-orchestration that failed, or a
/// result, event payload or input whose JSON does not fit the type asked for.
///
/// `?` turns it into an [`OrchestrationError`], so an unhandled task failure fails the
/// orchestration with the same type and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskError {
    /// e.g. `"ActivityError"`, `"InvalidOutput"`, `"InvalidEventData"`, or what the failing code chose.
    pub error_type: String,
    /// What went wrong, from the failing code.
    pub message: String,
    /// Extra JSON the failing code attached, if any.
    pub details: Option<String>,
}

impl TaskError {
    /// A task error of type `error_type`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            details: None,
        }
    }
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for TaskError {}

impl From<Failure> for TaskError {
    fn from(f: Failure) -> Self {
        Self {
            error_type: f.error_type,
            message: f.message,
            details: f.details,
        }
    }
}

impl From<TaskError> for Failure {
    fn from(e: TaskError) -> Self {
        Failure {
            error_type: e.error_type,
            message: e.message,
            details: e.details,
        }
    }
}

/// Why an orchestration failed: what an orchestrator returns as `Err`, and what the
/// instance's status then shows.
///
/// `?` produces one from a [`TaskError`] (keeping its type and message), from a
/// `serde_json::Error`, and from a `String` or `&str` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrchestrationError {
    /// e.g. `"ActivityError"` from a failed task, `"OrchestrationError"` from a message.
    pub error_type: String,
    /// What went wrong.
    pub message: String,
    /// Extra JSON for whoever reads the status, if any.
    pub details: Option<String>,
}

impl OrchestrationError {
    /// An error of type `error_type`.
    pub fn new(error_type: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            message: message.into(),
            details: None,
        }
    }

    /// Attach `details`, serialized to JSON (left out if it cannot be).
    pub fn with_details(mut self, details: impl serde::Serialize) -> Self {
        self.details = super::encode(&details).ok().flatten();
        self
    }
}

impl fmt::Display for OrchestrationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type, self.message)
    }
}

impl std::error::Error for OrchestrationError {}

impl From<TaskError> for OrchestrationError {
    fn from(e: TaskError) -> Self {
        Self {
            error_type: e.error_type,
            message: e.message,
            details: e.details,
        }
    }
}

impl From<serde_json::Error> for OrchestrationError {
    fn from(e: serde_json::Error) -> Self {
        Self::new("SerializationError", e.to_string())
    }
}

impl From<String> for OrchestrationError {
    fn from(message: String) -> Self {
        Self::new("OrchestrationError", message)
    }
}

impl From<&str> for OrchestrationError {
    fn from(message: &str) -> Self {
        Self::new("OrchestrationError", message)
    }
}

impl From<OrchestrationError> for Failure {
    fn from(e: OrchestrationError) -> Self {
        Failure {
            error_type: e.error_type,
            message: e.message,
            details: e.details,
        }
    }
}
