//! The dashboard in a real headless Chromium (Debian's `chromium`, driven by
//! npm `playwright-core` from tests/browser): list filters and paging, the seed
//! 002 fan-out's timeline, every action button, functions with their counts,
//! the key sent as x-functions-key, a phone-width window. Screenshots of the
//! main views land in target/dashboard-screenshots/.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use azurite::Azurite;
use durable_support::project;
use support::repo;

/// `npm ci` in `dir` when node_modules is missing or older than package-lock.json.
fn npm_ci(dir: &Path) {
    let modified = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let lock = modified(dir.join("package-lock.json")).expect("package-lock.json");
    // npm ci writes node_modules/.package-lock.json last.
    if modified(dir.join("node_modules/.package-lock.json")).is_none_or(|t| t < lock) {
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(dir)
            .status()
            .unwrap_or_else(|e| panic!("npm (Node.js 20+) is needed; `npm ci` failed: {e}"));
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
}

fn chromium() -> String {
    let path = std::env::var("FNHOST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: install Debian's chromium package (`apt-get install chromium`; ./dev test does it), \
         or point FNHOST_CHROMIUM at a Chromium"
    );
    path
}

#[test]
fn dashboard_in_headless_chromium() {
    let browser = chromium();
    let dir = repo().join("tests/browser");
    npm_ci(&dir);
    let azurite = Azurite::start();
    let p = project(&azurite, &["fan_out", "approval", "durable_fixtures"], "");
    let host = p.start(&[]);
    let shots = repo().join("target/dashboard-screenshots");
    let out = Command::new("node")
        .arg(dir.join("dashboard.mjs"))
        .arg(&host.base)
        .arg(&shots)
        .env("FNHOST_CHROMIUM", browser)
        .current_dir(&dir)
        .output()
        .expect("running node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n--- host:\n{}", host.output());
    assert!(text.contains("dashboard: all checks passed"), "{text}");
    for shot in ["instances", "instance", "timeline", "functions", "phone"] {
        let png = shots.join(format!("{shot}.png"));
        let bytes = std::fs::read(&png).unwrap_or_else(|e| panic!("{}: {e}", png.display()));
        assert!(
            bytes.starts_with(b"\x89PNG"),
            "{} is not a PNG",
            png.display()
        );
    }
}
