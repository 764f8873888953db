//! `host.toml`: host.json in TOML, same keys, Azure's defaults.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, timespan};

/// The host settings (host.json's structure and names).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HostConfig {
    /// Schema version; "2.0" as in host.json.
    pub version: String,
    /// How long one invocation may run ("hh:mm:ss"; Azure's default 00:05:00).
    #[serde(deserialize_with = "timespan")]
    pub function_timeout: Duration,
    pub logging: Logging,
    pub extensions: Extensions,
    /// Limits of the WebAssembly sandbox (not in host.json: fnhost's own section).
    pub wasm: WasmSection,
    /// Limits of the HTTP server (not in host.json: fnhost's own section).
    pub server: ServerSection,
    // host.json keys accepted so that a translated file loads, but without effect here.
    extension_bundle: Option<toml::Value>,
    aggregator: Option<toml::Value>,
    health_monitor: Option<toml::Value>,
    managed_dependency: Option<toml::Value>,
    concurrency: Option<toml::Value>,
    singleton: Option<toml::Value>,
    watch_directories: Option<toml::Value>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            version: "2.0".into(),
            function_timeout: Duration::from_secs(5 * 60),
            logging: Logging::default(),
            extensions: Extensions::default(),
            wasm: WasmSection::default(),
            server: ServerSection::default(),
            extension_bundle: None,
            aggregator: None,
            health_monitor: None,
            managed_dependency: None,
            concurrency: None,
            singleton: None,
            watch_directories: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Logging {
    /// `default = "Information"`, `Function = "Debug"`, ... (Trace, Debug,
    /// Information, Warning, Error, Critical, None).
    pub log_level: BTreeMap<String, String>,
    application_insights: Option<toml::Value>,
    file_logging_mode: Option<toml::Value>,
    console: Option<toml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct Extensions {
    pub http: HttpExtension,
    pub queues: QueuesExtension,
    pub blobs: BlobsExtension,
    pub durable_task: DurableTaskExtension,
}

/// `[extensions.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct HttpExtension {
    /// Prefix of every HTTP function route; "" for none.
    pub route_prefix: String,
    /// Headers added to every HTTP response.
    pub custom_headers: BTreeMap<String, String>,
    max_outstanding_requests: Option<i64>,
    max_concurrent_requests: Option<i64>,
    dynamic_throttles_enabled: Option<bool>,
    hsts: Option<toml::Value>,
}

impl Default for HttpExtension {
    fn default() -> Self {
        HttpExtension {
            route_prefix: "api".into(),
            custom_headers: BTreeMap::new(),
            max_outstanding_requests: None,
            max_concurrent_requests: None,
            dynamic_throttles_enabled: None,
            hsts: None,
        }
    }
}

/// `[extensions.queues]` (used by queue triggers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct QueuesExtension {
    pub batch_size: u32,
    pub new_batch_threshold: Option<u32>,
    pub max_dequeue_count: u32,
    #[serde(deserialize_with = "timespan")]
    pub max_polling_interval: Duration,
    #[serde(deserialize_with = "timespan")]
    pub visibility_timeout: Duration,
    /// "base64" (Azure's default) or "none".
    pub message_encoding: String,
}

impl Default for QueuesExtension {
    fn default() -> Self {
        QueuesExtension {
            batch_size: 16,
            new_batch_threshold: None,
            max_dequeue_count: 5,
            max_polling_interval: Duration::from_secs(60),
            visibility_timeout: Duration::ZERO,
            message_encoding: "base64".into(),
        }
    }
}

/// `[extensions.blobs]` (used by blob triggers).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct BlobsExtension {
    /// Blobs processed at once; Azure's default is 8 per core.
    pub max_degree_of_parallelism: Option<u32>,
    pub poison_blob_threshold: Option<u32>,
}

/// `[extensions.durableTask]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct DurableTaskExtension {
    pub hub_name: String,
    /// Azure's default is 10 per core.
    pub max_concurrent_activity_functions: Option<u32>,
    /// Azure's default is 10 per core.
    pub max_concurrent_orchestrator_functions: Option<u32>,
    /// Keep an orchestrator's wasm instance between its episodes, so that it
    /// continues instead of replaying its history (Durable Functions' key;
    /// on by default here: the sandbox makes replay and continuation agree).
    pub extended_sessions_enabled: bool,
    /// A session unused this long ends (Durable Functions' key and default).
    pub extended_session_idle_timeout_in_seconds: u64,
    /// fnhost's own: run the activities an episode schedules on the host
    /// that owns the instance while it has free slots, instead of through
    /// `{hub}-workitems` (one storage call per activity saved several times).
    pub local_dispatch: bool,
    /// Serve the management API without keys on a loopback-only listener
    /// (`http://127.0.0.1:{[server] localRpcPort}/durabletask/`), the
    /// extension's "local RPC endpoint" that out-of-process clients use.
    /// Azure enables it for out-of-process languages; fnhost only when asked.
    pub local_rpc_endpoint_enabled: bool,
    /// Clean-up of entity storage leaves alone an entity that had an
    /// operation this recently (Durable Functions' key and default, 30).
    pub entity_message_reorder_window_in_minutes: u64,
    pub storage_provider: StorageProvider,
}

