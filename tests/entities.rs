//! Durable entities on the real host and Azurite: the counter of seed 003,
//! signals applied exactly once across a SIGKILL and across two hosts, calls
//! from orchestrations that replay without sending again, critical sections
//! (locks), bad input.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::time::Duration;

use azurite::Azurite;
use durable_support::{HOST_TOML, finished, project};
use serde_json::{Value, json};
use support::{client, poll};

/// Leases last 30 s and messages stay hidden 5 s: a dead host's work resumes within that.
const RECOVERY: Duration = Duration::from_secs(150);
const API: &str = "/runtime/webhooks/durabletask";

/// The counter's value over the management API; None before it has one.
fn value(host: &support::Host, key: &str) -> Option<i64> {
    let r = client()
        .get(host.url(&format!("{API}/entities/counter/{key}")))
        .send()
        .unwrap();
    match r.status().as_u16() {
        200 => Some(r.json::<i64>().unwrap()),
        404 => None,
        other => panic!("GET entity: {other} {}", r.text().unwrap()),
    }
}

fn reaches(host: &support::Host, key: &str, want: i64) {
    let end = std::time::Instant::now() + RECOVERY;
    loop {
        let now = value(host, key);
        if now == Some(want) {
            return;
        }
        assert!(
            std::time::Instant::now() < end,
            "counter '{key}' is {now:?} after {RECOVERY:?}, not {want}\n--- host:\n{}",
            host.output()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn signal(host: &support::Host, name: &str, key: &str, op: &str, input: &str) -> (u16, String) {
    let r = client()
        .post(host.url(&format!("{API}/entities/{name}/{key}?op={op}")))
        .body(input.to_string())
        .send()
        .unwrap();
    (r.status().as_u16(), r.text().unwrap())
}

fn start(host: &support::Host, orchestrator: &str, input: Value) -> String {
    let r = client()
        .post(host.url(&format!("{API}/orchestrators/{orchestrator}")))
        .json(&input)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

fn output_of(host: &support::Host, id: &str) -> Value {
    let done = finished(&host.url(&format!("{API}/instances/{id}")), RECOVERY);
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    done["output"].clone()
}

#[test]
fn counter_seed_flow() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter"], "");
    let host = p.start(&[]);

    // The demo script of the seed, against this host.
    let out = std::process::Command::new(support::repo().join("functions/counter/demo.sh"))
        .env("FNHOST_URL", &host.base)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with(
        "Starting entity operations demo - 5 orchestrations\n\
         === Direct Entity Operations ===\n\
         Signaling entity 'my-counter' to add 100\n\
         Signaling entity 'my-counter' to subtract 25\n"
    ));
    for i in 1..=5 {
        let line = format!(
            "Orchestration completed successfully with result: \"Counter 'my-counter-orch-{i}' final value: 12\""
        );
        assert!(text.contains(&line), "{text}");
    }
    // The client function signalled before answering: the value is there.
    let r = client()
        .get(host.url("/api/counter/my-counter"))
        .send()
        .unwrap();
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"key": "my-counter", "value": 75})
    );
    assert_eq!(value(&host, "my-counter"), Some(75));

    // Listing, with and without state; by time.
    let list: Value = client()
        .get(host.url(&format!("{API}/entities/counter?fetchState=true")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 6, "{list:?}");
    assert!(list.iter().any(
        |e| e["entityId"] == json!({"name": "counter", "key": "my-counter"}) && e["state"] == 75
    ));
    let later = "2999-01-01T00:00:00Z";
    let none: Value = client()
        .get(host.url(&format!(
            "{API}/entities/counter?lastOperationTimeFrom={later}"
        )))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(none, json!([]));
    let page = client()
        .get(host.url(&format!("{API}/entities/counter?top=4")))
        .send()
        .unwrap();
    assert!(page.headers().contains_key("x-ms-continuation-token"));
    assert_eq!(page.json::<Value>().unwrap().as_array().unwrap().len(), 4);
    // Entities are not orchestration instances.
    let instances: Value = client()
        .get(host.url(&format!("{API}/instances")))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(instances.as_array().unwrap().len(), 5, "{instances}");

    // Bad input: clear errors, nothing stuck.
    let (code, body) = signal(&host, "nosuch", "k", "add", "1");
    assert_eq!(
        (code, body.contains("no entity function named 'nosuch'")),
        (400, true),
        "{body}"
    );
    let (code, body) = signal(&host, "counter", "my-counter", "add", "{not json");
    assert_eq!(code, 400, "{body}");
    let (code, _) = signal(&host, "counter", "my-counter", "", "1");
    assert_eq!(code, 400);
    assert_eq!(signal(&host, "counter", "my-counter", "bogus", "1").0, 202);
    assert_eq!(
        signal(&host, "counter", "my-counter", "add", "\"ten\"").0,
        202
    );
    assert_eq!(signal(&host, "counter", "my-counter", "add", "5").0, 202);
    reaches(&host, "my-counter", 80);
    assert!(
        host.output()
            .contains("operation 'bogus' failed: counter has no operation 'bogus'")
    );

    // Delete: gone, then a new life from 0.
    let r = client()
        .delete(host.url(&format!("{API}/entities/counter/my-counter")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(value(&host, "my-counter"), None);
    assert_eq!(signal(&host, "counter", "my-counter", "add", "3").0, 202);
    reaches(&host, "my-counter", 3);
}

#[test]
fn signals_are_applied_exactly_once_across_a_sigkill() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    let mut first = p.start(&[]);
    // Orchestrations of 50 signals each start one after another until the
    // kill. Their signals' ids are derived, so a signal sent again (an
    // episode repeated after the kill) or delivered again (a queue message
    // not deleted before the kill) is applied once.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let starts = first.url(&format!("{API}/orchestrators/SignalMany"));
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..200 {
                let r = client()
                    .post(&starts)
                    .json(&json!({"key": "sum", "count": 50}))
                    .send();
                if r.is_err() || stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
            }
        });
        poll("a few hundred signals to be applied", RECOVERY, || {
            value(&first, "sum").filter(|v| *v >= 300)
        });
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        first.kill();
    });

    // Every SignalMany instance that exists finishes, and its 50 signals
    // count once. That includes one whose start was cut off by the kill
    // after its signals went out: the queued copy of its start (60 s after
    // it) starts it on the new host, and its replay's signals are repeats.
    let killed = std::time::Instant::now();
    let second = p.start(&[]);
    let instances = || -> Vec<String> {
        let list: Value = client()
            .get(second.url(&format!("{API}/instances?top=1000")))
            .send()
            .unwrap()
            .json()
            .unwrap();
        list.as_array()
            .unwrap()
            .iter()
            .map(|i| i["instanceId"].as_str().unwrap().to_string())
            .collect()
    };
    let ids = instances();
    assert!(ids.len() < 200, "the kill came too late to test anything");
    for id in &ids {
        assert_eq!(output_of(&second, id), 50);
    }
    while killed.elapsed() < Duration::from_secs(70) {
        std::thread::sleep(Duration::from_millis(500));
    }
    let ids = instances();
    for id in &ids {
        assert_eq!(output_of(&second, id), 50);
    }
    let total = 50 * ids.len() as i64;
    reaches(&second, "sum", total);
    // Messages the dead host had taken came back after their visibility
    // timeout (5 s here) and the recovery window is over: past them, the
    // sum must still be exact. (A wait, not a poll: what is checked is that
    // nothing more happens.)
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(value(&second, "sum"), Some(total));
    assert_eq!(instances().len(), ids.len());

    // 1,000 concurrent signals from HTTP clients: each 202 is one operation.
    let accepted = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..20 {
            s.spawn(|| {
                for _ in 0..50 {
                    if signal(&second, "counter", "sum", "add", "1").0 == 202 {
                        accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            });
        }
    });
    assert_eq!(accepted.into_inner(), 1000);
    reaches(&second, "sum", total + 1000);
}

