//! The HTTP plumbing the three services share: a transport that counts and
//! time-limits every attempt, our retry policy, and the mapping of azure_core
//! errors to [`StorageError`].
//!
//! Retries stay inside the crate's pipeline (it already re-signs and resends a
//! request) but with our policy: the transport sits below the retry policy, so
//! each attempt is counted once and `Storage::calls()` is exact. Every retry
//! is named on the console and an outage is reported once ([`Health`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::{Error, ErrorKind};
use azure_core::{
    ClientOptions, HttpClient, Request, Response, RetryOptions, RetryPolicy, TransportOptions,
};

use super::connection::Endpoint;
use super::health::Health;
use crate::storage::StorageError;

/// Attempts per call before a transient failure becomes `Unavailable`:
/// 5 attempts 50, 100, 200 and 400 ms apart ride out an Azurite restart, a
/// dropped keep-alive connection or a few busy answers in a row (a call fails
/// only if 5 attempts in 0.75 s all fail), and still give up within about a
/// second when nothing listens.
pub(crate) const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest wait for one attempt, body included, unless `FNHOST_STORAGE_TIMEOUT`
/// (seconds) says otherwise. Azure's own server-side limit for a table or queue
/// operation is 30 s; a hung connection must not hang a checkpoint forever.
/// Retries stop once twice this has passed since the first attempt ended, so
/// one call waits at most about three times this (three hung attempts).
const DEFAULT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The attempt timeout in force (read once).
pub(crate) fn attempt_timeout() -> Duration {
    static TIMEOUT: OnceLock<Duration> = OnceLock::new();
    *TIMEOUT.get_or_init(|| match std::env::var("FNHOST_STORAGE_TIMEOUT") {
        Err(_) => DEFAULT_ATTEMPT_TIMEOUT,
        Ok(text) => match parse_timeout(&text) {
            Some(timeout) => timeout,
            None => {
                tracing::warn!(
                    "FNHOST_STORAGE_TIMEOUT={text:?} is not a number of seconds above 0 (e.g. 30 or 2.5); \
                     using {} s",
                    DEFAULT_ATTEMPT_TIMEOUT.as_secs()
                );
                DEFAULT_ATTEMPT_TIMEOUT
            }
        },
    })
}

fn parse_timeout(text: &str) -> Option<Duration> {
    let seconds: f64 = text.trim().parse().ok()?;
    (seconds > 0.0 && seconds <= 3600.0).then(|| Duration::from_secs_f64(seconds))
}

tokio::task_local! {
    /// Set when the call running in this task was retried (see [`tracking`]).
    static RETRIED: std::cell::Cell<bool>;
}

/// Run `call` and say whether the pipeline retried it. A retried write may
/// have been applied by an attempt whose answer was lost: its retry then
/// meets its own write (409 on an insert, 412 on an ETag, 404 on a delete),
/// which the caller checks before calling it a conflict.
pub(crate) async fn tracking<F: std::future::Future>(call: F) -> (F::Output, bool) {
    RETRIED
        .scope(std::cell::Cell::new(false), async {
            let out = call.await;
            (out, RETRIED.with(std::cell::Cell::get))
        })
        .await
}

tokio::task_local! {
    /// Set while [`quietly`] runs a call: its retries and failures are the
    /// caller's to report.
    static QUIET: ();
}

/// Run `calls` without console lines of their retries or of an outage: the
/// start-up probe says in one line itself that storage cannot be reached.
pub(crate) async fn quietly<F: std::future::Future>(calls: F) -> F::Output {
    QUIET.scope((), calls).await
}

/// Whether the running call is one of [`quietly`]'s.
pub(crate) fn is_quiet() -> bool {
    QUIET.try_with(|_| ()).is_ok()
}

/// The client options of one service: our transport (counting into `calls`,
/// telling `health` of answers) and our retry policy (naming what it retries).
pub(crate) fn options(calls: Arc<AtomicU64>, health: Arc<Health>) -> ClientOptions {
    let transport = CountingClient {
        inner: azure_core::new_http_client(),
        calls,
        health: health.clone(),
    };
    ClientOptions::new(TransportOptions::new(Arc::new(transport)))
        .retry(RetryOptions::custom(Arc::new(Backoff { health })))
}

