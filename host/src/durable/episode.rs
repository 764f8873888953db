//! One orchestration episode: take an instance's new work, replay (or, with
//! an extended session, continue) the orchestrator in the guest, and
//! checkpoint in DESIGN.md's order: outbound messages, the history
//! (ETag-checked), the Instances row, and only then are the inbound messages
//! settled. Activities the episode schedules run on this host right after the
//! checkpoint while it has free activity slots (local dispatch); the rest go
//! to `{hub}-workitems` for any host.
//!
//! Status rows: a final status is written before the messages that caused it
//! are settled; other visible changes (Pending to Running, custom status) are
//! written within a second, so a short orchestration writes its row once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::Digest;

use crate::config::Trigger;
use crate::runtime::Sandbox;
use crate::runtime::durable::{
    Action, EventRaised, ExecutionStarted, Failure, HistoryEvent, OrchestratorRequest,
    TaskCompleted, TaskFailed, TimerFired,
};
use crate::storage::StorageError;

use super::Engine;
use super::history::{self, History};
use super::hub::max_delay;
use super::instances::{self, Guard};
use super::model::{
    ControlEvent, ControlMessage, InstanceRow, Parent, Record, RuntimeStatus, StoredRecord,
    WorkItem, now_ms,
};
use super::partition::{Cached, Partition, Work};
use super::state::InstanceState;
use crate::storage::queue_delay;

/// How long a non-final status change may wait for the next one.
const ROW_DELAY: Duration = Duration::from_secs(1);
/// How long the history records of episodes that only ran local activities
/// may wait for their checkpoint: the next episodes' records join them, so
/// a chain of quick activities is written in a few transactions, not one per
/// step. A host that dies in that window loses nothing acknowledged: the
/// messages behind those records are deleted only after the checkpoint, and
/// the activities run again.
const CHECKPOINT_DELAY: Duration = Duration::from_millis(50);
/// The same for an episode whose start a client waits on (its 202 comes after
/// the checkpoint): short, but long enough for a quick orchestration to finish
/// first, so that its history and final status are written once each.
const START_DELAY: Duration = Duration::from_millis(10);
/// When the queued copy of a local start comes (see `unheld_start`): after
/// the start's 30 s acknowledgement has given up and a dead owner's lease
/// has ended.
const START_RECOVERY: Duration = Duration::from_secs(60);
/// Records kept unwritten at most (a long fan-out is written in parts).
const MAX_UNWRITTEN: usize = 2000;

/// How an episode ended.
pub enum Outcome {
    /// Done: these works' effects are checkpointed: settle their queue
    /// messages, answer the clients waiting on them.
    Done(Vec<Work>),
    /// Keep the works and try again after the delay.
    Retry(Duration),
}

/// One episode, replayed once more if another writer checkpointed first.
pub async fn run(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    works: &[Work],
    cache: &mut Option<Cached>,
    tries: u32,
) -> Result<Outcome, StorageError> {
    if super::entity::is_entity(id) {
        return super::entity::run(engine, part, id, works, cache, tries).await;
    }
    // The works behind records earlier episodes left unwritten. An attempt
    // takes the cache that holds them; if it fails after that (a checkpoint
    // that storage refused or did not confirm), they must be taken again,
    // else a local start (no queue message holds it) would be lost and its
    // client told it was not confirmed.
    let mut tail: Vec<Work> = cache
        .as_ref()
        .map(|c| c.tail_works.clone())
        .unwrap_or_default();
    let mut result = attempt(engine, part, id, works, cache, tries).await;
    if matches!(result, Err(StorageError::Conflict(_))) {
        tracing::debug!("orchestration '{id}': history changed under us; replaying again");
        // What the lost records came from is applied again, after a reload.
        if let Some(c) = cache.take() {
            tail = c.tail_works;
        }
        let mut again = tail.clone();
        again.extend(works.iter().cloned());
        // The history is read this time, even for a start of a new id: the
        // conflict may be our own first checkpoint, written but not confirmed.
        for w in &mut again {
            if let Work::Message { new_id, .. } = w {
                *new_id = false;
            }
        }
        result = attempt(engine, part, id, &again, cache, tries).await;
    }
    if result.is_err() && cache.is_none() && !tail.is_empty() {
        // The caller takes the failed episode's works again, and the cache's tail.
        *cache = Some(Cached {
            tail_works: tail,
            ..Cached::new(History::default())
        });
    }
    result
}

/// What the episode will send before its checkpoint, and run after it.
#[derive(Default)]
struct Effects {
    /// Control messages without delay (packed by the outbox).
    control: Vec<ControlMessage>,
    /// Timers and re-armed timers: (message, delay).
    delayed: Vec<(ControlMessage, Duration)>,
    /// Activities to schedule.
    work: Vec<WorkItem>,
}