impl Default for DurableTaskExtension {
    fn default() -> Self {
        DurableTaskExtension {
            hub_name: "TestHubName".into(),
            max_concurrent_activity_functions: None,
            max_concurrent_orchestrator_functions: None,
            extended_sessions_enabled: true,
            extended_session_idle_timeout_in_seconds: 30,
            local_dispatch: true,
            local_rpc_endpoint_enabled: false,
            entity_message_reorder_window_in_minutes: 30,
            storage_provider: StorageProvider::default(),
        }
    }
}

/// `[extensions.durableTask.storageProvider]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct StorageProvider {
    /// Control queues; 1 to 16.
    pub partition_count: u32,
    pub control_queue_batch_size: u32,
    #[serde(deserialize_with = "timespan")]
    pub max_queue_polling_interval: Duration,
    /// How long a received control message stays hidden (renewed while this
    /// host holds it); a host that dies holding it delays its instance by
    /// this much. 30 s here, not Durable Functions' 5 minutes, so that a
    /// restarted or surviving host resumes within a minute.
    #[serde(deserialize_with = "timespan")]
    pub control_queue_visibility_timeout: Duration,
    /// Same for activity work items (renewed while the activity runs).
    #[serde(deserialize_with = "timespan")]
    pub work_item_queue_visibility_timeout: Duration,
    pub connection_name: Option<String>,
}

impl Default for StorageProvider {
    fn default() -> Self {
        StorageProvider {
            partition_count: 4,
            control_queue_batch_size: 32,
            max_queue_polling_interval: Duration::from_secs(30),
            control_queue_visibility_timeout: Duration::from_secs(30),
            work_item_queue_visibility_timeout: Duration::from_secs(30),
            connection_name: None,
        }
    }
}

/// `[wasm]`: fnhost's own section for the sandbox.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct WasmSection {
    /// Linear memory one instance may grow to, in MiB.
    #[serde(rename = "maxMemoryMB")]
    pub max_memory_mb: u64,
    /// Instances that may run at once (the pooling allocator's size); requests
    /// beyond it wait.
    pub max_instances: u32,
    /// Where compiled components are cached (default `.host-cache` beside host.toml).
    pub cache_dir: Option<PathBuf>,
}

impl Default for WasmSection {
    fn default() -> Self {
        WasmSection {
            max_memory_mb: 256,
            max_instances: 1000,
            cache_dir: None,
        }
    }
}

/// `[server]`: fnhost's own section for the HTTP server's limits. The
/// defaults are those of Kestrel, the server Azure Functions runs on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase", default)]
pub struct ServerSection {
    /// Connections open at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A request's line and headers must arrive within this (Kestrel's
    /// RequestHeadersTimeout, 30 s); it also closes idle keep-alive connections.
    #[serde(deserialize_with = "timespan")]
    pub header_timeout: Duration,
    /// Request line plus headers, in bytes (Kestrel: 32 KB); larger answer 431.
    pub max_header_bytes: usize,
    /// After a 5 s grace, a request body must arrive at this many bytes/s on
    /// average (Kestrel's MinRequestBodyDataRate, 240), or the request gets 408.
    pub min_request_body_data_rate: u64,
    /// Port of the durable local RPC endpoint on 127.0.0.1 (the extension's
    /// 17071); 0 picks a free one.
    pub local_rpc_port: u16,
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            max_connections: 1000,
            header_timeout: Duration::from_secs(30),
            max_header_bytes: 32 * 1024,
            min_request_body_data_rate: 240,
            local_rpc_port: 17071,
        }
    }
}

impl HostConfig {
    /// Read `path`; a missing file means all defaults.
    pub fn load(path: &Path) -> Result<HostConfig, ConfigError> {
        if !path.exists() {
            return Ok(HostConfig::default());
        }
        let (config, text): (HostConfig, String) = super::read_toml(path)?;
        config.validate(path, &text)?;
        Ok(config)
    }

