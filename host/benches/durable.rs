//! The durable benchmark against a local Azurite: a 100-step activity chain,
//! a fan-out of 1,000 no-op activities, 1,000 concurrent one-step
//! orchestrations, storage transactions per activity, and idle transactions
//! per minute. Run with `./dev bench durable` (or `cargo bench -p host --bench durable`).

#[path = "../../tests/support/azurite.rs"]
mod azurite;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Host {
    child: Child,
    base: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn repo() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn start_host(root: &std::path::Path) -> Host {
    let mut child = Command::new(env!("CARGO_BIN_EXE_host"))
        .args(["start", "--port", "0", "--script-root"])
        .arg(root)
        .env_remove("RUST_BACKTRACE")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting host");
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(i) = line.find("Listening on http://localhost:") {
                let _ = tx.send(
                    line[i + "Listening on http://localhost:".len()..]
                        .trim()
                        .to_string(),
                );
            }
        }
    });
    let port = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("host did not start");
    Host {
        child,
        base: format!("http://127.0.0.1:{port}"),
    }
}

fn storage_calls(c: &reqwest::blocking::Client, host: &Host) -> u64 {
    let text = c
        .get(format!("{}/admin/metrics", host.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with("fnhost_storage_transactions_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn start(c: &reqwest::blocking::Client, host: &Host, name: &str, input: Value) -> String {
    let r = c
        .post(format!(
            "{}/runtime/webhooks/durabletask/orchestrators/{name}",
            host.base
        ))
        .json(&input)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "starting {name}");
    r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn wait(c: &reqwest::blocking::Client, host: &Host, id: &str) -> Value {
    let url = format!("{}/runtime/webhooks/durabletask/instances/{id}", host.base);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let r = c.get(&url).send().unwrap();
        if r.status() == 200 {
            let v: Value = r.json().unwrap();
            assert_eq!(v["runtimeStatus"], "Completed", "{v}");
            return v;
        }
        assert!(Instant::now() < deadline, "{id} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn main() {
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
    let azurite = azurite::Azurite::start();
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("functions/durable_bench");
    std::fs::create_dir_all(&dest).unwrap();
    for f in ["function.toml", "durable_bench.wasm"] {
        std::fs::copy(
            repo().join("bench/functions/durable_bench").join(f),
            dest.join(f),
        )
        .unwrap();
    }
    std::fs::write(
        root.path().join("host.toml"),
        "[extensions.durableTask]\nhubName = \"BenchHub\"\n",
    )
    .unwrap();
    std::fs::write(
        root.path().join("local.settings.toml"),
        format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\n",
            azurite.connection_string
        ),
    )
    .unwrap();
    let host = start_host(root.path());
    let c = reqwest::blocking::Client::new();
    // Warm-up: the first episode creates nothing new but pays for connections.
    let id = start(&c, &host, "Small", Value::Null);
    wait(&c, &host, &id);

    let calls = storage_calls(&c, &host);
    let t = Instant::now();
    let id = start(&c, &host, "Chain", 100.into());
    wait(&c, &host, &id);
    let took = t.elapsed();
    let chain_calls = storage_calls(&c, &host) - calls;
    println!(
        "100-step chain: {:.2} s, {:.1} ms per step, {:.1} storage transactions per activity",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / 100.0,
        chain_calls as f64 / 100.0
    );

    let calls = storage_calls(&c, &host);
    let t = Instant::now();
    let id = start(&c, &host, "FanOut", 1000.into());
    let v = wait(&c, &host, &id);
    assert_eq!(v["output"], 1000);
    let took = t.elapsed();
    let fan_calls = storage_calls(&c, &host) - calls;
    println!(
        "fan-out of 1,000: {:.2} s, {:.0} activities/s, {:.1} storage transactions per activity",
        took.as_secs_f64(),
        1000.0 / took.as_secs_f64(),
        fan_calls as f64 / 1000.0
    );

    let calls = storage_calls(&c, &host);
    let t = Instant::now();
    let ids: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    (0..125)
                        .map(|_| start(&c, &host, "Small", Value::Null))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let started = t.elapsed();
    for id in &ids {
        wait(&c, &host, id);
    }
    let took = t.elapsed();
    let small_calls = storage_calls(&c, &host) - calls;
    println!(
        "1,000 concurrent one-activity orchestrations: {:.2} s ({:.2} s to start them), {:.0} orchestrations/s, {:.1} storage transactions per orchestration",
        took.as_secs_f64(),
        started.as_secs_f64(),
        1000.0 / took.as_secs_f64(),
        small_calls as f64 / 1000.0
    );

    // Idle: let the pollers back off to maxQueuePollingInterval (30 s), then count a minute.
    std::thread::sleep(Duration::from_secs(35));
    let calls = storage_calls(&c, &host);
    std::thread::sleep(Duration::from_secs(60));
    println!(
        "idle: {} storage transactions per minute (4 partitions, 30 s leases renewed every 10 s)",
        storage_calls(&c, &host) - calls
    );
}
