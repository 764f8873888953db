//! `OrchestrationContext`: what an orchestrator function sees and does, replay-safely.

use std::cell::{RefCell, RefMut};
use std::future::Future;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, de::DeserializeOwned};

use super::error::TaskError;
use super::futures::{ExternalEvent, Race, Task, Timer, WhenAll, WhenAny};
use super::retry::{self, RetryOptions};
use super::state::{Call, State};
use crate::bindings::fnhost::function::durable_types::{
    Action, EntityCalled, EntityLock, EventSent, Failure, SubOrchestrationCreated, TaskScheduled,
    TimerCreated,
};
use crate::durable::EntityId;

pub(crate) struct Inner {
    pub(crate) instance_id: String,
    pub(crate) state: RefCell<State>,
}

/// The orchestrator's handle on its instance: input, clock, and the durable calls.
///
/// Cheap to clone (a reference-counted pointer); it lives on the single thread of one
/// episode. Every method is replay-safe: a call made again during replay resolves from
/// the history instead of running again.
///
/// Function chaining, each step awaiting the previous:
///
/// ```
/// # use fnhost_sdk::{OrchestrationContext, OrchestrationError, orchestrator};
/// #[orchestrator]
/// async fn chain(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
///     let x: i64 = ctx.call_activity("f1", ()).await?;
///     let y: i64 = ctx.call_activity("f2", x).await?;
///     Ok(ctx.call_activity("f3", y).await?)
/// }
/// ```
///
/// Fan-out/fan-in: all chunks run in parallel, outputs come back in order:
///
/// ```
/// # use fnhost_sdk::{OrchestrationContext, OrchestrationError, orchestrator};
/// #[orchestrator]
/// async fn fan_out(ctx: OrchestrationContext) -> Result<u64, OrchestrationError> {
///     let chunks: Vec<String> = ctx.call_activity("list_chunks", ()).await?;
///     let tasks = chunks.iter().map(|c| ctx.call_activity::<u64>("process_chunk", c));
///     let sizes = ctx.when_all(tasks).await;
///     Ok(sizes.into_iter().collect::<Result<Vec<_>, _>>()?.iter().sum())
/// }
/// ```
///
/// Human approval with a timeout: whichever comes first, the event or the timer:
///
/// ```
/// # use std::time::Duration;
/// # use fnhost_sdk::{Either, OrchestrationContext, OrchestrationError, orchestrator};
/// #[orchestrator]
/// async fn approval(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
///     ctx.call_activity::<()>("request_approval", ctx.input::<String>()?).await?;
///     let deadline = ctx.current_utc_datetime() + Duration::from_secs(72 * 3600);
///     let approved = ctx.wait_for_external_event::<bool>("Approval");
///     match ctx.race(approved, ctx.create_timer(deadline)).await {
///         Either::Left(approved) => Ok(if approved? { "approved" } else { "rejected" }.into()),
///         Either::Right(()) => Ok(ctx.call_activity("escalate", ()).await?),
///     }
/// }
/// ```
#[derive(Clone)]
pub struct OrchestrationContext {
    pub(crate) inner: Rc<Inner>,
}

impl OrchestrationContext {
    pub(crate) fn new(state: State) -> Self {
        Self {
            inner: Rc::new(Inner {
                instance_id: state.instance_id.clone(),
                state: RefCell::new(state),
            }),
        }
    }

