//! The state of one orchestrator episode, shared by the executor, the context and its tasks.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::events::ExternalEvents;
use crate::bindings::fnhost::function::durable_types::{Action, Failure, HistoryEvent};

/// How the history says a scheduled task ended.
pub(crate) enum Outcome {
    Completed(Option<String>),
    Failed(Failure),
    Fired,
}

/// A scheduling action, as the code makes it or as the history recorded it.
#[derive(Debug, Clone)]
pub(crate) enum Call {
    Activity {
        name: String,
    },
    Timer,
    SubOrchestrator {
        name: String,
        instance_id: String,
    },
    SendEvent {
        name: String,
        instance_id: String,
    },
    /// `signal` false: a call, which waits for a result.
    Entity {
        operation: String,
        entity: String,
        signal: bool,
    },
    /// `lock` false: the release of a critical section.
    Lock {
        entities: String,
        lock: bool,
    },
}

impl Call {
    /// The scheduling event of the history, with its sequence id; `None` for other events.
    pub(crate) fn from_history(event: &HistoryEvent) -> Option<(u32, Call)> {
        Some(match event {
            HistoryEvent::TaskScheduled(e) => (
                e.event_id,
                Call::Activity {
                    name: e.name.clone(),
                },
            ),
            HistoryEvent::TimerCreated(e) => (e.event_id, Call::Timer),
            HistoryEvent::SubOrchestrationCreated(e) => (
                e.event_id,
                Call::SubOrchestrator {
                    name: e.name.clone(),
                    instance_id: e.instance_id.clone(),
                },
            ),
            HistoryEvent::EventSent(e) => (
                e.event_id,
                Call::SendEvent {
                    name: e.name.clone(),
                    instance_id: e.instance_id.clone(),
                },
            ),
            HistoryEvent::EntitySignaled(e) | HistoryEvent::EntityCalled(e) => (
                e.event_id,
                Call::Entity {
                    operation: e.operation.clone(),
                    entity: format!("@{}@{}", e.target.name, e.target.key),
                    signal: matches!(event, HistoryEvent::EntitySignaled(_)),
                },
            ),
            HistoryEvent::EntitiesLocked(l) | HistoryEvent::EntitiesUnlocked(l) => (
                l.event_id,
                Call::Lock {
                    entities: describe_targets(&l.targets),
                    lock: matches!(event, HistoryEvent::EntitiesLocked(_)),
                },
            ),
            _ => return None,
        })
    }

    /// Whether replaying `self` matches the history's `recorded`: same kind, same name.
    /// Inputs, fire times and targets may legitimately differ (they are data, not code).
    fn replays(&self, recorded: &Call) -> bool {
        match (self, recorded) {
            (Call::Activity { name: a }, Call::Activity { name: b }) => a == b,
            (Call::Timer, Call::Timer) => true,
            (Call::SubOrchestrator { name: a, .. }, Call::SubOrchestrator { name: b, .. }) => {
                a == b
            }
            (Call::SendEvent { name: a, .. }, Call::SendEvent { name: b, .. }) => a == b,
            (
                Call::Entity {
                    operation: a,
                    signal: sa,
                    ..
                },
                Call::Entity {
                    operation: b,
                    signal: sb,
                    ..
                },
            ) => a == b && sa == sb,
            (Call::Lock { lock: a, .. }, Call::Lock { lock: b, .. }) => a == b,
            _ => false,
        }
    }

    /// The action as a verb phrase: "call activity 'A'".
    fn describe(&self) -> String {
        match self {
            Call::Activity { name } => format!("call activity '{name}'"),
            Call::Timer => "create a timer".to_owned(),
            Call::SubOrchestrator { name, instance_id } => {
                format!("call sub-orchestrator '{name}' (instance '{instance_id}')")
            }
            Call::SendEvent { name, instance_id } => {
                format!("send event '{name}' to instance '{instance_id}'")
            }
            Call::Entity {
                operation,
                entity,
                signal,
            } => {
                let verb = if *signal { "signal" } else { "call" };
                format!("{verb} operation '{operation}' of entity '{entity}'")
            }
            Call::Lock { entities, lock } => {
                let verb = if *lock { "lock" } else { "unlock" };
                format!("{verb} entities {entities}")
            }
        }
    }
}

