//! Timeline divergence and pg_rewind (Patroni's `postgresql/rewind.py`).
//!
//! After a failover the old primary may hold WAL the new primary never saw. Before it follows the
//! new leader, [`Postgres::check_divergence`] compares its own timeline and position with the
//! leader's timeline history; [`Postgres::rewind`] then runs pg_rewind once the leader has
//! checkpointed on its new timeline. A failed rewind either removes the data directory (when
//! configured, so the node is re-cloned) or leaves the node marked as failed: it is never started
//! as a healthy replica.
//!
//! Deviation from Patroni: the leader's timeline and history are read over a normal connection
//! (`pg_walfile_name`, `pg_read_binary_file('pg_wal/N.history')`, which the rewind role may call)
//! instead of a replication connection, because tokio-postgres has no replication mode.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use tokio_postgres::{Client, NoTls};

use crate::Postgres;
use crate::connection::{Credentials, Upstream, remote_config};
use crate::error::{Error, Result, RewindBlocker, Wait};
use crate::misc::{HistoryEntry, Lsn, parse_history};
use crate::postmaster::StopMode;
use crate::state::{Role, timeline_of_walfile};

/// The leader as the rewind needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaderInfo {
    /// Where it listens.
    pub upstream: Upstream,
    /// Its member key's `checkpoint_after_promote`: `Some(false)` means "not yet", `None` unknown
    /// (then Keel checks, and asks for a CHECKPOINT itself).
    pub checkpoint_after_promote: Option<bool>,
}

/// Whether this node's history diverged from the leader's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Divergence {
    /// The node can follow the leader as it is.
    None,
    /// The node has WAL the leader does not: it needs pg_rewind (or a re-clone).
    Diverged {
        /// Our timeline.
        local_timeline: u32,
        /// Our position.
        local_lsn: Lsn,
        /// The leader's timeline.
        leader_timeline: u32,
    },
}

/// What [`Postgres::rewind`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RewindOutcome {
    /// pg_rewind succeeded; the node can now follow the leader.
    Rewound,
    /// The rewind failed (or was impossible) and the data directory was removed as configured;
    /// the node must be re-cloned.
    DataDirectoryRemoved,
}

/// Where this node stands, for the divergence check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalPosition {
    /// Timeline.
    pub timeline: u32,
    /// Position: replay (replica), current WAL (running primary) or latest checkpoint (a primary
    /// that was shut down).
    pub lsn: Lsn,
    /// True when the position is a primary's (its checkpoint), false for a replica's.
    pub primary: bool,
}

/// Patroni's decision: does `local` need a rewind to follow a leader on `leader_timeline` with
/// `history`? `checkpoint_end` is where a former primary's shutdown checkpoint record ends (from
/// pg_waldump), when known.
pub fn needs_rewind(
    local: LocalPosition,
    checkpoint_end: Option<Lsn>,
    leader_timeline: u32,
    history: &[HistoryEntry],
) -> bool {
    if local.timeline > leader_timeline {
        return true;
    }
    if local.timeline == leader_timeline {
        return false;
    }
    match history.iter().find(|e| e.parent == local.timeline) {
        Some(entry) if local.primary => {
            local.lsn >= entry.switch_point || checkpoint_end != Some(entry.switch_point)
        }
        Some(entry) => local.lsn > entry.switch_point,
        None => true,
    }
}

/// Parses the end of a checkpoint record out of `pg_waldump -n 2` output that stops with
/// "invalid record length at X/Y".
pub fn parse_waldump_end(stdout: &str, stderr: &str, lsn: Lsn) -> Option<Lsn> {
    let lsn8 = format!("{:X}/{:08X}", lsn.0 >> 32, lsn.0 & 0xFFFF_FFFF);
    let out: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    if out.len() != 1 || !out[0].contains(&format!(", lsn: {lsn8}, prev ")) {
        return None;
    }
    let marker = "invalid record length at ";
    let line = stderr.lines().find(|l| l.contains(marker))?;
    let rest = &line[line.find(marker)? + marker.len()..];
    rest.split(':').next()?.trim().parse().ok()
}

