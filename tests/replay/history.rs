//! The recorded histories of a program's instances, every execution of each
//! (continue-as-new and restarts leave the earlier ones in the History
//! table), normalized so that two runs of one program compare equal exactly
//! when they recorded the same thing.
//!
//! What legitimately differs between two runs is dropped: times, execution
//! ids, timer fire times, and how the events fell into episodes
//! (OrchestratorStarted). What the orchestrator decided (its scheduling
//! events, start, end and continue-as-new, with sequence ids, names and
//! inputs) must come in the same order; what arrived (results, timers fired,
//! events raised) must be the same multiset, since concurrent tasks finish in
//! any order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use host::durable::hub::Hub;
use host::durable::inspect::event_json;
use host::durable::model::StoredRecord;
use serde_json::Value;

/// One execution, normalized.
#[derive(Debug, Clone)]
pub struct Execution {
    /// The orchestrator's decisions, in order.
    pub decided: Vec<String>,
    /// What arrived, sorted.
    pub arrived: Vec<String>,
    /// Inconsistencies within the history itself (a result before its
    /// task was scheduled, a task completed twice).
    pub problems: Vec<String>,
    /// The events as recorded, with their times (for the report, not compared).
    pub raw: Vec<Value>,
}

impl PartialEq for Execution {
    fn eq(&self, other: &Execution) -> bool {
        (&self.decided, &self.arrived, &self.problems)
            == (&other.decided, &other.arrived, &other.problems)
    }
}

/// Every instance of a program (the root and its sub-orchestrations, by
/// id) and the normalized executions of each, oldest first.
pub type Histories = BTreeMap<String, Vec<Execution>>;

/// Read the histories of `root` and of every sub-orchestration it (or they) started.
pub async fn read(hub: &Hub, root: &str) -> Histories {
    let mut out = Histories::new();
    let mut todo = vec![root.to_string()];
    while let Some(id) = todo.pop() {
        if out.contains_key(&id) {
            continue;
        }
        let executions = executions(hub, &id).await;
        for e in &executions {
            for d in &e.decided {
                if let Some(child) = d
                    .strip_prefix("SubOrchestrationInstanceCreated ")
                    .and_then(|rest| rest.split(' ').nth(2))
                {
                    todo.push(child.to_string());
                }
            }
        }
        out.insert(id, executions);
    }
    out
}

/// The committed rows of an instance (those below the sentinel's
/// NextSequence), split into executions.
async fn executions(hub: &Hub, id: &str) -> Vec<Execution> {
    let rows = hub
        .storage
        .tables
        .query_partition(&hub.history_table(), id)
        .await
        .unwrap_or_else(|e| panic!("reading the history of '{id}': {e}"));
    let Some(sentinel) = rows.iter().find(|r| r.row_key == "sentinel") else {
        return Vec::new();
    };
    let next: u64 = sentinel
        .str("NextSequence")
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut runs: Vec<(String, Vec<Value>)> = Vec::new();
    for row in &rows {
        let Ok(seq) = u64::from_str_radix(&row.row_key, 16) else {
            continue;
        };
        if seq >= next {
            continue;
        }
        let execution = row.str("ExecutionId").unwrap_or_default().to_string();
        let data = hub
            .payload(row, "Data")
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("history row {id}/{} has no Data", row.row_key));
        let record: StoredRecord = serde_json::from_str(&data).unwrap();
        match runs.last_mut() {
            Some((e, events)) if *e == execution => events.push(event_json(&record)),
            _ => runs.push((execution, vec![event_json(&record)])),
        }
    }
    runs.iter().map(|(_, events)| normalize(events)).collect()
}

fn text(v: &Value) -> String {
    v.to_string()
}