/// Send `ops` (control messages) packed in one queue message, as a host's
/// outbox sends them.
fn send_packed(azurite: &Azurite, instance: &str, ops: &[Value]) {
    let packed = json!({ "messages": ops }).to_string();
    let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
    let hub = host::durable::hub::Hub::new("TestHub", 4, storage.clone());
    let queue = hub.control_queue(hub.partition_of(instance));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        storage
            .queues
            .send(&queue, &packed, Duration::ZERO)
            .await
            .unwrap();
    });
}

#[test]
fn a_copy_delivered_after_thousands_of_operations_is_applied_once() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    let host = p.start(&[]);
    let key = "late-copies";
    let instance = format!("@counter@{key}");
    let add = |id: &str, n: i64| {
        json!({
            "instance_id": instance,
            "execution_id": null,
            "event": {"Entity": {"operation": "add", "input": n.to_string()}},
            "id": id,
        })
    };
    // A signal from an orchestration, one from another host's clients, and
    // one whose id names no stream.
    let originals = [
        add("orch-x:exec-1:7", 1_000_000),
        add("c0ffee:1", 100_000),
        add("4f1cdeadbeef", 10_000),
    ];
    send_packed(&azurite, &instance, &originals);
    reaches(&host, key, 1_110_000);

    // 2,500 operations later (more than the 2,000 ids an entity once kept)...
    let id = start(&host, "SignalMany", json!({"key": key, "count": 2500}));
    assert_eq!(output_of(&host, &id), 2500);
    reaches(&host, key, 1_112_500);

    // ...the same three come again, as after a crash between the entity's
    // write and the message's delete, with a new signal behind them in the
    // same message: they run in one episode, so once the new one counts the
    // copies have been seen, and skipped.
    let mut again = originals.to_vec();
    again.push(add("c0ffee:2", 1));
    send_packed(&azurite, &instance, &again);
    reaches(&host, key, 1_112_501);
    assert_eq!(value(&host, key), Some(1_112_501));
}

