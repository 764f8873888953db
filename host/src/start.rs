//! `host start`: load the configuration, the runtime and the functions, serve
//! HTTP, watch for changes, and shut down gracefully.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use anyhow::Context;
use http::{HeaderName, HeaderValue};

use std::sync::Arc;
use std::time::Duration;

use crate::bindings::{Connections, Encoding};
use crate::catalog::{self, Catalog, Change, FunctionEntry};
use crate::config::{HostConfig, LocalSettings, Trigger};
use crate::durable::{Engine, EngineConfig};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::triggers::blob::BlobTrigger;
use crate::triggers::http::{Cors, HttpSettings, HttpTrigger};
use crate::triggers::queue::QueueTrigger;
use crate::triggers::timer::TimerTrigger;
use crate::triggers::{TriggerContext, TriggerKind, Triggers};

/// Azure's default request body limit: 100 MB.
const DEFAULT_BODY_LIMIT: u64 = 104_857_600;

/// What `host start` was asked to do.
#[derive(Debug, Clone)]
pub struct StartOptions {
    /// The folder with host.toml and local.settings.toml.
    pub script_root: PathBuf,
    /// The functions directory (default `<script_root>/functions`).
    pub functions: Option<PathBuf>,
    /// Overrides `[Host] LocalHttpPort`; 0 picks a free port.
    pub port: Option<u16>,
    pub listen: IpAddr,
    pub verbose: bool,
    /// Build the function crates before serving.
    pub build: bool,
    pub cache_dir: Option<PathBuf>,
    /// Enforce keys on loopback too (`--enableAuth`).
    pub enable_auth: bool,
    /// Console lines as text (`func start`'s) or JSON.
    pub log_format: crate::console::LogFormat,
}

