//! Orchestration episodes: take an instance's new control messages, replay
//! its history in the guest, and checkpoint in DESIGN.md's order — enqueue
//! outbound messages, write the history (ETag-checked), update the Instances
//! row, and only then delete the inbound messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;

use crate::config::Trigger;
use crate::runtime::Sandbox;
use crate::runtime::durable::{
    Action, ExecutionStarted, Failure, HistoryEvent, OrchestratorRequest, TaskCompleted,
    TaskFailed, TimerFired,
};
use crate::storage::{QueueMessage, StorageError};

use super::Engine;
use super::history::{self, History};
use super::hub::MAX_DELAY;
use super::model::{
    ControlEvent, ControlMessage, InstanceRow, Record, RuntimeStatus, StoredRecord, WorkItem,
    now_ms,
};
use super::state::InstanceState;

/// A received control message and its decoded content.
pub struct Inbound {
    pub message: QueueMessage,
    pub control: ControlMessage,
}

/// A message this episode must send before it checkpoints.
enum Outbound {
    Control(ControlMessage, Duration),
    Work(WorkItem),
}

/// How an episode ended.
enum Outcome {
    /// Checkpointed: delete these inbound messages.
    Done,
    /// Leave the messages for later (made visible again after the delay).
    Retry(Duration),
}

/// Process one partition's batch: instances in parallel, each instance's
/// messages in arrival order in one episode.
pub async fn process_batch(engine: &Arc<Engine>, partition: u32, batch: Vec<Inbound>) {
    let mut by_instance: BTreeMap<String, Vec<Inbound>> = BTreeMap::new();
    for inbound in batch {
        by_instance
            .entry(inbound.control.instance_id.clone())
            .or_default()
            .push(inbound);
    }
    futures::stream::iter(by_instance)
        .for_each_concurrent(engine.config.max_orchestrations, |(id, messages)| {
            let engine = engine.clone();
            async move {
                let queue = engine.hub.control_queue(partition);
                let outcome = match episode(&engine, &id, &messages).await {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        tracing::warn!("orchestration '{id}': episode failed, will retry: {e}");
                        Outcome::Retry(Duration::from_secs(1))
                    }
                };
                let s = &engine.hub.storage;
                for inbound in &messages {
                    let result = match outcome {
                        Outcome::Done => s.queues.delete(&queue, &inbound.message).await,
                        Outcome::Retry(delay) => s
                            .queues
                            .set_visibility(&queue, &inbound.message, delay)
                            .await
                            .map(|_| ()),
                    };
                    if let Err(e) = result {
                        tracing::debug!(
                            "orchestration '{id}': settling message {}: {e}",
                            inbound.message.id
                        );
                    }
                }
            }
        })
        .await;
}

/// One episode, retried once when another writer checkpointed first.
async fn episode(
    engine: &Arc<Engine>,
    id: &str,
    messages: &[Inbound],
) -> Result<Outcome, StorageError> {
    match try_episode(engine, id, messages).await {
        Err(StorageError::Conflict(_)) => {
            tracing::debug!("orchestration '{id}': history changed under us; replaying again");
            engine.forget_history(id);
            try_episode(engine, id, messages).await
        }
        Err(e) => {
            engine.forget_history(id);
            Err(e)
        }
        other => other,
    }
}