async fn attempt(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    works: &[Work],
    cache: &mut Option<Cached>,
    tries: u32,
) -> Result<Outcome, StorageError> {
    let hub = &engine.hub;
    let now = now_ms();
    if cache.is_none() && works.iter().all(|w| matches!(w, Work::Flush { .. })) {
        // Nothing deferred survives a dropped cache: nothing to write.
        return Ok(Outcome::Done(Vec::new()));
    }
    let fresh = cache.is_none();
    // A start of an id the client just made up has no history to read, unless
    // an earlier try of this start failed: its checkpoint may have landed.
    let unused_id = tries == 0
        && works
            .iter()
            .any(|w| matches!(w, Work::Message { new_id: true, .. }));
    if fresh
        && !unused_id
        && let Some(history) = history::load(hub, id).await?
    {
        *cache = Some(Cached::new(history));
    }
    let rewinds: Vec<(Option<String>, Option<String>)> = works
        .iter()
        .filter_map(|w| match w {
            Work::Message {
                message:
                    ControlMessage {
                        event: ControlEvent::Rewind { reason },
                        execution_id,
                        ..
                    },
                ..
            } => Some((execution_id.clone(), reason.clone())),
            _ => None,
        })
        .collect();
    if let Some((execution, reason)) = rewinds.into_iter().next() {
        rewind(engine, part, id, cache, execution, reason).await?;
    }
    let recover = fresh || works.iter().any(|w| matches!(w, Work::Recover));
    let state = cache.as_ref().and_then(|c| InstanceState::of(&c.history));
    if recover && let (Some(c), Some(s)) = (cache.as_ref(), state.as_ref()) {
        for fire_at in s.open_timers(&c.history) {
            part.due_at(instant_of(fire_at));
        }
    }
    // A start that only its Pending row records: the host that took it (and
    // wrote the row instead of a queue message) died before running it.
    let mut recovered_start = Vec::new();
    let only_recover = works.iter().any(|w| matches!(w, Work::Recover))
        && !works.iter().any(|w| matches!(w, Work::Message { .. }));
    if only_recover
        && state.as_ref().is_none_or(|s| s.status.is_terminal())
        && let Some(row) = instances::get(hub, id).await?
        && row.status == RuntimeStatus::Pending
        && cache
            .as_ref()
            .is_none_or(|c| c.history.execution_id != row.execution_id)
    {
        tracing::info!("orchestration '{id}': starting it from its Pending status row");
        recovered_start.push(ControlMessage {
            instance_id: id.to_string(),
            execution_id: Some(row.execution_id),
            event: ControlEvent::Event(HistoryEvent::ExecutionStarted(ExecutionStarted {
                name: row.name,
                input: row.input,
                timestamp: row.created,
            })),
            parent: None,
            id: None,
        });
    }
    let mut messages: Vec<&ControlMessage> = works
        .iter()
        .filter_map(|w| match w {
            Work::Message { message, .. } => Some(message),
            _ => None,
        })
        .chain(&recovered_start)
        .collect();
    // A start before everything else it came with: events that waited for it
    // (sent while the instance continued as new, or before a restart) belong
    // to the execution it begins, and only records after the start are that
    // execution's (a redelivered copy of one recorded before it was taken again).
    messages.sort_by_key(|m| {
        !matches!(
            m.event,
            ControlEvent::Event(HistoryEvent::ExecutionStarted(_))
        )
    });
    if messages.is_empty() {
        if recover {
            match (cache.as_ref(), state.as_ref()) {
                // A history that finished behind a row that says otherwise:
                // its host died between the two writes, and no message is
                // left to bring the row up to date (a local start whose
                // activities ran here is in no queue).
                (Some(c), Some(s)) if s.status.is_terminal() => {
                    repair_row(engine, id, &c.history, s).await?;
                    *cache = None;
                }
                _ => redispatch(engine, part, id, cache.as_ref(), &HashSet::new()).await?,
            }
        }
        let settle = flush_deferred(engine, part, id, cache, works).await?;
        return Ok(Outcome::Done(settle));
    }

    tracing::debug!(
        "orchestration '{id}': episode with {} new message(s)",
        messages.len()
    );
    // A start message begins a new execution when there is none yet, or the
    // previous one finished (a restart) or continued as new.
    let current_execution = cache.as_ref().map(|c| c.history.execution_id.clone());
    let mut starting = None;
    for m in &messages {
        if !matches!(
            m.event,
            ControlEvent::Event(HistoryEvent::ExecutionStarted(_))
        ) {
            continue;
        }
        match &state {
            None => starting = m.execution_id.clone(),
            Some(s)
                if (s.status.is_terminal() || s.status == RuntimeStatus::ContinuedAsNew)
                    && m.execution_id != current_execution =>
            {
                // The start of an execution that already ran here (the
                // queued copy of a local start, a continue-as-new or
                // sub-orchestration start delivered again) is stale: taking
                // it would run a finished instance once more from an old input.
                let Some(execution) = &m.execution_id else {
                    continue;
                };
                if !history::has_execution(hub, id, execution).await? {
                    starting = Some(execution.clone());
                }
            }
            Some(_) => {}
        }
        if starting.is_some() {
            break;
        }
    }

    let Some(execution_id) = starting.clone().or(current_execution) else {
        // Messages for an instance that has not started: its start message may
        // still be on its way. Give up after 5 tries.
        if tries < 5 || instances::get(hub, id).await?.is_some() {
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
        return Ok(Outcome::Done(helds(works)));
    };
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
        if let (Some(c), Some(s)) = (cache.as_ref(), &state)
            && !repair_row(engine, id, &c.history, s).await?
        {
            // The row names a newer execution (a restart): its start is coming.
            return Ok(Outcome::Retry(Duration::from_secs(2)));
        }
        *cache = None;
        return Ok(Outcome::Done(helds(works)));
    }

    let mut new: Vec<StoredRecord> = vec![StoredRecord::new(
        Record::Event(HistoryEvent::OrchestratorStarted(now)),
        now,
    )];
    let mut effects = Effects::default();
    // Task and timer results, and message ids, already taken in this batch.
    let mut batch_results: HashSet<(bool, u32)> = HashSet::new();
    let mut batch_messages: HashSet<String> = HashSet::new();
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
        scheduled: Default::default(),
        timers: Default::default(),
        output: None,
        completed_at: None,
        messages: Default::default(),
    };
    let seen = state
        .as_ref()
        .filter(|_| starting.is_none())
        .unwrap_or(&blank);
    // A new execution after another (continue-as-new, restart) is handed the
    // ids of the messages that one took: a late copy of one is not taken again.
    let carried: Vec<String> = match (&starting, cache.as_ref()) {
        (Some(_), Some(c)) if state.is_some() => super::state::recent_message_ids(&c.history),
        _ => Vec::new(),
    };
    let carried_set: HashSet<&str> = carried.iter().map(String::as_str).collect();
    // Results of tasks that ran here: no longer in flight once checkpointed.
    let mut consumed_local: Vec<u32> = Vec::new();

    for c in &messages {
        let for_us =
            c.execution_id.is_none() || c.execution_id.as_deref() == Some(execution_id.as_str());
        // An event or operation already recorded (redelivered after a crash) is skipped.
        if let Some(mid) = &c.id
            && (seen.messages.contains(mid)
                || carried_set.contains(mid.as_str())
                || !batch_messages.insert(mid.clone()))
        {
            continue;
        }
        let record = |record: Record| StoredRecord {
            message_id: c.id.clone(),
            ..StoredRecord::new(record, now)
        };
        match &c.event {
            ControlEvent::Event(HistoryEvent::ExecutionStarted(e)) => {
                // Once: the same start can come twice in one batch (sent
                // again by a parent replaying after a crash, or redelivered).
                let recorded = new
                    .iter()
                    .any(|r| matches!(r.record, Record::Event(HistoryEvent::ExecutionStarted(_))));
                if starting.is_some()
                    && c.execution_id.as_deref() == Some(execution_id.as_str())
                    && !recorded
                {
                    name = e.name.clone();
                    input = e.input.clone();
                    created = e.timestamp;
                    parent = c.parent.clone();
                    let mut record = StoredRecord::new(
                        Record::Event(HistoryEvent::ExecutionStarted(e.clone())),
                        now,
                    );
                    record.parent = c.parent.clone();
                    record.seen = carried.clone();
                    new.push(record);
                }
            }
            ControlEvent::Event(HistoryEvent::TimerFired(t)) if t.fire_at > now => {
                // A long timer arrives in steps of at most 6 days: re-arm it. (So
                // does one that came early by this host's clock: a timer never
                // fires before its time.)
                if for_us {
                    super::Stats::add(&engine.stats.timer_rearms, 1);
                    let left = Duration::from_millis(t.fire_at - now).min(max_delay());
                    part.due_at(instant_of(now + queue_delay(left).as_millis() as u64));
                    effects.delayed.push(((*c).clone(), left));
                }
            }
            ControlEvent::Event(event) => {
                let key = result_id(event);
                let repeated = key.is_some_and(|key| !batch_results.insert(key));
                if for_us && !seen.is_duplicate(event) && !repeated {
                    if let Some((false, task)) = key {
                        consumed_local.push(task);
                    }
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
            // Done before the episode (see `rewind`).
            ControlEvent::Rewind { .. } => {}
            ControlEvent::Entity(op) => tracing::warn!(
                "orchestration '{id}': ignoring entity operation '{}' (entity ids are @name@key)",
                op.operation
            ),
        }
    }

    // Nothing new (duplicates, stale timers): no episode, just settle the messages.
    if new.len() == 1 && terminated.is_none() && starting.is_none() {
        send_effects(engine, effects).await?;
        if recover {
            redispatch(engine, part, id, cache.as_ref(), &HashSet::new()).await?;
        }
        let settle = flush_deferred(engine, part, id, cache, works).await?;
        return Ok(Outcome::Done(settle));
    }

    // From here the cached state is this episode's: it goes back once checkpointed.
    let (mut history, mut session, known_row, known_dirty, mut tail_works, row_due) =
        match cache.take() {
            Some(c) => {
                let mut history = c.history;
                let mut session = c.session;
                if let Some(execution) = &starting
                    && history.execution_id != *execution
                {
                    // A new execution: the old one's rows stay behind; its session ends.
                    history.begin_execution(execution.clone());
                    session = None;
                }
                (history, session, c.row, c.dirty, c.tail_works, c.row_due)
            }
            None => {
                let mut history = History::default();
                history.begin_execution(execution_id.clone());
                (history, None, None, None, Vec::new(), None)
            }
        };
    let flush_all = works.iter().any(|w| matches!(w, Work::Flush { all: true }));
    let mut past_len = 0;
    let mut output: Option<String> = None;
    let mut custom_status: Option<Option<String>> = None;
    let mut continue_as_new: Option<Option<String>> = None;
    // The events a continue-as-new keeps for the next execution.
    let mut carryover: Vec<EventRaised> = Vec::new();
    if let Some(reason) = terminated {
        session = None;
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
            effects.control.push(notify_parent(
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
            None if tries < 5 => {
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
                // A session continues only from the exact history it has seen.
                past_len = history
                    .records
                    .iter()
                    .filter(|r| matches!(r.record, Record::Event(_)))
                    .count();
                session = session.filter(|s| s.fits(&function.component, &execution_id, past_len));
                let past = if session.is_some() {
                    Vec::new()
                } else {
                    guest_events(&history.records)
                };
                let new_events = guest_events(&new);
                let invocation = crate::triggers::invocation(&function.name);
                crate::triggers::log_executing(&invocation, "(null)");
                let started = Instant::now();
                let sandbox = Sandbox {
                    now_ms: now,
                    seed: u64::from(super::hub::fnv1a(id.as_bytes())) << 32
                        | u64::from(super::hub::fnv1a(execution_id.as_bytes())),
                };
                let mut attempt = 0;
                let (response, kept) = loop {
                    let continued = session.is_some();
                    let request = OrchestratorRequest {
                        instance_id: id.to_string(),
                        past: if continued { Vec::new() } else { past.clone() },
                        new: new_events.clone(),
                        continued,
                    };
                    let (response, kept) = engine
                        .runtime
                        .invoke_orchestrator(
                            &function.component,
                            &invocation,
                            request,
                            sandbox,
                            session.take(),
                            engine.config.extended_sessions,
                        )
                        .await;
                    attempt += 1;
                    // A session the guest no longer has: replay in full instead.
                    if continued && attempt == 1 && session_lost(&response) {
                        continue;
                    }
                    let counter = if continued {
                        &engine.stats.continued_episodes
                    } else {
                        &engine.stats.replayed_episodes
                    };
                    super::Stats::add(counter, 1);
                    break (response, kept);
                };
                session = kept;
                let error = response.as_ref().err().map(|e| e as &dyn std::fmt::Display);
                crate::triggers::log_executed(&invocation, error, started.elapsed());
                response.map_err(|e| failure("OrchestratorFailed", &e.to_string()))
            }
        };
        let response = match response {
            Ok(r) => r,
            Err(f) => {
                let parts = (starting, new, parent, input);
                let mut settle = helds(&tail_works);
                settle.extend(helds(works));
                return finish_failed(
                    engine, part, id, history, parts, &name, created, now, f, known_row,
                )
                .await
                .map(|()| Outcome::Done(settle));
            }
        };
        custom_status = Some(response.custom_status.clone());
        for action in response.actions {
            let call = matches!(action, Action::CallEntity(_));
            match action {
                Action::ScheduleActivity(t) => {
                    effects.work.push(WorkItem {
                        instance_id: id.to_string(),
                        execution_id: execution_id.clone(),
                        task_scheduled_id: t.event_id,
                        name: t.name.clone(),
                        input: t.input.clone(),
                    });
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
                    let delay =
                        Duration::from_millis(t.fire_at.saturating_sub(now)).min(max_delay());
                    effects.delayed.push((fired, delay));
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::TimerCreated(t)),
                        now,
                    ));
                }
                Action::CallSubOrchestrator(s) => {
                    effects.control.push(ControlMessage {
                        instance_id: s.instance_id.clone(),
                        // Derived, not random: a start sent again after a
                        // crash names the same execution and is applied once.
                        execution_id: Some(derived_id(&[
                            id,
                            &execution_id,
                            &s.event_id.to_string(),
                        ])),
                        event: ControlEvent::Event(HistoryEvent::ExecutionStarted(
                            ExecutionStarted {
                                name: s.name.clone(),
                                input: s.input.clone(),
                                timestamp: now,
                            },
                        )),
                        parent: Some(Parent {
                            instance_id: id.to_string(),
                            execution_id: execution_id.clone(),
                            task_scheduled_id: s.event_id,
                        }),
                        id: None,
                    });
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::SubOrchestrationCreated(s)),
                        now,
                    ));
                }
                Action::SendEvent(e) => {
                    effects.control.push(ControlMessage {
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
                    });
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::EventSent(e)),
                        now,
                    ));
                }
                Action::SignalEntity(e) | Action::CallEntity(e) => {
                    let message = ControlMessage {
                        instance_id: super::entity::instance_id(&e.target.name, &e.target.key),
                        execution_id: None,
                        event: ControlEvent::Entity(Box::new(super::entity::EntityOp {
                            scheduled: e.scheduled_time.filter(|_| !call),
                            caller: call.then(|| super::entity::Caller {
                                instance_id: id.to_string(),
                                execution_id: execution_id.clone(),
                                event_id: e.event_id,
                            }),
                            from: Some(id.to_string()),
                            ..super::entity::EntityOp::new(e.operation.clone(), e.input.clone())
                        })),
                        parent: None,
                        // Derived: sent again after a crash, it is applied once.
                        id: Some(format!("{id}:{execution_id}:{}", e.event_id)),
                    };
                    match e.scheduled_time.filter(|at| !call && *at > now) {
                        Some(at) => effects
                            .delayed
                            .push((message, Duration::from_millis(at - now).min(max_delay()))),
                        None => effects.control.push(message),
                    }
                    let event = if call {
                        HistoryEvent::EntityCalled(e)
                    } else {
                        HistoryEvent::EntitySignaled(e)
                    };
                    new.push(StoredRecord::new(Record::Event(event), now));
                }
                Action::LockEntities(l) => {
                    // One order for every orchestration, whatever the guest sent.
                    let mut targets: Vec<String> = l
                        .targets
                        .iter()
                        .map(|t| super::entity::instance_id(&t.name, &t.key))
                        .collect();
                    targets.sort();
                    targets.dedup();
                    if let Some((first, rest)) = targets.split_first() {
                        effects.control.push(ControlMessage {
                            instance_id: first.clone(),
                            execution_id: None,
                            event: ControlEvent::Entity(Box::new(super::entity::EntityOp {
                                caller: Some(super::entity::Caller {
                                    instance_id: id.to_string(),
                                    execution_id: execution_id.clone(),
                                    event_id: l.event_id,
                                }),
                                lock: Some(super::entity::LockOp::Acquire {
                                    lock_id: lock_key(id, &execution_id, l.lock_id),
                                    remaining: rest.to_vec(),
                                }),
                                ..super::entity::EntityOp::new("", None)
                            })),
                            parent: None,
                            id: Some(format!("{id}:{execution_id}:{}", l.event_id)),
                        });
                    }
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::EntitiesLocked(l)),
                        now,
                    ));
                }
                Action::UnlockEntities(l) => {
                    effects.control.extend(release_locks(
                        id,
                        &execution_id,
                        std::slice::from_ref(&l),
                    ));
                    new.push(StoredRecord::new(
                        Record::Event(HistoryEvent::EntitiesUnlocked(l)),
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
                        effects
                            .control
                            .push(notify_parent(p, fail.clone().map_or(Ok(out.clone()), Err)));
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
                    carryover = c.carryover_events;
                    new.push(StoredRecord::new(
                        Record::ContinuedAsNew { input: c.input },
                        now,
                    ));
                    break;
                }
            }
        }
    } else {
        // The guest does not run (suspended): a session would fall behind.
        session = None;
    }

    if let Some(next_input) = &continue_as_new {
        let next = derived_id(&[id, &execution_id, "continue-as-new"]);
        effects.control.push(ControlMessage {
            instance_id: id.to_string(),
            execution_id: Some(next.clone()),
            event: ControlEvent::Event(HistoryEvent::ExecutionStarted(ExecutionStarted {
                name: name.clone(),
                input: next_input.clone(),
                timestamp: created,
            })),
            parent: parent.clone(),
            id: None,
        });
        // Kept events follow the start, in order, each with an id derived from
        // the new execution so a re-sent checkpoint delivers them once.
        for (i, event) in carryover.drain(..).enumerate() {
            effects.control.push(ControlMessage {
                instance_id: id.to_string(),
                execution_id: Some(next.clone()),
                event: ControlEvent::Event(HistoryEvent::EventRaised(event)),
                parent: None,
                id: Some(derived_id(&[&next, "carryover", &i.to_string()])),
            });
        }
    }
    if status.is_terminal() || status == RuntimeStatus::ContinuedAsNew {
        session = None;
        // Locks still held end with the execution.
        let held = held_locks(history.records.iter().chain(&new));
        effects
            .control
            .extend(release_locks(id, &execution_id, &held));
    }

    // Local dispatch: the new activities run on this host while it has free
    // slots, and all of them when no other host shares the hub (nobody could
    // take them from the queue sooner); their TaskScheduled records say so.
    let permits = if engine.config.local_dispatch {
        engine.activities.try_reserve(effects.work.len())
    } else {
        Vec::new()
    };
    let all_local = engine.config.local_dispatch && engine.ownership.other_hosts() == 0;
    let local_count = if all_local {
        effects.work.len()
    } else {
        permits.len()
    };
    let local: Vec<WorkItem> = effects.work.drain(..local_count).collect();
    super::Stats::add(&engine.stats.local_activities, local.len());
    super::Stats::add(&engine.stats.queued_activities, effects.work.len());
    let local_ids: HashSet<u32> = local.iter().map(|w| w.task_scheduled_id).collect();
    for record in &mut new {
        if let Record::Event(HistoryEvent::TaskScheduled(t)) = &record.record {
            record.local = local_ids.contains(&t.event_id);
        }
    }
    // When the timer messages become visible (a long timer's first step, not
    // its due time): the partition polls then.
    let timers: Vec<u64> = effects
        .delayed
        .iter()
        .filter_map(|(m, delay)| match &m.event {
            ControlEvent::Event(HistoryEvent::TimerFired(_)) => {
                Some(now + queue_delay(*delay).as_millis() as u64)
            }
            _ => None,
        })
        .collect();
    let settled = status.is_terminal() || status == RuntimeStatus::ContinuedAsNew;
    // Only local activities to run: the checkpoint may wait for the next
    // episodes' records. Anything another party sees (messages, timers,
    // queued work, a final or suspended status) is checkpointed now.
    let must_commit = settled
        || flush_all
        || !effects.control.is_empty()
        || !effects.delayed.is_empty()
        || !effects.work.is_empty()
        || history.unwritten + new.len() >= MAX_UNWRITTEN
        || new.iter().any(|r| {
            matches!(
                r.record,
                Record::Event(HistoryEvent::ExecutionSuspended | HistoryEvent::ExecutionResumed)
                    | Record::ExecutionTerminated { .. }
            )
        });

    let guest_count = guest_events(&new).len();
    place_early_results(&mut new);
    history.push(new);
    let settle = if must_commit {
        // 1. Outbound messages first: an effect is durable before its cause is settled.
        // A local start is not durable anywhere yet: its start message goes to
        // the queue, delayed, before its effects do. It arrives as a repeat if
        // this checkpoint lands; if the host dies first, it starts the
        // instance on the next owner, whose replay sends the same effects
        // with the same ids (no effect without its instance).
        let has_effects =
            !effects.control.is_empty() || !effects.delayed.is_empty() || !effects.work.is_empty();
        if has_effects && let Some(start) = unheld_start(works.iter().chain(&tail_works)) {
            hub.send_control(start, START_RECOVERY).await?;
        }
        send_effects(engine, effects).await?;
        // 2. The history, guarded by the sentinel's ETag.
        history::commit(hub, id, &mut history).await?;
        tracing::debug!(
            "orchestration '{id}': checkpointed, {} history records, {}",
            history.records.len(),
            status.as_str()
        );
        let mut settle = helds(&std::mem::take(&mut tail_works));
        settle.extend(helds(works));
        settle
    } else {
        // At most CHECKPOINT_DELAY after the first record left unwritten.
        let waited_on = works.iter().chain(&tail_works).any(Work::acked);
        part.flush_later(
            engine,
            id,
            if waited_on {
                START_DELAY
            } else {
                CHECKPOINT_DELAY
            },
        );
        tail_works.extend(
            works
                .iter()
                .filter(|w| matches!(w, Work::Message { .. }))
                .cloned(),
        );
        Vec::new()
    };
    for fire_at in timers {
        part.due_at(instant_of(fire_at));
    }
    // 3. The Instances row: at once when final, else within a second.
    let row = InstanceRow {
        instance_id: id.to_string(),
        name,
        execution_id: execution_id.clone(),
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
            None => match known_dirty.as_ref().or(known_row.as_ref().map(|r| &r.0)) {
                Some(known) => known.custom_status.clone(),
                None => instances::get(hub, id).await?.and_then(|r| r.custom_status),
            },
        },
        created,
        last_updated: now,
        completed: status.is_terminal().then_some(now),
    };
    let mut cached = Cached {
        tail_works,
        row: known_row,
        row_due,
        ..Cached::new(history)
    };
    let changed = cached.row.as_ref().is_none_or(|(w, _)| row.differs_from(w));
    // A client's 202 waits for this checkpoint: the instance must be visible.
    let acking = settle.iter().any(Work::acked);
    // Once its start message is deleted, only the row shows the instance to
    // the next owner's recovery scan (which runs again the activities a dead
    // host ran locally): without it, an instance whose host died within the
    // second would wait forever.
    let start_settled = settle.iter().any(is_start);
    if settled || ((flush_all || acking || start_settled) && changed) {
        write_row(engine, part, &mut cached, row).await?;
        cached.row_due = None;
    } else if changed {
        cached.dirty = Some(row);
        if cached.row_due.is_none() {
            cached.row_due = Some(Instant::now() + ROW_DELAY);
            part.flush_later(engine, id, ROW_DELAY);
        }
    }

    // 4. Activities run here now; results of those that ran are recorded.
    part.set_local(id, &consumed_local, false);
    if !local.is_empty() {
        let ids: Vec<u32> = local_ids.iter().copied().collect();
        part.set_local(id, &ids, true);
        let mut permits = permits.into_iter();
        for item in local {
            super::activities::run_local(engine, item, permits.next());
        }
    }
    if recover {
        redispatch(engine, part, id, Some(&cached), &local_ids).await?;
    }
    if status.is_terminal() {
        engine.finished(id);
        *cache = None;
    } else {
        cached.session = session.map(|mut s| {
            s.seen(&execution_id, past_len + guest_count);
            s
        });
        *cache = Some(cached);
    }
    Ok(Outcome::Done(settle))
}

