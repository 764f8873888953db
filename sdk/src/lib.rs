//! Write fnhost functions in Rust: plain functions, registered with one macro.
//!
//! ```ignore
//! use fnhost_sdk::{http_trigger, HttpRequest, HttpResponse};
//!
//! #[http_trigger]
//! fn hello(req: HttpRequest) -> HttpResponse {
//!     let name = req.query("name").unwrap_or("world");
//!     HttpResponse::ok().text(format!("Hello, {name}!"))
//! }
//!
//! fnhost_sdk::export_functions!(hello);
//! ```
//!
//! Durable orchestrations are `#[orchestrator]` async functions over an
//! [`OrchestrationContext`], their work is done by `#[activity]` functions, and any
//! function starts and queries them through [`client`]; see [`durable`].
//!
//! Build with `host build` (or `cargo build --target wasm32-wasip2`) and put the
//! `.wasm` next to a `function.toml` that names the function and its trigger.

// The generated bindings name this crate by its public path, so that the
// export macro works from function crates too.
extern crate self as fnhost_sdk;

pub mod client;
pub mod durable;
pub mod http;
pub mod log;
mod output;
mod triggers;

pub use output::{blob, queue};
pub use triggers::{Blob, IntoTriggerResult, QueueMessage, TimerInfo};

pub use durable::{
    CriticalSection, Either, EntityContext, EntityId, OrchestrationContext, OrchestrationError,
    RetryOptions, Task, TaskError,
};
pub use fnhost_sdk_macros::{
    activity, blob_trigger, entity, export_functions, http_trigger, orchestrator, queue_trigger,
    timer_trigger,
};
pub use http::{HttpRequest, HttpResponse, IntoHttpResponse};
pub use serde_json::{Value as JsonValue, json};

/// Bindings generated from `sdk/wit`: the exact contract with the host.
#[doc(hidden)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "function",
        pub_export_macro: true,
        export_macro_name: "__export_function_world",
        default_bindings_module: "fnhost_sdk::bindings",
        runtime_path: "fnhost_sdk::__private::wit_bindgen::rt",
        generate_all,
        // Lets tests compare actions and histories whole.
        additional_derives: [PartialEq],
    });
}