/// Where the replication role reaches this server over TCP: the first of `listen_addresses`,
/// with a wildcard turned into its loopback. `None` when PostgreSQL listens on no TCP address.
fn local_replication_host(listen_addresses: &str) -> Option<String> {
    let first = listen_addresses.split(',').map(str::trim).next()?;
    match first {
        "" => None,
        "*" | "0.0.0.0" => Some("127.0.0.1".to_owned()),
        "::" => Some("::1".to_owned()),
        other => Some(other.to_owned()),
    }
}

/// The timeline column of psql's unaligned `IDENTIFY_SYSTEM` row (`sysid|tli|lsn|dbname`).
fn parse_identify_system_timeline(stdout: &str) -> Option<u32> {
    stdout
        .lines()
        .next()?
        .split('|')
        .nth(1)?
        .trim()
        .parse()
        .ok()
}

impl Postgres {
    fn rewind_credentials(&self) -> &Credentials {
        self.settings
            .rewind
            .as_ref()
            .unwrap_or(&self.settings.superuser)
    }

    pub(crate) async fn connect_leader(&self, leader: &Upstream) -> Result<Client> {
        let t = self.settings.timeouts.connect;
        let config = remote_config(leader, self.rewind_credentials(), t);
        let (client, conn) = tokio::time::timeout(t, config.connect(NoTls))
            .await
            .map_err(|_| Error::Timeout {
                what: Wait::Connect,
                timeout: t,
            })??;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(client)
    }

    /// The leader's current timeline and its timeline history.
    pub async fn leader_history(&self, leader: &Upstream) -> Result<(u32, Vec<HistoryEntry>)> {
        let client = self.connect_leader(leader).await?;
        let t = self.settings.timeouts.query;
        let bounded = |what| Error::Timeout { what, timeout: t };
        let sql = "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN '' \
                   ELSE pg_walfile_name(pg_current_wal_lsn()) END";
        let row = tokio::time::timeout(t, client.query_one(sql, &[]))
            .await
            .map_err(|_| bounded(Wait::Query))??;
        if row.try_get::<_, bool>(0)? {
            return Err(Error::LeaderInRecovery {
                host: leader.host.clone(),
                port: leader.port,
            });
        }
        let walfile: String = row.try_get(1)?;
        let timeline = timeline_of_walfile(&walfile).ok_or(Error::Parse {
            what: "WAL file name",
            text: walfile.clone(),
        })?;
        if timeline == 1 {
            return Ok((1, Vec::new()));
        }
        let sql = format!(
            "SELECT convert_from(pg_read_binary_file('pg_wal/{timeline:08X}.history'), 'UTF8')"
        );
        let row = tokio::time::timeout(t, client.query_one(&sql, &[]))
            .await
            .map_err(|_| bounded(Wait::Query))??;
        Ok((timeline, parse_history(&row.try_get::<_, String>(0)?)?))
    }

    /// Where this node stands: from the running server, or from pg_control when stopped.
    pub async fn local_position(&self) -> Result<LocalPosition> {
        if self.is_running() {
            let st = self.state().await?;
            if st.role == Role::Primary {
                return Ok(LocalPosition {
                    timeline: st.timeline.unwrap_or(0),
                    lsn: st.wal_lsn.unwrap_or_default(),
                    primary: true,
                });
            }
            // A replica's state() timeline falls back to its last restartpoint's, which lags
            // behind a timeline switch it has already replayed: comparing that with the leader's
            // history would call every follower of a second failover diverged. Ask the server for
            // its replay timeline instead, as Patroni does; without it, say "unknown" (the check
            // is retried) rather than guess.
            let timeline = match self.replay_timeline().await {
                Ok(tli) => tli,
                Err(e) if st.wal_receiver_status.as_deref() == Some("streaming") => {
                    // Streaming from the leader proves its history contains ours.
                    tracing::debug!("IDENTIFY_SYSTEM failed ({e}); using the received timeline");
                    st.timeline.ok_or(e)?
                }
                Err(e) => return Err(e),
            };
            return Ok(LocalPosition {
                timeline,
                lsn: st.replay_lsn.unwrap_or_default(),
                primary: false,
            });
        }
        let cd = self.controldata().await?;
        let primary = !matches!(
            cd.state(),
            Some("shut down in recovery" | "in archive recovery")
        );
        let (timeline, lsn) = if primary {
            cd.checkpoint()
        } else {
            cd.position()
        }
        .ok_or(Error::Parse {
            what: "pg_controldata position",
            text: cd.state().unwrap_or("").to_owned(),
        })?;
        Ok(LocalPosition {
            timeline,
            lsn,
            primary,
        })
    }

