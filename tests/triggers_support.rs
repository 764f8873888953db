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
