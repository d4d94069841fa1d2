//! Environment overrides: Patroni's names, the `KEEL_` prefix, and where values land.
#![allow(clippy::unwrap_used)] // helpers in test binaries may unwrap, like the tests

use keel_config::{Env, Settings};
use serde_json::json;

const YAML: &str = "
name: pg1
scope: demo
restapi: {listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}
etcd3: {hosts: 127.0.0.1:2379}
mydcs: {endpoint: a}
postgresql:
  listen: 127.0.0.1:5432
  connect_address: 127.0.0.1:5432
  data_dir: /data
  authentication:
    superuser: {username: postgres}
    replication: {username: rep}
";

fn env(vars: &[(&str, &str)]) -> Env {
    vars.iter().copied().collect()
}

#[test]
fn patroni_names_override_the_file() {
    let e = env(&[
        ("PATRONI_NAME", "pg7"),
        ("PATRONI_SCOPE", "other"),
        ("PATRONI_NAMESPACE", "/keel"),
        ("PATRONI_LOG_LEVEL", "debug"),
        ("PATRONI_RESTAPI_LISTEN", "0.0.0.0:9008"),
        ("PATRONI_RESTAPI_CONNECT_ADDRESS", "10.0.0.7:9008"),
        ("PATRONI_RESTAPI_USERNAME", "admin"),
        ("PATRONI_RESTAPI_PASSWORD", "pw"),
        ("PATRONI_RESTAPI_VERIFY_CLIENT", "required"),
        ("PATRONI_RESTAPI_ALLOWLIST", "10.0.0.1, 10.0.0.2"),
        ("PATRONI_RESTAPI_REQUEST_QUEUE_SIZE", "12"),
        ("PATRONI_CTL_INSECURE", "true"),
        ("PATRONI_CTL_CACERT", "/ca"),
        ("PATRONI_POSTGRESQL_LISTEN", "*:5433"),
        ("PATRONI_POSTGRESQL_CONNECT_ADDRESS", "10.0.0.7:5433"),
        ("PATRONI_POSTGRESQL_PROXY_ADDRESS", "10.0.0.7:6432"),
        ("PATRONI_POSTGRESQL_DATA_DIR", "/pgdata"),
        ("PATRONI_POSTGRESQL_CONFIG_DIR", "/pgconf"),
        ("PATRONI_POSTGRESQL_PGPASS", "/tmp/pgpass"),
        ("PATRONI_POSTGRESQL_BIN_DIR", "/usr/lib/postgresql/16/bin"),
        ("PATRONI_POSTGRESQL_BIN_PG_REWIND", "pg_rewind16"),
        ("PATRONI_SUPERUSER_USERNAME", "su"),
        ("PATRONI_SUPERUSER_PASSWORD", "supw"),
        ("PATRONI_REPLICATION_SSLMODE", "require"),
        ("PATRONI_REWIND_USERNAME", "rewinder"),
        ("PATRONI_REWIND_CHANNEL_BINDING", "require"),
    ]);
    let s = Settings::from_yaml_str(YAML, &e).unwrap();
    assert_eq!(
        (s.name.as_str(), s.scope.as_str(), s.namespace.as_str()),
        ("pg7", "other", "/keel/")
    );
    assert_eq!(s.log.level, keel_config::LogLevel::Debug);
    assert_eq!(s.restapi.listen.to_string(), "0.0.0.0:9008");
    assert_eq!(s.restapi.connect_address.host, "10.0.0.7");
    assert_eq!(s.restapi.authentication.as_ref().unwrap().password, "pw");
    assert_eq!(
        s.restapi.verify_client,
        Some(keel_config::VerifyClient::Required)
    );
    assert_eq!(s.restapi.allowlist, ["10.0.0.1", "10.0.0.2"]);
    assert_eq!(s.restapi.request_queue_size, 12);
    assert!(s.ctl.insecure);
    let pg = &s.postgresql;
    assert_eq!(
        (pg.listen.listen_addresses(), pg.listen.port),
        ("*".to_owned(), 5433)
    );
    assert_eq!(pg.proxy_address.as_ref().unwrap().port, 6432);
    assert_eq!(pg.data_dir.to_str(), Some("/pgdata"));
    assert_eq!(pg.config_dir().to_str(), Some("/pgconf"));
    assert_eq!(
        pg.pgpass.as_deref().and_then(|p| p.to_str()),
        Some("/tmp/pgpass")
    );
    assert_eq!(pg.bin_name["pg_rewind"], "pg_rewind16");
    assert_eq!(pg.authentication.superuser.username, "su");
    assert_eq!(
        pg.authentication.superuser.password.as_deref(),
        Some("supw")
    );
    assert_eq!(
        pg.authentication.replication.username, "rep",
        "file values survive a partial override"
    );
    assert_eq!(pg.authentication.replication.options["sslmode"], "require");
    let rewind = pg.authentication.rewind.as_ref().unwrap();
    assert_eq!(
        (
            rewind.username.as_str(),
            rewind.options["channel_binding"].as_str()
        ),
        ("rewinder", "require")
    );
}

