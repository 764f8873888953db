//! The blob-trigger scale benchmark against a local Azurite: a container of
//! 10,000 blobs processed by a no-op blobTrigger (blobs/s, storage calls per
//! blob), then the idle cost with all of them processed (calls a minute, calls
//! per scan) and what a restart costs (the receipts listed once, none run
//! again). Run with `./dev bench blob` (or `cargo bench -p host --bench
//! blobs`); `BENCH_BLOBS` sets the count (10000), `BENCH_IDLE_SECONDS` the
//! idle window (180).

#[path = "../../tests/support/azurite.rs"]
mod azurite;
#[path = "support/trigger_host.rs"]
mod trigger_host;

use std::time::{Duration, Instant};

use futures::StreamExt;
use trigger_host::{BLOB_CALLS, Host, SCANS, repo};

const CONTAINER: &str = "bench-blobs";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Wait until the host's scans reach `scans`; (blob calls, scans) then.
fn wait_scans(host: &Host, scans: u64) -> [u64; 2] {
    let end = Instant::now() + Duration::from_secs(120);
    loop {
        let now = host.metrics([BLOB_CALLS, SCANS]);
        if now[1] >= scans {
            return now;
        }
        assert!(Instant::now() < end, "the blob listener does not scan");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn main() {
    let n = env_number("BENCH_BLOBS", 10_000) as usize;
    let idle = Duration::from_secs(env_number("BENCH_IDLE_SECONDS", 180));
    trigger_host::build_functions();
    let azurite = azurite::Azurite::start();
    let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();

    let filled = Instant::now();
    rt.block_on(async {
        storage.blobs.create_container(CONTAINER).await.unwrap();
        futures::stream::iter(0..n)
            .for_each_concurrent(32, |i| {
                let storage = &storage;
                async move {
                    storage
                        .blobs
                        .put(CONTAINER, &format!("old-{i:05}.txt"), b"x".to_vec())
                        .await
                        .unwrap();
                }
            })
            .await;
    });
    println!(
        "{n} blobs written in {:.1} s (before the host starts)",
        filled.elapsed().as_secs_f64()
    );

    // The no-op bench_blob alone (bench_queue's listener would add queue calls only).
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("functions/trigger_bench");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::copy(
        repo().join("bench/functions/trigger_bench/trigger_bench.wasm"),
        dest.join("trigger_bench.wasm"),
    )
    .unwrap();
    std::fs::write(
        dest.join("function.toml"),
        "[[functions]]\nname = \"bench_blob\"\n\
         trigger = { type = \"blobTrigger\", path = \"bench-blobs/{name}\" }\n",
    )
    .unwrap();
    std::fs::write(root.path().join("host.toml"), "version = \"2.0\"\n").unwrap();
    std::fs::write(
        root.path().join("local.settings.toml"),
        format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\n",
            azurite.connection_string
        ),
    )
    .unwrap();

    // Processing: every blob once.
    let is_run = |l: &str| l.contains(" b old-");
    let mut host = Host::start(root.path());
    let (first, _) = host.wait_at(is_run, 120);
    let end = Instant::now() + Duration::from_secs(1800);
    while host.count(is_run) < n {
        assert!(Instant::now() < end, "the blobs were not all processed");
        std::thread::sleep(Duration::from_millis(50));
    }
    let last = host
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| is_run(l))
        .map(|(t, _)| *t)
        .max()
        .unwrap();
    // Let the receipts of the last invocations be completed.
    std::thread::sleep(Duration::from_secs(2));
    let [calls, _] = host.metrics([BLOB_CALLS, SCANS]);
    println!(
        "blob trigger, no-op function: {n} blobs in {:.1} s = {:.0} blobs/s, {:.2} blob calls \
         per blob (all calls since start / {n})",
        (last - first).as_secs_f64(),
        (n - 1) as f64 / (last - first).as_secs_f64(),
        calls as f64 / n as f64
    );

    // Idle with every blob processed: the scans back off to 10 s, then count.
    std::thread::sleep(Duration::from_secs(30));
    let [calls, scans] = host.metrics([BLOB_CALLS, SCANS]);
    std::thread::sleep(idle);
    let [calls_after, scans_after] = host.metrics([BLOB_CALLS, SCANS]);
    let minutes = idle.as_secs_f64() / 60.0;
    println!(
        "idle, {n} processed blobs: {:.1} blob calls a minute, {:.1} scans a minute, {:.2} \
         calls per scan (over {} s)",
        (calls_after - calls) as f64 / minutes,
        (scans_after - scans) as f64 / minutes,
        (calls_after - calls) as f64 / (scans_after - scans) as f64,
        idle.as_secs()
    );
    assert_eq!(host.count(is_run), n, "a blob ran twice");
    host.terminate();

    // Restart: the receipts listed once, no blob run again.
    let started = Instant::now();
    let mut host = Host::start(root.path());
    let [calls, scans] = wait_scans(&host, 3);
    println!(
        "restart with {n} processed blobs: {calls} blob calls until the end of scan {scans} \
         ({:.1} s after the start), {} blobs run again",
        started.elapsed().as_secs_f64(),
        host.count(is_run)
    );
    rt.block_on(storage.blobs.put(CONTAINER, "new.txt", b"x".to_vec()))
        .unwrap();
    host.wait(|l| l.contains(" b new.txt"), 120);
    assert_eq!(host.count(is_run), 0, "an old blob ran again");
}
