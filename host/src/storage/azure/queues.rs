//! [`Queues`] on Azure Storage queues (azure_storage_queues).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use azure_storage_queues::{PopReceipt, QueueServiceClient};

use super::connection::Endpoint;
use super::health::Health;
use super::transport::{classify, status_of};
use crate::storage::{QueueMessage, Queues, Result, StorageError};

/// A message never expires: one that vanished unread after Azure's default
/// 7-day time-to-live would be an acknowledged message lost. Azure takes any
/// positive TTL in seconds (or -1, which the crate cannot send); i32::MAX
/// seconds is 68 years.
const NEVER_EXPIRES: Duration = Duration::from_secs(i32::MAX as u64);

/// Azure's limits: at most 32 messages per get, visibility at most 7 days.
const MAX_PER_GET: u32 = 32;
const MAX_VISIBILITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// The queues of one storage account.
pub(crate) struct AzureQueues {
    pub client: QueueServiceClient,
    pub endpoint: Endpoint,
    pub health: Arc<Health>,
}

use crate::storage::queue_delay as seconds_up;

fn check_visibility(queue: &str, what: &str, duration: Duration) -> Result<()> {
    if duration > MAX_VISIBILITY {
        return Err(StorageError::Other(format!(
            "queue '{queue}': {what} of {} s is over Azure's 7-day limit (604800 s); \
             re-arm long timers in steps",
            duration.as_secs()
        )));
    }
    Ok(())
}

impl AzureQueues {
    fn error(&self, error: azure_core::Error, what: String) -> StorageError {
        self.health.note(classify(error, &what, &self.endpoint))
    }
}

#[async_trait]
impl Queues for AzureQueues {
    async fn create_queue(&self, queue: &str) -> Result<()> {
        match self.client.queue_client(queue).create().await {
            Ok(_) => Ok(()),
            // 409 QueueAlreadyExists: it exists with other metadata; still there.
            Err(e) if matches!(status_of(&e), Some((409, _))) => Ok(()),
            Err(e) => Err(self.error(e, format!("creating queue '{queue}'"))),
        }
    }

    async fn delete_queue(&self, queue: &str) -> Result<()> {
        self.client
            .queue_client(queue)
            .delete()
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, format!("deleting queue '{queue}'")))
    }

    async fn send(&self, queue: &str, text: &str, delay: Duration) -> Result<()> {
        let delay = seconds_up(delay);
        check_visibility(queue, "a delay", delay)?;
        self.client
            .queue_client(queue)
            .put_message(text)
            .visibility_timeout(delay)
            .ttl(NEVER_EXPIRES)
            .await
            .map(|_| ())
            .map_err(|e| self.error(e, format!("sending to queue '{queue}'")))
    }

    async fn receive(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>> {
        if !(1..=MAX_PER_GET).contains(&max) {
            return Err(StorageError::Other(format!(
                "queue '{queue}': cannot receive {max} messages at once; Azure allows 1 to 32"
            )));
        }
        // Azure wants at least 1 s of invisibility for a received message.
        let visibility = seconds_up(visibility).max(Duration::from_secs(1));
        check_visibility(queue, "a visibility timeout", visibility)?;
        let response = self
            .client
            .queue_client(queue)
            .get_messages()
            .number_of_messages(max as u8)
            .visibility_timeout(visibility)
            .await
            .map_err(|e| self.error(e, format!("receiving from queue '{queue}'")))?;
        Ok(response
            .messages
            .into_iter()
            .map(|m| QueueMessage {
                id: m.message_id,
                pop_receipt: m.pop_receipt,
                dequeue_count: u32::try_from(m.dequeue_count).unwrap_or(u32::MAX),
                insertion_time: SystemTime::from(m.insertion_time),
                expiration_time: SystemTime::from(m.expiration_time),
                next_visible_time: SystemTime::from(m.time_next_visible),
                text: m.message_text,
            })
            .collect())
    }

    async fn delete(&self, queue: &str, message: &QueueMessage) -> Result<()> {
        let receipt = PopReceipt::new(&message.id, &message.pop_receipt);
        match self
            .client
            .queue_client(queue)
            .pop_receipt_client(receipt)
            .delete()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => Err(self.receipt_error(e, queue, message, "deleting")),
        }
    }

    async fn set_visibility(
        &self,
        queue: &str,
        message: &QueueMessage,
        visibility: Duration,
    ) -> Result<QueueMessage> {
        let visibility = seconds_up(visibility);
        check_visibility(queue, "a visibility timeout", visibility)?;
        let receipt = PopReceipt::new(&message.id, &message.pop_receipt);
        // An update carries the text too; sending it back unchanged keeps it.
        let response = self
            .client
            .queue_client(queue)
            .pop_receipt_client(receipt)
            .update(message.text.clone(), visibility)
            .await
            .map_err(|e| self.receipt_error(e, queue, message, "updating"))?;
        Ok(QueueMessage {
            pop_receipt: response.pop_receipt,
            next_visible_time: SystemTime::from(response.time_next_visible),
            ..message.clone()
        })
    }

    async fn approximate_count(&self, queue: &str) -> Result<u64> {
        let response = self
            .client
            .queue_client(queue)
            .get_metadata()
            .await
            .map_err(|e| self.error(e, format!("counting queue '{queue}'")))?;
        Ok(response.approximate_messages_count as u64)
    }
}

impl AzureQueues {
    /// A stale pop receipt (400 PopReceiptMismatch: the visibility timeout
    /// ran out and someone else received the message) is a Conflict: another
    /// consumer owns the message now.
    fn receipt_error(
        &self,
        error: azure_core::Error,
        queue: &str,
        message: &QueueMessage,
        doing: &str,
    ) -> StorageError {
        let what = format!("{doing} message {} in queue '{queue}'", message.id);
        match status_of(&error) {
            Some((400, Some("PopReceiptMismatch"))) => StorageError::Conflict(format!(
                "{what}: its pop receipt is stale (the message became visible and was received again)"
            )),
            _ => self.error(error, what),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_round_up_to_whole_seconds() {
        assert_eq!(seconds_up(Duration::ZERO), Duration::ZERO);
        assert_eq!(seconds_up(Duration::from_millis(1)), Duration::from_secs(1));
        assert_eq!(
            seconds_up(Duration::from_millis(2000)),
            Duration::from_secs(2)
        );
        assert_eq!(
            seconds_up(Duration::from_millis(2001)),
            Duration::from_secs(3)
        );
    }
}
