//! The replay executor: runs an orchestrator over its history one event at a time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::context::OrchestrationContext;
use super::state::{Outcome, State};
use crate::bindings::fnhost::function::durable_types::{
    Action, ContinueAsNew, EventRaised, Failure, HistoryEvent, OrchestratorRequest,
    OrchestratorResponse,
};

/// What the `#[orchestrator]` wrapper returns: the output JSON, or why it failed.
pub type OrchestratorFuture = Pin<Box<dyn Future<Output = Result<Option<String>, Failure>>>>;

/// The orchestration this wasm instance keeps between episodes (an extended
/// session): the host calls again with `continued` and only the new events.
struct Session {
    function: String,
    instance_id: String,
    ctx: OrchestrationContext,
    future: OrchestratorFuture,
}

thread_local! {
    static SESSION: std::cell::RefCell<Option<Session>> = const { std::cell::RefCell::new(None) };
}

/// The failure type that tells the host a continued session is not here: it
/// then replays the full history instead.
pub const SESSION_LOST: &str = "SessionLost";

/// Run one episode of the orchestrator `function`: replay `request.past ++ request.new`
/// and return the new actions, ending with `complete`/`continue-as-new` if it finished.
///
/// `handler` is called once, at the execution-started event, with the context. After
/// each history event the orchestrator is polled once; only history events make
/// progress, so the same history always gives the same actions.
///
/// A `continued` request goes on from where the previous episode of this instance
/// stopped, applying only `request.new`: the same state a full replay reaches.
pub fn run_orchestrator<F, Fut>(
    function: &str,
    handler: F,
    request: OrchestratorRequest,
) -> OrchestratorResponse
where
    F: FnOnce(OrchestrationContext) -> Fut,
    Fut: Future<Output = Result<Option<String>, Failure>> + 'static,
{
    let OrchestratorRequest {
        instance_id,
        past,
        new,
        continued,
    } = request;
    let kept = SESSION.with(|s| s.borrow_mut().take());
    if continued {
        return match kept {
            Some(session) if session.function == function && session.instance_id == instance_id => {
                continue_session(session, new)
            }
            _ => OrchestratorResponse {
                actions: vec![Action::Complete(Err(Failure {
                    error_type: SESSION_LOST.into(),
                    message: format!(
                        "this instance holds no session of '{function}' for '{instance_id}'"
                    ),
                    details: None,
                }))],
                custom_status: None,
            },
        };
    }
    drop(kept);
    let replayed = past.len();
    let history: Vec<HistoryEvent> = past.into_iter().chain(new).collect();
    let ctx = OrchestrationContext::new(State::new(function, &instance_id, &history));
    let mut handler = Some(handler);
    let mut future: Option<OrchestratorFuture> = None;
    let mut output = None;
    let mut cx = Context::from_waker(Waker::noop());
    let mut events = history.into_iter().enumerate();
    for (i, event) in events.by_ref() {
        if ctx.state().failure.is_some() {
            break;
        }
        let started = apply(&mut ctx.state(), event, i < replayed);
        if started && let Some(handler) = handler.take() {
            future = Some(Box::pin(handler(ctx.clone())));
        }
        if let Some(running) = future.as_mut()
            && let Poll::Ready(result) = running.as_mut().poll(&mut cx)
        {
            output = Some(result);
            break;
        }
    }
    keep_later_events(&mut ctx.state(), events.map(|(_, e)| e));
    if handler.is_some() {
        let message = format!(
            "the history of instance '{instance_id}' has no execution-started event: the host \
             must put one (with the input) in the first episode's new events"
        );
        ctx.state().fail(Failure {
            error_type: "InvalidHistory".into(),
            message,
            details: None,
        });
    }
    let response = finish(&mut ctx.state(), output);
    keep_or_drop(function, &instance_id, ctx, future, &response);
    response
}

/// The next episode of a kept session: apply the new events only.
fn continue_session(session: Session, new: Vec<HistoryEvent>) -> OrchestratorResponse {
    let Session {
        function,
        instance_id,
        ctx,
        mut future,
    } = session;
    let mut output = None;
    let mut cx = Context::from_waker(Waker::noop());
    let mut events = new.into_iter();
    for event in events.by_ref() {
        if ctx.state().failure.is_some() {
            break;
        }
        apply(&mut ctx.state(), event, false);
        if let Poll::Ready(result) = future.as_mut().poll(&mut cx) {
            output = Some(result);
            break;
        }
    }
    keep_later_events(&mut ctx.state(), events);
    let response = finish(&mut ctx.state(), output);
    keep_or_drop(&function, &instance_id, ctx, Some(future), &response);
    response
}

