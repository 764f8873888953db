//! Durable entities: small stateful objects addressed by name and key, whose
//! operations run one at a time.
//!
//! An entity function gets an [`EntityContext`] per operation: the operation's
//! name and input, the entity's state, and ways to set the state, return a
//! result and signal other entities. The host hands it the operations waiting
//! for the entity in a batch and stores the state once per batch.
//!
//! ```no_run
//! use fnhost_sdk::{EntityContext, entity};
//!
//! #[entity]
//! fn counter(ctx: &mut EntityContext) -> Result<(), String> {
//!     let mut value: i64 = ctx.get_state(|| 0).map_err(|e| e.to_string())?;
//!     match ctx.operation_name() {
//!         "add" => value += ctx.get_input::<i64>().map_err(|e| e.to_string())?,
//!         "reset" => value = 0,
//!         "get" => {}
//!         other => return Err(format!("counter has no operation '{other}'")),
//!     }
//!     ctx.set_state(&value);
//!     ctx.set_result(&value);
//!     Ok(())
//! }
//!
//! fnhost_sdk::export_functions!(counter);
//! ```

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

use crate::bindings::fnhost::function::durable_types as wit;

use super::{decode, encode, millis};

/// An entity's address: its name (compared in lower case, as Durable
/// Functions does) and its key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EntityId {
    pub name: String,
    pub key: String,
}

impl EntityId {
    /// `EntityId::new("Counter", "my-counter")`: the name is kept in lower case.
    pub fn new(name: impl Into<String>, key: impl Into<String>) -> EntityId {
        EntityId {
            name: name.into().to_lowercase(),
            key: key.into(),
        }
    }
}

impl fmt::Display for EntityId {
    /// `@counter@my-counter`, the entity's instance id.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}@{}", self.name, self.key)
    }
}

impl From<&EntityId> for wit::EntityId {
    fn from(id: &EntityId) -> wit::EntityId {
        wit::EntityId {
            name: id.name.clone(),
            key: id.key.clone(),
        }
    }
}

impl From<wit::EntityId> for EntityId {
    fn from(id: wit::EntityId) -> EntityId {
        EntityId {
            name: id.name,
            key: id.key,
        }
    }
}

/// Why an entity's input or state could not be read as the type asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityError {
    pub message: String,
}

impl fmt::Display for EntityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EntityError {}

/// One operation on an entity, as its function sees it.
pub struct EntityContext {
    id: EntityId,
    operation: String,
    input: Option<String>,
    state: Option<String>,
    result: Option<String>,
    signals: Vec<wit::EntitySignal>,
    starts: Vec<wit::OrchestrationStart>,
}

impl EntityContext {
    /// The entity's name (lower case).
    pub fn entity_name(&self) -> &str {
        &self.id.name
    }

    /// The entity's key.
    pub fn entity_key(&self) -> &str {
        &self.id.key
    }

    pub fn entity_id(&self) -> &EntityId {
        &self.id
    }

    /// The operation's name, as the caller spelled it.
    pub fn operation_name(&self) -> &str {
        &self.operation
    }

    /// The operation's input; an absent input reads as JSON `null`.
    pub fn get_input<T: DeserializeOwned>(&self) -> Result<T, EntityError> {
        decode(self.input.as_deref()).map_err(|e| EntityError {
            message: format!(
                "the input of operation '{}' on entity {} is not what it expects: {e}",
                self.operation, self.id
            ),
        })
    }

    /// Whether the entity has state.
    pub fn has_state(&self) -> bool {
        self.state.is_some()
    }

    /// The entity's state, or `default()` if it has none yet. State that no
    /// longer reads as `T` is an error (this operation fails, the state stays).
    pub fn get_state<T: DeserializeOwned>(
        &self,
        default: impl FnOnce() -> T,
    ) -> Result<T, EntityError> {
        match &self.state {
            None => Ok(default()),
            Some(json) => serde_json::from_str(json).map_err(|e| EntityError {
                message: format!(
                    "the state of entity {} does not read as expected: {e}",
                    self.id
                ),
            }),
        }
    }

    /// Replace the entity's state.
    pub fn set_state<T: Serialize + ?Sized>(&mut self, state: &T) {
        self.state = Some(serde_json::to_string(state).expect("the state serializes to JSON"));
    }

    /// Remove the entity's state: it reads as not existing afterwards.
    pub fn delete_state(&mut self) {
        self.state = None;
    }

    /// What the operation returns to a caller that waits for it.
    pub fn set_result<T: Serialize + ?Sized>(&mut self, value: &T) {
        self.result = encode(value).expect("the result serializes to JSON");
    }

    /// Send `operation` to another entity (or this one), one-way. It is sent
    /// only if this operation succeeds.
    pub fn signal_entity<T: Serialize + ?Sized>(
        &mut self,
        entity: &EntityId,
        operation: &str,
        input: &T,
    ) {
        self.signals.push(wit::EntitySignal {
            target: entity.into(),
            operation: operation.to_string(),
            input: encode(input).expect("the input serializes to JSON"),
            scheduled_time: None,
        });
    }

