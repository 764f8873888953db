//! Activities: any host takes work items from the shared `{hub}-workitems`
//! queue, runs the activity, and sends its result to the instance's control
//! queue. At least once: a host that dies mid-activity leaves the work item
//! to reappear; a duplicate result is dropped by its task-scheduled id.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Mutex, Semaphore};

use crate::config::Trigger;
use crate::runtime::durable::{HistoryEvent, TaskCompleted, TaskFailed};
use crate::storage::QueueMessage;

use super::model::{ControlEvent, ControlMessage, WorkItem};
use super::orchestrations::failure;
use super::{Backoff, Engine};

/// Take and run work items until the engine stops.
pub async fn poll(engine: Arc<Engine>) {
    let queue = engine.hub.workitems_queue();
    let slots = Arc::new(Semaphore::new(engine.config.max_activities));
    let mut backoff = Backoff::new(engine.config.max_polling_interval);
    let mut running = tokio::task::JoinSet::new();
    while !engine.stopping() {
        while running.try_join_next().is_some() {}
        let free = slots.available_permits().min(32) as u32;
        if free == 0 {
            let _ = running.join_next().await;
            continue;
        }
        let received = engine
            .hub
            .storage
            .queues
            .receive(&queue, free, engine.config.work_item_visibility)
            .await;
        let messages = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("reading {queue}: {e}");
                backoff.wait(&engine.activity_waker).await;
                continue;
            }
        };
        if messages.is_empty() {
            backoff.wait(&engine.activity_waker).await;
            continue;
        }
        backoff.reset();
        for message in messages {
            let permit = slots.clone().acquire_owned().await.expect("never closed");
            let engine = engine.clone();
            running.spawn(async move {
                run(&engine, message).await;
                drop(permit);
            });
        }
    }
    // Let the activities in hand finish: their results are not lost.
    while running.join_next().await.is_some() {}
}

async fn run(engine: &Arc<Engine>, message: QueueMessage) {
    let queue = engine.hub.workitems_queue();
    let item: WorkItem = match engine.hub.decode(&message.text).await {
        Ok(i) => i,
        Err(e) => {
            super::partitions::poison(engine, &queue, &message, &e).await;
            return;
        }
    };
    let Some(function) = engine
        .catalog
        .table()
        .find(&item.name, |t| matches!(t, Trigger::Activity))
    else {
        if message.dequeue_count < 5 {
            tracing::warn!(
                "activity '{}' of '{}' is not loaded; retrying in 10 s",
                item.name,
                item.instance_id
            );
            let _ = engine
                .hub
                .storage
                .queues
                .set_visibility(&queue, &message, Duration::from_secs(10))
                .await;
            return;
        }
        let f = failure(
            "FunctionNotFound",
            &format!("no activity function named '{}' is loaded", item.name),
        );
        finish(engine, &queue, Arc::new(Mutex::new(message)), &item, Err(f)).await;
        return;
    };

    // Keep the work item hidden while the activity runs.
    let held = Arc::new(Mutex::new(message));
    let keeper = {
        let (engine, held, queue) = (engine.clone(), held.clone(), queue.clone());
        tokio::spawn(async move {
            let period = engine.config.work_item_visibility / 2;
            loop {
                tokio::time::sleep(period).await;
                let mut m = held.lock().await;
                match engine
                    .hub
                    .storage
                    .queues
                    .set_visibility(&queue, &m, engine.config.work_item_visibility)
                    .await
                {
                    Ok(updated) => *m = updated,
                    Err(e) => tracing::debug!("extending work item {}: {e}", m.id),
                }
            }
        })
    };
    let invocation = crate::triggers::invocation(&function.name);
    crate::triggers::log_executing(&invocation, "(null)");
    let started = std::time::Instant::now();
    let result = engine
        .runtime
        .invoke_activity(&function.component, &invocation, item.input.clone())
        .await;
    keeper.abort();
    let result = match result {
        Ok(Ok(output)) => {
            crate::triggers::log_executed(&invocation, None, started.elapsed());
            Ok(output)
        }
        Ok(Err(f)) => {
            let shown = format!("{}: {}", f.error_type, f.message);
            crate::triggers::log_executed(&invocation, Some(&shown), started.elapsed());
            Err(f)
        }
        Err(e) => {
            crate::triggers::log_executed(&invocation, Some(&e), started.elapsed());
            Err(failure("FunctionFailed", &e.to_string()))
        }
    };
    finish(engine, &queue, held, &item, result).await;
}

/// Send the result to the orchestration, then delete the work item.
async fn finish(
    engine: &Arc<Engine>,
    queue: &str,
    held: Arc<Mutex<QueueMessage>>,
    item: &WorkItem,
    result: Result<Option<String>, crate::runtime::durable::Failure>,
) {
    let event = match result {
        Ok(output) => HistoryEvent::TaskCompleted(TaskCompleted {
            task_scheduled_id: item.task_scheduled_id,
            output,
        }),
        Err(failure) => HistoryEvent::TaskFailed(TaskFailed {
            task_scheduled_id: item.task_scheduled_id,
            failure,
        }),
    };
    let message = ControlMessage {
        instance_id: item.instance_id.clone(),
        execution_id: Some(item.execution_id.clone()),
        event: ControlEvent::Event(event),
        parent: None,
        id: None,
    };
    match engine.hub.send_control(&message, Duration::ZERO).await {
        Ok(partition) => engine.wake_partition(partition),
        Err(e) => {
            // Not deleted: the work item reappears and the activity runs again.
            tracing::warn!(
                "sending the result of activity '{}' to '{}': {e}",
                item.name,
                item.instance_id
            );
            return;
        }
    }
    let m = held.lock().await;
    if let Err(e) = engine.hub.storage.queues.delete(queue, &m).await {
        tracing::debug!("deleting work item {}: {e}", m.id);
    }
}
