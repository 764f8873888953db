//! Poison messages in the durable engine: a control or work-item message
//! that is not one (written by another app with the Python Azure Storage
//! SDK) is moved to `{queue}-poison` byte for byte, with a console line
//! naming the queue, and the hub keeps working.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;
#[path = "triggers_support.rs"]
mod triggers_support;

use std::time::Duration;

use host::storage::{Entity, TableOp};

use azurite::Azurite;
use durable_support::{finished, project};
use serde_json::Value;
use support::client;
use triggers_support::{receive, sdk};

const DEADLINE: Duration = Duration::from_secs(90);

#[test]
fn unreadable_control_and_work_item_messages_go_to_poison_and_the_hub_keeps_working() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval"], "");
    let mut host = p.start(&[]);

    let garbage = "this is not a control message";
    let wrong_shape = r#"{"instanceId": 42, "what": "not a work item"}"#;
    sdk(&azurite, &["send-raw", "testhub-control-00", garbage]);
    sdk(&azurite, &["send-raw", "testhub-workitems", wrong_shape]);

    host.wait_for(
        "from testhub-control-00 to testhub-control-00-poison",
        DEADLINE,
    );
    host.wait_for(
        "from testhub-workitems to testhub-workitems-poison",
        DEADLINE,
    );
    let control: Vec<String> = receive(&azurite, "testhub-control-00-poison")
        .into_iter()
        .map(|(raw, _)| raw)
        .collect();
    assert_eq!(control, [garbage], "the text is kept as it was");
    let work: Vec<String> = receive(&azurite, "testhub-workitems-poison")
        .into_iter()
        .map(|(raw, _)| raw)
        .collect();
    assert_eq!(work, [wrong_shape]);
    // Gone from the queues they came from.
    assert!(receive(&azurite, "testhub-control-00").is_empty());
    assert!(receive(&azurite, "testhub-workitems").is_empty());

    // The hub goes on: an orchestration with activities completes.
    let r = client()
        .post(host.url("/runtime/webhooks/durabletask/orchestrators/HelloSequence"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = finished(
        &host.url(&format!("/runtime/webhooks/durabletask/instances/{id}")),
        DEADLINE,
    );
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
}

/// An instance whose history another program broke (a row that no longer
/// parses): its episodes fail the same way 5 times; then its message goes to
/// poison with the reason, its status says Failed with the reason, the console
/// names it, and the hub goes on.
#[test]
fn an_instance_that_fails_the_same_way_5_times_is_set_aside_as_failed() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval"], "");
    let host = p.start(&[]);
    let r = client()
        .post(host.url("/runtime/webhooks/durabletask/orchestrators/ApprovalWithTimeout"))
        .json(&serde_json::json!({"timeout_seconds": 600}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let started: Value = r.json().unwrap();
    let id = started["id"].as_str().unwrap().to_string();
    let mut host = host;
    assert!(host.terminate(Duration::from_secs(30)).success());

    // Another program overwrites the history row of ExecutionStarted.
    let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let row = Entity::new(id.as_str(), format!("{:016X}", 0)).with("Data", "{broken");
        storage
            .tables
            .execute("TestHubHistory", TableOp::Upsert(row))
            .await
            .unwrap();
    });

    let host = p.start(&[]);
    let send = started["sendEventPostUri"]
        .as_str()
        .unwrap()
        .replace("{eventName}", "Approval");
    let send = send.replace(&send[..send.find("/runtime").unwrap()], &host.base);
    assert_eq!(
        client().post(send).json(&true).send().unwrap().status(),
        202
    );

    let url = host.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    let done = finished(&url, DEADLINE);
    assert_eq!(done["runtimeStatus"], "Failed", "{done}");
    let output = done["output"].as_str().unwrap_or_default();
    assert!(
        output.contains("failed 5 times") && output.contains("unreadable"),
        "the reason: {done}"
    );
    let out = host.output();
    let line = out
        .lines()
        .find(|l| l.contains(&format!("orchestration '{id}'")) && l.contains("failed 5 times"))
        .unwrap_or_else(|| panic!("a console line names the instance:\n{out}"));
    let queue = line
        .rsplit("moving them to ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    let poisoned = receive(&azurite, &queue);
    assert_eq!(poisoned.len(), 1, "{poisoned:?}");
    let kept: Value = serde_json::from_str(&poisoned[0].0).unwrap();
    assert!(kept["reason"].as_str().unwrap().contains(&id), "{kept}");
    let message: Value = serde_json::from_str(kept["message"].as_str().unwrap()).unwrap();
    assert_eq!(
        message["instance_id"],
        id.as_str(),
        "the event itself is kept: {kept}"
    );

    // The hub goes on.
    let r = client()
        .post(host.url("/runtime/webhooks/durabletask/orchestrators/HelloSequence"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let other = r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = finished(
        &host.url(&format!("/runtime/webhooks/durabletask/instances/{other}")),
        DEADLINE,
    );
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
}
