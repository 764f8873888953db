//! External events, races against timers, and `when_any`.

use std::time::Duration;

use super::*;
use crate::{Either, OrchestrationContext, OrchestrationError, orchestrator};

const HOUR_MS: u64 = 3_600_000;

#[orchestrator]
async fn approval(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
    let deadline = ctx.current_utc_datetime() + Duration::from_secs(3600);
    let approved = ctx.wait_for_external_event::<bool>("Approval");
    match ctx.race(approved, ctx.create_timer(deadline)).await {
        Either::Left(approved) => Ok(if approved? { "approved" } else { "rejected" }.into()),
        Either::Right(()) => Ok("timed out".into()),
    }
}

/// The approval instance after its first episode: waiting, with its timer created.
fn waiting_for_approval() -> Instance {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_approval);
    let response = instance.episode(vec![os(T0), started(None)]);
    assert_eq!(response.actions, [timer(0, T0 + HOUR_MS)]);
    instance
}

#[test]
fn an_event_before_the_deadline_wins_the_race() {
    let mut instance = waiting_for_approval();
    // Names are case-insensitive.
    let response = instance.episode(vec![os(T0 + 5), raised("APPROVAL", "true")]);
    assert_eq!(response.actions, [done(r#""approved""#)]);
}

#[test]
fn the_timer_wins_when_no_event_comes() {
    let mut instance = waiting_for_approval();
    let response = instance.episode(vec![os(T0 + HOUR_MS), fired(0)]);
    assert_eq!(response.actions, [done(r#""timed out""#)]);
}

#[test]
fn in_one_episode_the_earlier_history_event_wins() {
    let mut timer_first = waiting_for_approval();
    let response =
        timer_first.episode(vec![os(T0 + HOUR_MS), fired(0), raised("approval", "true")]);
    assert_eq!(response.actions, [done(r#""timed out""#)]);

    let mut event_first = waiting_for_approval();
    let response = event_first.episode(vec![
        os(T0 + HOUR_MS),
        raised("approval", "false"),
        fired(0),
    ]);
    assert_eq!(response.actions, [done(r#""rejected""#)]);
}

#[test]
fn event_data_of_the_wrong_type_is_a_task_error() {
    let mut instance = waiting_for_approval();
    let response = instance.episode(vec![os(T0 + 5), raised("Approval", r#""yes""#)]);
    let failure = failure_of(&response);
    assert_eq!(failure.error_type, "InvalidEventData");
    assert!(
        failure.message.contains("'Approval'"),
        "{}",
        failure.message
    );
}

#[orchestrator]
async fn gather(ctx: OrchestrationContext) -> Result<Vec<i32>, OrchestrationError> {
    ctx.call_activity::<()>("prepare", ()).await?;
    let a: i32 = ctx.wait_for_external_event("Value").await?;
    let b: i32 = ctx.wait_for_external_event("value").await?;
    Ok(vec![a, b])
}

#[test]
fn events_that_arrive_before_the_wait_are_kept_in_order() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_gather);
    instance.episode(vec![os(T0), started(None)]);
    let response = instance.episode(vec![
        os(T0 + 1),
        raised("Value", "1"),
        raised("VALUE", "2"),
        completed(0, "null"),
    ]);
    assert_eq!(response.actions, [done("[1,2]")]);
}

#[test]
fn events_that_arrive_after_the_wait_resolve_it() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_gather);
    instance.episode(vec![os(T0), started(None)]);
    assert_eq!(
        instance
            .episode(vec![os(T0 + 1), completed(0, "null")])
            .actions,
        []
    );
    assert_eq!(
        instance
            .episode(vec![os(T0 + 2), raised("value", "5")])
            .actions,
        []
    );
    let response = instance.episode(vec![os(T0 + 3), raised("value", "7")]);
    assert_eq!(response.actions, [done("[5,7]")]);
}

#[orchestrator]
async fn reminder(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
    let deadline = ctx.current_utc_datetime() + Duration::from_secs(3600);
    let first = ctx.race(
        ctx.wait_for_external_event::<String>("answer"),
        ctx.create_timer(deadline),
    );
    if let Either::Left(answer) = first.await {
        return Ok(answer?);
    }
    ctx.call_activity::<()>("remind", ()).await?;
    Ok(format!(
        "late: {}",
        ctx.wait_for_external_event::<String>("answer").await?
    ))
}

#[test]
fn a_wait_that_lost_a_race_does_not_take_later_events() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_reminder);
    instance.episode(vec![os(T0), started(None)]);
    let response = instance.episode(vec![os(T0 + HOUR_MS), fired(0)]);
    assert_eq!(response.actions, [activity(1, "remind", None)]);
    let response = instance.episode(vec![os(T0 + HOUR_MS + 1), raised("answer", r#""yes""#)]);
    assert_eq!(response.actions, [], "the reminder is still running");
    let response = instance.episode(vec![os(T0 + HOUR_MS + 2), completed(1, "null")]);
    assert_eq!(response.actions, [done(r#""late: yes""#)]);
}

#[orchestrator]
async fn first_of(ctx: OrchestrationContext) -> Result<(usize, String), OrchestrationError> {
    let tasks = vec![
        ctx.call_activity::<String>("east", ()),
        ctx.call_activity::<String>("west", ()),
    ];
    let (index, output) = ctx.when_any(tasks).await;
    Ok((index, output?))
}

#[test]
fn when_any_resolves_with_the_first_completion() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_first_of);
    let response = instance.episode(vec![os(T0), started(None)]);
    assert_eq!(
        response.actions,
        [activity(0, "east", None), activity(1, "west", None)]
    );
    let response = instance.episode(vec![
        os(T0 + 1),
        completed(1, r#""w""#),
        completed(0, r#""e""#),
    ]);
    assert_eq!(response.actions, [done(r#"[1,"w"]"#)]);
}
