//! One trait surface over the queues, tables and blobs the durable engine and
//! the queue/blob triggers need, and its `azure` implementation (Azurite
//! locally, a storage account in production).
//!
//! Every call goes through an implementation that counts it ([`Storage::calls`]),
//! so "storage transactions per orchestration" is measurable: Azure bills per
//! transaction.

pub mod azure;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

/// What went wrong with a storage call. Callers branch on the kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// 409/412: an ETag did not match, or the entity/blob/lease already exists.
    /// For a checkpoint it means someone else wrote first.
    #[error("conflict: {0}")]
    Conflict(String),
    /// 404: the queue message, entity, blob or container is not there.
    #[error("not found: {0}")]
    NotFound(String),
    /// The service cannot be reached (after retries): connection refused, timeouts, 5xx.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Anything else (400s with a message from the service, bad input).
    #[error("storage error: {0}")]
    Other(String),
}

/// The delay a queue really applies to a message: whole seconds, rounded up so
/// that a delay never ends early (a timer must not fire before its time). Azure
/// counts visibility in seconds.
pub fn queue_delay(duration: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_secs(duration.as_secs() + u64::from(duration.subsec_nanos() > 0))
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// An outage: the storage layer has reported it already (once per
    /// service, with a line when the service answers again).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, StorageError::Unavailable(_))
    }
}

/// Log the failed storage work of a loop that will try again
/// (`"{context}: {error}"`): a warning, but only a debug line during an
/// outage, which the storage layer reports once rather than once per poll.
pub fn log_retrying(context: impl std::fmt::Display, error: &StorageError) {
    if error.is_unavailable() {
        tracing::debug!("{context}: {error}");
    } else {
        tracing::warn!("{context}: {error}");
    }
}

/// A message taken from a queue; invisible to others until its visibility timeout.
#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub id: String,
    /// Proof of this receipt; needed to delete or update the message.
    pub pop_receipt: String,
    /// How many times it has been received, this time included.
    pub dequeue_count: u32,
    pub insertion_time: SystemTime,
    /// When the service drops it unread.
    pub expiration_time: SystemTime,
    /// When it becomes visible again (the end of this receipt's visibility timeout).
    pub next_visible_time: SystemTime,
    /// The message text exactly as sent (no base64 applied by this layer).
    pub text: String,
}

/// Azure Storage queues.
#[async_trait]
pub trait Queues: Send + Sync {
    /// Create the queue if it does not exist.
    async fn create_queue(&self, queue: &str) -> Result<()>;
    /// Delete the queue; NotFound if it was not there.
    async fn delete_queue(&self, queue: &str) -> Result<()>;
    /// Add a message that becomes visible after `delay` (0 = at once; at most 7 days).
    async fn send(&self, queue: &str, text: &str, delay: Duration) -> Result<()>;
    /// Take up to `max` (1..=32) visible messages, hiding them for `visibility`.
    async fn receive(
        &self,
        queue: &str,
        max: u32,
        visibility: Duration,
    ) -> Result<Vec<QueueMessage>>;
    /// Delete a received message (its id and pop receipt).
    async fn delete(&self, queue: &str, message: &QueueMessage) -> Result<()>;
    /// Make a received message visible again after `visibility` (0 = now, to
    /// abandon it); returns it with its new pop receipt.
    async fn set_visibility(
        &self,
        queue: &str,
        message: &QueueMessage,
        visibility: Duration,
    ) -> Result<QueueMessage>;
    /// Approximate number of messages in the queue.
    async fn approximate_count(&self, queue: &str) -> Result<u64>;
}

