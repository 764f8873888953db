//! What the task hub stores: queue messages, history records, instance status.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::runtime::durable::{Failure, HistoryEvent};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_millis() as u64
}

/// `2025-06-17T10:00:00.123Z`: fixed width, so string order is time order
/// (the Instances table filters on it).
pub fn iso(ms: u64) -> String {
    let t = time::OffsetDateTime::UNIX_EPOCH + time::Duration::milliseconds(ms as i64);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// Parse the dates clients send (with or without fractional seconds, `Z` or offset).
pub fn parse_iso(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .or_else(|_| {
            time::OffsetDateTime::parse(
                &format!("{s}Z"),
                &time::format_description::well_known::Rfc3339,
            )
        })
        .ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Durable Functions' runtime statuses, spelled as its HTTP API spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RuntimeStatus {
    Pending,
    Running,
    Completed,
    ContinuedAsNew,
    Failed,
    Terminated,
    Suspended,
}

impl RuntimeStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeStatus::Pending => "Pending",
            RuntimeStatus::Running => "Running",
            RuntimeStatus::Completed => "Completed",
            RuntimeStatus::ContinuedAsNew => "ContinuedAsNew",
            RuntimeStatus::Failed => "Failed",
            RuntimeStatus::Terminated => "Terminated",
            RuntimeStatus::Suspended => "Suspended",
        }
    }

    pub fn parse(s: &str) -> Option<RuntimeStatus> {
        [
            RuntimeStatus::Pending,
            RuntimeStatus::Running,
            RuntimeStatus::Completed,
            RuntimeStatus::ContinuedAsNew,
            RuntimeStatus::Failed,
            RuntimeStatus::Terminated,
            RuntimeStatus::Suspended,
        ]
        .into_iter()
        .find(|r| r.as_str().eq_ignore_ascii_case(s))
    }

    /// Finished for good: no more episodes.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RuntimeStatus::Completed | RuntimeStatus::Failed | RuntimeStatus::Terminated
        )
    }
}

/// The parent of a sub-orchestration, told when the child finishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Parent {
    pub instance_id: String,
    pub execution_id: String,
    /// The parent's sequence id of the call.
    pub task_scheduled_id: u32,
}

/// What a control-queue message asks of an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ControlEvent {
    /// A history event for the guest (completions, timers, external events,
    /// and execution-started for a new instance).
    Event(HistoryEvent),
    Terminate {
        reason: Option<String>,
    },
    Suspend {
        reason: Option<String>,
    },
    Resume {
        reason: Option<String>,
    },
    /// An operation for an entity (`@name@key`).
    Entity(Box<super::entity::EntityOp>),
    /// Resume a failed orchestration from its failure: the owner takes the
    /// failed activities' results out of the history and runs them again.
    Rewind {
        reason: Option<String>,
    },
}

/// A message on a control queue `{hub}-control-NN`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ControlMessage {
    pub instance_id: String,
    /// The execution it is meant for; None for messages to whatever runs now
    /// (external events, management operations).
    pub execution_id: Option<String>,
    pub event: ControlEvent,
    /// For execution-started of a sub-orchestration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// Identifies events and management operations, so that a redelivered one
    /// (a host died between the checkpoint and the delete) is applied once.
    /// Results need none: they are deduplicated by task and timer id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// A message on `{hub}-workitems`: run one activity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkItem {
    pub instance_id: String,
    pub execution_id: String,
    pub task_scheduled_id: u32,
    pub name: String,
    pub input: Option<String>,
}

/// One row of the History table: a guest event, or one the host alone records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Record {
    Event(HistoryEvent),
    ExecutionCompleted {
        status: RuntimeStatus,
        output: Option<String>,
        failure: Option<Failure>,
    },
    ExecutionTerminated {
        reason: Option<String>,
    },
    ContinuedAsNew {
        input: Option<String>,
    },
}

