//! The engine's message flow: local dispatch on and off, extended sessions
//! and full replay agreeing, packed messages applied once, and two hosts
//! sharing one big fan-out.

#[path = "support/azurite.rs"]
mod azurite;
#[path = "durable_support.rs"]
mod durable_support;
mod support;

use std::time::Duration;

use azurite::Azurite;
use durable_support::{HOST_TOML, finished, project, status};
use serde_json::{Value, json};
use support::{client, poll};

const DEADLINE: Duration = Duration::from_secs(120);

/// A project whose host.toml has `extra` under `[extensions.durableTask]`
/// (a `hubName` there replaces the tests' hub).
fn project_with(azurite: &Azurite, folders: &[&str], extra: &str) -> support::Project {
    let p = project(azurite, folders, "");
    let mut toml = HOST_TOML.replace(
        "[extensions.durableTask]\n",
        &format!("[extensions.durableTask]\n{extra}\n"),
    );
    if extra.contains("hubName") {
        toml = toml.replace("hubName = \"TestHub\"\n", "");
    }
    p.write("host.toml", &toml);
    p
}

/// Start `name` with `input` over the management API; its status URL.
fn start(host: &support::Host, name: &str, input: Value) -> String {
    let r = client()
        .post(host.url(&format!(
            "/runtime/webhooks/durabletask/orchestrators/{name}"
        )))
        .json(&input)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "starting {name}");
    r.json::<Value>().unwrap()["statusQueryGetUri"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A counter of the host's /admin/metrics (summed over its labels matching `label`).
fn metric(host: &support::Host, name: &str, label: &str) -> u64 {
    let text = client()
        .get(host.url("/admin/metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn output(url: &str) -> Value {
    let done = finished(url, DEADLINE);
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    done["output"].clone()
}

/// The tests' task hub as the host sees it, on `azurite`'s storage.
fn test_hub(azurite: &Azurite) -> (host::storage::Storage, host::durable::hub::Hub) {
    let storage = host::storage::azure::connect(&azurite.connection_string).unwrap();
    let hub = host::durable::hub::Hub::new("TestHub", 4, storage.clone());
    (storage, hub)
}

/// Start ReplayProgram as instance `id` running `program`; its status URL.
fn start_program(host: &support::Host, id: &str, program: &Value) -> String {
    let r = client()
        .post(host.url(&format!(
            "/runtime/webhooks/durabletask/orchestrators/ReplayProgram/{id}"
        )))
        .json(program)
        .send()
        .unwrap();
    assert_eq!(r.status(), 202, "starting {id}");
    host.url(&format!("/runtime/webhooks/durabletask/instances/{id}"))
}

fn expected_chain(n: u32) -> String {
    (0..n).fold("start".to_string(), |v, i| format!("A:{v}|{i}"))
}

#[test]
fn local_dispatch_and_the_work_item_queue_give_the_same_results() {
    let azurite = Azurite::start();
    for local in [true, false] {
        // One task hub each, on the same storage account.
        let p = project_with(
            &azurite,
            &["durable_fixtures", "fan_out"],
            &format!("localDispatch = {local}\nhubName = \"Local{local}\""),
        );
        let host = p.start(&[]);
        let chain = start(&host, "Chain", json!(15));
        let fan = client()
            .post(host.url("/api/starter_function"))
            .json(&json!({"total_chunks": 30}))
            .send()
            .unwrap();
        assert_eq!(fan.status(), 202);
        let fan: Value = fan.json().unwrap();
        let sub = start(&host, "SubParent", json!(5));
        assert_eq!(output(&chain), json!(expected_chain(15)));
        let results = output(fan["statusQueryGetUri"].as_str().unwrap())["results"].clone();
        let mut ids: Vec<u64> = results
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["chunk_id"].as_u64().unwrap())
            .collect();
        ids.sort();
        assert_eq!(ids, (0..30).collect::<Vec<_>>());
        assert_eq!(output(&sub), json!([10, 12]));

        let (on_host, queued) = (
            metric(&host, "fnhost_durable_activities_total", "local"),
            metric(&host, "fnhost_durable_activities_total", "queue"),
        );
        if local {
            assert!(on_host > 0, "no activity ran locally: {}", host.output());
        } else {
            assert_eq!(
                on_host, 0,
                "localDispatch = false still ran activities locally"
            );
            assert!(queued >= 45, "{queued} queued activities");
        }
    }
}

#[test]
fn extended_sessions_and_full_replay_give_the_same_outputs() {
    let azurite = Azurite::start();
    let mut outputs = Vec::new();
    for sessions in [true, false] {
        let p = project_with(
            &azurite,
            &["durable_fixtures", "approval"],
            &format!("extendedSessionsEnabled = {sessions}\nhubName = \"Sessions{sessions}\""),
        );
        let host = p.start(&[]);
        let urls = [
            start(&host, "Chain", json!(25)),
            start(&host, "SubParent", json!(1)),
            start(&host, "Deterministic", Value::Null),
            start(&host, "HelloSequence", Value::Null),
        ];
        let got: Vec<Value> = urls.iter().map(|u| output(u)).collect();
        assert_eq!(got[0], json!(expected_chain(25)));
        let continued = metric(&host, "fnhost_durable_episodes_total", "continued");
        let replayed = metric(&host, "fnhost_durable_episodes_total", "full");
        if sessions {
            // Each instance replays once (its first episode), then continues.
            assert!(continued > 25, "{continued} continued, {replayed} replayed");
        } else {
            assert_eq!(continued, 0);
        }
        // Deterministic's output carries the instance's own random values: compare the verdict.
        let same = got[2]["recorded"] == got[2]["recomputed"];
        assert!(same, "{}", got[2]);
        outputs.push(json!([got[0], got[1], same, got[3]]));
    }
    assert_eq!(outputs[0], outputs[1]);
}

#[test]
fn a_session_lost_to_a_restart_falls_back_to_replay() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["durable_fixtures"], "");
    let mut first = p.start(&[]);
    let url = start(&first, "Shifty", Value::Null);
    poll("the first activity", DEADLINE, || {
        first
            .output()
            .contains("Executed 'Functions.EchoA' (Succeeded")
            .then_some(())
    });
    assert!(first.terminate(Duration::from_secs(30)).success());
    let second = p.start(&[]);
    let id = url
        .split("/instances/")
        .nth(1)
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let raise = second.url(&format!(
        "/runtime/webhooks/durabletask/instances/{id}/raiseEvent/go"
    ));
    poll("the event to be accepted", DEADLINE, || {
        let r = client().post(&raise).json(&json!(true)).send().unwrap();
        (r.status() == 202).then_some(())
    });
    let url = second.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    assert_eq!(output(&url), json!(["A:first", "A:second"]));
    assert!(metric(&second, "fnhost_durable_episodes_total", "full") >= 1);
}

