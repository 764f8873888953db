//! Blob leases in the `azure-webjobs-hosts` container, which the timer
//! trigger (one listener per function across hosts) and the blob trigger
//! (one invocation per blob version) hold while they work, as Azure's
//! singleton locks and blob receipts do.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::storage::{Blobs, PutOptions, Storage, StorageError};

/// Azure Functions' own container for receipts, timer status and locks.
pub const HOSTS_CONTAINER: &str = "azure-webjobs-hosts";

/// Leases last 60 s (Azure's longest finite lease) and are renewed every
/// 20 s: a renewal may fail twice before the lease lapses, and a host that
/// dies frees what it held within a minute.
pub const LEASE_PERIOD: Duration = Duration::from_secs(60);
const RENEW_EVERY: Duration = Duration::from_secs(20);

/// Create `name` (empty, with `options`) in `container` if it is not there,
/// and the container first if need be. Ok when it already exists.
pub async fn ensure_blob(
    blobs: &dyn Blobs,
    container: &str,
    name: &str,
    options: &PutOptions,
) -> Result<(), StorageError> {
    let options = PutOptions {
        if_absent: true,
        ..options.clone()
    };
    let put = || blobs.put_with(container, name, Vec::new(), &options);
    match put().await {
        Ok(()) | Err(StorageError::Conflict(_)) => Ok(()),
        Err(StorageError::NotFound(_)) => {
            blobs.create_container(container).await?;
            match put().await {
                Ok(()) | Err(StorageError::Conflict(_)) => Ok(()),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

/// A lease this host holds, renewed in the background until released.
pub struct Held {
    pub id: String,
    storage: Storage,
    container: String,
    name: String,
    lost: watch::Receiver<bool>,
    renewer: JoinHandle<()>,
}

/// Take the lease on `container/name` (which must exist); None if another holder has it.
pub async fn acquire(
    storage: &Storage,
    container: &str,
    name: &str,
) -> Result<Option<Held>, StorageError> {
    let Some(id) = storage
        .blobs
        .acquire_lease(container, name, LEASE_PERIOD)
        .await?
    else {
        return Ok(None);
    };
    let (tx, lost) = watch::channel(false);
    let renewer = {
        let (storage, container, name, id) = (
            storage.clone(),
            container.to_string(),
            name.to_string(),
            id.clone(),
        );
        tokio::spawn(async move {
            let mut failures = 0;
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                match storage.blobs.renew_lease(&container, &name, &id).await {
                    Ok(true) => failures = 0,
                    Ok(false) => break,
                    // Transient: the lease outlives two missed renewals.
                    Err(_) if failures < 1 => failures += 1,
                    Err(_) => break,
                }
            }
            let _ = tx.send(true);
        })
    };
    Ok(Some(Held {
        id,
        storage: storage.clone(),
        container: container.to_string(),
        name: name.to_string(),
        lost,
        renewer,
    }))
}

impl Held {
    /// Whether the lease was lost (a renewal failed: another holder may have it).
    pub fn is_lost(&self) -> bool {
        *self.lost.borrow()
    }

    /// Wait until the lease is lost.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|l| *l).await;
    }

    /// Stop renewing and release the lease, so that another host may take it at once.
    pub async fn release(self) {
        self.renewer.abort();
        let _ = self
            .storage
            .blobs
            .release_lease(&self.container, &self.name, &self.id)
            .await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}
