//! The real Durable Functions clients, pointed at this host, work unchanged:
//! the npm `durable-functions` 3.x client (`df.getClient(context)`) drives
//! every management operation (tests/compat/node/df_client.mjs).

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::path::PathBuf;
use std::process::Command;

use durable_support::{client_works_unchanged, client_works_with_keys};
use support::repo;

/// tests/compat/node with its pinned packages installed (`npm ci` when
/// node_modules is missing or older than package-lock.json).
fn node_client() -> PathBuf {
    // Once per test binary: its tests run in parallel and would race to install.
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(install).clone()
}

fn install() -> PathBuf {
    let dir = repo().join("tests/compat/node");
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock =
        modified(dir.join("package-lock.json")).expect("tests/compat/node/package-lock.json");
    // npm ci writes node_modules/.package-lock.json last.
    let installed = modified(dir.join("node_modules/.package-lock.json"));
    if installed.is_none_or(|t| t < lock) {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(&dir)
            .status()
            .unwrap_or_else(|e| {
                panic!("npm (Node.js 20+) is needed for this test; running `npm ci` failed: {e}")
            });
        assert!(status.success(), "npm ci in tests/compat/node failed");
    }
    dir.join("df_client.mjs")
}

#[test]
fn node_durable_client_works_unchanged() {
    let mut program = Command::new("node");
    program.arg(node_client());
    client_works_unchanged(program, "node durable client: all operations ok");
}

#[test]
fn node_durable_client_works_with_keys_enforced() {
    let mut program = Command::new("node");
    program.arg(node_client());
    client_works_with_keys(program, "node durable client: all operations ok");
}
