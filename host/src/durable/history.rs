//! The History table: one partition per instance, one row per record, and a
//! `sentinel` row whose ETag guards every checkpoint (a second writer gets a
//! Conflict and its episode is dropped).
//!
//! Rows are keyed by a 16-hex-digit sequence number. The sentinel names the
//! current execution and the range `[FirstSequence, NextSequence)` of its rows:
//! rows beyond `NextSequence` written by a checkpoint that never committed its
//! sentinel are invisible, and continue-as-new starts a new range.

use crate::storage::{Entity, StorageError, TableOp};

use super::hub::Hub;
use super::model::{StoredRecord, iso};

const SENTINEL: &str = "sentinel";
/// Azure's entity group transactions take at most 100 operations.
const BATCH: usize = 100;

/// The loaded history of an instance's current execution, and the records
/// added in memory since the last checkpoint (the last `unwritten` ones).
#[derive(Debug, Clone, Default)]
pub struct History {
    pub execution_id: String,
    pub records: Vec<StoredRecord>,
    /// The sentinel's ETag; None before the first checkpoint.
    pub etag: Option<String>,
    pub first_seq: u64,
    /// The sequence number of the first record not written yet.
    pub next_seq: u64,
    /// Records at the end of `records` not written yet.
    pub unwritten: usize,
    /// `execution_id` begins a new range that the sentinel does not name yet.
    pub new_range: bool,
}

impl History {
    /// Begin a new execution (start, restart, continue-as-new): its records
    /// follow the previous execution's rows, which stay behind.
    pub fn begin_execution(&mut self, execution_id: String) {
        self.execution_id = execution_id;
        self.first_seq = self.next_seq;
        self.records.clear();
        self.unwritten = 0;
        self.new_range = true;
    }

    /// Whether the execution ended (completed, failed, terminated or continued as new).
    pub fn is_finished(&self) -> bool {
        use super::model::Record;
        matches!(
            self.records.last().map(|r| &r.record),
            Some(
                Record::ExecutionCompleted { .. }
                    | Record::ExecutionTerminated { .. }
                    | Record::ContinuedAsNew { .. }
            )
        )
    }

    /// Add records in memory; [`commit`] writes them.
    pub fn push(&mut self, records: Vec<StoredRecord>) {
        self.unwritten += records.len();
        self.records.extend(records);
    }
}

fn row_key(seq: u64) -> String {
    format!("{seq:016X}")
}