/// Rows of the partitions' signal logs other than their fences.
fn logged_rows(azurite: &Azurite) -> usize {
    let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let mut n = 0;
        for p in 0..4 {
            let rows = storage
                .tables
                .query_partition("TestHubPartitions", &format!("signals-{p:02}"))
                .await
                .unwrap();
            n += rows.iter().filter(|r| r.row_key != "fence").count();
        }
        n
    })
}

#[test]
fn acknowledged_signals_survive_a_sigkill_before_they_are_applied() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    let mut first = p.start(&[]);
    let items = |host: &support::Host| -> Vec<String> {
        let r = client()
            .get(host.url(&format!("{API}/entities/fragile/logged")))
            .send()
            .unwrap();
        if r.status() != 200 {
            return Vec::new();
        }
        r.json().unwrap()
    };
    // Until the host has read its partitions' signal logs (just after it
    // starts), signals take the older way: wait for the log to take one.
    poll("the signal log to store a signal", RECOVERY, || {
        assert_eq!(signal(&first, "fragile", "logged", "get", "null").0, 202);
        let metrics = client()
            .get(first.url("/admin/metrics"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("fnhost_durable_logged_signals_total "))
            .and_then(|n| n.trim().parse::<u64>().ok())
            .filter(|n| *n > 0)
    });
    // The entity is busy for 15 s with its next operation, and operations
    // run in order: those after it are not applied before it ends...
    assert_eq!(signal(&first, "fragile", "logged", "pause", "15000").0, 202);
    let paused = std::time::Instant::now();
    // ...while 200 signals from 10 clients are acknowledged: each 202 means
    // stored in the signal log of the entity's partition, not yet applied.
    std::thread::scope(|s| {
        for t in 0..10 {
            let first = &first;
            s.spawn(move || {
                for i in 0..20 {
                    let (code, body) = signal(
                        first,
                        "fragile",
                        "logged",
                        "append",
                        &format!("\"{t}-{i}\""),
                    );
                    assert_eq!(code, 202, "{body}");
                }
            });
        }
    });
    assert!(logged_rows(&azurite) >= 200);
    first.kill();
    assert!(
        paused.elapsed() < Duration::from_secs(14),
        "the signals took longer than the pause: nothing is tested"
    );

    // The partition's next owner applies the log: the pause again, then
    // every append once.
    let second = p.start(&[]);
    let got = poll("the 200 logged signals to be applied", RECOVERY, || {
        let got = items(&second);
        (got.len() >= 200).then_some(got)
    });
    let mut want: Vec<String> = (0..10)
        .flat_map(|t| (0..20).map(move |i| format!("{t}-{i}")))
        .collect();
    let mut sorted = got.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "each acknowledged signal once");
    assert!(second.output().contains("signal(s) in the log to apply"));
    // Applied rows are deleted; nothing else comes.
    poll("the signal logs to be emptied", RECOVERY, || {
        (logged_rows(&azurite) == 0).then_some(())
    });
    assert_eq!(items(&second).len(), 200);
}

