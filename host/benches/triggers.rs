//! The trigger benchmark against a local Azurite: what Azurite serves for a
//! get + delete per message (the ceiling), queue-trigger throughput of a
//! no-op function and its storage calls per message, idle storage calls per
//! minute of one queue and one blob trigger, and idle enqueue-to-invocation
//! and upload-to-invocation latency. Run with `./dev bench queue` (or
//! `cargo bench -p host --bench triggers`); `BENCH_MESSAGES` sets the count (2000).

#[path = "../../tests/support/azurite.rs"]
mod azurite;

#[path = "support/trigger_host.rs"]
mod trigger_host;

use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::StreamExt;
use host::storage::Storage;
use trigger_host::{Host, repo};

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

async fn fill(storage: &Storage, queue: &str, n: usize) {
    storage.queues.create_queue(queue).await.unwrap();
    futures::stream::iter(0..n)
        .for_each_concurrent(32, |i| async move {
            storage
                .queues
                .send(queue, &b64(&format!("m{i}")), Duration::ZERO)
                .await
                .unwrap();
        })
        .await;
}

/// Azurite's ceiling: get 32 + delete each, two workers, as a host would.
async fn baseline(storage: &Storage, n: usize) -> f64 {
    fill(storage, "baseline", n).await;
    let started = Instant::now();
    let worker = || async {
        loop {
            let batch = storage
                .queues
                .receive("baseline", 32, Duration::from_secs(60))
                .await
                .unwrap();
            if batch.is_empty() {
                break;
            }
            futures::future::join_all(batch.iter().map(|m| storage.queues.delete("baseline", m)))
                .await;
        }
    };
    futures::future::join(worker(), worker()).await;
    n as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let n: usize = std::env::var("BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    trigger_host::build_functions();
    let azurite = azurite::Azurite::start();
    let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let ceiling = rt.block_on(baseline(&storage, n));
    println!("azurite get+delete per message: {ceiling:.0} messages/s ({n} messages)");

    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("functions/trigger_bench");
    std::fs::create_dir_all(&dest).unwrap();
    for f in ["function.toml", "trigger_bench.wasm"] {
        std::fs::copy(
            repo().join("bench/functions/trigger_bench").join(f),
            dest.join(f),
        )
        .unwrap();
    }
    // Azure's defaults: batchSize 16, maxPollingInterval 1 min.
    std::fs::write(root.path().join("host.toml"), "version = \"2.0\"\n").unwrap();
    std::fs::write(
        root.path().join("local.settings.toml"),
        format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\n",
            azurite.connection_string
        ),
    )
    .unwrap();

    // Throughput: the queue filled before the host starts.
    rt.block_on(fill(&storage, "bench-in", n));
    let mut host = Host::start(root.path());
    let is_q = |l: &str| l.contains("] q m") || l.contains(" q m");
    let (first, _) = host.wait_at(is_q, 120);
    let end = Instant::now() + Duration::from_secs(600);
    while host.count(is_q) < n {
        assert!(Instant::now() < end, "the queue did not drain");
        std::thread::sleep(Duration::from_millis(10));
    }
    let last = host
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| is_q(l))
        .map(|(t, _)| *t)
        .max()
        .unwrap();
    let rate = (n - 1) as f64 / (last - first).as_secs_f64();
    // Let the deletes of the last invocations finish.
    std::thread::sleep(Duration::from_secs(2));
    let (queue_calls, _) = host.calls();
    println!(
        "queue trigger, no-op function: {rate:.0} messages/s ({:.0} % of Azurite's get+delete), \
         {:.2} queue calls per message (all calls since start / {n})",
        100.0 * rate / ceiling,
        queue_calls as f64 / n as f64
    );

    // Idle: both listeners back off (queue to 1 min, blob to 10 s), then count.
    std::thread::sleep(Duration::from_secs(120));
    let before = host.calls();
    let window = Duration::from_secs(180);
    std::thread::sleep(window);
    let after = host.calls();
    let per_min = |a: u64, b: u64| (b - a) as f64 * 60.0 / window.as_secs_f64();
    println!(
        "idle storage calls per minute: queue trigger {:.1}, blob trigger {:.1} (over {} s)",
        per_min(before.0, after.0),
        per_min(before.1, after.1),
        window.as_secs()
    );

    // Idle latency: after the idle window, one message and one blob at once.
    let sent = Instant::now();
    rt.block_on(async {
        storage
            .queues
            .send("bench-in", &b64("idle-probe"), Duration::ZERO)
            .await
            .unwrap();
        storage.blobs.create_container("bench-blobs").await.unwrap();
        storage
            .blobs
            .put("bench-blobs", "probe.txt", b"x".to_vec())
            .await
            .unwrap();
    });
    let (q_at, _) = host.wait_at(|l| l.contains("q idle-probe"), 120);
    let (b_at, _) = host.wait_at(|l| l.contains("b probe.txt"), 120);
    println!(
        "idle latency (after {} s idle): enqueue to invocation {:.1} s, blob upload to invocation {:.1} s",
        120 + window.as_secs(),
        (q_at - sent).as_secs_f64(),
        (b_at - sent).as_secs_f64()
    );
    // Busy latency: right after an invocation, the pollers run fast.
    let sent = Instant::now();
    rt.block_on(async {
        storage
            .queues
            .send("bench-in", &b64("busy-probe"), Duration::ZERO)
            .await
            .unwrap();
        storage
            .blobs
            .put("bench-blobs", "probe2.txt", b"x".to_vec())
            .await
            .unwrap();
    });
    let (q_at, _) = host.wait_at(|l| l.contains("q busy-probe"), 120);
    let (b_at, _) = host.wait_at(|l| l.contains("b probe2.txt"), 120);
    println!(
        "latency right after activity: enqueue to invocation {:.2} s, blob upload to invocation {:.2} s",
        (q_at - sent).as_secs_f64(),
        (b_at - sent).as_secs_f64()
    );
}
