//! fnhost: a serverless function host for WebAssembly components.
//!
//! Data flows one way: trigger → catalog lookup → runtime invoke. The runtime
//! knows nothing of HTTP; triggers know nothing of wasmtime.

pub mod config;
pub mod runtime;
pub mod catalog;
pub mod console;
pub mod triggers;
pub mod builder;
pub mod start;
