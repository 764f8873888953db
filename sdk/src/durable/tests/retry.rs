//! `call_activity_with_retry`: failures, backoff timers, success and giving up.

use std::time::Duration;

use super::*;
use crate::{OrchestrationContext, OrchestrationError, RetryOptions, orchestrator};

fn options() -> RetryOptions {
    RetryOptions {
        backoff_coefficient: 2.0,
        ..RetryOptions::new(Duration::from_secs(10), 3)
    }
}

#[orchestrator]
async fn flaky(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
    Ok(ctx
        .call_activity_with_retry("flaky", options(), "x")
        .await?)
}

#[orchestrator]
async fn impatient(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
    let options = RetryOptions {
        retry_timeout: Some(Duration::from_secs(15)),
        ..options()
    };
    Ok(ctx.call_activity_with_retry("flaky", options, "x").await?)
}

/// Drive `instance` through two failures; the backoff timers are 10 s, then 20 s.
fn fail_twice(instance: &mut Instance) {
    let attempt = |id| activity(id, "flaky", Some(r#""x""#));
    assert_eq!(
        instance.episode(vec![os(T0), started(None)]).actions,
        [attempt(0)]
    );
    let response = instance.episode(vec![os(T0 + 1_000), failed(0, "boom 1")]);
    assert_eq!(response.actions, [timer(1, T0 + 1_000 + 10_000)]);
    let response = instance.episode(vec![os(T0 + 11_000), fired(1)]);
    assert_eq!(response.actions, [attempt(2)]);
    let response = instance.episode(vec![os(T0 + 12_000), failed(2, "boom 2")]);
    assert_eq!(response.actions, [timer(3, T0 + 12_000 + 20_000)]);
    let response = instance.episode(vec![os(T0 + 32_000), fired(3)]);
    assert_eq!(response.actions, [attempt(4)]);
}

#[test]
fn a_retry_after_backoff_timers_succeeds() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_flaky);
    fail_twice(&mut instance);
    let response = instance.episode(vec![os(T0 + 33_000), completed(4, r#""ok""#)]);
    assert_eq!(response.actions, [done(r#""ok""#)]);
}

#[test]
fn retries_give_up_after_max_attempts_with_the_last_error() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_flaky);
    fail_twice(&mut instance);
    let response = instance.episode(vec![os(T0 + 33_000), failed(4, "boom 3")]);
    assert_eq!(failure_of(&response), &failure("ActivityError", "boom 3"));
}

#[test]
fn retries_give_up_when_the_next_attempt_would_pass_the_timeout() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_impatient);
    instance.episode(vec![os(T0), started(None)]);
    let response = instance.episode(vec![os(T0 + 1_000), failed(0, "boom 1")]);
    assert_eq!(
        response.actions,
        [timer(1, T0 + 11_000)],
        "11 s is within 15 s"
    );
    instance.episode(vec![os(T0 + 11_000), fired(1)]);
    let response = instance.episode(vec![os(T0 + 12_000), failed(2, "boom 2")]);
    assert_eq!(failure_of(&response), &failure("ActivityError", "boom 2"));
}
