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
pub fn client_works_unchanged(mut program: std::process::Command, done_line: &str) {
    let azurite = Azurite::start();
    let p = project(&azurite, &["approval"], "");
    let host = p.start(&[]);
    let out = program
        .arg(&host.base)
        .arg("TestHub")
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
