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
                    log_format,
                }))
            }),
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
            eprintln!("Error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
