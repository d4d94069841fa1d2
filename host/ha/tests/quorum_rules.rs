//! `synchronous_mode: quorum` as the HA loop applies it: the rows pin what a
//! primary writes to `/sync` and `synchronous_standby_names`, in which order,
//! and what a node about to promote sets (the resolver's own steps are tested
//! in keel-ha's `quorum` module).

#![allow(clippy::unwrap_used, reason = "table rows panic on a broken fixture")]
use chrono::{Duration, TimeZone, Utc};
use keel_config::DynamicConfig;
use keel_ha::{
    Action, Answers, DataDir, Decision, LockAnswer, Me, Memory, Observation, PgRole, Plan,
    Postgres, Process, Question, ReplicationRow, decide,
};
use keel_model::{Cluster, Entry, SyncState};

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
        version: "1".into(),
        session: None,
    }
}

fn member(name: &str) -> Entry {
    entry(
        &format!("members/{name}"),
        r#"{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"replica","version":"4.1.4","xlog_location":100,"timeline":1}"#,
    )
}

/// Members a, b, c; `leader` holds the key; `sync` is the raw `/sync` value.
fn cluster(leader: &str, sync: Option<&str>) -> Cluster {
    let mut all = vec![
        entry("initialize", "7000000000000000001"),
        entry("config", r#"{"synchronous_mode":"quorum"}"#),
        entry("leader", leader),
        member("a"),
        member("b"),
        member("c"),
    ];
    if let Some(sync) = sync {
        all.push(entry("sync", sync));
    }
    Cluster::from_entries(&all)
}

fn streaming(name: &str, sync_state: &str) -> ReplicationRow {
    ReplicationRow {
        name: name.into(),
        streaming: true,
        sync_state: sync_state.into(),
        lsn: 100,
    }
}

fn observe(
    me: &str,
    cluster: Cluster,
    role: PgRole,
    ssn: &str,
    rows: Vec<ReplicationRow>,
) -> Observation {
    Observation {
        now: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
        me: Me {
            name: me.into(),
            can_bootstrap: true,
            use_pg_rewind: true,
            ..Me::default()
        },
        config: DynamicConfig::from_json_lenient(r#"{"synchronous_mode":"quorum"}"#).0,
        cluster: Ok(cluster),
        postgres: Postgres {
            data_dir: DataDir::Initialized {
                sysid: "7000000000000000001".into(),
            },
            process: Process::Running,
            role,
            timeline: 1,
            wal_position: 100,
            synchronous_standby_names: ssn.into(),
            replication: rows,
            ..Postgres::empty()
        },
        memory: Memory {
            has_lock: true,
            ..Memory::default()
        },
        running: None,
        answers: Answers::default(),
    }
}

fn plan(mut o: Observation) -> Plan {
    for _ in 0..8 {
        match decide(&o) {
            Decision::Act(plan) => return plan,
            Decision::Ask(Question::RefreshLock) => o.answers.refresh = Some(LockAnswer::Held),
            Decision::Ask(Question::AcquireLock) => o.answers.acquire = Some(LockAnswer::Held),
            Decision::Ask(q) => panic!("unexpected question {q:?}"),
        }
    }
    panic!("decide kept asking")
}

/// The sync-related actions, rendered for comparison.
fn sync_actions(p: &Plan) -> Vec<String> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::WriteSync { state, .. } => Some(format!("/sync {}", state.render())),
            Action::SetSynchronousStandbyNames(s) => Some(format!("ssn {s}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_new_primary_lists_streaming_standbys_before_they_vote() {
    let o = observe(
        "a",
        cluster("a", None),
        PgRole::Primary,
        "",
        vec![streaming("b", "async"), streaming("c", "async")],
    );
    let p = plan(o);
    assert_eq!(
        sync_actions(&p),
        [
            r#"/sync {"leader":"a","quorum":0,"sync_standby":null}"#,
            "ssn ANY 1 (b,c)"
        ]
    );
    // Nobody confirmed yet: look again in a second rather than a loop_wait.
    assert!(p.wake_at.is_some(), "{p:?}");
}

/// b and c in `ANY 1 (b,c)`, streaming as quorum standbys, not voters yet.
fn listed_not_yet_voting() -> Observation {
    observe(
        "a",
        cluster(
            "a",
            Some(r#"{"leader":"a","quorum":0,"sync_standby":null}"#),
        ),
        PgRole::Primary,
        "ANY 1 (b,c)",
        vec![streaming("b", "quorum"), streaming("c", "quorum")],
    )
}

#[test]
fn confirmed_quorum_standbys_become_voters() {
    let o = listed_not_yet_voting();
    let p = plan(o);
    assert_eq!(
        sync_actions(&p),
        [r#"/sync {"leader":"a","quorum":1,"sync_standby":"b,c"}"#]
    );
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
}

#[test]
fn a_standby_that_has_not_caught_up_does_not_count() {
    let mut o = listed_not_yet_voting();
    o.memory.ssn_changed_at_lsn = 200;
    assert_eq!(sync_actions(&plan(o)), Vec::<String>::new());
}

#[test]
fn strict_mode_waits_for_any_standby_when_none_streams() {
    let mut o = observe(
        "a",
        cluster("a", Some(r#"{"leader":"a","quorum":0,"sync_standby":"b"}"#)),
        PgRole::Primary,
        "ANY 1 (b)",
        vec![],
    );
    o.config = DynamicConfig::from_json_lenient(
        r#"{"synchronous_mode":"quorum","synchronous_mode_strict":true}"#,
    )
    .0;
    let p = plan(o);
    assert_eq!(
        sync_actions(&p),
        [
            r#"/sync {"leader":"a","quorum":0,"sync_standby":null}"#,
            "ssn ANY 1 (*)"
        ]
    );
    assert!(
        p.warnings
            .iter()
            .any(|w| w.contains("commits will be delayed")),
        "{:?}",
        p.warnings
    );
}

#[test]
fn a_node_about_to_promote_keeps_waiting_for_the_other_voters() {
    // b holds the key as a replica; /sync still names a, voters b and c, quorum 1.
    let o = observe(
        "b",
        cluster(
            "b",
            Some(r#"{"leader":"a","quorum":1,"sync_standby":"b,c"}"#),
        ),
        PgRole::Replica,
        "",
        vec![],
    );
    let p = plan(o);
    assert!(p.actions.contains(&Action::Promote), "{p:?}");
    // /sync names b before the promotion, the old leader a voter.
    assert_eq!(
        sync_actions(&p),
        [
            r#"/sync {"leader":"b","quorum":1,"sync_standby":"a,c"}"#,
            "ssn ANY 1 (a,c)"
        ]
    );
    let promote = p
        .actions
        .iter()
        .position(|a| *a == Action::Promote)
        .unwrap();
    let ssn = p
        .actions
        .iter()
        .position(|a| matches!(a, Action::SetSynchronousStandbyNames(_)))
        .unwrap();
    assert!(ssn < promote);
}

#[test]
fn after_a_failover_the_new_primary_takes_sync_over_then_waits_for_standbys() {
    let sync = r#"{"leader":"a","quorum":1,"sync_standby":"b,c"}"#;
    let mut o = observe(
        "b",
        cluster("b", Some(sync)),
        PgRole::Primary,
        "ANY 1 (a,c)",
        vec![],
    );
    o.memory.promoted_at = Some(o.now - Duration::seconds(1));
    // First cycle as primary: the old leader becomes a voter, this node the leader.
    assert_eq!(
        sync_actions(&plan(o.clone())),
        [r#"/sync {"leader":"b","quorum":1,"sync_standby":"a,c"}"#]
    );
    // Within loop_wait after the promotion nothing more, even with nobody streaming.
    o.cluster = Ok(cluster(
        "b",
        Some(r#"{"leader":"b","quorum":1,"sync_standby":"a,c"}"#),
    ));
    assert_eq!(sync_actions(&plan(o.clone())), Vec::<String>::new());
    // Then c is back, a is not: a leaves synchronous_standby_names, then /sync.
    o.now += Duration::seconds(30);
    o.postgres.replication = vec![streaming("c", "quorum")];
    assert_eq!(
        sync_actions(&plan(o)),
        [
            "ssn ANY 1 (c)",
            r#"/sync {"leader":"b","quorum":0,"sync_standby":"c"}"#
        ]
    );
}

#[test]
fn sync_state_written_is_read_back_by_the_model() {
    let s = SyncState::new("b", vec!["a".into(), "c".into()], 1);
    assert_eq!(
        s.render(),
        r#"{"leader":"b","quorum":1,"sync_standby":"a,c"}"#
    );
}
