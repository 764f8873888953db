//! The durable engine with a fault proxy between the host and Azurite
//! (tests/support/fault_proxy.rs): under 5 % faults on every service the
//! samples finish with the right output, nothing lost or stuck, and the
//! console names what it retried; through a 30 s outage the host keeps
//! serving HTTP, reports the outage once, and finishes everything after it.
//!
//! Each test prints the proxy's seed; `FNHOST_FAULT_SEED=N` replays it.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
#[path = "support/fault_proxy.rs"]
mod fault_proxy;
mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use azurite::Azurite;
use durable_support::{HOST_TOML, finished, status};
use fault_proxy::{Fault, FaultProxy, SERVICES, Service};
use serde_json::{Value, json};
use support::{Host, Project, client, poll};

const API: &str = "/runtime/webhooks/durabletask";
/// Everything of a run finishes within this (under faults a hung request
/// costs 5 s, a lost answer a message's 5 s visibility timeout).
const DEADLINE: Duration = Duration::from_secs(180);
/// `FNHOST_STORAGE_TIMEOUT` of the tests' hosts: a request the proxy hangs
/// costs 5 s, not the default 30 (and a loaded CI box still answers within it).
const ATTEMPT_TIMEOUT: &str = "5";

/// A project with `folders`, whose storage is `proxy`.
fn project(proxy: &FaultProxy, folders: &[&str]) -> Project {
    let p = Project::with(folders);
    p.write("host.toml", HOST_TOML);
    p.write(
        "local.settings.toml",
        &format!(
            "[Values]\nAzureWebJobsStorage = \"{}\"\n",
            proxy.connection_string
        ),
    );
    p
}

