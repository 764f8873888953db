//! queueTrigger: Azure Storage queue messages → invocations, as the Azure
//! Functions queue extension does it.
//!
//! Polling is adaptive: 100 ms after an empty get, doubling up to
//! `maxPollingInterval` (Azure's default 1 min, so an idle queue costs about
//! one call a minute), back to at once after a message or when a function of
//! this host sends to the queue. A get takes `batchSize` (16) messages; the
//! next get happens when the messages in flight drop to `newBatchThreshold`
//! (batchSize / 2), so at most batchSize + newBatchThreshold run at once, as
//! in Azure. A success deletes the message; a failure makes it visible again
//! after `visibilityTimeout` (0); a message that fails its
//! `maxDequeueCount`th (5th) time, or cannot be decoded, is copied as it is to
//! `{queue}-poison` and deleted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};

use super::{TriggerContext, TriggerKind};
use crate::catalog::FunctionEntry;
use crate::config::Trigger;
use crate::storage::{QueueMessage, Storage, StorageError};

/// The first poll interval after an empty get.
const MIN_POLL: Duration = Duration::from_millis(100);

/// Received messages stay hidden this much longer than functionTimeout: an
/// invocation always ends (or is stopped) before another host could see its
/// message, and a host that dies mid-invocation hands it on after this long.
const RECEIVE_MARGIN: Duration = Duration::from_secs(30);

/// A storage error is reported at most this often per listener.
const ERROR_REPORT: Duration = Duration::from_secs(30);

/// The queueTrigger kind.
pub struct QueueTrigger;

impl TriggerKind for QueueTrigger {
    fn handles(&self, trigger: &Trigger) -> bool {
        matches!(trigger, Trigger::Queue { .. })
    }

