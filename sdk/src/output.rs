//! Output bindings: send queue messages and write, read, list and delete
//! blobs in Azure Storage, from any function but an orchestrator.
//!
//! `connection` names the app setting with the connection string, as in
//! function.toml; the plain functions use `AzureWebJobsStorage`.
//!
//! ```ignore
//! fnhost_sdk::queue::send("outqueue", "hello")?;
//! fnhost_sdk::blob::write("out/result.json", br#"{"ok":true}"#)?;
//! let text = fnhost_sdk::blob::read("out/result.json")?; // Some(bytes)
//! ```

/// Azure Storage queues.
pub mod queue {
    use std::time::Duration;

    use crate::bindings::fnhost::function::bindings as wit;

    /// Add a message to `queue` (created if missing), base64-encoded as Azure's
    /// queue trigger expects by default.
    pub fn send(queue: &str, body: impl AsRef<[u8]>) -> Result<(), String> {
        Queue::new(queue).send(body)
    }

    /// A queue on a named connection, with an optional initial visibility delay.
    #[derive(Debug, Clone)]
    pub struct Queue {
        name: String,
        connection: String,
        delay: Option<Duration>,
    }

    impl Queue {
        pub fn new(name: &str) -> Queue {
            Queue {
                name: name.into(),
                connection: String::new(),
                delay: None,
            }
        }

        /// The app setting holding the connection string (default `AzureWebJobsStorage`).
        pub fn connection(mut self, setting: &str) -> Queue {
            self.connection = setting.into();
            self
        }

        /// Messages sent become visible after `delay` (whole seconds, at most 7 days).
        pub fn delay(mut self, delay: Duration) -> Queue {
            self.delay = Some(delay);
            self
        }

        pub fn send(&self, body: impl AsRef<[u8]>) -> Result<(), String> {
            let delay = self
                .delay
                .map(|d| u32::try_from(d.as_millis()).unwrap_or(u32::MAX));
            wit::queue_send(&self.connection, &self.name, body.as_ref(), delay)
        }

        /// Send `value` as JSON.
        pub fn send_json(&self, value: &impl serde::Serialize) -> Result<(), String> {
            let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
            self.send(body)
        }
    }
}

/// Azure Storage blobs, named `container/name`.
pub mod blob {
    use crate::bindings::fnhost::function::bindings as wit;

    /// Write (create or overwrite) `path` = `container/name`; the container is created if missing.
    pub fn write(path: &str, content: impl AsRef<[u8]>) -> Result<(), String> {
        wit::blob_write("", path, content.as_ref(), None)
    }

    /// The content of `path`; `None` if it does not exist.
    pub fn read(path: &str) -> Result<Option<Vec<u8>>, String> {
        wit::blob_read("", path)
    }

    /// Names of the blobs of `container` starting with `prefix`.
    pub fn list(container: &str, prefix: &str) -> Result<Vec<String>, String> {
        wit::blob_list("", container, prefix)
    }

    /// Delete `path`; whether it existed.
    pub fn delete(path: &str) -> Result<bool, String> {
        wit::blob_delete("", path)
    }

    /// The same operations on the account of another connection setting.
    #[derive(Debug, Clone)]
    pub struct Connection(pub String);

    impl Connection {
        pub fn write(
            &self,
            path: &str,
            content: impl AsRef<[u8]>,
            content_type: Option<&str>,
        ) -> Result<(), String> {
            wit::blob_write(&self.0, path, content.as_ref(), content_type)
        }

        pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>, String> {
            wit::blob_read(&self.0, path)
        }

        pub fn list(&self, container: &str, prefix: &str) -> Result<Vec<String>, String> {
            wit::blob_list(&self.0, container, prefix)
        }

        pub fn delete(&self, path: &str) -> Result<bool, String> {
            wit::blob_delete(&self.0, path)
        }
    }
}