async fn try_episode(
    engine: &Arc<Engine>,
    id: &str,
    messages: &[Inbound],
) -> Result<Outcome, StorageError> {
    let hub = &engine.hub;
    let now = now_ms();
    // The history this host wrote last time, if it still has it: the sentinel's
    // ETag check at the checkpoint catches a copy that another host outdated.
    let loaded = match engine.cached_history(id) {
        Some(h) => Some(h),
        None => history::load(hub, id).await?,
    };
    let state = loaded.as_ref().and_then(InstanceState::of);
    tracing::debug!(
        "orchestration '{id}': episode with {} new message(s)",
        messages.len()
    );

    // A start message begins a new execution when there is none yet, or the
    // previous one finished (a restart) or continued as new.
    let start = messages.iter().find_map(|m| match &m.control.event {
        ControlEvent::Event(HistoryEvent::ExecutionStarted(e)) => Some((m, e.clone())),
        _ => None,
    });
    let current_execution = loaded.as_ref().map(|h| h.execution_id.clone());
    let starting = match (&start, &state) {
        (Some((m, _)), None) => m.control.execution_id.clone(),
        (Some((m, _)), Some(s))
            if (s.status.is_terminal() || s.status == RuntimeStatus::ContinuedAsNew)
                && m.control.execution_id != current_execution =>
        {
            m.control.execution_id.clone()
        }
        _ => None,
    };

    let Some(execution_id) = starting.clone().or(current_execution) else {
        // Messages for an instance that has not started: its start message may
        // still be on its way. Give up after 5 tries.
        let tries = most_tries(messages);
        if tries < 5 || super::instances::get(hub, id).await?.is_some() {
            // The start message is on its way (or hidden on a dead host): keep waiting.
            return Ok(Outcome::Retry(Duration::from_secs(if tries < 5 {
                2
            } else {
                10
            })));
        }
        tracing::warn!(
            "orchestration '{id}': dropping {} message(s) for an instance that does not exist",
            messages.len()
        );
        return Ok(Outcome::Done);
    };
    let mut history = loaded.unwrap_or_default();
    let mut status = match (&starting, &state) {
        (Some(_), _) | (None, None) => RuntimeStatus::Running,
        (None, Some(s)) => s.status,
    };
    if starting.is_none() && status == RuntimeStatus::ContinuedAsNew {
        // The next execution's start message is on its way: events wait for it.
        return Ok(Outcome::Retry(Duration::from_secs(1)));
    }
    if starting.is_none() && status.is_terminal() {
        tracing::debug!(
            "orchestration '{id}': ignoring {} message(s) after it finished",
            messages.len()
        );
        if let Some(state) = &state
            && !repair_row(engine, id, &history, state).await?
        {
            // The row names a newer execution (a restart): its start is coming.
            return Ok(Outcome::Retry(Duration::from_secs(2)));
        }
        return Ok(Outcome::Done);
    }

    let mut new: Vec<StoredRecord> = vec![StoredRecord::new(
        Record::Event(HistoryEvent::OrchestratorStarted(now)),
        now,
    )];
    let mut outbound: Vec<Outbound> = Vec::new();
    // Task and timer results, and message ids, already taken in this batch.
    let mut batch_results: std::collections::HashSet<(bool, u32)> = Default::default();
    let mut batch_messages: std::collections::HashSet<String> = Default::default();
    let mut parent = state
        .as_ref()
        .filter(|_| starting.is_none())
        .and_then(|s| s.parent.clone());
    let mut name = state.as_ref().map(|s| s.name.clone()).unwrap_or_default();
    let mut input = state.as_ref().and_then(|s| s.input.clone());
    let mut created = state.as_ref().map_or(now, |s| s.created);
    let mut terminated: Option<Option<String>> = None;
    let blank = InstanceState {
        name: String::new(),
        input: None,
        created: now,
        status,
        parent: None,
        completed: Default::default(),
        fired: Default::default(),
        output: None,
        completed_at: None,
        messages: Default::default(),
    };
    let seen = state
        .as_ref()
        .filter(|_| starting.is_none())
        .unwrap_or(&blank);

    for m in messages {
        let c = &m.control;
        let for_us =
            c.execution_id.is_none() || c.execution_id.as_deref() == Some(execution_id.as_str());
        // An event or operation already recorded (redelivered after a crash) is skipped.
        if let Some(mid) = &c.id
            && (seen.messages.contains(mid) || !batch_messages.insert(mid.clone()))
        {
            continue;
        }
        let record = |record: Record| StoredRecord {
            message_id: c.id.clone(),
            ..StoredRecord::new(record, now)
        };
        match &c.event {
            ControlEvent::Event(HistoryEvent::ExecutionStarted(e)) => {
                if starting.is_some() && c.execution_id.as_deref() == Some(execution_id.as_str()) {
                    name = e.name.clone();
                    input = e.input.clone();
                    created = e.timestamp;
                    parent = c.parent.clone();
                    let mut record = StoredRecord::new(
                        Record::Event(HistoryEvent::ExecutionStarted(e.clone())),
                        now,
                    );
                    record.parent = c.parent.clone();
                    new.push(record);
                }
            }
            ControlEvent::Event(HistoryEvent::TimerFired(t)) if t.fire_at > now + 1000 => {
                // A long timer arrives in steps of at most 6 days: re-arm it.
                if for_us {
                    let left = Duration::from_millis(t.fire_at - now).min(MAX_DELAY);
                    outbound.push(Outbound::Control(c.clone(), left));
                }
            }
            ControlEvent::Event(event) => {
                let repeated = result_id(event).is_some_and(|key| !batch_results.insert(key));
                if for_us && !seen.is_duplicate(event) && !repeated {
                    new.push(record(Record::Event(event.clone())));
                }
            }
            ControlEvent::Terminate { reason } => terminated = Some(reason.clone()),
            ControlEvent::Suspend { .. } if status == RuntimeStatus::Running => {
                status = RuntimeStatus::Suspended;
                new.push(record(Record::Event(HistoryEvent::ExecutionSuspended)));
            }
            ControlEvent::Resume { .. } if status == RuntimeStatus::Suspended => {
                status = RuntimeStatus::Running;
                new.push(record(Record::Event(HistoryEvent::ExecutionResumed)));
            }
            ControlEvent::Suspend { .. } | ControlEvent::Resume { .. } => {}
        }
    }

    // Nothing new (duplicates, stale timers): no episode, just settle the messages.
    if new.len() == 1 && terminated.is_none() && starting.is_none() {
        send_all(engine, outbound).await?;
        return Ok(Outcome::Done);
    }

    let mut output: Option<String> = None;
    let mut custom_status: Option<Option<String>> = None;
    let mut continue_as_new: Option<Option<String>> = None;
    if let Some(reason) = terminated {
        status = RuntimeStatus::Terminated;
        output = Some(
            serde_json::to_string(&reason.clone().unwrap_or_default()).expect("strings serialize"),
        );
        new.push(StoredRecord::new(
            Record::ExecutionTerminated {
                reason: reason.clone(),
            },
            now,
        ));
        if let Some(p) = &parent {
            outbound.push(notify_parent(
                p,
                Err(failure(
                    "Terminated",
                    &format!(
                        "sub-orchestration '{id}' was terminated: {}",
                        reason.unwrap_or_default()
                    ),
                )),
            ));
        }
    } else if status == RuntimeStatus::Running {
        let function = engine
            .catalog
            .table()
            .find(&name, |t| matches!(t, Trigger::Orchestration));
        let response = match function {
            None if most_tries(messages) < 5 => {
                tracing::warn!(
                    "orchestration '{id}': no orchestrator function '{name}' is loaded; retrying in 10 s"
                );
                return Ok(Outcome::Retry(Duration::from_secs(10)));
            }
            None => Err(failure(
                "FunctionNotFound",
                &format!("no orchestrator function named '{name}' is loaded"),
            )),
            Some(function) => {
                // A new execution (start, restart, continue-as-new) begins with no past.
                let past = if starting.is_some() {
                    Vec::new()
                } else {
                    guest_events(&history.records)
                };
                let request = OrchestratorRequest {
                    instance_id: id.to_string(),
                    past,
                    new: guest_events(&new),
                };
                let invocation = crate::triggers::invocation(&function.name);
                crate::triggers::log_executing(&invocation, "(null)");
                let started = std::time::Instant::now();
                let sandbox = Sandbox {
                    now_ms: now,
                    seed: u64::from(super::hub::fnv1a(id.as_bytes())) << 32
                        | u64::from(super::hub::fnv1a(execution_id.as_bytes())),
                };
                let response = engine
                    .runtime
                    .invoke_orchestrator(&function.component, &invocation, request, sandbox)
                    .await;
                let error = response.as_ref().err().map(|e| e as &dyn std::fmt::Display);
                crate::triggers::log_executed(&invocation, error, started.elapsed());
                response.map_err(|e| failure("OrchestratorFailed", &e.to_string()))
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(f) => {
                let parts = (starting, new, parent, input);
                return finish_failed(engine, id, history, parts, &name, created, now, f).await;
            }
        };
        custom_status = Some(response.custom_status.clone());
        for action in response.actions {
            match action {
                Action::ScheduleActivity(t) => {
                    outbound.push(Outbound::Work(WorkItem {
                        instance_id: id.to_string(),
                        execution_id: execution_id.clone(),
                        task_scheduled_id: t.event_id,
                        name: t.name.clone(),
                        input: t.input.clone(),
                    }));
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::TaskScheduled(t)),
                        now,
                    ));
                }
                Action::CreateTimer(t) => {
                    let fired = ControlMessage {
                        instance_id: id.to_string(),
                        execution_id: Some(execution_id.clone()),
                        event: ControlEvent::Event(HistoryEvent::TimerFired(TimerFired {
                            timer_id: t.event_id,
                            fire_at: t.fire_at,
                        })),
                        parent: None,
                        id: None,
                    };
                    let delay = Duration::from_millis(t.fire_at.saturating_sub(now)).min(MAX_DELAY);
                    outbound.push(Outbound::Control(fired, delay));
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::TimerCreated(t)),
                        now,
                    ));
                }
                Action::CallSubOrchestrator(s) => {
                    outbound.push(Outbound::Control(
                        ControlMessage {
                            instance_id: s.instance_id.clone(),
                            execution_id: Some(uuid::Uuid::new_v4().simple().to_string()),
                            event: ControlEvent::Event(HistoryEvent::ExecutionStarted(
                                ExecutionStarted {
                                    name: s.name.clone(),
                                    input: s.input.clone(),
                                    timestamp: now,
                                },
                            )),
                            parent: Some(super::model::Parent {
                                instance_id: id.to_string(),
                                execution_id: execution_id.clone(),
                                task_scheduled_id: s.event_id,
                            }),
                            id: None,
                        },
                        Duration::ZERO,
                    ));
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::SubOrchestrationCreated(s)),
                        now,
                    ));
                }
                Action::SendEvent(e) => {
                    outbound.push(Outbound::Control(
                        ControlMessage {
                            instance_id: e.instance_id.clone(),
                            execution_id: None,
                            event: ControlEvent::Event(HistoryEvent::EventRaised(
                                crate::runtime::durable::EventRaised {
                                    name: e.name.clone(),
                                    input: e.input.clone(),
                                },
                            )),
                            parent: None,
                            id: Some(format!("{id}:{execution_id}:{}", e.event_id)),
                        },
                        Duration::ZERO,
                    ));
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::EventSent(e)),
                        now,
                    ));
                }
                Action::Complete(result) => {
                    let (record_status, out, fail) = match result {
                        Ok(out) => (RuntimeStatus::Completed, out, None),
                        Err(f) => (RuntimeStatus::Failed, Some(failure_output(&f)), Some(f)),
                    };
                    status = record_status;
                    output = out.clone();
                    if let Some(p) = &parent {
                        outbound.push(notify_parent(p, fail.clone().map_or(Ok(out.clone()), Err)));
                    }
                    new.push(StoredRecord::new(
                        Record::ExecutionCompleted {
                            status: record_status,
                            output: out,
                            failure: fail,
                        },
                        now,
                    ));
                    break;
                }
                Action::ContinueAsNew(c) => {
                    status = RuntimeStatus::ContinuedAsNew;
                    continue_as_new = Some(c.input.clone());
                    new.push(StoredRecord::new(
                        Record::ContinuedAsNew { input: c.input },
                        now,
                    ));
                    break;
                }
            }
        }
    }

    if let Some(next_input) = &continue_as_new {
        outbound.push(Outbound::Control(
            ControlMessage {
                instance_id: id.to_string(),
                execution_id: Some(uuid::Uuid::new_v4().simple().to_string()),
                event: ControlEvent::Event(HistoryEvent::ExecutionStarted(ExecutionStarted {
                    name: name.clone(),
                    input: next_input.clone(),
                    timestamp: created,
                })),
                parent: parent.clone(),
                id: None,
            },
            Duration::ZERO,
        ));
    }

    // 1. Outbound messages first: an effect is durable before its cause is deleted.
    send_all(engine, outbound).await?;
    // 2. The history, guarded by the sentinel's ETag.
    let new_execution = starting.filter(|e| Some(e) != history_execution(&history).as_ref());
    history = history::append(hub, id, history, new_execution, new).await?;
    if status.is_terminal() {
        engine.forget_history(id);
    } else {
        engine.cache_history(id, history.clone());
    }
    // 3. The Instances row.
    let row = InstanceRow {
        instance_id: id.to_string(),
        name,
        execution_id,
        status,
        input: if continue_as_new.is_some() {
            continue_as_new.clone().flatten()
        } else {
            input
        },
        output,
        custom_status: match custom_status {
            Some(set) => set,
            // The guest did not run (suspend, terminate, events while suspended): keep it.
            None => super::instances::get(hub, id)
                .await?
                .and_then(|r| r.custom_status),
        },
        created,
        last_updated: now,
        completed: status.is_terminal().then_some(now),
    };
    super::instances::put(hub, &row).await?;
    tracing::debug!(
        "orchestration '{id}': checkpointed, {} history records, {}",
        history.records.len(),
        status.as_str()
    );
    if status.is_terminal() {
        engine.finished(id);
    }
    Ok(Outcome::Done)
}

