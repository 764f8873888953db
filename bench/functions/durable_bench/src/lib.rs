//! Benchmark functions: orchestrations of no-op activities, so that what is
//! measured is the engine and storage, not the work.

use fnhost_sdk::durable::{OrchestrationContext, OrchestrationError};
use fnhost_sdk::{EntityContext, EntityId, activity, entity, orchestrator};

/// `n` activities one after the other.
#[orchestrator(name = "Chain")]
async fn chain(ctx: OrchestrationContext) -> Result<u32, OrchestrationError> {
    let n: u32 = ctx.input()?;
    let mut last = 0;
    for i in 0..n {
        last = ctx.call_activity::<u32>("Noop", i).await?;
    }
    Ok(last)
}

/// `n` activities at once.
#[orchestrator(name = "FanOut")]
async fn fan_out(ctx: OrchestrationContext) -> Result<u32, OrchestrationError> {
    let n: u32 = ctx.input()?;
    let mut sum = 0;
    for r in ctx
        .when_all((0..n).map(|i| ctx.call_activity::<u32>("Noop", i)))
        .await
    {
        sum += u32::from(r? < n);
    }
    Ok(sum)
}

/// One activity.
#[orchestrator(name = "Small")]
async fn small(ctx: OrchestrationContext) -> Result<u32, OrchestrationError> {
    Ok(ctx.call_activity::<u32>("Noop", 1).await?)
}

#[activity(name = "Noop")]
fn noop(i: u32) -> u32 {
    i
}

/// A counter: `add n`.
#[entity(name = "Tally")]
fn tally(ctx: &mut EntityContext) -> Result<(), String> {
    let n: i64 = ctx.get_state(|| 0).map_err(|e| e.to_string())?;
    let add: i64 = ctx.get_input().map_err(|e| e.to_string())?;
    ctx.set_state(&(n + add));
    Ok(())
}

/// Input `[count, entities]`: `count` signals spread over tallies `o0`..`o{entities-1}`.
#[orchestrator(name = "SignalTallies")]
async fn signal_tallies(ctx: OrchestrationContext) -> Result<u32, OrchestrationError> {
    let (count, entities): (u32, u32) = ctx.input()?;
    for i in 0..count {
        ctx.signal_entity(
            &EntityId::new("Tally", format!("o{}", i % entities)),
            "add",
            1,
        );
    }
    Ok(count)
}

fnhost_sdk::export_functions!(chain, fan_out, small, noop, tally, signal_tallies);
