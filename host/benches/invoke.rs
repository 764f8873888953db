//! Per-invocation cost of the `hello` sample, in process: a fresh Store and
//! instance from the pooling allocator, the call, and the teardown.
//!
//! Run: `./dev bench` (or build hello with `host build`, then
//! `cargo bench -p host --bench invoke`).

use std::path::Path;
use std::time::{Duration, Instant};

use host::runtime::{HttpRequest, Invocation, Runtime, RuntimeConfig};

fn main() -> anyhow::Result<()> {
    let wasm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../functions/hello/hello.wasm");
    anyhow::ensure!(
        wasm.exists(),
        "{} is missing: run `host build` first",
        wasm.display()
    );
    let cache = tempfile::tempdir()?;
    let runtime = Runtime::new(RuntimeConfig {
        function_timeout: Duration::from_secs(300),
        max_memory_bytes: 256 << 20,
        max_instances: 1000,
        cache_dir: cache.path().to_path_buf(),
        env: vec![("GREETING".into(), "Hello".into())],
    })?;
    let started = Instant::now();
    let component = runtime.load(&wasm)?;
    let cold_load = started.elapsed();
    let started = Instant::now();
    let _warm = runtime.load(&wasm)?;
    let warm_load = started.elapsed();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let invocation = Invocation {
        function: "hello".into(),
        id: "bench".into(),
    };
    let request = HttpRequest {
        method: "GET".into(),
        url: "http://localhost:7071/api/hello".into(),
        path: "/api/hello".into(),
        query: vec![],
        params: vec![],
        headers: vec![],
        body: vec![],
    };
    let mut samples = Vec::with_capacity(20_000);
    rt.block_on(async {
        for i in 0..22_000 {
            let t = Instant::now();
            let r = runtime
                .invoke_http(&component, &invocation, request.clone())
                .await?;
            let took = t.elapsed();
            assert_eq!(r.status, 200);
            if i >= 2_000 {
                samples.push(took);
            }
        }
        anyhow::Ok(())
    })?;
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p) as usize];
    let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
    println!("hello.wasm: {} bytes", std::fs::metadata(&wasm)?.len());
    println!("load, cold (compile + cache write): {cold_load:?}");
    println!("load, warm (cache hit):             {warm_load:?}");
    println!(
        "invocation (new Store + instance + call + drop), {} runs: mean {:?}, p50 {:?}, p99 {:?}",
        samples.len(),
        mean,
        pct(0.50),
        pct(0.99)
    );
    Ok(())
}