/// One execution's events (as `host durable get-history` shows them), normalized.
pub fn normalize(events: &[Value]) -> Execution {
    let mut decided = Vec::new();
    let mut arrived = Vec::new();
    let mut problems = Vec::new();
    // Sequence ids scheduled so far, and those already completed.
    let mut scheduled: BTreeMap<u64, &str> = BTreeMap::new();
    let mut completed: BTreeSet<u64> = BTreeSet::new();
    for e in events {
        let kind = e["EventType"].as_str().unwrap_or_default();
        let line = match kind {
            "OrchestratorStarted" => continue,
            "ExecutionStarted" => format!(
                "{kind} {} parent={} {}",
                e["Name"],
                e["ParentInstanceId"],
                text(&e["Input"])
            ),
            "TaskScheduled" => format!(
                "{kind} #{} {} {}",
                e["EventId"],
                e["Name"],
                text(&e["Input"])
            ),
            "TimerCreated" => format!("{kind} #{}", e["EventId"]),
            "SubOrchestrationInstanceCreated" => format!(
                "{kind} #{} {} {} {}",
                e["EventId"],
                e["Name"],
                e["InstanceId"].as_str().unwrap_or_default(),
                text(&e["Input"])
            ),
            "EventSent" => format!("{kind} #{} {} {}", e["EventId"], e["Name"], e["InstanceId"]),
            "ExecutionCompleted" => format!(
                "{kind} {} {} {}",
                e["OrchestrationStatus"],
                text(&e["Result"]),
                text(&e["FailureDetails"])
            ),
            "ContinueAsNew" => format!("{kind} {}", text(&e["Input"])),
            "ExecutionTerminated" => format!("{kind} {}", e["Reason"]),
            _ => {
                let (id, line) = match kind {
                    "TaskCompleted" | "SubOrchestrationInstanceCompleted" => (
                        &e["TaskScheduledId"],
                        format!("{kind} #{} {}", e["TaskScheduledId"], text(&e["Result"])),
                    ),
                    "TaskFailed" | "SubOrchestrationInstanceFailed" => (
                        &e["TaskScheduledId"],
                        format!(
                            "{kind} #{} {} {}",
                            e["TaskScheduledId"], e["ErrorType"], e["Reason"]
                        ),
                    ),
                    "TimerFired" => (&e["TimerId"], format!("{kind} #{}", e["TimerId"])),
                    "EventRaised" => (
                        &Value::Null,
                        format!("{kind} {} {}", e["Name"], text(&e["Input"])),
                    ),
                    _ => (&Value::Null, format!("{kind} {}", text(e))),
                };
                if let Some(id) = id.as_u64() {
                    if !scheduled.contains_key(&id) {
                        problems.push(format!("{line}: nothing with sequence id {id} before it"));
                    }
                    if !completed.insert(id) {
                        problems.push(format!("{line}: sequence id {id} completed twice"));
                    }
                }
                arrived.push(line);
                continue;
            }
        };
        if let Some(id) = e["EventId"].as_u64()
            && scheduled.insert(id, kind).is_some()
        {
            problems.push(format!("{line}: sequence id {id} scheduled twice"));
        }
        decided.push(line);
    }
    arrived.sort();
    Execution {
        decided,
        arrived,
        problems,
        raw: events.to_vec(),
    }
}

/// How `actual` differs from `expected`, for people: each instance that
/// differs, with both histories and the first differing line marked.
pub fn diff(expected: &Histories, actual: &Histories) -> Option<String> {
    let mut out = String::new();
    let ids: BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for id in ids {
        let (e, a) = (expected.get(id), actual.get(id));
        if e == a {
            continue;
        }
        let _ = writeln!(out, "instance '{id}':");
        // The normalized lines (compared) and, after them, the events as recorded.
        let show = |h: Option<&Vec<Execution>>| -> (Vec<String>, Vec<String>) {
            let Some(executions) = h else {
                return (vec!["(no such instance)".to_string()], Vec::new());
            };
            let mut lines = Vec::new();
            let mut raw = Vec::new();
            for (i, x) in executions.iter().enumerate() {
                lines.push(format!("execution {i}:"));
                lines.extend(x.decided.iter().map(|l| format!("  decided  {l}")));
                lines.extend(x.arrived.iter().map(|l| format!("  arrived  {l}")));
                lines.extend(x.problems.iter().map(|l| format!("  PROBLEM  {l}")));
                raw.push(format!("execution {i}:"));
                raw.extend(x.raw.iter().map(|e| format!("  {e}")));
            }
            (lines, raw)
        };
        let (e, a) = (show(e), show(a));
        let first =
            e.0.iter()
                .zip(&a.0)
                .position(|(x, y)| x != y)
                .unwrap_or(e.0.len().min(a.0.len()));
        for (name, (lines, raw)) in [("clean run", &e), ("chaos run", &a)] {
            let _ = writeln!(out, "  {name}:");
            for (i, l) in lines.iter().enumerate() {
                let mark = if i == first { ">>" } else { "  " };
                let _ = writeln!(out, "  {mark} {l}");
            }
            let _ = writeln!(out, "    as recorded:");
            for l in raw {
                let _ = writeln!(out, "      {l}");
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

/// Problems a single run's histories show on their own.
pub fn problems(histories: &Histories) -> Vec<String> {
    histories
        .iter()
        .flat_map(|(id, executions)| {
            executions
                .iter()
                .flat_map(move |x| x.problems.iter().map(move |p| format!("'{id}': {p}")))
        })
        .collect()
}
