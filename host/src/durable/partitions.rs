//! Partition leases and the control-queue pollers of the partitions held.
//!
//! Each control queue has a lease blob in `{hub}-leases`. Every renewal
//! period (10 s) a host renews what it holds and tries to take partitions
//! nobody holds; a host that dies stops renewing, its 30 s leases expire and
//! another host takes them. A host that stops releases its leases at once.

use std::sync::Arc;
use std::time::Duration;

use crate::storage::StorageError;

use super::orchestrations::{self, Inbound};
use super::{Backoff, Engine};

fn lease_blob(engine: &Engine, partition: u32) -> String {
    engine.hub.control_queue(partition)
}

/// Hold partitions while the engine runs.
pub async fn manage(engine: Arc<Engine>) {
    let container = engine.hub.leases_container();
    let blobs = engine.hub.storage.blobs.clone();
    for p in 0..engine.hub.partitions {
        match blobs
            .put_if_absent(&container, &lease_blob(&engine, p), Vec::new())
            .await
        {
            Ok(()) | Err(StorageError::Conflict(_)) => {}
            Err(e) => tracing::warn!("creating lease blob of partition {p}: {e}"),
        }
    }
    let mut stop = engine.stop.subscribe();
    loop {
        for p in 0..engine.hub.partitions {
            if engine.stopping() {
                return;
            }
            let held = engine.owned.lock().expect("owned lock").get(&p).cloned();
            match held {
                Some(lease) => match blobs
                    .renew_lease(&container, &lease_blob(&engine, p), &lease)
                    .await
                {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!("lost the lease of partition {p}; another host has it now");
                        engine.owned.lock().expect("owned lock").remove(&p);
                    }
                    Err(e) => tracing::warn!("renewing the lease of partition {p}: {e}"),
                },
                None => match blobs
                    .acquire_lease(&container, &lease_blob(&engine, p), engine.config.lease)
                    .await
                {
                    Ok(Some(lease)) => {
                        tracing::info!(
                            "Host {} took partition {p} ({})",
                            engine.host_id,
                            engine.hub.control_queue(p)
                        );
                        engine.owned.lock().expect("owned lock").insert(p, lease);
                        let poller = tokio::spawn(poll(engine.clone(), p));
                        engine.tasks.lock().expect("tasks lock").push(poller);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!("acquiring the lease of partition {p}: {e}"),
                },
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(engine.config.lease_renewal) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Release every lease held (at shutdown).
pub async fn release_all(engine: &Engine) {
    let held: Vec<(u32, String)> = engine.owned.lock().expect("owned lock").drain().collect();
    let container = engine.hub.leases_container();
    for (p, lease) in held {
        if let Err(e) = engine
            .hub
            .storage
            .blobs
            .release_lease(&container, &lease_blob(engine, p), &lease)
            .await
        {
            tracing::debug!("releasing the lease of partition {p}: {e}");
        }
    }
}

/// Process one partition's control queue while this host holds it.
async fn poll(engine: Arc<Engine>, partition: u32) {
    let queue = engine.hub.control_queue(partition);
    let mut backoff = Backoff::new(engine.config.max_polling_interval);
    while engine.owns(partition) && !engine.stopping() {
        let received = engine
            .hub
            .storage
            .queues
            .receive(
                &queue,
                engine.config.control_batch,
                engine.config.control_visibility,
            )
            .await;
        let messages = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!("reading {queue}: {e}");
                backoff
                    .wait(&engine.partition_wakers[partition as usize])
                    .await;
                continue;
            }
        };
        if messages.is_empty() {
            backoff
                .wait(&engine.partition_wakers[partition as usize])
                .await;
            continue;
        }
        backoff.reset();
        let mut batch = Vec::with_capacity(messages.len());
        for message in messages {
            match engine.hub.decode(&message.text).await {
                Ok(control) => batch.push(Inbound { message, control }),
                Err(e) => poison(&engine, &queue, &message, &e).await,
            }
        }
        orchestrations::process_batch(&engine, partition, batch).await;
    }
}

/// Move a message nobody can read to `{queue}-poison`, keeping its text.
pub async fn poison(
    engine: &Engine,
    queue: &str,
    message: &crate::storage::QueueMessage,
    why: &str,
) {
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