/// Run the host until Ctrl+C or SIGTERM.
pub async fn run(opts: StartOptions) -> anyhow::Result<()> {
    let host = HostConfig::load(&opts.script_root.join("host.toml"))?;
    let local = LocalSettings::load(&opts.script_root.join("local.settings.toml"))?;
    let _console = crate::console::init(
        opts.verbose,
        host.logging.log_level.get("default").map(String::as_str),
        host.logging.log_level.get("Function").map(String::as_str),
        opts.log_format,
    );
    let say = |line: &str| tracing::info!(target: "console", "{line}");
    say("");
    say(&format!(
        "fnhost {} (wasmtime 48)",
        env!("CARGO_PKG_VERSION")
    ));
    say("");
    for key in host.ignored_keys() {
        tracing::warn!("host.toml: '{key}' has no effect in this host and is ignored.");
    }
    let settings = local.app_settings(|k| std::env::var(k).ok());
    // Any app setting may be a connection string: its key is never shown.
    for value in settings.values.values() {
        crate::keys::redact::register_connection_string(value);
    }
    if let Ok(value) = std::env::var("AzureWebJobsStorage") {
        crate::keys::redact::register_connection_string(&value);
    }
    for key in &settings.overridden {
        tracing::info!(
            "Skipping '{key}' from local.settings.toml as it's already defined in current environment variables."
        );
    }

    let functions_dir = opts
        .functions
        .clone()
        .unwrap_or_else(|| opts.script_root.join("functions"));
    if !functions_dir.is_dir() {
        anyhow::bail!(
            "the functions directory {} does not exist: create it, or point --functions at the folder that holds \
             your function folders",
            functions_dir.display()
        );
    }
    if opts.build {
        let built = tokio::task::spawn_blocking({
            let dir = functions_dir.clone();
            move || crate::builder::build(&dir)
        })
        .await??;
        tracing::info!(
            "Built {} function component(s) in {}",
            built.len(),
            functions_dir.display()
        );
    }

    let runtime = Runtime::new(RuntimeConfig {
        function_timeout: host.function_timeout,
        max_memory_bytes: (host.wasm.max_memory_mb << 20) as usize,
        max_instances: host.wasm.max_instances,
        cache_dir: opts
            .cache_dir
            .clone()
            .or_else(|| host.wasm.cache_dir.clone())
            .unwrap_or_else(|| opts.script_root.join(".host-cache")),
        env: settings
            .values
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    })
    .context("starting the WebAssembly runtime")?;

    let catalog = Catalog::new(functions_dir.clone(), runtime.clone());
    let changes = catalog.sync().await;

    // The port before any durable work: a host that cannot serve must not
    // take messages from the task hub (and hold them hidden) first.
    let port = opts.port.unwrap_or(local.host.local_http_port);
    let addr = SocketAddr::new(opts.listen, port);
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "Port {port} is unavailable ({e}). Close the process using that port, or specify another port \
             using --port."
        )
    })?;

    let enforced = !opts.listen.is_loopback() || opts.enable_auth || local.host.enable_auth;
    let keys = start_keys(&opts, &host, &settings, enforced).await?;
    let durable = start_durable(&host, &settings, &runtime, &catalog).await?;
    let bound = listener.local_addr()?;
    let base = base_url(bound);
    let prefix = host
        .extensions
        .http
        .route_prefix
        .trim_matches('/')
        .to_string();

    say("Functions:");
    say("");
    for f in &catalog.table().functions {
        say(&describe(f, &base, &prefix));
        say("");
    }
    report_failures(&changes);
    say("For detailed output, run host start with --verbose flag.");
    tracing::info!("Listening on {base}");

    let report = {
        let (base, prefix) = (base.clone(), prefix.clone());
        move |changes: Vec<Change>| {
            for change in &changes {
                match change {
                    Change::Loaded {
                        folder,
                        functions,
                        replaced,
                    } => {
                        let verb = if *replaced { "Reloaded" } else { "Loaded" };
                        tracing::info!("{verb} function folder '{folder}':");
                        for f in functions {
                            tracing::info!("{}", describe(f, &base, &prefix).trim_start());
                        }
                    }
                    Change::Unloaded { folder } => {
                        tracing::info!("Unloaded function folder '{folder}'")
                    }
                    Change::Failed { .. } => {}
                }
            }
            report_failures(&changes);
        }
    };
    let _watcher = catalog::watch(catalog.clone(), report)
        .with_context(|| format!("watching {} for changes", functions_dir.display()))?;

    let http = HttpTrigger::new(
        catalog.clone(),
        runtime.clone(),
        durable.clone(),
        HttpSettings {
            route_prefix: prefix,
            max_body_bytes: settings
                .get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT")
                .map(|v| {
                    v.parse().with_context(|| {
                        format!("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT '{v}' is not a number of bytes")
                    })
                })
                .transpose()?
                .unwrap_or(DEFAULT_BODY_LIMIT),
            cors: local
                .host
                .cors
                .as_deref()
                .and_then(|c| Cors::parse(c, local.host.cors_credentials)),
            custom_headers: custom_headers(&host)?,
            keys,
            enforced,
            limits: host.server.clone(),
            rpc_only: false,
        },
    );
    let (rpc_stop, rpc_stopped) = tokio::sync::watch::channel(false);
    if host.extensions.durable_task.local_rpc_endpoint_enabled
        && durable.is_some()
        && let Err(e) = start_local_rpc(&http, &host, rpc_stopped).await
    {
        // Give back what the engine took before exiting.
        if let Some(engine) = &durable {
            engine.stop().await;
        }
        return Err(e);
    }
    let triggers = start_triggers(&host, &settings, &runtime, &catalog)?;
    tracing::info!("Host started");
    let finished = http
        .serve(listener, shutdown_signal(), host.function_timeout)
        .await;
    let _ = rpc_stop.send(true);
    // Before the engine: queue, blob and timer functions use the durable client.
    triggers.stop().await;
    if let Some(engine) = &durable {
        // Finish or abandon what it holds, release the partition leases so
        // that another host takes over at once.
        engine.stop().await;
    }
    if finished {
        tracing::info!("Host stopped: every invocation in flight finished. Goodbye.");
    } else {
        tracing::warn!(
            "Host stopped: invocations still running after functionTimeout ({:?}) were abandoned.",
            host.function_timeout
        );
    }
    Ok(())
}