/// A start message (settling it deletes what shows the instance exists).
fn is_start(work: &Work) -> bool {
    matches!(work, Work::Message { message, .. }
        if matches!(message.event, ControlEvent::Event(HistoryEvent::ExecutionStarted(_))))
}

/// The works of `works` whose effects a checkpoint makes durable.
fn helds(works: &[Work]) -> Vec<Work> {
    works
        .iter()
        .filter(|w| matches!(w, Work::Message { .. }))
        .cloned()
        .collect()
}

/// Write what earlier episodes deferred: their history records when a Flush
/// asks, the status row once it is due (or at once for `Flush { all }`).
/// The queue messages to settle.
async fn flush_deferred(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    cache: &mut Option<Cached>,
    works: &[Work],
) -> Result<Vec<Work>, StorageError> {
    let all = works.iter().any(|w| matches!(w, Work::Flush { all: true }));
    let flush = works.iter().any(|w| matches!(w, Work::Flush { .. }));
    let mut settle = helds(works);
    let Some(c) = cache.as_mut() else {
        return Ok(settle);
    };
    if flush && c.history.unwritten > 0 {
        history::commit(&engine.hub, id, &mut c.history).await?;
        tracing::debug!(
            "orchestration '{id}': checkpointed, {} history records",
            c.history.records.len()
        );
        settle.extend(helds(&std::mem::take(&mut c.tail_works)));
    }
    let now = Instant::now();
    let acking = settle.iter().any(Work::acked);
    // A start message about to be deleted: the row goes first, or a host
    // that dies before the deferred row would leave an instance no recovery
    // scan finds (its history written, its start message gone, no row).
    let start_settled = settle.iter().any(is_start);
    match (c.dirty.is_some(), c.row_due) {
        (true, due) if all || acking || start_settled || due.is_some_and(|t| t <= now) => {
            let row = c.dirty.take().expect("checked");
            c.row_due = None;
            write_row(engine, part, c, row).await?;
        }
        (true, Some(due)) => part.flush_later(engine, id, due.saturating_duration_since(now)),
        _ => {}
    }
    Ok(settle)
}

