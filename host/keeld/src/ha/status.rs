//! The daemon as the REST API sees it: the `/patroni` status object, computed
//! per request from a live query (patroni-compat.md §3.3).

use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::future::BoxFuture;
use keel_api::{
    FailsafeReply, FailsafeRequest, HealthFacts, Node, RestartOutcome, RestartRequest, StatusReport,
};
use keel_dcs::{Cluster, Member};
use keel_ha::{PeerRequest, PeerStatus};
use keel_postgres::Postgres;
use serde_json::{Map, Value, json};
use tokio::sync::{Notify, mpsc, oneshot};

use super::requests::{Command, ScheduledRestart};
use super::{Shared, WIRE_VERSION, lock};

/// The REST API's handle on the daemon.
pub(crate) struct ApiNode {
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) pg: Arc<Postgres>,
    pub(crate) name: String,
    pub(crate) scope: String,
    pub(crate) wake: Arc<Notify>,
    pub(crate) commands: mpsc::UnboundedSender<Command>,
    pub(crate) http: crate::peer_client::PeerClient,
    /// Per-plugin figures for `/metrics`.
    pub(crate) plugin_metrics: Box<dyn Fn() -> String + Send + Sync>,
    /// The MPP handler, for workers' events (`POST /citus`).
    pub(crate) mpp: Option<Arc<crate::mpp::Mpp>>,
}

impl ApiNode {
    async fn report(&self) -> StatusReport {
        let state = if self.pg.is_running() {
            tokio::time::timeout(
                std::time::Duration::from_secs(2),
                self.pg.state_on(keel_postgres::Lane::Api),
            )
            .await
            .ok()
            .and_then(Result::ok)
        } else {
            None
        };
        let shared = lock(&self.shared);
        let mut body = Map::new();
        let running = state.is_some();
        body.insert(
            "state".into(),
            json!(if running {
                "running"
            } else if self.pg.is_running() {
                "starting"
            } else {
                "stopped"
            }),
        );
        let mut facts = HealthFacts {
            running,
            is_leader: shared.is_leader,
            paused: shared.paused,
            standby_cluster: shared.standby_cluster,
            maximum_lag_on_failover: shared.maximum_lag_on_failover,
            tags: shared.tags.clone(),
            noloadbalance: shared.tags.get("noloadbalance").and_then(Value::as_bool) == Some(true),
            ..HealthFacts::default()
        };
        let view = shared
            .cluster
            .as_ref()
            .filter(|(_, at)| (Utc::now() - *at).num_seconds() <= i64::from(shared.ttl.max(1)));
        facts.has_cluster_view = view.is_some();
        if let Some((cluster, _)) = view {
            facts.leader_optime = cluster.status.optime;
            let listed = cluster.sync.matches(&self.name, false);
            facts.sync_standby = listed && !shared.quorum_mode;
            facts.quorum_standby = listed && shared.quorum_mode;
            if cluster.leader.is_none() {
                body.insert("cluster_unlocked".into(), json!(true));
            }
        } else {
            body.insert("cluster_unlocked".into(), json!(true));
        }
        match &state {
            Some(st) => {
                body.insert(
                    "postmaster_start_time".into(),
                    json!(st.postmaster_start_time),
                );
                body.insert("server_version".into(), json!(st.server_version));
                body.insert(
                    "database_system_identifier".into(),
                    json!(st.system_identifier.to_string()),
                );
                // A replica without a receiver: the replay timeline the loop last read
                // (the state's own fallback is the last restartpoint's, which lags).
                let timeline = match (st.role, &st.wal_receiver_status) {
                    (keel_postgres::Role::Replica, None) => shared.timeline.or(st.timeline),
                    _ => st.timeline,
                };
                if let Some(tl) = timeline {
                    body.insert("timeline".into(), json!(tl));
                }
                match st.role {
                    keel_postgres::Role::Primary => {
                        facts.role = "primary".into();
                        body.insert("role".into(), json!("primary"));
                        body.insert(
                            "xlog".into(),
                            json!({"location": st.wal_lsn.map_or(0, |l| l.0)}),
                        );
                    }
                    keel_postgres::Role::Replica => {
                        // The lock holder of a standby cluster runs as a replica.
                        let role = if shared.standby_cluster && shared.is_leader {
                            "standby_leader"
                        } else {
                            "replica"
                        };
                        facts.role = role.into();
                        let replay = st.replay_lsn.map_or(0, |l| l.0);
                        let receive = st.receive_lsn.map_or(replay, |l| l.0);
                        facts.replayed = replay;
                        facts.received = receive;
                        facts.streaming = st.wal_receiver_status.as_deref() == Some("streaming");
                        body.insert("role".into(), json!(role));
                        body.insert(
                            "xlog".into(),
                            json!({"received_location": receive, "replayed_location": replay,
                                   "replayed_timestamp": null, "paused": false}),
                        );
                        body.insert(
                            "replication_state".into(),
                            json!(if st.wal_receiver_status.as_deref() == Some("streaming") {
                                "streaming"
                            } else {
                                "in archive recovery"
                            }),
                        );
                        if facts.sync_standby {
                            body.insert("sync_standby".into(), json!(true));
                        }
                        if facts.quorum_standby {
                            body.insert("quorum_standby".into(), json!(true));
                        }
                    }
                }
                if !st.replication.is_empty() {
                    let rows: Vec<Value> = st
                        .replication
                        .iter()
                        .map(|r| {
                            json!({"application_name": r.application_name, "state": r.state,
                                   "sync_state": r.sync_state})
                        })
                        .collect();
                    body.insert("replication".into(), Value::Array(rows));
                }
                if let Some(reason) = super::pending_restart_reason(&shared.pending_restart) {
                    body.insert("pending_restart".into(), json!(true));
                    body.insert("pending_restart_reason".into(), Value::Object(reason));
                }
            }
            None => {
                facts.role = shared.role.clone();
                body.insert("role".into(), json!(shared.role));
            }
        }
        if shared.paused {
            body.insert("pause".into(), json!(true));
        }
        if shared.failsafe_active {
            body.insert("failsafe_mode_is_active".into(), json!(true));
        }
        if shared.watchdog_failed {
            body.insert("watchdog_failed".into(), json!(true));
        }
        if let Some((_, at)) = &shared.cluster {
            body.insert("dcs_last_seen".into(), json!(at.timestamp()));
        }
        if let Some(s) = &shared.scheduled_restart {
            body.insert(
                "scheduled_restart".into(),
                Value::Object(s.request.to_json()),
            );
        }
        if !shared.tags.is_empty() {
            body.insert("tags".into(), Value::Object(shared.tags.clone()));
        }
        body.insert(
            "patroni".into(),
            json!({"version": WIRE_VERSION, "scope": self.scope, "name": self.name,
                   "keel": env!("CARGO_PKG_VERSION")}),
        );
        body.insert("keel_last_message".into(), json!(shared.message));
        StatusReport { body, facts }
    }
}

