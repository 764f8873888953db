//! The durable client: start, query and control orchestration instances from any function.
//!
//! ```no_run
//! use fnhost_sdk::{HttpRequest, HttpResponse, client, http_trigger};
//!
//! #[http_trigger]
//! fn starter(req: HttpRequest) -> HttpResponse {
//!     let input: serde_json::Value = req.json().unwrap_or_default();
//!     match client::start_new("hello_sequence", None, &input) {
//!         Ok(id) => client::create_check_status_response(&req, &id),
//!         Err(e) => HttpResponse::new(500).text(e.to_string()),
//!     }
//! }
//! ```

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::bindings::fnhost::function::durable_client as wit;
use crate::{HttpRequest, HttpResponse, JsonValue};

/// Why a client call failed: the host's answer (unknown orchestrator, storage
/// unreachable, ...) or an input that cannot be serialized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    /// What went wrong, naming the instance or orchestrator.
    pub message: String,
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

impl From<String> for ClientError {
    fn from(message: String) -> Self {
        Self { message }
    }
}

/// An instance's status, with Durable Functions' field names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OrchestrationStatus {
    /// The orchestrator's name.
    pub name: String,
    pub instance_id: String,
    /// `Pending`, `Running`, `Completed`, `ContinuedAsNew`, `Failed`, `Terminated` or `Suspended`.
    pub runtime_status: String,
    pub input: JsonValue,
    /// The output once completed; the failure once failed.
    pub output: JsonValue,
    /// What the orchestrator last passed to `set_custom_status`.
    pub custom_status: JsonValue,
    /// ISO 8601, UTC.
    pub created_time: String,
    /// ISO 8601, UTC.
    pub last_updated_time: String,
    /// The history events, when asked for with [`get_status_json`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<JsonValue>,
}

impl Default for OrchestrationStatus {
    fn default() -> Self {
        Self {
            name: String::new(),
            instance_id: String::new(),
            runtime_status: String::new(),
            input: JsonValue::Null,
            output: JsonValue::Null,
            custom_status: JsonValue::Null,
            created_time: String::new(),
            last_updated_time: String::new(),
            history: None,
        }
    }
}

fn encode(what: &str, value: impl Serialize) -> Result<Option<String>, ClientError> {
    let json = serde_json::to_string(&value)
        .map_err(|e| ClientError::from(format!("{what} cannot be serialized to JSON: {e}")))?;
    Ok((json != "null").then_some(json))
}

/// Start the orchestrator `orchestrator` with `input`; its instance id (`instance_id`,
/// or a new GUID).
pub fn start_new(
    orchestrator: &str,
    instance_id: Option<&str>,
    input: impl Serialize,
) -> Result<String, ClientError> {
    let input = encode(&format!("the input of '{orchestrator}'"), input)?;
    Ok(wit::start_new(orchestrator, instance_id, input.as_deref())?)
}

/// The status of `instance_id` with its input, without history; `None` if unknown.
pub fn get_status(instance_id: &str) -> Result<Option<OrchestrationStatus>, ClientError> {
    let Some(json) = wit::get_status(instance_id, false, true)? else {
        return Ok(None);
    };
    parse_status(instance_id, &json).map(Some)
}

fn parse_status(instance_id: &str, json: &str) -> Result<OrchestrationStatus, ClientError> {
    serde_json::from_str(json).map_err(|e| {
        ClientError::from(format!(
            "the host's status of instance '{instance_id}' is not a status document: {e}"
        ))
    })
}

/// The status document of `instance_id` as JSON, with its history and input if asked.
pub fn get_status_json(
    instance_id: &str,
    show_history: bool,
    show_input: bool,
) -> Result<Option<JsonValue>, ClientError> {
    let Some(json) = wit::get_status(instance_id, show_history, show_input)? else {
        return Ok(None);
    };
    serde_json::from_str(&json).map(Some).map_err(|e| {
        ClientError::from(format!(
            "the host's status of instance '{instance_id}' is not JSON: {e}"
        ))
    })
}

/// Raise the event `event_name` with `data` on `instance_id`.
pub fn raise_event(
    instance_id: &str,
    event_name: &str,
    data: impl Serialize,
) -> Result<(), ClientError> {
    let data = encode(&format!("the data of event '{event_name}'"), data)?;
    Ok(wit::raise_event(instance_id, event_name, data.as_deref())?)
}

/// Send `operation` with `input` to `entity`, one-way: it returns once the
/// signal is stored, before the operation runs.
pub fn signal_entity(
    entity: &crate::EntityId,
    operation: &str,
    input: impl Serialize,
) -> Result<(), ClientError> {
    let input = encode(&format!("the input of operation '{operation}'"), input)?;
    Ok(wit::signal_entity(
        &entity.into(),
        operation,
        input.as_deref(),
        None,
    )?)
}

/// The state of `entity` as `T`; `None` if it has none.
pub fn read_entity_state<T: serde::de::DeserializeOwned>(
    entity: &crate::EntityId,
) -> Result<Option<T>, ClientError> {
    let Some(json) = wit::read_entity_state(&entity.into())? else {
        return Ok(None);
    };
    serde_json::from_str(&json).map(Some).map_err(|e| {
        ClientError::from(format!(
            "the state of entity {entity} does not read as the type asked for: {e}"
        ))
    })
}

/// Stop `instance_id` for good; it ends `Terminated`.
pub fn terminate(instance_id: &str, reason: Option<&str>) -> Result<(), ClientError> {
    Ok(wit::terminate(instance_id, reason)?)
}

/// Pause `instance_id`: events are kept but not processed until [`resume`].
pub fn suspend(instance_id: &str, reason: Option<&str>) -> Result<(), ClientError> {
    Ok(wit::suspend(instance_id, reason)?)
}

/// Resume a suspended `instance_id`.
pub fn resume(instance_id: &str, reason: Option<&str>) -> Result<(), ClientError> {
    Ok(wit::resume(instance_id, reason)?)
}

/// Delete the history and status of `instance_id`; whether it existed.
pub fn purge(instance_id: &str) -> Result<bool, ClientError> {
    Ok(wit::purge(instance_id)?)
}

/// 202 with `Location` and the management URLs of `instance_id`, based on the URL
/// that `request` addressed.
pub fn create_check_status_response(request: &HttpRequest, instance_id: &str) -> HttpResponse {
    wit::create_check_status_response(&request.url, instance_id).into()
}

/// 200 with the output if `instance_id` finishes within `timeout`, else the 202 of
/// [`create_check_status_response`].
pub fn wait_for_completion_or_create_check_status_response(
    request: &HttpRequest,
    instance_id: &str,
    timeout: Duration,
) -> HttpResponse {
    let timeout_ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
    wit::wait_for_completion_or_create_check_status_response(&request.url, instance_id, timeout_ms)
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_document_parses_with_durable_field_names() {
        let json = r#"{"name":"Hello","instanceId":"abc","runtimeStatus":"Completed",
            "input":null,"output":["x"],"customStatus":{"step":2},
            "createdTime":"2026-01-01T00:00:00Z","lastUpdatedTime":"2026-01-01T00:00:01Z"}"#;
        let status = parse_status("abc", json).unwrap();
        assert_eq!(status.runtime_status, "Completed");
        assert_eq!(status.output, serde_json::json!(["x"]));
        assert_eq!(status.custom_status["step"], 2);
        assert_eq!(status.history, None);
    }

    #[test]
    fn a_status_that_is_not_a_document_names_the_instance() {
        let error = parse_status("abc", "[1]").unwrap_err();
        assert!(error.message.contains("'abc'"), "{error}");
    }
}
