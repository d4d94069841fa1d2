//! What the local PostgreSQL reports about itself: role, timeline, WAL positions, replication
//! status, start time and system identifier (Patroni's `cluster_info_query` and
//! `_cluster_info_state`), in one query: health checks read it per request.
//!
//! Also owns Keel's local connections: one cached client per [`Lane`] over the unix socket,
//! re-opened when it breaks; every connect and every query is bounded by the configured timeouts.

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
    /// `pg_postmaster_start_time()` as text.
    pub postmaster_start_time: String,
    /// `pg_control_system().system_identifier`.
    pub system_identifier: u64,
    /// `server_version_num`, e.g. 150008.
    pub server_version: u32,
}

/// Which cached connection a query runs on. The REST API has its own (as Patroni's `restapi`
/// connection), so a burst of health checks never queues the HA loop's queries behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The HA loop and everything it drives.
    Control,
    /// The REST API's per-request status reads.
    Api,
}

/// Everything [`State`] holds, in one round trip. The receiver columns come from a left join
/// (no row on a primary); the replication rows as a JSON array of arrays.
const STATE_QUERY: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_walfile_name(pg_current_wal_lsn()) END, \
    pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, \
    pg_postmaster_start_time()::text, \
    (SELECT system_identifier FROM pg_control_system())::text, \
    current_setting('server_version_num')::int, \
    (SELECT timeline_id FROM pg_control_checkpoint())::int, \
    r.status, r.written_lsn::text, r.flushed_lsn::text, r.received_tli, \
    (SELECT coalesce(json_agg(json_build_array(pid, coalesce(application_name, ''), state, \
        sync_state, sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text) \
        ORDER BY application_name), '[]')::text FROM pg_stat_replication) \
    FROM (SELECT 1) AS one LEFT JOIN pg_stat_wal_receiver AS r ON true";

const REPLICATION_QUERY: &str = "SELECT pid, coalesce(application_name, ''), state, sync_state, \
    sent_lsn::text, write_lsn::text, flush_lsn::text, replay_lsn::text \
    FROM pg_stat_replication ORDER BY application_name";

/// One element of the state query's replication array.
type ReplicationJson = (
    i32,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn parse_lsn(text: Option<String>) -> Result<Option<Lsn>> {
    text.map(|s| s.parse()).transpose()
}

fn replication_rows(json: &str) -> Result<Vec<ReplicationRow>> {
    let rows: Vec<ReplicationJson> = serde_json::from_str(json).map_err(|_| Error::Parse {
        what: "pg_stat_replication rows",
        text: json.to_owned(),
    })?;
    rows.into_iter()
        .map(
            |(pid, name, state, sync_state, sent, write, flush, replay)| {
                Ok(ReplicationRow {
                    pid,
                    application_name: name,
                    state,
                    sync_state,
                    sent_lsn: parse_lsn(sent)?,
                    write_lsn: parse_lsn(write)?,
                    flush_lsn: parse_lsn(flush)?,
                    replay_lsn: parse_lsn(replay)?,
                })
            },
        )
        .collect()
}

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
    /// The cached local client of the control lane, connecting (bounded) when there is none or
    /// it broke.
    pub async fn client(&self) -> Result<Arc<Client>> {
        self.client_on(Lane::Control).await
    }

    fn slot(&self, lane: Lane) -> &tokio::sync::Mutex<Option<Arc<Client>>> {
        match lane {
            Lane::Control => &self.conn,
            Lane::Api => &self.api_conn,
        }
    }

    async fn client_on(&self, lane: Lane) -> Result<Arc<Client>> {
        let mut guard = self.slot(lane).lock().await;
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

    /// Forgets the cached clients (after a stop, or a timeout left one in an unknown state).
    pub async fn drop_connection(&self) {
        *self.conn.lock().await = None;
        *self.api_conn.lock().await = None;
    }

    /// Runs `sql` (no parameters) with the query timeout and returns its rows.
    pub async fn query(&self, sql: &str) -> Result<Vec<Row>> {
        self.query_on(Lane::Control, sql).await
    }

    async fn query_on(&self, lane: Lane, sql: &str) -> Result<Vec<Row>> {
        let client = self.client_on(lane).await?;
        let timeout = self.settings.timeouts.query;
        match tokio::time::timeout(timeout, client.query(sql, &[])).await {
            Ok(rows) => Ok(rows?),
            Err(_) => {
                *self.slot(lane).lock().await = None;
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

    /// Reads the current [`State`] on the control lane (one bounded query).
    pub async fn state(&self) -> Result<State> {
        self.state_on(Lane::Control).await
    }

    /// Reads the current [`State`] on `lane` (one bounded query).
    pub async fn state_on(&self, lane: Lane) -> Result<State> {
        let rows = self.query_on(lane, STATE_QUERY).await?;
        let row = rows.first().ok_or(Error::NotRunning)?;
        let in_recovery: bool = row.try_get(0)?;
        let sysid: String = row.try_get(6)?;
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
            replication: replication_rows(&row.try_get::<_, String>(13)?)?,
            postmaster_start_time: row.try_get(5)?,
            system_identifier: sysid.parse().map_err(|_| Error::Parse {
                what: "system identifier",
                text: sysid.clone(),
            })?,
            server_version: u32::try_from(row.try_get::<_, i32>(7)?).unwrap_or(0),
        };
        if in_recovery {
            state.wal_receiver_status = row.try_get(9)?;
            state.write_lsn = lsn(row, 10)?;
            state.flush_lsn = lsn(row, 11)?;
            // The receiver's timeline; without one, the last restartpoint's.
            state.timeline = row
                .try_get::<_, Option<i32>>(12)?
                .or(row.try_get::<_, Option<i32>>(8)?)
                .and_then(|t| u32::try_from(t).ok());
        }
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
