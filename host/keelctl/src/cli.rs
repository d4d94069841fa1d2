//! The command line as clap parses it: patronictl's commands, arguments and
//! options, with its names and short flags. Global options go before the
//! command (`keelctl -c FILE list`), as in patronictl, where `query -d` is
//! the database and not `--dcs-url`.

use clap::{Args, Parser, Subcommand};

use crate::context::GlobalArgs;
use crate::output::Format;
use crate::view::CtlRole;

/// Operate Keel (and Patroni) clusters: list members, switch over, pause,
/// restart, edit the dynamic configuration.
#[derive(Debug, Parser)]
#[command(name = "keelctl", version, about)]
pub(crate) struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// `--group` of an MPP formation (Citus).
#[derive(Debug, Args)]
pub(crate) struct Group {
    /// The MPP (Citus) group.
    #[arg(long)]
    pub(crate) group: Option<u32>,
}

/// `-W` / `-w N`.
#[derive(Debug, Args)]
pub(crate) struct Watch {
    /// Refresh every 2 seconds.
    #[arg(short = 'W')]
    w: bool,
    /// Refresh every N seconds.
    #[arg(short = 'w', long = "watch", value_name = "SECONDS")]
    watch: Option<f64>,
}

impl Watch {
    pub(crate) fn seconds(&self) -> Option<f64> {
        self.watch.or(self.w.then_some(2.0))
    }
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
