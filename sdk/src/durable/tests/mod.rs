//! Replay tests: hand-built histories in, actions out, as the host would see them.

mod events;
mod functions;
mod nondeterminism;
mod replay;
mod retry;

use crate::__private::{Registration, dispatch_orchestrator};
use crate::bindings::fnhost::function::durable_types::{
    Action, EventRaised, ExecutionStarted, Failure, HistoryEvent, OrchestratorRequest,
    OrchestratorResponse, SubOrchestrationCreated, TaskCompleted, TaskFailed, TaskScheduled,
    TimerCreated, TimerFired,
};

/// When the test instances start, in ms since the epoch.
const T0: u64 = 1_700_000_000_000;
const INSTANCE: &str = "inst-1";

fn os(time: u64) -> HistoryEvent {
    HistoryEvent::OrchestratorStarted(time)
}

fn started(input: Option<&str>) -> HistoryEvent {
    HistoryEvent::ExecutionStarted(ExecutionStarted {
        name: "test".into(),
        input: input.map(Into::into),
        timestamp: T0,
    })
}

fn scheduled(id: u32, name: &str) -> HistoryEvent {
    HistoryEvent::TaskScheduled(TaskScheduled {
        event_id: id,
        name: name.into(),
        input: None,
    })
}

fn completed(id: u32, output: &str) -> HistoryEvent {
    HistoryEvent::TaskCompleted(TaskCompleted {
        task_scheduled_id: id,
        output: Some(output.into()),
    })
}

fn failure(error_type: &str, message: &str) -> Failure {
    Failure {
        error_type: error_type.into(),
        message: message.into(),
        details: None,
    }
}

fn failed(id: u32, message: &str) -> HistoryEvent {
    HistoryEvent::TaskFailed(TaskFailed {
        task_scheduled_id: id,
        failure: failure("ActivityError", message),
    })
}

fn timer_created(id: u32, fire_at: u64) -> HistoryEvent {
    HistoryEvent::TimerCreated(TimerCreated {
        event_id: id,
        fire_at,
    })
}

fn fired(id: u32) -> HistoryEvent {
    HistoryEvent::TimerFired(TimerFired {
        timer_id: id,
        fire_at: 0,
    })
}

fn raised(name: &str, data: &str) -> HistoryEvent {
    HistoryEvent::EventRaised(EventRaised {
        name: name.into(),
        input: Some(data.into()),
    })
}

fn activity(id: u32, name: &str, input: Option<&str>) -> Action {
    Action::ScheduleActivity(TaskScheduled {
        event_id: id,
        name: name.into(),
        input: input.map(Into::into),
    })
}

fn timer(id: u32, fire_at: u64) -> Action {
    Action::CreateTimer(TimerCreated {
        event_id: id,
        fire_at,
    })
}

fn sub_orchestrator(id: u32, name: &str, instance_id: &str, input: Option<&str>) -> Action {
    Action::CallSubOrchestrator(SubOrchestrationCreated {
        event_id: id,
        name: name.into(),
        instance_id: instance_id.into(),
        input: input.map(Into::into),
    })
}

fn done(output: &str) -> Action {
    Action::Complete(Ok(Some(output.into())))
}

/// Run one episode of `registration`'s orchestrator on instance [`INSTANCE`].
fn run(
    registration: Registration,
    past: Vec<HistoryEvent>,
    new: Vec<HistoryEvent>,
) -> OrchestratorResponse {
    let Registration::Orchestrator { name, .. } = registration else {
        panic!("run takes an orchestrator registration");
    };
    let request = OrchestratorRequest {
        continued: false,
        instance_id: INSTANCE.into(),
        past,
        new,
    };
    dispatch_orchestrator(&[registration], name, request)
}

/// The failure of a response that must be exactly one failed `complete`.
fn failure_of(response: &OrchestratorResponse) -> &Failure {
    match response.actions.as_slice() {
        [Action::Complete(Err(failure))] => failure,
        other => panic!("expected one failed complete, got {other:?}"),
    }
}

/// An instance as the host keeps it: each episode's new events and its actions'
/// scheduling events join the history for the next.
struct Instance {
    registration: Registration,
    history: Vec<HistoryEvent>,
}

impl Instance {
    fn new(registration: Registration) -> Self {
        Self {
            registration,
            history: Vec::new(),
        }
    }

    /// Run an episode with `new` events, then record it.
    fn episode(&mut self, new: Vec<HistoryEvent>) -> OrchestratorResponse {
        let response = run(self.registration, self.history.clone(), new.clone());
        self.history.extend(new);
        self.history
            .extend(response.actions.iter().filter_map(recorded));
        response
    }
}

/// The history event the host records for a scheduling action.
fn recorded(action: &Action) -> Option<HistoryEvent> {
    Some(match action.clone() {
        Action::ScheduleActivity(a) => HistoryEvent::TaskScheduled(a),
        Action::CreateTimer(t) => HistoryEvent::TimerCreated(t),
        Action::CallSubOrchestrator(s) => HistoryEvent::SubOrchestrationCreated(s),
        Action::SendEvent(e) => HistoryEvent::EventSent(e),
        Action::SignalEntity(e) => HistoryEvent::EntitySignaled(e),
        Action::CallEntity(e) => HistoryEvent::EntityCalled(e),
        Action::LockEntities(l) => HistoryEvent::EntitiesLocked(l),
        Action::UnlockEntities(l) => HistoryEvent::EntitiesUnlocked(l),
        Action::Complete(_) | Action::ContinueAsNew(_) => return None,
    })
}
