//! The task hub's storage layout (DTFx's Azure Storage provider): names,
//! creation, queue messages, and payloads too large for a row or a message.

use std::io::{Read, Write};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::storage::{Entity, Storage, StorageError};

use super::model::{ControlMessage, ControlPayload, WorkItem, WorkPayload};

/// Queue messages over 45 KB go to a blob (the queue limit is 64 KB, and
/// base64 or escaping grows text).
const MAX_MESSAGE: usize = 45 * 1024;
/// Table string properties over this go to a blob (Azure allows 32K UTF-16 units).
const MAX_COLUMN: usize = 30_000;
/// Queue messages may be delayed at most 7 days: longer timers (and scheduled
/// signals) travel in steps of 6 days and are re-armed at each step. The
/// environment variable `FNHOST_TEST_MAX_DELAY_MS` shortens the step: a test
/// seam, so the re-arm path runs in seconds instead of weeks.
pub fn max_delay() -> Duration {
    static STEP: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *STEP.get_or_init(|| {
        std::env::var("FNHOST_TEST_MAX_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(Duration::from_secs(6 * 24 * 3600), Duration::from_millis)
    })
}

/// A task hub on a storage account.
#[derive(Clone)]
pub struct Hub {
    /// As configured (tables use it as is: `{Hub}History`).
    pub name: String,
    /// Lower case, for queues and containers.
    lower: String,
    pub partitions: u32,
    pub storage: Storage,
}

impl Hub {
    pub fn new(name: &str, partitions: u32, storage: Storage) -> Hub {
        Hub {
            name: name.to_string(),
            lower: name.to_ascii_lowercase(),
            partitions,
            storage,
        }
    }

    pub fn control_queue(&self, partition: u32) -> String {
        format!("{}-control-{partition:02}", self.lower)
    }

    pub fn workitems_queue(&self) -> String {
        format!("{}-workitems", self.lower)
    }

    pub fn history_table(&self) -> String {
        format!("{}History", self.name)
    }

    pub fn instances_table(&self) -> String {
        format!("{}Instances", self.name)
    }

    /// Partition ownership and the doorbell (DTFx's table partition manager
    /// keeps its leases in a `{Hub}Partitions` table too).
    pub fn partitions_table(&self) -> String {
        format!("{}Partitions", self.name)
    }

    pub fn leases_container(&self) -> String {
        format!("{}-leases", self.lower)
    }

    pub fn large_messages_container(&self) -> String {
        format!("{}-largemessages", self.lower)
    }

    /// The control queue partition of an instance: FNV-1a of its id, as DTFx does.
    pub fn partition_of(&self, instance_id: &str) -> u32 {
        fnv1a(instance_id.as_bytes()) % self.partitions
    }

    /// Create the queues, tables and containers, and `taskhub.json`.
    pub async fn create(&self) -> Result<(), StorageError> {
        let s = &self.storage;
        for p in 0..self.partitions {
            s.queues.create_queue(&self.control_queue(p)).await?;
        }
        s.queues.create_queue(&self.workitems_queue()).await?;
        s.tables.create_table(&self.history_table()).await?;
        s.tables.create_table(&self.instances_table()).await?;
        s.tables.create_table(&self.partitions_table()).await?;
        s.blobs.create_container(&self.leases_container()).await?;
        s.blobs
            .create_container(&self.large_messages_container())
            .await?;
        let info = serde_json::json!({
            "TaskHubName": self.name,
            "CreatedAt": super::model::iso(super::model::now_ms()),
            "PartitionCount": self.partitions,
        });
        match s
            .blobs
            .put_if_absent(
                &self.leases_container(),
                "taskhub.json",
                info.to_string().into_bytes(),
            )
            .await
        {
            Ok(()) | Err(StorageError::Conflict(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Send one control message to the instance's partition, visible after
    /// `delay` (timers). Messages without a delay go through the engine's
    /// outbox, which packs them.
    pub async fn send_control(
        &self,
        message: &ControlMessage,
        delay: Duration,
    ) -> Result<u32, StorageError> {
        let partition = self.partition_of(&message.instance_id);
        let text = self.encode(message, &message.instance_id).await?;
        self.storage
            .queues
            .send(
                &self.control_queue(partition),
                &text,
                delay.min(max_delay()),
            )
            .await?;
        Ok(partition)
    }

    /// Queue texts for `messages`, all bound for one control queue: packed
    /// into as few queue messages as the size limit allows (a message too
    /// large on its own goes to a blob).
    pub async fn pack_control(
        &self,
        messages: Vec<ControlMessage>,
    ) -> Result<Vec<String>, StorageError> {
        let mut texts = Vec::new();
        let mut group: Vec<ControlMessage> = Vec::new();
        let mut size = 0;
        for m in messages {
            let len = serde_json::to_string(&m).expect("messages serialize").len();
            if len > MAX_MESSAGE {
                let id = m.instance_id.clone();
                texts.push(self.encode(&m, &id).await?);
                continue;
            }
            if size + len + 16 > MAX_MESSAGE && !group.is_empty() {
                texts.push(packed_control(std::mem::take(&mut group)));
                size = 0;
            }
            size += len + 1;
            group.push(m);
        }
        if !group.is_empty() {
            texts.push(packed_control(group));
        }
        Ok(texts)
    }

    /// Queue texts for work items: at most `per_message` in each, within the size limit.
    pub async fn pack_work(
        &self,
        items: Vec<WorkItem>,
        per_message: usize,
    ) -> Result<Vec<String>, StorageError> {
        let mut texts = Vec::new();
        let mut group: Vec<WorkItem> = Vec::new();
        let mut size = 0;
        for item in items {
            let len = serde_json::to_string(&item)
                .expect("work items serialize")
                .len();
            if len > MAX_MESSAGE {
                let id = item.instance_id.clone();
                texts.push(self.encode(&item, &id).await?);
                continue;
            }
            if (size + len + 16 > MAX_MESSAGE || group.len() >= per_message) && !group.is_empty() {
                texts.push(packed_work(std::mem::take(&mut group)));
                size = 0;
            }
            size += len + 1;
            group.push(item);
        }
        if !group.is_empty() {
            texts.push(packed_work(group));
        }
        Ok(texts)
    }

    /// The messages of a control-queue message (one, or several packed).
    pub async fn decode_control(&self, text: &str) -> Result<Vec<ControlMessage>, String> {
        Ok(self.decode::<ControlPayload>(text).await?.into_messages())
    }

    /// The work items of a `{hub}-workitems` message.
    pub async fn decode_work(&self, text: &str) -> Result<Vec<WorkItem>, String> {
        Ok(self.decode::<WorkPayload>(text).await?.into_items())
    }

    async fn encode<T: Serialize>(
        &self,
        value: &T,
        instance_id: &str,
    ) -> Result<String, StorageError> {
        let json = serde_json::to_string(value).expect("messages serialize");
        if json.len() <= MAX_MESSAGE {
            return Ok(json);
        }
        let blob = self.put_large(instance_id, &json).await?;
        Ok(serde_json::json!({ "largeMessageBlob": blob }).to_string())
    }

    /// A message's value, fetching it from its blob when it was too large.
    pub async fn decode<T: DeserializeOwned>(&self, text: &str) -> Result<T, String> {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let value = match value.get("largeMessageBlob").and_then(|b| b.as_str()) {
            Some(blob) => {
                let json = self.get_large(blob).await.map_err(|e| e.to_string())?;
                serde_json::from_str(&json)
                    .map_err(|e| format!("large message {blob} is not JSON: {e}"))?
            }
            None => value,
        };
        serde_json::from_value(value).map_err(|e| format!("not a task hub message: {e}"))
    }

    /// Put `value` in `column` of `entity`, or in a blob named by `{column}Blob`
    /// when it is too large for a table property.
    pub async fn set_payload(
        &self,
        entity: &mut Entity,
        column: &str,
        instance_id: &str,
        value: Option<&str>,
    ) -> Result<(), StorageError> {
        let blob_column = format!("{column}Blob");
        match value {
            Some(v) if v.len() > MAX_COLUMN => {
                let blob = self.put_large(instance_id, v).await?;
                entity
                    .properties
                    .insert(column.to_string(), serde_json::Value::String(String::new()));
                entity.properties.insert(blob_column, blob.into());
            }
            Some(v) => {
                entity.properties.insert(column.to_string(), v.into());
                entity
                    .properties
                    .insert(blob_column, serde_json::Value::String(String::new()));
            }
            None => {
                entity
                    .properties
                    .insert(column.to_string(), serde_json::Value::String(String::new()));
                entity
                    .properties
                    .insert(blob_column, serde_json::Value::String(String::new()));
            }
        }
        Ok(())
    }

    /// The value `set_payload` stored; None for an empty column.
    pub async fn payload(
        &self,
        entity: &Entity,
        column: &str,
    ) -> Result<Option<String>, StorageError> {
        match entity.str(&format!("{column}Blob")) {
            Some(blob) if !blob.is_empty() => Ok(Some(self.get_large(blob).await?)),
            _ => Ok(entity
                .str(column)
                .filter(|s| !s.is_empty())
                .map(str::to_string)),
        }
    }

    async fn put_large(&self, instance_id: &str, text: &str) -> Result<String, StorageError> {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(text.as_bytes()).expect("writing to memory");
        let bytes = gz.finish().expect("writing to memory");
        let name = format!(
            "{}/{}.json.gz",
            sanitize(instance_id),
            uuid::Uuid::new_v4().simple()
        );
        self.storage
            .blobs
            .put(&self.large_messages_container(), &name, bytes)
            .await?;
        Ok(name)
    }

    async fn get_large(&self, blob: &str) -> Result<String, StorageError> {
        let (bytes, _) = self
            .storage
            .blobs
            .get(&self.large_messages_container(), blob)
            .await?
            .ok_or_else(|| StorageError::NotFound(format!("large message blob {blob}")))?;
        let mut text = String::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_string(&mut text)
            .map_err(|e| {
                StorageError::Other(format!(
                    "large message blob {blob} is not gzipped text: {e}"
                ))
            })?;
        Ok(text)
    }

    /// Delete the large-message blobs of an instance written before `until`
    /// (a record deleted then; a newer life's blobs stay).
    pub async fn delete_large_until(
        &self,
        instance_id: &str,
        until: std::time::SystemTime,
    ) -> Result<(), StorageError> {
        let container = self.large_messages_container();
        let prefix = format!("{}/", sanitize(instance_id));
        let items = match self
            .storage
            .blobs
            .list_items(&container, &prefix, false)
            .await
        {
            Ok(items) => items,
            Err(StorageError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        for item in items.into_iter().filter(|i| i.last_modified < until) {
            match self.storage.blobs.delete(&container, &item.name).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Delete every large-message blob of an instance (purge).
    pub async fn delete_large(&self, instance_id: &str) -> Result<(), StorageError> {
        let container = self.large_messages_container();
        for (name, _) in self
            .storage
            .blobs
            .list(&container, &format!("{}/", sanitize(instance_id)))
            .await?
        {
            match self.storage.blobs.delete(&container, &name).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn packed_control(mut messages: Vec<ControlMessage>) -> String {
    if messages.len() == 1 {
        return serde_json::to_string(&messages.pop()).expect("messages serialize");
    }
    serde_json::to_string(&ControlPayload::Packed { messages }).expect("messages serialize")
}

fn packed_work(mut items: Vec<WorkItem>) -> String {
    if items.len() == 1 {
        return serde_json::to_string(&items.pop()).expect("work items serialize");
    }
    serde_json::to_string(&WorkPayload::Packed { items }).expect("work items serialize")
}

/// Blob-name-safe form of an instance id: hex, so that two ids never share a
/// prefix (`order:1` and `order_1` would otherwise purge each other's payloads).
fn sanitize(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

/// 32-bit FNV-1a.
pub fn fnv1a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_reference_values() {
        assert_eq!(fnv1a(b""), 0x811c_9dc5);
        assert_eq!(fnv1a(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a(b"foobar"), 0xbf9c_f968);
    }
}
