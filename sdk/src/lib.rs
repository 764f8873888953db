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
//! Build with `host build` (or `cargo build --target wasm32-wasip2`) and put the
//! `.wasm` next to a `function.toml` that names the function and its trigger.

// The generated bindings name this crate by its public path, so that the
// export macro works from function crates too.
extern crate self as fnhost_sdk;

mod http;
pub mod log;

pub use fnhost_sdk_macros::{export_functions, http_trigger};
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
    });
}

/// Used by the code that the macros generate; not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use wit_bindgen;

    use crate::bindings::fnhost::function::types as wit;

    /// One function of the component, as registered by a trigger macro.
    pub enum Registration {
        Http {
            name: &'static str,
            handler: fn(crate::HttpRequest) -> crate::HttpResponse,
        },
    }

    use crate::bindings::fnhost::function::durable_types as durable;

    /// Dispatch an orchestrator episode to the function named `function`.
    pub fn dispatch_orchestrator(
        _functions: &[Registration],
        function: &str,
        _request: durable::OrchestratorRequest,
    ) -> durable::OrchestratorResponse {
        durable::OrchestratorResponse {
            actions: vec![durable::Action::Complete(Err(durable::Failure {
                error_type: "FunctionNotFound".into(),
                message: format!(
                    "this component has no orchestrationTrigger function named '{function}'"
                ),
                details: None,
            }))],
            custom_status: None,
        }
    }

    /// Dispatch an activity invocation to the function named `function`.
    pub fn dispatch_activity(
        _functions: &[Registration],
        function: &str,
        _input: Option<String>,
    ) -> Result<Option<String>, durable::Failure> {
        Err(durable::Failure {
            error_type: "FunctionNotFound".into(),
            message: format!("this component has no activityTrigger function named '{function}'"),
            details: None,
        })
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