impl Node for ApiNode {
    fn status(&self) -> BoxFuture<'_, StatusReport> {
        Box::pin(self.report())
    }

    fn failsafe(&self, request: FailsafeRequest) -> FailsafeReply {
        let mut shared = lock(&self.shared);
        if !shared.failsafe_mode {
            return FailsafeReply::Disabled;
        }
        if shared.role == "primary" && shared.is_leader {
            return FailsafeReply::RunningAsLeader;
        }
        shared.failsafe_leader = Some((request.name, Utc::now()));
        FailsafeReply::Accepted {
            lsn: shared.wal_position,
        }
    }

    fn cached_cluster(&self) -> Option<Cluster> {
        let shared = lock(&self.shared);
        let ttl = i64::from(shared.ttl.max(1));
        shared
            .cluster
            .as_ref()
            .filter(|(_, at)| (Utc::now() - *at).num_seconds() <= ttl)
            .map(|(c, _)| c.clone())
    }

    fn wake(&self) {
        self.wake.notify_one();
    }

    fn reload(&self) {
        let _ = self.commands.send(Command::Reload);
    }

    fn peer_statuses(&self, members: Vec<Member>) -> BoxFuture<'_, Vec<PeerStatus>> {
        Box::pin(async move {
            let requests: Vec<PeerRequest> = members
                .into_iter()
                .filter(|m| m.name != self.name)
                .filter_map(|m| {
                    Some(PeerRequest {
                        api_url: m.data.api_url.clone()?,
                        name: m.name,
                    })
                })
                .collect();
            super::peers::fetch_statuses(&self.http.get(), &requests).await
        })
    }

    fn restart(&self, request: RestartRequest) -> BoxFuture<'_, RestartOutcome> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            if self
                .commands
                .send(Command::Restart { request, reply })
                .is_err()
            {
                return RestartOutcome::Failed;
            }
            answer.await.unwrap_or(RestartOutcome::Failed)
        })
    }

    fn schedule_restart(&self, request: RestartRequest) -> bool {
        let mut shared = lock(&self.shared);
        if shared.scheduled_restart.is_some() {
            return false;
        }
        let postmaster_start_time = shared.postmaster_start_time.clone();
        shared.scheduled_restart = Some(ScheduledRestart {
            request,
            postmaster_start_time,
        });
        drop(shared);
        self.wake.notify_one();
        true
    }

    fn cancel_scheduled_restart(&self) -> bool {
        let removed = lock(&self.shared).scheduled_restart.take().is_some();
        if removed {
            self.wake.notify_one();
        }
        removed
    }

    fn reinitialize(&self, force: bool, from_leader: bool) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let (reply, answer) = oneshot::channel();
            let command = Command::Reinitialize {
                force,
                from_leader,
                reply,
            };
            if self.commands.send(command).is_err() {
                return Err("the HA loop is not running".to_owned());
            }
            answer
                .await
                .unwrap_or_else(|_| Err("the HA loop dropped the request".to_owned()))
        })
    }

    fn extra_metrics(&self) -> String {
        (self.plugin_metrics)()
    }

    fn mpp_event(&self, event: Value) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let leader = lock(&self.shared).is_leader;
            match &self.mpp {
                Some(mpp) if leader => mpp.handle_event(&event).await,
                _ => tracing::debug!("MPP event ignored: no handler here, or not the leader"),
            }
        })
    }

    fn live(&self) -> bool {
        let shared = lock(&self.shared);
        if shared.paused {
            return true;
        }
        let threshold = i64::from(shared.ttl.max(1)) * if shared.is_leader { 1 } else { 2 };
        shared
            .last_cycle
            .is_some_and(|at| (Utc::now() - at).num_seconds() <= threshold)
    }
}
