//! What the daemon offers the API: [`Node`] and the values that cross it.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use futures::future::BoxFuture;
use keel_ha::PeerStatus;
use keel_model::{Cluster, Member};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::health::HealthFacts;

/// One status report: the `/patroni` object and the facts the health checks use.
#[derive(Debug, Clone, Default)]
pub struct StatusReport {
    /// The status object (patroni-compat.md §3.3).
    pub body: Map<String, Value>,
    /// What the health checks look at.
    pub facts: HealthFacts,
}

/// `POST /failsafe` from a primary that lost the DCS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FailsafeRequest {
    /// The primary's member name.
    pub name: String,
    /// Its `conn_url`.
    #[serde(default)]
    pub conn_url: Option<String>,
    /// Its `api_url`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Its slots' positions.
    #[serde(default)]
    pub slots: Option<BTreeMap<String, u64>>,
}

/// What this node says to a failsafe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailsafeReply {
    /// Recorded: this replica keeps following the sender; its WAL position
    /// goes back in the `lsn` header.
    Accepted {
        /// Last received/replayed LSN, when known.
        lsn: Option<u64>,
    },
    /// This node runs as a primary itself.
    RunningAsLeader,
    /// failsafe_mode is off.
    Disabled,
}

/// A restart asked for with `POST /restart`, already validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestartRequest {
    /// Restart only if this node's role is this (`primary`, `standby_leader`, `replica`).
    pub role: Option<String>,
    /// Restart only if the running server is older than this (`X.Y` or `X.Y.Z`).
    pub postgres_version: Option<String>,
    /// Give up on the start after this many seconds (default `primary_start_timeout`).
    pub timeout: Option<u32>,
    /// Restart only if a restart is pending.
    pub restart_pending: bool,
    /// Run at this time instead of now.
    pub schedule: Option<DateTime<FixedOffset>>,
}

impl RestartRequest {
    /// The `scheduled_restart` object published in the member key (Patroni
    /// stores the request as given, with `schedule` as ISO text).
    pub fn to_json(&self) -> Map<String, Value> {
        let mut out = Map::new();
        if let Some(at) = &self.schedule {
            out.insert("schedule".into(), json!(keel_model::python_isoformat(at)));
        }
        if let Some(role) = &self.role {
            out.insert("role".into(), json!(role));
        }
        if let Some(v) = &self.postgres_version {
            out.insert("postgres_version".into(), json!(v));
        }
        if let Some(t) = self.timeout {
            out.insert("timeout".into(), json!(t));
        }
        if self.restart_pending {
            out.insert("restart_pending".into(), json!(true));
        }
        out
    }
}

/// How an immediate restart went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RestartOutcome {
    /// PostgreSQL was restarted and accepts connections.
    Restarted,
    /// The request's role, version or pending-restart filter does not match.
    ConditionsNotMet,
    /// Another long action is running (its label).
    Busy(String),
    /// PostgreSQL did not come up within the timeout (it may still).
    StillStarting,
    /// The restart failed.
    Failed,
}

/// The daemon, as the REST API sees it.
///
/// Reads of the cluster go to the DCS through the [`keel_dcs::Dcs`] handed to
/// [`crate::router`]; this trait covers what only the daemon knows or does.
pub trait Node: Send + Sync + 'static {
    /// A fresh status report (PostgreSQL queried now, bounded).
    fn status(&self) -> BoxFuture<'_, StatusReport>;
    /// Handle `POST /failsafe`.
    fn failsafe(&self, request: FailsafeRequest) -> FailsafeReply;
    /// `GET /liveness`: the HA loop ran recently enough.
    fn live(&self) -> bool;
    /// The last cluster view the HA loop read, if still valid.
    fn cached_cluster(&self) -> Option<Cluster>;
    /// Run the HA loop now instead of at the end of its sleep.
    fn wake(&self);
    /// Re-read the local configuration (as SIGHUP does).
    fn reload(&self);
    /// `GET /patroni` of these members, concurrently and bounded in time.
    fn peer_statuses(&self, members: Vec<Member>) -> BoxFuture<'_, Vec<PeerStatus>>;
    /// Restart PostgreSQL now (the request has no `schedule`).
    fn restart(&self, request: RestartRequest) -> BoxFuture<'_, RestartOutcome>;
    /// Remember a restart for later; `false` if one is already scheduled.
    fn schedule_restart(&self, request: RestartRequest) -> bool;
    /// Forget the scheduled restart; `false` if there was none.
    fn cancel_scheduled_restart(&self) -> bool;
    /// Start re-creating this replica from the leader (or a `clonefrom`
    /// member); `Err` says why not.
    fn reinitialize(&self, force: bool, from_leader: bool) -> BoxFuture<'_, Result<(), String>>;
    /// Extra Prometheus text for `/metrics` (per-plugin figures).
    fn extra_metrics(&self) -> String {
        String::new()
    }
    /// `POST /citus`: an event from a worker, for the coordinator's MPP plugin.
    fn mpp_event(&self, event: Value) -> BoxFuture<'_, ()> {
        let _ = event;
        Box::pin(async {})
    }
}
