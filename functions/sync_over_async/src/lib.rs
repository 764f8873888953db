//! Seed 001, "Sync over Async Web API - Durable Functions": an HTTP request
//! that waits for a reply arriving by another channel (here a blob upload).
//!
//! - `SyncOverAsyncApi_WeatherRequest` (GET) starts the orchestration with a
//!   random request id as its instance id and waits up to 60 s for it. In
//!   time: 200 with the orchestration's output (the reply's text, as JSON, as
//!   Durable Functions answers). Not in time: the instance is terminated and
//!   the request answers 500.
//! - `Sync-Over-Async-Api-DurableFunction` waits for the event
//!   `weather_async_response` and returns its data.
//! - `SyncOverAsyncApi_WeatherReply` fires for each blob in `weather-results`:
//!   `weather-results/1234.txt` raises the event on instance `1234` with the
//!   blob's text.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use fnhost_sdk::durable::{OrchestrationContext, OrchestrationError};
use fnhost_sdk::{
    Blob, HttpRequest, HttpResponse, blob_trigger, client, http_trigger, orchestrator,
};

const ORCHESTRATION_FUNCTION_NAME: &str = "Sync-Over-Async-Api-DurableFunction";
const ORCHESTRATION_COMPLETE: &str = "weather_async_response";

/// How long the request waits: 60 s as in the seed, or the app setting
/// `SyncOverAsyncApi_TimeoutSeconds` (app settings are environment variables).
fn timeout() -> Duration {
    let seconds = std::env::var("SyncOverAsyncApi_TimeoutSeconds")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    Duration::from_secs(seconds)
}

/// A random number below `i32::MAX`, as the seed's `Random.Next(Int32.MaxValue)`
/// (std's `RandomState` is seeded from WASI's random source).
fn random_request_id() -> String {
    let n = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    (n % i32::MAX as u64).to_string()
}

#[http_trigger(name = "SyncOverAsyncApi_WeatherRequest")]
fn get_weather(req: HttpRequest) -> HttpResponse {
    let request_id = random_request_id();
    if let Err(e) = client::start_new(ORCHESTRATION_FUNCTION_NAME, Some(&request_id), ()) {
        return HttpResponse::new(500).text(e.to_string());
    }
    fnhost_sdk::log::info(format!("Started orchestration for {request_id}"));
    let completion =
        client::wait_for_completion_or_create_check_status_response(&req, &request_id, timeout());
    if completion.status != 200 {
        if let Err(e) = client::terminate(&request_id, Some("Timeout Occured")) {
            fnhost_sdk::log::warn(format!("terminating {request_id}: {e}"));
        }
        return HttpResponse::new(500);
    }
    completion
}

#[orchestrator(name = "Sync-Over-Async-Api-DurableFunction")]
async fn run_orchestrator(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
    Ok(ctx
        .wait_for_external_event::<String>(ORCHESTRATION_COMPLETE)
        .await?)
}

#[blob_trigger(name = "SyncOverAsyncApi_WeatherReply")]
fn weather_reply(blob: Blob) -> Result<(), String> {
    let name = blob.param("name").unwrap_or(&blob.name);
    // "1234.txt" → "1234", as the seed's name.Remove(name.IndexOf('.')).
    let request_id = name.split('.').next().unwrap_or(name);
    client::raise_event(request_id, ORCHESTRATION_COMPLETE, blob.text())
        .map_err(|e| format!("raising {ORCHESTRATION_COMPLETE} on {request_id}: {e}"))?;
    fnhost_sdk::log::info(format!("Received reply for Request:{name}"));
    Ok(())
}

fnhost_sdk::export_functions!(get_weather, run_orchestrator, weather_reply);
