//! Duplicated deliveries: `storage_client.py duplicate` (the PyPI Azure
//! Storage SDK) peeks the task hub's queues and sends copies of what it sees,
//! some at once, some seconds later, as a redelivery after a crash would come.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{python_venv, repo};

pub struct Duplicator {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Duplicator {
    /// Copy `percent` % of the messages of `queues`, each visible after 0 to `max_delay_s` s.
    pub fn start(
        connection_string: &str,
        seed: u64,
        percent: u32,
        max_delay_s: u32,
        queues: &[String],
    ) -> Duplicator {
        let python = python_venv("storage-requirements.txt", "storage-venv");
        let mut child = Command::new(python)
            .arg(repo().join("tests/compat/storage_client.py"))
            .args(["duplicate", &seed.to_string(), &percent.to_string()])
            .arg(max_delay_s.to_string())
            .args(queues)
            .env("AZURE_STORAGE_CONNECTION_STRING", connection_string)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting storage_client.py duplicate");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Duplicator {
            stdin: child.stdin.take(),
            child,
            lines,
        }
    }

    /// Copies made so far (JSON lines: queue, id, copy, delay_s, text).
    pub fn copies(&self) -> Vec<String> {
        let lines = self.lines.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.starts_with('{'))
            .cloned()
            .collect()
    }

    /// Stop copying and wait until every copy has been visible and been
    /// taken by a host; false if that did not happen within `deadline`.
    pub fn drain(&mut self, deadline: Duration) -> bool {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "stop");
        }
        let end = Instant::now() + deadline;
        while Instant::now() < end {
            if self.lines.lock().unwrap().iter().any(|l| l == "drained") {
                return true;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("storage_client.py duplicate exited early ({status})");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }
}

impl Drop for Duplicator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