#[test]
fn a_packed_message_delivered_twice_is_applied_once() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["durable_fixtures"], "");
    let host = p.start(&[]);
    let id = "ticks-1";
    let r = client()
        .post(host.url(&format!(
            "/runtime/webhooks/durabletask/orchestrators/CollectTicks/{id}"
        )))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let url = host.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    poll("the instance to run", DEADLINE, || {
        (status(&url).1["runtimeStatus"] == "Running").then_some(())
    });

    // Three events packed in one queue message, as a host's outbox sends
    // them, delivered twice (as after a crash between checkpoint and delete).
    let tick = |n: &str| {
        json!({
            "instance_id": id,
            "execution_id": null,
            "event": {"Event": {"EventRaised": {"name": "tick", "input": format!("\"{n}\"")}}},
            "id": format!("tick-{n}"),
        })
    };
    let packed = json!({"messages": [tick("a"), tick("b"), tick("c")]}).to_string();
    let (storage, hub) = test_hub(&azurite);
    let queue = hub.control_queue(hub.partition_of(id));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for _ in 0..2 {
            storage
                .queues
                .send(&queue, &packed, Duration::ZERO)
                .await
                .unwrap();
        }
    });
    let deadline = std::time::Instant::now() + DEADLINE;
    poll(
        "the ticks to be recorded",
        DEADLINE + Duration::from_secs(5),
        || {
            assert!(
                std::time::Instant::now() < deadline,
                "the ticks were not recorded:\n{}",
                host.output()
            );
            let (_, doc) = status(&format!("{url}?showHistory=true"));
            let raised = doc["historyEvents"]
                .as_array()?
                .iter()
                .filter(|e| e["EventType"] == "EventRaised")
                .count();
            (raised >= 3).then_some(())
        },
    );
    let r = client()
        .post(format!("{url}/raiseEvent/done"))
        .json(&json!(true))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(output(&url), json!(["a", "b", "c"]));
}