/// Keep the orchestration for its next episode unless it finished.
fn keep_or_drop(
    function: &str,
    instance_id: &str,
    ctx: OrchestrationContext,
    future: Option<OrchestratorFuture>,
    response: &OrchestratorResponse,
) {
    let finished = response
        .actions
        .iter()
        .any(|a| matches!(a, Action::Complete(_) | Action::ContinueAsNew(_)));
    match future {
        Some(future) if !finished => SESSION.with(|s| {
            *s.borrow_mut() = Some(Session {
                function: function.to_owned(),
                instance_id: instance_id.to_owned(),
                ctx,
                future,
            })
        }),
        // Dropping the orchestrator drops its pending waits, which update the
        // state: no borrow may be held meanwhile.
        other => drop(other),
    }
}

/// The replay position's time: `current_utc_datetime`, and what the sandbox's
/// clocks (`SystemTime::now()`) read, so they are the same on every replay.
fn set_now(state: &mut State, time: u64) {
    state.now_ms = time;
    #[cfg(target_arch = "wasm32")]
    crate::bindings::fnhost::function::replay_clock::set_time(time);
}

/// Events of the episode after the one the orchestrator finished on: a
/// continue-as-new that keeps unconsumed events carries these too.
fn keep_later_events(state: &mut State, rest: impl Iterator<Item = HistoryEvent>) {
    if state.continue_as_new.is_none() || !state.keep_events {
        return;
    }
    for event in rest {
        if let HistoryEvent::EventRaised(raised) = event {
            state.events.raise(&raised.name, raised.input);
        }
    }
}

/// Apply one history event; true for execution-started (the orchestrator starts there).
fn apply(state: &mut State, event: HistoryEvent, in_past: bool) -> bool {
    state.is_replaying = in_past;
    match event {
        HistoryEvent::OrchestratorStarted(time) => set_now(state, time),
        HistoryEvent::ExecutionStarted(started) => {
            // A host that puts orchestrator-started after execution-started still gives
            // the orchestrator a clock: the creation time.
            if state.now_ms == 0 {
                set_now(state, started.timestamp);
            }
            state.input = started.input;
            return true;
        }
        HistoryEvent::TaskCompleted(done)
        | HistoryEvent::SubOrchestrationCompleted(done)
        | HistoryEvent::EntityCallCompleted(done) => {
            state.resolve(done.task_scheduled_id, Outcome::Completed(done.output));
        }
        HistoryEvent::TaskFailed(failed)
        | HistoryEvent::SubOrchestrationFailed(failed)
        | HistoryEvent::EntityCallFailed(failed) => {
            state.resolve(failed.task_scheduled_id, Outcome::Failed(failed.failure));
        }
        HistoryEvent::TimerFired(fired) => state.resolve(fired.timer_id, Outcome::Fired),
        HistoryEvent::EventRaised(raised) => state.events.raise(&raised.name, raised.input),
        // Scheduling events were indexed up front; the code's calls are checked against them.
        HistoryEvent::TaskScheduled(_)
        | HistoryEvent::TimerCreated(_)
        | HistoryEvent::SubOrchestrationCreated(_)
        | HistoryEvent::EventSent(_)
        | HistoryEvent::EntitySignaled(_)
        | HistoryEvent::EntityCalled(_)
        | HistoryEvent::EntitiesLocked(_)
        | HistoryEvent::EntitiesUnlocked(_)
        | HistoryEvent::ExecutionSuspended
        | HistoryEvent::ExecutionResumed => {}
    }
    false
}

/// The episode's response: the new actions and the terminal action, or only the failure.
fn finish(
    state: &mut State,
    output: Option<Result<Option<String>, Failure>>,
) -> OrchestratorResponse {
    if state.failure.is_none() {
        state.check_all_replayed();
    }
    let custom_status = state.custom_status.clone();
    if let Some(failure) = state.failure.take() {
        // Actions of a replay that went wrong cannot be trusted: none is sent.
        return OrchestratorResponse {
            actions: vec![Action::Complete(Err(failure))],
            custom_status,
        };
    }
    let mut actions = std::mem::take(&mut state.actions);
    match output {
        Some(Ok(output)) => actions.push(match state.continue_as_new.take() {
            Some(input) => Action::ContinueAsNew(ContinueAsNew {
                input,
                carryover_events: if state.keep_events {
                    state
                        .events
                        .unconsumed()
                        .into_iter()
                        .map(|(name, input)| EventRaised { name, input })
                        .collect()
                } else {
                    Vec::new()
                },
            }),
            None => Action::Complete(Ok(output)),
        }),
        Some(Err(failure)) => actions.push(Action::Complete(Err(failure))),
        None => {}
    }
    OrchestratorResponse {
        actions,
        custom_status,
    }
}
