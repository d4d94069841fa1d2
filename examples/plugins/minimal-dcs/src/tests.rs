//! The backend's logic on keel-sdk's fake host: plain `cargo test`, no wasm, no etcd.
//! (The built component runs the DCS conformance kit on a real etcd in
//! tests/it/example_plugins.rs.)

use std::time::Duration;

use keel_sdk::dcs::{DcsError, DcsPlugin, LoadScope, Settings, ValueKey};
use keel_sdk::testing::FakeHost;

use crate::MinimalDcs;

fn member(name: &str) -> MinimalDcs {
    MinimalDcs::configure(Settings {
        namespace: "/service/".into(),
        scope: "demo".into(),
        group: None,
        member: name.into(),
        ttl: 10,
        loop_wait: 2,
        retry_timeout: 2,
        config: r#"{"hosts":"127.0.0.1:2379"}"#.into(),
    })
    .unwrap()
}

#[test]
fn the_lock_has_one_holder_and_lapses_without_renewal() {
    let host = FakeHost::install();
    let (mut a, mut b) = (member("a"), member("b"));
    assert!(a.attempt_to_acquire_leader().unwrap());
    assert!(!b.attempt_to_acquire_leader().unwrap());
    host.etcd().advance(Duration::from_secs(8));
    assert!(a.update_leader().unwrap(), "renewed within ttl");
    host.etcd().advance(Duration::from_secs(8));
    assert_eq!(host.etcd().value("/service/demo/leader").as_deref(), Some("a"));
    host.etcd().advance(Duration::from_secs(3));
    assert!(b.attempt_to_acquire_leader().unwrap(), "a's lease ran out");
    assert!(!a.update_leader().unwrap(), "a is told, not given an error");
    assert!(!a.delete_leader().unwrap(), "a cannot release b's lock");
}

#[test]
fn a_new_ttl_moves_the_leader_key_onto_a_new_lease() {
    let host = FakeHost::install();
    let mut a = member("a");
    assert!(a.attempt_to_acquire_leader().unwrap());
    a.set_ttl(30).unwrap();
    assert!(a.update_leader().unwrap());
    host.etcd().advance(Duration::from_secs(20));
    assert_eq!(host.etcd().value("/service/demo/leader").as_deref(), Some("a"));
}

#[test]
fn compare_and_set_refuses_a_stale_version() {
    let _host = FakeHost::install();
    let mut a = member("a");
    let v1 = a.set_value(ValueKey::Config, "{}".into(), None).unwrap();
    a.set_value(ValueKey::Config, "{\"ttl\":20}".into(), Some(v1.clone())).unwrap();
    let stale = a.set_value(ValueKey::Config, "{}".into(), Some(v1));
    assert!(matches!(stale, Err(DcsError::Conflict(_))), "{stale:?}");
    let loaded = a.load(LoadScope::OwnGroup).unwrap();
    assert_eq!(loaded[0].entries[0].key, "config");
    assert_eq!(loaded[0].entries[0].value, "{\"ttl\":20}");
}
