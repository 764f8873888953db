//! The real Durable Functions clients, pointed at this host, work unchanged:
//! the PyPI `azure-functions-durable` client drives every management operation.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::path::PathBuf;
use std::process::Command;

use durable_support::{client_works_unchanged, client_works_with_keys};
use support::repo;

/// A virtualenv with the pinned client, under target/ (rebuilt when the
/// requirements change).
fn python_client() -> PathBuf {
    // Once per test binary: its tests run in parallel and would race to install.
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| support::python_venv("requirements.txt", "compat-venv"))
        .clone()
}

#[test]
fn python_durable_client_works_unchanged() {
    let mut program = Command::new(python_client());
    program.arg(repo().join("tests/compat/df_client.py"));
    client_works_unchanged(program, "python durable client: all operations ok");
}

#[test]
fn python_durable_client_works_with_keys_enforced() {
    let mut program = Command::new(python_client());
    program.arg(repo().join("tests/compat/df_client.py"));
    client_works_with_keys(program, "python durable client: all operations ok");
}
