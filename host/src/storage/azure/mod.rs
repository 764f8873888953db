//! The Azure Storage implementation (azure_storage_* 0.21): Azurite or a real account.
//!
//! [`connect`] turns a connection string into a [`Storage`]; [`probe`] checks
//! at start-up, in one line, that the three services answer. Every HTTP
//! attempt is counted per service (a retried call counts each attempt).
//! Transient failures (connection refused or reset, no answer within 30 s,
//! 408/429/5xx) are retried 3 times, 50 ms then 100 ms apart, then reported as
//! [`StorageError::Unavailable`]; 404 is NotFound, 409/412 Conflict, anything
//! else Other with the service's message.
//!
//! Facts a caller relies on (checked against Azurite 3.37 by tests/storage_azure.rs):
//! - queue text goes as it is (XML-escaped by the crate, no base64); at most
//!   64 KiB; messages never expire (TTL 68 years), delays round up to whole
//!   seconds; a stale pop receipt is Conflict (Azurite's 400 PopReceiptMismatch);
//! - table values keep their JSON types ([`Entity`](crate::storage::Entity)
//!   says how); keys may hold `'`; a page holds at most 1,000 entities and
//!   [`Page::continuation`](crate::storage::Page) is "NextPartitionKey NextRowKey";
//! - a failed batch writes nothing and is Conflict (409/412) or NotFound (404);
//! - a blob is read in one call (two if it is empty: the range read answers 416);
//!   blob ETags come without quotes, so listed and read ones compare equal;
//!   leases are 15-60 s (or `Duration::MAX` for infinite); lease ids are UUIDs.

mod blobs;
mod connection;
mod entity;
mod health;
mod queues;
mod tables;
mod transport;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use azure_data_tables::clients::TableServiceClientBuilder;
use azure_storage_blobs::prelude::ClientBuilder as BlobClientBuilder;
use azure_storage_queues::QueueServiceClientBuilder;

use crate::storage::{CallCounts, Storage, StorageError};

/// How long [`probe`] waits in all: connection refused fails in about 0.2 s,
/// but an address that drops packets would otherwise hang for 3 × 30 s.
const PROBE_DEADLINE: Duration = Duration::from_secs(10);

/// The names [`probe`] reads. They need not exist: "not found" proves the
/// service answered and accepted our credentials (auth is checked first).
const PROBE_QUEUE: &str = "fnhost-probe";
const PROBE_TABLE: &str = "fnhostprobe";
const PROBE_CONTAINER: &str = "fnhost-probe";

/// A [`Storage`] for the account of `connection_string`:
/// `UseDevelopmentStorage=true` (Azurite on 127.0.0.1:10000-10002), an account's
/// `DefaultEndpointsProtocol=https;AccountName=…;AccountKey=…;EndpointSuffix=…`,
/// or one with explicit `BlobEndpoint=`/`QueueEndpoint=`/`TableEndpoint=`
/// (an Azurite on other ports). `SharedAccessSignature=` works in place of a key.
///
/// No call is made here; see [`probe`]. A malformed string is
/// [`StorageError::Other`] naming the missing or wrong key (never a value).
///
/// ```no_run
/// # async fn run() -> Result<(), host::storage::StorageError> {
/// let storage = host::storage::azure::connect("UseDevelopmentStorage=true")?;
/// host::storage::azure::probe(&storage).await?; // "cannot reach Azurite at …: start it with …"
/// storage.queues.create_queue("orders").await?;
/// # Ok(()) }
/// ```
pub fn connect(connection_string: &str) -> Result<Storage, StorageError> {
    let account = connection::parse(connection_string)?;
    let counters: [Arc<AtomicU64>; 3] = Default::default();
    let [queue_calls, table_calls, blob_calls] = counters.clone();

    let queue_health = health::of("queue", &account.queue);
    let table_health = health::of("table", &account.table);
    let blob_health = health::of("blob", &account.blob);

    let queues = QueueServiceClientBuilder::with_location(
        account.queue.location.clone(),
        account.credentials.clone(),
    )
    .client_options(transport::options(queue_calls, queue_health.clone()))
    .build();
    let tables = TableServiceClientBuilder::with_location(
        account.table.location.clone(),
        account.credentials.clone(),
    )
    .client_options(transport::options(table_calls, table_health.clone()))
    .build();
    let blobs = BlobClientBuilder::with_location(
        account.blob.location.clone(),
        account.credentials.clone(),
    )
    .client_options(transport::options(blob_calls, blob_health.clone()))
    .blob_service_client();

    let counts = move || CallCounts {
        queue: counters[0].load(Ordering::Relaxed),
        table: counters[1].load(Ordering::Relaxed),
        blob: counters[2].load(Ordering::Relaxed),
    };
    Ok(Storage::new(
        Arc::new(queues::AzureQueues {
            client: queues,
            endpoint: account.queue,
            health: queue_health,
        }),
        Arc::new(tables::AzureTables {
            client: tables,
            endpoint: account.table,
            health: table_health,
        }),
        Arc::new(blobs::AzureBlobs {
            client: blobs,
            endpoint: account.blob,
            health: blob_health,
        }),
        Arc::new(counts),
    ))
}

/// One cheap read from each service (3 calls when all is well), so start-up
/// can say in one line that storage is unreachable and what to do, e.g.
/// "storage unavailable: cannot reach Azurite at 127.0.0.1:10000-10002
/// (UseDevelopmentStorage=true): start it with `npx azurite --silent --location
/// .azurite` (./dev start does this); queue …". Bad credentials come back as
/// Other with the service's message (403 AuthenticationFailed).
pub async fn probe(storage: &Storage) -> Result<(), StorageError> {
    let reads = async {
        let (queue, table, blob) = futures::join!(
            storage.queues.approximate_count(PROBE_QUEUE),
            storage.tables.get(PROBE_TABLE, "probe", "probe"),
            storage.blobs.get(PROBE_CONTAINER, "probe"),
        );
        [queue.map(drop), table.map(drop), blob.map(drop)]
            .into_iter()
            .find_map(|result| match result {
                Ok(()) | Err(StorageError::NotFound(_)) => None,
                Err(e) => Some(e),
            })
            .map_or(Ok(()), Err)
    };
    // The caller reports a failed probe in one line: no lines of its own.
    match tokio::time::timeout(PROBE_DEADLINE, transport::quietly(reads)).await {
        Ok(result) => result,
        Err(_) => Err(StorageError::Unavailable(format!(
            "storage did not answer within {} s (queue '{PROBE_QUEUE}', table '{PROBE_TABLE}', \
             container '{PROBE_CONTAINER}'): check the endpoints in the connection string and the network",
            PROBE_DEADLINE.as_secs()
        ))),
    }
}