    /// The episode's state. Borrows never outlive one call: user code runs between them.
    pub(crate) fn state(&self) -> RefMut<'_, State> {
        self.inner.state.borrow_mut()
    }

    /// The orchestration instance's id.
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// The instance's input (JSON `null` when it was started without one).
    pub fn input<T: DeserializeOwned>(&self) -> Result<T, TaskError> {
        let state = self.state();
        super::decode(state.input.as_deref()).map_err(|e| {
            TaskError::new(
                "InvalidInput",
                format!(
                    "the input of orchestrator '{}' (instance '{}') does not fit the type the \
                     orchestrator asked for: {e}",
                    state.function, state.instance_id
                ),
            )
        })
    }

    /// Whether the code is running again over history already recorded (true) or for
    /// the first time (false). Use it to log only once.
    pub fn is_replaying(&self) -> bool {
        self.state().is_replaying
    }

    /// The orchestration's clock: when the episode now being replayed began. Never use
    /// `SystemTime::now()` in an orchestrator; it differs on every replay.
    pub fn current_utc_datetime(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.state().now_ms)
    }

    /// A GUID that is new on each call but the same on every replay: derived from the
    /// instance id, the current time and a per-execution counter.
    pub fn new_guid(&self) -> String {
        let mut state = self.state();
        state.guid_counter += 1;
        let name = format!(
            "{}:{}:{}",
            state.instance_id, state.now_ms, state.guid_counter
        );
        super::guid::from_name(&name)
    }

    /// Set the status document that clients see as `customStatus`; the latest value wins.
    pub fn set_custom_status(&self, status: impl Serialize) {
        match super::encode(&status) {
            Ok(status) => self.state().custom_status = status,
            Err(e) => self.fail_serialization("the custom status", e),
        }
    }

    /// Call the activity `name` with `input`; resolves to its output as `R`.
    pub fn call_activity<R>(&self, name: &str, input: impl Serialize) -> Task<R> {
        match super::encode(&input) {
            Ok(input) => self.schedule_activity(name, input),
            Err(e) => Task::failed(input_error(&format!("activity '{name}'"), &e)),
        }
    }

    /// Call the activity `name`, and while it fails retry it after durable timers as
    /// `retry` says; resolves to the first success or to the last attempt's error.
    pub fn call_activity_with_retry<R: DeserializeOwned + 'static>(
        &self,
        name: &str,
        retry: RetryOptions,
        input: impl Serialize,
    ) -> Task<R> {
        match super::encode(&input) {
            Ok(input) => retry::call_with_retry(self, name, retry, input),
            Err(e) => Task::failed(input_error(&format!("activity '{name}'"), &e)),
        }
    }

    /// Start the orchestrator `name` as a sub-orchestration and wait for its output.
    /// Without `instance_id` its id is `{this instance id}:{sequence id}`.
    pub fn call_sub_orchestrator<R>(
        &self,
        name: &str,
        instance_id: Option<&str>,
        input: impl Serialize,
    ) -> Task<R> {
        let input = match super::encode(&input) {
            Ok(input) => input,
            Err(e) => return Task::failed(input_error(&format!("sub-orchestrator '{name}'"), &e)),
        };
        let mut state = self.state();
        let instance_id = match instance_id {
            Some(id) => id.to_owned(),
            None => format!("{}:{}", self.instance_id(), state.next_sequence()),
        };
        let call = Call::SubOrchestrator {
            name: name.to_owned(),
            instance_id: instance_id.clone(),
        };
        let what = format!("sub-orchestrator '{name}' (instance '{instance_id}')");
        let id = state.schedule(call, |event_id| {
            Action::CallSubOrchestrator(SubOrchestrationCreated {
                event_id,
                name: name.to_owned(),
                instance_id,
                input,
            })
        });
        drop(state);
        Task::scheduled(self.clone(), id, what)
    }

    /// A durable timer that fires at `fire_at` (UTC). Dropping it abandons it.
    pub fn create_timer(&self, fire_at: SystemTime) -> Timer {
        let fire_at = super::millis(fire_at);
        let id = self.state().schedule(Call::Timer, |event_id| {
            Action::CreateTimer(TimerCreated { event_id, fire_at })
        });
        Timer::new(self.clone(), id)
    }

    /// Wait for the external event `name` (case-insensitive); resolves to its data as `R`.
    ///
    /// Events that arrive before anyone waits are kept, oldest first; each event goes to
    /// one waiter, in the order the waits were made.
    pub fn wait_for_external_event<R>(&self, name: &str) -> ExternalEvent<R> {
        let waiter = self.state().events.wait(name);
        ExternalEvent::new(self.clone(), name.to_owned(), waiter)
    }

    /// Raise the event `name` with `data` on the instance `instance_id` (fire and forget).
    pub fn send_event(&self, instance_id: &str, name: &str, data: impl Serialize) {
        let input = match super::encode(&data) {
            Ok(input) => input,
            Err(e) => return self.fail_serialization(&format!("the data of event '{name}'"), e),
        };
        let call = Call::SendEvent {
            name: name.to_owned(),
            instance_id: instance_id.to_owned(),
        };
        self.state().schedule(call, |event_id| {
            Action::SendEvent(EventSent {
                event_id,
                instance_id: instance_id.to_owned(),
                name: name.to_owned(),
                input,
            })
        });
    }

    /// Send `operation` with `input` to `entity`, one-way (fire and forget).
    /// Signals from one orchestration to one entity arrive in the order sent.
    pub fn signal_entity(&self, entity: &EntityId, operation: &str, input: impl Serialize) {
        self.entity_operation(entity, operation, input, None, true);
    }

    /// As [`signal_entity`](Self::signal_entity), delivered at `at` (UTC).
    pub fn signal_entity_at(
        &self,
        entity: &EntityId,
        operation: &str,
        input: impl Serialize,
        at: SystemTime,
    ) {
        self.entity_operation(entity, operation, input, Some(super::millis(at)), true);
    }

    /// Call `operation` of `entity` with `input` and wait for its result as `R`
    /// (an operation that fails resolves to its error). The entity runs it once:
    /// a replay takes the result from the history.
    pub fn call_entity<R>(
        &self,
        entity: &EntityId,
        operation: &str,
        input: impl Serialize,
    ) -> Task<R> {
        let id = self.entity_operation(entity, operation, input, None, false);
        match id {
            Some(id) => Task::scheduled(
                self.clone(),
                id,
                format!("operation '{operation}' of entity '{entity}'"),
            ),
            None => Task::failed(TaskError::new(
                "SerializationError",
                format!("the input of operation '{operation}' cannot be serialized to JSON"),
            )),
        }
    }

    /// Lock `entities` for a critical section and wait until all are held.
    /// While this orchestration holds them, each entity runs only the
    /// operations this orchestration sends it; everyone else's wait in its
    /// queue, in order. The locks are released when the returned
    /// [`CriticalSection`] is dropped (or [`release`](CriticalSection::release)d),
    /// and in any case when the orchestration ends.
    ///
    /// Entities are locked one after another in a fixed order (by name, then
    /// key), so two critical sections over the same entities never wait for
    /// each other forever.
    ///
    /// ```
    /// # use fnhost_sdk::{EntityId, OrchestrationContext, OrchestrationError, orchestrator};
    /// #[orchestrator]
    /// async fn transfer(ctx: OrchestrationContext) -> Result<(), OrchestrationError> {
    ///     let (from, to) = (EntityId::new("account", "a"), EntityId::new("account", "b"));
    ///     let _section = ctx.lock_entities(&[from.clone(), to.clone()]).await?;
    ///     let balance: i64 = ctx.call_entity(&from, "get", ()).await?;
    ///     if balance >= 10 {
    ///         ctx.call_entity::<i64>(&from, "add", -10).await?;
    ///         ctx.call_entity::<i64>(&to, "add", 10).await?;
    ///     }
    ///     Ok(())
    /// }
    /// ```
    pub async fn lock_entities(&self, entities: &[EntityId]) -> Result<CriticalSection, TaskError> {
        let mut sorted: Vec<EntityId> = entities.to_vec();
        sorted.sort_by(|a, b| (&a.name, &a.key).cmp(&(&b.name, &b.key)));
        sorted.dedup();
        if sorted.is_empty() {
            return Err(TaskError::new(
                "InvalidLock",
                "lock_entities needs at least one entity",
            ));
        }
        if self.state().in_critical_section {
            // Durable Functions' rule: one section at a time, all its locks at once.
            return Err(TaskError::new(
                "LockingRulesViolation",
                "lock_entities inside a critical section: lock every entity the section needs at once",
            ));
        }
        let targets: Vec<_> = sorted.iter().map(Into::into).collect();
        let described = super::state::describe_targets(&targets);
        let call = Call::Lock {
            entities: described.clone(),
            lock: true,
        };
        let id = self.state().schedule(call, |event_id| {
            Action::LockEntities(EntityLock {
                event_id,
                lock_id: event_id,
                targets: targets.clone(),
            })
        });
        self.state().in_critical_section = true;
        let section = CriticalSection {
            ctx: self.clone(),
            lock_id: id,
            entities: sorted,
            targets,
        };
        // If the request fails partway, dropping `section` releases the
        // entities that did lock.
        Task::<()>::scheduled(
            self.clone(),
            id,
            format!("the lock of entities {described}"),
        )
        .await?;
        Ok(section)
    }

    fn entity_operation(
        &self,
        entity: &EntityId,
        operation: &str,
        input: impl Serialize,
        scheduled_time: Option<u64>,
        signal: bool,
    ) -> Option<u32> {
        let input = match super::encode(&input) {
            Ok(input) => input,
            Err(e) => {
                if signal {
                    self.fail_serialization(&format!("the input of operation '{operation}'"), e);
                }
                return None;
            }
        };
        let call = Call::Entity {
            operation: operation.to_owned(),
            entity: entity.to_string(),
            signal,
        };
        let id = self.state().schedule(call, |event_id| {
            let called = EntityCalled {
                event_id,
                target: entity.into(),
                operation: operation.to_owned(),
                input,
                scheduled_time,
            };
            if signal {
                Action::SignalEntity(called)
            } else {
                Action::CallEntity(called)
            }
        });
        Some(id)
    }

    /// Restart the instance with `input` and an empty history once the orchestrator
    /// function returns `Ok` (an `Err` fails it instead). External events that arrived
    /// but were not consumed are dropped, as in Durable Functions; see
    /// [`continue_as_new_preserving_events`](Self::continue_as_new_preserving_events).
    /// Eternal orchestrations use it to keep their history short.
    pub fn continue_as_new(&self, input: impl Serialize) {
        self.continue_as(input, false);
    }

    /// [`continue_as_new`](Self::continue_as_new), keeping the external events that
    /// arrived but no `wait_for_external_event` consumed: the new execution receives them
    /// first, in the order they arrived (Durable Functions' `preserveUnprocessedEvents`).
    pub fn continue_as_new_preserving_events(&self, input: impl Serialize) {
        self.continue_as(input, true);
    }

    fn continue_as(&self, input: impl Serialize, keep_events: bool) {
        match super::encode(&input) {
            Ok(input) => {
                let mut state = self.state();
                state.continue_as_new = Some(input);
                state.keep_events = keep_events;
            }
            Err(e) => self.fail_serialization("the continue-as-new input", e),
        }
    }

    /// Resolves when all `futures` have, to their outputs in the order given (not the
    /// order they finished in).
    pub fn when_all<F: Future>(&self, futures: impl IntoIterator<Item = F>) -> WhenAll<F> {
        WhenAll::new(futures)
    }

    /// Resolves when the first of `futures` does, to its index and output.
    ///
    /// # Panics
    ///
    /// If `futures` is empty: the orchestration would wait forever.
    pub fn when_any<F: Future>(&self, futures: impl IntoIterator<Item = F>) -> WhenAny<F> {
        WhenAny::new(futures)
    }

    /// Races two futures of different types (an event against a timer): resolves to
    /// [`Either::Left`](super::Either::Left) or [`Either::Right`](super::Either::Right)
    /// with the first one's output.
    pub fn race<A: Future, B: Future>(&self, a: A, b: B) -> Race<A, B> {
        Race::new(a, b)
    }

    pub(crate) fn schedule_activity<R>(&self, name: &str, input: Option<String>) -> Task<R> {
        let call = Call::Activity {
            name: name.to_owned(),
        };
        let id = self.state().schedule(call, |event_id| {
            Action::ScheduleActivity(TaskScheduled {
                event_id,
                name: name.to_owned(),
                input,
            })
        });
        Task::scheduled(self.clone(), id, format!("activity '{name}'"))
    }

    fn fail_serialization(&self, what: &str, e: serde_json::Error) {
        let mut state = self.state();
        let message = format!(
            "orchestrator '{}' (instance '{}'): {what} cannot be serialized to JSON: {e}",
            state.function, state.instance_id
        );
        state.fail(Failure {
            error_type: "SerializationError".into(),
            message,
            details: None,
        });
    }
}