/// `@a@1, @b@2`.
pub(crate) fn describe_targets(
    targets: &[crate::bindings::fnhost::function::durable_types::EntityId],
) -> String {
    targets
        .iter()
        .map(|t| format!("@{}@{}", t.name, t.key))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Everything the replay of one episode knows and decides.
pub(crate) struct State {
    pub(crate) function: String,
    pub(crate) instance_id: String,
    /// The execution-started input.
    pub(crate) input: Option<String>,
    pub(crate) is_replaying: bool,
    /// The latest orchestrator-started time processed, in ms since the epoch.
    pub(crate) now_ms: u64,
    pub(crate) guid_counter: u64,
    pub(crate) custom_status: Option<String>,
    /// `continue_as_new`'s input, once called.
    pub(crate) continue_as_new: Option<Option<String>>,
    /// Whether `continue_as_new` keeps the events not consumed yet.
    pub(crate) keep_events: bool,
    pub(crate) events: ExternalEvents,
    /// The new actions of this episode, in the order the code made them.
    pub(crate) actions: Vec<Action>,
    /// The first fatal problem (non-determinism, a value that cannot be serialized):
    /// the episode stops and the instance fails with it.
    pub(crate) failure: Option<Failure>,
    /// Whether the code is inside a critical section (they do not nest).
    pub(crate) in_critical_section: bool,
    next_sequence: u32,
    /// The scheduling events of the whole history, by sequence id.
    recorded: BTreeMap<u32, Call>,
    /// The recorded ids that the code has made again during this replay.
    replayed: BTreeSet<u32>,
    outcomes: HashMap<u32, Outcome>,
}

impl State {
    /// The state before replay, indexing the scheduling events of `history`.
    pub(crate) fn new(function: &str, instance_id: &str, history: &[HistoryEvent]) -> Self {
        let mut state = Self {
            function: function.to_owned(),
            instance_id: instance_id.to_owned(),
            input: None,
            is_replaying: false,
            now_ms: 0,
            guid_counter: 0,
            custom_status: None,
            continue_as_new: None,
            keep_events: false,
            events: ExternalEvents::default(),
            actions: Vec::new(),
            failure: None,
            in_critical_section: false,
            next_sequence: 0,
            recorded: BTreeMap::new(),
            replayed: BTreeSet::new(),
            outcomes: HashMap::new(),
        };
        for (id, call) in history.iter().filter_map(Call::from_history) {
            if let Some(earlier) = state.recorded.insert(id, call.clone()) {
                let message = format!(
                    "the history of instance '{instance_id}' has two scheduling events with id \
                     {id} ('{}' and '{}'): the host must give each action its own sequence id",
                    earlier.describe(),
                    call.describe()
                );
                state.fail(Failure {
                    error_type: "InvalidHistory".into(),
                    message,
                    details: None,
                });
            }
        }
        state
    }

    /// Take the next sequence id for `call`: a replay (checked against the history) if
    /// the history has that id, else a new action made by `action`.
    pub(crate) fn schedule(&mut self, call: Call, action: impl FnOnce(u32) -> Action) -> u32 {
        let id = self.next_sequence;
        self.next_sequence += 1;
        match self.recorded.get(&id) {
            Some(recorded) if call.replays(recorded) => {
                self.replayed.insert(id);
            }
            Some(recorded) => {
                let expected = recorded.describe();
                self.non_determinism(id, &expected, &format!("tries to {}", call.describe()));
            }
            None => self.actions.push(action(id)),
        }
        id
    }

    /// The sequence id the next scheduling call will take.
    pub(crate) fn next_sequence(&self) -> u32 {
        self.next_sequence
    }

    /// Record how task `id` ended, for its future to pick up.
    pub(crate) fn resolve(&mut self, id: u32, outcome: Outcome) {
        self.outcomes.insert(id, outcome);
    }

    /// How task `id` ended, once it has.
    pub(crate) fn take_outcome(&mut self, id: u32) -> Option<Outcome> {
        self.outcomes.remove(&id)
    }

    /// Stop the episode with `failure`, unless an earlier one already did.
    pub(crate) fn fail(&mut self, failure: Failure) {
        self.failure.get_or_insert(failure);
    }

    /// After replay: a scheduling event of the history that the code did not make again.
    pub(crate) fn check_all_replayed(&mut self) {
        let missing = self
            .recorded
            .iter()
            .find(|(id, _)| !self.replayed.contains(id))
            .map(|(id, call)| (*id, call.describe()));
        if let Some((id, expected)) = missing {
            self.non_determinism(id, &expected, "does not");
        }
    }

    fn non_determinism(&mut self, id: u32, expected: &str, now: &str) {
        let message = format!(
            "orchestrator '{}' (instance '{}') is not deterministic: it was expected to \
             {expected} (event {id}, from the history) but the code now {now}. An orchestrator \
             must make the same calls in the same order on every replay: deploy such a change \
             under a new orchestrator name, or once the running instances have finished",
            self.function, self.instance_id
        );
        self.fail(Failure {
            error_type: "NonDeterminism".into(),
            message,
            details: None,
        });
    }
}