/// Send an episode's messages: control messages packed by partition, timers
/// with their delays, work items packed.
async fn send_effects(engine: &Arc<Engine>, effects: Effects) -> Result<(), StorageError> {
    let delayed = futures::future::try_join_all(
        effects
            .delayed
            .iter()
            .map(|(m, delay)| engine.hub.send_control(m, *delay)),
    );
    let (control, work, delayed) = futures::join!(
        super::outbox::send_control(engine, effects.control),
        super::outbox::send_work(engine, effects.work),
        delayed
    );
    control?;
    work?;
    delayed?;
    Ok(())
}

/// Run again the activities a dead owner ran locally (their result is not in
/// the history, and they do not run here now).
async fn redispatch(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    cache: Option<&Cached>,
    just_started: &HashSet<u32>,
) -> Result<(), StorageError> {
    let Some(c) = cache else {
        return Ok(());
    };
    let running = part.local_tasks(id);
    let open: Vec<WorkItem> = InstanceState::open_local_tasks(&c.history)
        .into_iter()
        .filter(|t| !running.contains(&t.event_id) && !just_started.contains(&t.event_id))
        .map(|t| WorkItem {
            instance_id: id.to_string(),
            execution_id: c.history.execution_id.clone(),
            task_scheduled_id: t.event_id,
            name: t.name,
            input: t.input,
        })
        .collect();
    if open.is_empty() {
        return Ok(());
    }
    tracing::info!(
        "orchestration '{id}': running {} activit{} again that a previous owner started",
        open.len(),
        if open.len() == 1 { "y" } else { "ies" }
    );
    let permits = engine.activities.try_reserve(open.len());
    let mut open = open;
    if engine.ownership.other_hosts() > 0 {
        let remote = open.split_off(permits.len());
        super::outbox::send_work(engine, remote).await?;
    }
    let ids: Vec<u32> = open.iter().map(|w| w.task_scheduled_id).collect();
    part.set_local(id, &ids, true);
    let mut permits = permits.into_iter();
    for item in open {
        super::activities::run_local(engine, item, permits.next());
    }
    Ok(())
}

