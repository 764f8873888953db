//! A private Azurite for one test: in memory, on 127.0.0.1, on ports the OS
//! picks, stopped (killed) when dropped.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Azurite's first start on a cold disk (node loading ~400 modules) takes a
/// few seconds on 2 cores; 60 s means something is really wrong.
const START_DEADLINE: Duration = Duration::from_secs(60);

/// The well-known Azurite account key (public, documented by Microsoft).
pub const DEV_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running Azurite process.
pub struct Azurite {
    child: Child,
    /// Its working directory (empty: data stays in memory); removed on drop.
    _workspace: tempfile::TempDir,
    pub blob_port: u16,
    pub queue_port: u16,
    pub table_port: u16,
    /// `DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=…;BlobEndpoint=…;QueueEndpoint=…;TableEndpoint=…`
    pub connection_string: String,
}

fn azurite_bin() -> PathBuf {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let bin = repo.join("node_modules/.bin/azurite");
    if !bin.exists() {
        panic!(
            "{} is missing: run `npm ci` in {} (./dev test does it)",
            bin.display(),
            repo.display()
        );
    }
    bin
}

impl Azurite {
    /// Start Azurite and wait until its three services accept connections.
    ///
    /// Port 0 for each service: Azurite binds what the OS gives and prints
    /// "Azurite Blob service is successfully listening at http://127.0.0.1:NNNN",
    /// which we read, so parallel tests never race for a port.
    pub fn start() -> Azurite {
        let workspace = tempfile::tempdir().unwrap();
        let mut child = Command::new(azurite_bin())
            .args(["--blobHost", "127.0.0.1", "--blobPort", "0"])
            .args(["--queueHost", "127.0.0.1", "--queuePort", "0"])
            .args(["--tableHost", "127.0.0.1", "--tablePort", "0"])
            // --silent: no access log (the listening lines still print).
            .args([
                "--inMemoryPersistence",
                "--silent",
                "--skipApiVersionCheck",
                "--disableTelemetry",
            ])
            // In-memory blob data defaults to half the machine's RAM.
            .args(["--extentMemoryLimit", "256"])
            .current_dir(workspace.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start Azurite (is Node.js installed?): {e}"));

        // Read stdout on a thread (a pipe left unread would block Azurite)
        // and pass the lines here until all three ports are known.
        let (lines, received) = mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let (errors, error_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = errors.send(line);
            }
        });

        let deadline = Instant::now() + START_DEADLINE;
        let mut output = Vec::new();
        let mut ports = [None; 3]; // blob, queue, table
        while ports.iter().any(Option::is_none) {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match received.recv_timeout(left) {
                Ok(line) => line,
                Err(stop) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    output.extend(error_lines.iter()); // ends: the process is gone
                    let why = match stop {
                        mpsc::RecvTimeoutError::Timeout => {
                            format!(
                                "did not report its three ports within {} s",
                                START_DEADLINE.as_secs()
                            )
                        }
                        mpsc::RecvTimeoutError::Disconnected => {
                            "exited before listening".to_string()
                        }
                    };
                    panic!("Azurite {why}; its output:\n{}", output.join("\n"));
                }
            };
            for (i, service) in ["Blob", "Queue", "Table"].iter().enumerate() {
                let prefix = format!(
                    "Azurite {service} service is successfully listening at http://127.0.0.1:"
                );
                if let Some(port) = line.strip_prefix(&prefix) {
                    ports[i] = Some(port.trim().parse::<u16>().unwrap());
                }
            }
            output.push(line);
        }
        let [blob_port, queue_port, table_port] = ports.map(Option::unwrap);

        // "Listening" is printed once bound; still, check each port answers.
        for port in [blob_port, queue_port, table_port] {
            while TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "Azurite's port {port} does not accept connections"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }

        let endpoint = |port: u16| format!("http://127.0.0.1:{port}/devstoreaccount1");
        let connection_string = format!(
            "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEV_KEY};\
             BlobEndpoint={};QueueEndpoint={};TableEndpoint={};",
            endpoint(blob_port),
            endpoint(queue_port),
            endpoint(table_port)
        );
        Azurite {
            child,
            _workspace: workspace,
            blob_port,
            queue_port,
            table_port,
            connection_string,
        }
    }
}

impl Drop for Azurite {
    /// `node_modules/.bin/azurite` runs as one node process (no children), so
    /// killing its pid stops everything it started.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
