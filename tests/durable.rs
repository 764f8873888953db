//! Durable orchestrations end to end: the seeds' flows over HTTP against a
//! real Azurite, timers, events, retries, sub-orchestrations, determinism.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azurite::Azurite;
use durable_support::{finished, project, status};
use serde_json::{Value, json};
use support::{client, poll};

const DEADLINE: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Start `name` through the management API's `orchestrators/{name}` route; the check-status payload.
fn start(host: &support::Host, name: &str, input: Value) -> Value {
    let r = client()
        .post(host.url(&format!(
            "/runtime/webhooks/durabletask/orchestrators/{name}"
        )))
        .json(&input)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let body: Value = r.json().unwrap();
    assert_eq!(body["statusQueryGetUri"], location.as_str());
    body
}

#[test]
fn fan_out_fan_in_seed_flow() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["fan_out"], "");
    let host = p.start(&[]);

    let r = client()
        .post(host.url("/api/starter_function"))
        .json(&json!({"start": "2025-06-17T10:00:00Z", "end": "2025-06-17T11:00:00Z", "total_chunks": 5, "time": "2025-06-17T10:00:00Z"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let location = r.headers()["location"].to_str().unwrap().to_string();
    let started: Value = r.json().unwrap();
    let id = started["id"].as_str().unwrap();
    for key in [
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "rewindPostUri",
        "purgeHistoryDeleteUri",
        "restartPostUri",
        "suspendPostUri",
        "resumePostUri",
    ] {
        assert!(
            started[key]
                .as_str()
                .unwrap()
                .contains(&format!("/runtime/webhooks/durabletask/instances/{id}")),
            "{key}: {started}"
        );
    }
    assert_eq!(started["statusQueryGetUri"], location.as_str());

    // Visible at once, then done.
    let (code, early) = status(&location);
    assert!(code == 202 || code == 200, "{code} {early}");
    assert_eq!(early["instanceId"], id);
    assert_eq!(early["name"], "orchestrator_function");
    let done = finished(&location, DEADLINE);
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["input"]["total_chunks"], 5);
    let output = &done["output"];
    assert_eq!(output["status"], "completed");
    assert_eq!(output["total_chunks"], 5);
    let results = output["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for (i, r) in results.iter().enumerate() {
        assert_eq!(r["chunk_id"], i);
        assert_eq!(r["status"], "success");
        assert!(r["processing_time"].as_f64().unwrap() > 0.0, "{r}");
    }
    for key in ["createdTime", "lastUpdatedTime"] {
        assert!(done[key].as_str().unwrap().ends_with('Z'), "{done}");
    }

    // The activity on its own, over HTTP.
    let r = client()
        .post(host.url("/api/test_activity_function"))
        .json(&json!({"chunk_id": 1, "start": "2025-06-17T10:00:00Z", "end": "2025-06-17T11:00:00Z", "total_chunks": 1, "time": "2025-06-17T10:00:00Z"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(
        (v["chunk_id"].clone(), v["status"].clone()),
        (json!(1), json!("success"))
    );
}

#[test]
fn async_http_api_seed_flow() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["async_api"], "");
    let host = p.start(&[]);
    let r = client()
        .post(host.url("/api/start-operation"))
        .json(&json!({"processing_time": 2}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().unwrap();
    let id = started["operation_id"].as_str().unwrap().to_string();
    assert_eq!(started["status_url"], format!("/api/operations/{id}"));

    let running = support::get(&host.url(&format!("/api/operations/{id}")));
    let running: Value = serde_json::from_str(&running.1).unwrap();
    assert_eq!(running["status"], "RUNNING", "{running}");
    assert_eq!(running["operation_id"], id.as_str());
    assert!(running["last_updated"].is_string());

    let done = poll("the operation to complete", DEADLINE, || {
        let v: Value =
            serde_json::from_str(&support::get(&host.url(&format!("/api/operations/{id}"))).1)
                .unwrap();
        (v["status"] == "Completed").then_some(v)
    });
    let result = &done["result"];
    assert_eq!(result["operation_id"], id.as_str());
    assert_eq!(result["status"], "completed");
    assert_eq!(
        result["result"],
        format!("Operation {id} completed successfully")
    );
    assert!(result["processed_at"].as_f64().unwrap() > 1.6e9);
    assert_eq!(support::get(&host.url("/api/operations/nope")).0, 404);
}

#[test]
fn approval_chaining_and_monitor() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval"], "");
    let host = p.start(&[]);
    let c = client();

    // The HTTP starter of the training module: OrchFunction calls Approval twice.
    let r = c
        .post(host.url("/api/orchestrators/OrchFunction"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().unwrap();
    let done = finished(started["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(done["name"], "OrchFunction");
    assert_eq!(done["runtimeStatus"], "Completed");
    assert_eq!(done["input"], Value::Null);
    assert_eq!(done["customStatus"], Value::Null);
    assert_eq!(
        done["output"],
        json!([
            "Your project design proposal has been -  Approved!",
            "Your project design proposal has been -  Rejected!"
        ])
    );

    // The timer version, both ways: no approval within the deadline escalates ...
    let escalated = start(&host, "ApprovalWithTimeout", json!({"timeout_seconds": 2}));
    // ... and an approval in time is approved.
    let approved = start(&host, "ApprovalWithTimeout", json!({"timeout_seconds": 30}));
    let (code, running) = status(approved["statusQueryGetUri"].as_str().unwrap());
    assert_eq!(code, 202, "{running}");
    let send = approved["sendEventPostUri"]
        .as_str()
        .unwrap()
        .replace("{eventName}", "Approval");
    let r = c.post(send).json(&json!(true)).send().unwrap();
    assert_eq!(r.status(), 202);
    let done = finished(approved["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(
        done["output"],
        json!(["Your project design proposal has been -  Approved!"])
    );
    let done = finished(escalated["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(
        done["output"],
        json!([
            "ESCALATION : You have not approved the project design proposal - reassigning to your Manager!  Head of department!"
        ])
    );

    // Function chaining.
    let chain = start(&host, "HelloSequence", Value::Null);
    let done = finished(chain["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(
        done["output"],
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );

    // The monitor: checks every second with continue_as_new until the job is ready.
    let now = now_ms();
    let monitor = start(
        &host,
        "Monitor",
        json!({"job_id": "job-1", "ready_at_ms": now + 2500, "interval_seconds": 1, "expires_at_ms": now + 60_000}),
    );
    let done = finished(monitor["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(done["output"]["status"], "done");
    let checks = done["output"]["checks"].as_u64().unwrap();
    assert!(checks >= 2, "checked {checks} times");
    assert_eq!(done["customStatus"]["checks"], checks);
    assert_eq!(done["customStatus"]["last"], "Completed");
}

#[test]
fn retries_sub_orchestrations_and_replay_safety() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["durable_fixtures"], "");
    let host = p.start(&[]);

    // Retry: fails for ~1.5 s, retried every second.
    let retried = start(
        &host,
        "RetryFlaky",
        json!({"fail_until_ms": now_ms() + 1500}),
    );
    // Sub-orchestrations, one failing.
    let parent = start(&host, "SubParent", json!(20));
    let failing_parent = start(&host, "SubParent", json!(-1));
    let det = start(&host, "Deterministic", Value::Null);

    let done = finished(retried["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(done["output"], "finally", "{done}");
    let done = finished(parent["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(done["output"], json!([40, 42]), "{done}");
    let done = finished(
        failing_parent["statusQueryGetUri"].as_str().unwrap(),
        DEADLINE,
    );
    assert_eq!(done["runtimeStatus"], "Failed", "{done}");
    assert!(
        done["output"].as_str().unwrap().contains("-1 is negative"),
        "{done}"
    );
    // Reusing a finished instance's id starts afresh: new input, new output.
    let api = |path: &str| host.url(&format!("/runtime/webhooks/durabletask/{path}"));
    for (input, output) in [(1, 2), (5, 10)] {
        let r = client()
            .post(api("orchestrators/SubChild/same-id"))
            .json(&json!(input))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
        let done = finished(&api("instances/same-id"), DEADLINE);
        assert_eq!(
            done["output"],
            json!(output),
            "run with input {input}: {done}"
        );
    }

    let done = finished(det["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(
        done["output"]["recorded"], done["output"]["recomputed"],
        "{done}"
    );
    assert!(
        done["output"]["advanced_ms"].as_u64().unwrap() >= 500,
        "{done}"
    );
}

#[test]
fn changed_code_fails_the_instance_with_non_determinism() {
    let azurite = Azurite::start();
    let p = project(
        &azurite,
        &["durable_fixtures"],
        "SHIFTY_ACTIVITY = \"EchoA\"",
    );
    let mut host = p.start(&[]);
    let shifty = start(&host, "Shifty", Value::Null);
    let url = shifty["statusQueryGetUri"].as_str().unwrap().to_string();
    host.wait_for("Executed 'Functions.EchoA'", DEADLINE);
    // The episode that took EchoA's result: the instance now waits for "go".
    poll("Shifty to take EchoA's result", DEADLINE, || {
        (host.count("Executed 'Functions.Shifty' (Succeeded") >= 2).then_some(())
    });
    assert!(host.terminate(Duration::from_secs(30)).success());

    // The same instance, now replayed by code that calls EchoB.
    p.write(
        "local.settings.toml",
        &format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\nSHIFTY_ACTIVITY = \"EchoB\"\n",
            azurite.connection_string
        ),
    );
    let host = p.start(&[]);
    let url = url.replace(&url[..url.find("/runtime").unwrap()], &host.base);
    let send = shifty["sendEventPostUri"]
        .as_str()
        .unwrap()
        .replace("{eventName}", "go");
    let send = send.replace(&send[..send.find("/runtime").unwrap()], &host.base);
    assert_eq!(client().post(send).send().unwrap().status(), 202);
    let done = finished(&url, DEADLINE);
    assert_eq!(done["runtimeStatus"], "Failed", "{done}");
    let message = done["output"].as_str().unwrap();
    assert!(message.contains("NonDeterminism"), "{message}");
    assert!(
        message.contains("EchoA") && message.contains("EchoB"),
        "names both actions: {message}"
    );
}

/// Events that arrived but were not consumed go to the next execution only
/// with `continue_as_new_preserving_events`; plain `continue_as_new` drops them,
/// as Durable Functions does.
#[test]
fn continue_as_new_keeps_unconsumed_events_only_when_asked() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["durable_fixtures"], "");
    let host = p.start(&[]);
    let c = client();
    let raise = |started: &Value, name: &str, data: Value| {
        let url = started["sendEventPostUri"]
            .as_str()
            .unwrap()
            .replace("{eventName}", name);
        assert_eq!(c.post(url).json(&data).send().unwrap().status(), 202);
    };
    let kept = start(
        &host,
        "KeepAdding",
        json!({"keep": true, "left": 4, "got": [], "first": true}),
    );
    let dropped = start(
        &host,
        "KeepAdding",
        json!({"keep": false, "left": 2, "got": [], "first": true}),
    );
    // All four "add" events arrive before "go": the first execution takes one.
    for started in [&kept, &dropped] {
        for v in [1, 2, 4, 8] {
            raise(started, "add", json!(v));
        }
        raise(started, "go", Value::Null);
    }
    let done = finished(kept["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert_eq!(
        done["output"],
        json!([1, 2, 4, 8]),
        "each kept event once, in order"
    );

    // Without keeping, 2, 4 and 8 went with the first execution: the second
    // waits for a new "add".
    let url = dropped["statusQueryGetUri"].as_str().unwrap();
    poll("the second execution", DEADLINE, || {
        let (_, s) = status(url);
        (s["input"]["first"] == false && s["runtimeStatus"] == "Running").then_some(())
    });
    raise(&dropped, "add", json!(16));
    let done = finished(url, DEADLINE);
    assert_eq!(done["output"], json!([1, 16]), "{done}");
}

/// A timer longer than the queue's longest delay (7 days on Azure) travels in
/// steps and is re-armed at each one until it is due. The test seam
/// `FNHOST_TEST_MAX_DELAY_MS` makes the steps 1.8 s instead of 6 days.
#[test]
fn a_timer_beyond_the_longest_queue_delay_is_re_armed_until_due() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval"], "");
    let host = p.start_with_env(&[], &[("FNHOST_TEST_MAX_DELAY_MS", "1800")]);
    let started = start(&host, "ApprovalWithTimeout", json!({"timeout_seconds": 5}));
    let url = format!(
        "{}&showHistory=true",
        started["statusQueryGetUri"].as_str().unwrap()
    );
    let done = finished(&url, DEADLINE);
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    assert!(
        done["output"][0]
            .as_str()
            .unwrap()
            .starts_with("ESCALATION"),
        "{done}"
    );
    let fired: Vec<&Value> = done["historyEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["EventType"] == "TimerFired")
        .collect();
    assert_eq!(fired.len(), 1, "one TimerFired in the history: {done}");
    let (at, due) = (
        fired[0]["Timestamp"].as_str().unwrap(),
        fired[0]["FireAt"].as_str().unwrap(),
    );
    assert!(at >= due, "fired at {at}, due at {due}");
    let metrics = client()
        .get(host.url("/admin/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    let rearms: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fnhost_durable_timer_rearms_total "))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    assert!(
        rearms >= 2,
        "5 s in steps of 1.8 s: re-armed {rearms} times"
    );
}

#[test]
fn wait_for_completion_and_large_payloads() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["durable_fixtures"], "");
    let host = p.start(&[]);
    let c = client();

    // Finishes in time: 200 with the output itself.
    let r = c
        .post(host.url("/api/start-and-wait/SubChild?timeout_ms=30000"))
        .json(&json!(21))
        .send()
        .unwrap();
    let (code, body) = (r.status(), r.text().unwrap());
    assert_eq!(code, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!(42));
    // Does not: 202 with the check-status payload.
    let r = c
        .post(host.url("/api/start-and-wait/Shifty?timeout_ms=300"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.headers().contains_key("location"));
    assert!(r.json::<Value>().unwrap()["statusQueryGetUri"].is_string());

    // 200 KB in and out: over the 45 KB message and 32 K column limits.
    let big: String = (0..200_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let started = start(&host, "Echo", json!(big));
    let done = finished(started["statusQueryGetUri"].as_str().unwrap(), DEADLINE);
    assert_eq!(done["runtimeStatus"], "Completed");
    assert_eq!(done["input"].as_str().unwrap().len(), 200_000);
    assert_eq!(done["output"].as_str().unwrap(), format!("A:{big}"));
}
