//! Storage connections shared by the queue, blob and timer triggers, and the
//! output bindings (the `bindings` import) that functions call through them.
//!
//! A connection is named by an app setting (function.toml `connection`,
//! default `AzureWebJobsStorage`) holding a connection string, read from
//! local.settings.toml `[Values]` or the environment, as Azure does.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use tokio::sync::Notify;

use crate::config::function_toml::{check_container_name, check_queue_name};
use crate::runtime::OutputBindings;
use crate::storage::{Storage, StorageError};

/// This host's connections, for `/admin/metrics` (set once at start-up).
pub static CONNECTIONS: std::sync::OnceLock<Arc<Connections>> = std::sync::OnceLock::new();

/// The connection used when none is named.
pub const DEFAULT_CONNECTION: &str = "AzureWebJobsStorage";

/// How queue message text relates to its body (`[extensions.queues] messageEncoding`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Azure's default: the text is the body in base64.
    Base64,
    /// The text is the body (UTF-8).
    None,
}

impl Encoding {
    /// `"base64"` or `"none"` (case-insensitive), as host.json takes them.
    pub fn parse(value: &str) -> anyhow::Result<Encoding> {
        match value.to_ascii_lowercase().as_str() {
            "base64" => Ok(Encoding::Base64),
            "none" => Ok(Encoding::None),
            other => anyhow::bail!(
                "host.toml: [extensions.queues] messageEncoding = \"{other}\" is not supported: use \
                 \"base64\" (Azure's default) or \"none\""
            ),
        }
    }

    /// The queue text for `body`. Under `none` a body that is not UTF-8 is an error
    /// (a queue message is text).
    pub fn encode(self, body: Vec<u8>) -> Result<String, String> {
        match self {
            Encoding::Base64 => Ok(base64::engine::general_purpose::STANDARD.encode(body)),
            Encoding::None => String::from_utf8(body).map_err(|_| {
                "the message is not UTF-8 text, which messageEncoding = \"none\" needs: \
                 send text, or use messageEncoding = \"base64\""
                    .to_string()
            }),
        }
    }

    /// The body of queue `text`; an error says why it cannot be decoded.
    pub fn decode(self, text: &str) -> Result<Vec<u8>, String> {
        match self {
            Encoding::Base64 => base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map_err(|e| format!("it is not valid base64 ({e})")),
            Encoding::None => Ok(text.as_bytes().to_vec()),
        }
    }
}

/// (connection string, queue name).
type WakerKey = (String, String);

/// The storage accounts the app's functions name, opened once each, and the
/// wake-up calls of this host's queue listeners.
pub struct Connections {
    settings: crate::config::AppSettings,
    open: Mutex<HashMap<String, Storage>>,
    /// Listeners by (connection string, queue): a send from this host wakes them at once.
    wakers: Mutex<HashMap<WakerKey, Vec<Arc<Notify>>>>,
    encoding: Encoding,
}

impl Connections {
    pub fn new(settings: crate::config::AppSettings, encoding: Encoding) -> Arc<Connections> {
        Arc::new(Connections {
            settings,
            open: Mutex::default(),
            wakers: Mutex::default(),
            encoding,
        })
    }

    /// Storage calls made so far through these connections (triggers and
    /// output bindings; the durable engine counts its own).
    pub fn calls(&self) -> crate::storage::CallCounts {
        let open = self.open.lock().expect("connections lock");
        open.values()
            .map(Storage::calls)
            .fold(Default::default(), |a, c| crate::storage::CallCounts {
                queue: a.queue + c.queue,
                table: a.table + c.table,
                blob: a.blob + c.blob,
            })
    }

    /// The queue message encoding of this host.
    pub fn encoding(&self) -> Encoding {
        self.encoding
    }

    fn connection_string(&self, name: &str) -> Result<String, String> {
        let name = if name.is_empty() {
            DEFAULT_CONNECTION
        } else {
            name
        };
        self.settings
            .get(name)
            .map(str::to_string)
            .or_else(|| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| {
                format!(
                    "connection '{name}': the app setting {name} is not set; add it to [Values] of \
                     local.settings.toml (UseDevelopmentStorage=true for Azurite) or the environment"
                )
            })
    }

    /// The storage account of the app setting `name` ("" = AzureWebJobsStorage).
    pub fn get(&self, name: &str) -> Result<Storage, String> {
        let value = self.connection_string(name)?;
        let mut open = self.open.lock().expect("connections lock");
        if let Some(storage) = open.get(&value) {
            return Ok(storage.clone());
        }
        let storage = crate::storage::azure::connect(&value)
            .map_err(|e| format!("connection '{name}': {e}"))?;
        open.insert(value, storage.clone());
        Ok(storage)
    }

    /// A wake-up call for the listener of `queue` on connection `name`
    /// (`/{container}` for the blob triggers of a container).
    pub fn waker(&self, name: &str, queue: &str) -> Arc<Notify> {
        let key = (
            self.connection_string(name).unwrap_or_default(),
            queue.to_string(),
        );
        let notify = Arc::new(Notify::new());
        self.wakers
            .lock()
            .expect("wakers lock")
            .entry(key)
            .or_default()
            .push(notify.clone());
        notify
    }