/// The queue, blob and timer triggers, and the output bindings. Started after
/// the port is bound and the durable engine runs; a function of theirs
/// without a usable connection is reported and the rest keep running.
fn start_triggers(
    host: &HostConfig,
    settings: &crate::config::AppSettings,
    runtime: &Arc<Runtime>,
    catalog: &Arc<Catalog>,
) -> anyhow::Result<Triggers> {
    let encoding = Encoding::parse(&host.extensions.queues.message_encoding)?;
    let connections = Connections::new(settings.clone(), encoding);
    runtime.set_output_bindings(connections.clone());
    let _ = crate::bindings::CONNECTIONS.set(connections.clone());
    let host_id = crate::keys::store::host_id(
        |k| settings.get(k).map(str::to_string),
        &host.extensions.durable_task.hub_name,
    )
    .map_err(anyhow::Error::msg)?;
    let ctx = TriggerContext {
        catalog: catalog.clone(),
        runtime: runtime.clone(),
        connections,
        host: Arc::new(host.clone()),
        host_id,
    };
    // Every trigger kind but HTTP, which serves the port below.
    let kinds: Vec<Box<dyn TriggerKind>> = vec![
        Box::new(QueueTrigger),
        Box::new(BlobTrigger),
        Box::new(TimerTrigger),
    ];
    Ok(Triggers::start(ctx, kinds))
}

/// The durable extension's local RPC endpoint: the management API under
/// `/durabletask/` without keys, on 127.0.0.1 only, for clients on this
/// machine (the real npm and PyPI clients build every request from it).
async fn start_local_rpc(
    http: &HttpTrigger,
    host: &HostConfig,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let port = host.server.local_rpc_port;
    let listener = tokio::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the durable local RPC endpoint cannot listen on 127.0.0.1:{port} ({e}): set host.toml \
                 [server] localRpcPort, or localRpcEndpointEnabled = false"
            )
        })?;
    let bound = listener.local_addr()?;
    tracing::info!(
        "Durable local RPC endpoint (loopback only, no keys): http://{bound}/durabletask/"
    );
    let rpc = http.with_settings(|s| {
        s.rpc_only = true;
        s.enforced = false;
        s.cors = None;
    });
    let drain = host.function_timeout;
    tokio::spawn(async move {
        let stop = async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        rpc.serve(listener, stop, drain).await;
    });
    Ok(())
}

/// Open the key store. When keys are enforced, read (or create) the host's
/// keys and the durable system key now, so a store that cannot be used stops
/// start-up; otherwise nothing is read until the keys API is used.
async fn start_keys(
    opts: &StartOptions,
    host: &HostConfig,
    settings: &crate::config::AppSettings,
    enforced: bool,
) -> anyhow::Result<Option<Arc<crate::keys::Keys>>> {
    let store = crate::keys::open_store(
        &opts.script_root,
        crate::keys::setting_lookup(settings),
        &host.extensions.durable_task.hub_name,
    );
    let store = match store {
        Ok(store) => store,
        Err(e) if enforced => return Err(e),
        Err(e) => {
            tracing::warn!("{e:#} (keys are not enforced, so the host starts without them)");
            return Ok(None);
        }
    };
    let keys = Arc::new(crate::keys::Keys::new(store, enforced));
    if enforced {
        keys.prepare(Some(crate::keys::DURABLE_SYSTEM_KEY))
            .await
            .context("reading the keys (keys are enforced)")?;
        let why = if opts.listen.is_loopback() {
            "as asked".to_string()
        } else {
            format!("the host listens on {}", opts.listen)
        };
        tracing::info!(
            "Keys are enforced ({why}): pass ?code=<key> or the x-functions-key header; \
             `host keys list` shows them. Keys: {}",
            keys.store().describe()
        );
    } else {
        tracing::info!(
            "Keys are not enforced on localhost (host start --enableAuth enforces them). Keys: {}",
            keys.store().describe()
        );
    }
    Ok(Some(keys))
}