/// Used by the code that the macros generate; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    pub use crate::bindings::fnhost::function::durable_types::Failure;
    pub use crate::durable::{
        ActivityFailureViaDisplay, ActivityFailureViaTaskError, ActivityFn, EntityFn, ErrorWrap,
        OrchestrationFailureViaDisplay, OrchestrationFailureViaInto, OrchestratorFuture,
        activity_input, activity_output, orchestration_output, run_entity, run_orchestrator,
    };

    use crate::bindings::fnhost::function::durable_types as durable;
    use crate::bindings::fnhost::function::types as wit;

    /// One function of the component, as registered by a trigger macro.
    #[derive(Clone, Copy)]
    pub enum Registration {
        Http {
            name: &'static str,
            handler: fn(crate::HttpRequest) -> crate::HttpResponse,
        },
        Orchestrator {
            name: &'static str,
            handler: fn(crate::OrchestrationContext) -> OrchestratorFuture,
        },
        Activity {
            name: &'static str,
            handler: ActivityFn,
        },
        Queue {
            name: &'static str,
            handler: fn(crate::QueueMessage) -> Result<(), String>,
        },
        Blob {
            name: &'static str,
            handler: fn(crate::Blob) -> Result<(), String>,
        },
        Timer {
            name: &'static str,
            handler: fn(crate::TimerInfo) -> Result<(), String>,
        },
        Entity {
            name: &'static str,
            handler: EntityFn,
        },
    }

    fn missing(trigger: &str, function: &str) -> String {
        format!(
            "this component has no {trigger} function named '{function}': check the name in \
             function.toml and that export_functions! lists it"
        )
    }

    /// Run the queueTrigger function named `function`.
    pub fn dispatch_queue(
        functions: &[Registration],
        function: &str,
        message: crate::bindings::fnhost::function::trigger_types::QueueMessage,
    ) -> Result<(), String> {
        functions
            .iter()
            .find_map(|r| match r {
                Registration::Queue { name, handler } if *name == function => Some(*handler),
                _ => None,
            })
            .ok_or_else(|| missing("queueTrigger", function))?(message.into())
    }

    /// Run the blobTrigger function named `function`.
    pub fn dispatch_blob(
        functions: &[Registration],
        function: &str,
        blob: crate::bindings::fnhost::function::trigger_types::BlobItem,
    ) -> Result<(), String> {
        functions
            .iter()
            .find_map(|r| match r {
                Registration::Blob { name, handler } if *name == function => Some(*handler),
                _ => None,
            })
            .ok_or_else(|| missing("blobTrigger", function))?(blob.into())
    }

    /// Run the timerTrigger function named `function`.
    pub fn dispatch_timer(
        functions: &[Registration],
        function: &str,
        timer: crate::bindings::fnhost::function::trigger_types::TimerInfo,
    ) -> Result<(), String> {
        functions
            .iter()
            .find_map(|r| match r {
                Registration::Timer { name, handler } if *name == function => Some(*handler),
                _ => None,
            })
            .ok_or_else(|| missing("timerTrigger", function))?(timer.into())
    }

    /// Run a batch of operations of the entity named `function` (names
    /// compare in lower case). No such entity: every operation fails.
    pub fn dispatch_entity(
        functions: &[Registration],
        function: &str,
        batch: durable::EntityBatch,
    ) -> durable::EntityBatchResult {
        let handler = functions.iter().find_map(|r| match r {
            Registration::Entity { name, handler } if name.eq_ignore_ascii_case(function) => {
                Some(*handler)
            }
            _ => None,
        });
        match handler {
            Some(handler) => run_entity(handler, batch),
            None => durable::EntityBatchResult {
                results: batch
                    .operations
                    .iter()
                    .map(|_| durable::OperationResult {
                        outcome: Err(not_found("entityTrigger", function)),
                        signals: Vec::new(),
                        starts: Vec::new(),
                    })
                    .collect(),
                state: batch.state,
            },
        }
    }

    /// Run one episode of the orchestrator named `function`.
    pub fn dispatch_orchestrator(
        functions: &[Registration],
        function: &str,
        request: durable::OrchestratorRequest,
    ) -> durable::OrchestratorResponse {
        let handler = functions.iter().find_map(|r| match r {
            Registration::Orchestrator { name, handler } if *name == function => Some(*handler),
            _ => None,
        });
        match handler {
            Some(handler) => run_orchestrator(function, handler, request),
            None => durable::OrchestratorResponse {
                actions: vec![durable::Action::Complete(Err(not_found(
                    "orchestrationTrigger",
                    function,
                )))],
                custom_status: None,
            },
        }
    }

    /// Run the activity named `function` on `input`.
    pub fn dispatch_activity(
        functions: &[Registration],
        function: &str,
        input: Option<String>,
    ) -> Result<Option<String>, Failure> {
        let handler = functions.iter().find_map(|r| match r {
            Registration::Activity { name, handler } if *name == function => Some(*handler),
            _ => None,
        });
        match handler {
            Some(handler) => handler(input),
            None => Err(not_found("activityTrigger", function)),
        }
    }

    fn not_found(trigger: &str, function: &str) -> Failure {
        Failure {
            error_type: "FunctionNotFound".into(),
            message: format!(
                "this component has no {trigger} function named '{function}': check the name \
                 in function.toml and that export_functions! lists it"
            ),
            details: None,
        }
    }

    /// Dispatch an HTTP invocation to the function named `function`.
    pub fn dispatch_http(
        functions: &[Registration],
        function: &str,
        request: wit::HttpRequest,
    ) -> wit::HttpResponse {
        let handler = functions.iter().find_map(|r| match r {
            Registration::Http { name, handler } if *name == function => Some(*handler),
            _ => None,
        });
        match handler {
            Some(handler) => handler(crate::HttpRequest::from(request)).into(),
            None => crate::HttpResponse::new(500)
                .text(format!(
                    "this component has no httpTrigger function named '{function}': \
                     check the name in function.toml"
                ))
                .into(),
        }
    }
}
