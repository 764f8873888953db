//! Replays that do not match the history fail the instance with `NonDeterminism`.

use super::*;
use crate::{OrchestrationContext, OrchestrationError, orchestrator};

#[orchestrator]
async fn two_steps(ctx: OrchestrationContext) -> Result<(), OrchestrationError> {
    ctx.call_activity::<()>("validate", ()).await?;
    ctx.call_activity::<()>("ship", ()).await?;
    Ok(())
}

#[test]
fn a_renamed_activity_is_non_determinism_naming_both() {
    let past = vec![os(T0), started(None), scheduled(0, "check")];
    let response = run(
        __FNHOST_REGISTRATION_two_steps,
        past,
        vec![os(T0 + 1), completed(0, "null")],
    );
    let failure = failure_of(&response);
    assert_eq!(failure.error_type, "NonDeterminism");
    let message = &failure.message;
    assert!(
        message.contains("expected to call activity 'check' (event 0, from the history)")
            && message.contains("now tries to call activity 'validate'")
            && message.contains("'two_steps'")
            && message.contains(INSTANCE),
        "{message}"
    );
}

#[test]
fn a_timer_where_the_history_has_an_activity_is_non_determinism() {
    let past = vec![os(T0), started(None), timer_created(0, T0 + 5)];
    let response = run(
        __FNHOST_REGISTRATION_two_steps,
        past,
        vec![os(T0 + 5), fired(0)],
    );
    let message = &failure_of(&response).message;
    assert!(
        message.contains("expected to create a timer (event 0")
            && message.contains("tries to call activity 'validate'"),
        "{message}"
    );
}

#[test]
fn an_action_the_code_no_longer_makes_is_non_determinism() {
    let past = vec![
        os(T0),
        started(None),
        scheduled(0, "validate"),
        scheduled(1, "audit"),
    ];
    let response = run(__FNHOST_REGISTRATION_two_steps, past, vec![os(T0 + 1)]);
    let message = &failure_of(&response).message;
    assert!(
        message.contains("expected to call activity 'audit' (event 1, from the history) but the code now does not"),
        "{message}"
    );
}

#[test]
fn the_new_actions_of_a_broken_replay_are_not_sent() {
    // `validate` replays, then `ship` (new) is made, then the history's event 2 is missing.
    let past = vec![
        os(T0),
        started(None),
        scheduled(0, "validate"),
        timer_created(2, T0),
    ];
    let response = run(
        __FNHOST_REGISTRATION_two_steps,
        past,
        vec![os(T0 + 1), completed(0, "null")],
    );
    assert_eq!(failure_of(&response).error_type, "NonDeterminism");
}

#[test]
fn the_same_history_replays_cleanly() {
    let past = vec![os(T0), started(None), scheduled(0, "validate")];
    let response = run(
        __FNHOST_REGISTRATION_two_steps,
        past,
        vec![os(T0 + 1), completed(0, "null")],
    );
    assert_eq!(response.actions, [activity(1, "ship", None)]);
}