/// The locks of a critical section ([`OrchestrationContext::lock_entities`]),
/// held until this is dropped.
pub struct CriticalSection {
    ctx: OrchestrationContext,
    lock_id: u32,
    entities: Vec<EntityId>,
    targets: Vec<crate::bindings::fnhost::function::durable_types::EntityId>,
}

impl CriticalSection {
    /// The entities locked, in lock order.
    pub fn entities(&self) -> &[EntityId] {
        &self.entities
    }

    /// Release the locks now (as dropping does).
    pub fn release(self) {}
}

impl Drop for CriticalSection {
    fn drop(&mut self) {
        // Dropped while the episode is being torn down (the state in use):
        // the host releases the locks when the orchestration ends anyway.
        let Ok(mut state) = self.ctx.inner.state.try_borrow_mut() else {
            return;
        };
        state.in_critical_section = false;
        let call = Call::Lock {
            entities: super::state::describe_targets(&self.targets),
            lock: false,
        };
        let (lock_id, targets) = (self.lock_id, std::mem::take(&mut self.targets));
        state.schedule(call, |event_id| {
            Action::UnlockEntities(EntityLock {
                event_id,
                lock_id,
                targets,
            })
        });
    }
}

fn input_error(what: &str, e: &serde_json::Error) -> TaskError {
    TaskError::new(
        "SerializationError",
        format!("the input of {what} cannot be serialized to JSON: {e}"),
    )
}
