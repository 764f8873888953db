//! fnhost: a serverless function host for WebAssembly components.
//!
//! Data flows one way: trigger → catalog lookup → runtime invoke. The runtime
//! knows nothing of HTTP; triggers know nothing of wasmtime.

pub mod bindings;
pub mod builder;
pub mod catalog;
pub mod config;
pub mod console;
pub mod durable;
pub mod durable_cli;
pub mod keys;
pub mod runtime;
pub mod start;
pub mod storage;
pub mod triggers;
