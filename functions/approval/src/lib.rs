//! The design-approval workflow of the Durable Functions training module,
//! function chaining, and a monitor.
//!
//! - `POST api/orchestrators/{functionName}` starts any orchestrator with the
//!   request body as input and answers with the status URLs.
//! - `OrchFunction` calls `Approval` twice (approved, then rejected).
//! - `ApprovalWithTimeout` waits for the `Approval` event; if none comes within
//!   the deadline (20 s, or `{"timeout_seconds": n}`), it calls `Escalation`.
//! - `HelloSequence` chains `SayHello` over three cities.
//! - `Monitor` checks a job every few seconds until it is done or expires,
//!   with `continue_as_new` so its history stays short.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fnhost_sdk::durable::{Either, OrchestrationContext, OrchestrationError};
use fnhost_sdk::{
    HttpRequest, HttpResponse, JsonValue, activity, client, http_trigger, json, orchestrator,
};
use serde::{Deserialize, Serialize};

/// The Durable Functions HTTP starter template.
#[http_trigger(name = "HttpStart")]
fn http_start(req: HttpRequest) -> HttpResponse {
    let name = req.param("functionName").unwrap_or_default();
    let input: Option<JsonValue> = if req.body.is_empty() {
        None
    } else {
        match req.json() {
            Ok(v) => Some(v),
            Err(e) => return HttpResponse::bad_request(format!("the body is not JSON: {e}")),
        }
    };
    match client::start_new(name, None, &input) {
        Ok(id) => {
            fnhost_sdk::log::info(format!("Started orchestration with ID = '{id}'."));
            client::create_check_status_response(&req, &id)
        }
        Err(e) => HttpResponse::bad_request(e.to_string()),
    }
}

#[orchestrator(name = "OrchFunction")]
async fn orch_function(ctx: OrchestrationContext) -> Result<Vec<String>, OrchestrationError> {
    let mut outputs = Vec::new();
    outputs.push(ctx.call_activity::<String>("Approval", "Approved").await?);
    outputs.push(ctx.call_activity::<String>("Approval", "Rejected").await?);
    Ok(outputs)
}

#[derive(Deserialize, Default)]
struct ApprovalInput {
    timeout_seconds: Option<u64>,
}

#[orchestrator(name = "ApprovalWithTimeout")]
async fn approval_with_timeout(
    ctx: OrchestrationContext,
) -> Result<Vec<String>, OrchestrationError> {
    let input: Option<ApprovalInput> = ctx.input().unwrap_or_default();
    let timeout = input.and_then(|i| i.timeout_seconds).unwrap_or(20);
    let deadline = ctx.current_utc_datetime() + Duration::from_secs(timeout);
    let approval = ctx.wait_for_external_event::<JsonValue>("Approval");
    let timeout_task = ctx.create_timer(deadline);
    let mut outputs = Vec::new();
    match ctx.race(approval, timeout_task).await {
        Either::Left(_) => outputs.push(ctx.call_activity::<String>("Approval", "Approved").await?),
        Either::Right(()) => outputs.push(
            ctx.call_activity::<String>("Escalation", "Head of department")
                .await?,
        ),
    }
    Ok(outputs)
}

#[activity(name = "Approval")]
fn approval(name: String) -> String {
    format!("Your project design proposal has been -  {name}!")
}

#[activity(name = "Escalation")]
fn escalation(name: String) -> String {
    format!(
        "ESCALATION : You have not approved the project design proposal - reassigning to your Manager!  {name}!"
    )
}

#[orchestrator(name = "HelloSequence")]
async fn hello_sequence(ctx: OrchestrationContext) -> Result<Vec<String>, OrchestrationError> {
    let mut outputs = Vec::new();
    for city in ["Tokyo", "Seattle", "London"] {
        outputs.push(ctx.call_activity::<String>("SayHello", city).await?);
    }
    Ok(outputs)
}

#[activity(name = "SayHello")]
fn say_hello(city: String) -> String {
    format!("Hello {city}!")
}

/// The monitor's state, carried from one execution to the next.
#[derive(Serialize, Deserialize, Clone)]
struct MonitorState {
    job_id: String,
    /// The job is done from this time on (ms since the Unix epoch).
    ready_at_ms: u64,
    #[serde(default = "default_interval")]
    interval_seconds: u64,
    /// Give up after this time (ms since the Unix epoch).
    expires_at_ms: u64,
    #[serde(default)]
    checks: u32,
}

fn default_interval() -> u64 {
    5
}

#[orchestrator(name = "Monitor")]
async fn monitor(ctx: OrchestrationContext) -> Result<JsonValue, OrchestrationError> {
    let mut state: MonitorState = ctx.input()?;
    let now = ctx.current_utc_datetime();
    if millis(now) >= state.expires_at_ms {
        return Ok(json!({ "job_id": state.job_id, "status": "expired", "checks": state.checks }));
    }
    let status: String = ctx.call_activity("CheckJobStatus", &state).await?;
    state.checks += 1;
    ctx.set_custom_status(json!({ "checks": state.checks, "last": status }));
    if status == "Completed" {
        return Ok(json!({ "job_id": state.job_id, "status": "done", "checks": state.checks }));
    }
    ctx.create_timer(now + Duration::from_secs(state.interval_seconds))
        .await;
    ctx.continue_as_new(&state);
    Ok(JsonValue::Null)
}

/// Whether the job is done: it is once the clock passes `ready_at_ms`.
#[activity(name = "CheckJobStatus")]
fn check_job_status(state: MonitorState) -> String {
    if millis(SystemTime::now()) >= state.ready_at_ms {
        "Completed".into()
    } else {
        "Running".into()
    }
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fnhost_sdk::export_functions!(
    http_start,
    orch_function,
    approval_with_timeout,
    approval,
    escalation,
    hello_sequence,
    say_hello,
    monitor,
    check_job_status
);
