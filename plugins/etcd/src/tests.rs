//! Native tests of the backend's semantics on the SDK's fake host.

use std::time::Duration;

use keel_sdk::dcs::{DcsError, DcsPlugin, LoadScope, Settings, ValueKey};
use keel_sdk::testing::FakeHost;

use crate::Etcd3;

fn settings(member: &str) -> Settings {
    Settings {
        namespace: "/service/".into(),
        scope: "batman".into(),
        group: None,
        member: member.into(),
        ttl: 30,
        loop_wait: 10,
        retry_timeout: 1,
        config: r#"{"hosts": "127.0.0.1:2379"}"#.into(),
    }
}

#[test]
fn one_leader_among_contenders_and_the_key_holds_the_name() {
    let host = FakeHost::install();
    let mut members: Vec<Etcd3> = (1..=5)
        .map(|i| Etcd3::configure(settings(&format!("pg{i}"))).unwrap())
        .collect();
    let winners = members
        .iter_mut()
        .filter_map(|m| m.attempt_to_acquire_leader().unwrap().then_some(()))
        .count();
    assert_eq!(winners, 1);
    assert_eq!(
        host.etcd().value("/service/batman/leader").as_deref(),
        Some("pg1")
    );
}

#[test]
fn the_leader_key_expires_with_the_lease_unless_renewed() {
    let host = FakeHost::install();
    let mut pg1 = Etcd3::configure(settings("pg1")).unwrap();
    assert!(pg1.attempt_to_acquire_leader().unwrap());
    host.etcd().advance(Duration::from_secs(20));
    pg1.load(LoadScope::OwnGroup).unwrap();
    assert!(pg1.update_leader().unwrap(), "renewed before expiry");
    host.etcd().advance(Duration::from_secs(29));
    assert!(
        host.etcd().value("/service/batman/leader").is_some(),
        "the renewal restarted the TTL"
    );
    host.etcd().advance(Duration::from_secs(2));
    assert!(
        host.etcd().value("/service/batman/leader").is_none(),
        "gone after ttl without renewal"
    );
}

#[test]
fn renewal_after_losing_the_lease_reattaches_only_our_own_key() {
    let host = FakeHost::install();
    let mut pg1 = Etcd3::configure(settings("pg1")).unwrap();
    let mut pg2 = Etcd3::configure(settings("pg2")).unwrap();
    assert!(pg1.attempt_to_acquire_leader().unwrap());
    host.etcd().advance(Duration::from_secs(31));
    assert!(
        pg2.attempt_to_acquire_leader().unwrap(),
        "pg1's lock expired"
    );
    pg1.load(LoadScope::OwnGroup).unwrap();
    assert!(!pg1.update_leader().unwrap(), "pg2 holds the key now");
    assert_eq!(
        host.etcd().value("/service/batman/leader").as_deref(),
        Some("pg2")
    );
}

