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

/// One counter of `/admin/metrics` (the line starting with `name`).
fn metric(c: &reqwest::blocking::Client, host: &Host, name: &str) -> u64 {
    let text = c
        .get(format!("{}/admin/metrics", host.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
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

/// `fnhost_invocations_total` (succeeded) of a host.
fn invocations(c: &reqwest::blocking::Client, host: &Host) -> u64 {
    let text = c
        .get(format!("{}/admin/metrics", host.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find(|l| l.starts_with("fnhost_invocations_total{result=\"succeeded\"}"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Start `n` orchestrations of `name` from 8 client threads; wait for all.
fn many(
    c: &reqwest::blocking::Client,
    host: &Host,
    name: &str,
    input: Value,
    n: usize,
) -> (f64, f64) {
    let t = Instant::now();
    let ids: Vec<String> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let input = input.clone();
                s.spawn(move || {
                    (0..n)
                        .filter(|i| i % 8 == w)
                        .map(|_| start(c, host, name, input.clone()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let started = t.elapsed().as_secs_f64();
    for id in &ids {
        wait(c, host, id);
    }
    (t.elapsed().as_secs_f64(), started)
}

fn main() {
    // `cargo bench -p host --bench durable -- chain fanout ...` runs only those shapes.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |shape: &str| only.is_empty() || only.iter().any(|o| o == shape);
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
    let extra = std::env::var("BENCH_DURABLE_TOML").unwrap_or_default();
    std::fs::write(
        root.path().join("host.toml"),
        format!("[extensions.durableTask]\nhubName = \"BenchHub\"\n{extra}\n"),
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

    if run("chain") {
        let calls = storage_calls(&c, &host);
        let t = Instant::now();
        let id = start(&c, &host, "Chain", 100.into());
        wait(&c, &host, &id);
        let took = t.elapsed();
        let chain_calls = storage_calls(&c, &host) - calls;
        println!(
            "100-step chain: {:.2} s, {:.2} ms per step, {:.2} storage transactions per step",
            took.as_secs_f64(),
            took.as_secs_f64() * 1000.0 / 100.0,
            chain_calls as f64 / 100.0
        );
    }

    for n in [100u32, 1000, 10_000] {
        if !(run("fanout") || n == 1000 && run("fanout1000")) {
            continue;
        }
        let calls = storage_calls(&c, &host);
        let t = Instant::now();
        let id = start(&c, &host, "FanOut", n.into());
        let v = wait(&c, &host, &id);
        assert_eq!(v["output"], n);
        let took = t.elapsed();
        let fan_calls = storage_calls(&c, &host) - calls;
        println!(
            "fan-out of {n}: {:.3} s, {:.0} activities/s, {:.3} storage transactions per activity",
            took.as_secs_f64(),
            f64::from(n) / took.as_secs_f64(),
            fan_calls as f64 / f64::from(n)
        );
    }

    if run("small") {
        let calls = storage_calls(&c, &host);
        let (took, started) = many(&c, &host, "Small", Value::Null, 1000);
        let small_calls = storage_calls(&c, &host) - calls;
        println!(
            "1,000 concurrent one-activity orchestrations: {took:.2} s ({started:.2} s to start them), {:.0} orchestrations/s, {:.2} storage transactions per orchestration",
            1000.0 / took,
            small_calls as f64 / 1000.0
        );
    }

    if run("chain5") {
        let calls = storage_calls(&c, &host);
        let (took, started) = many(&c, &host, "Chain", 5.into(), 1000);
        let chain_calls = storage_calls(&c, &host) - calls;
        println!(
            "1,000 concurrent orchestrations of 5 chained activities: {took:.2} s ({started:.2} s to start them), {:.0} orchestrations/s, {:.2} storage transactions per orchestration",
            1000.0 / took,
            chain_calls as f64 / 1000.0
        );
    }

    for (shape, entities) in [("entity1", 1u32), ("entity100", 100)] {
        if !run(shape) && !run("entities") {
            continue;
        }
        // From HTTP clients: 5,000 signals from 32 threads.
        let total = 5000u32;
        let appends = metric(&c, &host, "fnhost_durable_signal_log_appends_total ");
        let calls = storage_calls(&c, &host);
        let t = Instant::now();
        let next = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..32 {
                s.spawn(|| {
                    let c = reqwest::blocking::Client::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        let url = format!(
                            "{}/runtime/webhooks/durabletask/entities/tally/h{}?op=add",
                            host.base,
                            i % entities
                        );
                        let r = c.post(url).body("1").send().unwrap();
                        assert_eq!(r.status(), 202);
                    }
                });
            }
        });
        wait_tallies(&c, &host, "h", entities, total / entities);
        let took = t.elapsed();
        // The signal log deletes applied rows up to half a second later: count them too.
        std::thread::sleep(Duration::from_millis(1500));
        let used = storage_calls(&c, &host) - calls;
        println!(
            "{total} signals from 32 HTTP clients to {entities} entit{}: {:.2} s, {:.0} operations/s, {:.3} storage transactions per operation ({} signal log appends)",
            if entities == 1 { "y" } else { "ies" },
            took.as_secs_f64(),
            f64::from(total) / took.as_secs_f64(),
            used as f64 / f64::from(total),
            metric(&c, &host, "fnhost_durable_signal_log_appends_total ") - appends,
        );

        // From an orchestration: 5,000 signals in one episode.
        let calls = storage_calls(&c, &host);
        let t = Instant::now();
        let id = start(
            &c,
            &host,
            "SignalTallies",
            serde_json::json!([total, entities]),
        );
        wait(&c, &host, &id);
        wait_tallies(&c, &host, "o", entities, total / entities);
        let took = t.elapsed();
        let used = storage_calls(&c, &host) - calls;
        println!(
            "{total} signals from one orchestration to {entities} entit{}: {:.2} s, {:.0} operations/s, {:.3} storage transactions per operation",
            if entities == 1 { "y" } else { "ies" },
            took.as_secs_f64(),
            f64::from(total) / took.as_secs_f64(),
            used as f64 / f64::from(total)
        );
    }

    if run("idle") {
        // Let the pollers back off to maxQueuePollingInterval (30 s) and park, then count a minute.
        std::thread::sleep(Duration::from_secs(65));
        let calls = storage_calls(&c, &host);
        std::thread::sleep(Duration::from_secs(60));
        println!(
            "idle: {} storage transactions per minute (one host, 4 partitions, 30 s leases renewed every 10 s)",
            storage_calls(&c, &host) - calls
        );
    }

    if run("twohosts") {
        let second = start_host(root.path());
        // Let the second host take its share of the partitions (2 of 4).
        let split = Instant::now();
        while partitions(&c, &second) < 2 {
            assert!(
                split.elapsed() < Duration::from_secs(90),
                "the hosts did not split"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        for n in [1000u32, 10_000] {
            let (a0, b0) = (invocations(&c, &host), invocations(&c, &second));
            let calls = storage_calls(&c, &host) + storage_calls(&c, &second);
            let t = Instant::now();
            let id = start(&c, &host, "FanOut", n.into());
            let v = wait(&c, &host, &id);
            assert_eq!(v["output"], n);
            let took = t.elapsed();
            let all = storage_calls(&c, &host) + storage_calls(&c, &second) - calls;
            println!(
                "two hosts, fan-out of {n}: {:.3} s, {:.0} activities/s, {:.3} storage transactions per activity; invocations on the hosts: {} and {}",
                took.as_secs_f64(),
                f64::from(n) / took.as_secs_f64(),
                all as f64 / f64::from(n),
                invocations(&c, &host) - a0,
                invocations(&c, &second) - b0,
            );
        }
    }
}

/// Poll until tallies `{prefix}0..{prefix}{n-1}` each hold `each`.
fn wait_tallies(c: &reqwest::blocking::Client, host: &Host, prefix: &str, n: u32, each: u32) {
    let deadline = Instant::now() + Duration::from_secs(300);
    for k in 0..n {
        let url = format!(
            "{}/runtime/webhooks/durabletask/entities/tally/{prefix}{k}",
            host.base
        );
        loop {
            let r = c.get(&url).send().unwrap();
            if r.status() == 200 && r.json::<u32>().unwrap() >= each {
                break;
            }
            assert!(Instant::now() < deadline, "{url} did not reach {each}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn partitions(c: &reqwest::blocking::Client, host: &Host) -> usize {
    let text = c
        .get(format!("{}/admin/metrics", host.base))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("fnhost_partitions_owned "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
