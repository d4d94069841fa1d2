//! The handler as the host sees it, over the SDK's fake host: which calls do SQL
//! at all, and what they answer. The rules themselves are tested in the modules.

use keel_sdk::mpp::{Event, EventKind, GroupView, Member, MppError, MppPlugin};
use keel_sdk::testing::{FakeHost, SqlAnswer};

use super::Citus;

fn handler(group: u32) -> Citus {
    Citus::validate_config(format!(r#"{{"group": {group}, "database": "citus"}}"#)).unwrap()
}

fn formation() -> Vec<GroupView> {
    let member = |name: &str, host: &str, role: &str| Member {
        name: name.into(),
        host: Some(host.into()),
        port: 5432,
        role: role.into(),
        state: "running".into(),
        noloadbalance: false,
    };
    vec![
        GroupView {
            group: 0,
            leader: Some("c1".into()),
            members: vec![member("c1", "10.0.0.1", "primary")],
        },
        GroupView {
            group: 1,
            leader: Some("w1".into()),
            members: vec![
                member("w1", "10.0.1.1", "primary"),
                member("w2", "10.0.1.2", "replica"),
            ],
        },
    ]
}

fn before_demote() -> Event {
    Event {
        kind: EventKind::BeforeDemote,
        group: 1,
        leader: "w1".into(),
        host: "10.0.1.1".into(),
        port: 5432,
        timeout_seconds: 30,
        cooldown_ms: 5000,
    }
}

/// A fake Citus database holding the formation's rows already.
fn registered(host: &FakeHost) {
    host.sql().answer("SET ", SqlAnswer::empty());
    host.sql().answer(
        "FROM pg_catalog.pg_dist_node",
        SqlAnswer::rows(
            &["groupid", "nodename", "nodeport", "noderole", "nodeid"],
            &[
                &["0", "10.0.0.1", "5432", "primary", "1"],
                &["1", "10.0.1.1", "5432", "primary", "2"],
                &["1", "10.0.1.2", "5432", "secondary", "3"],
            ],
        ),
    );
    host.sql().answer("citus_update_node", SqlAnswer::empty());
}

#[test]
fn it_describes_itself_as_citus() {
    let info = Citus::describe();
    assert_eq!(info.name, "citus");
    assert!(info.aliases.is_empty());
}

#[test]
fn a_bad_section_is_refused_naming_the_key() {
    let err = Citus::validate_config(r#"{"group": "x", "database": "citus"}"#.into()).unwrap_err();
    assert!(
        matches!(&err, MppError::InvalidConfig(m) if m.starts_with("citus.group")),
        "{err:?}"
    );
    let plugin = handler(3);
    assert_eq!((plugin.group(), plugin.coordinator_group()), (3, 0));
}

#[test]
fn events_before_the_first_sync_are_discarded_without_sql() {
    let host = FakeHost::install();
    let mut plugin = handler(0);
    plugin.handle_event(before_demote()).unwrap();
    plugin.tick().unwrap();
    assert!(host.sql().statements().is_empty());
    assert!(host.logged("discarding before_demote from group 1"));
}

#[test]
fn a_worker_keeps_no_metadata() {
    let host = FakeHost::install();
    let mut plugin = handler(1);
    plugin.sync_meta_data(formation()).unwrap();
    plugin.handle_event(before_demote()).unwrap();
    plugin.tick().unwrap();
    assert!(host.sql().statements().is_empty());
}

#[test]
fn before_demote_returns_with_the_pause_in_place_and_on_demote_ends_it() {
    let host = FakeHost::install();
    registered(&host);
    let mut plugin = handler(0);
    plugin.sync_meta_data(formation()).unwrap();
    assert!(host.sql().ran("citus_").is_empty(), "already registered");

    plugin.handle_event(before_demote()).unwrap();
    let update = host
        .sql()
        .statements()
        .into_iter()
        .find(|s| s.sql.contains("citus_update_node"))
        .expect("the pause");
    let p = |v: &[&str]| v.iter().map(|s| Some((*s).to_owned())).collect::<Vec<_>>();
    assert_eq!(update.params, p(&["2", "10.0.1.1-demoted", "5432", "5000"]));
    assert_eq!(host.sql().ran("BEGIN").len(), 1);
    assert!(plugin.session_in_transaction());

    plugin.on_demote();
    assert!(!plugin.session_in_transaction());
    assert!(host.sql().ran("COMMIT").is_empty(), "never committed");
}

#[test]
fn a_failed_statement_is_reported_saying_what_failed() {
    let host = FakeHost::install();
    // First matching rule wins: the failure goes before the table's answers.
    host.sql().answer_times(
        "citus_update_node",
        1,
        SqlAnswer::error(
            "57P01",
            "terminating connection due to administrator command",
        ),
    );
    registered(&host);
    let mut plugin = handler(0);
    plugin.sync_meta_data(formation()).unwrap();
    let err = plugin.handle_event(before_demote()).unwrap_err();
    assert_eq!(
        err,
        MppError::Failed(
            "citus_update_node(2, '10.0.1.1-demoted', 5432, true, 5000) failed: terminating \
             connection due to administrator command (SQLSTATE 57P01)"
                .into()
        )
    );
    assert!(!plugin.session_in_transaction());
}