#[test]
fn compare_and_set_refuses_a_stale_version() {
    let _host = FakeHost::install();
    let mut pg1 = Etcd3::configure(settings("pg1")).unwrap();
    let v1 = pg1.set_value(ValueKey::Config, "{}".into(), None).unwrap();
    let v2 = pg1
        .set_value(ValueKey::Config, r#"{"ttl":20}"#.into(), Some(v1.clone()))
        .unwrap();
    assert!(matches!(
        pg1.set_value(ValueKey::Config, "{}".into(), Some(v1)),
        Err(DcsError::Conflict(_))
    ));
    assert!(matches!(
        pg1.delete_value(ValueKey::Config, Some("1".into())),
        Err(DcsError::Conflict(_))
    ));
    pg1.delete_value(ValueKey::Config, Some(v2)).unwrap();
}

#[test]
fn the_initialize_race_has_one_winner() {
    let _host = FakeHost::install();
    let mut pg1 = Etcd3::configure(settings("pg1")).unwrap();
    let mut pg2 = Etcd3::configure(settings("pg2")).unwrap();
    assert!(pg1.initialize(true, String::new()).unwrap());
    assert!(!pg2.initialize(true, String::new()).unwrap());
    assert!(pg1.initialize(false, "7312345678901234567".into()).unwrap());
}

#[test]
fn member_keys_share_the_lease_and_expire_with_it() {
    let host = FakeHost::install();
    let mut pg1 = Etcd3::configure(settings("pg1")).unwrap();
    pg1.touch_member(r#"{"state":"running"}"#.into()).unwrap();
    let loaded = pg1.load(LoadScope::OwnGroup).unwrap();
    assert_eq!(loaded[0].entries[0].key, "members/pg1");
    assert!(loaded[0].entries[0].session.is_some());
    host.etcd().advance(Duration::from_secs(31));
    assert!(pg1.load(LoadScope::OwnGroup).unwrap()[0].entries.is_empty());
}

#[test]
fn an_outage_is_unavailable_after_the_retry_budget() {
    let host = FakeHost::install();
    let mut pg1 = Etcd3::configure(settings("pg1")).unwrap();
    host.etcd()
        .set_outage(Some(keel_sdk::host::etcd::EtcdError::Unavailable(
            "connection refused".into(),
        )));
    assert!(matches!(
        pg1.attempt_to_acquire_leader(),
        Err(DcsError::Unavailable(_))
    ));
    assert!(matches!(
        pg1.load(LoadScope::OwnGroup),
        Err(DcsError::Unavailable(_))
    ));
}

#[test]
fn a_formation_member_writes_under_its_group() {
    let host = FakeHost::install();
    let mut worker = Etcd3::configure(Settings {
        group: Some(2),
        ..settings("w1")
    })
    .unwrap();
    let mut coordinator = Etcd3::configure(Settings {
        group: Some(0),
        ..settings("c1")
    })
    .unwrap();
    assert!(worker.attempt_to_acquire_leader().unwrap());
    assert!(
        coordinator.attempt_to_acquire_leader().unwrap(),
        "each group has its own leader key"
    );
    assert!(host.etcd().value("/service/batman/2/leader").is_some());
    let formation = coordinator.load(LoadScope::Formation).unwrap();
    assert_eq!(
        formation.iter().map(|g| g.group).collect::<Vec<_>>(),
        vec![Some(0), Some(2)]
    );
    assert_eq!(
        worker.load(LoadScope::Group(0)).unwrap()[0].entries[0].value,
        "c1"
    );
}

#[test]
fn bad_sections_are_refused_naming_the_key() {
    let _host = FakeHost::install();
    for (section, needle) in [
        ("[1]", "expected a mapping"),
        (r#"{"hosts": 5}"#, "etcd3.hosts"),
        (r#"{"protocol": "gopher"}"#, "etcd3.protocol"),
        (r#"{"srv": "example"}"#, "etcd3.srv"),
        (r#"{"ca_cert": "/ca.pem"}"#, "etcd3.cacert"),
    ] {
        match Etcd3::configure(Settings {
            config: section.into(),
            ..settings("pg1")
        }) {
            Err(DcsError::InvalidConfig(message)) => assert!(message.contains(needle), "{message}"),
            Err(other) => panic!("{section}: {other:?}"),
            Ok(_) => panic!("{section}: accepted"),
        }
    }
}

#[test]
fn a_fresh_watcher_without_a_leader_waits_instead_of_replaying_old_leaders() {
    let _host = FakeHost::install();
    let mut pg1 = Etcd3::configure(settings("pg1")).unwrap();
    assert!(pg1.attempt_to_acquire_leader().unwrap());
    assert!(pg1.delete_leader().unwrap());
    // A watch-only instance (as keeld's) that never loaded: no leader version to give.
    let mut watcher = Etcd3::configure(settings("pg2")).unwrap();
    assert!(
        !watcher.watch(None, 1000).unwrap(),
        "the old leader's events are history, not news"
    );
    let mut pg3 = Etcd3::configure(settings("pg3")).unwrap();
    assert!(pg3.attempt_to_acquire_leader().unwrap());
    assert!(watcher.watch(None, 1000).unwrap(), "a new leader wakes it");
}