#[test]
fn two_hosts_share_entities_and_calls_replay_without_sending_again() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    // No extended sessions: every episode replays from the history.
    p.write(
        "host.toml",
        &HOST_TOML.replace(
            "[extensions.durableTask]\n",
            "[extensions.durableTask]\nextendedSessionsEnabled = false\n",
        ),
    );
    let a = p.start(&[]);
    let b = p.start(&[]);
    poll("the hosts to split the partitions", RECOVERY, || {
        let owned = |h: &support::Host| {
            client()
                .get(h.url("/admin/metrics"))
                .send()
                .unwrap()
                .text()
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("fnhost_partitions_owned "))
                .and_then(|n| n.trim().parse::<u32>().ok())
                .unwrap_or(0)
        };
        (owned(&a) == 2 && owned(&b) == 2).then_some(())
    });
    // 20 counters, 10 signals each, half through each host: whichever host
    // owns a counter, every signal counts once.
    std::thread::scope(|s| {
        for host in [&a, &b] {
            s.spawn(move || {
                for k in 0..20 {
                    for _ in 0..5 {
                        let (code, body) = signal(host, "counter", &format!("c{k}"), "add", "1");
                        assert_eq!(code, 202, "{body}");
                    }
                }
            });
        }
    });
    for k in 0..20 {
        reaches(&a, &format!("c{k}"), 10);
    }

    // A call, a timer (the next episode replays the call), a second call:
    // the add ran once.
    let id = start(&b, "CallThenWait", json!("replayed"));
    assert_eq!(output_of(&b, &id), json!([1, 1]));
    assert_eq!(value(&a, "replayed"), Some(1));
    let id = start(&a, "counter_orchestrator", json!("from-a"));
    assert_eq!(output_of(&a, &id), "Counter 'from-a' final value: 12");

    // Failures come back to the caller; the entity keeps serving.
    let id = start(&a, "CallMissing", json!(null));
    let out = output_of(&a, &id);
    assert!(
        out[0]
            .as_str()
            .unwrap()
            .contains("no entity function named 'nosuchentity'"),
        "{out}"
    );
    assert!(
        out[1].as_str().unwrap().contains("fail on purpose"),
        "{out}"
    );
    assert_eq!(
        out[2], "after",
        "the failed operation's change was rolled back: {out}"
    );

    // An operation that traps fails alone; the others of its batch apply.
    for (op, input) in [("append", "\"x\""), ("trap", "null"), ("append", "\"y\"")] {
        assert_eq!(signal(&b, "fragile", "t", op, input).0, 202);
    }
    poll("Fragile to hold x and y", RECOVERY, || {
        let r = client()
            .get(b.url(&format!("{API}/entities/fragile/t")))
            .send()
            .unwrap();
        (r.status() == 200 && r.json::<Value>().unwrap() == json!(["x", "y"])).then_some(())
    });
}