/// Rewind a failed orchestration, as its owner and in one checkpoint: the
/// failed activities' results and the failure leave the history (a new range
/// of the same execution, guarded by the sentinel), their TaskScheduled
/// records are marked as run here, the row says Running, and the activities
/// run again. A host that dies after the checkpoint leaves activities that the
/// next owner finds open and runs (as for any local activity); the rewind
/// message delivered again finds the instance no longer failed and does nothing.
async fn rewind(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    cache: &mut Option<Cached>,
    execution: Option<String>,
    reason: Option<String>,
) -> Result<(), StorageError> {
    let hub = &engine.hub;
    if cache.is_none()
        && let Some(history) = history::load(hub, id).await?
    {
        *cache = Some(Cached::new(history));
    }
    let Some(c) = cache.as_ref() else {
        tracing::warn!("orchestration '{id}': nothing to rewind (no history)");
        return Ok(());
    };
    let Some(state) = InstanceState::of(&c.history) else {
        return Ok(());
    };
    if state.status != RuntimeStatus::Failed
        || execution.is_some_and(|e| e != c.history.execution_id)
    {
        tracing::info!(
            "orchestration '{id}': not rewinding it: it is {} now",
            state.status.as_str()
        );
        return Ok(());
    }
    let failed: HashSet<u32> = c
        .history
        .records
        .iter()
        .filter_map(|r| match &r.record {
            Record::Event(HistoryEvent::TaskFailed(f)) => Some(f.task_scheduled_id),
            _ => None,
        })
        .collect();
    if failed.is_empty() {
        tracing::warn!("orchestration '{id}': nothing to rewind: no activity failed");
        return Ok(());
    }
    tracing::info!(
        "Rewinding '{id}' ({} failed activit{}): {}",
        failed.len(),
        if failed.len() == 1 { "y" } else { "ies" },
        reason.unwrap_or_default()
    );
    let kept: Vec<StoredRecord> = c
        .history
        .records
        .iter()
        .filter(|r| match &r.record {
            Record::Event(HistoryEvent::TaskFailed(f)) => !failed.contains(&f.task_scheduled_id),
            Record::ExecutionCompleted { .. } => false,
            _ => true,
        })
        .cloned()
        .map(|mut r| {
            if let Record::Event(HistoryEvent::TaskScheduled(t)) = &r.record
                && failed.contains(&t.event_id)
            {
                r.local = true;
            }
            r
        })
        .collect();
    let known_row = instances::get_versioned(hub, id).await?;
    let c = cache.take().expect("checked");
    let execution = c.history.execution_id.clone();
    let history = history::append(hub, id, c.history, Some(execution.clone()), kept).await?;
    let row = InstanceRow {
        instance_id: id.to_string(),
        name: state.name.clone(),
        execution_id: execution,
        status: RuntimeStatus::Running,
        input: state.input.clone(),
        output: None,
        custom_status: known_row
            .as_ref()
            .and_then(|(r, _)| r.custom_status.clone()),
        created: state.created,
        last_updated: now_ms(),
        completed: None,
    };
    let mut cached = Cached {
        row: known_row,
        ..Cached::new(history)
    };
    write_row(engine, part, &mut cached, row).await?;
    redispatch(engine, part, id, Some(&cached), &HashSet::new()).await?;
    *cache = Some(cached);
    Ok(())
}

