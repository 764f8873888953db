//! What queue, blob and timer functions receive.

use std::fmt::Display;

use serde::de::DeserializeOwned;

use crate::bindings::fnhost::function::trigger_types as wit;

/// A message from an Azure Storage queue (`queueTrigger`), as Azure's
/// `QueueMessage` with its metadata. Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub id: String,
    /// The content (base64-decoded under Azure's default `messageEncoding`).
    pub body: Vec<u8>,
    /// How many times it has been received, this time included (1 the first time).
    pub dequeue_count: u32,
    pub insertion_time: u64,
    pub expiration_time: u64,
    pub next_visible_time: u64,
    pub pop_receipt: String,
    /// The queue it came from.
    pub queue: String,
}

impl QueueMessage {
    /// The body as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The raw body.
    pub fn bytes(&self) -> &[u8] {
        &self.body
    }
}

impl From<wit::QueueMessage> for QueueMessage {
    fn from(m: wit::QueueMessage) -> Self {
        QueueMessage {
            id: m.id,
            body: m.body,
            dequeue_count: m.dequeue_count,
            insertion_time: m.insertion_time,
            expiration_time: m.expiration_time,
            next_visible_time: m.next_visible_time,
            pop_receipt: m.pop_receipt,
            queue: m.queue,
        }
    }
}

/// A new or overwritten blob (`blobTrigger`) with its properties and the
/// values of the path's binding expressions.
#[derive(Debug, Clone)]
pub struct Blob {
    pub container: String,
    /// The name inside the container, e.g. `1234.txt`.
    pub name: String,
    /// `{name}` → `1234.txt` for the path `weather-results/{name}`.
    pub params: Vec<(String, String)>,
    pub content: Vec<u8>,
    pub length: u64,
    pub content_type: String,
    pub etag: String,
    /// Milliseconds since the Unix epoch.
    pub last_modified: u64,
}

impl Blob {
    /// The value of the binding expression `{name}` of the trigger's path.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The content as UTF-8 text (invalid sequences replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.content).into_owned()
    }

    /// The content parsed as JSON into `T`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.content)
    }
}

impl From<wit::BlobItem> for Blob {
    fn from(b: wit::BlobItem) -> Self {
        Blob {
            container: b.container,
            name: b.name,
            params: b.params,
            content: b.content,
            length: b.length,
            content_type: b.content_type,
            etag: b.etag,
            last_modified: b.last_modified,
        }
    }
}

/// An occurrence of a timer's schedule (`timerTrigger`), as Azure's `TimerInfo`.
#[derive(Debug, Clone, Copy)]
pub struct TimerInfo {
    /// It was due while no host ran, and runs late.
    pub is_past_due: bool,
    /// When it was due (ms since the Unix epoch).
    pub scheduled: u64,
    /// The occurrence before, if one ran.
    pub last: Option<u64>,
    /// The next one.
    pub next: u64,
}

impl From<wit::TimerInfo> for TimerInfo {
    fn from(t: wit::TimerInfo) -> Self {
        TimerInfo {
            is_past_due: t.is_past_due,
            scheduled: t.scheduled,
            last: t.last,
            next: t.next,
        }
    }
}

/// What a queue, blob or timer function may return: `()`, or a `Result`
/// whose `Err` (any `Display`) fails the invocation (the message or blob is retried).
pub trait IntoTriggerResult {
    fn into_trigger_result(self) -> Result<(), String>;
}

impl IntoTriggerResult for () {
    fn into_trigger_result(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> IntoTriggerResult for Result<(), E> {
    fn into_trigger_result(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}