/// Load the current execution's history; None if the instance has none.
pub async fn load(hub: &Hub, instance_id: &str) -> Result<Option<History>, StorageError> {
    let rows = hub
        .storage
        .tables
        .query_partition(&hub.history_table(), instance_id)
        .await?;
    let Some(sentinel) = rows.iter().find(|r| r.row_key == SENTINEL) else {
        return Ok(None);
    };
    let number = |name: &str| {
        sentinel
            .str(name)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let (first_seq, next_seq) = (number("FirstSequence"), number("NextSequence"));
    let mut records = Vec::new();
    for row in &rows {
        let Ok(seq) = u64::from_str_radix(&row.row_key, 16) else {
            continue;
        };
        if seq < first_seq || seq >= next_seq {
            continue;
        }
        let data = hub.payload(row, "Data").await?.ok_or_else(|| {
            StorageError::Other(format!(
                "history row {instance_id}/{} has no Data",
                row.row_key
            ))
        })?;
        let record: StoredRecord = serde_json::from_str(&data).map_err(|e| {
            StorageError::Other(format!(
                "history row {instance_id}/{} is unreadable: {e}",
                row.row_key
            ))
        })?;
        records.push(record);
    }
    Ok(Some(History {
        execution_id: sentinel.str("ExecutionId").unwrap_or_default().to_string(),
        records,
        etag: sentinel.etag.clone(),
        first_seq,
        next_seq,
        unwritten: 0,
        new_range: false,
    }))
}

/// Whether the instance has history rows of `execution_id` (a current or
/// earlier execution: continue-as-new and restarts leave the rows of the
/// executions before them).
pub async fn has_execution(
    hub: &Hub,
    instance_id: &str,
    execution_id: &str,
) -> Result<bool, StorageError> {
    let quote = |s: &str| s.replace('\'', "''");
    let filter = format!(
        "PartitionKey eq '{}' and ExecutionId eq '{}'",
        quote(instance_id),
        quote(execution_id)
    );
    let page = hub
        .storage
        .tables
        .query(&hub.history_table(), Some(&filter), Some(1), None)
        .await?;
    Ok(!page.entities.is_empty())
}

/// Append `new` to the history, starting a new execution first when
/// `new_execution` is given, and write it. Conflict if another writer
/// checkpointed since `history` was loaded. Returns the updated history.
pub async fn append(
    hub: &Hub,
    instance_id: &str,
    mut history: History,
    new_execution: Option<String>,
    new: Vec<StoredRecord>,
) -> Result<History, StorageError> {
    if let Some(execution) = new_execution {
        history.begin_execution(execution);
    }
    history.push(new);
    commit(hub, instance_id, &mut history).await?;
    Ok(history)
}

/// Write the records not written yet (a checkpoint). Conflict if another
/// writer checkpointed since `history` was loaded; `history` is unchanged then.
pub async fn commit(
    hub: &Hub,
    instance_id: &str,
    history: &mut History,
) -> Result<(), StorageError> {
    if history.unwritten == 0 && !history.new_range && history.etag.is_some() {
        return Ok(());
    }
    let new = &history.records[history.records.len() - history.unwritten..];
    let mut rows = Vec::with_capacity(new.len());
    for (i, record) in new.iter().enumerate() {
        let seq = history.next_seq + i as u64;
        let mut row = Entity::new(instance_id, row_key(seq))
            .with("ExecutionId", history.execution_id.as_str())
            .with("EventType", record.record.event_type())
            .with("EventTimestamp", iso(record.timestamp));
        let data = serde_json::to_string(record).expect("records serialize");
        hub.set_payload(&mut row, "Data", instance_id, Some(&data))
            .await?;
        rows.push(TableOp::Upsert(row));
    }
    let next_seq = history.next_seq + new.len() as u64;
    let table = hub.history_table();
    let sentinel = |next: u64| {
        Entity::new(instance_id, SENTINEL)
            .with("ExecutionId", history.execution_id.as_str())
            .with("FirstSequence", history.first_seq.to_string())
            .with("NextSequence", next.to_string())
    };
    let guard = |entity: Entity, etag: &Option<String>| match etag {
        Some(etag) => TableOp::Replace {
            entity,
            etag: etag.clone(),
        },
        None => TableOp::Insert(entity),
    };

    // Every batch carries the sentinel, guarded by its ETag, so a second writer
    // fails at its first batch and can never overwrite our rows. Only the last
    // batch moves NextSequence: until then the new rows stay invisible.
    let mut etag = history.etag.clone();
    let mut chunks: Vec<Vec<TableOp>> = rows.chunks(BATCH - 1).map(<[TableOp]>::to_vec).collect();
    if chunks.is_empty() {
        chunks.push(Vec::new());
    }
    let last = chunks.len() - 1;
    for (i, mut ops) in chunks.into_iter().enumerate() {
        let next = if i == last {
            next_seq
        } else {
            history.next_seq
        };
        ops.push(guard(sentinel(next), &etag));
        // The sentinel is the batch's last write: its new ETag guards the next batch.
        etag = hub.storage.tables.batch(&table, ops).await?.pop().flatten();
    }
    let etag = etag.ok_or_else(|| {
        StorageError::Other(format!("history sentinel of {instance_id} has no ETag"))
    })?;
    history.etag = Some(etag);
    history.next_seq = next_seq;
    history.unwritten = 0;
    history.new_range = false;
    Ok(())
}

/// Delete every history row of an instance (all executions).
pub async fn purge(hub: &Hub, instance_id: &str) -> Result<usize, StorageError> {
    let table = hub.history_table();
    let rows = hub
        .storage
        .tables
        .query_partition(&table, instance_id)
        .await?;
    let count = rows.len();
    let ops: Vec<TableOp> = rows
        .into_iter()
        .map(|r| TableOp::Delete {
            partition_key: r.partition_key,
            row_key: r.row_key,
            etag: None,
        })
        .collect();
    for chunk in ops.chunks(BATCH) {
        hub.storage.tables.batch(&table, chunk.to_vec()).await?;
    }
    Ok(count)
}