#[test]
fn two_hosts_share_a_fan_out_of_1000() {
    let azurite = Azurite::start();
    // 5 slots each: alone, one host would need ~30 s for 1,000 chunks of 50-250 ms.
    let p = project_with(&azurite, &["fan_out"], "maxConcurrentActivityFunctions = 5");
    let a = p.start(&[]);
    let b = p.start(&[]);
    let r = client()
        .post(a.url("/api/starter_function"))
        .json(&json!({"total_chunks": 1000}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 202);
    let url = r.json::<Value>().unwrap()["statusQueryGetUri"]
        .as_str()
        .unwrap()
        .to_string();
    let done = finished(&url, Duration::from_secs(300));
    assert_eq!(done["runtimeStatus"], "Completed", "{done}");
    let results = done["output"]["results"].as_array().unwrap();
    let mut ids: Vec<u64> = results
        .iter()
        .map(|r| r["chunk_id"].as_u64().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, (0..1000).collect::<Vec<_>>());
    let ran = |h: &support::Host| h.count("Executed 'Functions.process_chunk_activity' (Succeeded");
    let (on_a, on_b) = (ran(&a), ran(&b));
    assert!(on_a > 0 && on_b > 0, "a ran {on_a}, b ran {on_b}");
    assert!(on_a + on_b >= 1000);
}

/// The start of an execution that already ran (the queued copy of a local
/// start, coming 60 s later; a continue-as-new start delivered again) does
/// not run a finished instance once more.
#[test]
fn a_stale_start_does_not_run_a_finished_instance_again() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["replay_fixtures"], "");
    let host = p.start(&["--verbose"]);
    let id = "stale-1";
    // Two executions: a timer, then (continued as new) an activity.
    let program = json!({"program": {"generations": [
        [{"op": "timer", "ms": 100}],
        [{"op": "activity", "tag": "a", "fail": false, "sleep_ms": 0}],
    ]}});
    let url = start_program(&host, id, &program);
    let done = output(&url);

    let (_, hub) = test_hub(&azurite);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let starts = |hub: &host::durable::hub::Hub| {
        rt.block_on(async {
            let rows = hub
                .storage
                .tables
                .query_partition(&hub.history_table(), id)
                .await
                .unwrap();
            let mut starts = Vec::new();
            for row in rows.iter().filter(|r| r.row_key != "sentinel") {
                let data = hub.payload(row, "Data").await.unwrap().unwrap();
                let record: host::durable::model::StoredRecord =
                    serde_json::from_str(&data).unwrap();
                if let host::durable::model::Record::Event(
                    e @ host::runtime::durable::HistoryEvent::ExecutionStarted(_),
                ) = record.record
                {
                    starts.push((row.str("ExecutionId").unwrap().to_string(), e));
                }
            }
            starts
        })
    };
    let before = starts(&hub);
    assert_eq!(before.len(), 2, "two executions: {before:?}");
    // Messages this instance's episodes ignored ("ignoring N message(s) after it finished").
    let ignored = |host: &support::Host| -> usize {
        host.output()
            .lines()
            .filter_map(|l| l.split(&format!("'{id}': ignoring ")).nth(1))
            .filter_map(|rest| rest.split(' ').next()?.parse::<usize>().ok())
            .sum()
    };
    let already = ignored(&host);
    rt.block_on(async {
        for (execution, event) in &before {
            let start = host::durable::model::ControlMessage {
                instance_id: id.to_string(),
                execution_id: Some(execution.clone()),
                event: host::durable::model::ControlEvent::Event(event.clone()),
                parent: None,
                id: None,
            };
            hub.send_control(&start, Duration::ZERO).await.unwrap();
        }
    });
    let end = std::time::Instant::now() + Duration::from_secs(30);
    while ignored(&host) < already + 2 {
        assert!(
            std::time::Instant::now() < end,
            "the stale starts were not ignored; the executions now: {:?}\n{}",
            starts(&hub).iter().map(|(e, _)| e).collect::<Vec<_>>(),
            host.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(starts(&hub).len(), 2, "{}", host.output());
    assert_eq!(output(&url), done);
}

/// A host killed between writing an instance's final history and its status
/// row leaves a history that says Completed behind a row that says Running,
/// and (when its start and activity never went through a queue) no message
/// to bring them together. The next owner's recovery scan finds the row and
/// writes what the history says (the replay test's seed 15964 showed such an
/// instance Running forever).
#[test]
fn a_finished_history_behind_a_running_row_is_put_right_by_the_next_owner() {
    use host::durable::instances::{Guard, get, write};
    use host::durable::model::RuntimeStatus;

    let azurite = Azurite::start();
    let p = project(&azurite, &["replay_fixtures"], "");
    let id = "behind-1";
    let program = json!({"program": {"generations": [
        [{"op": "activity", "tag": "a", "fail": false, "sleep_ms": 0}],
    ]}});
    let mut first = p.start(&[]);
    let done = output(&start_program(&first, id, &program));
    assert!(first.terminate(Duration::from_secs(30)).success());

    // The row as the first episode wrote it: Running, no output.
    let (_, hub) = test_hub(&azurite);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut row = get(&hub, id).await.unwrap().expect("its row");
        assert_eq!(row.status, RuntimeStatus::Completed);
        row.status = RuntimeStatus::Running;
        row.output = None;
        row.completed = None;
        write(&hub, &row, 1, Guard::None).await.unwrap();
    });

    let second = p.start(&[]);
    let url = second.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    let doc = poll(
        "the status row to say Completed",
        Duration::from_secs(60),
        || {
            let (_, doc) = status(&url);
            (doc["runtimeStatus"] == "Completed").then_some(doc)
        },
    );
    assert_eq!(doc["output"], done, "{doc}");
    assert!(
        second
            .output()
            .contains(&format!("'{id}': bringing its status up to date")),
        "{}",
        second.output()
    );
}

