//! Partition leases and the control-queue pollers of the partitions held.
//!
//! Each control queue has a lease blob in `{hub}-leases`. Every renewal
//! period (10 s) a host renews what it holds and tries to take partitions
//! nobody holds; a host that dies stops renewing, its 30 s leases expire and
//! another host takes them. A host that stops releases its leases at once.
//!
//! Balance: each host also writes a heartbeat blob `hosts/{host id}` every
//! period. A host holds at most ceil(partitions / live hosts) partitions,
//! releasing the rest for the others to take, so two hosts split four
//! partitions two and two within a couple of periods.

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
        let fair = fair_share(&engine).await;
        release_extra(&engine, fair).await;
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
                        engine.forget_all_histories();
                    }
                    Err(e) => tracing::warn!("renewing the lease of partition {p}: {e}"),
                },
                // Holding a fair share already: leave the rest to other hosts.
                None if engine.owned.lock().expect("owned lock").len() >= fair => {}
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
                        engine
                            .owned
                            .lock()
                            .expect("owned lock")
                            .insert(p, lease.clone());
                        let poller = tokio::spawn(poll(engine.clone(), p, lease));
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

/// Partitions this host should hold at most: ceil(partitions / live hosts),
/// counting hosts whose heartbeat is younger than a lease. Writes our heartbeat.
async fn fair_share(engine: &Engine) -> usize {
    let container = engine.hub.leases_container();
    let blobs = &engine.hub.storage.blobs;
    let now = super::model::now_ms();
    let beat = format!("hosts/{}", engine.host_id);
    if let Err(e) = blobs
        .put(&container, &beat, now.to_string().into_bytes())
        .await
    {
        tracing::debug!("writing the heartbeat of host {}: {e}", engine.host_id);
    }
    let partitions = engine.hub.partitions as usize;
    let Ok(hosts) = blobs.list(&container, "hosts/").await else {
        return partitions;
    };
    let mut live = 0usize;
    for (name, _) in hosts {
        let alive = match blobs.get(&container, &name).await {
            Ok(Some((bytes, _))) => String::from_utf8_lossy(&bytes)
                .parse::<u64>()
                .is_ok_and(|t| now.saturating_sub(t) < engine.config.lease.as_millis() as u64),
            _ => false,
        };
        if alive {
            live += 1;
        } else if name != beat {
            // A host that stopped beating long ago: tidy its heartbeat away.
            let _ = blobs.delete(&container, &name).await;
        }
    }
    partitions.div_ceil(live.max(1))
}

/// Let go of partitions beyond `fair`, highest first, for other hosts to take.
async fn release_extra(engine: &Engine, fair: usize) {
    let extra: Vec<(u32, String)> = {
        let owned = engine.owned.lock().expect("owned lock");
        let mut held: Vec<(u32, String)> = owned.iter().map(|(p, l)| (*p, l.clone())).collect();
        held.sort();
        held.into_iter().skip(fair).collect()
    };
    let container = engine.hub.leases_container();
    for (p, lease) in extra {
        // The poller stops once the partition is no longer ours.
        engine.owned.lock().expect("owned lock").remove(&p);
        engine.forget_all_histories();
        tracing::info!(
            "Host {} hands partition {p} over to another host",
            engine.host_id
        );
        release(engine, &container, p, &lease).await;
    }
}

async fn release(engine: &Engine, container: &str, partition: u32, lease: &str) {
    let blob = lease_blob(engine, partition);
    if let Err(e) = engine
        .hub
        .storage
        .blobs
        .release_lease(container, &blob, lease)
        .await
    {
        tracing::debug!("releasing the lease of partition {partition}: {e}");
    }
}

/// Release every lease held (at shutdown).
pub async fn release_all(engine: &Engine) {
    let held: Vec<(u32, String)> = engine.owned.lock().expect("owned lock").drain().collect();
    let container = engine.hub.leases_container();
    // No longer counted as a live host.
    let _ = engine
        .hub
        .storage
        .blobs
        .delete(&container, &format!("hosts/{}", engine.host_id))
        .await;
    for (p, lease) in held {
        release(engine, &container, p, &lease).await;
    }
}

/// Process one partition's control queue while this host holds it.
async fn poll(engine: Arc<Engine>, partition: u32, lease: String) {
    let queue = engine.hub.control_queue(partition);
    let mut backoff = Backoff::new(engine.config.max_polling_interval);
    // While this lease is ours: after a loss and a new lease, a new poller runs.
    while engine.holds(partition, &lease) && !engine.stopping() {
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
