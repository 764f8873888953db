//! Read-only views of a task hub for people and tools: an instance's full
//! history with millisecond times (`host durable get-history`, the dashboard's
//! timeline), and whether a hub exists at all.
//!
//! The management API's `showHistory` follows Durable Functions: whole seconds,
//! and scheduling events folded into their completions. A timeline needs more:
//! every event, when it was scheduled and when it finished, to the millisecond.

use serde_json::{Value, json};

use crate::runtime::durable::HistoryEvent;
use crate::storage::StorageError;

use super::history;
use super::hub::Hub;
use super::model::{Record, StoredRecord, iso};

/// Every record of the instance's current execution, in order, as JSON:
/// `{instanceId, executionId, parentInstanceId, events: [{EventType, Timestamp, ...}]}`.
/// None when the instance has no history (unknown, or never started).
pub async fn history_document(hub: &Hub, instance_id: &str) -> Result<Option<Value>, StorageError> {
    let Some(h) = history::load(hub, instance_id).await? else {
        return Ok(None);
    };
    let parent = h
        .records
        .iter()
        .find_map(|r| r.parent.as_ref().map(|p| p.instance_id.clone()));
    Ok(Some(json!({
        "instanceId": instance_id,
        "executionId": h.execution_id,
        "parentInstanceId": parent,
        "events": h.records.iter().map(event_json).collect::<Vec<_>>(),
    })))
}

/// Whether the hub's Instances table exists: a hub that was never created
/// answers NotFound to queries, which a person reads better as "no such hub".
pub async fn hub_exists(hub: &Hub) -> Result<bool, StorageError> {
    match hub
        .storage
        .tables
        .query(&hub.instances_table(), None, Some(1), None)
        .await
    {
        Ok(_) => Ok(true),
        Err(StorageError::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Stored JSON as JSON; anything else as a string; nothing as null.
fn payload(s: &Option<String>) -> Value {
    match s {
        None => Value::Null,
        Some(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.clone())),
    }
}

/// One record with DTFx's event names and field names, times in ISO with milliseconds.
pub fn event_json(r: &StoredRecord) -> Value {
    let mut v = json!({
        "EventType": r.record.event_type(),
        "Timestamp": iso(r.timestamp),
    });
    let extra = match &r.record {
        Record::Event(e) => match e {
            HistoryEvent::OrchestratorStarted(_) => json!({}),
            HistoryEvent::ExecutionStarted(s) => json!({
                "Name": s.name,
                "Input": payload(&s.input),
                "ParentInstanceId": r.parent.as_ref().map(|p| p.instance_id.clone()),
            }),
            HistoryEvent::TaskScheduled(t) => {
                json!({"EventId": t.event_id, "Name": t.name, "Input": payload(&t.input)})
            }
            HistoryEvent::TaskCompleted(c) | HistoryEvent::SubOrchestrationCompleted(c) => {
                json!({"TaskScheduledId": c.task_scheduled_id, "Result": payload(&c.output)})
            }
            HistoryEvent::TaskFailed(f) | HistoryEvent::SubOrchestrationFailed(f) => json!({
                "TaskScheduledId": f.task_scheduled_id,
                "ErrorType": f.failure.error_type,
                "Reason": f.failure.message,
                "Details": payload(&f.failure.details),
            }),
            HistoryEvent::TimerCreated(t) => {
                json!({"EventId": t.event_id, "FireAt": iso(t.fire_at)})
            }
            HistoryEvent::TimerFired(t) => json!({"TimerId": t.timer_id, "FireAt": iso(t.fire_at)}),
            HistoryEvent::SubOrchestrationCreated(s) => json!({
                "EventId": s.event_id,
                "Name": s.name,
                "InstanceId": s.instance_id,
                "Input": payload(&s.input),
            }),
            HistoryEvent::EventSent(s) => json!({
                "EventId": s.event_id,
                "Name": s.name,
                "InstanceId": s.instance_id,
                "Input": payload(&s.input),
            }),
            HistoryEvent::EventRaised(e) => json!({"Name": e.name, "Input": payload(&e.input)}),
            HistoryEvent::ExecutionSuspended | HistoryEvent::ExecutionResumed => json!({}),
            HistoryEvent::EntitySignaled(c) | HistoryEvent::EntityCalled(c) => json!({
                "EventId": c.event_id,
                "TargetInstanceId": format!("@{}@{}", c.target.name, c.target.key),
                "Operation": c.operation,
                "Input": payload(&c.input),
                "ScheduledTime": c.scheduled_time.map(iso),
            }),
            HistoryEvent::EntityCallCompleted(c) => {
                json!({"TaskScheduledId": c.task_scheduled_id, "Result": payload(&c.output)})
            }
            HistoryEvent::EntitiesLocked(l) | HistoryEvent::EntitiesUnlocked(l) => json!({
                "EventId": l.event_id,
                "LockRequestId": l.lock_id,
                "TargetInstanceIds": l.targets.iter()
                    .map(|t| format!("@{}@{}", t.name, t.key))
                    .collect::<Vec<_>>(),
            }),
            HistoryEvent::EntityCallFailed(f) => json!({
                "TaskScheduledId": f.task_scheduled_id,
                "ErrorType": f.failure.error_type,
                "Reason": f.failure.message,
                "Details": payload(&f.failure.details),
            }),
        },
        Record::ExecutionCompleted {
            status,
            output,
            failure,
        } => json!({
            "OrchestrationStatus": status.as_str(),
            "Result": payload(output),
            "FailureDetails": failure.as_ref().map(|f| json!({
                "ErrorType": f.error_type,
                "ErrorMessage": f.message,
                "Details": payload(&f.details),
            })),
        }),
        Record::ExecutionTerminated { reason } => json!({"Reason": reason}),
        Record::ContinuedAsNew { input } => json!({"Input": payload(input)}),
    };
    if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
        v.extend(extra);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::durable::{Failure, TaskFailed, TaskScheduled};

    #[test]
    fn events_carry_ids_and_millisecond_times() {
        let scheduled = StoredRecord::new(
            Record::Event(HistoryEvent::TaskScheduled(TaskScheduled {
                event_id: 3,
                name: "process_chunk_activity".into(),
                input: Some("{\"chunk_id\":3}".into()),
            })),
            1_750_154_400_123,
        );
        let v = event_json(&scheduled);
        assert_eq!(v["EventType"], "TaskScheduled");
        assert_eq!(v["Timestamp"], "2025-06-17T10:00:00.123Z");
        assert_eq!(v["EventId"], 3);
        assert_eq!(v["Input"]["chunk_id"], 3);

        let failed = StoredRecord::new(
            Record::Event(HistoryEvent::TaskFailed(TaskFailed {
                task_scheduled_id: 3,
                failure: Failure {
                    error_type: "ActivityError".into(),
                    message: "boom".into(),
                    details: None,
                },
            })),
            1_750_154_400_500,
        );
        let v = event_json(&failed);
        assert_eq!(v["TaskScheduledId"], 3);
        assert_eq!(v["Reason"], "boom");
        assert_eq!(v["Details"], Value::Null);
    }
}
