//! Replays of chaining, fan-out/fan-in, sub-orchestrations, continue-as-new and the context's clock.

use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::bindings::fnhost::function::durable_types::{ContinueAsNew, EventRaised, EventSent};
use crate::{OrchestrationContext, OrchestrationError, orchestrator};

#[orchestrator]
async fn chain(ctx: OrchestrationContext) -> Result<Vec<String>, OrchestrationError> {
    let name: String = ctx.input()?;
    let a: String = ctx.call_activity("greet", format!("{name}-1")).await?;
    let b: String = ctx.call_activity("greet", &a).await?;
    Ok(vec![a, b])
}

#[test]
fn first_episode_of_a_chain_schedules_only_the_first_activity() {
    let response = run(
        __FNHOST_REGISTRATION_chain,
        vec![],
        vec![os(T0), started(Some(r#""ada""#))],
    );
    assert_eq!(response.actions, [activity(0, "greet", Some(r#""ada-1""#))]);
    assert_eq!(response.custom_status, None);
}

#[test]
fn a_completion_replays_the_chain_and_schedules_the_next_step() {
    let past = vec![os(T0), started(Some(r#""ada""#)), scheduled(0, "greet")];
    let response = run(
        __FNHOST_REGISTRATION_chain,
        past.clone(),
        vec![os(T0 + 1_000), completed(0, r#""A""#)],
    );
    assert_eq!(response.actions, [activity(1, "greet", Some(r#""A""#))]);

    let past = [
        past,
        vec![
            os(T0 + 1_000),
            completed(0, r#""A""#),
            scheduled(1, "greet"),
        ],
    ]
    .concat();
    let response = run(
        __FNHOST_REGISTRATION_chain,
        past,
        vec![os(T0 + 2_000), completed(1, r#""B""#)],
    );
    assert_eq!(response.actions, [done(r#"["A","B"]"#)]);
}

#[test]
fn a_failed_activity_fails_the_orchestration_through_question_mark() {
    let past = vec![os(T0), started(Some(r#""ada""#)), scheduled(0, "greet")];
    let response = run(
        __FNHOST_REGISTRATION_chain,
        past,
        vec![os(T0 + 1), failed(0, "no greeting today")],
    );
    assert_eq!(
        failure_of(&response),
        &failure("ActivityError", "no greeting today")
    );
}

#[test]
fn an_input_of_the_wrong_type_fails_with_invalid_input() {
    let response = run(
        __FNHOST_REGISTRATION_chain,
        vec![],
        vec![os(T0), started(Some("42"))],
    );
    let failure = failure_of(&response);
    assert_eq!(failure.error_type, "InvalidInput");
    assert!(failure.message.contains("'chain'") && failure.message.contains(INSTANCE));
}

#[test]
fn a_history_without_execution_started_is_reported() {
    let response = run(__FNHOST_REGISTRATION_chain, vec![], vec![os(T0)]);
    let failure = failure_of(&response);
    assert_eq!(failure.error_type, "InvalidHistory");
    assert!(failure.message.contains("execution-started"));
}

#[orchestrator]
async fn fan(ctx: OrchestrationContext) -> Result<Vec<u32>, OrchestrationError> {
    let n: u32 = ctx.input()?;
    let tasks: Vec<_> = (0..n)
        .map(|i| ctx.call_activity::<u32>("square", i))
        .collect();
    let results = ctx.when_all(tasks).await;
    Ok(results.into_iter().collect::<Result<_, _>>()?)
}

#[test]
fn fan_out_schedules_all_in_one_episode_and_fan_in_keeps_their_order() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_fan);
    let response = instance.episode(vec![os(T0), started(Some("3"))]);
    assert_eq!(
        response.actions,
        [
            activity(0, "square", Some("0")),
            activity(1, "square", Some("1")),
            activity(2, "square", Some("2")),
        ]
    );
    let response = instance.episode(vec![os(T0 + 10), completed(2, "4"), completed(0, "0")]);
    assert_eq!(response.actions, [], "one task is still running");
    let response = instance.episode(vec![os(T0 + 20), completed(1, "1")]);
    assert_eq!(response.actions, [done("[0,1,4]")]);
}

#[orchestrator]
async fn parent(ctx: OrchestrationContext) -> Result<Vec<String>, OrchestrationError> {
    let a = ctx.call_sub_orchestrator::<String>("child", None, 1);
    let b = ctx.call_sub_orchestrator::<String>("child", Some("fixed-id"), 2);
    ctx.send_event("other", "Ping", "hi");
    Ok(ctx
        .when_all([a, b])
        .await
        .into_iter()
        .collect::<Result<_, _>>()?)
}

#[test]
fn sub_orchestrations_get_a_deterministic_id_unless_given_one() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_parent);
    let response = instance.episode(vec![os(T0), started(None)]);
    let send = Action::SendEvent(EventSent {
        event_id: 2,
        instance_id: "other".into(),
        name: "Ping".into(),
        input: Some(r#""hi""#.into()),
    });
    assert_eq!(
        response.actions,
        [
            sub_orchestrator(0, "child", "inst-1:0", Some("1")),
            sub_orchestrator(1, "child", "fixed-id", Some("2")),
            send,
        ]
    );
    let response = instance.episode(vec![
        os(T0 + 5),
        HistoryEvent::SubOrchestrationCompleted(TaskCompleted {
            task_scheduled_id: 1,
            output: Some(r#""b""#.into()),
        }),
        HistoryEvent::SubOrchestrationFailed(TaskFailed {
            task_scheduled_id: 0,
            failure: failure("ChildError", "child gave up"),
        }),
    ]);
    assert_eq!(
        failure_of(&response),
        &failure("ChildError", "child gave up")
    );
}

#[orchestrator]
async fn counter(ctx: OrchestrationContext) -> Result<(), OrchestrationError> {
    let n: u32 = ctx.input()?;
    ctx.set_custom_status(format!("at {n}"));
    ctx.create_timer(ctx.current_utc_datetime() + Duration::from_secs(60))
        .await;
    if n < 10 {
        ctx.continue_as_new(n + 1);
    }
    Ok(())
}

#[test]
fn continue_as_new_replaces_complete_when_the_orchestrator_returns() {
    let past = vec![os(T0), started(Some("3")), timer_created(0, T0 + 60_000)];
    let response = run(
        __FNHOST_REGISTRATION_counter,
        past,
        vec![os(T0 + 60_000), fired(0)],
    );
    let again = Action::ContinueAsNew(ContinueAsNew {
        input: Some("4".into()),
        carryover_events: Vec::new(),
    });
    assert_eq!(response.actions, [again]);
    assert_eq!(response.custom_status.as_deref(), Some(r#""at 3""#));

    let past = vec![os(T0), started(Some("10")), timer_created(0, T0 + 60_000)];
    let response = run(
        __FNHOST_REGISTRATION_counter,
        past,
        vec![os(T0 + 60_000), fired(0)],
    );
    assert_eq!(response.actions, [Action::Complete(Ok(None))]);
}

/// Takes one "add" per execution and continues as new; `keep` says whether the
/// events it did not take go along.
#[orchestrator]
async fn adder(ctx: OrchestrationContext) -> Result<(), OrchestrationError> {
    let keep: bool = ctx.input()?;
    let _: u32 = ctx.wait_for_external_event("add").await?;
    if keep {
        ctx.continue_as_new_preserving_events(keep);
    } else {
        ctx.continue_as_new(keep);
    }
    Ok(())
}

#[test]
fn continue_as_new_carries_unconsumed_events_in_arrival_order_only_when_asked() {
    let new = || {
        vec![
            os(T0),
            started(Some("true")),
            raised("Other", "0"),
            raised("add", "1"),
            raised("ADD", "2"),
            raised("other", "3"),
        ]
    };
    let response = run(__FNHOST_REGISTRATION_adder, vec![], new());
    let carried = |name: &str, input: &str| EventRaised {
        name: name.into(),
        input: Some(input.into()),
    };
    let kept = Action::ContinueAsNew(ContinueAsNew {
        input: Some("true".into()),
        carryover_events: vec![
            carried("Other", "0"),
            carried("ADD", "2"),
            carried("other", "3"),
        ],
    });
    assert_eq!(response.actions, [kept]);

    let mut events = new();
    events[1] = started(Some("false"));
    let response = run(__FNHOST_REGISTRATION_adder, vec![], events);
    let dropped = Action::ContinueAsNew(ContinueAsNew {
        input: Some("false".into()),
        carryover_events: Vec::new(),
    });
    assert_eq!(response.actions, [dropped]);
}

#[orchestrator]
async fn observer(ctx: OrchestrationContext) -> Result<(), OrchestrationError> {
    let guid = ctx.new_guid();
    let mut seen = vec![(ctx.is_replaying(), millis(&ctx))];
    ctx.set_custom_status((&guid, &seen));
    ctx.call_activity::<()>("step", ()).await?;
    seen.push((ctx.is_replaying(), millis(&ctx)));
    ctx.set_custom_status((&guid, &seen, ctx.new_guid()));
    ctx.call_activity::<()>("step", ()).await?;
    Ok(())
}

fn millis(ctx: &OrchestrationContext) -> u64 {
    let since_epoch = ctx.current_utc_datetime().duration_since(UNIX_EPOCH);
    since_epoch.expect("after the epoch").as_millis() as u64
}

#[test]
fn replaying_flag_clock_and_guids_follow_the_history() {
    let mut instance = Instance::new(__FNHOST_REGISTRATION_observer);
    let first = instance.episode(vec![os(T0), started(None)]);
    let status: (String, Vec<(bool, u64)>) =
        serde_json::from_str(first.custom_status.as_deref().unwrap()).unwrap();
    assert_eq!(status.1, [(false, T0)]);
    let guid = status.0;
    assert_eq!(guid.len(), 36);
    assert_eq!(&guid[14..15], "8", "a version-8 (name-based) GUID: {guid}");

    let second = instance.episode(vec![os(T0 + 7_000), completed(0, "null")]);
    let status: (String, Vec<(bool, u64)>, String) =
        serde_json::from_str(second.custom_status.as_deref().unwrap()).unwrap();
    assert_eq!(status.0, guid, "the same GUID on replay");
    assert_eq!(status.1, [(true, T0), (false, T0 + 7_000)]);
    assert_ne!(status.2, guid, "the next GUID is another one");
    assert_eq!(second.actions, [activity(1, "step", None)]);
}

#[orchestrator]
async fn plain(ctx: OrchestrationContext) -> u64 {
    ctx.input::<u64>().unwrap_or(0) * 2
}

#[orchestrator]
async fn stringly(ctx: OrchestrationContext) -> Result<(), String> {
    Err(format!("instance {} refuses", ctx.instance_id()))
}

#[orchestrator]
async fn parsing(_ctx: OrchestrationContext) -> Result<u8, std::num::ParseIntError> {
    "300".parse()
}

#[test]
fn outputs_and_errors_of_any_shape_complete_the_instance() {
    let new = || vec![os(T0), started(Some("21"))];
    assert_eq!(
        run(__FNHOST_REGISTRATION_plain, vec![], new()).actions,
        [done("42")]
    );
    assert_eq!(
        failure_of(&run(__FNHOST_REGISTRATION_stringly, vec![], new())),
        &failure("OrchestrationError", "instance inst-1 refuses")
    );
    let response = run(__FNHOST_REGISTRATION_parsing, vec![], new());
    assert_eq!(failure_of(&response).error_type, "OrchestrationError");
    assert!(failure_of(&response).message.contains("too large"));
}

#[test]
fn an_unknown_orchestrator_is_reported_by_name() {
    let request = OrchestratorRequest {
        continued: false,
        instance_id: INSTANCE.into(),
        past: vec![],
        new: vec![os(T0), started(None)],
    };
    let response = dispatch_orchestrator(&[__FNHOST_REGISTRATION_chain], "nope", request);
    let failure = failure_of(&response);
    assert_eq!(failure.error_type, "FunctionNotFound");
    assert!(failure.message.contains("'nope'"));
}

#[orchestrator]
async fn counter_user(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
    let counter = crate::EntityId::new("Counter", "k");
    ctx.signal_entity(&counter, "add", 10);
    let value: i64 = ctx.call_entity(&counter, "get", ()).await?;
    Ok(format!("value {value}"))
}

#[test]
fn entity_calls_replay_from_the_history_and_signals_are_not_sent_twice() {
    use crate::bindings::fnhost::function::durable_types::{EntityCalled, TaskCompleted};
    let mut instance = Instance::new(__FNHOST_REGISTRATION_counter_user);
    let first = instance.episode(vec![os(T0), started(None)]);
    let target = crate::bindings::fnhost::function::durable_types::EntityId {
        name: "counter".into(),
        key: "k".into(),
    };
    let called = |event_id, operation: &str, input: Option<&str>| EntityCalled {
        event_id,
        target: target.clone(),
        operation: operation.into(),
        input: input.map(str::to_string),
        scheduled_time: None,
    };
    assert_eq!(
        first.actions,
        [
            Action::SignalEntity(called(0, "add", Some("10"))),
            Action::CallEntity(called(1, "get", None)),
        ]
    );
    let second = instance.episode(vec![
        os(T0 + 10),
        HistoryEvent::EntityCallCompleted(TaskCompleted {
            task_scheduled_id: 1,
            output: Some("10".into()),
        }),
    ]);
    assert_eq!(second.actions, [done(r#""value 10""#)]);
}
