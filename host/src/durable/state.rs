//! What an instance's history says about it: its name, status, parent, and
//! which tasks already completed (to drop duplicate results).

use std::collections::{HashMap, HashSet};

use crate::runtime::durable::{HistoryEvent, TaskCompleted, TaskFailed, TaskScheduled};

use super::history::History;
use super::model::{Parent, Record, RuntimeStatus};

/// The facts an episode needs, derived from the history.
#[derive(Debug, Clone)]
pub struct InstanceState {
    pub name: String,
    pub input: Option<String>,
    pub created: u64,
    pub status: RuntimeStatus,
    pub parent: Option<Parent>,
    /// Ids of tasks (activities, sub-orchestrations) with a result in the history.
    pub completed: HashSet<u32>,
    /// Ids of timers that fired.
    pub fired: HashSet<u32>,
    /// Ids of the activities scheduled.
    pub scheduled: HashSet<u32>,
    /// The timers created: id → fire time.
    pub timers: HashMap<u32, u64>,
    /// The final output (or failure text, or termination reason) once terminal.
    pub output: Option<String>,
    /// When it became terminal.
    pub completed_at: Option<u64>,
    /// Ids of the control messages already recorded (events, suspend,
    /// resume), with those the executions before it recorded lately.
    pub messages: HashSet<String>,
}

/// Bytes of message ids an execution hands on to the next (see
/// `StoredRecord::seen`): about 450 ids of 32 characters, so the start record
/// stays within its table column (over ~30,000 characters it becomes a blob).
const SEEN_CARRIED_BYTES: usize = 16_000;

/// The ids of the messages `history`'s execution recorded, with those it was
/// handed, oldest first, the most recent within [`SEEN_CARRIED_BYTES`].
pub fn recent_message_ids(history: &History) -> Vec<String> {
    let mut ids: Vec<&String> = Vec::new();
    for stored in &history.records {
        ids.extend(stored.seen.iter());
        ids.extend(stored.message_id.iter());
    }
    let mut bytes = 0;
    let keep = ids
        .iter()
        .rev()
        .take_while(|id| {
            bytes += id.len() + 3;
            bytes <= SEEN_CARRIED_BYTES
        })
        .count();
    ids[ids.len() - keep..]
        .iter()
        .map(|id| (*id).clone())
        .collect()
}

impl InstanceState {
    pub fn of(history: &History) -> Option<InstanceState> {
        let mut state: Option<InstanceState> = None;
        for stored in &history.records {
            match &stored.record {
                Record::Event(HistoryEvent::ExecutionStarted(e)) => {
                    state = Some(InstanceState {
                        name: e.name.clone(),
                        input: e.input.clone(),
                        created: e.timestamp,
                        status: RuntimeStatus::Running,
                        parent: stored.parent.clone(),
                        completed: HashSet::new(),
                        fired: HashSet::new(),
                        scheduled: HashSet::new(),
                        timers: HashMap::new(),
                        output: None,
                        completed_at: None,
                        messages: stored.seen.iter().cloned().collect(),
                    });
                }
                record => {
                    let Some(s) = state.as_mut() else { continue };
                    if let Some(id) = &stored.message_id {
                        s.messages.insert(id.clone());
                    }
                    match record {
                        Record::Event(HistoryEvent::TaskCompleted(c))
                        | Record::Event(HistoryEvent::SubOrchestrationCompleted(c))
                        | Record::Event(HistoryEvent::EntityCallCompleted(c)) => {
                            s.completed.insert(c.task_scheduled_id);
                        }
                        Record::Event(HistoryEvent::TaskFailed(f))
                        | Record::Event(HistoryEvent::SubOrchestrationFailed(f))
                        | Record::Event(HistoryEvent::EntityCallFailed(f)) => {
                            s.completed.insert(f.task_scheduled_id);
                        }
                        Record::Event(HistoryEvent::TimerFired(t)) => {
                            s.fired.insert(t.timer_id);
                        }
                        Record::Event(HistoryEvent::TaskScheduled(t)) => {
                            s.scheduled.insert(t.event_id);
                        }
                        Record::Event(HistoryEvent::TimerCreated(t)) => {
                            s.timers.insert(t.event_id, t.fire_at);
                        }
                        Record::Event(HistoryEvent::ExecutionSuspended) => {
                            s.status = RuntimeStatus::Suspended
                        }
                        Record::Event(HistoryEvent::ExecutionResumed) => {
                            s.status = RuntimeStatus::Running
                        }
                        Record::ExecutionCompleted { status, output, .. } => {
                            s.status = *status;
                            s.output = output.clone();
                            s.completed_at = Some(stored.timestamp);
                        }
                        Record::ExecutionTerminated { reason } => {
                            s.status = RuntimeStatus::Terminated;
                            s.output = Some(
                                serde_json::to_string(&reason.clone().unwrap_or_default())
                                    .expect("strings serialize"),
                            );
                            s.completed_at = Some(stored.timestamp);
                        }
                        Record::ContinuedAsNew { .. } => s.status = RuntimeStatus::ContinuedAsNew,
                        Record::Event(_) => {}
                    }
                }
            }
        }
        state
    }

