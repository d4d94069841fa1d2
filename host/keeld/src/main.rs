//! `keeld`: the Keel daemon.
//!
//! Wiring only: configuration, plugins and (as later parts land) the HA loop and
//! the REST API live in their own crates; this binary puts them together.

mod callbacks;
mod check;
mod ha;
mod metrics;
mod mpp;
mod peer_client;
mod run;
mod signals;
mod watchdog;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Keel: high availability for PostgreSQL, with WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "keeld", version, about)]
struct Cli {
    /// Configuration file or directory (patroni.yml compatible). Without it,
    /// KEEL_CONFIGURATION or PATRONI_CONFIGURATION holds the whole document.
    #[arg(value_name = "CONFIG")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check the configuration and exit (like `patroni --validate-config`).
    ValidateConfig {
        /// Configuration file or directory.
        config: Option<PathBuf>,
    },
    /// Inspect plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Validate a component against Keel's worlds and print what it is, what it
    /// imports and exports, how long it takes to load, and (given a config) which
    /// capabilities that config would grant it.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// A configuration whose section for this plugin decides the grants.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
    /// Load every component in a plugin directory and list them (and the refused ones).
    List {
        /// The directory; defaults to `plugins.dir` of the configuration.
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Configuration file or directory.
        #[arg(long, short)]
        config: Option<PathBuf>,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            None => run::run(cli.config.as_deref()).await,
            Some(Command::ValidateConfig { config }) => {
                run::validate(config.or(cli.config).as_deref()).await
            }
            Some(Command::Plugin {
                command: PluginCommand::Check { file, config },
            }) => check::check(&file, config.or(cli.config).as_deref()).await,
            Some(Command::Plugin {
                command: PluginCommand::List { dir, config },
            }) => check::list(dir.as_deref(), config.or(cli.config).as_deref()).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}` prints the whole context chain on one line: what failed and why.
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