/// A host that died between writing the final history and updating the
/// Instances row left the row behind; its redelivered messages land here.
async fn repair_row(
    engine: &Arc<Engine>,
    id: &str,
    history: &History,
    state: &InstanceState,
) -> Result<bool, StorageError> {
    let row = super::instances::get(&engine.hub, id).await?;
    if let Some(r) = &row
        && r.execution_id != history.execution_id
    {
        return Ok(false);
    }
    if row.as_ref().is_some_and(|r| r.status == state.status) {
        return Ok(true);
    }
    tracing::info!(
        "orchestration '{id}': bringing its status up to date with its history ({})",
        state.status.as_str()
    );
    let completed = state.completed_at.unwrap_or_else(now_ms);
    let repaired = InstanceRow {
        instance_id: id.to_string(),
        name: state.name.clone(),
        execution_id: history.execution_id.clone(),
        status: state.status,
        input: state.input.clone(),
        output: state.output.clone(),
        custom_status: row.and_then(|r| r.custom_status),
        created: state.created,
        last_updated: completed,
        completed: Some(completed),
    };
    super::instances::put(&engine.hub, &repaired).await?;
    engine.finished(id);
    Ok(true)
}

fn history_execution(h: &History) -> Option<String> {
    (!h.execution_id.is_empty()).then(|| h.execution_id.clone())
}