/// Write `row` as the owner: guarded by the ETag of our last write.
async fn write_row(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    cached: &mut Cached,
    row: InstanceRow,
) -> Result<(), StorageError> {
    let guard = match &cached.row {
        Some((_, etag)) => Guard::Etag(etag.clone()),
        None => {
            // An unconditional write only while the partition is surely ours
            // (a host paused past its lease must not overwrite a newer status).
            if part.valid_until() < Instant::now() {
                return Err(StorageError::Conflict(format!(
                    "partition {} may have moved: not writing the status of '{}'",
                    part.number, row.instance_id
                )));
            }
            Guard::None
        }
    };
    match instances::write(&engine.hub, &row, cached.history.next_seq, guard).await? {
        Some(etag) => cached.row = Some((row, etag)),
        // A newer status is there (another owner): ours is stale.
        None => {
            return Err(StorageError::Conflict(format!(
                "the status of '{}' was written by a newer owner",
                row.instance_id
            )));
        }
    }
    Ok(())
}

/// A host that died between writing the final history and updating the
/// Instances row left the row behind; its redelivered messages land here.
async fn repair_row(
    engine: &Arc<Engine>,
    id: &str,
    history: &History,
    state: &InstanceState,
) -> Result<bool, StorageError> {
    let row = instances::get(&engine.hub, id).await?;
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
    instances::write(&engine.hub, &repaired, history.next_seq, Guard::None).await?;
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
    Option<Parent>,
    Option<String>,
);