    /// As [`signal_entity`](Self::signal_entity), delivered at `at`.
    pub fn signal_entity_at<T: Serialize + ?Sized>(
        &mut self,
        entity: &EntityId,
        operation: &str,
        input: &T,
        at: std::time::SystemTime,
    ) {
        self.signal_entity(entity, operation, input);
        if let Some(last) = self.signals.last_mut() {
            last.scheduled_time = Some(millis(at));
        }
    }

    /// Start an orchestration (with a new instance id unless one is given).
    /// It starts only if this operation succeeds.
    pub fn start_new_orchestration<T: Serialize + ?Sized>(
        &mut self,
        orchestrator: &str,
        instance_id: Option<&str>,
        input: &T,
    ) {
        self.starts.push(wit::OrchestrationStart {
            name: orchestrator.to_string(),
            instance_id: instance_id.map(str::to_string),
            input: encode(input).expect("the input serializes to JSON"),
        });
    }
}

/// What an entity function returns: `()`, or a `Result` whose `Err` fails
/// the operation (its text goes to the caller).
#[doc(hidden)]
pub type EntityFn = fn(&mut EntityContext) -> Result<(), String>;

/// Run `batch` through `handler`, one operation at a time. An operation that
/// fails leaves the state, signals and starts as they were before it.
#[doc(hidden)]
pub fn run_entity(handler: EntityFn, batch: wit::EntityBatch) -> wit::EntityBatchResult {
    let id = EntityId::from(batch.id);
    let mut state = batch.state;
    let mut results = Vec::with_capacity(batch.operations.len());
    for op in batch.operations {
        let mut ctx = EntityContext {
            id: id.clone(),
            operation: op.name,
            input: op.input,
            state: state.clone(),
            result: None,
            signals: Vec::new(),
            starts: Vec::new(),
        };
        match handler(&mut ctx) {
            Ok(()) => {
                state = ctx.state;
                results.push(wit::OperationResult {
                    outcome: Ok(ctx.result),
                    signals: ctx.signals,
                    starts: ctx.starts,
                });
            }
            Err(message) => results.push(wit::OperationResult {
                outcome: Err(wit::Failure {
                    error_type: "EntityOperationFailed".into(),
                    message,
                    details: None,
                }),
                signals: Vec::new(),
                starts: Vec::new(),
            }),
        }
    }
    wit::EntityBatchResult { state, results }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(ctx: &mut EntityContext) -> Result<(), String> {
        let mut value: i64 = ctx.get_state(|| 0).map_err(|e| e.to_string())?;
        match ctx.operation_name() {
            "add" => value += ctx.get_input::<i64>().map_err(|e| e.to_string())?,
            "get" => {}
            "delete" => {
                ctx.delete_state();
                return Ok(());
            }
            "add_and_fail" => {
                value += 1000;
                ctx.set_state(&value);
                ctx.signal_entity(&EntityId::new("Log", "x"), "never", &());
                return Err("failed on purpose".into());
            }
            other => return Err(format!("no operation '{other}'")),
        }
        ctx.set_state(&value);
        ctx.set_result(&value);
        Ok(())
    }

    fn op(name: &str, input: Option<&str>) -> wit::EntityOperation {
        wit::EntityOperation {
            name: name.into(),
            input: input.map(str::to_string),
        }
    }

    #[test]
    fn a_failed_operation_rolls_back_only_itself() {
        let batch = wit::EntityBatch {
            id: (&EntityId::new("Counter", "k")).into(),
            state: Some("5".into()),
            operations: vec![
                op("add", Some("2")),
                op("add_and_fail", None),
                op("add", Some("\"x\"")),
                op("get", None),
            ],
        };
        let r = run_entity(counter, batch);
        assert_eq!(r.state.as_deref(), Some("7"));
        assert_eq!(r.results[0].outcome, Ok(Some("7".into())));
        let failed = r.results[1].outcome.as_ref().unwrap_err();
        assert_eq!(failed.message, "failed on purpose");
        assert!(
            r.results[1].signals.is_empty(),
            "the failed operation's signal is dropped"
        );
        assert!(
            r.results[2]
                .outcome
                .as_ref()
                .unwrap_err()
                .message
                .contains("input")
        );
        assert_eq!(r.results[3].outcome, Ok(Some("7".into())));
    }

    #[test]
    fn deleted_state_reads_as_the_default_again() {
        let batch = wit::EntityBatch {
            id: (&EntityId::new("counter", "k")).into(),
            state: Some("5".into()),
            operations: vec![op("delete", None), op("get", None)],
        };
        let r = run_entity(counter, batch);
        assert_eq!(r.state.as_deref(), Some("0"));
        assert_eq!(r.results[1].outcome, Ok(Some("0".into())));
    }

    #[test]
    fn names_are_lower_case_in_ids() {
        assert_eq!(
            EntityId::new("Counter", "My-Key").to_string(),
            "@counter@My-Key"
        );
    }
}
