//! Whole files parse into the expected `Settings`.
#![allow(clippy::unwrap_used)] // helpers in test binaries may unwrap, like the tests

use std::path::{Path, PathBuf};
use std::time::Duration;

use keel_config::{
    Env, InitdbOption, LogLevel, PluginLimits, Settings, SynchronousMode, VerifyClient,
    WatchdogMode,
};
use serde_json::json;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn feasibility_peer_config_parses() {
    let s = Settings::load(&fixture("patroni.yml"), &Env::empty()).unwrap();
    assert_eq!(s.warnings, Vec::<String>::new());
    assert_eq!(
        (s.name.as_str(), s.scope.as_str(), s.namespace.as_str()),
        ("pg1", "probe-default", "/service/")
    );
    assert_eq!(s.restapi.listen.to_string(), "127.0.0.1:8008");
    assert_eq!(
        s.plugin_sections["etcd3"],
        json!({"hosts": "127.0.0.1:2379"})
    );
    assert_eq!(
        s.bootstrap.dcs["postgresql"]["parameters"]["shared_buffers"],
        json!("32MB")
    );
    assert_eq!(s.bootstrap.dcs_config.ttl, 30);
    assert!(s.bootstrap.dcs_config.postgresql.use_slots);
    assert_eq!(
        s.bootstrap.dcs_config.postgresql.parameters["max_connections"],
        "50"
    );
    let args: Vec<String> = s
        .bootstrap
        .initdb
        .iter()
        .map(InitdbOption::to_arg)
        .collect();
    assert_eq!(args, ["--encoding=UTF8", "--data-checksums", "--locale=C"]);
    let pg = &s.postgresql;
    assert_eq!(pg.listen.hosts, ["127.0.0.1"]);
    assert_eq!(pg.listen.port, 5441);
    assert_eq!(
        pg.config_dir(),
        Path::new("/tmp/patroni-peer/default/data/pg1")
    );
    assert_eq!(pg.authentication.replication.username, "replicator");
    assert_eq!(
        pg.authentication
            .rewind
            .as_ref()
            .unwrap()
            .password
            .as_deref(),
        Some("postgres")
    );
    assert_eq!(
        pg.parameters["unix_socket_directories"],
        "/tmp/patroni-peer/default/run"
    );
    assert_eq!(pg.pg_hba.as_ref().unwrap().len(), 3);
    assert_eq!(pg.pg_ctl_timeout(), Duration::from_secs(60));
    assert_eq!(pg.database, "postgres");
    assert_eq!(s.watchdog.mode, WatchdogMode::Off);
    assert!(!s.tags.nofailover());
    assert_eq!(s.tags.published(), serde_json::Map::new());
    assert_eq!(
        s.plugin_limits("etcd3"),
        PluginLimits {
            memory_mb: 64,
            call_timeout_ms: 5000
        }
    );

    let eff = s.effective_postgresql(&s.bootstrap.dcs_config);
    assert!(eff.use_pg_rewind && eff.use_slots);
    assert_eq!(eff.parameters["max_connections"], "50");
    assert_eq!(eff.parameters["wal_keep_size"], "128MB");
    assert_eq!(eff.parameters["hot_standby"], "on");
    assert_eq!(eff.create_replica_methods, ["basebackup"]);
}

