//! Shared pieces of the durable tests: an Azurite, projects on one task hub,
//! and polling of instance status over the management API.
#![allow(dead_code)]

use std::time::Duration;

use serde_json::Value;

use crate::azurite::Azurite;
use crate::support::{Project, client, poll};

/// host.toml for tests: short polling and visibility timeouts so that a
/// killed host's messages come back within seconds.
pub const HOST_TOML: &str = r#"
functionTimeout = "00:01:00"
[extensions.durableTask]
hubName = "TestHub"
[extensions.durableTask.storageProvider]
partitionCount = 4
maxQueuePollingInterval = "00:00:01"
controlQueueVisibilityTimeout = "00:00:05"
workItemQueueVisibilityTimeout = "00:00:10"
"#;

/// A project with `folders` deployed, pointed at `azurite`.
pub fn project(azurite: &Azurite, folders: &[&str], values: &str) -> Project {
    let p = Project::with(folders);
    p.write("host.toml", HOST_TOML);
    p.write(
        "local.settings.toml",
        &format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\n{values}\n",
            azurite.connection_string
        ),
    );
    p
}

/// GET a status URL; (status code, body).
pub fn status(url: &str) -> (u16, Value) {
    let r = client().get(url).send().unwrap();
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Poll `statusQueryGetUri` until the instance is finished (200); its status document.
pub fn finished(url: &str, deadline: Duration) -> Value {
    poll(&format!("{url} to finish"), deadline, || {
        let (code, body) = status(url);
        (code == 200).then_some(body)
    })
}

/// Run a real Durable Functions client program (`program BASE TASKHUB`)
/// against a host with the `approval` samples; it must succeed and end with `done_line`.
pub fn client_works_unchanged(program: std::process::Command, done_line: &str) {
    client_works(program, done_line, false);
}

/// The same with keys enforced (`--enableAuth`): the client gets the
/// `durabletask_extension` system key as the extension hands it over (in
/// `requiredQueryStringParameters`), and the host's own check-status URLs
/// carry it as `code=`.
pub fn client_works_with_keys(program: std::process::Command, done_line: &str) {
    client_works(program, done_line, true);
}

fn client_works(mut program: std::process::Command, done_line: &str, keys: bool) {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval", "counter"], "");
    if keys {
        // The extension's local RPC endpoint, which the clients build every
        // request from (on a free port, not 17071: tests run in parallel).
        p.write(
            "host.toml",
            &(HOST_TOML.replace(
                "[extensions.durableTask]\n",
                "[extensions.durableTask]\nlocalRpcEndpointEnabled = true\n",
            ) + "[server]\nlocalRpcPort = 0\n"),
        );
    }
    let mut host = p.start(if keys { &["--enableAuth"] } else { &[] });
    program.arg(&host.base).arg("TestHub");
    if keys {
        let system = system_key(p.root());
        check_status_urls_carry_the_key(&host, &system);
        let line = host.wait_for("Durable local RPC endpoint", Duration::from_secs(5));
        let rpc = line.split_whitespace().last().unwrap().to_string();
        // Loopback only, no key: what the clients use, and nothing else there.
        assert_eq!(status(&format!("{rpc}instances")).0, 200);
        assert_eq!(status(&rpc.replace("/durabletask/", "/api/hello")).0, 404);
        program.arg(system).arg(rpc);
    }
    let out = program
        .output()
        .unwrap_or_else(|e| panic!("running the client program: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n--- host:\n{}", host.output());
    assert!(
        // stdout's last line: clients may warn on stderr as they exit (aiohttp does).
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .is_some_and(|l| l == done_line),
        "{text}\n--- host:\n{}",
        host.output()
    );
}

/// The `durabletask_extension` key, from `host keys list`.
fn system_key(root: &std::path::Path) -> String {
    let out = std::process::Command::new(crate::support::host_bin())
        .args(["keys", "list", "--script-root"])
        .arg(root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .find_map(|l| {
            let parts: Vec<&str> = l.split_whitespace().collect();
            (parts.first() == Some(&"system") && parts.get(1) == Some(&"durabletask_extension"))
                .then(|| parts[2].to_string())
        })
        .expect("a durabletask_extension system key")
}

/// Without the key the webhooks answer 401; with it, a started instance's
/// payload and Location carry `code=<key>`, and those URLs work as they are.
fn check_status_urls_carry_the_key(host: &crate::support::Host, system: &str) {
    let start = host.url("/runtime/webhooks/durabletask/orchestrators/HelloSequence");
    let r = client().post(&start).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for url in [
        format!("{start}?code={system}"),
        host.url("/api/orchestrators/HelloSequence"),
    ] {
        let r = client().post(&url).send().unwrap();
        assert_eq!(r.status().as_u16(), 202, "{url}");
        let location = r.headers()["location"].to_str().unwrap().to_string();
        let body: Value = r.json().unwrap();
        let status_url = body["statusQueryGetUri"].as_str().unwrap();
        assert_eq!(location, status_url);
        assert!(
            status_url.ends_with(&format!("taskHub=TestHub&connection=Storage&code={system}")),
            "{status_url}"
        );
        for name in [
            "sendEventPostUri",
            "terminatePostUri",
            "purgeHistoryDeleteUri",
        ] {
            assert!(
                body[name]
                    .as_str()
                    .unwrap()
                    .contains(&format!("code={system}")),
                "{body}"
            );
        }
        finished(status_url, Duration::from_secs(60));
    }
}
