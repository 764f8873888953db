//! The `bindings` import: output bindings to Azure Storage queues and blobs.
//! The triggers module implements [`OutputBindings`] (it owns the storage
//! connections); orchestrators never get it (their I/O goes through activities).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::HostState;
use super::bindings::fnhost::function::bindings::Host;

/// Queue and blob operations for functions. `connection` is the app setting
/// holding the connection string (empty: `AzureWebJobsStorage`). Errors are
/// messages for the function: they name the queue, blob or setting.
#[async_trait]
pub trait OutputBindings: Send + Sync {
    async fn queue_send(
        &self,
        connection: &str,
        queue: &str,
        body: Vec<u8>,
        delay: Duration,
    ) -> Result<(), String>;
    async fn blob_write(
        &self,
        connection: &str,
        path: &str,
        content: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<(), String>;
    async fn blob_read(&self, connection: &str, path: &str) -> Result<Option<Vec<u8>>, String>;
    async fn blob_list(
        &self,
        connection: &str,
        container: &str,
        prefix: &str,
    ) -> Result<Vec<String>, String>;
    async fn blob_delete(&self, connection: &str, path: &str) -> Result<bool, String>;
}

pub type SharedBindings = Arc<dyn OutputBindings>;

const ORCHESTRATOR: &str = "output bindings are not available to orchestrators (replay would repeat \
                            the I/O): do it in an activity";
const NOT_CONFIGURED: &str = "output bindings are not available: the host has no storage \
                              connection (set AzureWebJobsStorage in [Values] of local.settings.toml)";

impl HostState {
    fn outputs(&self) -> Result<SharedBindings, String> {
        if self.clock.is_some() {
            return Err(ORCHESTRATOR.into());
        }
        self.outputs.clone().ok_or_else(|| NOT_CONFIGURED.into())
    }
}

impl Host for HostState {
    async fn queue_send(
        &mut self,
        connection: String,
        queue: String,
        body: Vec<u8>,
        visibility_delay_ms: Option<u32>,
    ) -> Result<(), String> {
        let delay = Duration::from_millis(visibility_delay_ms.unwrap_or(0).into());
        self.outputs()?
            .queue_send(&connection, &queue, body, delay)
            .await
    }

    async fn blob_write(
        &mut self,
        connection: String,
        path: String,
        content: Vec<u8>,
        content_type: Option<String>,
    ) -> Result<(), String> {
        self.outputs()?
            .blob_write(&connection, &path, content, content_type)
            .await
    }

    async fn blob_read(
        &mut self,
        connection: String,
        path: String,
    ) -> Result<Option<Vec<u8>>, String> {
        self.outputs()?.blob_read(&connection, &path).await
    }

    async fn blob_list(
        &mut self,
        connection: String,
        container: String,
        prefix: String,
    ) -> Result<Vec<String>, String> {
        self.outputs()?
            .blob_list(&connection, &container, &prefix)
            .await
    }

    async fn blob_delete(&mut self, connection: String, path: String) -> Result<bool, String> {
        self.outputs()?.blob_delete(&connection, &path).await
    }
}
