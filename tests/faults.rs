//! A guest that traps, loops forever or exhausts its memory fails only its
//! own invocation: HTTP 500 with the invocation id, and the host keeps serving.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::{Project, get};

#[test]
fn trap_timeout_and_oom_are_500s_and_the_host_keeps_serving() {
    let p = Project::with(&["hello", "misbehave"]);
    p.write(
        "host.toml",
        "functionTimeout = \"00:00:02\"\n[wasm]\nmaxMemoryMB = 64\n",
    );
    let host = p.start(&[]);

    let failure = |path: &str| {
        let (status, body) = get(&host.url(path));
        assert_eq!(status, 500, "{path}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        let id = v["invocationId"].as_str().unwrap().to_string();
        (v["error"].as_str().unwrap().to_string(), id)
    };

    let (error, id) = failure("/api/trap");
    assert!(
        error.contains("function 'trap' failed: the function trapped"),
        "{error}"
    );
    let out = host.output();
    assert!(
        out.contains(&format!("Executed 'Functions.trap' (Failed, Id={id}")),
        "{out}"
    );
    assert!(out.contains("wasm trap:"), "{out}");
    assert!(
        out.contains(&format!("[trap {}] this function always fails", &id[..8])),
        "guest stderr is shown:\n{out}"
    );

    let started = Instant::now();
    let (error, id) = failure("/api/spin");
    let took = started.elapsed();
    assert!(error.contains("ran past functionTimeout (2s)"), "{error}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "stopped after {took:?}"
    );
    assert!(
        host.output()
            .contains(&format!("Executed 'Functions.spin' (Failed, Id={id}"))
    );

    let (error, _) = failure("/api/oom");
    assert!(
        error.contains("exceeded its memory limit of 64 MiB"),
        "{error}"
    );

    // Everything still works, in parallel with a guest that spins.
    let spinning = std::thread::spawn({
        let url = host.url("/api/spin");
        move || get(&url).0
    });
    for _ in 0..20 {
        assert_eq!(get(&host.url("/api/hello?name=x")).0, 200);
    }
    assert_eq!(spinning.join().unwrap(), 500);
}