fn start_host(p: &Project) -> Host {
    p.start_with_env(&[], &[("FNHOST_STORAGE_TIMEOUT", ATTEMPT_TIMEOUT)])
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// POST `path` with `body`; the status URL of the instance it started.
fn start(host: &Host, path: &str, body: Value) -> String {
    let r = client().post(host.url(path)).json(&body).send().unwrap();
    let code = r.status().as_u16();
    let text = r.text().unwrap();
    assert_eq!(
        code,
        202,
        "POST {path}: {text}\n--- host:\n{}",
        host.output()
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    v["statusQueryGetUri"].as_str().unwrap().to_string()
}

/// The output of a finished instance, which must have completed.
fn output(host: &Host, url: &str) -> Value {
    let done = finished(url, DEADLINE);
    assert_eq!(
        done["runtimeStatus"],
        "Completed",
        "{done}\n--- host:\n{}",
        host.output()
    );
    done["output"].clone()
}

fn expected_chain(n: u32) -> String {
    (0..n).fold("start".to_string(), |v, i| format!("A:{v}|{i}"))
}

fn check_fan_out(out: &Value, n: u64) {
    assert_eq!(out["status"], "completed", "{out}");
    let mut ids: Vec<u64> = out["results"]
        .as_array()
        .unwrap()
        .iter()
        .inspect(|r| assert_eq!(r["status"], "success", "{r}"))
        .map(|r| r["chunk_id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..n).collect::<Vec<_>>());
}

/// Every orchestration instance of the hub (entities left out), all pages.
fn instances(host: &Host) -> Vec<Value> {
    let mut all = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut r = client().get(host.url(&format!("{API}/instances?top=100")));
        if let Some(t) = &token {
            r = r.header("x-ms-continuation-token", t);
        }
        let r = r.send().unwrap();
        assert_eq!(r.status(), 200);
        token = r
            .headers()
            .get("x-ms-continuation-token")
            .map(|v| v.to_str().unwrap().to_string());
        let page: Vec<Value> = r.json().unwrap();
        all.extend(
            page.into_iter()
                .filter(|i| !i["instanceId"].as_str().unwrap().starts_with('@')),
        );
        if token.is_none() {
            return all;
        }
    }
}

/// `expected` instances, every one Completed: none lost, none stuck, none extra.
fn all_completed(host: &Host, expected: usize) {
    let list = instances(host);
    let summary: Vec<String> = list
        .iter()
        .map(|i| format!("{} {} {}", i["instanceId"], i["name"], i["runtimeStatus"]))
        .collect();
    assert_eq!(
        list.len(),
        expected,
        "instances of the hub:\n{}",
        summary.join("\n")
    );
    assert!(
        list.iter().all(|i| i["runtimeStatus"] == "Completed"),
        "instances of the hub:\n{}\n--- host:\n{}",
        summary.join("\n"),
        host.output()
    );
}

/// The counter's value over the management API; None before it has one.
fn counter(host: &Host, key: &str) -> Option<i64> {
    let r = client()
        .get(host.url(&format!("{API}/entities/counter/{key}")))
        .send()
        .unwrap();
    match r.status().as_u16() {
        200 => Some(r.json::<i64>().unwrap()),
        _ => None,
    }
}

/// What the console calls the error each fault causes when the host retries it.
fn console_names(fault: Fault) -> &'static [&'static str] {
    match fault {
        Fault::ErrorBefore(503) | Fault::ErrorAfter(503) => &["503 ServerBusy"],
        Fault::ErrorBefore(_) | Fault::ErrorAfter(_) => &["500 InternalError"],
        Fault::HangBefore | Fault::HangAfter => &["no answer within 5 s"],
        Fault::DropBefore | Fault::DropAfter => &[
            "connection closed before message completed",
            "Connection reset by peer",
        ],
        Fault::Delay => &[],
    }
}

/// Rounds of the samples run at once: enough storage calls (a few thousand)
/// for 5 % to fault every kind on every service.
const ROUNDS: usize = 3;

/// One round: a fan-out of 100 (seed 002), a chain of 20, the seeds' flows
/// (000 async HTTP API, 002 with 5 chunks, 003 counter, 004 approval, chaining,
/// the monitor) and six 60-110 KB payloads (through the large-message blobs),
/// each checked; the number of instances it started.
fn round(host: &Host, n: usize) -> usize {
    let fan_out = start(host, "/api/starter_function", json!({"total_chunks": 100}));
    let chain = start(host, &format!("{API}/orchestrators/Chain"), json!(20));
    let seed_fan_out = start(host, "/api/starter_function", json!({"total_chunks": 5}));
    let orch = start(host, "/api/orchestrators/OrchFunction", Value::Null);
    let hello_sequence = start(host, "/api/orchestrators/HelloSequence", Value::Null);
    let escalated = start(
        host,
        "/api/orchestrators/ApprovalWithTimeout",
        json!({"timeout_seconds": 2}),
    );
    let approved = start(
        host,
        "/api/orchestrators/ApprovalWithTimeout",
        json!({"timeout_seconds": 120}),
    );
    let now = now_ms();
    let monitor = start(
        host,
        "/api/orchestrators/Monitor",
        json!({"job_id": format!("job-{n}"), "ready_at_ms": now + 3000, "interval_seconds": 1, "expires_at_ms": now + 120_000}),
    );
    // Payloads over the 45 KB message and 32 K column limits go through blobs.
    let echoes: Vec<(String, String)> = (0..6)
        .map(|k| {
            let big: String = (0..60_000 + 10_000 * k)
                .map(|i| char::from(b'a' + ((i + k) % 26) as u8))
                .collect();
            let url = start(host, &format!("{API}/orchestrators/Echo"), json!(big));
            (url, big)
        })
        .collect();
    // Seed 000: the async HTTP API.
    let r = client()
        .post(host.url("/api/start-operation"))
        .json(&json!({"processing_time": 1}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let operation = r.json::<Value>().unwrap()["operation_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Seed 003: the counter, signalled directly, then by five orchestrations.
    let key = format!("my-counter-{n}");
    let r = client()
        .post(host.url(&format!("/api/counter/{key}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "{}", r.text().unwrap());
    let counter_orchestrations: Vec<_> = (1..=5)
        .map(|i| {
            let key = format!("my-counter-{n}-orch-{i}");
            let url = host.url(&format!("/api/counter_orchestrator/{key}"));
            std::thread::spawn(move || {
                let r = client().post(url).send().unwrap();
                let code = r.status().as_u16();
                let body: Value = r.json().unwrap();
                let out = match code {
                    200 => body,
                    // Not done in 30 s: it says where to look.
                    202 => {
                        finished(body["statusQueryGetUri"].as_str().unwrap(), DEADLINE)["output"]
                            .clone()
                    }
                    _ => panic!("counter_orchestrator {key}: {code} {body}"),
                };
                assert_eq!(out, json!(format!("Counter '{key}' final value: 12")));
            })
        })
        .collect();
    // An HTTP function without storage answers throughout.
    assert_eq!(support::get(&host.url("/api/hello?name=Ada")).0, 200);

    let id = status(&approved).1["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .post(host.url(&format!("{API}/instances/{id}/raiseEvent/Approval")))
        .json(&json!(true))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);

    check_fan_out(&output(host, &fan_out), 100);
    assert_eq!(output(host, &chain), json!(expected_chain(20)));
    check_fan_out(&output(host, &seed_fan_out), 5);
    assert_eq!(
        output(host, &orch),
        json!([
            "Your project design proposal has been -  Approved!",
            "Your project design proposal has been -  Rejected!"
        ])
    );
    assert_eq!(
        output(host, &hello_sequence),
        json!(["Hello Tokyo!", "Hello Seattle!", "Hello London!"])
    );
    assert_eq!(
        output(host, &escalated),
        json!([
            "ESCALATION : You have not approved the project design proposal - reassigning to your Manager!  Head of department!"
        ])
    );
    assert_eq!(
        output(host, &approved),
        json!(["Your project design proposal has been -  Approved!"])
    );
    let monitored = output(host, &monitor);
    assert_eq!(monitored["status"], "done", "{monitored}");
    for (url, big) in &echoes {
        assert_eq!(output(host, url), json!(format!("A:{big}")));
    }
    let done = poll("the operation to complete", DEADLINE, || {
        let (_, body) = support::get(&host.url(&format!("/api/operations/{operation}")));
        let v: Value = serde_json::from_str(&body).ok()?;
        (v["status"] == "Completed").then_some(v)
    });
    assert_eq!(
        done["result"]["result"],
        format!("Operation {operation} completed successfully")
    );
    for t in counter_orchestrations {
        t.join().unwrap();
    }
    poll(&format!("{key} to reach 75"), DEADLINE, || {
        (counter(host, &key) == Some(75)).then_some(())
    });
    // The monitor's executions are one instance.
    20
}

#[test]
fn the_samples_complete_under_five_percent_storage_faults() {
    let azurite = Azurite::start();
    let proxy = FaultProxy::start(&azurite, 0.05);
    let p = project(
        &proxy,
        &[
            "fan_out",
            "durable_fixtures",
            "approval",
            "async_api",
            "counter",
            "hello",
        ],
    );
    let host = start_host(&p);
    let began = Instant::now();
    let started: usize = std::thread::scope(|scope| {
        let rounds: Vec<_> = (0..ROUNDS)
            .map(|n| {
                let host = &host;
                scope.spawn(move || round(host, n))
            })
            .collect();
        rounds.into_iter().map(|r| r.join().unwrap()).sum()
    });
    let took = began.elapsed();

    // Nothing lost, nothing stuck: every instance started is there, Completed.
    all_completed(&host, started);

    // The faults happened on every service, and the console named each kind
    // it retried (retries after the first of a spell are summed up within 10 s).
    let report = proxy.report();
    eprintln!("{report}\nall {ROUNDS} rounds done {took:?} after the first start");
    let mut injected = std::collections::BTreeMap::new();
    for s in SERVICES {
        let faults: u64 = proxy.injected(s).values().sum();
        assert!(faults > 0, "no faults on {s:?}:\n{report}");
        for (kind, n) in proxy.injected(s) {
            *injected.entry(kind).or_insert(0) += n;
        }
    }
    for kind in injected.keys() {
        let names = console_names(*kind);
        if names.is_empty() {
            continue;
        }
        poll(
            &format!(
                "the console to name {kind:?} ({names:?})\n{report}\n{}",
                host.output()
            ),
            Duration::from_secs(15),
            || {
                let out = host.output();
                out.lines()
                    .any(|l| l.contains("Storage: ") && names.iter().any(|n| l.contains(n)))
                    .then_some(())
            },
        );
    }
    let out = host.output();
    let storage_lines: Vec<&str> = out.lines().filter(|l| l.contains("Storage")).collect();
    eprintln!("{}", storage_lines.join("\n"));
    assert!(!out.contains("panicked"), "{out}");
}

#[test]
fn a_storage_outage_of_30_s_is_reported_once_and_every_instance_finishes_after_it() {
    let azurite = Azurite::start();
    let proxy = FaultProxy::start(&azurite, 0.0);
    let p = project(
        &proxy,
        &["fan_out", "durable_fixtures", "approval", "hello"],
    );
    let mut host = start_host(&p);

    // A run in flight: a monitor that checks every second until 40 s from now
    // (continue-as-new across the outage), a timer that falls due during it,
    // an event that comes after it, a fan-out of 100 and a chain of 20.
    let now = now_ms();
    let monitor = start(
        &host,
        "/api/orchestrators/Monitor",
        json!({"job_id": "outage", "ready_at_ms": now + 40_000, "interval_seconds": 1, "expires_at_ms": now + 300_000}),
    );
    let escalated = start(
        &host,
        "/api/orchestrators/ApprovalWithTimeout",
        json!({"timeout_seconds": 8}),
    );
    let approved = start(
        &host,
        "/api/orchestrators/ApprovalWithTimeout",
        json!({"timeout_seconds": 300}),
    );
    let fan_out = start(&host, "/api/starter_function", json!({"total_chunks": 100}));
    let chain = start(&host, &format!("{API}/orchestrators/Chain"), json!(20));
    host.wait_for("Executed 'Functions.process_chunk_activity'", DEADLINE);

    // Storage goes away for 30 s.
    let cut = Instant::now();
    for s in SERVICES {
        proxy.set_down(s, true);
    }
    let before = host.output().len();
    let mut answered = 0;
    let mut slowest = Duration::ZERO;
    while cut.elapsed() < Duration::from_secs(30) {
        let asked = Instant::now();
        let (code, body) = support::get(&host.url("/api/hello?name=Ada"));
        slowest = slowest.max(asked.elapsed());
        assert_eq!(
            code,
            200,
            "during the outage: {body}\n--- host:\n{}",
            host.output()
        );
        answered += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    for s in SERVICES {
        proxy.set_down(s, false);
    }
    let back = Instant::now();
    assert!(
        slowest < Duration::from_secs(2),
        "an HTTP function took {slowest:?} during the outage"
    );
    let during = host.output()[before..].to_string();

    // After: the event, and every instance finishes.
    let id = status(&approved).1["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client()
        .post(host.url(&format!("{API}/instances/{id}/raiseEvent/Approval")))
        .json(&json!(true))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    check_fan_out(&output(&host, &fan_out), 100);
    assert_eq!(output(&host, &chain), json!(expected_chain(20)));
    assert_eq!(
        output(&host, &escalated),
        json!([
            "ESCALATION : You have not approved the project design proposal - reassigning to your Manager!  Head of department!"
        ])
    );
    assert_eq!(
        output(&host, &approved),
        json!(["Your project design proposal has been -  Approved!"])
    );
    assert_eq!(output(&host, &monitor)["status"], "done");
    let recovered = back.elapsed();
    all_completed(&host, 5);

    // The console: one line per service when it went, one when it came back,
    // and nothing per poll in between.
    let out = host.output();
    eprintln!(
        "{}\n{answered} HTTP answers during the outage (slowest {slowest:?}); all done {recovered:?} after it",
        proxy.report()
    );
    let mut reported = 0;
    for s in SERVICES {
        let name = match s {
            Service::Blob => "blob",
            Service::Queue => "queue",
            Service::Table => "table",
        };
        let port = proxy.port(s);
        let down = out
            .lines()
            .filter(|l| l.contains("Storage unavailable:") && l.contains(&format!(":{port}/")))
            .count();
        let up = out
            .lines()
            .filter(|l| {
                l.contains("Storage is back:")
                    && l.contains(&format!("the {name} service at http://127.0.0.1:{port}/"))
            })
            .count();
        assert!(
            down <= 1,
            "the {name} outage was reported {down} times:\n{out}"
        );
        assert_eq!(up, down, "the {name} service's return:\n{out}");
        reported += down;
    }
    assert!(
        reported >= 2,
        "the queue and table services are polled: their outage is reported\n{out}"
    );
    // Function lines of hello and of activities that were running are fine,
    // and so is the retry of the call that found a service gone, before its
    // outage line; anything else about storage, failures or partitions is not.
    let noisy: Vec<&str> = during
        .lines()
        .filter(|l| {
            let l = l.to_lowercase();
            let expected = l.contains("storage unavailable:")
                || l.contains("could not renew its ownership")
                || (l.contains("storage: a ") && l.contains("; retrying (attempt 2 of 5)"));
            let suspect = [
                "storage",
                "cannot reach",
                "fail",
                "error",
                "partition",
                "retr",
            ]
            .iter()
            .any(|w| l.contains(w));
            suspect && !expected
        })
        .collect();
    for name in ["blob", "queue", "table"] {
        let retried = during
            .matches(&format!("Storage: a {name} call failed"))
            .count();
        assert!(retried <= 1, "{retried} retry lines for {name}:\n{during}");
    }
    assert!(
        noisy.is_empty(),
        "lines during the outage besides the outage itself:\n{}\n--- all:\n{out}",
        noisy.join("\n")
    );
    assert!(
        during.matches("could not renew its ownership").count() <= 1,
        "{during}"
    );
    assert!(!out.contains("panicked"), "{out}");
}

/// The nastiest fault for idempotency, one call at a time: the write is
/// applied and its answer lost, so the retry meets the write itself (409 on
/// an insert, 412 on an ETag, 404 on a delete, "already leased"). The storage
/// layer checks what is stored and answers as the first attempt would have;
/// a real conflict stays one.
#[tokio::test]
async fn a_write_applied_with_its_answer_lost_is_not_its_own_conflict() {
    use host::storage::{Entity, StorageError, TableOp};

    let azurite = Azurite::start();
    let proxy = FaultProxy::start(&azurite, 0.0);
    let storage = host::storage::azure::connect(&proxy.connection_string).unwrap();
    let (tables, blobs) = (&storage.tables, &storage.blobs);
    tables.create_table("lost").await.unwrap();

    // An insert, a replace and a delete, each applied with its answer lost.
    let row = Entity::new("pk", "a").with("N", 1).with("S", "one");
    proxy.fault_next(Service::Table, Fault::ErrorAfter(503));
    let etag = tables
        .execute("lost", TableOp::Insert(row.clone()))
        .await
        .unwrap()
        .expect("an ETag");
    let stored = tables.get("lost", "pk", "a").await.unwrap().unwrap();
    assert_eq!(stored.etag.as_deref(), Some(etag.as_str()));
    proxy.fault_next(Service::Table, Fault::DropAfter);
    let replaced = Entity::new("pk", "a").with("N", 2);
    let etag = tables
        .execute(
            "lost",
            TableOp::Replace {
                entity: replaced.clone(),
                etag,
            },
        )
        .await
        .unwrap()
        .expect("an ETag");
    // The same replace with the old ETag is a real conflict, answer lost or not.
    proxy.fault_next(Service::Table, Fault::ErrorAfter(500));
    let stale = tables
        .execute(
            "lost",
            TableOp::Replace {
                entity: Entity::new("pk", "a").with("N", 3),
                etag: "W/\"datetime'2000-01-01T00%3A00%3A00Z'\"".into(),
            },
        )
        .await;
    assert!(matches!(stale, Err(StorageError::Conflict(_))), "{stale:?}");

    // A checkpoint-like batch: a row and its guarded sentinel.
    proxy.fault_next(Service::Table, Fault::ErrorAfter(503));
    let etags = tables
        .batch(
            "lost",
            vec![
                TableOp::Upsert(Entity::new("pk", "b").with("Data", "x")),
                TableOp::Replace {
                    entity: Entity::new("pk", "a").with("N", 4),
                    etag: etag.clone(),
                },
            ],
        )
        .await
        .unwrap();
    assert_eq!(etags.len(), 2);
    let sentinel = tables.get("lost", "pk", "a").await.unwrap().unwrap();
    assert_eq!(sentinel.i64("N"), Some(4));
    assert_eq!(etags[1], sentinel.etag);
    // Its ETag moved on: another write with it is a real conflict. (One that
    // would store exactly what is there cannot be told from ours, and is
    // taken as applied: the table holds what it meant to write.)
    proxy.fault_next(Service::Table, Fault::DropAfter);
    let again = tables
        .batch(
            "lost",
            vec![TableOp::Replace {
                entity: Entity::new("pk", "a").with("N", 5),
                etag,
            }],
        )
        .await;
    assert!(matches!(again, Err(StorageError::Conflict(_))), "{again:?}");
    proxy.fault_next(Service::Table, Fault::ErrorAfter(500));
    let deleted = tables
        .execute(
            "lost",
            TableOp::Delete {
                partition_key: "pk".into(),
                row_key: "b".into(),
                etag: None,
            },
        )
        .await;
    assert!(matches!(deleted, Ok(None)), "{deleted:?}");

    // A blob written only if absent, and a lease.
    blobs.create_container("lost").await.unwrap();
    proxy.fault_next(Service::Blob, Fault::ErrorAfter(503));
    blobs
        .put_if_absent("lost", "once", b"first".to_vec())
        .await
        .unwrap();
    let other = blobs
        .put_if_absent("lost", "once", b"second".to_vec())
        .await;
    assert!(matches!(other, Err(StorageError::Conflict(_))), "{other:?}");
    proxy.fault_next(Service::Blob, Fault::DropAfter);
    let lease = blobs
        .acquire_lease("lost", "once", Duration::from_secs(15))
        .await
        .unwrap()
        .expect("the lease its own retry took");
    assert!(blobs.renew_lease("lost", "once", &lease).await.unwrap());
    let report = proxy.report();
    assert!(
        report.contains("ErrorAfter(503) 1") && report.contains("DropAfter 1"),
        "{report}"
    );
}