    /// Forget a listener's wake-up call (it stopped).
    pub fn drop_waker(&self, notify: &Arc<Notify>) {
        let mut wakers = self.wakers.lock().expect("wakers lock");
        for list in wakers.values_mut() {
            list.retain(|n| !Arc::ptr_eq(n, notify));
        }
        wakers.retain(|_, list| !list.is_empty());
    }

    /// Wake this host's listeners of `queue` on connection `name`.
    pub fn wake(&self, name: &str, queue: &str) {
        let Ok(value) = self.connection_string(name) else {
            return;
        };
        if let Some(list) = self
            .wakers
            .lock()
            .expect("wakers lock")
            .get(&(value, queue.to_string()))
        {
            for n in list {
                n.notify_one();
            }
        }
    }
}

/// `container/name` split in two, both checked.
fn split_path(path: &str) -> Result<(&str, &str), String> {
    let (container, name) = path
        .split_once('/')
        .ok_or_else(|| format!("blob path '{path}' must be 'container/name'"))?;
    if name.is_empty() {
        return Err(format!(
            "blob path '{path}' has no blob name after the container"
        ));
    }
    check_container_name(container)
        .map_err(|why| format!("blob path '{path}': container '{container}' {why}"))?;
    Ok((container, name))
}

fn message(e: StorageError) -> String {
    e.to_string()
}

#[async_trait]
impl OutputBindings for Connections {
    async fn queue_send(
        &self,
        connection: &str,
        queue: &str,
        body: Vec<u8>,
        delay: Duration,
    ) -> Result<(), String> {
        check_queue_name(queue).map_err(|why| format!("queue name '{queue}' {why}"))?;
        let storage = self.get(connection)?;
        let text = self.encoding.encode(body)?;
        match storage.queues.send(queue, &text, delay).await {
            Err(StorageError::NotFound(_)) => {
                // Azure's output binding creates the queue on first use.
                storage.queues.create_queue(queue).await.map_err(message)?;
                storage
                    .queues
                    .send(queue, &text, delay)
                    .await
                    .map_err(message)?;
            }
            other => other.map_err(message)?,
        }
        if delay.is_zero() {
            self.wake(connection, queue);
        }
        Ok(())
    }

    async fn blob_write(
        &self,
        connection: &str,
        path: &str,
        content: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<(), String> {
        let (container, name) = split_path(path)?;
        let storage = self.get(connection)?;
        let content_type = content_type.unwrap_or_else(|| "application/octet-stream".into());
        let options = crate::storage::PutOptions {
            content_type: Some(content_type),
            ..Default::default()
        };
        let write = || {
            storage
                .blobs
                .put_with(container, name, content.clone(), &options)
        };
        match write().await {
            Err(StorageError::NotFound(_)) => {
                storage
                    .blobs
                    .create_container(container)
                    .await
                    .map_err(message)?;
                write().await.map_err(message)?;
            }
            other => other.map_err(message)?,
        }
        // This host's blob triggers on the container look at once.
        self.wake(connection, &format!("/{container}"));
        Ok(())
    }

    async fn blob_read(&self, connection: &str, path: &str) -> Result<Option<Vec<u8>>, String> {
        let (container, name) = split_path(path)?;
        let storage = self.get(connection)?;
        match storage.blobs.get(container, name).await {
            Ok(found) => Ok(found.map(|(data, _)| data)),
            Err(StorageError::NotFound(_)) => Ok(None), // no container: no blob
            Err(e) => Err(message(e)),
        }
    }

    async fn blob_list(
        &self,
        connection: &str,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<String>, String> {
        check_container_name(container).map_err(|why| format!("container '{container}' {why}"))?;
        let storage = self.get(connection)?;
        match storage.blobs.list(container, prefix).await {
            Ok(list) => Ok(list.into_iter().map(|(name, _)| name).collect()),
            Err(StorageError::NotFound(_)) => Ok(Vec::new()),
            Err(e) => Err(message(e)),
        }
    }

    async fn blob_delete(&self, connection: &str, path: &str) -> Result<bool, String> {
        let (container, name) = split_path(path)?;
        let storage = self.get(connection)?;
        match storage.blobs.delete(container, name).await {
            Ok(()) => Ok(true),
            Err(StorageError::NotFound(_)) => Ok(false),
            Err(e) => Err(message(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips_and_reports_bad_text() {
        let e = Encoding::Base64;
        assert_eq!(e.encode(b"hello".to_vec()).unwrap(), "aGVsbG8=");
        assert_eq!(e.decode("aGVsbG8=").unwrap(), b"hello");
        let why = e.decode("not base64!").unwrap_err();
        assert!(why.starts_with("it is not valid base64"), "{why}");
        assert_eq!(Encoding::None.decode("as is").unwrap(), b"as is");
        assert!(Encoding::None.encode(vec![0xff]).is_err());
        assert!(Encoding::parse("Base64").is_ok());
        assert!(Encoding::parse("utf8").is_err());
    }

    #[test]
    fn blob_paths_split_and_check() {
        assert_eq!(split_path("out/a/b.txt").unwrap(), ("out", "a/b.txt"));
        assert!(split_path("nocontainer").is_err());
        assert!(split_path("Bad/x").is_err());
        assert!(split_path("out/").is_err());
    }
}
