//! The `host` command line: `host start`, `host build`, `host durable ...`. No logic lives here.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Run WebAssembly functions locally and in production, like `func start`.
#[derive(Parser)]
#[command(name = "host", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the function folders under ./functions (hot-reloaded) over HTTP.
    Start {
        /// HTTP port; overrides [Host] LocalHttpPort of local.settings.toml (7071). 0 picks a free one.
        #[arg(short, long, env = "FNHOST_PORT")]
        port: Option<u16>,
        /// Address to listen on. Beyond loopback, anyone who can reach it can call your functions.
        #[arg(long, env = "FNHOST_LISTEN", default_value = "127.0.0.1")]
        listen: IpAddr,
        /// Show debug output of the host and the functions (the durable engine's episodes, checkpoints, leases).
        #[arg(short, long)]
        verbose: bool,
        /// Console lines as `text` (like func start) or `json` (one object per line, for log collectors).
        #[arg(long, env = "FNHOST_LOG_FORMAT", value_enum, default_value_t = host::console::LogFormat::Text)]
        log_format: host::console::LogFormat,
        /// The folder holding the function folders (default: <script-root>/functions).
        #[arg(long, env = "FNHOST_FUNCTIONS")]
        functions: Option<PathBuf>,
        /// The folder holding host.toml and local.settings.toml.
        #[arg(long, env = "FNHOST_SCRIPT_ROOT", default_value = ".")]
        script_root: PathBuf,
        /// Build the function crates to wasm32-wasip2 first (like `host build`).
        #[arg(long)]
        build: bool,
        /// Where compiled components are cached (default: <script-root>/.host-cache).
        #[arg(long, env = "FNHOST_CACHE_DIR")]
        cache_dir: Option<PathBuf>,
        /// Enforce keys on loopback too (they always are beyond loopback), as `func start --enableAuth`.
        #[arg(long = "enableAuth", alias = "enable-auth", env = "FNHOST_ENABLE_AUTH")]
        enable_auth: bool,
    },
    /// List, set or delete the keys (master, host, system, function) in the app's key store.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
        /// The folder holding host.toml and local.settings.toml.
        #[arg(long, env = "FNHOST_SCRIPT_ROOT", default_value = ".", global = true)]
        script_root: PathBuf,
    },
    /// Manage durable instances straight on storage, like `func durable` (no running host needed).
    Durable(host::durable_cli::DurableCli),
    /// Compile the function crates under ./functions to wasm32-wasip2 components in their folders.
    Build {
        /// The folder holding the function folders.
        #[arg(long, env = "FNHOST_FUNCTIONS", default_value = "functions")]
        functions: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysAction {
    /// Print every key: master, host keys, system keys and each function's.
    List {
        /// Only this function's keys (created with a `default` key if it has none).
        #[arg(long)]
        function: Option<String>,
    },
    /// Add or replace a key; a new random value when VALUE is left out. `_master` is the master key.
    Set {
        name: String,
        value: Option<String>,
        /// A key of this function (default: a host key).
        #[arg(long)]
        function: Option<String>,
        /// A system key (e.g. durabletask_extension).
        #[arg(long)]
        system: bool,
    },
    /// Delete a key.
    Delete {
        name: String,
        #[arg(long)]
        function: Option<String>,
        #[arg(long)]
        system: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Start {
            port,
            listen,
            verbose,
            functions,
            script_root,
            build,
            cache_dir,
            enable_auth,
            log_format,
        } => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(host::start::run(host::start::StartOptions {
                    script_root,
                    functions,
                    port,
                    listen,
                    verbose,
                    build,
                    cache_dir,
                    enable_auth,
                    log_format,
                }))
            }),
        Command::Keys {
            action,
            script_root,
        } => {
            use host::keys::cli::Action;
            let action = match action {
                KeysAction::List { function } => Action::List { function },
                KeysAction::Set {
                    name,
                    value,
                    function,
                    system,
                } => Action::Set {
                    name,
                    value,
                    function,
                    system,
                },
                KeysAction::Delete {
                    name,
                    function,
                    system,
                } => Action::Delete {
                    name,
                    function,
                    system,
                },
            };
            tokio::runtime::Runtime::new()
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(host::keys::cli::run(&script_root, action)))
                .map(|out| print!("{out}"))
        }
        Command::Durable(args) => tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(host::durable_cli::run(args))),
        Command::Build { functions } => host::builder::build(&functions).map(|built| {
            for path in built {
                println!("built {}", path.display());
            }
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Connection strings and keys never reach the terminal.
            eprintln!("Error: {}", host::keys::redact::redact(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}
