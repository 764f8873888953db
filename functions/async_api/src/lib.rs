//! The async HTTP API pattern: `POST api/start-operation` answers at once with an
//! operation id and a status URL; `GET api/operations/{id}` reports RUNNING, then
//! the result. A durable orchestration runs the long operation behind it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fnhost_sdk::durable::{OrchestrationContext, OrchestrationError};
use fnhost_sdk::{HttpRequest, HttpResponse, activity, client, http_trigger, json, orchestrator};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Operation {
    #[serde(default)]
    operation_id: String,
    processing_time: f64,
}

#[derive(Deserialize)]
struct StartRequest {
    #[serde(default = "default_processing_time")]
    processing_time: f64,
}

fn default_processing_time() -> f64 {
    5.0
}

/// `POST api/start-operation {"processing_time": 10}`.
#[http_trigger]
fn start_operation(req: HttpRequest) -> HttpResponse {
    let body: StartRequest = if req.body.is_empty() {
        StartRequest {
            processing_time: default_processing_time(),
        }
    } else {
        match req.json() {
            Ok(b) => b,
            Err(e) => return HttpResponse::bad_request(format!("invalid body: {e}")),
        }
    };
    if !(0.0..=3600.0).contains(&body.processing_time) {
        return HttpResponse::bad_request("processing_time must be between 0 and 3600 seconds");
    }
    // The operation id is the instance id; the orchestration learns it from its context.
    let input = json!({ "processing_time": body.processing_time });
    match client::start_new("async_http_api_orchestrator", None, &input) {
        Ok(operation_id) => HttpResponse::new(202)
            .header("location", format!("/api/operations/{operation_id}"))
            .json(&json!({
                "operation_id": operation_id,
                "status_url": format!("/api/operations/{operation_id}"),
            })),
        Err(e) => HttpResponse::new(500).json(&json!({ "error": e.to_string() })),
    }
}

/// `GET api/operations/{operation_id}`.
#[http_trigger]
fn get_operation(req: HttpRequest) -> HttpResponse {
    let id = req.param("operation_id").unwrap_or_default();
    let status = match client::get_status(id) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return HttpResponse::not_found()
                .json(&json!({ "error": format!("operation {id} not found") }));
        }
        Err(e) => return HttpResponse::new(500).json(&json!({ "error": e.to_string() })),
    };
    let body = match status.runtime_status.as_str() {
        "Completed" => {
            json!({ "operation_id": id, "status": "Completed", "result": status.output })
        }
        "Failed" | "Terminated" => {
            json!({ "operation_id": id, "status": status.runtime_status, "error": status.output })
        }
        _ => {
            json!({ "operation_id": id, "status": "RUNNING", "last_updated": status.last_updated_time })
        }
    };
    HttpResponse::ok().json(&body)
}

#[orchestrator]
async fn async_http_api_orchestrator(
    ctx: OrchestrationContext,
) -> Result<fnhost_sdk::JsonValue, OrchestrationError> {
    let mut operation: Operation = ctx.input()?;
    operation.operation_id = ctx.instance_id().to_string();
    let result = ctx
        .call_activity("process_long_running_operation", &operation)
        .await?;
    Ok(result)
}

/// The long-running work: here it takes `processing_time` seconds.
#[activity]
fn process_long_running_operation(operation: Operation) -> fnhost_sdk::JsonValue {
    fnhost_sdk::log::info(format!(
        "processing operation {} for {} s",
        operation.operation_id, operation.processing_time
    ));
    std::thread::sleep(Duration::from_secs_f64(operation.processing_time));
    let processed_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    json!({
        "operation_id": operation.operation_id,
        "status": "completed",
        "result": format!("Operation {} completed successfully", operation.operation_id),
        "processed_at": processed_at,
    })
}

fnhost_sdk::export_functions!(
    start_operation,
    get_operation,
    async_http_api_orchestrator,
    process_long_running_operation
);
