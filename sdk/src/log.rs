//! Logging to the host console. Each line shows the function name and invocation id.
//!
//! `println!`/`eprintln!` work too (they arrive as info/error lines).

use crate::bindings::fnhost::function::log::{Level, log};

/// Log `message` at trace level.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message.as_ref());
}

/// Log `message` at debug level (shown with `host start --verbose`).
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message.as_ref());
}

/// Log `message` at info level.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message.as_ref());
}

/// Log `message` at warning level.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message.as_ref());
}

/// Log `message` at error level.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message.as_ref());
}
