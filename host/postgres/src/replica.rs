//! Creating and pointing replicas (Patroni's `postgresql/bootstrap.py` clone path and
//! `Postgresql.follow`).
//!
//! A replica is cloned by the configured `create_replica_methods`, tried in order until one
//! succeeds: the built-in `basebackup` (`pg_basebackup -X stream` from the source, password via
//! `PGPASSFILE`, two attempts five seconds apart) or a user command (pgBackRest, wal-g, ...) called
//! with Patroni's arguments `--scope --datadir --role=replica --connstring`. Following a new
//! leader rewrites `primary_conninfo`; PostgreSQL 13+ applies that with a reload, older majors need
//! a restart. A running primary asked to follow is demoted: stopped fast and started as a replica.

use std::path::PathBuf;
use std::time::Duration;

use crate::Postgres;
use crate::bootstrap::{InitdbOption, is_empty_dir, split_command};
use crate::config::RecoveryConfig;
use crate::connection::Upstream;
use crate::error::{Error, Result};
use crate::postmaster::StopMode;
use crate::slots::slot_name_from_member_name;

/// One entry of `create_replica_methods`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaMethod {
    /// The built-in `pg_basebackup`.
    Basebackup,
    /// A user command.
    Command {
        /// The method name (for logs and errors).
        name: String,
        /// The command line.
        command: String,
        /// Extra `--key=value` arguments.
        options: Vec<(String, String)>,
        /// Suppress all generated arguments.
        no_params: bool,
        /// Do not empty the data directory first.
        keep_data: bool,
        /// Usable without a running leader (e.g. restore from an archive).
        no_leader: bool,
    },
}

impl ReplicaMethod {
    /// The method's name.
    pub fn name(&self) -> &str {
        match self {
            ReplicaMethod::Basebackup => "basebackup",
            ReplicaMethod::Command { name, .. } => name,
        }
    }

    /// The method works without a running leader (`no_leader`).
    pub fn no_leader(&self) -> bool {
        matches!(
            self,
            ReplicaMethod::Command {
                no_leader: true,
                ..
            }
        )
    }
}

/// pg_basebackup options the user must not set (Keel sets them or they break the clone).
const FORBIDDEN_BASEBACKUP: [&str; 12] = [
    "pgdata",
    "format",
    "wal-method",
    "xlog-method",
    "gzip",
    "version",
    "compress",
    "dbname",
    "host",
    "port",
    "username",
    "password",
];

/// What [`Postgres::follow`] had to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowOutcome {
    /// It was stopped and has been started as a replica.
    Started,
    /// A running replica re-read its configuration.
    Reloaded,
    /// A running replica was restarted (PostgreSQL < 13).
    Restarted,
    /// A running primary was stopped and started as a replica.
    Demoted,
}

impl Postgres {
    /// Clones the data directory from `source` (the leader or a `clonefrom` member) with the
    /// configured methods in order; `None` means no usable source, so only `no_leader` methods
    /// are tried. Returns the name of the method that worked. PostgreSQL is not started.
    pub async fn create_replica(&self, source: Option<&Upstream>) -> Result<String> {
        let mut tried = Vec::new();
        let methods = source
            .and_then(|s| s.remote.as_ref())
            .and_then(|r| r.create_replica_methods.as_ref())
            .unwrap_or(&self.settings.create_replica_methods);
        for method in methods {
            if source.is_none() && !method.no_leader() {
                continue;
            }
            tried.push(method.name().to_owned());
            let result = match method {
                ReplicaMethod::Basebackup => match source {
                    Some(src) => self.basebackup(src).await,
                    None => continue,
                },
                ReplicaMethod::Command {
                    command,
                    options,
                    no_params,
                    keep_data,
                    ..
                } => {
                    self.replica_command(command, options, *no_params, *keep_data, source)
                        .await
                }
            };
            match result {
                Ok(()) => return Ok(method.name().to_owned()),
                Err(e) => {
                    tracing::warn!(method = method.name(), error = %e, "replica method failed");
                }
            }
        }
        Err(Error::ReplicaCreationFailed { tried })
    }

    fn source_conninfo(&self, source: &Upstream) -> String {
        source.conninfo(
            &self.settings.replication,
            Some(&self.settings.pgpass),
            Some(&self.settings.name),
            self.bin.major(),
        )
    }