#[test]
fn entity_state_survives_a_restart() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter"], "");
    let mut first = p.start(&[]);
    assert_eq!(
        client()
            .post(first.url("/api/counter/kept"))
            .send()
            .unwrap()
            .status(),
        202
    );
    reaches(&first, "kept", 75);
    assert!(first.terminate(Duration::from_secs(30)).success());
    let second = p.start(&[]);
    assert_eq!(value(&second, "kept"), Some(75));
    assert_eq!(signal(&second, "counter", "kept", "subtract", "5").0, 202);
    reaches(&second, "kept", 70);
}

fn status_of(host: &support::Host, id: &str) -> Value {
    client()
        .get(host.url(&format!("{API}/instances/{id}")))
        .send()
        .unwrap()
        .json()
        .unwrap()
}

#[test]
fn critical_sections_serialize_transfers_and_end_with_their_orchestration() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    let host = p.start(&[]);
    let (code, body) = signal(&host, "counter", "a", "add", "100");
    assert_eq!(code, 202, "{body}");
    reaches(&host, "a", 100);

    // 8 transfers at once, each reading both counters and writing them back,
    // and a signal from outside among them: with the locks nothing is lost.
    let transfer = json!({"from": "a", "to": "b", "amount": 1});
    let ids: Vec<String> = (0..8)
        .map(|_| start(&host, "Transfer", transfer.clone()))
        .collect();
    let (code, body) = signal(&host, "counter", "a", "add", "1000");
    assert_eq!(code, 202, "{body}");
    let mut read: Vec<i64> = ids
        .iter()
        .map(|id| output_of(&host, id)[1].as_i64().unwrap())
        .collect();
    read.sort_unstable();
    // Each transfer saw the one before it: b read 0, 1, ..., 7.
    assert_eq!(read, (0..8).collect::<Vec<_>>());
    reaches(&host, "a", 1092);
    assert_eq!(value(&host, "b"), Some(8));

    // An orchestration that fails inside its critical section releases it.
    let failed = start(&host, "LockThenFail", json!("a"));
    let done = finished(&host.url(&format!("{API}/instances/{failed}")), RECOVERY);
    assert_eq!(done["runtimeStatus"], "Failed", "{done}");
    let after = start(&host, "Transfer", transfer.clone());
    assert_eq!(output_of(&host, &after), json!([1092, 8]));

    // Critical sections do not nest.
    let nested = start(&host, "NestedLock", json!("n"));
    let text = output_of(&host, &nested);
    assert!(
        text.as_str().unwrap().contains("LockingRulesViolation"),
        "{text}"
    );

    // One that holds the locks makes others wait until it is terminated.
    let holder = start(&host, "LockThenWait", json!(["a", "b"]));
    poll("LockThenWait to hold its locks", RECOVERY, || {
        (status_of(&host, &holder)["customStatus"] == "locked").then_some(())
    });
    let r = client()
        .delete(host.url(&format!("{API}/entities/counter/a")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 409, "a locked entity is not deleted");
    let waiting = start(&host, "Transfer", transfer);
    let (code, body) = signal(&host, "counter", "a", "add", "5");
    assert_eq!(code, 202, "{body}");
    assert_eq!(status_of(&host, &waiting)["runtimeStatus"], "Running");
    assert_eq!(
        value(&host, "a"),
        Some(1091),
        "the signal waits for the lock"
    );
    let r = client()
        .post(host.url(&format!("{API}/instances/{holder}/terminate?reason=done")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(output_of(&host, &waiting), json!([1091, 9]));
    reaches(&host, "a", 1095);
    assert_eq!(value(&host, "b"), Some(10));
}

/// POST entities: Durable Functions' clean-entity-storage.
fn clean(host: &support::Host, body: &str) -> (u16, Value) {
    let r = client()
        .post(host.url(&format!("{API}/entities")))
        .body(body.to_string())
        .send()
        .unwrap();
    let code = r.status().as_u16();
    (code, r.json().unwrap_or(Value::Null))
}

#[test]
fn clean_entity_storage_removes_empty_entities_and_releases_orphaned_locks() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    // No idle time required before clean-up (Durable Functions' default is 30 minutes).
    p.write(
        "host.toml",
        &HOST_TOML.replace(
            "[extensions.durableTask]\n",
            "[extensions.durableTask]\nentityMessageReorderWindowInMinutes = 0\n",
        ),
    );
    let host = p.start(&[]);

    // An entity whose only operation failed has a record but no state.
    let (code, body) = signal(&host, "Fragile", "empty", "fail", "");
    assert_eq!(code, 202, "{body}");
    let (code, body) = signal(&host, "counter", "kept", "add", "4");
    assert_eq!(code, 202, "{body}");
    reaches(&host, "kept", 4);
    let only_empty = r#"{"removeEmptyEntities": true, "releaseOrphanedLocks": false}"#;
    poll("the empty entity to be removed", RECOVERY, || {
        let (code, body) = clean(&host, only_empty);
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["numberOfOrphanedLocksRemoved"], 0, "{body}");
        (body["numberOfEmptyEntitiesRemoved"] == 1).then_some(())
    });
    assert_eq!(
        clean(&host, only_empty).1["numberOfEmptyEntitiesRemoved"],
        0
    );
    assert_eq!(value(&host, "kept"), Some(4), "an entity with state stays");

    // A lock whose orchestration was purged while it held it: operations
    // wait behind it until clean-up releases it.
    let holder = start(&host, "LockThenWait", json!(["orphan"]));
    poll("LockThenWait to hold its lock", RECOVERY, || {
        (status_of(&host, &holder)["customStatus"] == "locked").then_some(())
    });
    let r = client()
        .delete(host.url(&format!("{API}/instances/{holder}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let (code, body) = signal(&host, "counter", "orphan", "add", "3");
    assert_eq!(code, 202, "{body}");
    let (code, body) = clean(
        &host,
        r#"{"releaseOrphanedLocks": true, "removeEmptyEntities": false}"#,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["numberOfOrphanedLocksRemoved"], 1, "{body}");
    reaches(&host, "orphan", 3);

    // The command line does the same, and bad bodies are refused.
    let out = std::process::Command::new(support::host_bin())
        .args(["durable", "clean-entity-storage", "--script-root"])
        .arg(p.root())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("Removed 0 empty entities, released 0 orphaned lock(s)."),
        "{text}"
    );
    assert_eq!(clean(&host, "[1]").0, 400);
    assert_eq!(clean(&host, r#"{"removeEmptyEntities": "yes"}"#).0, 400);
}

#[test]
fn a_sigkill_in_the_middle_of_critical_sections_leaves_no_entity_locked() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    let mut first = p.start(&[]);
    let transfer = json!({"from": "x", "to": "y", "amount": 1});
    let ids: Vec<String> = (0..10)
        .map(|_| start(&first, "Transfer", transfer.clone()))
        .collect();
    // Killed while the others wait for, hold or release their locks.
    poll("a first transfer to finish", RECOVERY, || {
        ids.iter()
            .any(|id| status_of(&first, id)["runtimeStatus"] == "Completed")
            .then_some(())
    });
    first.kill();

    let second = p.start(&[]);
    let restarted = std::time::Instant::now();
    let mut read: Vec<i64> = ids
        .iter()
        .map(|id| output_of(&second, id)[1].as_i64().unwrap())
        .collect();
    eprintln!(
        "all 10 transfers finished {:?} after the restart",
        restarted.elapsed()
    );
    read.sort_unstable();
    assert_eq!(read, (0..10).collect::<Vec<_>>());
    assert_eq!(value(&second, "x"), Some(-10));
    assert_eq!(value(&second, "y"), Some(10));
    // Nothing is left locked: an outside signal applies.
    let (code, body) = signal(&second, "counter", "x", "add", "10");
    assert_eq!(code, 202, "{body}");
    reaches(&second, "x", 0);
}

#[test]
fn an_entity_written_as_a_type_has_its_methods_as_operations_and_large_states_use_blobs() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["counter", "entity_fixtures"], "");
    let host = p.start(&[]);
    let account = |host: &support::Host| {
        let r = client()
            .get(host.url(&format!("{API}/entities/Account/acc")))
            .send()
            .unwrap();
        (
            r.status().as_u16(),
            r.json::<Value>().unwrap_or(Value::Null),
        )
    };
    // deposit 50; withdraw 80 fails and changes nothing; withdraw 20; an
    // unknown operation fails alone; report signals the counter with 30.
    for (op, input) in [
        ("deposit", "50"),
        ("withdraw", "80"),
        ("Withdraw", "20"),
        ("nosuchop", ""),
        ("report", "\"from-acc\""),
    ] {
        let (code, body) = signal(&host, "Account", "acc", op, input);
        assert_eq!(code, 202, "{op}: {body}");
    }
    reaches(&host, "from-acc", 30);
    assert_eq!(account(&host), (200, json!({"balance": 30})));
    // `delete`, which every entity type has, removes the state.
    let (code, body) = signal(&host, "Account", "acc", "delete", "");
    assert_eq!(code, 202, "{body}");
    poll("the account's state to be deleted", RECOVERY, || {
        (account(&host).0 == 404).then_some(())
    });

    // A state (and a signal) over the table and queue size limits go
    // through blobs, and come back whole.
    let big = "x".repeat(100_000);
    let (code, body) = signal(&host, "Fragile", "big", "append", &json!(big).to_string());
    assert_eq!(code, 202, "{body}");
    let (code, body) = signal(&host, "Fragile", "big", "append", "\"end\"");
    assert_eq!(code, 202, "{body}");
    let state: Value = poll("the large state", RECOVERY, || {
        let r = client()
            .get(host.url(&format!("{API}/entities/Fragile/big")))
            .send()
            .unwrap();
        let v: Value = r.json().unwrap_or(Value::Null);
        (v.as_array().map(Vec::len) == Some(2)).then_some(v)
    });
    assert_eq!(state, json!([big, "end"]));

    // Each write of a large state makes a new blob; the one it replaces is
    // deleted at the first write 10 s later (a reader that read the row just
    // before may still want it). So the entity keeps two, not one per write.
    let blobs = || {
        let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
        let prefix: String = "@fragile@big".bytes().map(|b| format!("{b:02x}")).collect();
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            storage
                .blobs
                .list("testhub-largemessages", &format!("{prefix}/"))
                .await
                .unwrap()
                .len()
        })
    };
    for (i, item) in ["a", "b", "c"].iter().enumerate() {
        // A wait, not a poll: the blobs' retention is what is tested.
        std::thread::sleep(Duration::from_secs(11));
        let (code, body) = signal(&host, "Fragile", "big", "append", &json!(item).to_string());
        assert_eq!(code, 202, "{body}");
        poll("the appended item", RECOVERY, || {
            let r = client()
                .get(host.url(&format!("{API}/entities/Fragile/big")))
                .send()
                .unwrap();
            let v: Value = r.json().unwrap_or(Value::Null);
            (v.as_array().map(Vec::len) == Some(3 + i)).then_some(())
        });
    }
    assert_eq!(blobs(), 2, "the large states' blobs are not deleted");
}
