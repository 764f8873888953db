//! Durable entities, as seed 003 shows them: a `counter` entity with `add`,
//! `subtract`, `get` and `reset`; a client that signals it; an orchestration
//! that signals it and calls it.

use fnhost_sdk::{
    EntityContext, EntityId, HttpRequest, HttpResponse, OrchestrationContext, OrchestrationError,
    client, entity, http_trigger, json, orchestrator,
};

/// The counter: its state is a number, 0 until the first operation.
#[entity]
fn counter(ctx: &mut EntityContext) -> Result<(), String> {
    let mut value: i64 = ctx.get_state(|| 0).map_err(|e| e.to_string())?;
    match ctx.operation_name() {
        "add" => value += ctx.get_input::<i64>().map_err(|e| e.to_string())?,
        "subtract" => value -= ctx.get_input::<i64>().map_err(|e| e.to_string())?,
        "reset" => value = 0,
        "get" => {}
        other => {
            return Err(format!(
                "counter has no operation '{other}' (add, subtract, get, reset)"
            ));
        }
    }
    ctx.set_state(&value);
    ctx.set_result(&value);
    Ok(())
}

/// `POST api/counter/{key}`: add 100, subtract 25; answers where to read the value.
#[http_trigger]
fn counter_signal(req: HttpRequest) -> HttpResponse {
    let key = req.param("key").unwrap_or("my-counter").to_string();
    let id = EntityId::new("counter", &key);
    for (op, amount) in [("add", 100), ("subtract", 25)] {
        if let Err(e) = client::signal_entity(&id, op, amount) {
            return HttpResponse::new(500).json(&json!({ "error": e.to_string() }));
        }
    }
    HttpResponse::new(202).json(&json!({
        "entity": id.to_string(),
        "signals": ["add 100", "subtract 25"],
        "valueUrl": format!("/api/counter/{key}"),
        "stateUrl": format!("/runtime/webhooks/durabletask/entities/counter/{key}"),
    }))
}

/// `GET api/counter/{key}`: `{"key": ..., "value": n}`.
#[http_trigger]
fn counter_get(req: HttpRequest) -> HttpResponse {
    let key = req.param("key").unwrap_or("my-counter");
    match client::read_entity_state::<i64>(&EntityId::new("counter", key)) {
        Ok(Some(value)) => HttpResponse::ok().json(&json!({ "key": key, "value": value })),
        Ok(None) => HttpResponse::new(404)
            .json(&json!({ "error": format!("counter '{key}' has no value yet") })),
        Err(e) => HttpResponse::new(500).json(&json!({ "error": e.to_string() })),
    }
}

/// `POST api/counter_orchestrator/{key}`: the orchestration's result (200), or
/// where to find it if it takes longer than 30 s (202).
#[http_trigger]
fn counter_orchestrator_start(req: HttpRequest) -> HttpResponse {
    let key = req.param("key").unwrap_or("my-counter-orch-1");
    match client::start_new("counter_orchestrator", None, key) {
        Ok(id) => client::wait_for_completion_or_create_check_status_response(
            &req,
            &id,
            std::time::Duration::from_secs(30),
        ),
        Err(e) => HttpResponse::new(500).json(&json!({ "error": e.to_string() })),
    }
}

/// Input: the counter's key. Resets it, signals +10, +5, -3, then calls `get`.
#[orchestrator]
async fn counter_orchestrator(ctx: OrchestrationContext) -> Result<String, OrchestrationError> {
    let key: String = ctx.input()?;
    let counter = EntityId::new("counter", &key);
    ctx.signal_entity(&counter, "reset", ());
    ctx.signal_entity(&counter, "add", 10);
    ctx.signal_entity(&counter, "add", 5);
    ctx.signal_entity(&counter, "subtract", 3);
    let value: i64 = ctx.call_entity(&counter, "get", ()).await?;
    Ok(format!("Counter '{key}' final value: {value}"))
}

fnhost_sdk::export_functions!(
    counter,
    counter_signal,
    counter_get,
    counter_orchestrator_start,
    counter_orchestrator
);