/// Connect to the task hub's storage and start the durable engine, when the
/// app has durable functions or a storage connection. Durable functions
/// without reachable storage stop start-up with one line that says what to do.
async fn start_durable(
    host: &HostConfig,
    settings: &crate::config::AppSettings,
    runtime: &Arc<Runtime>,
    catalog: &Arc<Catalog>,
) -> anyhow::Result<Option<Arc<Engine>>> {
    let durable_functions = catalog
        .table()
        .functions
        .iter()
        .any(|f| matches!(f.trigger, Trigger::Orchestration | Trigger::Activity));
    let task = &host.extensions.durable_task;
    let connection_name = task
        .storage_provider
        .connection_name
        .clone()
        .unwrap_or_else(|| "AzureWebJobsStorage".into());
    let Some(connection) = settings.get(&connection_name).filter(|c| !c.is_empty()) else {
        if durable_functions {
            anyhow::bail!(
                "durable functions need storage: set {connection_name} in [Values] of local.settings.toml \
                 (UseDevelopmentStorage=true for Azurite)"
            );
        }
        return Ok(None);
    };
    let storage = crate::storage::azure::connect(connection)
        .with_context(|| format!("{connection_name} in local.settings.toml"))?;
    if let Err(e) = crate::storage::azure::probe(&storage).await {
        if durable_functions {
            anyhow::bail!("{e}");
        }
        tracing::warn!("{e} (only HTTP functions are loaded, so the host starts without it)");
        return Ok(None);
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u32;
    let provider = &task.storage_provider;
    let engine = Engine::start(
        storage,
        runtime.clone(),
        catalog.clone(),
        EngineConfig {
            hub_name: task.hub_name.clone(),
            partition_count: provider.partition_count,
            control_batch: provider.control_queue_batch_size.clamp(1, 32),
            max_polling_interval: provider.max_queue_polling_interval,
            max_activities: task.max_concurrent_activity_functions.unwrap_or(10 * cores) as usize,
            max_orchestrations: task
                .max_concurrent_orchestrator_functions
                .unwrap_or(10 * cores) as usize,
            control_visibility: provider.control_queue_visibility_timeout,
            work_item_visibility: provider.work_item_queue_visibility_timeout,
            lease: Duration::from_secs(30),
            lease_renewal: Duration::from_secs(10),
            local_dispatch: task.local_dispatch,
            extended_sessions: task.extended_sessions_enabled,
            session_idle: Duration::from_secs(task.extended_session_idle_timeout_in_seconds),
            entity_idle: Duration::from_secs(60 * task.entity_message_reorder_window_in_minutes),
        },
    )
    .await
    .with_context(|| format!("creating task hub '{}'", task.hub_name))?;
    runtime.set_durable_client(Arc::new(engine.clone()));
    tracing::info!(
        "Durable task hub '{}' on {} partitions",
        task.hub_name,
        provider.partition_count
    );
    Ok(Some(engine))
}

fn custom_headers(host: &HostConfig) -> anyhow::Result<Vec<(HeaderName, HeaderValue)>> {
    host.extensions
        .http
        .custom_headers
        .iter()
        .map(|(k, v)| {
            Ok((
                HeaderName::from_bytes(k.as_bytes()).with_context(|| {
                    format!("host.toml: customHeaders '{k}' is not a valid header name")
                })?,
                HeaderValue::from_str(v).with_context(|| {
                    format!("host.toml: customHeaders '{k}' has an invalid value")
                })?,
            ))
        })
        .collect()
}

fn base_url(bound: SocketAddr) -> String {
    let ip = bound.ip();
    if ip.is_loopback() || ip.is_unspecified() {
        format!("http://localhost:{}", bound.port())
    } else {
        format!("http://{bound}")
    }
}

/// A function as `func start` lists it: `        hello: [GET,POST] http://localhost:7071/api/hello`.
fn describe(f: &FunctionEntry, base: &str, prefix: &str) -> String {
    match &f.trigger {
        Trigger::Http { methods, route, .. } => {
            let methods = methods.as_ref().map_or(
                "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,TRACE".to_string(),
                |m| m.join(","),
            );
            let path = [prefix, route.as_str()]
                .iter()
                .filter(|s| !s.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("/");
            format!("        {}: [{methods}] {base}/{path}", f.name)
        }
        other => format!("        {}: {}", f.name, other.type_name()),
    }
}

fn report_failures(changes: &[Change]) {
    for change in changes {
        if let Change::Failed { folder, error } = change {
            tracing::error!("Function folder '{folder}' is in error: {error}");
        }
    }
}

/// Resolves on Ctrl+C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("Stopping host: no new requests; waiting for the invocations in flight...");
}
