//! The DCS `config` document: lenient reading, timeouts, and the local/DCS merge.
#![allow(clippy::unwrap_used)] // helpers in test binaries may unwrap, like the tests

use std::time::Duration;

use keel_config::{DynamicConfig, Env, Settings, SynchronousMode, TtlFloor};
use serde_json::{Value, json};

const LOCAL: &str = "
name: pg1
scope: demo
restapi: {listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /data
  authentication: {superuser: {username: postgres}, replication: {username: rep}}
  parameters: {work_mem: 8MB, max_connections: 10}
  pg_hba: [local all all trust]
  use_pg_rewind: false
  basebackup: {checkpoint: fast}
";

#[test]
fn garbage_never_fails() {
    for text in [
        "",
        "{",
        "[]",
        "true",
        "{\"ttl\": {}}",
        "{\"postgresql\": 7, \"slots\": []}",
    ] {
        let (c, w) = DynamicConfig::from_json_lenient(text);
        assert_eq!(c.ttl, 30, "{text}");
        assert!(c.postgresql.use_slots, "{text}");
        assert!(!w.is_empty(), "{text}: a warning is expected");
    }
}

#[test]
fn defaults_are_patronis() {
    let (c, w) = DynamicConfig::from_json_lenient("{}");
    assert!(w.is_empty());
    assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 10, 10));
    assert_eq!(c.maximum_lag_on_failover, 1_048_576);
    assert_eq!(c.maximum_lag_on_syncnode, -1);
    assert_eq!(
        (
            c.max_timelines_history,
            c.primary_start_timeout,
            c.primary_stop_timeout
        ),
        (0, 300, 0)
    );
    assert_eq!(c.synchronous_mode, SynchronousMode::Off);
    assert!(!c.synchronous_mode_strict && !c.failsafe_mode && !c.check_timeline && !c.pause);
    assert_eq!((c.synchronous_node_count, c.member_slots_ttl), (1, 1800));
    assert!(c.standby_cluster.is_none() && !c.is_standby_cluster());
    assert!(c.postgresql.use_slots);
}

#[test]
fn lenient_values() {
    let (c, w) = DynamicConfig::from_json_lenient(
        r#"{"ttl": "20", "loop_wait": 2.0, "maximum_lag_on_failover": "16MB", "pause": "on",
            "failsafe_mode": 1, "synchronous_node_count": "2", "check_timeline": "TRUE"}"#,
    );
    assert!(w.is_empty(), "{w:?}");
    assert_eq!((c.ttl, c.loop_wait), (20, 2));
    assert_eq!(c.maximum_lag_on_failover, 16 << 20);
    assert!(c.pause && c.failsafe_mode && c.check_timeline);
    assert_eq!(c.synchronous_node_count, 2);
}