impl Record {
    /// DTFx's event type names, for the History table and `showHistory`.
    pub fn event_type(&self) -> &'static str {
        match self {
            Record::Event(e) => match e {
                HistoryEvent::OrchestratorStarted(_) => "OrchestratorStarted",
                HistoryEvent::ExecutionStarted(_) => "ExecutionStarted",
                HistoryEvent::TaskScheduled(_) => "TaskScheduled",
                HistoryEvent::TaskCompleted(_) => "TaskCompleted",
                HistoryEvent::TaskFailed(_) => "TaskFailed",
                HistoryEvent::TimerCreated(_) => "TimerCreated",
                HistoryEvent::TimerFired(_) => "TimerFired",
                HistoryEvent::SubOrchestrationCreated(_) => "SubOrchestrationInstanceCreated",
                HistoryEvent::SubOrchestrationCompleted(_) => "SubOrchestrationInstanceCompleted",
                HistoryEvent::SubOrchestrationFailed(_) => "SubOrchestrationInstanceFailed",
                HistoryEvent::EventSent(_) => "EventSent",
                HistoryEvent::EventRaised(_) => "EventRaised",
                HistoryEvent::ExecutionSuspended => "ExecutionSuspended",
                HistoryEvent::ExecutionResumed => "ExecutionResumed",
                HistoryEvent::EntitySignaled(_) => "EntityOperationSignaled",
                HistoryEvent::EntityCalled(_) => "EntityOperationCalled",
                HistoryEvent::EntityCallCompleted(_) => "EntityOperationCompleted",
                HistoryEvent::EntityCallFailed(_) => "EntityOperationFailed",
                HistoryEvent::EntitiesLocked(_) => "EntityLockRequested",
                HistoryEvent::EntitiesUnlocked(_) => "EntityUnlockSent",
            },
            Record::ExecutionCompleted { .. } => "ExecutionCompleted",
            Record::ExecutionTerminated { .. } => "ExecutionTerminated",
            Record::ContinuedAsNew { .. } => "ContinueAsNew",
        }
    }
}

/// A history record as stored, with its time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredRecord {
    pub record: Record,
    /// When it was recorded (ms since epoch).
    pub timestamp: u64,
    /// On execution-started of a sub-orchestration: whom to tell when it ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// The id of the control message this record came from (events, suspend, resume).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// On task-scheduled: the activity runs on the host that owns the
    /// instance (local dispatch), not through `{hub}-workitems`. A new owner
    /// runs such tasks again if their result is not in the history.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub local: bool,
    /// On execution-started of an execution that follows another (continue-
    /// as-new, restart): the ids of the messages the executions before it
    /// recorded lately, so that a copy of one delivered late is not taken
    /// again by this execution.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub seen: Vec<String>,
}

impl StoredRecord {
    pub fn new(record: Record, timestamp: u64) -> StoredRecord {
        StoredRecord {
            record,
            timestamp,
            parent: None,
            message_id: None,
            local: false,
            seen: Vec::new(),
        }
    }
}

/// What a control-queue message holds: one message, or several bound for the
/// same partition packed together (one storage call instead of many).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
// Only ever a parsed queue message on its way to being unpacked: boxing
// the single message would add an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum ControlPayload {
    Packed { messages: Vec<ControlMessage> },
    One(ControlMessage),
}

impl ControlPayload {
    pub fn into_messages(self) -> Vec<ControlMessage> {
        match self {
            ControlPayload::Packed { messages } => messages,
            ControlPayload::One(m) => vec![m],
        }
    }
}

/// What a `{hub}-workitems` message holds: one activity, or several packed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum WorkPayload {
    Packed { items: Vec<WorkItem> },
    One(WorkItem),
}

impl WorkPayload {
    pub fn into_items(self) -> Vec<WorkItem> {
        match self {
            WorkPayload::Packed { items } => items,
            WorkPayload::One(i) => vec![i],
        }
    }
}

/// The Instances table row of one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub instance_id: String,
    pub name: String,
    pub execution_id: String,
    pub status: RuntimeStatus,
    pub input: Option<String>,
    pub output: Option<String>,
    pub custom_status: Option<String>,
    pub created: u64,
    pub last_updated: u64,
    pub completed: Option<u64>,
}

impl InstanceRow {
    /// Whether a status reader would see a difference (LastUpdatedTime aside).
    pub fn differs_from(&self, other: &InstanceRow) -> bool {
        self.name != other.name
            || self.execution_id != other.execution_id
            || self.status != other.status
            || self.input != other.input
            || self.output != other.output
            || self.custom_status != other.custom_status
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_round_trips_and_sorts() {
        let ms = 1_750_154_400_123;
        assert_eq!(iso(ms), "2025-06-17T10:00:00.123Z");
        assert_eq!(parse_iso("2025-06-17T10:00:00.123Z"), Some(ms));
        assert_eq!(parse_iso("2025-06-17T10:00:00Z"), Some(ms - 123));
        assert_eq!(parse_iso("2025-06-17T10:00:00"), Some(ms - 123));
        assert!(iso(ms) < iso(ms + 1));
    }

    #[test]
    fn statuses_parse_case_insensitively() {
        assert_eq!(
            RuntimeStatus::parse("running"),
            Some(RuntimeStatus::Running)
        );
        assert_eq!(RuntimeStatus::parse("Nope"), None);
    }
}
