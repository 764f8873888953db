//! The replay executor: runs an orchestrator over its history one event at a time.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use super::context::OrchestrationContext;
use super::state::{Outcome, State};
use crate::bindings::fnhost::function::durable_types::{
    Action, ContinueAsNew, Failure, HistoryEvent, OrchestratorRequest, OrchestratorResponse,
};

/// What the `#[orchestrator]` wrapper returns: the output JSON, or why it failed.
pub type OrchestratorFuture = Pin<Box<dyn Future<Output = Result<Option<String>, Failure>>>>;

/// Run one episode of the orchestrator `function`: replay `request.past ++ request.new`
/// and return the new actions, ending with `complete`/`continue-as-new` if it finished.
///
/// `handler` is called once, at the execution-started event, with the context. After
/// each history event the orchestrator is polled once; only history events make
/// progress, so the same history always gives the same actions.
pub fn run_orchestrator<F, Fut>(
    function: &str,
    handler: F,
    request: OrchestratorRequest,
) -> OrchestratorResponse
where
    F: FnOnce(OrchestrationContext) -> Fut,
    Fut: Future<Output = Result<Option<String>, Failure>>,
{
    let OrchestratorRequest {
        instance_id,
        past,
        new,
    } = request;
    let replayed = past.len();
    let history: Vec<HistoryEvent> = past.into_iter().chain(new).collect();
    let ctx = OrchestrationContext::new(State::new(function, &instance_id, &history));
    let mut handler = Some(handler);
    let mut future = None;
    let mut output = None;
    let mut cx = Context::from_waker(Waker::noop());
    for (i, event) in history.into_iter().enumerate() {
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
    // Dropping the orchestrator drops its pending waits, which update the state: no
    // borrow may be held meanwhile.
    drop(future);
    let mut state = ctx.state();
    if handler.is_some() {
        let message = format!(
            "the history of instance '{instance_id}' has no execution-started event: the host \
             must put one (with the input) in the first episode's new events"
        );
        state.fail(Failure {
            error_type: "InvalidHistory".into(),
            message,
            details: None,
        });
    }
    finish(&mut state, output)
}

/// Apply one history event; true for execution-started (the orchestrator starts there).
fn apply(state: &mut State, event: HistoryEvent, in_past: bool) -> bool {
    state.is_replaying = in_past;
    match event {
        HistoryEvent::OrchestratorStarted(time) => state.now_ms = time,
        HistoryEvent::ExecutionStarted(started) => {
            // A host that puts orchestrator-started after execution-started still gives
            // the orchestrator a clock: the creation time.
            if state.now_ms == 0 {
                state.now_ms = started.timestamp;
            }
            state.input = started.input;
            return true;
        }
        HistoryEvent::TaskCompleted(done) | HistoryEvent::SubOrchestrationCompleted(done) => {
            state.resolve(done.task_scheduled_id, Outcome::Completed(done.output));
        }
        HistoryEvent::TaskFailed(failed) | HistoryEvent::SubOrchestrationFailed(failed) => {
            state.resolve(failed.task_scheduled_id, Outcome::Failed(failed.failure));
        }
        HistoryEvent::TimerFired(fired) => state.resolve(fired.timer_id, Outcome::Fired),
        HistoryEvent::EventRaised(raised) => state.events.raise(&raised.name, raised.input),
        // Scheduling events were indexed up front; the code's calls are checked against them.
        HistoryEvent::TaskScheduled(_)
        | HistoryEvent::TimerCreated(_)
        | HistoryEvent::SubOrchestrationCreated(_)
        | HistoryEvent::EventSent(_)
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
                preserve_unprocessed_events: false,
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
