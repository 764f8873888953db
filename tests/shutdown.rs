//! Ctrl+C / SIGTERM: stop accepting, let in-flight invocations finish, exit 0.

mod support;

use std::time::Duration;

use support::{Project, get};

#[test]
fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let p = Project::with(&["misbehave"]);
    let mut host = p.start(&[]);
    let in_flight = std::thread::spawn({
        let url = host.url("/api/slow?ms=2000");
        move || get(&url)
    });
    host.wait_for("Executing 'Functions.slow'", Duration::from_secs(30));
    let status = host.terminate(Duration::from_secs(30));
    assert_eq!(
        in_flight.join().unwrap(),
        (200, "slept 2000 ms".to_string())
    );
    assert!(status.success(), "{status}: {}", host.output());
    let out = host.output();
    assert!(out.contains("Stopping host"), "{out}");
    assert!(
        out.contains("Host stopped: every invocation in flight finished."),
        "{out}"
    );
}
