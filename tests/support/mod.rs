//! Shared pieces of the end-to-end tests: build the components once, start
//! the real `host` binary on a free port in a scratch project, drive it over
//! HTTP, and stop it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The repository root.
/// `python` of a virtualenv under target/`venv` with `requirements` (a file
/// under tests/compat) installed; rebuilt when the requirements change. Call
/// it once per test binary (a OnceLock): parallel installs would race.
pub fn python_venv(requirements: &str, venv: &str) -> PathBuf {
    let requirements = repo().join("tests/compat").join(requirements);
    let venv = repo().join("target").join(venv);
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
            "pip install -r {} failed",
            requirements.display()
        );
        std::fs::write(&marker, wanted).unwrap();
    }
    venv.join("bin/python")
}

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn host_bin() -> &'static str {
    env!("CARGO_BIN_EXE_host")
}

/// Build the sample functions and the test fixtures once per test binary
/// (cargo makes repeated builds cheap). Returns the repo root.
pub fn components() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        for dir in ["functions", "tests/fixtures"] {
            let out = Command::new(host_bin())
                .args(["build", "--functions"])
                .arg(repo().join(dir))
                .output()
                .expect("running host build");
            assert!(
                out.status.success(),
                "host build --functions {dir} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        repo()
    })
}

/// A sample folder (under functions/) or fixture folder (under tests/fixtures/).
pub fn folder(name: &str) -> PathBuf {
    let root = components();
    let sample = root.join("functions").join(name);
    if sample.is_dir() {
        sample
    } else {
        root.join("tests/fixtures").join(name)
    }
}

/// Copy a function folder's function.toml and .wasm into `dest` (the way a user deploys).
pub fn deploy(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    for entry in std::fs::read_dir(src).unwrap().flatten() {
        let p = entry.path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if name == "function.toml" || name.ends_with(".wasm") {
            std::fs::copy(&p, dest.join(&name)).unwrap();
        }
    }
}

/// A scratch project: host.toml, local.settings.toml and functions/.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A project with these sample/fixture folders deployed.
    pub fn with(folders: &[&str]) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("functions")).unwrap();
        let p = Project { dir };
        for f in folders {
            deploy(&folder(f), &p.functions().join(f));
        }
        p
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn functions(&self) -> PathBuf {
        self.root().join("functions")
    }

    pub fn write(&self, relative: &str, text: &str) {
        let path = self.root().join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// Start the host here with `args` added to `start --port 0`.
    pub fn start(&self, args: &[&str]) -> Host {
        Host::spawn(self, args, &[])
    }

    pub fn start_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Host {
        Host::spawn(self, args, env)
    }

    /// Run `host start` expecting it to fail at start-up; its exit status and output.
    pub fn start_fails(&self) -> (ExitStatus, String) {
        let out = Command::new(host_bin())
            .args(["start", "--port", "0", "--script-root"])
            .arg(self.root())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status, text)
    }
}

#[derive(Default)]
struct Output {
    text: Mutex<String>,
    changed: Condvar,
}

/// A running `host start`.
pub struct Host {
    child: Child,
    output: Arc<Output>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

/// Generous: a cold compile of a component in a debug build takes seconds.
pub const START_DEADLINE: Duration = Duration::from_secs(120);

impl Host {
    fn spawn(project: &Project, args: &[&str], env: &[(&str, &str)]) -> Host {
        // One compile cache for every test: each component is compiled once per run.
        let cache = repo().join("target").join("test-host-cache");
        let mut cmd = Command::new(host_bin());
        cmd.args(["start", "--port", "0", "--script-root"])
            .arg(project.root())
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawning host");
        let output = Arc::new(Output::default());
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let output = output.clone();
            // FNHOST_TEST_ECHO=1 shows the hosts' output as it comes (for debugging tests).
            let echo = std::env::var_os("FNHOST_TEST_ECHO").is_some();
            let pid = child.id();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if echo {
                        eprintln!("[host {pid}] {line}");
                    }
                    let mut text = output.text.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                    output.changed.notify_all();
                }
            });
        }
        let mut host = Host {
            child,
            output,
            base: String::new(),
        };
        let line = host.wait_for("Listening on http://localhost:", START_DEADLINE);
        // The digits after the last ':' (the line may be JSON: `--log-format json`).
        let port: String = line
            .rsplit(':')
            .next()
            .unwrap()
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        host.base = format!("http://127.0.0.1:{port}");
        host
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Everything the host printed so far.
    pub fn output(&self) -> String {
        self.output.text.lock().unwrap().clone()
    }

    /// Wait until a printed line contains `needle`; that line. Panics with the
    /// output at the deadline.
    pub fn wait_for(&mut self, needle: &str, deadline: Duration) -> String {
        let end = Instant::now() + deadline;
        let mut text = self.output.text.lock().unwrap();
        loop {
            if let Some(line) = text.lines().find(|l| l.contains(needle)) {
                return line.to_string();
            }
            let now = Instant::now();
            if now >= end {
                panic!("host did not print {needle:?} within {deadline:?}; it printed:\n{text}");
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("host exited ({status}) before printing {needle:?}; it printed:\n{text}");
            }
            text = self
                .output
                .changed
                .wait_timeout(text, (end - now).min(Duration::from_millis(200)))
                .unwrap()
                .0;
        }
    }

    /// SIGKILL: the host dies on the spot, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// How many printed lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.output
            .text
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }

    /// How many lines printed after the first `from` bytes contain `needle`,
    /// and how many bytes were printed: counts a long output piece by piece.
    pub fn count_from(&self, needle: &str, from: usize) -> (usize, usize) {
        let text = self.output.text.lock().unwrap();
        let from = from.min(text.len());
        let count = text[from..].lines().filter(|l| l.contains(needle)).count();
        (count, text.len())
    }

    /// SIGTERM, then wait for the exit (at most `deadline`).
    pub fn terminate(&mut self, deadline: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < end,
                "host did not exit within {deadline:?} of SIGTERM:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Poll `f` every 50 ms until it returns `Some`, or panic at `deadline` with `what`.
pub fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + deadline;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < end,
            "timed out after {deadline:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// GET `url`; the status and body.
pub fn get(url: &str) -> (u16, String) {
    let r = client().get(url).send().unwrap();
    (r.status().as_u16(), r.text().unwrap())
}
