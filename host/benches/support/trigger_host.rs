//! The real `host` binary for the trigger benchmarks: started on a free port
//! in a scratch project, its output lines kept with when they came, its
//! `/admin/metrics` read, killed when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Build the benchmark's function components (`bench/functions`).
pub fn build_functions() {
    let out = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["build", "--functions"])
        .arg(repo().join("bench/functions"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running host and the lines it printed, with when they came.
pub struct Host {
    child: Child,
    pub base: String,
    pub lines: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Host {
    /// `host start` in `root`, RUST_BACKTRACE unset (it slows wasmtime);
    /// returns once it printed "Host started".
    pub fn start(root: &std::path::Path) -> Host {
        let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
            .args(["start", "--port", "0", "--script-root"])
            .arg(root)
            .env_remove("RUST_BACKTRACE")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting host");
        let lines: Arc<Mutex<Vec<(Instant, String)>>> = Arc::default();
        let stdout = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push((Instant::now(), line));
            }
        });
        let mut host = Host {
            child,
            base: String::new(),
            lines,
        };
        let line = host.wait(|l| l.contains("Listening on http://localhost:"), 120);
        let port = line.rsplit(':').next().unwrap().trim().to_string();
        host.base = format!("http://127.0.0.1:{port}");
        host.wait(|l| l.contains("Host started"), 120);
        host
    }

    /// Wait for a line that `f` accepts; the line.
    pub fn wait(&mut self, f: impl Fn(&str) -> bool, seconds: u64) -> String {
        self.wait_at(f, seconds).1
    }

    /// Wait for a line that `f` accepts; when it came, and the line.
    pub fn wait_at(&mut self, f: impl Fn(&str) -> bool, seconds: u64) -> (Instant, String) {
        let end = Instant::now() + Duration::from_secs(seconds);
        loop {
            if let Some(hit) = self.lines.lock().unwrap().iter().find(|(_, l)| f(l)) {
                return hit.clone();
            }
            assert!(Instant::now() < end, "the host did not print the line");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn count(&self, f: impl Fn(&str) -> bool) -> usize {
        self.lines
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, l)| f(l))
            .count()
    }

    /// `series` of `/admin/metrics` (name and labels), read at one instant; 0 if absent.
    pub fn metrics<const N: usize>(&self, series: [&str; N]) -> [u64; N] {
        let text = reqwest::blocking::get(format!("{}/admin/metrics", self.base))
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

    /// The trigger storage calls so far: (queue, blob).
    pub fn calls(&self) -> (u64, u64) {
        let [queue, blob] = self.metrics([QUEUE_CALLS, BLOB_CALLS]);
        (queue, blob)
    }

    /// SIGTERM, and wait (at most 60 s) for the exit.
    pub fn terminate(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < end, "the host did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub const QUEUE_CALLS: &str = "fnhost_trigger_storage_transactions_total{service=\"queue\"}";
pub const BLOB_CALLS: &str = "fnhost_trigger_storage_transactions_total{service=\"blob\"}";
pub const SCANS: &str = "fnhost_blob_trigger_scans_total";
