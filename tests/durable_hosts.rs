//! Hosts that die and hosts that share a hub: nothing acknowledged is lost.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use azurite::Azurite;
use durable_support::{finished, project};
use serde_json::{Value, json};
use support::{client, poll};

/// Leases last 30 s and messages stay hidden 5-10 s: a dead host's work resumes within that.
const RECOVERY: Duration = Duration::from_secs(150);
const ACTIVITY_DONE: &str = "Executed 'Functions.process_chunk_activity' (Succeeded";

fn start_fan_out(host: &support::Host, chunks: u32) -> String {
    let r = client()
        .post(host.url("/api/starter_function"))
        .json(&json!({"total_chunks": chunks}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn assert_all_chunks(done: &Value, chunks: u64) {
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    let results = done["output"]["results"].as_array().unwrap();
    let ids: BTreeSet<u64> = results
        .iter()
        .map(|r| r["chunk_id"].as_u64().unwrap())
        .collect();
    assert_eq!(results.len() as u64, chunks);
    assert_eq!(ids, (0..chunks).collect());
}

#[test]
fn a_host_killed_mid_fan_out_is_finished_by_its_restart() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["fan_out"], "");
    let mut first = p.start(&[]);
    let id = start_fan_out(&first, 100);
    poll("some chunks to be processed", RECOVERY, || {
        (first.count(ACTIVITY_DONE) >= 10).then_some(())
    });
    first.kill();
    assert!(
        first.count(ACTIVITY_DONE) < 100,
        "the kill came too late to test anything"
    );

    let restarted = std::time::Instant::now();
    let second = p.start(&[]);
    let url = second.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    let done = finished(&url, RECOVERY);
    println!("finished {:?} after the restart", restarted.elapsed());
    // Each chunk's result once, though some ran twice: the activities the
    // first host was running (locally, or from the work-item queue) ran again.
    assert_all_chunks(&done, 100);
    assert!(
        first.count(ACTIVITY_DONE) + second.count(ACTIVITY_DONE) >= 100,
        "{}",
        second.output()
    );
}

#[test]
fn two_hosts_share_a_hub_and_the_survivor_finishes_everything() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["fan_out"], "");
    let mut a = p.start(&[]);
    let b = p.start(&[]);
    // Activities run on the host that owns their instance: split first.
    poll("the hosts to split the partitions", RECOVERY, || {
        (partitions(&a) == 2 && partitions(&b) == 2).then_some(())
    });
    let ids: Vec<String> = (0..8).map(|_| start_fan_out(&a, 25)).collect();
    poll("both hosts to run activities", RECOVERY, || {
        (a.count(ACTIVITY_DONE) > 0 && b.count(ACTIVITY_DONE) > 0).then_some(())
    });
    a.kill();
    for id in &ids {
        let done = finished(
            &b.url(&format!("/runtime/webhooks/durabletask/instances/{id}")),
            RECOVERY,
        );
        assert_all_chunks(&done, 25);
    }
}

#[test]
fn two_hosts_share_one_big_fan_out() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["fan_out"], "");
    let a = p.start(&[]);
    let b = p.start(&[]);
    poll("the hosts to split the partitions", RECOVERY, || {
        (partitions(&a) == 2 && partitions(&b) == 2).then_some(())
    });
    // One instance, so one owner: the activities beyond its free local slots
    // go to the work-item queue, where the other host takes its share.
    let id = start_fan_out(&a, 1000);
    let url = a.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    assert_all_chunks(&finished(&url, RECOVERY), 1000);
    let (ran_a, ran_b) = (a.count(ACTIVITY_DONE), b.count(ACTIVITY_DONE));
    assert!(ran_a + ran_b >= 1000, "{ran_a} + {ran_b} activities ran");
    assert!(
        ran_a > 0 && ran_b > 0,
        "one host ran every activity: {ran_a} and {ran_b}"
    );
}

/// Partitions this host holds, from its /admin/metrics.
fn partitions(host: &support::Host) -> usize {
    let text = client()
        .get(host.url("/admin/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("fnhost_partitions_owned "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn hosts_split_the_partitions_and_a_stopping_host_hands_them_over_at_once() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["fan_out"], "");
    let mut a = p.start(&[]);
    poll("the first host to hold all 4 partitions", RECOVERY, || {
        (partitions(&a) == 4).then_some(())
    });
    let b = p.start(&[]);
    poll(
        "the hosts to hold 2 partitions each",
        Duration::from_secs(40),
        || (partitions(&a) == 2 && partitions(&b) == 2).then_some(()),
    );
    // Work still flows while split.
    let id = start_fan_out(&b, 10);
    assert_all_chunks(
        &finished(
            &b.url(&format!("/runtime/webhooks/durabletask/instances/{id}")),
            RECOVERY,
        ),
        10,
    );

    // SIGTERM: a releases its leases, so b takes them at its next renewal
    // (10 s), without waiting for them to expire (30 s).
    let stopped = std::time::Instant::now();
    assert!(
        a.terminate(Duration::from_secs(30)).success(),
        "{}",
        a.output()
    );
    poll(
        "the survivor to hold all 4 partitions",
        Duration::from_secs(60),
        || (partitions(&b) == 4).then_some(()),
    );
    let took = stopped.elapsed();
    assert!(
        took < Duration::from_secs(25),
        "handover took {took:?}: the leases were not released"
    );
}

/// A second `host start` on a port already in use exits with a clear error
/// before it takes any durable work, so the first host's fan-out does not wait
/// for messages the second one took and hid.
#[test]
fn a_second_host_on_a_taken_port_exits_before_taking_durable_work() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["fan_out"], "");
    let first = p.start(&[]);
    let id = start_fan_out(&first, 100);
    let port = first.base.rsplit(':').next().unwrap().to_string();
    let out = std::process::Command::new(support::host_bin())
        .args(["start", "--port", &port, "--script-root"])
        .arg(p.root())
        .arg("--cache-dir")
        .arg(support::repo().join("target").join("test-host-cache"))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains(&format!("Port {port} is unavailable")),
        "{text}"
    );
    assert!(
        !text.contains("partition") && !text.contains("Executed"),
        "took durable work before exiting: {text}"
    );
    // Nothing is hidden in the second host's name: the fan-out finishes at its pace.
    let url = first.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    let done = finished(&url, Duration::from_secs(60));
    assert_all_chunks(&done, 100);
}
