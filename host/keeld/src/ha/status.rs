//! The daemon as the REST API sees it: the `/patroni` status object, computed
//! per request from a live query (patroni-compat.md §3.3).

use std::sync::{Arc, Mutex};

use chrono::Utc;
use futures::future::BoxFuture;
use keel_api::{FailsafeReply, FailsafeRequest, HealthFacts, Node, StatusReport};
use keel_postgres::Postgres;
use serde_json::{Map, Value, json};

use super::{Shared, WIRE_VERSION, lock};

/// The REST API's handle on the daemon.
pub(crate) struct ApiNode {
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) pg: Arc<Postgres>,
    pub(crate) name: String,
    pub(crate) scope: String,
    pub(crate) tags: Map<String, Value>,
}

impl ApiNode {
    async fn report(&self) -> StatusReport {
        let state = if self.pg.is_running() {
            tokio::time::timeout(std::time::Duration::from_secs(2), self.pg.state())
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
            tags: self.tags.clone(),
            noloadbalance: self.tags.get("noloadbalance").and_then(Value::as_bool) == Some(true),
            ..HealthFacts::default()
        };
        let view = shared
            .cluster
            .as_ref()
            .filter(|(_, at)| (Utc::now() - *at).num_seconds() <= i64::from(shared.ttl.max(1)));
        facts.has_cluster_view = view.is_some();
        if let Some((cluster, _)) = view {
            facts.leader_optime = cluster.status.optime;
            facts.sync_standby = cluster.sync.matches(&self.name, false);
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
                if let Some(tl) = st.timeline {
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
                        facts.role = "replica".into();
                        let replay = st.replay_lsn.map_or(0, |l| l.0);
                        let receive = st.receive_lsn.map_or(replay, |l| l.0);
                        facts.replayed = replay;
                        body.insert("role".into(), json!("replica"));
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
                if st.pending_restart {
                    body.insert("pending_restart".into(), json!(true));
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
        if let Some((_, at)) = &shared.cluster {
            body.insert("dcs_last_seen".into(), json!(at.timestamp()));
        }
        if !self.tags.is_empty() {
            body.insert("tags".into(), Value::Object(self.tags.clone()));
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
        FailsafeReply::Accepted
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