/// What a failing episode had gathered: the new execution id (if starting),
/// the new records, the parent, and the input.
type EpisodeParts = (
    Option<String>,
    Vec<StoredRecord>,
    Option<super::model::Parent>,
    Option<String>,
);

/// How often the most-received of these messages was received.
fn most_tries(messages: &[Inbound]) -> u32 {
    messages
        .iter()
        .map(|m| m.message.dequeue_count)
        .max()
        .unwrap_or(0)
}

/// Fail the instance without running the guest (no function, or the guest trapped).
#[allow(clippy::too_many_arguments)]
async fn finish_failed(
    engine: &Arc<Engine>,
    id: &str,
    history: History,
    (starting, mut new, parent, input): EpisodeParts,
    name: &str,
    created: u64,
    now: u64,
    f: Failure,
) -> Result<Outcome, StorageError> {
    tracing::error!("orchestration '{id}' failed: {}", f.message);
    let output = failure_output(&f);
    if let Some(p) = &parent {
        send_all(engine, vec![notify_parent(p, Err(f.clone()))]).await?;
    }
    new.push(StoredRecord::new(
        Record::ExecutionCompleted {
            status: RuntimeStatus::Failed,
            output: Some(output.clone()),
            failure: Some(f),
        },
        now,
    ));
    let execution_id = starting
        .clone()
        .unwrap_or_else(|| history.execution_id.clone());
    let new_execution = starting.filter(|e| Some(e) != history_execution(&history).as_ref());
    history::append(&engine.hub, id, history, new_execution, new).await?;
    let row = InstanceRow {
        instance_id: id.to_string(),
        name: name.to_string(),
        execution_id,
        status: RuntimeStatus::Failed,
        input,
        output: Some(output),
        custom_status: None,
        created,
        last_updated: now,
        completed: Some(now),
    };
    super::instances::put(&engine.hub, &row).await?;
    engine.forget_history(id);
    engine.finished(id);
    Ok(Outcome::Done)
}