/// Events that waited for their instance's start (sent while it continued as
/// new, or before a restart) and come in one batch with it are recorded
/// after the start, as the execution's own: a copy of one delivered later is
/// recognised (the replay test's seed 2603 recorded two events before the
/// start and again when their copies came 30 s later).
#[test]
fn events_that_come_with_their_start_are_recorded_after_it_and_once() {
    let azurite = Azurite::start();
    let p = project(&azurite, &["replay_fixtures"], "");
    let host = p.start(&[]);
    let id = "early-1";
    let program = json!({"program": {"generations": [
        [{"op": "all", "branches": [
            {"op": "event", "name": "e1"},
            {"op": "event", "name": "e2"},
        ]}],
    ]}});
    let event = |name: &str| {
        json!({
            "instance_id": id,
            "execution_id": null,
            "event": {"Event": {"EventRaised": {"name": name, "input": format!("\"{name}:data\"")}}},
            "id": format!("{id}-{name}"),
        })
    };
    let start = json!({
        "instance_id": id,
        "execution_id": "early-execution",
        "event": {"Event": {"ExecutionStarted": {
            "name": "ReplayProgram",
            "input": program.to_string(),
            "timestamp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64,
        }}},
    });
    let (storage, hub) = test_hub(&azurite);
    let queue = hub.control_queue(hub.partition_of(id));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let send = |messages: Vec<Value>| {
        let packed = json!({ "messages": messages }).to_string();
        rt.block_on(storage.queues.send(&queue, &packed, Duration::ZERO))
            .unwrap();
    };
    // The event first, its start after it, in one queue message.
    send(vec![event("e1"), start]);
    let url = host.url(&format!("/runtime/webhooks/durabletask/instances/{id}"));
    let history = || -> Vec<Value> {
        let (_, doc) = status(&format!("{url}?showHistory=true"));
        doc["historyEvents"].as_array().cloned().unwrap_or_default()
    };
    poll("e1 to be recorded", DEADLINE, || {
        history()
            .iter()
            .any(|e| e["EventType"] == "EventRaised")
            .then_some(())
    });
    // A copy of e1 (delivered again after a crash), then e2.
    send(vec![event("e1"), event("e2")]);
    let done = output(&url);
    assert_eq!(
        done,
        json!([{"generation": 0, "steps": [["e1:data", "e2:data"]]}])
    );
    let events: Vec<String> = history()
        .iter()
        .map(|e| {
            format!(
                "{}{}",
                e["EventType"].as_str().unwrap_or_default(),
                e["Name"]
                    .as_str()
                    .or(e["FunctionName"].as_str())
                    .map(|n| format!(" {n}"))
                    .unwrap_or_default()
            )
        })
        .filter(|e| e.starts_with("Execution") || e.starts_with("EventRaised"))
        .collect();
    assert_eq!(
        events,
        [
            "ExecutionStarted ReplayProgram",
            "EventRaised e1",
            "EventRaised e2",
            "ExecutionCompleted"
        ],
        "{}",
        host.output()
    );
}