/// Fail the instance without running the guest (no function, or the guest trapped).
#[allow(clippy::too_many_arguments)]
async fn finish_failed(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    history: History,
    (starting, mut new, parent, input): EpisodeParts,
    name: &str,
    created: u64,
    now: u64,
    f: Failure,
    known_row: Option<(InstanceRow, String)>,
) -> Result<(), StorageError> {
    tracing::error!("orchestration '{id}' failed: {}", f.message);
    let output = failure_output(&f);
    let execution_id = starting
        .clone()
        .unwrap_or_else(|| history.execution_id.clone());
    let held = held_locks(history.records.iter().chain(&new));
    let mut messages = release_locks(id, &execution_id, &held);
    if let Some(p) = &parent {
        messages.push(notify_parent(p, Err(f.clone())));
    }
    super::outbox::send_control(engine, messages).await?;
    new.push(StoredRecord::new(
        Record::ExecutionCompleted {
            status: RuntimeStatus::Failed,
            output: Some(output.clone()),
            failure: Some(f),
        },
        now,
    ));
    let new_execution = starting.filter(|e| Some(e) != history_execution(&history).as_ref());
    let history = history::append(&engine.hub, id, history, new_execution, new).await?;
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
    let mut cached = Cached {
        row: known_row,
        ..Cached::new(history)
    };
    write_row(engine, part, &mut cached, row).await?;
    engine.finished(id);
    Ok(())
}

/// Move aside the work of an instance whose episodes keep failing the same
/// way (a poison message): the messages go to `{queue}-poison` with the
/// reason, so nothing loops forever, and an orchestration's status row says
/// Failed with the reason (its history may be what cannot be read or written,
/// so the row is all that can say it). Nothing is deleted unless it was stored.
pub async fn set_aside(
    engine: &Arc<Engine>,
    part: &Arc<Partition>,
    id: &str,
    error: &StorageError,
) {
    let works = super::partition::take_pending(part, id);
    let mut helds = Vec::new();
    let mut texts = Vec::new();
    for w in &works {
        if let Work::Message { message, held, .. } = w {
            texts.push(serde_json::to_string(message).expect("messages serialize"));
            if let Some(h) = held {
                helds.push(h.clone());
            }
        }
    }
    let kind = if super::entity::is_entity(id) {
        "entity"
    } else {
        "orchestration"
    };
    tracing::error!(
        "{kind} '{id}': {} message(s) failed 5 times in a row ({error}); moving them to {}-poison",
        texts.len(),
        part.queue
    );
    let why = format!("instance '{id}' failed 5 times: {error}");
    if !super::poison::store(engine, &part.queue, &texts, &why).await {
        // Not stored: the messages come back after their visibility timeout.
        for h in helds {
            engine
                .holds
                .abandon(&engine.hub.storage, &h, Duration::from_secs(60))
                .await;
        }
        return;
    }
    for h in helds {
        engine.holds.settle(&engine.hub.storage, &h).await;
    }
    if kind == "orchestration"
        && let Err(e) = mark_failed(engine, id, &why).await
    {
        tracing::error!("orchestration '{id}': could not mark it Failed: {e}");
    }
}

/// The status row of an instance set aside: Failed, with the reason as output.
async fn mark_failed(engine: &Engine, id: &str, why: &str) -> Result<(), StorageError> {
    let now = now_ms();
    let row = match instances::get(&engine.hub, id).await? {
        Some(row) if row.status.is_terminal() => return Ok(()),
        Some(row) => InstanceRow {
            status: RuntimeStatus::Failed,
            output: Some(serde_json::to_string(why).expect("strings serialize")),
            last_updated: now,
            completed: Some(now),
            ..row
        },
        None => InstanceRow {
            instance_id: id.to_string(),
            name: String::new(),
            execution_id: String::new(),
            status: RuntimeStatus::Failed,
            input: None,
            output: Some(serde_json::to_string(why).expect("strings serialize")),
            custom_status: None,
            created: now,
            last_updated: now,
            completed: Some(now),
        },
    };
    instances::put(&engine.hub, &row).await?;
    engine.finished(id);
    Ok(())
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

fn notify_parent(parent: &Parent, result: Result<Option<String>, Failure>) -> ControlMessage {
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
    ControlMessage {
        instance_id: parent.instance_id.clone(),
        execution_id: Some(parent.execution_id.clone()),
        event: ControlEvent::Event(event),
        parent: None,
        id: None,
    }
}

/// The start message of a local start among `works` (one no queue message holds).
fn unheld_start<'a>(works: impl Iterator<Item = &'a Work>) -> Option<&'a ControlMessage> {
    works.into_iter().find_map(|w| match w {
        Work::Message {
            message,
            held: None,
            ..
        } if matches!(
            message.event,
            ControlEvent::Event(HistoryEvent::ExecutionStarted(_))
        ) =>
        {
            Some(message)
        }
        _ => None,
    })
}

/// The id of a critical section's locks: unique across executions.
fn lock_key(id: &str, execution_id: &str, lock_event_id: u32) -> String {
    format!("{id}:{execution_id}:lock:{lock_event_id}")
}

