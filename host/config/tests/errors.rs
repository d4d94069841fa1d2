//! Every error names the key path at fault.
#![allow(clippy::unwrap_used)] // helpers in test binaries may unwrap, like the tests

use keel_config::{ConfigError, Env, Settings};
use serde_json::{Value, json};

fn base() -> Value {
    json!({
        "name": "pg1",
        "scope": "demo",
        "restapi": {"listen": "127.0.0.1:8008", "connect_address": "127.0.0.1:8008"},
        "postgresql": {
            "listen": "127.0.0.1:5432",
            "connect_address": "127.0.0.1:5432",
            "data_dir": "/data",
            "authentication": {"superuser": {"username": "postgres"}, "replication": {"username": "rep"}},
        },
    })
}

/// Sets (or with `Value::Null`, removes) the value at a `/`-separated pointer.
fn with(pointer: &str, value: Value) -> Value {
    let mut tree = base();
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let mut node = &mut tree;
    for part in parent.split('/').filter(|p| !p.is_empty()) {
        node = node
            .as_object_mut()
            .unwrap()
            .entry(part)
            .or_insert_with(|| json!({}));
    }
    let map = node.as_object_mut().unwrap();
    if value.is_null() {
        map.remove(key);
    } else {
        map.insert(key.to_owned(), value);
    }
    tree
}

fn load(tree: Value, env: &Env) -> Result<Settings, ConfigError> {
    let Value::Object(map) = tree else {
        panic!("not an object")
    };
    Settings::from_tree(map, env)
}

#[test]
fn base_is_valid() {
    let s = load(base(), &Env::empty()).unwrap();
    assert!(s.warnings.is_empty(), "{:?}", s.warnings);
}

#[test]
fn every_error_names_its_key_path() {
    let cases: Vec<(&str, Value, &str)> = vec![
        ("/name", Value::Null, "name"),
        ("/scope", json!(""), "scope"),
        ("/restapi", Value::Null, "restapi.listen"),
        ("/restapi/listen", json!("abc"), "restapi.listen"),
        (
            "/restapi/connect_address",
            json!(":8008"),
            "restapi.connect_address",
        ),
        (
            "/restapi/request_queue_size",
            json!(5000),
            "restapi.request_queue_size",
        ),
        (
            "/restapi/request_queue_size",
            json!("many"),
            "restapi.request_queue_size",
        ),
        (
            "/restapi/allowlist_include_members",
            json!("maybe"),
            "restapi.allowlist_include_members",
        ),
        (
            "/restapi/authentication",
            json!({"username": "u"}),
            "restapi.authentication.password",
        ),
        (
            "/restapi/verify_client",
            json!("always"),
            "restapi.verify_client",
        ),
        ("/ctl/insecure", json!([]), "ctl.insecure"),
        ("/postgresql", json!("text"), "postgresql"),
        ("/postgresql/data_dir", Value::Null, "postgresql.data_dir"),
        (
            "/postgresql/connect_address",
            json!("10.0.0.1"),
            "postgresql.connect_address",
        ),
        (
            "/postgresql/proxy_address",
            json!("x:y"),
            "postgresql.proxy_address",
        ),
        (
            "/postgresql/authentication",
            Value::Null,
            "postgresql.authentication.superuser.username",
        ),
        (
            "/postgresql/authentication/replication",
            json!({"password": "x"}),
            "postgresql.authentication.replication.username",
        ),
        (
            "/postgresql/pg_ctl_timeout",
            json!("soon"),
            "postgresql.pg_ctl_timeout",
        ),
        (
            "/postgresql/parameters/work_mem",
            json!(["4MB"]),
            "postgresql.parameters.work_mem",
        ),
        (
            "/postgresql/pg_hba",
            json!([["host"]]),
            "postgresql.pg_hba[0]",
        ),
        (
            "/postgresql/use_pg_rewind",
            json!("sure"),
            "postgresql.use_pg_rewind",
        ),
        (
            "/bootstrap/initdb",
            json!(["data-checksums", "nosync"]),
            "bootstrap.initdb[1]",
        ),
        (
            "/bootstrap/initdb",
            json!([{"pgdata": "/x"}]),
            "bootstrap.initdb[0]",
        ),
        (
            "/bootstrap/method",
            json!("restore"),
            "bootstrap.restore.command",
        ),
        ("/bootstrap/dcs", json!(5), "bootstrap.dcs"),
        ("/log/level", json!("loud"), "log.level"),
        ("/log/type", json!("xml"), "log.type"),
        ("/log/file_size", json!("big"), "log.file_size"),
        ("/watchdog/mode", json!("sometimes"), "watchdog.mode"),
        (
            "/watchdog/safety_margin",
            json!("x"),
            "watchdog.safety_margin",
        ),
        (
            "/tags/failover_priority",
            json!(-1),
            "tags.failover_priority",
        ),
        ("/tags/nofailover", json!("perhaps"), "tags.nofailover"),
        (
            "/plugins/limits/memory_mb",
            json!(0),
            "plugins.limits.memory_mb",
        ),
        (
            "/plugins/overrides/etcd3/call_timeout_ms",
            json!("x"),
            "plugins.overrides.etcd3.call_timeout_ms",
        ),
        ("/thread_pool_size", json!(2), "thread_pool_size"),
    ];
    for (pointer, value, path) in cases {
        let err = load(with(pointer, value.clone()), &Env::empty())
            .expect_err(&format!("{pointer} = {value} should fail"));
        assert_eq!(err.path(), Some(path), "{pointer} = {value}: {err}");
        assert!(err.to_string().starts_with(&format!("{path}: ")), "{err}");
    }
}

#[test]
fn listen_error_message() {
    let err = load(with("/postgresql/listen", json!("abc")), &Env::empty()).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"postgresql.listen: expected host:port, got "abc""#
    );
    match err {
        ConfigError::Invalid { path, problem } => {
            assert_eq!(path, "postgresql.listen");
            assert_eq!(problem, r#"expected host:port, got "abc""#);
        }
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn environment_values_are_validated_with_their_key_path() {
    let env: Env = [("PATRONI_RESTAPI_LISTEN", "abc")].into_iter().collect();
    let err = load(base(), &env).unwrap_err();
    assert_eq!(err.path(), Some("restapi.listen"));
}

#[test]
fn source_errors() {
    assert!(matches!(
        Settings::from_yaml_str("- a", &Env::empty()),
        Err(ConfigError::NotAMapping { .. })
    ));
    assert!(matches!(
        Settings::from_yaml_str("a: [", &Env::empty()),
        Err(ConfigError::Yaml { .. })
    ));
    assert!(matches!(
        Settings::load_or_env(None, &Env::empty()),
        Err(ConfigError::NoConfiguration)
    ));
    let missing = std::path::Path::new("/nonexistent/keel.yml");
    assert!(matches!(
        Settings::load(missing, &Env::empty()),
        Err(ConfigError::Io { .. })
    ));
}