/// Counts each HTTP attempt and bounds it by [`attempt_timeout`], reading the
/// whole body inside that bound (the crates read it later, unbounded).
struct CountingClient {
    inner: Arc<dyn HttpClient>,
    calls: Arc<AtomicU64>,
    health: Arc<Health>,
}

impl std::fmt::Debug for CountingClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingClient").finish_non_exhaustive()
    }
}

#[async_trait]
impl HttpClient for CountingClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let attempt = async {
            let (status, mut headers, body) =
                self.inner.execute_request(request).await?.deconstruct();
            let mut body = body.collect().await?;
            if !transient(u16::from(status)) {
                self.health.answered();
            }
            if !status.is_success()
                && let Some((code, message)) = odata_error(&body)
            {
                // The Table service's error shape is not one azure_core reads:
                // restate it in the one it does, so errors carry code and message.
                body = serde_json::to_vec(
                    &serde_json::json!({"error": {"code": code, "message": message}}),
                )
                .unwrap_or_default()
                .into();
                headers.insert(azure_core::headers::CONTENT_TYPE, "application/json");
            }
            let body = futures::stream::iter([Ok(body)]);
            Ok(Response::new(status, headers, Box::pin(body)))
        };
        let timeout = attempt_timeout();
        match tokio::time::timeout(timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::message(
                ErrorKind::Io,
                format!("no answer within {} s", timeout.as_secs_f64()),
            )),
        }
    }
}

/// The code and message of a Table service error body:
/// `{"odata.error":{"code":"TableNotFound","message":{"lang":"en-US","value":"The table specified does not exist.\n..."}}}`.
fn odata_error(body: &[u8]) -> Option<(String, String)> {
    let json: serde_json::Value = serde_json::from_slice(body).ok()?;
    let error = json.get("odata.error")?;
    let code = error.get("code")?.as_str()?.to_string();
    let message = error
        .pointer("/message/value")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    Some((code, message.to_string()))
}

/// The statuses the crate's policy retries (and that say nothing of the
/// service being back): 408, 429 and 5xx.
fn transient(status: u16) -> bool {
    matches!(status, 408 | 429 | 500..=599)
}

/// [`ATTEMPTS`] attempts with doubling pauses, for at most two attempt
/// timeouts after the first attempt ended. The crate's policy retries I/O
/// errors and 408/429/500/502/503/504, and gives up on anything else at once.
struct Backoff {
    health: Arc<Health>,
}

impl std::fmt::Debug for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backoff").finish_non_exhaustive()
    }
}

#[async_trait]
impl RetryPolicy for Backoff {
    fn is_expired(&self, since_start: Duration, retries_so_far: u32) -> bool {
        retries_so_far + 1 >= ATTEMPTS || since_start >= 2 * attempt_timeout()
    }

    fn sleep_duration(&self, retry: u32) -> Duration {
        FIRST_BACKOFF * 2u32.pow(retry.saturating_sub(1))
    }

    // A server's Retry-After is ignored: callers poll again on their own
    // schedule, and a short, predictable failure beats a long hidden wait.
    async fn wait(&self, error: &Error, retry: u32, _retry_after: Option<Duration>) {
        let _ = RETRIED.try_with(|r| r.set(true));
        self.health.retrying(&describe(error), retry + 1, ATTEMPTS);
        tokio::time::sleep(self.sleep_duration(retry)).await;
    }
}

/// A failed attempt in a few words: "503 ServerBusy", "HTTP 500",
/// "connection closed before message completed", "no answer within 30 s".
fn describe(error: &Error) -> String {
    match status_of(error) {
        Some((status, Some(code))) => format!("{status} {code}"),
        Some((status, None)) => format!("HTTP {status}"),
        None => root_cause(error),
    }
}

