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
    ONCE.get_or_init(install).clone()
}

fn install() -> PathBuf {
    let requirements = repo().join("tests/compat/requirements.txt");
    let venv = repo().join("target/compat-venv");
    let marker = venv.join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        let _ = std::fs::remove_dir_all(&venv);
        let status = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .expect("python3 is needed for this test");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(&requirements)
            .status()
            .unwrap();
        assert!(
            status.success(),
            "pip install -r tests/compat/requirements.txt failed"
        );
        std::fs::write(&marker, wanted).unwrap();
    }
    venv.join("bin/python")
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
