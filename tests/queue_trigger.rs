//! queueTrigger against a private Azurite and the real `host` binary, with
//! messages written and read by the real Azure Storage SDK for Python.

#[path = "support/azurite.rs"]
mod azurite;
mod support;
#[path = "triggers_support.rs"]
mod triggers_support;

use std::collections::BTreeSet;
use std::time::Duration;

use azurite::Azurite;
use base64::Engine as _;
use serde_json::Value;
use support::poll;
use triggers_support::{HOST_TOML, project, receive, sdk};

const DEADLINE: Duration = Duration::from_secs(60);
const SUCCEEDED: &str = "Executed 'Functions.process_order' (Succeeded";
const FAILED: &str = "Executed 'Functions.process_order' (Failed";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn unb64(text: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .unwrap(),
    )
    .unwrap()
}

/// Read `queue` until `n` messages have come (each is read once: reading hides it).
fn collect(azurite: &Azurite, queue: &str, n: usize) -> Vec<(String, u64)> {
    let mut got = Vec::new();
    poll(&format!("{n} messages in {queue}"), DEADLINE, || {
        got.extend(receive(azurite, queue));
        (got.len() >= n).then_some(())
    });
    got
}

#[test]
fn queue_message_runs_the_function_which_sends_a_message_and_writes_a_blob() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["orders"], HOST_TOML);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    sdk(
        &azurite,
        &[
            "send",
            "orders",
            r#"{"id": "o{i}", "item": "tea", "quantity": 2}"#,
            "3",
        ],
    );
    let out = collect(&azurite, "orders-processed", 3);
    let ids: BTreeSet<String> = out
        .iter()
        .map(|(raw, _)| {
            // The output binding base64-encodes, as Azure's does.
            let v: Value = serde_json::from_str(&unb64(raw)).unwrap();
            assert_eq!(v["status"], "processed", "{v}");
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids, ["o0", "o1", "o2"].map(String::from).into());
    let archived: Value =
        serde_json::from_str(&sdk(&azurite, &["download", "orders-archive", "o1.json"])).unwrap();
    assert_eq!(archived["item"], "tea");
    assert_eq!(archived["quantity"], 2);
    host.wait_for("New queue message detected on 'orders'", DEADLINE);
    poll("three successes", DEADLINE, || {
        (host.count(SUCCEEDED) == 3).then_some(())
    });
    // The guest's log line carries the dequeue count it was given.
    assert!(host.output().contains("order o1 (2 x tea), attempt 1"));
}

#[test]
fn a_failing_message_moves_to_poison_after_five_attempts_with_its_body_intact() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["orders"], HOST_TOML);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    let body = "this is not an order: ünïcödé & <xml> \"quotes\"";
    sdk(&azurite, &["send", "orders", body]);
    let poisoned = collect(&azurite, "orders-poison", 1);
    assert_eq!(
        poisoned[0].0,
        b64(body),
        "the poison message is the original text"
    );
    assert_eq!(unb64(&poisoned[0].0), body);
    assert_eq!(host.count(FAILED), 5, "{}", host.output());
    assert_eq!(host.count(SUCCEEDED), 0);
    assert!(
        host.output()
            .contains("Message has reached MaxDequeueCount of 5. Moving message"),
        "{}",
        host.output()
    );
    assert!(
        receive(&azurite, "orders").is_empty(),
        "the message left orders"
    );
}

#[test]
fn a_message_that_is_not_base64_goes_to_poison_with_the_reason() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["orders"], HOST_TOML);
    let mut host = p.start(&[]);
    host.wait_for("Host started", DEADLINE);
    let raw = "{\"id\": \"plain json, not base64\"}";
    sdk(&azurite, &["send-raw", "orders", raw]);
    let poisoned = collect(&azurite, "orders-poison", 1);
    assert_eq!(poisoned[0].0, raw);
    let line = host.wait_for("cannot be decoded", DEADLINE);
    assert!(line.contains("it is not valid base64"), "{line}");
    assert!(line.contains("messageEncoding"), "{line}");
    assert_eq!(host.count("Executing 'Functions.process_order'"), 0);
}

#[test]
fn two_hosts_process_each_message_once() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["orders"], HOST_TOML);
    let mut a = p.start(&[]);
    let mut b = p.start(&[]);
    a.wait_for("Host started", DEADLINE);
    b.wait_for("Host started", DEADLINE);
    let n = 60;
    sdk(
        &azurite,
        &[
            "send",
            "orders",
            r#"{"id": "m{i}", "item": "cake", "quantity": 1}"#,
            &n.to_string(),
        ],
    );
    let out = collect(&azurite, "orders-processed", n);
    let ids: BTreeSet<String> = out
        .iter()
        .map(|(raw, _)| {
            let v: Value = serde_json::from_str(&unb64(raw)).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(ids.len(), n, "every order once");
    assert_eq!(out.len(), n, "no order twice");
    poll("all invocations logged", DEADLINE, || {
        (a.count(SUCCEEDED) + b.count(SUCCEEDED) == n).then_some(())
    });
    assert_eq!(a.count(FAILED) + b.count(FAILED), 0);
}
