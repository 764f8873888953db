//! Outbound HTTP from functions (`fnhost_sdk::http` over wasi:http): allowed
//! origins work, others are refused with a clear error and a console line,
//! orchestrators never call out, and bad `allowedOutboundHosts` fail the load.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;
#[path = "support/upstream.rs"]
mod upstream;

use std::time::{Duration, Instant};

use azurite::Azurite;
use durable_support::{finished, project};
use serde_json::Value;
use support::{Project, client, get};
use upstream::Upstream;

/// The fixture's `fetch` function alone (its durable functions would need
/// storage), with `allowed` as its `allowedOutboundHosts` line.
fn http_only(allowed: &str) -> Project {
    let p = Project::with(&["outbound"]);
    p.write(
        "functions/outbound/function.toml",
        &format!(
            "{allowed}\n[[functions]]\nname = \"fetch\"\ntrigger = {{ type = \"httpTrigger\", methods = [\"get\", \"post\"], authLevel = \"anonymous\" }}\n"
        ),
    );
    p
}

const LOOPBACK: &str = "allowedOutboundHosts = [\"http://127.0.0.1:*\"]";

/// GET `api/fetch?url=...` on `host`; status and body.
fn fetch(host: &support::Host, url: &str) -> (u16, String) {
    get(&host.url(&format!("/api/fetch?url={url}")))
}

#[test]
fn http_function_calls_an_allowed_host() {
    let upstream = Upstream::start();
    let p = http_only(LOOPBACK);
    let host = p.start(&[]);

    let (code, body) = fetch(&host, &upstream.url("/hello"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, "200 text/plain hello from upstream");

    let r = client()
        .post(host.url(&format!("/api/fetch?url={}", upstream.url("/echo"))))
        .body("the posted body")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().unwrap(),
        "200 text/plain POST outbound the posted body"
    );
    assert_eq!(upstream.requests(), 2);
}

#[test]
fn forbidden_hosts_are_refused_with_a_clear_error_and_a_console_line() {
    let upstream = Upstream::start();
    let p = http_only(LOOPBACK);
    let mut host = p.start(&[]);

    // The same server by a name that is not listed.
    let other = format!("http://localhost:{}/hello?secret=s3", upstream.port);
    let (code, body) = fetch(&host, &other);
    assert_eq!(code, 502, "{body}");
    assert!(
        body.starts_with(&format!(
            "the host refused the request to {other} (HttpRequestDenied): add its origin"
        )),
        "{body}"
    );
    assert!(body.contains("allowedOutboundHosts"), "{body}");
    let line = host.wait_for(
        "Outbound HTTP request of 'Functions.fetch'",
        Duration::from_secs(10),
    );
    assert!(
        line.contains(&format!(
            "to http://localhost:{}/hello refused",
            upstream.port
        )) && line.contains("not in allowedOutboundHosts [\"http://127.0.0.1:*\"]"),
        "{line}"
    );
    assert!(
        !line.contains("s3"),
        "the query stays out of the console: {line}"
    );

    // A folder that lists nothing (the default) may call nothing, 127.0.0.1 included.
    let closed = http_only("");
    let mut closed_host = closed.start(&[]);
    let (code, body) = fetch(&closed_host, &upstream.url("/hello"));
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("HttpRequestDenied"), "{body}");
    let line = closed_host.wait_for(
        "Outbound HTTP request of 'Functions.fetch'",
        Duration::from_secs(10),
    );
    assert!(line.contains("not in allowedOutboundHosts []"), "{line}");
    assert_eq!(
        upstream.requests(),
        0,
        "no refused request reached the server"
    );
}

#[test]
fn outbound_calls_end_at_function_timeout_and_bodies_are_capped() {
    let upstream = Upstream::start();
    let p = http_only(LOOPBACK);
    // 32 MiB of memory: bodies up to 8 MiB.
    p.write(
        "host.toml",
        "functionTimeout = \"00:00:02\"\n[wasm]\nmaxMemoryMB = 32\n",
    );
    let host = p.start(&[]);

    let started = Instant::now();
    let (code, body) = fetch(&host, &upstream.url("/hang"));
    let took = started.elapsed();
    assert_eq!(code, 500, "{body}");
    assert!(body.contains("functionTimeout"), "{body}");
    assert!(took < Duration::from_secs(10), "took {took:?}");

    let (code, body) = fetch(&host, &upstream.url(&format!("/big?n={}", 9 << 20)));
    assert_eq!(code, 502, "{body}");
    assert!(
        body.contains(&format!(
            "HttpResponseBodySize: the response body is over the host's limit (a quarter of \
             [wasm] maxMemoryMB): it has {} bytes",
            9 << 20
        )),
        "{body}"
    );
    let (code, body) = fetch(&host, &upstream.url(&format!("/big?n={}", 1 << 20)));
    assert_eq!(code, 200);
    assert_eq!(body.len(), "200 text/plain ".len() + (1 << 20));
}

#[test]
fn activities_call_out_and_orchestrators_cannot() {
    let upstream = Upstream::start();
    let azurite = Azurite::start();
    let p = project(&azurite, &["outbound"], "");
    let mut host = p.start(&[]);

    let r = client()
        .post(host.url("/runtime/webhooks/durabletask/orchestrators/FetchOrchestrator"))
        .json(&upstream.url("/hello"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().unwrap();
    let done = finished(
        started["statusQueryGetUri"].as_str().unwrap(),
        Duration::from_secs(60),
    );
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    let output = &done["output"];
    assert_eq!(output["via_activity"], "hello from upstream", "{done}");
    let direct = output["direct"].as_str().unwrap();
    assert!(
        direct.starts_with(&format!(
            "the host refused the request to {} (HttpRequestDenied)",
            upstream.url("/hello")
        )),
        "{direct}"
    );
    let line = host.wait_for(
        "Outbound HTTP request of 'Functions.FetchOrchestrator'",
        Duration::from_secs(10),
    );
    assert!(
        line.contains("orchestrators have no outbound I/O"),
        "{line}"
    );
    // Only the activity's request reached the server.
    assert_eq!(upstream.requests(), 1);
}

#[test]
fn bad_allowed_outbound_hosts_fail_the_folder_load() {
    let p = Project::with(&["outbound", "hello"]);
    p.write(
        "functions/outbound/function.toml",
        "allowedOutboundHosts = [\"http://127.0.0.1:*\",\n  \"api.example.com\"]\n[[functions]]\nname = \"fetch\"\ntrigger = { type = \"httpTrigger\" }\n",
    );
    let mut host = p.start(&[]);
    let line = host.wait_for(
        "Function folder 'outbound' is in error:",
        Duration::from_secs(30),
    );
    assert!(
        line.contains(
            "outbound/function.toml line 1: allowedOutboundHosts entry \"api.example.com\" has \
             no scheme: write \"https://api.example.com\" (or \"*://api.example.com\" for http \
             and https)"
        ),
        "{line}"
    );
    assert_eq!(get(&host.url("/api/hello?name=a")).0, 200);
    assert_eq!(get(&host.url("/api/fetch")).0, 404);
}
