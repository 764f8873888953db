//! Activity retries with exponential backoff, written as orchestrator logic (durable timers).

use std::time::{Duration, UNIX_EPOCH};

use serde::de::DeserializeOwned;

use super::context::OrchestrationContext;
use super::futures::Task;

/// How [`OrchestrationContext::call_activity_with_retry`] retries a failed activity.
///
/// Before retry *n* (1 for the first), the orchestrator waits on a durable timer for
/// `first_retry_interval × backoff_coefficient^(n−1)`, at most `max_retry_interval`.
///
/// ```
/// use std::time::Duration;
/// use fnhost_sdk::RetryOptions;
///
/// // 5 s, 10 s, 20 s, 40 s between five attempts.
/// let retry = RetryOptions {
///     backoff_coefficient: 2.0,
///     ..RetryOptions::new(Duration::from_secs(5), 5)
/// };
/// # assert_eq!(retry.max_number_of_attempts, 5);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RetryOptions {
    /// The wait before the first retry.
    pub first_retry_interval: Duration,
    /// Each further wait is the previous one times this (1.0: constant waits).
    pub backoff_coefficient: f64,
    /// Attempts in all, the first included: 1 means no retry.
    pub max_number_of_attempts: u32,
    /// The longest wait between two attempts.
    pub max_retry_interval: Option<Duration>,
    /// Give up once the next attempt would start later than this after the first.
    pub retry_timeout: Option<Duration>,
}

impl RetryOptions {
    /// Up to `max_number_of_attempts` attempts, `first_retry_interval` apart.
    pub fn new(first_retry_interval: Duration, max_number_of_attempts: u32) -> Self {
        Self {
            first_retry_interval,
            backoff_coefficient: 1.0,
            max_number_of_attempts,
            max_retry_interval: None,
            retry_timeout: None,
        }
    }

    /// The wait before retry `retry` (1 for the first), in ms.
    fn delay_ms(&self, retry: u32) -> u64 {
        let exponent = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let delay =
            self.first_retry_interval.as_millis() as f64 * self.backoff_coefficient.powi(exponent);
        let cap = self
            .max_retry_interval
            .map_or(f64::INFINITY, |d| d.as_millis() as f64);
        // `as` saturates: an overflowing delay becomes u64::MAX ms, NaN becomes 0.
        delay.min(cap) as u64
    }
}

/// Schedule `name` now and, while it fails, wait and schedule it again.
pub(crate) fn call_with_retry<R: DeserializeOwned + 'static>(
    ctx: &OrchestrationContext,
    name: &str,
    options: RetryOptions,
    input: Option<String>,
) -> Task<R> {
    let started_ms = ctx.state().now_ms;
    // The first attempt is scheduled at the call, like any task: sequence ids stay in
    // the order the code makes its calls.
    let first = ctx.schedule_activity::<R>(name, input.clone());
    let ctx = ctx.clone();
    let name = name.to_owned();
    Task::composite(async move {
        let mut attempt = 1;
        let mut result = first.await;
        loop {
            let error = match result {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            // Output that does not fit `R` would not fit on a second run either.
            if attempt >= options.max_number_of_attempts || error.error_type == "InvalidOutput" {
                return Err(error);
            }
            let fire_at = ctx.state().now_ms.saturating_add(options.delay_ms(attempt));
            if let Some(timeout) = options.retry_timeout {
                let deadline = started_ms
                    .saturating_add(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
                if fire_at >= deadline {
                    return Err(error);
                }
            }
            ctx.create_timer(UNIX_EPOCH + Duration::from_millis(fire_at))
                .await;
            attempt += 1;
            result = ctx.schedule_activity::<R>(&name, input.clone()).await;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_by_the_coefficient_up_to_the_cap() {
        let options = RetryOptions {
            backoff_coefficient: 2.0,
            max_retry_interval: Some(Duration::from_secs(30)),
            ..RetryOptions::new(Duration::from_secs(5), 10)
        };
        let delays: Vec<u64> = (1..=5).map(|n| options.delay_ms(n)).collect();
        assert_eq!(delays, [5_000, 10_000, 20_000, 30_000, 30_000]);
    }

    #[test]
    fn an_overflowing_delay_saturates() {
        let options = RetryOptions {
            backoff_coefficient: 1e300,
            ..RetryOptions::new(Duration::from_secs(1), 10)
        };
        assert_eq!(options.delay_ms(3), u64::MAX);
    }
}
