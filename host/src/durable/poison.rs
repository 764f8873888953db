//! Messages the engine cannot process go to `{queue}-poison` instead of
//! looping: an unreadable message as it is, byte for byte; the messages of
//! an instance whose episodes keep failing, with the reason.

use std::time::Duration;

use crate::storage::QueueMessage;

use super::Engine;

/// Move a message nobody can read to `{queue}-poison`, keeping its text.
pub async fn unreadable(engine: &Engine, queue: &str, message: &QueueMessage, why: &str) {
    let poison = format!("{queue}-poison");
    tracing::error!(
        "moving unreadable message {} from {queue} to {poison}: {why}",
        message.id
    );
    let q = &engine.hub.storage.queues;
    if q.create_queue(&poison).await.is_ok()
        && q.send(&poison, &message.text, Duration::ZERO).await.is_ok()
    {
        let _ = q.delete(queue, message).await;
    }
}

/// Store `texts` in `{queue}-poison`, each wrapped with `why`.
pub async fn store(engine: &Engine, queue: &str, texts: &[String], why: &str) -> bool {
    let poison = format!("{queue}-poison");
    let q = &engine.hub.storage.queues;
    if let Err(e) = q.create_queue(&poison).await {
        tracing::error!("creating {poison}: {e}");
        return false;
    }
    for text in texts {
        let wrapped = serde_json::json!({ "reason": why, "message": text }).to_string();
        if let Err(e) = q.send(&poison, &wrapped, Duration::ZERO).await {
            tracing::error!("storing a poison message in {poison}: {e}");
            return false;
        }
    }
    true
}
