//! What the local PostgreSQL reports about itself: role, timeline, WAL positions, replication
//! status, pending restart, start time and system identifier (Patroni's `cluster_info_query` and
//! `_cluster_info_state`).
//!
//! Also owns Keel's local connection: one cached client over the unix socket, re-opened when it
//! breaks; every connect and every query is bounded by the configured timeouts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_postgres::{Client, NoTls, Row};

use crate::Postgres;
use crate::connection::local_config;
use crate::error::{Error, Result, Wait};
use crate::misc::Lsn;

/// Whether the server is a primary or in recovery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not in recovery: accepts writes.
    Primary,
    /// In recovery (a replica or standby leader).
    Replica,
}

/// One row of `pg_stat_replication` on this server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    /// Walsender pid.
    pub pid: i32,
    /// The replica's `application_name` (its member name).
    pub application_name: String,
    /// `state`, e.g. `streaming`.
    pub state: Option<String>,
    /// `sync_state`: `async`, `sync`, `quorum`, `potential`.
    pub sync_state: Option<String>,
    /// Sent position.
    pub sent_lsn: Option<Lsn>,
    /// Written position on the replica.
    pub write_lsn: Option<Lsn>,
    /// Flushed position on the replica.
    pub flush_lsn: Option<Lsn>,
    /// Replayed position on the replica.
    pub replay_lsn: Option<Lsn>,
}

/// A snapshot of the local server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// Primary or replica.
    pub role: Role,
    /// The current timeline (primary), or the timeline being received/replayed (replica).
    pub timeline: Option<u32>,
    /// `pg_current_wal_lsn()` on a primary.
    pub wal_lsn: Option<Lsn>,
    /// `pg_stat_wal_receiver.written_lsn` on a streaming replica.
    pub write_lsn: Option<Lsn>,
    /// `pg_stat_wal_receiver.flushed_lsn` on a streaming replica.
    pub flush_lsn: Option<Lsn>,
    /// `pg_last_wal_receive_lsn()` on a replica.
    pub receive_lsn: Option<Lsn>,
    /// `pg_last_wal_replay_lsn()` on a replica.
    pub replay_lsn: Option<Lsn>,
    /// `pg_stat_wal_receiver.status` (`streaming`, ...), when a receiver runs.
    pub wal_receiver_status: Option<String>,
    /// `pg_stat_replication` rows (replicas streaming from this server).
    pub replication: Vec<ReplicationRow>,
    /// Any `pg_settings.pending_restart`.
    pub pending_restart: bool,
    /// `pg_postmaster_start_time()` as text.
    pub postmaster_start_time: String,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: u64,
    /// `server_version_num`, e.g. 150008.
    pub server_version: u32,
}

const STATE_QUERY: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
    pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
    (SELECT count(*) FROM pg_settings WHERE pending_restart) > 0, \
    pg_postmaster_start_time()::text, \
    (SELECT system_identifier FROM pg_control_system())::text, \
    current_setting('server_version_num')::int, \
    (SELECT timeline_id FROM pg_control_checkpoint())::int";

const RECEIVER_QUERY: &str = "SELECT status, written_lsn::text, flushed_lsn::text, received_tli \
    FROM pg_stat_wal_receiver";

const REPLICATION_QUERY: &str = "SELECT pid, coalesce(application_name, ''), state, sync_state, \
    sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text \
    FROM pg_stat_replication ORDER BY application_name";

fn lsn(row: &Row, idx: usize) -> Result<Option<Lsn>> {
    row.try_get::<_, Option<String>>(idx)?
        .map(|s| s.parse())
        .transpose()
}

/// The timeline in a WAL file name (`000000020000000000000003` → 2).
pub fn timeline_of_walfile(name: &str) -> Option<u32> {
    u32::from_str_radix(name.get(..8)?, 16).ok()
}

impl Postgres {
    /// The cached local client, connecting (bounded) when there is none or it broke.
    pub async fn client(&self) -> Result<Arc<Client>> {
        let mut guard = self.conn.lock().await;
        if let Some(c) = guard.as_ref().filter(|c| !c.is_closed()) {
            return Ok(c.clone());
        }
        let s = &self.settings;
        let config = local_config(&s.socket_dir, s.port, &s.superuser, s.timeouts.connect);
        let connecting = config.connect(NoTls);
        let (client, connection) = tokio::time::timeout(s.timeouts.connect, connecting)
            .await
            .map_err(|_| Error::Timeout {
                what: Wait::Connect,
                timeout: s.timeouts.connect,
            })??;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let client = Arc::new(client);
        *guard = Some(client.clone());
        Ok(client)
    }

    /// Forgets the cached client (after a stop, or a timeout left it in an unknown state).
    pub async fn drop_connection(&self) {
        *self.conn.lock().await = None;
    }

