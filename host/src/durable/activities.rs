//! Activities: run on the host that owns their instance when it has a free
//! slot (local dispatch: no queue message at all, the result goes straight
//! to the instance's next episode), else through the shared
//! `{hub}-workitems` queue, where any host takes them, several per queue
//! message. At least once: a host that dies mid-activity leaves either the
//! work item (it reappears) or the TaskScheduled record of a local task (the
//! partition's next owner runs it again); a duplicate result is dropped by
//! its task-scheduled id.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Trigger;
use crate::runtime::durable::{Failure, HistoryEvent, TaskCompleted, TaskFailed};

use super::episode::failure;
use super::holds::Held;
use super::model::{ControlEvent, ControlMessage, WorkItem};
use super::partition::Work;
use super::{Engine, Pacer};

/// Activity slots (maxConcurrentActivityFunctions), shared by local dispatch
/// and the work-item queue.
pub struct Pool {
    slots: Arc<Semaphore>,
    /// Work items received and waiting for a slot.
    waiting: AtomicUsize,
    freed: tokio::sync::Notify,
}

impl Pool {
    pub fn new(slots: usize) -> Pool {
        Pool {
            slots: Arc::new(Semaphore::new(slots)),
            waiting: AtomicUsize::new(0),
            freed: tokio::sync::Notify::new(),
        }
    }

    /// Up to `n` slots free right now.
    pub fn try_reserve(&self, n: usize) -> Vec<OwnedSemaphorePermit> {
        let mut permits = Vec::new();
        while permits.len() < n {
            match self.slots.clone().try_acquire_owned() {
                Ok(p) => permits.push(p),
                Err(_) => break,
            }
        }
        permits
    }

    /// Activities running now (for stopping).
    pub fn busy(&self, total: usize) -> usize {
        total - self.slots.available_permits() + self.waiting.load(Ordering::Relaxed)
    }
}

/// Run `item` here: in the slot `permit` holds, or in the next free one.
pub fn run_local(engine: &Arc<Engine>, item: WorkItem, permit: Option<OwnedSemaphorePermit>) {
    let engine = engine.clone();
    if permit.is_none() {
        engine.activities.waiting.fetch_add(1, Ordering::Relaxed);
    }
    tokio::spawn(async move {
        let permit = match permit {
            Some(p) => p,
            None => {
                // Waiting for a slot: if another host joins meanwhile, it
                // may take the activity from the queue sooner.
                let slots = engine.activities.slots.clone();
                let acquire = slots.acquire_owned();
                tokio::pin!(acquire);
                let p = loop {
                    tokio::select! {
                        p = &mut acquire => break Some(p.expect("never closed")),
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {
                            if engine.ownership.other_hosts() > 0 {
                                break None;
                            }
                        }
                    }
                };
                engine.activities.waiting.fetch_sub(1, Ordering::Relaxed);
                match p {
                    Some(p) => p,
                    None => {
                        if super::outbox::send_work(&engine, vec![item.clone()])
                            .await
                            .is_err()
                        {
                            // Not queued: run it here after all.
                            let p = engine.activities.slots.clone().acquire_owned().await;
                            let result = execute(&engine, &item).await;
                            drop(p);
                            deliver(&engine, &item, result, None).await;
                        }
                        return;
                    }
                }
            }
        };
        let result = execute(&engine, &item).await;
        drop(permit);
        engine.activities.freed.notify_one();
        deliver(&engine, &item, result, None).await;
    });
}

