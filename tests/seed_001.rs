//! Seed 001, sync over async, end to end on Azurite and the real host: a GET
//! waits for its orchestration, which waits for a blob uploaded by the real
//! Azure Storage SDK for Python; without the blob the request times out.

#[path = "support/azurite.rs"]
mod azurite;
mod support;
#[path = "triggers_support.rs"]
mod triggers_support;

use std::time::Duration;

use azurite::Azurite;
use serde_json::Value;
use support::{Project, get};
use triggers_support::{HOST_TOML, project, sdk};

const DEADLINE: Duration = Duration::from_secs(60);
const ROUTE: &str = "/api/SyncOverAsyncApi_WeatherRequest";

fn seed(azurite: &Azurite, timeout_seconds: Option<u32>) -> Project {
    let p = project(azurite, &["sync_over_async"], HOST_TOML);
    let extra = timeout_seconds
        .map(|s| format!("SyncOverAsyncApi_TimeoutSeconds = \"{s}\"\n"))
        .unwrap_or_default();
    p.write(
        "local.settings.toml",
        &format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\n{extra}",
            azurite.connection_string
        ),
    );
    p
}

/// The request id the waiting request started, from its log line.
fn request_id(host: &mut support::Host) -> String {
    let line = host.wait_for("Started orchestration for ", DEADLINE);
    line.rsplit("Started orchestration for ")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn a_reply_blob_uploaded_within_the_wait_answers_the_request_with_its_text() {
    let azurite = Azurite::start();
    let p = seed(&azurite, None);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    let url = host.url(ROUTE);
    let waiting = std::thread::spawn(move || get(&url));
    let id = request_id(&mut host);
    assert!(
        id.parse::<i32>().is_ok(),
        "a random Int32 as in the seed: {id}"
    );
    let reply = "Sunny, 21 °C, light breeze";
    sdk(
        &azurite,
        &["upload", "weather-results", &format!("{id}.txt"), reply],
    );
    let (status, body) = waiting.join().unwrap();
    assert_eq!(status, 200, "{body}");
    // The orchestration's output, as Durable Functions answers: JSON.
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), reply);
    host.wait_for(&format!("Received reply for Request:{id}.txt"), DEADLINE);
    let (_, status) = get(&host.url(&format!("/runtime/webhooks/durabletask/instances/{id}")));
    let status: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["runtimeStatus"], "Completed");
    assert_eq!(status["name"], "Sync-Over-Async-Api-DurableFunction");
}

#[test]
fn without_a_reply_the_instance_is_terminated_and_the_request_answers_500() {
    let azurite = Azurite::start();
    // 3 s instead of the seed's 60 s (the app setting the sample reads).
    let p = seed(&azurite, Some(3));
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    let (status, _) = get(&host.url(ROUTE));
    assert_eq!(status, 500);
    let id = request_id(&mut host);
    let url = host.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    support::poll("the instance terminated", DEADLINE, || {
        let (_, body) = get(&url);
        let v: Value = serde_json::from_str(&body).ok()?;
        (v["runtimeStatus"] == "Terminated").then_some(())
    });
}
