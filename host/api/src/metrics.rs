//! `GET /metrics`: Patroni 4.1's Prometheus metrics, from the same status
//! object `/patroni` returns, plus whatever the daemon adds (plugin figures).

use std::fmt::Write as _;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::DateTime;
use serde_json::{Map, Value};

use crate::server::Api;

pub(crate) async fn metrics(State(api): State<Api>) -> Response {
    let report = api.node.status().await;
    let mut text = render(&report.body, &api.scope, &api.name);
    text.push_str(&api.node.extra_metrics());
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// Patroni 4.1's states: the text in `state` and the enum name in the
/// `# Values:` comment, in the order of their numeric value.
const STATES: [(&str, &str); 15] = [
    ("initializing new cluster", "initdb"),
    ("initdb failed", "initdb_failed"),
    ("running custom bootstrap script", "custom_bootstrap"),
    ("custom bootstrap failed", "custom_bootstrap_failed"),
    ("creating replica", "creating_replica"),
    ("running", "running"),
    ("starting", "starting"),
    ("starting after custom bootstrap", "bootstrap_starting"),
    ("start failed", "start_failed"),
    ("restarting", "restarting"),
    ("restart failed", "restart_failed"),
    ("stopping", "stopping"),
    ("stopped", "stopped"),
    ("stop failed", "stop_failed"),
    ("crashed", "crashed"),
];

/// The metrics text for a `/patroni` status object.
pub fn render(status: &Map<String, Value>, scope: &str, name: &str) -> String {
    let labels = format!("{{scope=\"{}\",name=\"{}\"}}", escape(scope), escape(name));
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: String| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        let _ = writeln!(out, "{name}{labels} {value}");
    };
    let get = |k: &str| status.get(k);
    let xlog = |k: &str| {
        get("xlog")
            .and_then(|x| x.get(k))
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .to_string()
    };
    let flag = |v: Option<&Value>| u8::from(v.and_then(Value::as_bool) == Some(true)).to_string();
    let role = get("role").and_then(Value::as_str).unwrap_or_default();
    let state = get("state").and_then(Value::as_str).unwrap_or_default();
    let version = get("patroni")
        .and_then(|p| p.get("version"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .split('.')
        .map(|p| format!("{p:0>2}"))
        .collect::<String>();
    metric(
        "patroni_version",
        "gauge",
        "Patroni semver without periods.",
        version,
    );
    metric(
        "patroni_postgres_running",
        "gauge",
        "Value is 1 if Postgres is running, 0 otherwise.",
        u8::from(state == "running").to_string(),
    );
    let started = get("postmaster_start_time")
        .and_then(Value::as_str)
        .and_then(|t| DateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S%.f%#z").ok())
        .map_or_else(
            || "0".to_owned(),
            |t| (t.timestamp_micros() as f64 / 1e6).to_string(),
        );
    metric(
        "patroni_postmaster_start_time",
        "gauge",
        "Epoch seconds since Postgres started.",
        started,
    );
    metric(
        "patroni_primary",
        "gauge",
        "Value is 1 if this node is the leader, 0 otherwise.",
        u8::from(role == "primary").to_string(),
    );
    metric(
        "patroni_xlog_location",
        "counter",
        "Current location of the Postgres transaction log, 0 if this node is not the leader.",
        xlog("location"),
    );
    metric(
        "patroni_standby_leader",
        "gauge",
        "Value is 1 if this node is the standby_leader, 0 otherwise.",
        u8::from(role == "standby_leader").to_string(),
    );
    metric(
        "patroni_replica",
        "gauge",
        "Value is 1 if this node is a replica, 0 otherwise.",
        u8::from(role == "replica").to_string(),
    );
    metric(
        "patroni_sync_standby",
        "gauge",
        "Value is 1 if this node is a sync standby, 0 otherwise.",
        flag(get("sync_standby")),
    );
    metric(
        "patroni_quorum_standby",
        "gauge",
        "Value is 1 if this node is a quorum standby, 0 otherwise.",
        flag(get("quorum_standby")),
    );
    metric(
        "patroni_xlog_received_location",
        "counter",
        "Current location of the received Postgres transaction log, 0 if this node is not a replica.",
        xlog("received_location"),
    );
    metric(
        "patroni_xlog_replayed_location",
        "counter",
        "Current location of the replayed Postgres transaction log, 0 if this node is not a replica.",
        xlog("replayed_location"),
    );
    metric(
        "patroni_xlog_replayed_timestamp",
        "gauge",
        "Current timestamp of the replayed Postgres transaction log, 0 if null.",
        "0".to_owned(),
    );
    metric(
        "patroni_xlog_paused",
        "gauge",
        "Value is 1 if the Postgres xlog is paused, 0 otherwise.",
        flag(get("xlog").and_then(|x| x.get("paused"))),
    );
    let server_version = get("server_version").and_then(Value::as_u64).unwrap_or(0);
    if server_version >= 90_600 {
        let replication = get("replication_state").and_then(Value::as_str);
        metric(
            "patroni_postgres_streaming",
            "gauge",
            "Value is 1 if Postgres is streaming, 0 otherwise.",
            u8::from(replication == Some("streaming")).to_string(),
        );
        metric(
            "patroni_postgres_in_archive_recovery",
            "gauge",
            "Value is 1 if Postgres is replicating from archive, 0 otherwise.",
            u8::from(replication == Some("in archive recovery")).to_string(),
        );
    }
    metric(
        "patroni_postgres_server_version",
        "gauge",
        "Version of Postgres (if running), 0 otherwise.",
        server_version.to_string(),
    );
    metric(
        "patroni_cluster_unlocked",
        "gauge",
        "Value is 1 if the cluster is unlocked, 0 if locked.",
        flag(get("cluster_unlocked")),
    );
    metric(
        "patroni_failsafe_mode_is_active",
        "gauge",
        "Value is 1 if failsafe mode is active, 0 if inactive.",
        flag(get("failsafe_mode_is_active")),
    );
    metric(
        "patroni_postgres_timeline",
        "gauge",
        "Postgres timeline of this node (if running), 0 otherwise.",
        get("timeline")
            .and_then(Value::as_u64)
            .unwrap_or(0)
            .to_string(),
    );
    metric(
        "patroni_dcs_last_seen",
        "gauge",
        "Epoch timestamp when DCS was last contacted successfully by Patroni.",
        get("dcs_last_seen")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .to_string(),
    );
    metric(
        "patroni_pending_restart",
        "gauge",
        "Value is 1 if the node needs a restart, 0 otherwise.",
        flag(get("pending_restart")),
    );
    metric(
        "patroni_is_paused",
        "gauge",
        "Value is 1 if auto failover is disabled, 0 otherwise.",
        flag(get("pause")),
    );
    let index = STATES
        .iter()
        .position(|(text, _)| *text == state)
        .map_or(-1, |i| i as i64);
    let values: Vec<String> = STATES
        .iter()
        .enumerate()
        .map(|(i, (_, name))| format!("{i}={name}"))
        .collect();
    let _ = writeln!(
        out,
        "# HELP patroni_postgres_state Numeric representation of Postgres state."
    );
    let _ = writeln!(out, "# Values: {}", values.join(", "));
    let _ = writeln!(out, "# TYPE patroni_postgres_state gauge");
    let _ = writeln!(out, "patroni_postgres_state{labels} {index}");
    out
}

/// Escape a Prometheus label value.
pub fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_primary_reports_its_role_position_and_state() {
        let status = json!({"state": "running", "role": "primary", "server_version": 150004,
            "xlog": {"location": 12345}, "timeline": 3, "dcs_last_seen": 1700000000,
            "postmaster_start_time": "2024-07-02 16:06:42.123456+02:00",
            "patroni": {"version": "4.1.4", "scope": "s", "name": "n"}});
        let text = render(status.as_object().unwrap(), "s", "n");
        for line in [
            "patroni_version{scope=\"s\",name=\"n\"} 040104",
            "patroni_primary{scope=\"s\",name=\"n\"} 1",
            "patroni_replica{scope=\"s\",name=\"n\"} 0",
            "patroni_xlog_location{scope=\"s\",name=\"n\"} 12345",
            "patroni_postgres_streaming{scope=\"s\",name=\"n\"} 0",
            "patroni_postgres_timeline{scope=\"s\",name=\"n\"} 3",
            "patroni_postmaster_start_time{scope=\"s\",name=\"n\"} 1719929202.123456",
            "patroni_postgres_state{scope=\"s\",name=\"n\"} 5",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}:\n{text}");
        }
        assert!(!text.contains("patroni_master"));
    }

    #[test]
    fn every_sample_has_help_and_type() {
        let text = render(&Map::new(), "s", "n\"x");
        let samples = text.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(
            text.lines().filter(|l| l.starts_with("# TYPE")).count(),
            samples
        );
        assert!(text.contains("name=\"n\\\"x\""));
        assert!(text.contains("patroni_postgres_state{scope=\"s\",name=\"n\\\"x\"} -1"));
    }
}