/// Take work items from `{hub}-workitems` until the engine stops.
pub async fn poll(engine: Arc<Engine>) {
    let queue = engine.hub.workitems_queue();
    let mut pacer = Pacer::new(engine.config.max_polling_interval);
    let mut stop = engine.stop.subscribe();
    let pool = &engine.activities;
    loop {
        if *stop.borrow() {
            return;
        }
        let free = pool.slots.available_permits();
        if free == 0 || pool.waiting.load(Ordering::Relaxed) > 0 {
            tokio::select! {
                _ = pool.freed.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = stop.changed() => return,
            }
            continue;
        }
        // One message holds up to WORK_PER_MESSAGE items: take what the free slots can run.
        let want = free.div_ceil(super::outbox::WORK_PER_MESSAGE).clamp(1, 32) as u32;
        let received = engine
            .hub
            .storage
            .queues
            .receive(&queue, want, engine.config.work_item_visibility)
            .await;
        let messages = match received {
            Ok(m) => m,
            Err(e) => {
                crate::storage::log_retrying(format_args!("reading {queue}"), &e);
                pacer.empty();
                if pacer.wait(&engine.activity_waker, None, &mut stop).await {
                    return;
                }
                continue;
            }
        };
        if messages.is_empty() {
            pacer.empty();
            if pacer.wait(&engine.activity_waker, None, &mut stop).await {
                return;
            }
            continue;
        }
        pacer.busy();
        for message in messages {
            let items = match engine.hub.decode_work(&message.text).await {
                Ok(items) if !items.is_empty() => items,
                Ok(_) => continue,
                Err(e) => {
                    super::poison::unreadable(&engine, &queue, &message, &e).await;
                    continue;
                }
            };
            let Some(held) = engine
                .holds
                .hold(
                    &queue,
                    message,
                    items.len(),
                    engine.config.work_item_visibility,
                    None,
                )
                .await
            else {
                continue;
            };
            for item in items {
                pool.waiting.fetch_add(1, Ordering::Relaxed);
                let (engine, held) = (engine.clone(), held.clone());
                tokio::spawn(async move {
                    let permit = engine
                        .activities
                        .slots
                        .clone()
                        .acquire_owned()
                        .await
                        .expect("never closed");
                    engine.activities.waiting.fetch_sub(1, Ordering::Relaxed);
                    let result = execute(&engine, &item).await;
                    drop(permit);
                    engine.activities.freed.notify_one();
                    deliver(&engine, &item, result, Some(held)).await;
                });
            }
        }
    }
}

/// Run the activity, with the console's Executing/Executed lines.
async fn execute(engine: &Arc<Engine>, item: &WorkItem) -> Result<Option<String>, Failure> {
    // A folder being (re)loaded: give it a few seconds before failing the task.
    let mut function = None;
    for attempt in 0..5 {
        function = engine
            .catalog
            .table()
            .find(&item.name, |t| matches!(t, Trigger::Activity));
        if function.is_some() {
            break;
        }
        if attempt == 0 {
            tracing::warn!(
                "activity '{}' of '{}' is not loaded; waiting for it",
                item.name,
                item.instance_id
            );
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let Some(function) = function else {
        return Err(failure(
            "FunctionNotFound",
            &format!("no activity function named '{}' is loaded", item.name),
        ));
    };
    let invocation = crate::triggers::invocation(&function.name);
    crate::triggers::log_executing(&invocation, "(null)");
    let started = std::time::Instant::now();
    let result = engine
        .runtime
        .invoke_activity(&function.component, &invocation, item.input.clone())
        .await;
    match result {
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
    }
}

/// Hand the result to the instance: in memory when this host owns its
/// partition (the next episode checkpoints it, then `held` is settled), else
/// as a control message (packed with others bound for that partition).
async fn deliver(
    engine: &Arc<Engine>,
    item: &WorkItem,
    result: Result<Option<String>, Failure>,
    held: Option<Arc<Held>>,
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
    if let Some(part) = engine.owned(engine.hub.partition_of(&item.instance_id))
        && part.is_active()
    {
        part.push(
            engine,
            &item.instance_id,
            vec![Work::Message {
                message,
                held,
                ack: None,
                new_id: false,
            }],
        );
        return;
    }
    let mut pause = Duration::from_millis(200);
    for attempt in 1..=8 {
        match super::outbox::send_control(engine, vec![message.clone()]).await {
            Ok(()) => {
                if let Some(held) = &held {
                    engine.holds.settle(&engine.hub.storage, held).await;
                }
                return;
            }
            Err(e) if attempt == 8 => {
                // The work item (if any) reappears and runs again; a local
                // task is run again by the partition's owner.
                tracing::warn!(
                    "sending the result of activity '{}' to '{}': {e}",
                    item.name,
                    item.instance_id
                );
            }
            Err(_) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
        }
    }
}