/// The lock requests of `records` not released in them.
fn held_locks<'a>(
    records: impl Iterator<Item = &'a StoredRecord>,
) -> Vec<crate::runtime::durable::EntityLock> {
    let mut held = Vec::new();
    for r in records {
        match &r.record {
            Record::Event(HistoryEvent::EntitiesLocked(l)) => held.push(l.clone()),
            Record::Event(HistoryEvent::EntitiesUnlocked(l)) => {
                held.retain(|h: &crate::runtime::durable::EntityLock| h.lock_id != l.lock_id);
            }
            _ => {}
        }
    }
    held
}

/// The releases of `locks`, one message to each entity (which ignores a
/// release of a lock it does not hold, and remembers it for a request that
/// comes later).
fn release_locks(
    id: &str,
    execution_id: &str,
    locks: &[crate::runtime::durable::EntityLock],
) -> Vec<ControlMessage> {
    let mut messages = Vec::new();
    for l in locks {
        let lock_id = lock_key(id, execution_id, l.lock_id);
        for t in &l.targets {
            let target = super::entity::instance_id(&t.name, &t.key);
            messages.push(ControlMessage {
                id: Some(derived_id(&[&lock_id, "release", &target])),
                instance_id: target,
                execution_id: None,
                event: ControlEvent::Entity(Box::new(super::entity::EntityOp {
                    from: Some(id.to_string()),
                    lock: Some(super::entity::LockOp::Release {
                        lock_id: lock_id.clone(),
                    }),
                    ..super::entity::EntityOp::new("", None)
                })),
                parent: None,
            });
        }
    }
    messages
}

/// The id a result event completes: (is a timer, id); None for other events.
/// A sub-orchestration's or entity call's result can come before the
/// history records the decision it answers: an episode sends its messages
/// before its checkpoint, and when its host dies in between, the child may
/// finish before the episode is done again. The guest matches results by
/// id, so the order changes nothing for it; the history records the result
/// after the decision, where it would have come.
fn place_early_results(new: &mut Vec<StoredRecord>) {
    let decides = |r: &StoredRecord, id: u32| match &r.record {
        Record::Event(HistoryEvent::SubOrchestrationCreated(s)) => s.event_id == id,
        Record::Event(HistoryEvent::EntityCalled(e)) => e.event_id == id,
        Record::Event(HistoryEvent::EntitiesLocked(l)) => l.event_id == id,
        _ => false,
    };
    let mut i = 0;
    while i < new.len() {
        let early = match &new[i].record {
            Record::Event(
                e @ (HistoryEvent::SubOrchestrationCompleted(_)
                | HistoryEvent::SubOrchestrationFailed(_)
                | HistoryEvent::EntityCallCompleted(_)
                | HistoryEvent::EntityCallFailed(_)),
            ) => result_id(e)
                .map(|(_, id)| id)
                .and_then(|id| new[i + 1..].iter().position(|r| decides(r, id))),
            _ => None,
        };
        match early {
            Some(offset) => {
                let record = new.remove(i);
                new.insert(i + offset + 1, record);
            }
            None => i += 1,
        }
    }
}

fn result_id(event: &HistoryEvent) -> Option<(bool, u32)> {
    match event {
        HistoryEvent::TaskCompleted(c)
        | HistoryEvent::SubOrchestrationCompleted(c)
        | HistoryEvent::EntityCallCompleted(c) => Some((false, c.task_scheduled_id)),
        HistoryEvent::TaskFailed(f)
        | HistoryEvent::SubOrchestrationFailed(f)
        | HistoryEvent::EntityCallFailed(f) => Some((false, f.task_scheduled_id)),
        HistoryEvent::TimerFired(t) => Some((true, t.timer_id)),
        _ => None,
    }
}

/// Whether the guest answered that it holds no session for a continued episode.
fn session_lost(
    response: &Result<crate::runtime::durable::OrchestratorResponse, crate::runtime::InvokeError>,
) -> bool {
    response.as_ref().is_ok_and(|r| {
        r.actions
            .iter()
            .any(|a| matches!(a, Action::Complete(Err(f)) if f.error_type == "SessionLost"))
    })
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

/// A 32-hex-digit id derived from `parts` (same parts, same id).
pub fn derived_id(parts: &[&str]) -> String {
    let mut hash = sha2::Sha256::new();
    for p in parts {
        hash.update(p.as_bytes());
        hash.update([0]);
    }
    hash.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The local instant of a wall-clock time (ms since the epoch).
fn instant_of(ms: u64) -> Instant {
    let now = now_ms();
    Instant::now() + Duration::from_millis(ms.saturating_sub(now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::durable::{SubOrchestrationCreated, TaskCompleted};

    fn names(records: &[StoredRecord]) -> Vec<&'static str> {
        records.iter().map(|r| r.record.event_type()).collect()
    }

    #[test]
    fn a_result_that_came_before_its_decision_is_recorded_after_it() {
        let event = |e: HistoryEvent| StoredRecord::new(Record::Event(e), 1);
        let done = |id| {
            event(HistoryEvent::SubOrchestrationCompleted(TaskCompleted {
                task_scheduled_id: id,
                output: None,
            }))
        };
        let created = |id| {
            event(HistoryEvent::SubOrchestrationCreated(
                SubOrchestrationCreated {
                    event_id: id,
                    name: "child".into(),
                    instance_id: format!("c{id}"),
                    input: None,
                },
            ))
        };
        let mut new = vec![
            event(HistoryEvent::OrchestratorStarted(1)),
            done(0),
            done(7),
            created(0),
            created(1),
        ];
        place_early_results(&mut new);
        assert_eq!(
            names(&new),
            [
                "OrchestratorStarted",
                "SubOrchestrationInstanceCompleted",
                "SubOrchestrationInstanceCreated",
                "SubOrchestrationInstanceCompleted",
                "SubOrchestrationInstanceCreated",
            ]
        );
        // #7 was decided in an earlier episode: it stays where it came.
        assert!(matches!(&new[1].record,
            Record::Event(HistoryEvent::SubOrchestrationCompleted(c)) if c.task_scheduled_id == 7));
        assert!(matches!(&new[3].record,
            Record::Event(HistoryEvent::SubOrchestrationCompleted(c)) if c.task_scheduled_id == 0));
    }
}
