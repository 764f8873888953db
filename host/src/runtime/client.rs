//! The `durable-client` import: what functions call to start and manage
//! orchestrations. The durable engine implements [`DurableClient`]; without
//! one (no storage configured) every call is a clear error.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::HostState;
use super::bindings::fnhost::function::durable_client::Host;
use super::bindings::fnhost::function::durable_types::EntityId;
use super::bindings::fnhost::function::types::HttpResponse;

/// Durable Functions' client operations, as the engine provides them. Errors
/// are messages for the function (and its HTTP caller).
#[async_trait]
pub trait DurableClient: Send + Sync {
    async fn start_new(
        &self,
        orchestrator: &str,
        instance_id: Option<String>,
        input: Option<String>,
    ) -> Result<String, String>;
    /// The status document (JSON with Durable Functions' field names); None if unknown.
    async fn get_status(
        &self,
        instance_id: &str,
        show_history: bool,
        show_input: bool,
    ) -> Result<Option<String>, String>;
    async fn raise_event(
        &self,
        instance_id: &str,
        event_name: &str,
        data: Option<String>,
    ) -> Result<(), String>;
    async fn terminate(&self, instance_id: &str, reason: Option<String>) -> Result<(), String>;
    async fn suspend(&self, instance_id: &str, reason: Option<String>) -> Result<(), String>;
    async fn resume(&self, instance_id: &str, reason: Option<String>) -> Result<(), String>;
    async fn purge(&self, instance_id: &str) -> Result<bool, String>;
    /// Send `operation` to the entity `@name@key`, one-way; done once stored.
    async fn signal_entity(
        &self,
        name: &str,
        key: &str,
        operation: &str,
        input: Option<String>,
        scheduled_ms: Option<u64>,
    ) -> Result<(), String>;
    /// The entity's state (JSON); None if it has none.
    async fn read_entity_state(&self, name: &str, key: &str) -> Result<Option<String>, String>;
    /// 202 + Location + the management URLs, based on the scheme and host of `request_url`.
    fn check_status_response(&self, request_url: &str, instance_id: &str) -> HttpResponse;
    /// 200 with the output when the instance finishes within `timeout`, else the 202.
    async fn wait_or_check_status(
        &self,
        request_url: &str,
        instance_id: &str,
        timeout: Duration,
    ) -> HttpResponse;
}

pub type SharedClient = Arc<dyn DurableClient>;

const NOT_CONFIGURED: &str = "durable functions are not available: set AzureWebJobsStorage in [Values] of \
                              local.settings.toml (UseDevelopmentStorage=true for Azurite)";

fn not_configured_response() -> HttpResponse {
    HttpResponse {
        status: 500,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::json!({ "error": NOT_CONFIGURED })
            .to_string()
            .into_bytes(),
    }
}

impl HostState {
    fn client(&self) -> Result<SharedClient, String> {
        self.durable
            .clone()
            .ok_or_else(|| NOT_CONFIGURED.to_string())
    }
}

impl Host for HostState {
    async fn start_new(
        &mut self,
        orchestrator: String,
        instance_id: Option<String>,
        input: Option<String>,
    ) -> Result<String, String> {
        self.client()?
            .start_new(&orchestrator, instance_id, input)
            .await
    }

    async fn get_status(
        &mut self,
        instance_id: String,
        show_history: bool,
        show_input: bool,
    ) -> Result<Option<String>, String> {
        self.client()?
            .get_status(&instance_id, show_history, show_input)
            .await
    }

    async fn raise_event(
        &mut self,
        instance_id: String,
        event_name: String,
        data: Option<String>,
    ) -> Result<(), String> {
        self.client()?
            .raise_event(&instance_id, &event_name, data)
            .await
    }

    async fn terminate(
        &mut self,
        instance_id: String,
        reason: Option<String>,
    ) -> Result<(), String> {
        self.client()?.terminate(&instance_id, reason).await
    }

    async fn suspend(&mut self, instance_id: String, reason: Option<String>) -> Result<(), String> {
        self.client()?.suspend(&instance_id, reason).await
    }

    async fn resume(&mut self, instance_id: String, reason: Option<String>) -> Result<(), String> {
        self.client()?.resume(&instance_id, reason).await
    }

    async fn purge(&mut self, instance_id: String) -> Result<bool, String> {
        self.client()?.purge(&instance_id).await
    }

    async fn signal_entity(
        &mut self,
        entity: EntityId,
        operation: String,
        input: Option<String>,
        scheduled_time: Option<u64>,
    ) -> Result<(), String> {
        self.client()?
            .signal_entity(&entity.name, &entity.key, &operation, input, scheduled_time)
            .await
    }

    async fn read_entity_state(&mut self, entity: EntityId) -> Result<Option<String>, String> {
        self.client()?
            .read_entity_state(&entity.name, &entity.key)
            .await
    }

    async fn create_check_status_response(
        &mut self,
        request_url: String,
        instance_id: String,
    ) -> HttpResponse {
        match self.client() {
            Ok(c) => c.check_status_response(&request_url, &instance_id),
            Err(_) => not_configured_response(),
        }
    }

    async fn wait_for_completion_or_create_check_status_response(
        &mut self,
        request_url: String,
        instance_id: String,
        timeout_ms: u32,
    ) -> HttpResponse {
        match self.client() {
            Ok(c) => {
                c.wait_or_check_status(
                    &request_url,
                    &instance_id,
                    Duration::from_millis(timeout_ms.into()),
                )
                .await
            }
            Err(_) => not_configured_response(),
        }
    }
}