/// A table entity: keys, ETag and properties. Properties are JSON values:
/// strings, numbers (i64 or f64), booleans. Strings longer than 32K chars are
/// rejected by Azure: callers keep large payloads in blobs.
///
/// How `azure` stores them (a round trip gives back the same values): integers
/// in i32 range as Edm.Int32, other i64 as Edm.Int64 (sent as an annotated
/// string, read back as a number), floats as Edm.Double (`2.0` stays a float),
/// strings and booleans as they are. A null property is left out (it reads
/// back as absent); arrays, objects, integers over i64::MAX and the names
/// PartitionKey, RowKey, Timestamp or names with `@` are refused (Other).
/// Keys may not contain `/`, `\`, `#` or `?` (Azure's rule); `'` is fine.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Entity {
    pub partition_key: String,
    pub row_key: String,
    /// Set on entities read from the service.
    pub etag: Option<String>,
    pub properties: serde_json::Map<String, serde_json::Value>,
}

impl Entity {
    pub fn new(partition_key: impl Into<String>, row_key: impl Into<String>) -> Entity {
        Entity {
            partition_key: partition_key.into(),
            row_key: row_key.into(),
            etag: None,
            properties: serde_json::Map::new(),
        }
    }

    /// Set a property (builder style).
    pub fn with(mut self, name: &str, value: impl Into<serde_json::Value>) -> Entity {
        self.properties.insert(name.to_string(), value.into());
        self
    }

    pub fn str(&self, name: &str) -> Option<&str> {
        self.properties.get(name).and_then(|v| v.as_str())
    }

    pub fn i64(&self, name: &str) -> Option<i64> {
        self.properties.get(name).and_then(|v| v.as_i64())
    }
}

/// One write to a table.
#[derive(Debug, Clone)]
pub enum TableOp {
    /// Fails with Conflict if the entity exists.
    Insert(Entity),
    /// Insert or replace (no ETag check).
    Upsert(Entity),
    /// Insert or merge properties (no ETag check).
    Merge(Entity),
    /// Replace only if the stored ETag is `etag`; Conflict otherwise (NotFound if missing).
    Replace { entity: Entity, etag: String },
    /// Delete; with `etag`, only if it matches. Deleting a missing entity is NotFound.
    Delete {
        partition_key: String,
        row_key: String,
        etag: Option<String>,
    },
}

/// A page of query results.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub entities: Vec<Entity>,
    /// Pass back to get the next page; None on the last page.
    pub continuation: Option<String>,
}

/// Azure Storage tables.
#[async_trait]
pub trait Tables: Send + Sync {
    /// Create the table if it does not exist.
    async fn create_table(&self, table: &str) -> Result<()>;
    async fn delete_table(&self, table: &str) -> Result<()>;
    async fn get(&self, table: &str, partition_key: &str, row_key: &str) -> Result<Option<Entity>>;
    /// Every entity of one partition, in row-key order (follows continuations).
    async fn query_partition(&self, table: &str, partition_key: &str) -> Result<Vec<Entity>>;
    /// One page of an OData `$filter` query (None = all rows), at most `top` entities.
    async fn query(
        &self,
        table: &str,
        filter: Option<&str>,
        top: Option<u32>,
        continuation: Option<&str>,
    ) -> Result<Page>;
    /// One write; the new ETag (None for a delete).
    async fn execute(&self, table: &str, op: TableOp) -> Result<Option<String>>;
    /// Up to 100 writes to one partition, all or nothing (an entity group
    /// transaction). Conflict if any ETag check or insert fails (nothing is
    /// written then); Other for more than 100 ops or mixed partitions.
    /// The new ETag of each write, in order (None for deletes), so that a
    /// caller never reads back what it just wrote.
    async fn batch(&self, table: &str, ops: Vec<TableOp>) -> Result<Vec<Option<String>>>;
}

