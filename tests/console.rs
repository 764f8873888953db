//! The console: `--verbose` shows the durable engine's work (episodes,
//! checkpoints, partition leases) in func-like lines, and `--log-format json`
//! writes one JSON object per line with the same content.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::time::Duration;

use azurite::Azurite;
use durable_support::{finished, project};
use serde_json::Value;
use support::client;

const DEADLINE: Duration = Duration::from_secs(60);

fn run_sequence(host: &support::Host, id: &str) {
    let r = client()
        .post(host.url(&format!(
            "/runtime/webhooks/durabletask/orchestrators/HelloSequence/{id}"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    finished(
        &host.url(&format!("/runtime/webhooks/durabletask/instances/{id}")),
        DEADLINE,
    );
}

#[test]
fn verbose_console_and_json_logs_show_the_engine_at_work() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval"], "");

    let mut text = p.start(&["--verbose"]);
    text.wait_for("took partition", DEADLINE);
    run_sequence(&text, "verbose-1");
    text.wait_for("orchestration 'verbose-1': checkpointed", DEADLINE);
    let out = text.output();
    assert!(
        out.contains("orchestration 'verbose-1': episode with 1 new message(s)"),
        "{out}"
    );
    assert!(out.contains("Completed"), "{out}");
    assert!(
        out.contains("Executed 'Functions.SayHello' (Succeeded"),
        "{out}"
    );
    assert!(text.terminate(DEADLINE).success());

    let mut json = p.start(&["--verbose", "--log-format", "json"]);
    json.wait_for("took partition", DEADLINE);
    run_sequence(&json, "json-1");
    json.wait_for("orchestration 'json-1': checkpointed", DEADLINE);
    assert!(json.terminate(DEADLINE).success());
    let out = json.output();
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for line in &lines {
        for key in ["timestamp", "level", "category", "message"] {
            assert!(line.get(key).is_some(), "{key} missing: {line}");
        }
    }
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l["message"].as_str().unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{out}"))
    };
    assert_eq!(find("Listening on http://localhost:")["level"], "INFO");
    let executed = find("Executed 'Functions.SayHello' (Succeeded");
    assert_eq!(executed["category"], "host::triggers");
    let checkpoint = find("orchestration 'json-1': checkpointed");
    assert_eq!(checkpoint["level"], "DEBUG");
    assert_eq!(checkpoint["category"], "host::durable::episode");
    find("Host stopped");
}