pub fn failure(error_type: &str, message: &str) -> Failure {
    Failure {
        error_type: error_type.to_string(),
        message: message.to_string(),
        details: None,
    }
}

/// A failed instance's `output`, as Durable Functions shows it: the message text.
fn failure_output(f: &Failure) -> String {
    serde_json::to_string(&format!("{}: {}", f.error_type, f.message)).expect("strings serialize")
}

fn notify_parent(
    parent: &super::model::Parent,
    result: Result<Option<String>, Failure>,
) -> Outbound {
    let event = match result {
        Ok(output) => HistoryEvent::SubOrchestrationCompleted(TaskCompleted {
            task_scheduled_id: parent.task_scheduled_id,
            output,
        }),
        Err(failure) => HistoryEvent::SubOrchestrationFailed(TaskFailed {
            task_scheduled_id: parent.task_scheduled_id,
            failure,
        }),
    };
    Outbound::Control(
        ControlMessage {
            instance_id: parent.instance_id.clone(),
            execution_id: Some(parent.execution_id.clone()),
            event: ControlEvent::Event(event),
            parent: None,
            id: None,
        },
        Duration::ZERO,
    )
}

/// The id a result event completes: (is a timer, id); None for other events.
fn result_id(event: &HistoryEvent) -> Option<(bool, u32)> {
    match event {
        HistoryEvent::TaskCompleted(c) | HistoryEvent::SubOrchestrationCompleted(c) => {
            Some((false, c.task_scheduled_id))
        }
        HistoryEvent::TaskFailed(f) | HistoryEvent::SubOrchestrationFailed(f) => {
            Some((false, f.task_scheduled_id))
        }
        HistoryEvent::TimerFired(t) => Some((true, t.timer_id)),
        _ => None,
    }
}

/// The guest's view of the history: its own events only.
fn guest_events(records: &[StoredRecord]) -> Vec<HistoryEvent> {
    records
        .iter()
        .filter_map(|r| match &r.record {
            Record::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// Send every outbound message, 32 at a time, and wake this host's pollers.
async fn send_all(engine: &Arc<Engine>, outbound: Vec<Outbound>) -> Result<(), StorageError> {
    let results: Vec<Result<(), StorageError>> = futures::stream::iter(outbound)
        .map(|o| {
            let engine = engine.clone();
            async move {
                match o {
                    Outbound::Control(message, delay) => {
                        let partition = engine.hub.send_control(&message, delay).await?;
                        if delay.is_zero() {
                            engine.wake_partition(partition);
                        }
                    }
                    Outbound::Work(item) => {
                        engine.hub.send_work(&item).await?;
                        engine.wake_activities();
                    }
                }
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}
