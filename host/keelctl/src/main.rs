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

mod commands;
mod config_edit;
mod context;
mod list;
mod output;
mod prompt;
mod view;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands::actions::{FlushTarget, ReinitArgs, RestartArgs};
use crate::commands::config::EditArgs;
use crate::commands::info::ListArgs;
use crate::commands::query::QueryArgs;
use crate::commands::switchover::{Action, Request};
use crate::commands::{actions, config, info, pause, query, switchover};
use crate::context::{Ctl, GlobalArgs};
use crate::output::Format;
use crate::view::CtlRole;

/// Operate Keel (and Patroni) clusters: list members, switch over, pause,
/// restart, edit the dynamic configuration.
#[derive(Debug, Parser)]
#[command(name = "keelctl", version, about)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

/// `--group` of an MPP formation (Citus).
#[derive(Debug, Args)]
struct Group {
    /// The MPP (Citus) group.
    #[arg(long)]
    group: Option<u32>,
}

/// `-W` / `-w N`.
#[derive(Debug, Args)]
struct Watch {
    /// Refresh every 2 seconds.
    #[arg(short = 'W')]
    w: bool,
    /// Refresh every N seconds.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    watch: Option<f64>,
}

impl Watch {
    fn seconds(&self) -> Option<f64> {
        self.watch.or(self.w.then_some(2.0))
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the members of clusters.
    List {
        cluster_names: Vec<String>,
        #[command(flatten)]
        group: Group,
        /// Show pending and scheduled restarts and tags.
        #[arg(short = 'e', long)]
        extended: bool,
        /// Print a timestamp first.
        #[arg(short = 't', long = "timestamp")]
        ts: bool,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
        #[command(flatten)]
        watch: Watch,
    },
    /// Print the members as a replication tree.
    Topology {
        cluster_names: Vec<String>,
        #[command(flatten)]
        group: Group,
        #[command(flatten)]
        watch: Watch,
    },
    /// Switch over to a replica (now or at a scheduled time).
    Switchover {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// The current leader.
        #[arg(long, alias = "primary")]
        leader: Option<String>,
        /// The member to promote.
        #[arg(long)]
        candidate: Option<String>,
        /// When, as ISO 8601 (`2030-01-31T02:00+00:00`) or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long)]
        force: bool,
    },
    /// Fail over to a replica.
    Failover {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// The member to promote.
        #[arg(long)]
        candidate: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long)]
        force: bool,
    },
    /// Disable automatic failover (maintenance mode).
    Pause {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// Wait until every member applied it.
        #[arg(long)]
        wait: bool,
    },
    /// Resume automatic failover.
    Resume {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// Wait until every member applied it.
        #[arg(long)]
        wait: bool,
    },
    /// Restart PostgreSQL on members.
    Restart {
        cluster_name: String,
        member_names: Vec<String>,
        #[command(flatten)]
        group: Group,
        /// Only members with this role.
        #[arg(short = 'r', long, value_enum, default_value = "any")]
        role: CtlRole,
        /// Restart a single member only.
        #[arg(long)]
        any: bool,
        /// When, as ISO 8601 or `now`.
        #[arg(long)]
        scheduled: Option<String>,
        /// Only if the running PostgreSQL is older than this version (15.4).
        #[arg(long = "pg-version")]
        pg_version: Option<String>,
        /// Only members with a pending restart.
        #[arg(long)]
        pending: bool,
        /// Fail (and fail over if needed) when restarting takes longer.
        #[arg(long)]
        timeout: Option<String>,
        /// Do not ask for confirmation at any point.
        #[arg(long)]
        force: bool,
    },
    /// Reload members' configuration.
    Reload {
        cluster_name: String,
        member_names: Vec<String>,
        #[command(flatten)]
        group: Group,
        /// Only members with this role.
        #[arg(short = 'r', long, value_enum, default_value = "any")]
        role: CtlRole,
        /// Do not ask for confirmation at any point.
        #[arg(long)]
        force: bool,
    },
    /// Rebuild replicas from the leader.
    Reinit {
        cluster_name: String,
        member_names: Vec<String>,
        #[command(flatten)]
        group: Group,
        /// Do not ask for confirmation (and cancel a running reinit).
        #[arg(long)]
        force: bool,
        /// Take the base backup from the leader.
        #[arg(long)]
        from_leader: bool,
        /// Wait until it completes.
        #[arg(long)]
        wait: bool,
    },
    /// Edit the cluster's dynamic configuration.
    EditConfig {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// Do not show the changes.
        #[arg(short = 'q', long)]
        quiet: bool,
        /// Set KEY.PATH=VALUE (YAML value; empty removes); repeatable.
        #[arg(short = 's', long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Set a PostgreSQL parameter NAME=VALUE; repeatable.
        #[arg(short = 'p', long = "pg", value_name = "NAME=VALUE")]
        pg: Vec<String>,
        /// Merge settings from a YAML file (`-` for standard input).
        #[arg(long, value_name = "FILE")]
        apply: Option<String>,
        /// Replace the configuration with a YAML file (`-` for standard input).
        #[arg(long, value_name = "FILE")]
        replace: Option<String>,
        /// Apply without asking.
        #[arg(long)]
        force: bool,
    },
    /// Show the cluster's dynamic configuration.
    ShowConfig {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
    },
    /// Show the history of failovers and switchovers.
    History {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// Output format.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Discard scheduled events: `flush CLUSTER [MEMBER...] restart|switchover`.
    Flush {
        /// The cluster, then members, then `restart` or `switchover`.
        #[arg(required = true, num_args = 2.., value_name = "CLUSTER [MEMBER]... TARGET")]
        args: Vec<String>,
        #[command(flatten)]
        group: Group,
        /// Only members with this role.
        #[arg(short = 'r', long, value_enum, default_value = "any")]
        role: CtlRole,
        /// Do not ask for confirmation at any point.
        #[arg(long)]
        force: bool,
    },
    /// Remove a cluster's keys from the DCS.
    Remove {
        cluster_name: String,
        #[command(flatten)]
        group: Group,
        /// Output format of the listing shown first.
        #[arg(short = 'f', long = "format", value_enum, default_value = "pretty")]
        format: Format,
    },
    /// Run SQL on a member.
    Query {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// Output format.
        #[arg(long = "format", value_enum, default_value = "tsv")]
        format: Format,
        /// Run the SQL in this file.
        #[arg(short = 'f', long = "file")]
        file: Option<String>,
        /// Ask for the password (else PGPASSWORD).
        #[arg(long)]
        password: bool,
        /// Database user name.
        #[arg(short = 'U', long)]
        username: Option<String>,
        #[command(flatten)]
        watch: Watch,
        /// The role of the member to query.
        #[arg(short = 'r', long, value_enum)]
        role: Option<CtlRole>,
        /// The member to query.
        #[arg(short = 'm', long)]
        member: Option<String>,
        /// Column delimiter of tsv output.
        #[arg(long, default_value = "\t")]
        delimiter: String,
        /// The SQL to run.
        #[arg(short = 'c', long)]
        command: Option<String>,
        /// Database to connect to.
        #[arg(short = 'd', long)]
        dbname: Option<String>,
    },
    /// Print a member's host and port (the leader's by default).
    Dsn {
        cluster_name: Option<String>,
        #[command(flatten)]
        group: Group,
        /// Any member with this role.
        #[arg(short = 'r', long, value_enum)]
        role: Option<CtlRole>,
        /// This member.
        #[arg(short = 'm', long)]
        member: Option<String>,
    },
    /// Print keelctl's version, and each member's.
    Version {
        cluster_name: Option<String>,
        member_names: Vec<String>,
        #[command(flatten)]
        group: Group,
    },
}

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