    /// Activities the history says were dispatched locally (on the owner)
    /// and have no result yet: the ones to run again after a takeover.
    pub fn open_local_tasks(history: &History) -> Vec<TaskScheduled> {
        let Some(state) = InstanceState::of(history) else {
            return Vec::new();
        };
        if state.status.is_terminal() || state.status == RuntimeStatus::ContinuedAsNew {
            return Vec::new();
        }
        history
            .records
            .iter()
            .filter(|r| r.local)
            .filter_map(|r| match &r.record {
                Record::Event(HistoryEvent::TaskScheduled(t))
                    if !state.completed.contains(&t.event_id) =>
                {
                    Some(t.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Fire times of the timers that have not fired yet.
    pub fn open_timers(&self, history: &History) -> Vec<u64> {
        history
            .records
            .iter()
            .filter_map(|r| match &r.record {
                Record::Event(HistoryEvent::TimerCreated(t))
                    if !self.fired.contains(&t.event_id) =>
                {
                    Some(t.fire_at)
                }
                _ => None,
            })
            .collect()
    }

    /// Whether `event` is a result this history must not take: one it
    /// already has, or the result of an activity or timer it never
    /// scheduled. An episode sends its messages before its checkpoint, so a
    /// host that dies in between leaves results of work its history does not
    /// know; the next owner's replay schedules that work again under the
    /// same sequence ids, perhaps as something else (a timer where an
    /// activity was), and a timer with another fire time. Taking such a
    /// result would fire the new timer early or complete the wrong task.
    pub fn is_duplicate(&self, event: &HistoryEvent) -> bool {
        match event {
            HistoryEvent::TaskCompleted(TaskCompleted {
                task_scheduled_id: id,
                ..
            })
            | HistoryEvent::TaskFailed(TaskFailed {
                task_scheduled_id: id,
                ..
            }) => self.completed.contains(id) || !self.scheduled.contains(id),
            HistoryEvent::SubOrchestrationCompleted(c) | HistoryEvent::EntityCallCompleted(c) => {
                self.completed.contains(&c.task_scheduled_id)
            }
            HistoryEvent::SubOrchestrationFailed(f) | HistoryEvent::EntityCallFailed(f) => {
                self.completed.contains(&f.task_scheduled_id)
            }
            HistoryEvent::TimerFired(t) => {
                self.fired.contains(&t.timer_id) || self.timers.get(&t.timer_id) != Some(&t.fire_at)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::model::StoredRecord;
    use crate::runtime::durable::{EventRaised, ExecutionStarted, TimerCreated, TimerFired};

    fn history(records: Vec<StoredRecord>) -> History {
        History {
            execution_id: "e1".into(),
            records,
            ..History::default()
        }
    }

    #[test]
    fn results_and_message_ids_are_remembered() {
        let started = StoredRecord::new(
            Record::Event(HistoryEvent::ExecutionStarted(ExecutionStarted {
                name: "o".into(),
                input: None,
                timestamp: 1,
            })),
            1,
        );
        let completed = HistoryEvent::TaskCompleted(TaskCompleted {
            task_scheduled_id: 3,
            output: None,
        });
        let raised = StoredRecord {
            message_id: Some("m1".into()),
            ..StoredRecord::new(
                Record::Event(HistoryEvent::EventRaised(EventRaised {
                    name: "go".into(),
                    input: None,
                })),
                2,
            )
        };
        let state = InstanceState::of(&history(vec![
            started,
            StoredRecord::new(Record::Event(completed.clone()), 2),
            raised,
        ]))
        .unwrap();
        assert_eq!(state.status, RuntimeStatus::Running);
        assert!(state.is_duplicate(&completed));
        assert!(state.messages.contains("m1"));
        assert!(InstanceState::of(&history(vec![])).is_none());
    }

    /// An execution that follows another is handed the ids of the messages
    /// that one took, and hands them on with its own (the most recent, in
    /// at most SEEN_CARRIED_BYTES).
    #[test]
    fn message_ids_are_handed_to_the_next_execution() {
        let event = |id: &str| StoredRecord {
            message_id: Some(id.into()),
            ..StoredRecord::new(
                Record::Event(HistoryEvent::EventRaised(EventRaised {
                    name: "go".into(),
                    input: None,
                })),
                2,
            )
        };
        let start = |seen: Vec<String>| StoredRecord {
            seen,
            ..StoredRecord::new(
                Record::Event(HistoryEvent::ExecutionStarted(ExecutionStarted {
                    name: "o".into(),
                    input: None,
                    timestamp: 1,
                })),
                1,
            )
        };
        let first = history(vec![start(vec!["old".into()]), event("m1"), event("m2")]);
        let carried = recent_message_ids(&first);
        assert_eq!(carried, ["old", "m1", "m2"]);
        let next = InstanceState::of(&history(vec![start(carried)])).unwrap();
        assert!(next.messages.contains("m1") && next.messages.contains("old"));
        // 1,500 ids of 32 characters: the most recent that fit are carried.
        let id = |i: usize| format!("{i:032}");
        let many: Vec<StoredRecord> = std::iter::once(start(Vec::new()))
            .chain((0..1500).map(|i| event(&id(i))))
            .collect();
        let carried = recent_message_ids(&history(many));
        let fit = SEEN_CARRIED_BYTES / 35;
        assert_eq!(carried.len(), fit);
        assert_eq!(carried[0], id(1500 - fit));
        assert_eq!(carried[fit - 1], id(1499));
        assert!(serde_json::to_string(&carried).unwrap().len() <= SEEN_CARRIED_BYTES);
    }

    /// Results of work whose scheduling the history does not have (sent
    /// by an episode whose checkpoint was lost) are not taken, nor a timer
    /// fired for another fire time than the one recorded.
    #[test]
    fn results_of_work_the_history_never_scheduled_are_dropped() {
        let record = |e: HistoryEvent| StoredRecord::new(Record::Event(e), 1);
        let started = record(HistoryEvent::ExecutionStarted(ExecutionStarted {
            name: "o".into(),
            input: None,
            timestamp: 1,
        }));
        let scheduled = record(HistoryEvent::TaskScheduled(TaskScheduled {
            event_id: 0,
            name: "a".into(),
            input: None,
        }));
        let timer = record(HistoryEvent::TimerCreated(TimerCreated {
            event_id: 1,
            fire_at: 5_000,
        }));
        let state = InstanceState::of(&history(vec![started, scheduled, timer])).unwrap();
        let done = |id| {
            HistoryEvent::TaskCompleted(TaskCompleted {
                task_scheduled_id: id,
                output: None,
            })
        };
        let fired = |id, fire_at| {
            HistoryEvent::TimerFired(TimerFired {
                timer_id: id,
                fire_at,
            })
        };
        assert!(!state.is_duplicate(&done(0)));
        assert!(state.is_duplicate(&done(1)), "1 is a timer");
        assert!(state.is_duplicate(&done(2)), "2 was never scheduled");
        assert!(!state.is_duplicate(&fired(1, 5_000)));
        assert!(
            state.is_duplicate(&fired(1, 4_000)),
            "a lost attempt's timer"
        );
        assert!(state.is_duplicate(&fired(0, 5_000)), "0 is an activity");
    }
}