/// The HTTP status and service error code of a failed call, if it got an answer.
pub(crate) fn status_of(error: &Error) -> Option<(u16, Option<&str>)> {
    match error.kind() {
        ErrorKind::HttpResponse { status, error_code } => {
            Some((u16::from(*status), error_code.as_deref()))
        }
        _ => None,
    }
}

/// Map a failed call on `what` ("queue 'x'", "blob 'c/n'") to a [`StorageError`]:
/// 404 NotFound, 409/412 Conflict, unreachable or 5xx after retries
/// Unavailable (saying where and what to do), anything else Other.
pub(crate) fn classify(error: Error, what: &str, endpoint: &Endpoint) -> StorageError {
    match status_of(&error) {
        Some((status, code)) => {
            let message = service_message(&error, status, code);
            match status {
                404 => StorageError::NotFound(format!("{what}: {message}")),
                409 | 412 => StorageError::Conflict(format!("{what}: {message}")),
                408 | 429 | 500..=599 => unavailable(endpoint, what, &message),
                _ => StorageError::Other(format!("{what}: {message}")),
            }
        }
        None if *error.kind() == ErrorKind::Io => unavailable(endpoint, what, &root_cause(&error)),
        None => StorageError::Other(format!("{what}: {}", root_cause(&error))),
    }
}

/// One line: "cannot reach <where>: <what to do>; <what>: <cause>, after retrying".
pub(crate) fn unavailable(endpoint: &Endpoint, what: &str, cause: &str) -> StorageError {
    StorageError::Unavailable(format!(
        "cannot reach {}: {}; {what}: {cause}, after retrying",
        endpoint.place, endpoint.hint
    ))
}

/// "412 UpdateConditionNotSatisfied: The update condition ... was not satisfied."
/// (first line only: Azure appends RequestId and Time lines).
fn service_message(error: &Error, status: u16, code: Option<&str>) -> String {
    let text = error
        .as_http_error()
        .and_then(|e| e.error_message())
        .and_then(|m| m.lines().next())
        .unwrap_or("");
    match (code, text) {
        (Some(code), "") => format!("{status} {code}"),
        (Some(code), text) => format!("{status} {code}: {text}"),
        (None, "") => format!("HTTP {status}"),
        (None, text) => format!("{status}: {text}"),
    }
}

/// The innermost error's text ("Connection refused (os error 111)"), which
/// says more than the wrappers ("failed to execute `reqwest` request").
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut inner = error;
    while let Some(source) = inner.source() {
        inner = source;
    }
    inner.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_errors_are_read() {
        let body = br#"{"odata.error":{"code":"TableNotFound","message":{"lang":"en-US","value":"The table specified does not exist.\nRequestId:1"}}}"#;
        let (code, message) = odata_error(body).unwrap();
        assert_eq!(code, "TableNotFound");
        assert!(message.starts_with("The table specified does not exist."));
        assert_eq!(odata_error(b"<xml/>"), None);
    }

    #[test]
    fn backoff_is_five_attempts_doubling_from_50_ms_within_the_attempt_timeout() {
        let endpoint = super::super::connection::parse("UseDevelopmentStorage=true")
            .unwrap()
            .queue;
        let backoff = Backoff {
            health: super::super::health::of("queue", &endpoint),
        };
        for retries in 0..4 {
            assert!(!backoff.is_expired(Duration::ZERO, retries));
        }
        assert!(backoff.is_expired(Duration::ZERO, 4));
        assert!(!backoff.is_expired(attempt_timeout(), 1));
        assert!(backoff.is_expired(2 * attempt_timeout(), 1));
        let pauses: Vec<u128> = (1..5)
            .map(|r| backoff.sleep_duration(r).as_millis())
            .collect();
        assert_eq!(pauses, [50, 100, 200, 400]);
    }

    #[test]
    fn timeouts_are_seconds_above_zero() {
        assert_eq!(parse_timeout("2.5"), Some(Duration::from_millis(2500)));
        assert_eq!(parse_timeout(" 30 "), Some(Duration::from_secs(30)));
        assert_eq!(parse_timeout("0"), None);
        assert_eq!(parse_timeout("00:00:30"), None);
    }
}