    fn listen(
        &self,
        ctx: TriggerContext,
        function: Arc<FunctionEntry>,
        stop: watch::Receiver<bool>,
    ) -> BoxFuture<'static, ()> {
        Box::pin(listen(ctx, function, stop))
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

struct Listener {
    ctx: TriggerContext,
    function: String,
    queue: String,
    poison: String,
    storage: Storage,
    in_flight: AtomicUsize,
    /// Rung when an invocation finishes (room for the next batch).
    finished: Notify,
}

async fn listen(
    ctx: TriggerContext,
    function: Arc<FunctionEntry>,
    mut stop: watch::Receiver<bool>,
) {
    let Trigger::Queue {
        queue_name,
        connection,
    } = &function.trigger
    else {
        return;
    };
    let storage = match ctx.connections.get(connection) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                "The listener for function 'Functions.{}' was unable to start: {e}",
                function.name
            );
            return;
        }
    };
    let settings = ctx.host.extensions.queues.clone();
    let batch = settings.batch_size.clamp(1, 32);
    let threshold = settings.new_batch_threshold.unwrap_or(batch / 2).min(1000) as usize;
    let max_poll = settings.max_polling_interval.max(MIN_POLL);
    let hidden = ctx.host.function_timeout + RECEIVE_MARGIN;
    let wake = ctx.connections.waker(connection, queue_name);
    let listener = Arc::new(Listener {
        function: function.name.clone(),
        queue: queue_name.clone(),
        poison: format!("{queue_name}-poison"),
        storage,
        in_flight: AtomicUsize::new(0),
        finished: Notify::new(),
        ctx: ctx.clone(),
    });
    let mut tasks = tokio::task::JoinSet::new();
    let mut delay = MIN_POLL;
    let mut reported: Option<Instant> = None;
    while !*stop.borrow() {
        // Room for a batch: Azure fetches again once in-flight messages drop to the threshold.
        while listener.in_flight.load(Ordering::Acquire) > threshold {
            tokio::select! {
                _ = listener.finished.notified() => {}
                _ = super::stopped(&mut stop) => break,
            }
        }
        if *stop.borrow() {
            break;
        }
        while tasks.try_join_next().is_some() {}
        match listener
            .storage
            .queues
            .receive(queue_name, batch, hidden)
            .await
        {
            Ok(messages) if !messages.is_empty() => {
                delay = MIN_POLL;
                for message in messages {
                    listener.in_flight.fetch_add(1, Ordering::AcqRel);
                    let l = listener.clone();
                    tasks.spawn(async move {
                        l.process(message).await;
                        l.in_flight.fetch_sub(1, Ordering::AcqRel);
                        l.finished.notify_one();
                    });
                }
                continue;
            }
            Ok(_) | Err(StorageError::NotFound(_)) => {} // empty, or not created yet
            Err(e) => {
                // An outage is reported once by the storage layer.
                if !e.is_unavailable() && reported.is_none_or(|t| t.elapsed() > ERROR_REPORT) {
                    tracing::warn!(
                        "Function 'Functions.{}': reading queue '{queue_name}' failed (retrying): {e}",
                        function.name
                    );
                    reported = Some(Instant::now());
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => delay = (delay * 2).min(max_poll),
            _ = wake.notified() => delay = MIN_POLL,
            _ = super::stopped(&mut stop) => {}
        }
    }
    // Finish what is in flight (bounded by functionTimeout).
    while tasks.join_next().await.is_some() {}
    ctx.connections.drop_waker(&wake);
}

impl Listener {
    async fn process(&self, message: QueueMessage) {
        let max = self.ctx.host.extensions.queues.max_dequeue_count.max(1);
        // A host that died mid-invocation leaves messages that were received
        // more often than allowed: they go to poison without another run.
        if message.dequeue_count > max {
            self.poison(
                &message,
                &format!("Message has reached MaxDequeueCount of {max}"),
            )
            .await;
            return;
        }
        let body = match self.ctx.connections.encoding().decode(&message.text) {
            Ok(body) => body,
            Err(why) => {
                tracing::error!(
                    "Function 'Functions.{}': message '{}' of queue '{}' cannot be decoded: {why}. \
                     Queue messages must be base64 (what the Azure Storage SDKs send), or set \
                     [extensions.queues] messageEncoding = \"none\" in host.toml",
                    self.function,
                    message.id,
                    self.queue
                );
                self.poison(&message, "Message cannot be decoded").await;
                return;
            }
        };
        let Some(entry) = self
            .ctx
            .catalog
            .table()
            .find(&self.function, |t| matches!(t, Trigger::Queue { .. }))
        else {
            // Unloaded meanwhile: give the message back at once.
            let _ = self
                .storage
                .queues
                .set_visibility(&self.queue, &message, Duration::ZERO)
                .await;
            return;
        };
        let input = crate::runtime::QueueMessage {
            id: message.id.clone(),
            body,
            dequeue_count: message.dequeue_count,
            insertion_time: millis(message.insertion_time),
            expiration_time: millis(message.expiration_time),
            next_visible_time: millis(message.next_visible_time),
            pop_receipt: message.pop_receipt.clone(),
            queue: self.queue.clone(),
        };
        let invocation = super::invocation(&entry.name);
        super::log_executing(
            &invocation,
            &format!("New queue message detected on '{}'.", self.queue),
        );
        let started = Instant::now();
        let result = self
            .ctx
            .runtime
            .invoke_trigger(
                &entry.component,
                &invocation,
                crate::runtime::TriggerInput::Queue(input),
            )
            .await;
        let error = match result {
            Ok(Ok(())) => None,
            Ok(Err(message)) => Some(message),
            Err(e) => Some(e.to_string()),
        };
        super::log_executed(
            &invocation,
            error.as_ref().map(|e| e as &dyn std::fmt::Display),
            started.elapsed(),
        );
        if error.is_none() {
            if let Err(e) = self.storage.queues.delete(&self.queue, &message).await {
                tracing::warn!(
                    "Function 'Functions.{}': deleting message '{}' of queue '{}' failed ({e}); \
                     it will run again",
                    self.function,
                    message.id,
                    self.queue
                );
            }
        } else if message.dequeue_count >= max {
            self.poison(
                &message,
                &format!("Message has reached MaxDequeueCount of {max}"),
            )
            .await;
        } else {
            let visibility = self.ctx.host.extensions.queues.visibility_timeout;
            if let Err(e) = self
                .storage
                .queues
                .set_visibility(&self.queue, &message, visibility)
                .await
            {
                tracing::warn!(
                    "Function 'Functions.{}': releasing message '{}' of queue '{}' failed ({e}); \
                     it is visible again when its receipt times out",
                    self.function,
                    message.id,
                    self.queue
                );
            }
        }
    }

    /// Copy the message's text as it is to `{queue}-poison`, then delete it.
    async fn poison(&self, message: &QueueMessage, why: &str) {
        tracing::warn!(
            "{why}. Moving message '{}' to queue '{}'.",
            message.id,
            self.poison
        );
        let queues = &self.storage.queues;
        let sent = match queues
            .send(&self.poison, &message.text, Duration::ZERO)
            .await
        {
            Err(StorageError::NotFound(_)) => match queues.create_queue(&self.poison).await {
                Ok(()) => {
                    queues
                        .send(&self.poison, &message.text, Duration::ZERO)
                        .await
                }
                Err(e) => Err(e),
            },
            other => other,
        };
        if let Err(e) = sent {
            // Not deleted: it comes back and is poisoned again.
            tracing::error!(
                "Function 'Functions.{}': moving message '{}' to '{}' failed ({e}); it stays in '{}'",
                self.function,
                message.id,
                self.poison,
                self.queue
            );
            return;
        }
        if let Err(e) = queues.delete(&self.queue, message).await {
            tracing::warn!(
                "Function 'Functions.{}': deleting poisoned message '{}' of '{}' failed: {e}",
                self.function,
                message.id,
                self.queue
            );
        }
    }
}