    /// `pg_basebackup` from `source`, at most two attempts five seconds apart, emptying the data
    /// directory before each.
    pub async fn basebackup(&self, source: &Upstream) -> Result<()> {
        for o in &self.settings.basebackup {
            let name = match o {
                InitdbOption::Flag(f) | InitdbOption::Value(f, _) => f.trim_start_matches('-'),
            };
            if FORBIDDEN_BASEBACKUP.contains(&name) {
                return Err(Error::InvalidParameter {
                    name: format!("basebackup.{name}"),
                    value: o.to_arg(),
                });
            }
        }
        self.write_pgpass(source)?;
        let mut args = vec![
            format!("--pgdata={}", self.data_dir().display()),
            "-X".to_owned(),
            "stream".to_owned(),
            format!("--dbname={}", self.source_conninfo(source)),
        ];
        args.extend(self.settings.basebackup.iter().map(InitdbOption::to_arg));
        let mut last = None;
        for attempt in 0..2 {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            if !is_empty_dir(self.data_dir())? {
                self.remove_data_directory()?;
            }
            let mut cmd = self.bin.command("pg_basebackup");
            cmd.args(&args).env("PGPASSFILE", &self.settings.pgpass);
            let program = self.bin.path("pg_basebackup");
            match crate::bin::run(cmd, &program, self.settings.timeouts.command).await {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or(Error::ReplicaCreationFailed {
            tried: vec!["basebackup".to_owned()],
        }))
    }

    async fn replica_command(
        &self,
        command: &str,
        options: &[(String, String)],
        no_params: bool,
        keep_data: bool,
        source: Option<&Upstream>,
    ) -> Result<()> {
        let mut words = split_command(command);
        if words.is_empty() {
            return Err(Error::InvalidParameter {
                name: "create_replica_methods.command".to_owned(),
                value: command.to_owned(),
            });
        }
        let program = PathBuf::from(words.remove(0));
        if !keep_data && !is_empty_dir(self.data_dir())? {
            self.remove_data_directory()?;
        }
        if !no_params {
            words.push(format!("--scope={}", self.settings.scope));
            words.push("--role=replica".to_owned());
            words.push(format!("--datadir={}", self.data_dir().display()));
            if let Some(src) = source {
                self.write_pgpass(src)?;
                words.push(format!("--connstring={}", self.source_conninfo(src)));
            }
            words.extend(options.iter().map(|(k, v)| format!("--{k}={v}")));
        }
        let mut cmd = tokio::process::Command::new(&program);
        cmd.args(&words).env("PGPASSFILE", &self.settings.pgpass);
        crate::bin::run(cmd, &program, self.settings.timeouts.command).await?;
        Ok(())
    }

    /// The recovery configuration for streaming from `upstream` (`None`: a standby without a
    /// primary).
    /// From a remote source (a standby cluster's), its slot and recovery settings replace
    /// the member's own.
    pub fn recovery_for(&self, upstream: Option<&Upstream>) -> RecoveryConfig {
        let s = &self.settings;
        if let Some(remote) = upstream.and_then(|u| u.remote.as_ref()) {
            let mut extra = s.recovery_conf.clone();
            for (k, v) in remote.recovery.iter() {
                extra.set(k, v);
            }
            return RecoveryConfig {
                primary_conninfo: upstream.map(|u| self.source_conninfo(u)),
                primary_slot_name: remote.primary_slot_name.clone(),
                extra,
                archive_recovery: false,
            };
        }
        RecoveryConfig {
            primary_conninfo: upstream.map(|u| self.source_conninfo(u)),
            primary_slot_name: (s.use_slots && upstream.is_some())
                .then(|| slot_name_from_member_name(&s.name)),
            extra: s.recovery_conf.clone(),
            archive_recovery: false,
        }
    }

    /// Makes this node a replica of `upstream`: rewrites the recovery configuration and applies
    /// it the cheapest way the state and the major version allow.
    pub async fn follow(&self, upstream: Option<&Upstream>) -> Result<FollowOutcome> {
        if let Some(u) = upstream {
            self.write_pgpass(u)?;
        }
        self.set_recovery(Some(self.recovery_for(upstream)));
        if !self.is_running() {
            self.start().await?;
            return Ok(FollowOutcome::Started);
        }
        if !self.is_in_recovery().await? {
            self.stop(StopMode::Fast).await?;
            self.start().await?;
            return Ok(FollowOutcome::Demoted);
        }
        if self.bin.major() >= 13 {
            self.reload().await?;
            Ok(FollowOutcome::Reloaded)
        } else {
            self.restart(StopMode::Fast).await?;
            Ok(FollowOutcome::Restarted)
        }
    }

    /// Demotes a running primary: fast stop (with its shutdown checkpoint), then follow `upstream`.
    pub async fn demote(&self, upstream: Option<&Upstream>) -> Result<FollowOutcome> {
        self.stop(StopMode::Fast).await?;
        self.follow(upstream).await?;
        Ok(FollowOutcome::Demoted)
    }
}
