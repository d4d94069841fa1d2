//! `GET /cluster`, `GET /history` and `GET /failsafe`: the DCS view as JSON,
//! the way Patroni 4.1's `cluster_as_json` renders it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use keel_config::SynchronousMode;
use keel_model::{Cluster, Lsn};
use serde_json::{Map, Value, json};

use crate::manual::dynamic_config;
use crate::reply::{json, message};
use crate::server::Api;

pub(crate) async fn cluster(State(api): State<Api>) -> Response {
    match api.dcs.load().await {
        Ok(c) => {
            let mut body = as_json(&c);
            body.insert("scope".into(), json!(&*api.scope));
            json(StatusCode::OK, &Value::Object(body))
        }
        Err(e) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("DCS is not reachable: {e}"),
        ),
    }
}

pub(crate) async fn history(State(api): State<Api>) -> Response {
    let cluster = match api.node.cached_cluster() {
        Some(c) => c,
        None => match api.dcs.load().await {
            Ok(c) => c,
            Err(e) => {
                return message(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("DCS is not reachable: {e}"),
                );
            }
        },
    };
    let lines = cluster
        .history
        .and_then(|h| serde_json::from_str::<Value>(&h.render()).ok())
        .unwrap_or_else(|| json!([]));
    json(StatusCode::OK, &lines)
}

pub(crate) async fn failsafe(State(api): State<Api>) -> Response {
    match api.node.cached_cluster().and_then(|c| c.failsafe) {
        Some(f) => json(
            StatusCode::OK,
            &serde_json::from_str(&f.render()).unwrap_or_else(|_| json!({})),
        ),
        None => message(StatusCode::BAD_GATEWAY, "failsafe mode is not active"),
    }
}

/// The `/cluster` object (without `scope`).
pub fn as_json(cluster: &Cluster) -> Map<String, Value> {
    let config = dynamic_config(cluster);
    let leader = cluster.leader_name();
    let optime = cluster.status.optime;
    let sync_on = config.synchronous_mode != SynchronousMode::Off && !config.is_standby_cluster();
    let sync_role = if config.synchronous_mode == SynchronousMode::Quorum {
        "quorum_standby"
    } else {
        "sync_standby"
    };
    let mut members: Vec<Value> = Vec::new();
    for m in &cluster.members {
        let is_leader = Some(m.name.as_str()) == leader;
        let role = if is_leader {
            if config.is_standby_cluster() {
                "standby_leader"
            } else {
                "leader"
            }
        } else if sync_on && cluster.sync.matches(&m.name, false) {
            sync_role
        } else {
            "replica"
        };
        let d = &m.data;
        let state = if role == "leader" {
            d.state.clone()
        } else {
            d.replication_state.clone().or_else(|| d.state.clone())
        };
        let mut out = Map::new();
        out.insert("name".into(), json!(m.name));
        out.insert("role".into(), json!(role));
        out.insert("state".into(), json!(state.unwrap_or_default()));
        out.insert("api_url".into(), json!(d.api_url));
        if let Some((host, port)) = d.conn_url.as_deref().and_then(host_port) {
            out.insert("host".into(), json!(host));
            if let Some(port) = port {
                out.insert("port".into(), json!(port));
            }
        }
        if let Some(tl) = d.timeline {
            out.insert("timeline".into(), json!(tl));
        }
        if d.pending_restart {
            out.insert("pending_restart".into(), json!(true));
        }
        if let Some(reason) = &d.pending_restart_reason {
            out.insert(
                "pending_restart_reason".into(),
                Value::Object(reason.clone()),
            );
        }
        if let Some(s) = &d.scheduled_restart {
            out.insert("scheduled_restart".into(), Value::Object(s.clone()));
        }
        if !d.tags.is_empty() {
            out.insert("tags".into(), Value::Object(d.tags.clone()));
        }
        if !is_leader {
            for (prefix, lsn) in [
                ("receive_", d.receive_lsn),
                ("replay_", d.replay_lsn),
                ("", d.xlog_location),
            ] {
                let (lsn_key, lag_key) = (format!("{prefix}lsn"), format!("{prefix}lag"));
                match lsn.filter(|l| *l > 0) {
                    None => {
                        out.insert(lsn_key, json!("unknown"));
                        out.insert(lag_key, json!("unknown"));
                    }
                    Some(l) => {
                        out.insert(lag_key, json!(optime.saturating_sub(l)));
                        out.insert(lsn_key, json!(Lsn(l).to_string()));
                    }
                }
            }
        }
        members.push(Value::Object(out));
    }
    members.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    let mut body = Map::new();
    body.insert("members".into(), Value::Array(members));
    if config.pause {
        body.insert("pause".into(), json!(true));
    }
    if let Some(f) = &cluster.failover
        && let Some(at) = &f.scheduled_at
    {
        let mut s = Map::new();
        s.insert("at".into(), json!(keel_model::python_isoformat(at)));
        if let Some(l) = &f.leader {
            s.insert("from".into(), json!(l));
        }
        if let Some(c) = &f.candidate {
            s.insert("to".into(), json!(c));
        }
        body.insert("scheduled_switchover".into(), Value::Object(s));
    }
    body
}

/// Host and port of a `postgres://` connection URL.
pub(crate) fn host_port(conn_url: &str) -> Option<(String, Option<u16>)> {
    let url = url::Url::parse(conn_url).ok()?;
    let host = url.host_str().filter(|h| !h.is_empty())?;
    Some((host.trim_matches(['[', ']']).to_owned(), url.port()))
}

#[cfg(test)]
mod tests {
    use keel_model::Entry;

    use super::*;

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.to_owned(),
            value: value.to_owned(),
            version: "5".to_owned(),
            session: None,
        }
    }

    #[test]
    fn members_show_roles_lags_and_the_scheduled_switchover() {
        let cluster = Cluster::from_entries(&[
            entry("config", r#"{"synchronous_mode":true}"#),
            entry("leader", "a"),
            entry("status", r#"{"optime":100}"#),
            entry("sync", r#"{"leader":"a","quorum":0,"sync_standby":"b"}"#),
            entry(
                "failover",
                r#"{"leader":"a","member":"c","scheduled_at":"2030-01-01T00:00:00+00:00"}"#,
            ),
            entry(
                "members/a",
                r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"primary","timeline":2}"#,
            ),
            entry(
                "members/c",
                r#"{"conn_url":"postgres://[::1]:5434/postgres","state":"running","role":"replica","replication_state":"streaming","xlog_location":40}"#,
            ),
            entry(
                "members/b",
                r#"{"state":"running","role":"replica","xlog_location":100,"replay_lsn":90,"receive_lsn":100}"#,
            ),
        ]);
        let body = Value::Object(as_json(&cluster));
        let members = body["members"].as_array().unwrap();
        let names: Vec<&str> = members
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(members[0]["role"], "leader");
        assert_eq!(members[0]["host"], "127.0.0.1");
        assert_eq!(members[0]["port"], 5432);
        assert!(members[0].get("lag").is_none());
        assert_eq!(members[1]["role"], "sync_standby");
        assert_eq!(members[1]["replay_lag"], 10);
        assert_eq!(members[1]["lsn"], "0/64");
        assert_eq!(members[2]["role"], "replica");
        assert_eq!(members[2]["state"], "streaming");
        assert_eq!(members[2]["host"], "::1");
        assert_eq!(members[2]["lag"], 60);
        assert_eq!(members[2]["receive_lag"], "unknown");
        assert_eq!(
            body["scheduled_switchover"],
            json!({"at": "2030-01-01T00:00:00+00:00", "from": "a", "to": "c"})
        );
    }
}