#[test]
fn dcs_postgresql_rules() {
    let (c, w) = DynamicConfig::from_value_lenient(&json!({"postgresql": {
        "use_slots": "off",
        "data_dir": "/evil", "listen": "0.0.0.0:1", "authentication": {},
        "parameters": {"max_connections": 10, "max_wal_senders": "5", "wal_level": "logical",
                       "port": 6000, "hot_standby": "off", "shared_buffers": "1GB"},
    }}));
    assert!(!c.postgresql.use_slots);
    let p = &c.postgresql.parameters;
    assert!(
        !p.contains_key("max_connections"),
        "below Patroni's minimum of 25"
    );
    assert!(!p.contains_key("port") && !p.contains_key("hot_standby"));
    assert_eq!(
        (p["max_wal_senders"].as_str(), p["wal_level"].as_str()),
        ("5", "logical")
    );
    assert!(!c.postgresql.other.contains_key("data_dir"));
    let mut paths: Vec<&str> = w.iter().map(|w| w.split(':').next().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(
        paths,
        [
            "postgresql.authentication",
            "postgresql.data_dir",
            "postgresql.listen",
            "postgresql.parameters.hot_standby",
            "postgresql.parameters.max_connections",
            "postgresql.parameters.port",
        ]
    );
}

#[test]
fn local_wins_except_dcs_only_keys() {
    let s = Settings::from_yaml_str(LOCAL, &Env::empty()).unwrap();
    let (dcs, _) = DynamicConfig::from_value_lenient(&json!({"postgresql": {
        "use_slots": false,
        "use_pg_rewind": true,
        "pg_ctl_timeout": 30,
        "pg_hba": ["host all all 0.0.0.0/0 md5"],
        "pg_ident": ["map a b"],
        "create_replica_methods": ["wal_g", "basebackup"],
        "wal_g": {"command": "restore"},
        "basebackup": {"max-rate": "10M"},
        "parameters": {"work_mem": "4MB", "max_connections": 200, "maintenance_work_mem": "64MB"},
    }}));
    let eff = s.effective_postgresql(&dcs);
    assert!(!eff.use_slots, "use_slots only comes from the DCS");
    assert!(!eff.use_pg_rewind, "local false beats DCS true");
    assert_eq!(eff.pg_ctl_timeout, Duration::from_secs(30));
    assert_eq!(
        eff.pg_hba.as_deref(),
        Some(&["local all all trust".to_owned()][..])
    );
    assert_eq!(eff.pg_ident.as_deref(), Some(&["map a b".to_owned()][..]));
    assert_eq!(eff.create_replica_methods, ["wal_g", "basebackup"]);
    assert_eq!(
        eff.replica_method_sections["basebackup"],
        json!({"checkpoint": "fast"})
    );
    assert_eq!(
        eff.replica_method_sections["wal_g"],
        json!({"command": "restore"})
    );
    let p = &eff.parameters;
    assert_eq!(p["work_mem"], "8MB", "local parameters win");
    assert_eq!(
        p["max_connections"], "200",
        "command-line GUCs only from the DCS"
    );
    assert_eq!(p["maintenance_work_mem"], "64MB");
    assert_eq!(
        (p["wal_level"].as_str(), p["max_wal_senders"].as_str()),
        ("hot_standby", "10")
    );
}

#[test]
fn timeouts_both_floors() {
    let (c, _) =
        DynamicConfig::from_json_lenient(r#"{"ttl": 10, "loop_wait": 2, "retry_timeout": 3}"#);
    let (patroni, w) = c.validated_timeouts(TtlFloor::Patroni);
    assert_eq!(
        (patroni.ttl, patroni.loop_wait, patroni.retry_timeout),
        (20, 2, 3)
    );
    assert_eq!(w, ["ttl=10 can't be smaller than 20, adjusting to 20"]);
    let (keel, w) = c.validated_timeouts(TtlFloor::keel());
    assert_eq!((keel.ttl, keel.loop_wait, keel.retry_timeout), (10, 2, 3));
    assert!(w.is_empty());
    let (c, _) =
        DynamicConfig::from_json_lenient(r#"{"ttl": 6, "loop_wait": 5, "retry_timeout": 5}"#);
    let (keel, w) = c.validated_timeouts(TtlFloor::Keel { min_ttl: 4 });
    assert_eq!((keel.ttl, keel.loop_wait, keel.retry_timeout), (6, 1, 2));
    assert!(keel.loop_wait + 2 * keel.retry_timeout <= keel.ttl);
    assert_eq!(w.len(), 1);
}

#[test]
fn bootstrap_dcs_round_trips_through_to_json() {
    let (c, _) = DynamicConfig::from_json_lenient(
        r#"{"ttl":30,"standby_cluster":{"host":"10.0.0.9","port":5432,"primary_slot_name":"s"},
            "slots":{"l":{"type":"logical","database":"d","plugin":"p"}},"ignore_slots":[{"name":"x"}]}"#,
    );
    let json = c.to_json();
    assert!(
        !json.contains('\n') && !json.contains(": "),
        "compact: {json}"
    );
    let v: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["standby_cluster"],
        json!({"host": "10.0.0.9", "port": 5432, "primary_slot_name": "s"})
    );
    assert_eq!(v["slots"]["l"]["plugin"], json!("p"));
    let (again, w) = DynamicConfig::from_json_lenient(&json);
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(again, c);
    assert!(again.is_standby_cluster());
}