#[test]
fn every_section_parses_leniently() {
    let s = Settings::load(&fixture("full.yml"), &Env::empty()).unwrap();
    assert_eq!(
        s.warnings,
        [
            "postgresql.parameters.max_connections: only the DCS configuration (or Keel itself) sets this GUC; ignored here"
        ]
    );
    assert_eq!(s.namespace, "/keel/clusters/");
    assert_eq!(s.thread_pool_size, 8);
    assert!(s.log.json);
    assert_eq!(s.log.level, LogLevel::Warning);
    assert_eq!(s.log.file_size, 16 << 20);
    assert_eq!(s.restapi.listen.host, "0.0.0.0");
    assert_eq!(s.restapi.authentication.as_ref().unwrap().username, "admin");
    assert_eq!(s.restapi.verify_client, Some(VerifyClient::Optional));
    assert_eq!(s.restapi.allowlist, ["10.0.0.0/8", "127.0.0.1"]);
    assert!(s.restapi.allowlist_include_members);
    assert_eq!(s.restapi.request_queue_size, 16);
    assert!(s.ctl.insecure);
    assert_eq!(
        s.plugin_sections["citus"],
        json!({"group": 0, "database": "citus"})
    );
    assert_eq!(s.bootstrap.method, "clone");
    let clone = &s.bootstrap.custom_methods["clone"];
    assert!(clone.keep_existing_recovery_conf && !clone.no_params);
    assert_eq!(clone.extra["source"], json!("s3://bucket"));
    assert_eq!(
        s.bootstrap.dcs_config.synchronous_mode,
        SynchronousMode::Quorum
    );
    assert_eq!(
        s.bootstrap.post_bootstrap.as_deref(),
        Some("/usr/local/bin/post.sh")
    );
    let pg = &s.postgresql;
    assert_eq!(pg.listen.hosts, ["0.0.0.0", "::1"]);
    assert_eq!(pg.proxy_address.as_ref().unwrap().port, 6432);
    assert_eq!(pg.bin_name["pg_ctl"], "pg_ctl16");
    assert_eq!(
        pg.authentication.superuser.options["sslmode"],
        "verify-full"
    );
    assert_eq!(
        pg.authentication.replication.options["channel_binding"],
        "require"
    );
    assert_eq!(pg.parameters["fsync"], "on");
    assert_eq!(pg.parameters["random_page_cost"], "1.1");
    assert_eq!(pg.parameters["shared_buffers"], "1GB");
    assert!(
        !pg.parameters.contains_key("max_connections"),
        "command-line GUCs come from the DCS"
    );
    assert_eq!(pg.pg_ctl_timeout(), Duration::from_secs(120));
    assert_eq!(pg.use_pg_rewind, Some(true));
    assert!(pg.use_unix_socket && pg.remove_data_directory_on_rewind_failure);
    assert_eq!(pg.callbacks["on_role_change"], "/usr/local/bin/role.sh");
    assert_eq!(
        pg.replica_method_sections["wal_g"]["no_leader"],
        json!(true)
    );
    assert_eq!(pg.replica_method_sections.len(), 2);
    assert_eq!(s.watchdog.mode, WatchdogMode::Required);
    assert_eq!(s.watchdog.safety_margin, -1);
    assert!(!s.tags.nofailover() && s.tags.nosync());
    assert_eq!((s.tags.failover_priority(), s.tags.sync_priority()), (3, 0));
    assert_eq!(
        serde_json::Value::Object(s.tags.published()),
        json!({"failover_priority": 3, "nosync": true, "replicatefrom": "pg1", "zone": "eu-1"})
    );
    assert_eq!(
        s.plugins.cache_dir(),
        Some(PathBuf::from("/opt/keel/plugins/.cache"))
    );
    assert_eq!(
        s.plugin_limits("etcd3"),
        PluginLimits {
            memory_mb: 128,
            call_timeout_ms: 2000
        }
    );
    assert_eq!(
        s.plugin_limits("citus"),
        PluginLimits {
            memory_mb: 128,
            call_timeout_ms: 5000
        }
    );
}

#[test]
fn warnings_name_their_key_paths() {
    let yaml = std::fs::read_to_string(fixture("patroni.yml")).unwrap()
        + "ttl: 10\nloop_wait: 1\nlog: {levle: DEBUG}\n";
    let yaml = yaml
        .replace(
            "  pg_hba: [",
            "  use_slots: false\n  typo_key: 1\n  pg_hba: [",
        )
        .replace(
            "connect_address: 127.0.0.1:8008}",
            "connect_address: 127.0.0.1:8008, bogus: 1}",
        )
        .replace(
            "watchdog: {mode: 'off'}",
            "watchdog: {mode: automatic, devise: x}",
        )
        .replace("    ttl: 30\n", "    ttl: thirty\n");
    let s = Settings::from_yaml_str(&yaml, &Env::empty()).unwrap();
    let mut keys: Vec<&str> = s
        .warnings
        .iter()
        .map(|w| w.split(':').next().unwrap())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "bootstrap.dcs.ttl",
            "log.levle",
            "loop_wait",
            "postgresql.typo_key",
            "postgresql.use_slots",
            "restapi.bogus",
            "ttl",
            "watchdog.devise"
        ],
        "{:?}",
        s.warnings
    );
    assert!(!s.plugin_sections.contains_key("ttl"));
}
