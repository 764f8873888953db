//! The HTTP plumbing the three services share: a transport that counts and
//! time-limits every attempt, our retry policy, and the mapping of azure_core
//! errors to [`StorageError`].
//!
//! Retries stay inside the crate's pipeline (it already re-signs and resends a
//! request) but with our policy: the transport sits below the retry policy, so
//! each attempt is counted once and `Storage::calls()` is exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use azure_core::error::{Error, ErrorKind};
use azure_core::{
    ClientOptions, HttpClient, Request, Response, RetryOptions, RetryPolicy, TransportOptions,
};

use super::connection::Endpoint;
use crate::storage::StorageError;

/// Attempts per call before a transient failure becomes `Unavailable`:
/// 3 attempts 50 ms then 100 ms apart ride out an Azurite restart or a dropped
/// keep-alive connection, and still fail within about 0.2 s when nothing listens.
pub(crate) const ATTEMPTS: u32 = 3;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// Longest wait for one attempt, body included. Azure's own server-side limit
/// for a table or queue operation is 30 s; a hung connection must not hang a
/// checkpoint forever.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(30);

/// The client options of one service: our transport (counting into `calls`)
/// and our retry policy.
pub(crate) fn options(calls: Arc<AtomicU64>) -> ClientOptions {
    let transport = CountingClient {
        inner: azure_core::new_http_client(),
        calls,
    };
    ClientOptions::new(TransportOptions::new(Arc::new(transport)))
        .retry(RetryOptions::custom(Arc::new(Backoff)))
}

/// Counts each HTTP attempt and bounds it by [`ATTEMPT_TIMEOUT`], reading the
/// whole body inside that bound (the crates read it later, unbounded).
#[derive(Debug)]
struct CountingClient {
    inner: Arc<dyn HttpClient>,
    calls: Arc<AtomicU64>,
}

#[async_trait]
impl HttpClient for CountingClient {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<Response> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let attempt = async {
            let (status, mut headers, body) =
                self.inner.execute_request(request).await?.deconstruct();
            let mut body = body.collect().await?;
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
        match tokio::time::timeout(ATTEMPT_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(Error::message(
                ErrorKind::Io,
                format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
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

/// [`ATTEMPTS`] attempts with doubling pauses. The crate's policy retries I/O
/// errors and 408/429/500/502/503/504, and gives up on anything else at once.
#[derive(Debug)]
struct Backoff;

#[async_trait]
impl RetryPolicy for Backoff {
    fn is_expired(&self, _since_start: Duration, retries_so_far: u32) -> bool {
        retries_so_far + 1 >= ATTEMPTS
    }

    fn sleep_duration(&self, retry: u32) -> Duration {
        FIRST_BACKOFF * 2u32.pow(retry.saturating_sub(1))
    }

    // A server's Retry-After is ignored: callers poll again on their own
    // schedule, and a short, predictable failure beats a long hidden wait.
    async fn wait(&self, _error: &Error, retry: u32, _retry_after: Option<Duration>) {
        tokio::time::sleep(self.sleep_duration(retry)).await;
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

/// One line: "cannot reach <where>: <what to do>; <what>: <cause> after 3 attempts".
pub(crate) fn unavailable(endpoint: &Endpoint, what: &str, cause: &str) -> StorageError {
    StorageError::Unavailable(format!(
        "cannot reach {}: {}; {what}: {cause} after {ATTEMPTS} attempts",
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
    fn backoff_is_three_attempts_doubling_from_50_ms() {
        assert!(!Backoff.is_expired(Duration::ZERO, 0));
        assert!(!Backoff.is_expired(Duration::ZERO, 1));
        assert!(Backoff.is_expired(Duration::ZERO, 2));
        assert_eq!(Backoff.sleep_duration(1), Duration::from_millis(50));
        assert_eq!(Backoff.sleep_duration(2), Duration::from_millis(100));
    }
}
