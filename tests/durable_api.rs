//! Every route of the management API under /runtime/webhooks/durabletask,
//! with Durable Functions' status codes, headers and field names.

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

#[test]
fn management_api_routes_and_codes() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval", "durable_fixtures"], "");
    let host = p.start(&[]);
    let c = client();
    let api = |path: &str| host.url(&format!("/runtime/webhooks/durabletask/{path}"));

    // Start with a chosen id; starting it again while it runs is a conflict.
    let r = c
        .post(api("orchestrators/ApprovalWithTimeout/approval-1"))
        .json(&json!({"timeout_seconds": 60}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/instances/approval-1?taskHub=TestHub")
    );
    let r = c
        .post(api("orchestrators/ApprovalWithTimeout/approval-1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .post(api("orchestrators/NoSuchOrchestrator"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = c
        .post(api("orchestrators/HelloSequence"))
        .body("{not json")
        .header("content-type", "application/json")
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);

    // Status: 202 + Location while running, with every field the clients need.
    let (code, s) = status(&api("instances/approval-1"));
    assert_eq!(code, 202);
    for key in [
        "name",
        "instanceId",
        "runtimeStatus",
        "input",
        "output",
        "customStatus",
        "createdTime",
        "lastUpdatedTime",
    ] {
        assert!(s.get(key).is_some(), "{key} missing: {s}");
    }
    assert_eq!(s["input"], json!({"timeout_seconds": 60}));
    let (_, s) = status(&api("instances/approval-1?showInput=false"));
    assert_eq!(s["input"], Value::Null);
    assert_eq!(status(&api("instances/unknown-id")).0, 404);
    assert_eq!(status(&api("instances/approval-1?taskHub=OtherHub")).0, 404);

    // Suspend, resume, raise an event, then terminate a second instance.
    poll("approval-1 to run", DEADLINE, || {
        (status(&api("instances/approval-1")).1["runtimeStatus"] == "Running").then_some(())
    });
    assert_eq!(
        c.post(api("instances/approval-1/suspend?reason=wait"))
            .send()
            .unwrap()
            .status(),
        202
    );
    poll("approval-1 to be suspended", DEADLINE, || {
        (status(&api("instances/approval-1")).1["runtimeStatus"] == "Suspended").then_some(())
    });
    assert_eq!(
        c.post(api("instances/approval-1/raiseEvent/Approval"))
            .json(&json!("yes"))
            .send()
            .unwrap()
            .status(),
        202
    );
    assert_eq!(
        c.post(api("instances/approval-1/resume?reason=go"))
            .send()
            .unwrap()
            .status(),
        202
    );
    let done = finished(
        &api("instances/approval-1?showHistory=true&showHistoryOutput=true"),
        DEADLINE,
    );
    assert_eq!(
        done["output"],
        json!(["Your project design proposal has been -  Approved!"])
    );
    let history = done["historyEvents"].as_array().unwrap();
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["EventType"].as_str().unwrap())
        .collect();
    for t in [
        "ExecutionStarted",
        "ExecutionSuspended",
        "EventRaised",
        "ExecutionResumed",
        "TaskCompleted",
        "ExecutionCompleted",
    ] {
        assert!(types.contains(&t), "{t} missing in {types:?}");
    }
    let completed = history
        .iter()
        .find(|e| e["EventType"] == "TaskCompleted")
        .unwrap();
    assert_eq!(completed["FunctionName"], "Approval");
    assert_eq!(
        completed["Result"],
        "Your project design proposal has been -  Approved!"
    );

    // Finished instances answer 410 to events and control operations.
    for op in ["raiseEvent/Approval", "terminate", "suspend", "resume"] {
        assert_eq!(
            c.post(api(&format!("instances/approval-1/{op}")))
                .send()
                .unwrap()
                .status(),
            410,
            "{op}"
        );
    }
    assert_eq!(
        c.post(api("instances/unknown-id/terminate"))
            .send()
            .unwrap()
            .status(),
        404
    );

    let r = c
        .post(api("orchestrators/ApprovalWithTimeout/to-terminate"))
        .json(&json!({"timeout_seconds": 60}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        c.post(api("instances/to-terminate/terminate?reason=enough"))
            .send()
            .unwrap()
            .status(),
        202
    );
    let done = finished(&api("instances/to-terminate"), DEADLINE);
    assert_eq!(done["runtimeStatus"], "Terminated");
    assert_eq!(done["output"], "enough");

    // Rewind: a failed activity runs again and the instance completes.
    let fail_until = now_ms() + 2000;
    let r = c
        .post(api("orchestrators/CallFlaky/flaky-1"))
        .json(&json!({"fail_until_ms": fail_until}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let failed = finished(&api("instances/flaky-1"), DEADLINE);
    assert_eq!(failed["runtimeStatus"], "Failed");
    assert!(
        failed["output"].as_str().unwrap().contains("not yet"),
        "{failed}"
    );
    assert_eq!(
        c.post(api("instances/approval-1/rewind"))
            .send()
            .unwrap()
            .status(),
        412,
        "only failed instances rewind (412, as Durable Functions answers)"
    );
    poll(
        "the flaky activity's failure window to pass",
        DEADLINE,
        || (now_ms() > fail_until).then_some(()),
    );
    assert_eq!(
        c.post(api("instances/flaky-1/rewind?reason=retry"))
            .send()
            .unwrap()
            .status(),
        202
    );
    let done = poll("flaky-1 to complete after rewind", DEADLINE, || {
        let (_, s) = status(&api("instances/flaky-1"));
        (s["runtimeStatus"] == "Completed").then_some(s)
    });
    assert_eq!(done["output"], "finally");

    // Restart with the same id and with a new one.
    let r = c
        .post(api(
            "instances/to-terminate/restart?restartWithNewInstanceId=false",
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().unwrap();
    assert_eq!(body["id"], "to-terminate");
    let r = c.post(api("instances/flaky-1/restart")).send().unwrap();
    assert_eq!(r.status(), 202);
    let body: Value = r.json().unwrap();
    assert_ne!(body["id"], "flaky-1");

    // List: filters, page size and continuation, trailing slash.
    for i in 0..5 {
        let r = c
            .post(api(&format!("orchestrators/HelloSequence/hello-{i}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    for i in 0..5 {
        finished(&api(&format!("instances/hello-{i}")), DEADLINE);
    }
    let r = c
        .get(api(
            "instances/?instanceIdPrefix=hello-&runtimeStatus=Completed",
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-ms-continuation-token").is_none());
    let all: Vec<Value> = r.json().unwrap();
    assert_eq!(all.len(), 5);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut req = c.get(api("instances?instanceIdPrefix=hello-&top=2"));
        if let Some(t) = &token {
            req = req.header("x-ms-continuation-token", t);
        }
        let r = req.send().unwrap();
        token = r
            .headers()
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = r.json().unwrap();
        assert!(page.len() <= 2);
        seen.extend(
            page.into_iter()
                .map(|s| s["instanceId"].as_str().unwrap().to_string()),
        );
        if token.is_none() {
            break;
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        (0..5).map(|i| format!("hello-{i}")).collect::<Vec<_>>()
    );
    let r = c
        .get(api("instances?runtimeStatus=Sleeping"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let from = "2000-01-01T00:00:00Z";
    let r = c
        .get(api(&format!(
            "instances?createdTimeFrom={from}&instanceIdPrefix=hello-"
        )))
        .send()
        .unwrap();
    assert_eq!(r.json::<Vec<Value>>().unwrap().len(), 5);
    let r = c
        .get(api(
            "instances?createdTimeFrom=2999-01-01T00:00:00.000Z&instanceIdPrefix=hello-",
        ))
        .send()
        .unwrap();
    assert_eq!(r.json::<Vec<Value>>().unwrap().len(), 0);

    // Purge one, then by filter.
    let r = c.delete(api("instances/hello-0")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap(), json!({"instancesDeleted": 1}));
    assert_eq!(
        c.delete(api("instances/hello-0")).send().unwrap().status(),
        404
    );
    assert_eq!(status(&api("instances/hello-0")).0, 404);
    let r = c
        .delete(api(
            "instances?instanceIdPrefix=hello-&runtimeStatus=Completed",
        ))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap(), json!({"instancesDeleted": 4}));
    let r = c
        .delete(api("instances?instanceIdPrefix=hello-"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
}