    fn validate(&self, path: &Path, text: &str) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            line: find_key_line(text, key),
            message,
        };
        let p = self
            .extensions
            .durable_task
            .storage_provider
            .partition_count;
        if !(1..=16).contains(&p) {
            return Err(invalid(
                "partitionCount",
                format!("partitionCount is {p}; it must be between 1 and 16"),
            ));
        }
        if self.function_timeout.is_zero() {
            return Err(invalid(
                "functionTimeout",
                "functionTimeout must be more than zero".into(),
            ));
        }
        let encoding = &self.extensions.queues.message_encoding;
        if encoding != "base64" && encoding != "none" {
            return Err(invalid(
                "messageEncoding",
                format!("messageEncoding is '{encoding}'; use \"base64\" or \"none\""),
            ));
        }
        if self.wasm.max_memory_mb == 0 || self.wasm.max_instances == 0 {
            return Err(invalid(
                "wasm",
                "[wasm] maxMemoryMB and maxInstances must be more than zero".into(),
            ));
        }
        let server = &self.server;
        if server.max_connections == 0
            || server.header_timeout.is_zero()
            || server.max_header_bytes < 8192
            || server.min_request_body_data_rate == 0
        {
            return Err(invalid(
                "server",
                "[server] maxConnections, headerTimeout and minRequestBodyDataRate must be more than \
                 zero, maxHeaderBytes at least 8192"
                    .into(),
            ));
        }
        let hub = &self.extensions.durable_task.hub_name;
        if !valid_hub_name(hub) {
            return Err(invalid(
                "hubName",
                format!(
                    "hubName '{hub}' is not valid: 3 to 45 letters and digits, starting with a letter"
                ),
            ));
        }
        Ok(())
    }

    /// host.json keys present in the file that this host ignores.
    pub fn ignored_keys(&self) -> Vec<&'static str> {
        [
            ("extensionBundle", self.extension_bundle.is_some()),
            ("aggregator", self.aggregator.is_some()),
            ("healthMonitor", self.health_monitor.is_some()),
            ("managedDependency", self.managed_dependency.is_some()),
            ("concurrency", self.concurrency.is_some()),
            ("singleton", self.singleton.is_some()),
            ("watchDirectories", self.watch_directories.is_some()),
            (
                "logging.applicationInsights",
                self.logging.application_insights.is_some(),
            ),
        ]
        .into_iter()
        .filter_map(|(k, present)| present.then_some(k))
        .collect()
    }
}

/// Task hub names become queue, table and container names: Azure allows 3–45
/// alphanumerics starting with a letter.
pub fn valid_hub_name(name: &str) -> bool {
    (3..=45).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// The line where `key` is first assigned, for errors found after parsing.
fn find_key_line(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start();
            l.starts_with(key)
                || l.starts_with(&format!("[{key}"))
                || l.contains(&format!("{key} ="))
        })
        .map(|i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostConfig, ConfigError> {
        let path = Path::new("host.toml");
        let c: HostConfig = super::super::parse_toml(path, text)?;
        c.validate(path, text)?;
        Ok(c)
    }

    #[test]
    fn empty_file_gives_azure_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.function_timeout, Duration::from_secs(300));
        assert_eq!(c.extensions.http.route_prefix, "api");
        assert_eq!(c.extensions.queues.batch_size, 16);
        assert_eq!(c.extensions.queues.max_dequeue_count, 5);
        assert_eq!(
            c.extensions.durable_task.storage_provider.partition_count,
            4
        );
    }

    #[test]
    fn translated_host_json_loads() {
        let c = parse(
            r#"
version = "2.0"
functionTimeout = "00:00:10"
[logging.applicationInsights.samplingSettings]
isEnabled = true
[extensionBundle]
id = "Microsoft.Azure.Functions.ExtensionBundle"
version = "[2.*, 3.0.0)"
[extensions.http]
routePrefix = ""
[extensions.durableTask]
hubName = "DurableFuncDemo"
[extensions.durableTask.storageProvider]
partitionCount = 2
"#,
        )
        .unwrap();
        assert_eq!(c.function_timeout, Duration::from_secs(10));
        assert_eq!(c.extensions.http.route_prefix, "");
        assert_eq!(c.extensions.durable_task.hub_name, "DurableFuncDemo");
        assert_eq!(
            c.ignored_keys(),
            vec!["extensionBundle", "logging.applicationInsights"]
        );
    }

    #[test]
    fn unknown_key_names_line() {
        let e = parse("[extensions.http]\nroutPrefix = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("host.toml: TOML parse error at line 2"),
            "{e}"
        );
        assert!(e.contains("unknown field `routPrefix`"), "{e}");
    }

    #[test]
    fn bad_values_are_explained() {
        let e = parse("functionTimeout = \"5 minutes\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("use \"hh:mm:ss\""), "{e}");
        let e = parse("[extensions.durableTask.storageProvider]\npartitionCount = 17\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "host.toml line 2: partitionCount is 17; it must be between 1 and 16"
        );
    }
}