#[test]
fn keel_prefix_wins_over_patroni() {
    let e = env(&[
        ("PATRONI_NAME", "from-patroni"),
        ("KEEL_NAME", "from-keel"),
        ("PATRONI_ETCD3_HOSTS", "a:1"),
        ("KEEL_ETCD3_HOSTS", "b:1,c:1"),
        ("PATRONI_SCOPE", "only-patroni"),
        ("KEEL_LOG_LEVEL", ""),
        ("PATRONI_LOG_LEVEL", "ERROR"),
    ]);
    let s = Settings::from_yaml_str(YAML, &e).unwrap();
    assert_eq!(s.name, "from-keel");
    assert_eq!(s.scope, "only-patroni");
    assert_eq!(s.plugin_sections["etcd3"]["hosts"], json!(["b:1", "c:1"]));
    assert_eq!(
        s.log.level,
        keel_config::LogLevel::Error,
        "an empty KEEL_ value does not hide PATRONI_"
    );
}

#[test]
fn plugin_sections_get_overrides() {
    let e = env(&[
        ("PATRONI_ETCD3_HOSTS", "10.0.0.1:2379,10.0.0.2:2379"),
        ("PATRONI_ETCD3_PROTOCOL", "https"),
        ("PATRONI_ETCD3_CACERT", "/ca"),
        ("PATRONI_ETCD3_USERNAME", "root"),
        ("PATRONI_ETCD3_PASSWORD", "pw"),
        ("PATRONI_ETCD_PORT", "2379"),
        ("PATRONI_CITUS_GROUP", "2"),
        ("PATRONI_CITUS_DATABASE", "citus"),
        ("PATRONI_MYDCS_ENDPOINT", "b"),
        ("PATRONI_UNRELATED_THING", "x"),
    ]);
    let s = Settings::from_yaml_str(YAML, &e).unwrap();
    assert_eq!(
        s.plugin_sections["etcd3"],
        json!({"hosts": ["10.0.0.1:2379", "10.0.0.2:2379"], "protocol": "https", "cacert": "/ca",
               "username": "root", "password": "pw"})
    );
    assert_eq!(s.plugin_sections["etcd"], json!({"port": 2379}));
    assert_eq!(
        s.plugin_sections["citus"],
        json!({"group": 2, "database": "citus"})
    );
    assert_eq!(s.plugin_sections["mydcs"], json!({"endpoint": "b"}));
    assert!(!s.plugin_sections.contains_key("unrelated"));
}

#[test]
fn configuration_document_from_environment() {
    let e = env(&[("PATRONI_CONFIGURATION", YAML), ("PATRONI_NAME", "pg3")]);
    let s = Settings::load_or_env(None, &e).unwrap();
    assert_eq!(s.name, "pg3");
    let e = env(&[("PATRONI_CONFIGURATION", "name: [")]);
    let err = Settings::load_or_env(None, &e).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("PATRONI_CONFIGURATION: invalid YAML"),
        "{err}"
    );
}

#[test]
fn unparsable_plugin_values_are_warnings() {
    let e = env(&[("PATRONI_ETCD3_PORT", "many")]);
    let s = Settings::from_yaml_str(YAML, &e).unwrap();
    assert_eq!(
        s.plugin_sections["etcd3"],
        json!({"hosts": "127.0.0.1:2379"})
    );
    assert!(
        s.warnings
            .iter()
            .any(|w| w.starts_with("environment etcd3.port:")),
        "{:?}",
        s.warnings
    );
}
