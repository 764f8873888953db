//! `host durable ...`: Core Tools' `func durable` commands. They talk to the
//! task hub's storage directly (no running host needed), through a client-only
//! engine ([`Engine::client`]) that takes no lease and runs nothing.
//!
//! Operations that change a running instance (raise-event, terminate,
//! suspend, resume) enqueue a control message, as Durable Functions' clients
//! do: a host serving the hub applies it.

mod print;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Value, json};

use crate::catalog::{Catalog, Change};
use crate::config::{HostConfig, LocalSettings};
use crate::durable::client::ClientError;
use crate::durable::instances::{self, Filter};
use crate::durable::model::{RuntimeStatus, parse_iso};
use crate::durable::{Engine, EngineConfig, inspect};
use crate::runtime::{Runtime, RuntimeConfig};

/// Options every `host durable` command takes.
#[derive(Args, Debug)]
pub struct DurableCli {
    #[command(subcommand)]
    command: DurableCommand,
    /// The app setting holding the storage connection string (default: host.toml's
    /// storageProvider.connectionName, else AzureWebJobsStorage).
    #[arg(long, global = true, env = "FNHOST_CONNECTION_STRING_SETTING")]
    connection_string_setting: Option<String>,
    /// The task hub (default: hubName of host.toml).
    #[arg(long, global = true, env = "FNHOST_TASK_HUB_NAME")]
    task_hub_name: Option<String>,
    /// The folder holding host.toml and local.settings.toml.
    #[arg(long, global = true, env = "FNHOST_SCRIPT_ROOT", default_value = ".")]
    script_root: PathBuf,
    /// `table` for people, `json` for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Output {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
enum DurableCommand {
    /// List instances, filtered by creation time and status, a page at a time.
    GetInstances {
        /// Only instances created at or after this time (ISO 8601).
        #[arg(long)]
        created_after: Option<String>,
        /// Only instances created at or before this time (ISO 8601).
        #[arg(long)]
        created_before: Option<String>,
        /// Only these statuses (Pending, Running, Suspended, Completed, Failed, Terminated, ContinuedAsNew).
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        runtime_status: Vec<String>,
        /// Instances per page.
        #[arg(long, default_value_t = 100)]
        top: u32,
        /// The token printed after the previous page.
        #[arg(long)]
        continuation_token: Option<String>,
    },
    /// The status of one instance.
    GetRuntimeStatus {
        #[arg(long)]
        id: String,
        /// Include the input.
        #[arg(long)]
        show_input: bool,
        /// Include the output.
        #[arg(long)]
        show_output: bool,
    },
    /// Every history event of one instance, with millisecond times.
    GetHistory {
        #[arg(long)]
        id: String,
    },
    /// Start an orchestrator of this app's function folders.
    StartNew {
        /// The orchestrator function.
        #[arg(long)]
        function_name: String,
        /// Its input: JSON, or @path/to/file.json.
        #[arg(long)]
        input: Option<String>,
        /// The instance id (default: a new one).
        #[arg(long)]
        id: Option<String>,
        /// Where compiled components are cached (default: <script-root>/.host-cache).
        #[arg(long, env = "FNHOST_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Send an event to a running instance.
    RaiseEvent {
        #[arg(long)]
        id: String,
        #[arg(long)]
        event_name: String,
        /// The event's data: JSON, or @path/to/file.json.
        #[arg(long)]
        event_data: Option<String>,
    },
    /// Stop a running instance for good.
    Terminate {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Pause a running instance (events queue up until it resumes).
    Suspend {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Continue a suspended instance.
    Resume {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Run a failed instance's failed activities again.
    Rewind {
        #[arg(long)]
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Delete the history and status of one instance (--id) or of every finished instance matching the filters.
    PurgeHistory {
        #[arg(long, conflicts_with_all = ["created_after", "created_before", "runtime_status"])]
        id: Option<String>,
        #[arg(long)]
        created_after: Option<String>,
        #[arg(long)]
        created_before: Option<String>,
        /// Only these finished statuses (Completed, Failed, Terminated).
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        runtime_status: Vec<String>,
    },
    /// Delete the task hub: its queues, tables and containers, with every instance.
    DeleteTaskHub,
    /// Remove entities that have no state, and release locks held by
    /// orchestrations that no longer run (both unless one is asked for).
    CleanEntityStorage {
        #[arg(long)]
        remove_empty_entities: bool,
        #[arg(long)]
        release_orphaned_locks: bool,
    },
}

/// Run one `host durable` command.
pub async fn run(cli: DurableCli) -> anyhow::Result<()> {
    let context = Setup::load(&cli)?;
    let out = cli.output;
    match cli.command {
        DurableCommand::GetInstances {
            created_after,
            created_before,
            runtime_status,
            top,
            continuation_token,
        } => {
            if top == 0 {
                bail!("--top must be at least 1");
            }
            let filter = filter(created_after, created_before, &runtime_status)?;
            let engine = context.engine(None).await?;
            context.require_hub(&engine).await?;
            let (rows, next) = instances::query(
                &engine.hub,
                &filter,
                Some(top),
                continuation_token.as_deref(),
            )
            .await
            .map_err(|e| storage(e, &context))?;
            let mut docs = Vec::with_capacity(rows.len());
            for row in &rows {
                docs.push(engine.status_json(row, false, false, false).await?);
            }
            print::instances(out, &docs, next.as_deref());
        }
        DurableCommand::GetRuntimeStatus {
            id,
            show_input,
            show_output,
        } => {
            let engine = context.engine(None).await?;
            context.require_hub(&engine).await?;
            let row = engine
                .instance(&id)
                .await
                .map_err(|e| client(e, &context))?;
            let mut doc = engine.status_json(&row, false, false, show_input).await?;
            if !show_input {
                doc.as_object_mut().map(|d| d.remove("input"));
            }
            if !show_output {
                doc.as_object_mut().map(|d| d.remove("output"));
            }
            print::status(out, &doc);
        }
        DurableCommand::GetHistory { id } => {
            let engine = context.engine(None).await?;
            context.require_hub(&engine).await?;
            let doc = inspect::history_document(&engine.hub, &id)
                .await
                .map_err(|e| storage(e, &context))?;
            let Some(doc) = doc else {
                bail!(
                    "no history for instance '{id}' in task hub '{}' (unknown id, or not started yet)",
                    context.hub
                );
            };
            print::history(out, &doc);
        }
        DurableCommand::StartNew {
            function_name,
            input,
            id,
            cache_dir,
        } => {
            let input = input
                .map(|i| json_arg("--input", &i))
                .transpose()?
                .map(|v| v.to_string());
            let engine = context.engine(Some(cache_dir)).await?;
            // A fresh storage account has no hub yet: start-new makes it, as a host would.
            engine
                .hub
                .create()
                .await
                .map_err(|e| storage(e, &context))?;
            let id = engine
                .start_new(&function_name, id, input)
                .await
                .map_err(|e| match e {
                    ClientError::BadRequest(m) if m.starts_with("no orchestrator") => anyhow::anyhow!(
                        "{m} from {} (start-new checks the app's function folders: run it in the app's folder \
                         or pass --script-root)",
                        context.functions.display()
                    ),
                    e => client(e, &context),
                })?;
            print::done(
                out,
                &format!("Started '{function_name}' with instance id '{id}'."),
                json!({"instanceId": id, "name": function_name}),
            );
        }
        DurableCommand::RaiseEvent {
            id,
            event_name,
            event_data,
        } => {
            let data = event_data
                .map(|d| json_arg("--event-data", &d))
                .transpose()?
                .map(|v| v.to_string());
            let engine = context.engine(None).await?;
            context.require_hub(&engine).await?;
            engine
                .raise_event(&id, &event_name, data)
                .await
                .map_err(|e| client(e, &context))?;
            print::done(
                out,
                &format!("Raised event '{event_name}' to instance '{id}'."),
                json!({"instanceId": id, "eventName": event_name}),
            );
        }
        DurableCommand::Terminate { id, reason } => {
            control(&context, out, Op::Terminate, &id, reason).await?
        }
        DurableCommand::Suspend { id, reason } => {
            control(&context, out, Op::Suspend, &id, reason).await?
        }
        DurableCommand::Resume { id, reason } => {
            control(&context, out, Op::Resume, &id, reason).await?
        }
        DurableCommand::Rewind { id, reason } => {
            control(&context, out, Op::Rewind, &id, reason).await?
        }
        DurableCommand::PurgeHistory {
            id,
            created_after,
            created_before,
            runtime_status,
        } => {
            let engine = context.engine(None).await?;
            context.require_hub(&engine).await?;
            let n = match id {
                Some(id) => {
                    let row = engine
                        .instance(&id)
                        .await
                        .map_err(|e| client(e, &context))?;
                    if !row.status.is_terminal() {
                        bail!(
                            "instance '{id}' is {}: terminate it first (only finished instances are purged)",
                            row.status.as_str()
                        );
                    }
                    usize::from(engine.purge(&id).await?)
                }
                None => {
                    let filter = filter(created_after, created_before, &runtime_status)?;
                    engine.purge_matching(&filter).await?
                }
            };
            print::done(
                out,
                &format!("Purged {n} instance(s)."),
                json!({"instancesDeleted": n}),
            );
        }
        DurableCommand::CleanEntityStorage {
            remove_empty_entities,
            release_orphaned_locks,
        } => {
            let both = !remove_empty_entities && !release_orphaned_locks;
            let engine = context.engine(None).await?;
            context.require_hub(&engine).await?;
            let (removed, released) = engine
                .clean_entity_storage(
                    both || remove_empty_entities,
                    both || release_orphaned_locks,
                )
                .await
                .map_err(|e| client(e, &context))?;
            print::done(
                out,
                &format!(
                    "Removed {removed} empty entit{}, released {released} orphaned lock(s).",
                    if removed == 1 { "y" } else { "ies" }
                ),
                crate::durable::entity_client::cleaned_json(removed, released),
            );
        }
        DurableCommand::DeleteTaskHub => {
            let engine = context.engine(None).await?;
            context.require_hub(&engine).await?;
            let deleted = delete_hub(&engine)
                .await
                .map_err(|e| storage(e, &context))?;
            print::done(
                out,
                &format!(
                    "Deleted task hub '{}' ({} queues, tables and containers).",
                    context.hub, deleted
                ),
                json!({"taskHub": context.hub, "deleted": deleted}),
            );
        }
    }
    Ok(())
}

/// What every command resolves first: the configuration and the connection.
struct Setup {
    host: HostConfig,
    connection: String,
    setting: String,
    hub: String,
    script_root: PathBuf,
    functions: PathBuf,
}

impl Setup {
    fn load(cli: &DurableCli) -> anyhow::Result<Setup> {
        let root = &cli.script_root;
        let host = HostConfig::load(&root.join("host.toml"))?;
        let local = LocalSettings::load(&root.join("local.settings.toml"))?;
        let settings = local.app_settings(|k| std::env::var(k).ok());
        let setting = cli
            .connection_string_setting
            .clone()
            .or_else(|| {
                host.extensions
                    .durable_task
                    .storage_provider
                    .connection_name
                    .clone()
            })
            .unwrap_or_else(|| "AzureWebJobsStorage".into());
        let Some(connection) = settings.get(&setting).filter(|c| !c.is_empty()) else {
            bail!(
                "no storage connection: set {setting} in [Values] of {} (UseDevelopmentStorage=true for Azurite), \
                 or name another app setting with --connection-string-setting",
                root.join("local.settings.toml").display()
            );
        };
        let hub = cli
            .task_hub_name
            .clone()
            .unwrap_or_else(|| host.extensions.durable_task.hub_name.clone());
        if !crate::config::valid_hub_name(&hub) {
            bail!(
                "task hub name '{hub}' is not valid: 3 to 45 letters and digits, starting with a letter"
            );
        }
        Ok(Setup {
            connection: connection.to_string(),
            setting,
            hub,
            functions: root.join("functions"),
            script_root: root.clone(),
            host,
        })
    }

    /// A client-only engine; with `Some(cache_dir)`, the app's function
    /// folders are loaded so that start-new can check the orchestrator's name.
    async fn engine(&self, load_functions: Option<Option<PathBuf>>) -> anyhow::Result<Arc<Engine>> {
        let storage = crate::storage::azure::connect(&self.connection)
            .with_context(|| format!("{} in local.settings.toml", self.setting))?;
        crate::storage::azure::probe(&storage)
            .await
            .with_context(|| format!("connecting to the storage of {}", self.setting))?;
        let cache_dir = load_functions.clone().flatten();
        // One instance at a time is plenty: the CLI never invokes a function.
        let runtime = Runtime::new(RuntimeConfig {
            function_timeout: self.host.function_timeout,
            max_memory_bytes: (self.host.wasm.max_memory_mb << 20) as usize,
            max_instances: 1,
            cache_dir: cache_dir
                .or_else(|| self.host.wasm.cache_dir.clone())
                .unwrap_or_else(|| self.script_root.join(".host-cache")),
            env: Vec::new(),
        })
        .context("starting the WebAssembly runtime")?;
        let catalog = Catalog::new(self.functions.clone(), runtime.clone());
        if load_functions.is_some() && self.functions.is_dir() {
            for change in catalog.sync().await {
                if let Change::Failed { folder, error } = change {
                    eprintln!("warning: function folder '{folder}' is in error: {error}");
                }
            }
        }
        let task = &self.host.extensions.durable_task;
        let provider = &task.storage_provider;
        Ok(Engine::client(
            storage,
            runtime,
            catalog,
            EngineConfig {
                hub_name: self.hub.clone(),
                partition_count: provider.partition_count,
                control_batch: provider.control_queue_batch_size.clamp(1, 32),
                max_polling_interval: provider.max_queue_polling_interval,
                max_activities: 1,
                max_orchestrations: 1,
                control_visibility: provider.control_queue_visibility_timeout,
                work_item_visibility: provider.work_item_queue_visibility_timeout,
                lease: std::time::Duration::from_secs(30),
                lease_renewal: std::time::Duration::from_secs(10),
                local_dispatch: false,
                extended_sessions: false,
                session_idle: std::time::Duration::from_secs(30),
                entity_idle: std::time::Duration::from_secs(
                    60 * task.entity_message_reorder_window_in_minutes,
                ),
            },
        ))
    }

    /// A hub that was never created: say so, rather than "table not found".
    async fn require_hub(&self, engine: &Engine) -> anyhow::Result<()> {
        if !inspect::hub_exists(&engine.hub)
            .await
            .map_err(|e| storage(e, self))?
        {
            bail!(
                "there is no task hub '{}' on the storage account of {} (check --task-hub-name, or hubName in host.toml)",
                self.hub,
                self.setting
            );
        }
        Ok(())
    }
}

#[derive(Clone, Copy)]
enum Op {
    Terminate,
    Suspend,
    Resume,
    Rewind,
}

/// terminate, suspend, resume, rewind.
async fn control(
    context: &Setup,
    out: Output,
    op: Op,
    id: &str,
    reason: Option<String>,
) -> anyhow::Result<()> {
    let engine = context.engine(None).await?;
    context.require_hub(&engine).await?;
    let (result, op) = match op {
        Op::Terminate => (engine.terminate(id, reason).await, "terminate"),
        Op::Suspend => (engine.suspend(id, reason).await, "suspend"),
        Op::Resume => (engine.resume(id, reason).await, "resume"),
        // Rewind rewrites the history and queues the failed activities itself.
        Op::Rewind => (engine.rewind(id, reason).await, "rewind"),
    };
    result.map_err(|e| client(e, context))?;
    let text = if op == "rewind" {
        format!("Rewound instance '{id}': its failed activities are queued again.")
    } else {
        format!(
            "Sent {op} to instance '{id}'; a host serving task hub '{}' applies it.",
            context.hub
        )
    };
    print::done(out, &text, json!({"instanceId": id, "operation": op}));
    Ok(())
}

/// The list and purge filters from the flags.
fn filter(
    created_after: Option<String>,
    created_before: Option<String>,
    statuses: &[String],
) -> anyhow::Result<Filter> {
    let date = |flag: &str, v: Option<String>| -> anyhow::Result<Option<u64>> {
        v.map(|v| {
            parse_iso(&v).with_context(|| {
                format!("{flag} '{v}' is not a date: use ISO 8601, e.g. 2025-06-17T10:00:00Z")
            })
        })
        .transpose()
    };
    let mut parsed = Vec::new();
    for s in statuses.iter().flat_map(|s| s.split_whitespace()) {
        parsed.push(RuntimeStatus::parse(s).with_context(|| {
            format!(
                "--runtime-status '{s}' is not a status: use Pending, Running, Suspended, Completed, Failed, \
                 Terminated or ContinuedAsNew"
            )
        })?);
    }
    Ok(Filter {
        created_from: date("--created-after", created_after)?,
        created_to: date("--created-before", created_before)?,
        statuses: parsed,
        ..Filter::default()
    })
}

/// A JSON flag value, or `@path` to a file holding it.
fn json_arg(flag: &str, value: &str) -> anyhow::Result<Value> {
    let (text, source) = match value.strip_prefix('@') {
        Some(path) => (
            std::fs::read_to_string(Path::new(path))
                .with_context(|| format!("{flag}: cannot read {path}"))?,
            format!("the file {path}"),
        ),
        None => (value.to_string(), "it".to_string()),
    };
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{flag} is not valid JSON ({e}): check {source}; a string needs quotes, e.g. '\"text\"'"
        )
    })
}

/// Delete every queue, table and container of the hub; how many there were.
async fn delete_hub(engine: &Engine) -> Result<usize, crate::storage::StorageError> {
    use crate::storage::StorageError::NotFound;
    let hub = &engine.hub;
    let s = &hub.storage;
    let mut deleted = 0;
    let mut count = |r: Result<(), crate::storage::StorageError>| match r {
        Ok(()) => {
            deleted += 1;
            Ok(())
        }
        Err(NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    };
    // Every control queue a hub can have (16 at most), whatever partitionCount says now.
    for p in 0..16 {
        count(s.queues.delete_queue(&hub.control_queue(p)).await)?;
    }
    count(s.queues.delete_queue(&hub.workitems_queue()).await)?;
    count(s.tables.delete_table(&hub.history_table()).await)?;
    count(s.tables.delete_table(&hub.instances_table()).await)?;
    count(s.blobs.delete_container(&hub.leases_container()).await)?;
    count(
        s.blobs
            .delete_container(&hub.large_messages_container())
            .await,
    )?;
    Ok(deleted)
}

fn storage(e: crate::storage::StorageError, context: &Setup) -> anyhow::Error {
    anyhow::anyhow!("task hub '{}': {e}", context.hub)
}

fn client(e: ClientError, context: &Setup) -> anyhow::Error {
    match e {
        ClientError::NotFound(id) => {
            anyhow::anyhow!("no instance '{id}' in task hub '{}'", context.hub)
        }
        e => anyhow::anyhow!("{e}"),
    }
}