    /// Runs `sql` (no parameters) with the query timeout and returns its rows.
    pub async fn query(&self, sql: &str) -> Result<Vec<Row>> {
        let client = self.client().await?;
        let timeout = self.settings.timeouts.query;
        match tokio::time::timeout(timeout, client.query(sql, &[])).await {
            Ok(rows) => Ok(rows?),
            Err(_) => {
                self.drop_connection().await;
                Err(Error::Timeout {
                    what: Wait::Query,
                    timeout,
                })
            }
        }
    }

    /// Runs `sql` (no parameters), bounded, ignoring any result.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        let client = self.client().await?;
        let timeout = self.settings.timeouts.query;
        match tokio::time::timeout(timeout, client.batch_execute(sql)).await {
            Ok(r) => Ok(r?),
            Err(_) => {
                self.drop_connection().await;
                Err(Error::Timeout {
                    what: Wait::Query,
                    timeout,
                })
            }
        }
    }

    /// The single text value of a one-row, one-column query.
    pub async fn query_text(&self, sql: &str) -> Result<String> {
        let rows = self.query(sql).await?;
        let row = rows.first().ok_or(Error::Parse {
            what: "query result",
            text: sql.to_owned(),
        })?;
        Ok(row.try_get(0)?)
    }

    /// Waits (bounded) until a connection succeeds and answers `SELECT 1`.
    pub(crate) async fn wait_for_connection(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.query("SELECT 1").await.is_ok() {
                return Ok(());
            }
            self.drop_connection().await;
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: Wait::Start,
                    timeout,
                });
            }
            if !self.is_running() {
                return Err(Error::StartFailed {
                    log_tail: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Reads the current [`State`] (three bounded queries).
    pub async fn state(&self) -> Result<State> {
        let rows = self.query(STATE_QUERY).await?;
        let row = rows.first().ok_or(Error::NotRunning)?;
        let in_recovery: bool = row.try_get(0)?;
        let sysid: String = row.try_get(7)?;
        let mut state = State {
            role: if in_recovery {
                Role::Replica
            } else {
                Role::Primary
            },
            wal_lsn: lsn(row, 1)?,
            timeline: row
                .try_get::<_, Option<String>>(2)?
                .as_deref()
                .and_then(timeline_of_walfile),
            write_lsn: None,
            flush_lsn: None,
            receive_lsn: lsn(row, 3)?,
            replay_lsn: lsn(row, 4)?,
            wal_receiver_status: None,
            replication: Vec::new(),
            pending_restart: row.try_get(5)?,
            postmaster_start_time: row.try_get(6)?,
            system_identifier: sysid.parse().map_err(|_| Error::Parse {
                what: "system identifier",
                text: sysid.clone(),
            })?,
            server_version: u32::try_from(row.try_get::<_, i32>(8)?).unwrap_or(0),
        };
        let checkpoint_tli: Option<i32> = row.try_get(9)?;
        if in_recovery {
            let receiver = self.query(RECEIVER_QUERY).await?;
            if let Some(r) = receiver.first() {
                state.wal_receiver_status = r.try_get(0)?;
                state.write_lsn = lsn(r, 1)?;
                state.flush_lsn = lsn(r, 2)?;
                state.timeline = r
                    .try_get::<_, Option<i32>>(3)?
                    .and_then(|t| u32::try_from(t).ok());
            }
            if state.timeline.is_none() {
                state.timeline = checkpoint_tli.and_then(|t| u32::try_from(t).ok());
            }
        }
        state.replication = self.replication().await?;
        Ok(state)
    }

    /// The `pg_stat_replication` rows.
    pub async fn replication(&self) -> Result<Vec<ReplicationRow>> {
        self.query(REPLICATION_QUERY)
            .await?
            .iter()
            .map(|r| {
                Ok(ReplicationRow {
                    pid: r.try_get(0)?,
                    application_name: r.try_get(1)?,
                    state: r.try_get(2)?,
                    sync_state: r.try_get(3)?,
                    sent_lsn: lsn(r, 4)?,
                    write_lsn: lsn(r, 5)?,
                    flush_lsn: lsn(r, 6)?,
                    replay_lsn: lsn(r, 7)?,
                })
            })
            .collect()
    }

    /// True when the server is in recovery.
    pub async fn is_in_recovery(&self) -> Result<bool> {
        let rows = self.query("SELECT pg_is_in_recovery()").await?;
        let row = rows.first().ok_or(Error::NotRunning)?;
        Ok(row.try_get(0)?)
    }

    /// Reads `pg_controldata` for the data directory (works while stopped).
    pub async fn controldata(&self) -> Result<crate::misc::ControlData> {
        let out = self
            .bin
            .run(
                "pg_controldata",
                [self.data_dir()],
                self.settings.timeouts.query,
            )
            .await?;
        Ok(crate::misc::ControlData::parse(&String::from_utf8_lossy(
            &out.stdout,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walfile_timeline() {
        assert_eq!(timeline_of_walfile("000000020000000000000003"), Some(2));
        assert_eq!(timeline_of_walfile("0000000A0000000000000003"), Some(10));
        assert_eq!(timeline_of_walfile("xyz"), None);
    }
}
