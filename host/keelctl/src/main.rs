//! `keelctl`: the operator's command line for Keel clusters, with patronictl's
//! commands, options, questions and output.
//!
//! It reads the DCS through the same plugin `keeld` uses (chosen by
//! `keel-select` from the same configuration keys) and drives members through
//! their REST API. Commands live in `commands/`, one module per group; the
//! parts without I/O (`output`, `list`, `config_edit`, `view`) are unit-tested.

#![allow(
    clippy::print_stdout,
    reason = "a command line tool reports on standard output"
)]

mod cli;
mod commands;
mod config_edit;
mod context;
mod list;
mod output;
mod prompt;
mod view;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::actions::{FlushTarget, ReinitArgs, RestartArgs};
use crate::commands::config::EditArgs;
use crate::commands::info::ListArgs;
use crate::commands::query::QueryArgs;
use crate::commands::switchover::{Action, Request};
use crate::commands::{actions, config, info, pause, query, switchover};
use crate::context::Ctl;
use crate::output::Format;

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Version {
        cluster_name: None, ..
    } = &cli.command
    {
        return info::version(None, None, None, &[]).await;
    }
    let ctl = Ctl::load(&cli.global).await?;
    let ctl = &ctl;
    match cli.command {
        Command::List {
            cluster_names,
            group,
            extended,
            ts,
            format,
            watch,
        } => {
            let args = ListArgs {
                clusters: cluster_names,
                group: group.group,
                extended,
                timestamp: ts,
                format,
                watch: watch.seconds(),
            };
            info::list(ctl, args).await
        }
        Command::Topology {
            cluster_names,
            group,
            watch,
        } => {
            let args = ListArgs {
                clusters: cluster_names,
                group: group.group,
                extended: false,
                timestamp: false,
                format: Format::Topology,
                watch: watch.seconds(),
            };
            info::list(ctl, args).await
        }
        Command::Switchover {
            cluster_name,
            group,
            leader,
            candidate,
            scheduled,
            force,
        } => {
            let req = Request {
                action: Action::Switchover,
                cluster: cluster_name,
                group: group.group,
                leader,
                candidate,
                scheduled,
                force,
            };
            switchover::run(ctl, req).await
        }
        Command::Failover {
            cluster_name,
            group,
            candidate,
            force,
        } => {
            let req = Request {
                action: Action::Failover,
                cluster: cluster_name,
                group: group.group,
                leader: None,
                candidate,
                scheduled: None,
                force,
            };
            switchover::run(ctl, req).await
        }
        Command::Pause {
            cluster_name,
            group,
            wait,
        } => pause::toggle(ctl, cluster_name.as_deref(), group.group, true, wait).await,
        Command::Resume {
            cluster_name,
            group,
            wait,
        } => pause::toggle(ctl, cluster_name.as_deref(), group.group, false, wait).await,
        Command::Restart {
            cluster_name,
            member_names,
            group,
            role,
            any,
            scheduled,
            pg_version,
            pending,
            timeout,
            force,
        } => {
            let args = RestartArgs {
                cluster: cluster_name,
                members: member_names,
                group: group.group,
                role,
                any,
                scheduled,
                pg_version,
                pending,
                timeout,
                force,
            };
            actions::restart(ctl, args).await
        }
        Command::Reload {
            cluster_name,
            member_names,
            group,
            role,
            force,
        } => actions::reload(ctl, &cluster_name, &member_names, group.group, role, force).await,
        Command::Reinit {
            cluster_name,
            member_names,
            group,
            force,
            from_leader,
            wait,
        } => {
            let args = ReinitArgs {
                cluster: cluster_name,
                members: member_names,
                group: group.group,
                force,
                from_leader,
                wait,
            };
            actions::reinit(ctl, args).await
        }
        Command::EditConfig {
            cluster_name,
            group,
            quiet,
            set,
            pg,
            apply,
            replace,
            force,
        } => {
            let args = EditArgs {
                cluster: cluster_name,
                group: group.group,
                force,
                quiet,
                set,
                pg,
                apply,
                replace,
            };
            config::edit(ctl, args).await
        }
        Command::ShowConfig {
            cluster_name,
            group,
        } => config::show(ctl, cluster_name.as_deref(), group.group).await,
        Command::History {
            cluster_name,
            group,
            format,
        } => info::history(ctl, cluster_name.as_deref(), group.group, format).await,
        Command::Flush {
            mut args,
            group,
            role,
            force,
        } => {
            let target = match args.pop().as_deref() {
                Some("restart") => FlushTarget::Restart,
                Some("switchover") => FlushTarget::Switchover,
                other => anyhow::bail!(
                    "flush: the last argument must be `restart` or `switchover`, not `{}`",
                    other.unwrap_or_default()
                ),
            };
            let cluster = args.remove(0);
            actions::flush(ctl, &cluster, &args, target, group.group, role, force).await
        }
        Command::Remove {
            cluster_name,
            group,
            format,
        } => info::remove(ctl, &cluster_name, group.group, format).await,
        Command::Query {
            cluster_name,
            group,
            format,
            file,
            password,
            username,
            watch,
            role,
            member,
            delimiter,
            command,
            dbname,
        } => {
            let args = QueryArgs {
                cluster: cluster_name,
                group: group.group,
                format,
                file,
                password,
                username,
                dbname,
                watch: watch.seconds(),
                role,
                member,
                delimiter,
                command,
            };
            query::query(ctl, args).await
        }
        Command::Dsn {
            cluster_name,
            group,
            role,
            member,
        } => {
            query::dsn(
                ctl,
                cluster_name.as_deref(),
                group.group,
                role,
                member.as_deref(),
            )
            .await
        }
        Command::Version {
            cluster_name,
            member_names,
            group,
        } => {
            info::version(
                Some(ctl),
                cluster_name.as_deref(),
                group.group,
                &member_names,
            )
            .await
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("KEEL_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("Error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