    /// The timeline a running replica is replaying, from `IDENTIFY_SYSTEM` over a replication
    /// connection to itself (tokio-postgres speaks no replication protocol, so psql does it). The
    /// replication role connects to the first listen address, as Patroni's
    /// `local_replication_address` does, so pg_hba needs the same `replication` entry the other
    /// members use.
    pub async fn replay_timeline(&self) -> Result<u32> {
        let s = &self.settings;
        let host = local_replication_host(&s.listen_addresses)
            .unwrap_or_else(|| s.socket_dir.display().to_string());
        let conninfo = format!(
            "host='{}' port={} user='{}' dbname=postgres replication=1 connect_timeout={}",
            host.replace('\\', "\\\\").replace('\'', "\\'"),
            s.port,
            s.replication
                .username
                .replace('\\', "\\\\")
                .replace('\'', "\\'"),
            s.timeouts.connect.as_secs().max(2),
        );
        let mut cmd = self.bin.command("psql");
        cmd.args(["-XAtqw", "-c", "IDENTIFY_SYSTEM", "-d", &conninfo])
            .env_remove("PGPASSFILE")
            .kill_on_drop(true);
        match &s.replication.password {
            Some(pw) => cmd.env("PGPASSWORD", pw),
            None => cmd.env_remove("PGPASSWORD"),
        };
        let program = self.bin.path("psql");
        let out = tokio::time::timeout(s.timeouts.query, cmd.output())
            .await
            .map_err(|_| Error::CommandTimeout {
                program: program.clone(),
                timeout: s.timeouts.query,
            })?
            .map_err(|source| Error::Spawn {
                program: program.clone(),
                source,
            })?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            return Err(Error::CommandFailed {
                program,
                status: out.status,
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        parse_identify_system_timeline(&stdout).ok_or(Error::Parse {
            what: "IDENTIFY_SYSTEM timeline",
            text: stdout.into_owned(),
        })
    }

    /// Compares this node with the leader's history (Patroni's `_check_timeline_and_lsn`).
    pub async fn check_divergence(&self, leader: &Upstream) -> Result<Divergence> {
        let local = self.local_position().await?;
        let (leader_timeline, history) = self.leader_history(leader).await?;
        let checkpoint_end = if local.primary && !self.is_running() {
            self.checkpoint_end(local.timeline, local.lsn).await
        } else {
            None
        };
        if needs_rewind(local, checkpoint_end, leader_timeline, &history) {
            Ok(Divergence::Diverged {
                local_timeline: local.timeline,
                local_lsn: local.lsn,
                leader_timeline,
            })
        } else {
            Ok(Divergence::None)
        }
    }

    /// Where the checkpoint record at `lsn` ends, read with pg_waldump; `None` when unknown.
    async fn checkpoint_end(&self, timeline: u32, lsn: Lsn) -> Option<Lsn> {
        let mut cmd = self.bin.command("pg_waldump");
        cmd.arg("-p")
            .arg(self.data_dir().join("pg_wal"))
            .args([
                "-t",
                &timeline.to_string(),
                "-s",
                &lsn.to_string(),
                "-n",
                "2",
            ])
            .kill_on_drop(true);
        let out = tokio::time::timeout(self.settings.timeouts.query, cmd.output())
            .await
            .ok()?
            .ok()?;
        parse_waldump_end(
            &String::from_utf8_lossy(&out.stdout),
            &String::from_utf8_lossy(&out.stderr),
            lsn,
        )
    }

    /// Waits for (and if needed asks for) the leader's checkpoint on its new timeline.
    async fn ensure_leader_checkpoint(&self, leader: &LeaderInfo) -> Result<()> {
        match leader.checkpoint_after_promote {
            Some(true) => return Ok(()),
            Some(false) => return Err(Error::LeaderCheckpointPending),
            None => {}
        }
        let client = self.connect_leader(&leader.upstream).await?;
        let sql = "SELECT (SELECT timeline_id FROM pg_control_checkpoint())::text, \
                   pg_walfile_name(pg_current_wal_lsn())";
        let t = self.settings.timeouts.query;
        for attempt in 0..2 {
            let row = tokio::time::timeout(t, client.query_one(sql, &[]))
                .await
                .map_err(|_| Error::Timeout {
                    what: Wait::Query,
                    timeout: t,
                })??;
            let cp: String = row.try_get(0)?;
            let wal: String = row.try_get(1)?;
            if cp.parse::<u32>().ok() == timeline_of_walfile(&wal) {
                return Ok(());
            }
            if attempt == 0 {
                // Works for a superuser (or pg_checkpoint on PG15+); otherwise we wait for the
                // leader's own post-promote checkpoint.
                let _ = tokio::time::timeout(t, client.batch_execute("CHECKPOINT")).await;
            }
        }
        Err(Error::LeaderCheckpointPending)
    }

    /// Rewinds this node against the leader. PostgreSQL is stopped first. On failure the data
    /// directory is removed when `remove_data_directory_on_rewind_failure` is set
    /// ([`RewindOutcome::DataDirectoryRemoved`]); otherwise the node is marked failed
    /// ([`Postgres::rewind_failed`]) and [`Error::RewindFailed`] returned.
    pub async fn rewind(&self, leader: &LeaderInfo) -> Result<RewindOutcome> {
        let s = &self.settings;
        if !s.use_pg_rewind {
            return self.rewind_impossible(RewindBlocker::Disabled);
        }
        self.stop(StopMode::Fast).await?;
        let mut cd = self.controldata().await?;
        if cd.state() == Some("in production") {
            self.single_user_crash_recovery().await?;
            cd = self.controldata().await?;
        }
        if !cd.rewind_capable() {
            return self.rewind_impossible(RewindBlocker::NoHintsOrChecksums);
        }
        self.ensure_leader_checkpoint(leader).await?;
        self.archive_ready_wal().await;
        self.write_pgpass(&leader.upstream)?;
        let saved = self.save_config_files();
        let conninfo = leader.upstream.conninfo(
            self.rewind_credentials(),
            Some(&s.pgpass),
            None,
            self.bin.major(),
        ) + " target_session_attrs=read-write";
        let mut cmd = self.bin.command("pg_rewind");
        cmd.arg("-D").arg(self.data_dir());
        if self.bin.major() >= 15 && s.recovery_conf.get("restore_command").is_some() {
            cmd.arg("--restore-target-wal");
        }
        cmd.arg(format!("--source-server={conninfo}"))
            .env("PGOPTIONS", "-c statement_timeout=0")
            .env("PGPASSFILE", &s.pgpass);
        let result = crate::bin::run(cmd, &self.bin.path("pg_rewind"), s.timeouts.command).await;
        self.restore_config_files(saved);
        match result {
            Ok(_) => {
                self.rewind_failed.store(false, Ordering::SeqCst);
                Ok(RewindOutcome::Rewound)
            }
            Err(e) => {
                tracing::error!(error = %e, "pg_rewind failed");
                if s.remove_data_directory_on_rewind_failure {
                    self.remove_data_directory()?;
                    self.rewind_failed.store(false, Ordering::SeqCst);
                    return Ok(RewindOutcome::DataDirectoryRemoved);
                }
                self.rewind_failed.store(true, Ordering::SeqCst);
                Err(Error::RewindFailed {
                    data_dir: self.data_dir().to_owned(),
                    cause: Some(Box::new(e)),
                })
            }
        }
    }

    /// Archives the WAL segments still waiting for `archive_command` (`.ready` in
    /// `pg_wal/archive_status`), as Patroni does before pg_rewind: the rewind replaces
    /// them with the new primary's, and the diverged part of the old timeline would
    /// never reach the archive. Runs the command as PostgreSQL would (`%p`, `%f`, from
    /// the data directory); the first failure stops it (logged), the rewind goes on.
    async fn archive_ready_wal(&self) {
        let params = self.effective_parameters();
        let (Some("on" | "always"), Some(command)) =
            (params.get("archive_mode"), params.get("archive_command"))
        else {
            return;
        };
        if command.trim().is_empty() {
            return;
        }
        let status_dir = self.data_dir().join("pg_wal").join("archive_status");
        let mut ready: Vec<String> = match std::fs::read_dir(&status_dir) {
            Ok(entries) => entries
                .flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter_map(|name| name.strip_suffix(".ready").map(str::to_owned))
                .filter(|wal| is_archivable_wal_name(wal))
                .collect(),
            Err(e) => {
                tracing::warn!("cannot list {}: {e}", status_dir.display());
                return;
            }
        };
        ready.sort();
        for wal in ready {
            let line = archive_command_for(command, &wal);
            let mut cmd = tokio::process::Command::new("/bin/sh");
            cmd.arg("-c")
                .arg(&line)
                .current_dir(self.data_dir())
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            let timeout = self.settings.timeouts.command;
            match tokio::time::timeout(timeout, cmd.status()).await {
                Ok(Ok(status)) if status.success() => {
                    let ready = status_dir.join(format!("{wal}.ready"));
                    if let Err(e) = std::fs::rename(&ready, status_dir.join(format!("{wal}.done")))
                    {
                        tracing::warn!("archived {wal}, but cannot mark it done: {e}");
                    }
                    tracing::info!("archived {wal} before pg_rewind");
                }
                outcome => {
                    tracing::error!(
                        "archive_command failed for {wal} before pg_rewind ({outcome:?}); \
                         segments from here on are not archived"
                    );
                    return;
                }
            }
        }
    }

    fn rewind_impossible(&self, reason: RewindBlocker) -> Result<RewindOutcome> {
        if self.settings.remove_data_directory_on_diverged_timelines {
            tracing::warn!("reinitializing due to diverged timelines");
            self.remove_data_directory()?;
            return Ok(RewindOutcome::DataDirectoryRemoved);
        }
        self.rewind_failed.store(true, Ordering::SeqCst);
        Err(Error::RewindImpossible { reason })
    }

    /// Runs single-user mode once so that a crashed cluster is consistent for pg_rewind, with
    /// archiving pointed at `false` so nothing is archived on the old timeline.
    async fn single_user_crash_recovery(&self) -> Result<()> {
        let mut cmd = self.bin.command("postgres");
        cmd.args(["--single", "-D"]).arg(self.data_dir());
        // The command-line GUCs (wal_log_hints among them) must be in effect, or the shutdown
        // checkpoint records them as off in pg_control and pg_rewind refuses the target.
        for (k, v) in self.cmdline_options() {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        cmd.args([
            "-c",
            "archive_mode=on",
            "-c",
            "archive_command=false",
            "template1",
        ]);
        crate::bin::run(
            cmd,
            &self.bin.path("postgres"),
            self.settings.timeouts.command,
        )
        .await
        .map(drop)
    }

    fn save_config_files(&self) -> Vec<(PathBuf, Vec<u8>)> {
        [
            "postgresql.conf",
            "postgresql.base.conf",
            "pg_hba.conf",
            "pg_ident.conf",
        ]
        .iter()
        .map(|f| self.data_dir().join(f))
        .filter_map(|p| std::fs::read(&p).ok().map(|c| (p, c)))
        .collect()
    }

    fn restore_config_files(&self, saved: Vec<(PathBuf, Vec<u8>)>) {
        for (path, contents) in saved {
            if let Err(e) = std::fs::write(&path, contents) {
                tracing::warn!(path = %path.display(), error = %e, "cannot restore config file");
            }
        }
    }
}

/// A WAL segment (24 hex digits), or one with `.partial`, as `archive_status` names them.
fn is_archivable_wal_name(name: &str) -> bool {
    let segment = name.strip_suffix(".partial").unwrap_or(name);
    segment.len() == 24
        && segment
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'))
}

/// `archive_command` for `wal` with PostgreSQL's placeholders: `%p` the path relative to
/// the data directory, `%f` the file name, `%%` a percent sign.
fn archive_command_for(command: &str, wal: &str) -> String {
    let mut out = String::with_capacity(command.len() + 64);
    let mut chars = command.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('%', Some('p')) => {
                out.push_str("pg_wal/");
                out.push_str(wal);
                chars.next();
            }
            ('%', Some('f')) => {
                out.push_str(wal);
                chars.next();
            }
            ('%', Some('%')) => {
                out.push('%');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_command_placeholders_are_postgresqls() {
        let wal = "000000010000000000000003";
        assert_eq!(
            archive_command_for("cp %p /a/%f && echo 100%%", wal),
            format!("cp pg_wal/{wal} /a/{wal} && echo 100%")
        );
        assert!(is_archivable_wal_name(wal));
        assert!(is_archivable_wal_name(&format!("{wal}.partial")));
        assert!(!is_archivable_wal_name("00000002.history"));
        assert!(!is_archivable_wal_name("00000001000000000000000g"));
    }

    #[test]
    fn identify_system_row_gives_the_timeline() {
        let row = "7391234567890123456|3|0/5000148|\n";
        assert_eq!(parse_identify_system_timeline(row), Some(3));
        assert_eq!(parse_identify_system_timeline(""), None);
        assert_eq!(parse_identify_system_timeline("garbage"), None);
    }

    #[test]
    fn replication_host_is_the_first_listen_address() {
        assert_eq!(local_replication_host("*").as_deref(), Some("127.0.0.1"));
        assert_eq!(
            local_replication_host("10.0.0.5, 127.0.0.1").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(local_replication_host("::").as_deref(), Some("::1"));
        assert_eq!(local_replication_host(""), None);
    }

    fn pos(timeline: u32, lsn: u64, primary: bool) -> LocalPosition {
        LocalPosition {
            timeline,
            lsn: Lsn(lsn),
            primary,
        }
    }

    #[test]
    fn rewind_rules() {
        let history = [HistoryEntry {
            parent: 1,
            switch_point: Lsn(0x300_00A0),
        }];
        // Same timeline: no rewind.
        assert!(!needs_rewind(pos(2, 0x500_0000, false), None, 2, &history));
        // Ahead of the leader's timeline: rewind.
        assert!(needs_rewind(pos(3, 0, false), None, 2, &history));
        // Replica behind the switch point: no rewind; past it: rewind.
        assert!(!needs_rewind(pos(1, 0x300_0000, false), None, 2, &history));
        assert!(needs_rewind(pos(1, 0x300_0100, false), None, 2, &history));
        // Former primary whose shutdown checkpoint ends exactly at the switch point: no rewind.
        assert!(!needs_rewind(
            pos(1, 0x300_0028, true),
            Some(Lsn(0x300_00A0)),
            2,
            &history
        ));
        // ... that wrote more, or whose checkpoint end is unknown: rewind.
        assert!(needs_rewind(
            pos(1, 0x300_00A0, true),
            Some(Lsn(0x300_0120)),
            2,
            &history
        ));
        assert!(needs_rewind(pos(1, 0x300_0028, true), None, 2, &history));
        // No history entry for our timeline.
        assert!(needs_rewind(pos(5, 0, false), None, 7, &history));
    }

    #[test]
    fn waldump_end() {
        let out = "rmgr: XLOG        len (rec/tot):    114/   114, tx:          0, \
                   lsn: 0/03000028, prev 0/02000110, desc: CHECKPOINT_SHUTDOWN redo 0/3000028\n";
        let err = "pg_waldump: error: error in WAL record at 0/3000028: invalid record length \
                   at 0/30000A0: wanted 24, got 0\n";
        assert_eq!(
            parse_waldump_end(out, err, Lsn(0x300_0028)),
            Some(Lsn(0x300_00A0))
        );
        let err16 = "pg_waldump: error: error in WAL record at 0/3000028: invalid record length \
                     at 0/30000A0: expected at least 24, got 0\n";
        assert_eq!(
            parse_waldump_end(out, err16, Lsn(0x300_0028)),
            Some(Lsn(0x300_00A0))
        );
        assert_eq!(parse_waldump_end("", err, Lsn(0x300_0028)), None);
    }
}
