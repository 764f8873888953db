//! Shared pieces of the trigger tests: a project on a private Azurite, and
//! the real Azure Storage SDKs for Python (PyPI `azure-storage-queue` and
//! `azure-storage-blob`) to write messages and blobs the way other apps do.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use crate::azurite::Azurite;
use crate::support::{Project, repo};

/// host.toml of the trigger tests: polling backs off to 2 s at most (Azure's
/// 1 min would make an idle test wait), and a short functionTimeout.
pub const HOST_TOML: &str = "version = \"2.0\"\nfunctionTimeout = \"00:00:30\"\n\
    [extensions.queues]\nmaxPollingInterval = \"00:00:02\"\n";

/// A project with `folders` deployed, its storage on `azurite`, and `host_toml`.
pub fn project(azurite: &Azurite, folders: &[&str], host_toml: &str) -> Project {
    let p = Project::with(folders);
    p.write("host.toml", host_toml);
    p.write(
        "local.settings.toml",
        &format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\n",
            azurite.connection_string
        ),
    );
    p
}

/// A virtualenv with the pinned SDKs, under target/ (rebuilt when the requirements change).
fn python() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| crate::support::python_venv("storage-requirements.txt", "storage-venv"))
        .clone()
}

/// Run tests/compat/storage_client.py with `args`; its stdout. Panics on failure.
pub fn sdk(azurite: &Azurite, args: &[&str]) -> String {
    let (code, out) = sdk_status(azurite, args);
    assert_eq!(code, 0, "storage_client.py {args:?} failed:\n{out}");
    out
}

/// Run tests/compat/storage_client.py with `args`; its exit code and output.
pub fn sdk_status(azurite: &Azurite, args: &[&str]) -> (i32, String) {
    let out = Command::new(python())
        .arg(repo().join("tests/compat/storage_client.py"))
        .args(args)
        .env(
            "AZURE_STORAGE_CONNECTION_STRING",
            &azurite.connection_string,
        )
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), format!("{text}{err}"))
}

/// The messages now in `queue` (hidden for 5 min once read), as the SDK sees
/// them: (raw text, dequeue count).
pub fn receive(azurite: &Azurite, queue: &str) -> Vec<(String, u64)> {
    sdk(azurite, &["receive", queue])
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["raw"].as_str().unwrap().to_string(),
                v["dequeue_count"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Counters of `host`'s /admin/metrics, read at one instant: for each of
/// `series` (name and labels, e.g.
/// `fnhost_trigger_storage_transactions_total{service="blob"}`) the value of
/// the line starting with it, 0 if absent.
pub fn metrics<const N: usize>(host: &crate::support::Host, series: [&str; N]) -> [u64; N] {
    let text = crate::support::client()
        .get(host.url("/admin/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    series.map(|s| {
        text.lines()
            .find(|l| l.starts_with(s))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0)
    })
}

/// The blobs under `prefix` of `container` with their metadata (keys in lower case).
pub fn metadata(
    azurite: &Azurite,
    container: &str,
    prefix: &str,
) -> Vec<(String, std::collections::BTreeMap<String, String>)> {
    sdk(azurite, &["metadata", container, prefix])
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let meta = v["metadata"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.to_lowercase(), v.as_str().unwrap().to_string()))
                .collect();
            (v["name"].as_str().unwrap().to_string(), meta)
        })
        .collect()
}
