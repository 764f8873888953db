//! Queue messages this host has received and not yet settled.
//!
//! A queue message can carry several inner messages (packed control messages,
//! packed work items); it is deleted once every one of them is settled (its
//! effect checkpointed, or passed on). While held it stays hidden: a message
//! held longer than half its visibility timeout is made invisible again, so
//! the timeout can be short (30 s) and a host that dies holding it delays its
//! work by that much, not by minutes.
//!
//! A client signal stored in a partition's signal log is held the same way:
//! settling it lets the log delete its row.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::storage::{QueueMessage, Storage, StorageError};

/// One received queue message (or logged signal) and how many of its inner
/// messages are unsettled.
pub struct Held {
    pub queue: String,
    message: tokio::sync::Mutex<QueueMessage>,
    id: String,
    remaining: AtomicUsize,
    /// When it was last received or made invisible again.
    hidden_at: Mutex<Instant>,
    visibility: Duration,
    done: AtomicBool,
    /// The partition whose control queue it came from (None: work items).
    pub partition: Option<u32>,
    /// A row of a signal log instead of a queue message.
    log: Option<(Arc<super::signal_log::Lane>, String)>,
}

impl Held {
    /// A signal stored as `row_key` in `lane`'s log: settled, its row goes.
    pub fn logged(
        lane: Arc<super::signal_log::Lane>,
        row_key: String,
        partition: u32,
    ) -> Arc<Held> {
        Arc::new(Held {
            queue: String::new(),
            message: tokio::sync::Mutex::new(QueueMessage {
                id: row_key.clone(),
                pop_receipt: String::new(),
                dequeue_count: 1,
                insertion_time: std::time::SystemTime::UNIX_EPOCH,
                expiration_time: std::time::SystemTime::UNIX_EPOCH,
                next_visible_time: std::time::SystemTime::UNIX_EPOCH,
                text: String::new(),
            }),
            id: row_key.clone(),
            remaining: AtomicUsize::new(1),
            hidden_at: Mutex::new(Instant::now()),
            visibility: Duration::ZERO,
            done: AtomicBool::new(false),
            partition: Some(partition),
            log: Some((lane, row_key)),
        })
    }
}

/// Every message this host holds, for settling and renewal.
#[derive(Default)]
pub struct Holds {
    held: Mutex<HashMap<String, Arc<Held>>>,
}

impl Holds {
    /// Hold `message` with `inner` messages to settle. None if it is held
    /// already (the same message seen again after its timeout lapsed): the
    /// new pop receipt replaces the old one, and its content is not taken twice.
    pub async fn hold(
        &self,
        queue: &str,
        message: QueueMessage,
        inner: usize,
        visibility: Duration,
        partition: Option<u32>,
    ) -> Option<Arc<Held>> {
        let existing = self
            .held
            .lock()
            .expect("holds lock")
            .get(&message.id)
            .cloned();
        if let Some(existing) = existing {
            *existing.message.lock().await = message;
            *existing.hidden_at.lock().expect("hold lock") = Instant::now();
            return None;
        }
        let held = Arc::new(Held {
            queue: queue.to_string(),
            id: message.id.clone(),
            message: tokio::sync::Mutex::new(message),
            remaining: AtomicUsize::new(inner.max(1)),
            hidden_at: Mutex::new(Instant::now()),
            visibility,
            done: AtomicBool::new(false),
            partition,
            log: None,
        });
        self.held
            .lock()
            .expect("holds lock")
            .insert(held.id.clone(), held.clone());
        Some(held)
    }

    /// One inner message of `held` is settled; the last one deletes it.
    pub async fn settle(&self, storage: &Storage, held: &Arc<Held>) {
        if held.done.load(Ordering::Acquire) || held.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        if let Some((lane, row_key)) = &held.log {
            held.done.store(true, Ordering::Release);
            lane.settled(row_key.clone());
            return;
        }
        self.finish(held);
        let message = held.message.lock().await;
        match storage.queues.delete(&held.queue, &message).await {
            Ok(()) | Err(StorageError::NotFound(_)) => {}
            Err(e) => tracing::debug!("deleting message {} of {}: {e}", held.id, held.queue),
        }
    }

    /// Give `held` back to the queue at once (or after `delay`) without
    /// deleting it: another host, or this one later, takes it again.
    pub async fn abandon(&self, storage: &Storage, held: &Arc<Held>, delay: Duration) {
        if let Some((lane, _)) = &held.log {
            // Its row stays: the log is read again, and the signal comes back.
            if !held.done.swap(true, Ordering::AcqRel) {
                lane.given_back();
            }
            return;
        }
        if held.done.swap(true, Ordering::AcqRel) {
            return;
        }
        self.held.lock().expect("holds lock").remove(&held.id);
        let message = held.message.lock().await;
        if let Err(e) = storage
            .queues
            .set_visibility(&held.queue, &message, delay)
            .await
        {
            tracing::debug!("returning message {} to {}: {e}", held.id, held.queue);
        }
    }

    fn finish(&self, held: &Held) {
        held.done.store(true, Ordering::Release);
        self.held.lock().expect("holds lock").remove(&held.id);
    }

    /// Forget the messages of `partition` without touching them (the
    /// partition was lost: they reappear for its new owner after their timeout).
    pub fn drop_partition(&self, partition: u32) {
        self.held
            .lock()
            .expect("holds lock")
            .retain(|_, h| h.partition != Some(partition));
    }

    /// The held messages of `partition` (or of the work-item queue for None).
    pub fn of(&self, partition: Option<u32>) -> Vec<Arc<Held>> {
        self.held
            .lock()
            .expect("holds lock")
            .values()
            .filter(|h| h.partition == partition)
            .cloned()
            .collect()
    }

    /// Keep hidden what has been held for half its visibility timeout.
    pub async fn renew_due(&self, storage: &Storage) {
        let due: Vec<Arc<Held>> = {
            let now = Instant::now();
            self.held
                .lock()
                .expect("holds lock")
                .values()
                .filter(|h| {
                    now.duration_since(*h.hidden_at.lock().expect("hold lock")) >= h.visibility / 2
                })
                .cloned()
                .collect()
        };
        for held in due {
            let mut message = held.message.lock().await;
            if held.done.load(Ordering::Acquire) {
                continue;
            }
            match storage
                .queues
                .set_visibility(&held.queue, &message, held.visibility)
                .await
            {
                Ok(updated) => {
                    *message = updated;
                    *held.hidden_at.lock().expect("hold lock") = Instant::now();
                }
                Err(e) => {
                    tracing::debug!("keeping message {} of {} hidden: {e}", held.id, held.queue)
                }
            }
        }
    }
}