/// Azure Storage blobs (block blobs) and their leases.
#[async_trait]
pub trait Blobs: Send + Sync {
    /// Create the container if it does not exist.
    async fn create_container(&self, container: &str) -> Result<()>;
    async fn delete_container(&self, container: &str) -> Result<()>;
    /// Write (create or overwrite) a blob.
    async fn put(&self, container: &str, name: &str, data: Vec<u8>) -> Result<()>;
    /// Write only if the blob does not exist; Conflict if it does.
    async fn put_if_absent(&self, container: &str, name: &str, data: Vec<u8>) -> Result<()>;
    /// Overwrite only if the blob's ETag is still `etag` (as `get` gave it); Conflict if not.
    async fn put_if_match(
        &self,
        container: &str,
        name: &str,
        data: Vec<u8>,
        etag: &str,
    ) -> Result<()>;
    /// The blob's bytes and ETag; None if it does not exist.
    async fn get(&self, container: &str, name: &str) -> Result<Option<(Vec<u8>, String)>>;
    async fn delete(&self, container: &str, name: &str) -> Result<()>;
    /// Names and ETags of the blobs whose names start with `prefix`.
    async fn list(&self, container: &str, prefix: &str) -> Result<Vec<(String, String)>>;
    /// The blobs whose names start with `prefix`, with their properties (and
    /// metadata when `metadata`), in name order: one call per 5,000 blobs.
    /// NotFound if the container does not exist.
    async fn list_items(
        &self,
        container: &str,
        prefix: &str,
        metadata: bool,
    ) -> Result<Vec<BlobItem>>;
    /// A blob's properties and metadata (one HEAD call); None if it does not exist.
    async fn properties(&self, container: &str, name: &str) -> Result<Option<BlobItem>>;
    /// Write a blob with options: content type, metadata, only if absent
    /// (Conflict if it exists), under a lease we hold.
    async fn put_with(
        &self,
        container: &str,
        name: &str,
        data: Vec<u8>,
        options: &PutOptions,
    ) -> Result<()>;
    /// Take a lease of `duration` (15–60 s) on an existing blob; None if another holder has it.
    async fn acquire_lease(
        &self,
        container: &str,
        name: &str,
        duration: Duration,
    ) -> Result<Option<String>>;
    /// Renew our lease; false if it was lost (expired and taken, or broken).
    async fn renew_lease(&self, container: &str, name: &str, lease_id: &str) -> Result<bool>;
    async fn release_lease(&self, container: &str, name: &str, lease_id: &str) -> Result<()>;
}

/// A listed blob and its properties.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobItem {
    pub name: String,
    /// Bare (no quotes), as [`Blobs::get`] gives it.
    pub etag: String,
    pub length: u64,
    pub content_type: String,
    pub last_modified: SystemTime,
    /// Empty unless asked for (listings) or read ([`Blobs::properties`]).
    /// Keys in lower case: Azure's are case-insensitive, and Azurite lower-cases them.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// How [`Blobs::put_with`] writes.
#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    pub content_type: Option<String>,
    pub metadata: Vec<(String, String)>,
    /// Fail with Conflict if the blob exists.
    pub if_absent: bool,
    /// The lease we hold on the blob (a leased blob refuses other writes).
    pub lease_id: Option<String>,
}

/// Storage calls made so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallCounts {
    pub queue: u64,
    pub table: u64,
    pub blob: u64,
}

impl CallCounts {
    pub fn total(&self) -> u64 {
        self.queue + self.table + self.blob
    }
}

/// A storage account: its queues, tables and blobs.
#[derive(Clone)]
pub struct Storage {
    pub queues: Arc<dyn Queues>,
    pub tables: Arc<dyn Tables>,
    pub blobs: Arc<dyn Blobs>,
    counts: Arc<dyn Fn() -> CallCounts + Send + Sync>,
}

impl Storage {
    pub fn new(
        queues: Arc<dyn Queues>,
        tables: Arc<dyn Tables>,
        blobs: Arc<dyn Blobs>,
        counts: Arc<dyn Fn() -> CallCounts + Send + Sync>,
    ) -> Storage {
        Storage {
            queues,
            tables,
            blobs,
            counts,
        }
    }

    /// Storage transactions made so far (each HTTP request to the service is one).
    pub fn calls(&self) -> CallCounts {
        (self.counts)()
    }
}
