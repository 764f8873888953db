//! The dashboard in real headless browsers: Debian's `chromium` driven by npm
//! `playwright-core` (list filters and paging, the seed 002 fan-out's timeline,
//! every action button, functions with their counts, the entities view, the key sent as
//! x-functions-key, a phone-width window), and Debian's `firefox-esr` driven
//! by npm `puppeteer-core` over WebDriver BiDi (the same page in the other
//! engine). Screenshots of the main views land in target/dashboard-screenshots/.

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
/// One at a time: the two browser tests run in parallel, and two `npm ci` in
/// one folder delete each other's files (ENOTEMPTY on a clean clone).
fn npm_ci(dir: &Path) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
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

/// A browser binary: `env` if set, else Debian's path.
fn browser(env: &str, debian: &str, package: &str) -> String {
    let path = std::env::var(env).unwrap_or_else(|_| debian.into());
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: install Debian's {package} package (`apt-get install {package}`; ./dev test does it), \
         or point {env} at one"
    );
    path
}

/// Run `script` (in tests/browser) against a host with the seeds' samples;
/// it must end with `done`. The screenshot folder.
fn drive(script: &str, env: (&str, String), done: &str) -> PathBuf {
    let dir = repo().join("tests/browser");
    npm_ci(&dir);
    let azurite = Azurite::start();
    let p = project(
        &azurite,
        &["fan_out", "approval", "counter", "durable_fixtures"],
        "",
    );
    let host = p.start(&[]);
    let shots = repo().join("target/dashboard-screenshots");
    let out = Command::new("node")
        .arg(dir.join(script))
        .arg(&host.base)
        .arg(&shots)
        .env(env.0, env.1)
        .current_dir(&dir)
        .output()
        .expect("running node");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}\n--- host:\n{}", host.output());
    assert!(text.contains(done), "{text}");
    shots
}

fn png(shots: &Path, name: &str) {
    let path = shots.join(format!("{name}.png"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        path.display()
    );
}

#[test]
fn dashboard_in_headless_chromium() {
    let chromium = browser("FNHOST_CHROMIUM", "/usr/bin/chromium", "chromium");
    let shots = drive(
        "dashboard.mjs",
        ("FNHOST_CHROMIUM", chromium),
        "dashboard: all checks passed",
    );
    for shot in ["instances", "instance", "timeline", "functions", "phone"] {
        png(&shots, shot);
    }
}

#[test]
fn dashboard_in_headless_firefox() {
    let firefox = browser("FNHOST_FIREFOX", "/usr/bin/firefox-esr", "firefox-esr");
    let shots = drive(
        "firefox.mjs",
        ("FNHOST_FIREFOX", firefox),
        "firefox: all checks passed",
    );
    png(&shots, "firefox-instance");
}
