//! `host durable ...` against real Azurite: every command, with and without a
//! running host, and its error paths (clear message, exit code 1).

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use azurite::Azurite;
use durable_support::project;
use serde_json::Value;
use support::{Project, host_bin, poll, repo};

const DEADLINE: Duration = Duration::from_secs(60);

/// What one command did.
struct Run {
    ok: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// `host durable ARGS --script-root <project>`.
fn cli(p: &Project, args: &[&str]) -> Run {
    let out = Command::new(host_bin())
        .arg("durable")
        .args(args)
        .arg("--script-root")
        .arg(p.root())
        .env_remove("FNHOST_TASK_HUB_NAME")
        .env_remove("FNHOST_CONNECTION_STRING_SETTING")
        .output()
        .expect("running host durable");
    Run {
        ok: out.status.success(),
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The command must succeed; its output.
fn ok(p: &Project, args: &[&str]) -> Run {
    let r = cli(p, args);
    assert!(
        r.ok,
        "host durable {args:?} failed:\n{}{}",
        r.stdout, r.stderr
    );
    r
}

/// The command must fail with exit code 1 and a message containing `needle`.
fn fails(p: &Project, args: &[&str], needle: &str) {
    let r = cli(p, args);
    assert_eq!(
        r.code,
        Some(1),
        "host durable {args:?}:\n{}{}",
        r.stdout,
        r.stderr
    );
    assert!(
        r.stderr.contains(needle),
        "host durable {args:?}: expected {needle:?} in:\n{}",
        r.stderr
    );
}

fn status(p: &Project, id: &str) -> String {
    let doc = ok(p, &["get-runtime-status", "--id", id, "--output", "json"]).json();
    doc["runtimeStatus"].as_str().unwrap().to_string()
}

fn reaches(p: &Project, id: &str, want: &str) {
    poll(&format!("{id} to be {want}"), DEADLINE, || {
        (status(p, id) == want).then_some(())
    });
}

fn cache_dir() -> String {
    repo()
        .join("target/test-host-cache")
        .to_string_lossy()
        .into_owned()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn durable_commands_errors_without_a_host() {
    // No storage connection at all.
    let bare = Project::with(&[]);
    fails(
        &bare,
        &["get-instances"],
        "no storage connection: set AzureWebJobsStorage",
    );

    let azurite = Azurite::start();
    let p = project(&azurite, &["approval"], "");
    fails(&p, &["get-instances"], "there is no task hub 'TestHub'");
    fails(
        &p,
        &["get-instances", "--task-hub-name", "no-dashes"],
        "task hub name 'no-dashes' is not valid",
    );
    fails(
        &p,
        &["get-instances", "--connection-string-setting", "Missing"],
        "set Missing in [Values]",
    );
    // Storage that does not answer: a port nothing listens on.
    let dead = project(&azurite, &[], "");
    dead.write(
        "local.settings.toml",
        "[Values]\nAzureWebJobsStorage = \"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;\
         AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;\
         BlobEndpoint=http://127.0.0.1:9/devstoreaccount1;QueueEndpoint=http://127.0.0.1:9/devstoreaccount1;\
         TableEndpoint=http://127.0.0.1:9/devstoreaccount1;\"\n",
    );
    fails(
        &dead,
        &["get-instances"],
        "connecting to the storage of AzureWebJobsStorage",
    );

    // start-new creates the hub and the instance; nothing runs it yet.
    let cache = cache_dir();
    fails(
        &p,
        &[
            "start-new",
            "--function-name",
            "HelloSequence",
            "--input",
            "{nope",
            "--cache-dir",
            &cache,
        ],
        "--input is not valid JSON",
    );
    fails(
        &p,
        &[
            "start-new",
            "--function-name",
            "NoSuchOrchestrator",
            "--cache-dir",
            &cache,
        ],
        "no orchestrator function named 'NoSuchOrchestrator'",
    );
    p.write("input.json", r#"{"timeout_seconds": 600}"#);
    let input = format!("@{}", p.root().join("input.json").display());
    let started = ok(
        &p,
        &[
            "start-new",
            "--function-name",
            "ApprovalWithTimeout",
            "--id",
            "cli-1",
            "--input",
            &input,
            "--cache-dir",
            &cache,
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(started["instanceId"], "cli-1");
    fails(
        &p,
        &[
            "start-new",
            "--function-name",
            "ApprovalWithTimeout",
            "--id",
            "cli-1",
            "--cache-dir",
            &cache,
        ],
        "already Pending",
    );
    let list = ok(&p, &["get-instances"]);
    assert!(
        list.stdout.contains("cli-1") && list.stdout.contains("Pending"),
        "{}",
        list.stdout
    );
    let s = ok(&p, &["get-runtime-status", "--id", "cli-1", "--show-input"]);
    assert!(
        s.stdout.contains("ApprovalWithTimeout") && s.stdout.contains("timeout_seconds"),
        "{}",
        s.stdout
    );
    let doc = ok(
        &p,
        &["get-runtime-status", "--id", "cli-1", "--output", "json"],
    )
    .json();
    assert!(
        doc.get("input").is_none() && doc.get("output").is_none(),
        "{doc}"
    );

    // Error paths of every command.
    fails(
        &p,
        &["get-runtime-status", "--id", "nope"],
        "no instance 'nope' in task hub 'TestHub'",
    );
    fails(
        &p,
        &["get-history", "--id", "cli-1"],
        "no history for instance 'cli-1'",
    );
    fails(
        &p,
        &["raise-event", "--id", "nope", "--event-name", "E"],
        "no instance 'nope'",
    );
    fails(
        &p,
        &[
            "raise-event",
            "--id",
            "cli-1",
            "--event-name",
            "E",
            "--event-data",
            "{x",
        ],
        "--event-data is not valid JSON",
    );
    fails(&p, &["terminate", "--id", "nope"], "no instance 'nope'");
    fails(&p, &["suspend", "--id", "nope"], "no instance 'nope'");
    fails(&p, &["resume", "--id", "nope"], "no instance 'nope'");
    fails(
        &p,
        &["rewind", "--id", "cli-1"],
        "only failed instances can be rewound",
    );
    fails(
        &p,
        &["purge-history", "--id", "cli-1"],
        "is Pending: terminate it first",
    );
    fails(&p, &["purge-history", "--id", "nope"], "no instance 'nope'");
    fails(
        &p,
        &["get-instances", "--runtime-status", "Sleeping"],
        "'Sleeping' is not a status",
    );
    fails(
        &p,
        &["get-instances", "--created-after", "yesterday"],
        "--created-after 'yesterday' is not a date",
    );
    fails(
        &p,
        &["get-instances", "--top", "0"],
        "--top must be at least 1",
    );
    let usage = cli(&p, &["get-history"]);
    assert_eq!(
        usage.code,
        Some(2),
        "a missing --id is a usage error: {}",
        usage.stderr
    );

    // A host picks up what the CLI started.
    let mut host = p.start(&[]);
    reaches(&p, "cli-1", "Running");
    host.terminate(DEADLINE);
}

#[test]
fn durable_commands_steer_instances_of_a_running_host() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval", "durable_fixtures"], "");
    let cache = cache_dir();
    let start = |name: &str, id: &str, input: &str| {
        ok(
            &p,
            &[
                "start-new",
                "--function-name",
                name,
                "--id",
                id,
                "--input",
                input,
                "--cache-dir",
                &cache,
            ],
        );
    };
    let mut host = p.start(&[]);

    // Suspend, resume, raise the event: it completes.
    start("ApprovalWithTimeout", "appr", r#"{"timeout_seconds": 600}"#);
    reaches(&p, "appr", "Running");
    assert!(
        ok(&p, &["suspend", "--id", "appr", "--reason", "lunch"])
            .stdout
            .contains("Sent suspend")
    );
    reaches(&p, "appr", "Suspended");
    ok(&p, &["resume", "--id", "appr"]);
    reaches(&p, "appr", "Running");
    let raised = ok(
        &p,
        &[
            "raise-event",
            "--id",
            "appr",
            "--event-name",
            "Approval",
            "--event-data",
            "true",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(raised["eventName"], "Approval");
    reaches(&p, "appr", "Completed");
    let done = ok(
        &p,
        &[
            "get-runtime-status",
            "--id",
            "appr",
            "--show-output",
            "--output",
            "json",
        ],
    )
    .json();
    assert!(done["output"].to_string().contains("Approved"), "{done}");
    fails(
        &p,
        &["raise-event", "--id", "appr", "--event-name", "Approval"],
        "has already finished (Completed)",
    );
    fails(&p, &["terminate", "--id", "appr"], "has already finished");

    // The history: every event, for people and as JSON.
    let table = ok(&p, &["get-history", "--id", "appr"]).stdout;
    for event in [
        "ExecutionStarted",
        "ExecutionSuspended",
        "ExecutionResumed",
        "EventRaised",
        "TaskCompleted",
        "ExecutionCompleted",
    ] {
        assert!(table.contains(event), "{event} missing:\n{table}");
    }
    let history = ok(&p, &["get-history", "--id", "appr", "--output", "json"]).json();
    let events = history["events"].as_array().unwrap();
    assert_eq!(events.first().unwrap()["EventType"], "OrchestratorStarted");
    assert!(
        events
            .iter()
            .any(|e| e["EventType"] == "EventRaised" && e["Name"] == "Approval")
    );

    // Terminate.
    start(
        "ApprovalWithTimeout",
        "stop-me",
        r#"{"timeout_seconds": 600}"#,
    );
    reaches(&p, "stop-me", "Running");
    ok(&p, &["terminate", "--id", "stop-me", "--reason", "enough"]);
    reaches(&p, "stop-me", "Terminated");

    // Rewind a failed activity: it runs again and the instance completes. The
    // activity fails for 5 s: started over HTTP (no CLI start-up in between),
    // it runs well within that even on a loaded machine.
    let fail_until = now_ms() + 5000;
    let r = support::client()
        .post(host.url("/runtime/webhooks/durabletask/orchestrators/CallFlaky/flaky"))
        .json(&serde_json::json!({ "fail_until_ms": fail_until }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    reaches(&p, "flaky", "Failed");
    poll("the flaky window to pass", DEADLINE, || {
        (now_ms() > fail_until).then_some(())
    });
    assert!(
        ok(&p, &["rewind", "--id", "flaky", "--reason", "try again"])
            .stdout
            .contains("Rewound")
    );
    reaches(&p, "flaky", "Completed");

    // Lists: filters, paging through the continuation token.
    for i in 0..3 {
        start("HelloSequence", &format!("hello-{i}"), "null");
    }
    for i in 0..3 {
        reaches(&p, &format!("hello-{i}"), "Completed");
    }
    let completed = ok(
        &p,
        &[
            "get-instances",
            "--runtime-status",
            "Completed",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(
        completed["instances"].as_array().unwrap().len(),
        5,
        "{completed}"
    ); // appr, flaky, hello-0..2
    let both = ok(
        &p,
        &[
            "get-instances",
            "--runtime-status",
            "Terminated,Completed",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(both["instances"].as_array().unwrap().len(), 6);
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut args = vec!["get-instances", "--top", "2", "--output", "json"];
        if let Some(t) = &token {
            args.extend(["--continuation-token", t.as_str()]);
        }
        let page = ok(&p, &args).json();
        let ids = page["instances"].as_array().unwrap();
        assert!(ids.len() <= 2);
        seen.extend(
            ids.iter()
                .map(|i| i["instanceId"].as_str().unwrap().to_string()),
        );
        match page["continuationToken"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        ["appr", "flaky", "hello-0", "hello-1", "hello-2", "stop-me"]
    );
    let people = ok(&p, &["get-instances", "--top", "2"]).stdout;
    assert!(
        people.contains("More instances: add --continuation-token"),
        "{people}"
    );
    let future = ok(
        &p,
        &["get-instances", "--created-after", "2999-01-01T00:00:00Z"],
    )
    .stdout;
    assert!(future.contains("No instances match."), "{future}");
    let past = ok(
        &p,
        &[
            "get-instances",
            "--created-before",
            "2000-01-01T00:00:00Z",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(past["instances"], Value::Array(vec![]));

    // Purge one, then by filter.
    assert!(
        ok(&p, &["purge-history", "--id", "appr"])
            .stdout
            .contains("Purged 1 instance(s).")
    );
    fails(
        &p,
        &["get-runtime-status", "--id", "appr"],
        "no instance 'appr'",
    );
    let purged = ok(
        &p,
        &[
            "purge-history",
            "--runtime-status",
            "Terminated",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(purged["instancesDeleted"], 1);
    fails(
        &p,
        &["get-runtime-status", "--id", "stop-me"],
        "no instance 'stop-me'",
    );
    let rest = ok(
        &p,
        &[
            "purge-history",
            "--created-after",
            "2000-01-01T00:00:00Z",
            "--output",
            "json",
        ],
    )
    .json();
    assert_eq!(rest["instancesDeleted"], 4);

    // Delete the hub: nothing of it is left.
    host.terminate(DEADLINE);
    let deleted = ok(&p, &["delete-task-hub", "--output", "json"]).json();
    assert_eq!(deleted["taskHub"], "TestHub");
    assert!(deleted["deleted"].as_u64().unwrap() >= 8, "{deleted}"); // 4 control queues, work items, 2 tables, 2 containers
    fails(&p, &["get-instances"], "there is no task hub 'TestHub'");
    fails(&p, &["delete-task-hub"], "there is no task hub 'TestHub'");
}
