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
