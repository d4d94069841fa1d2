//! The cluster model against values copied from the compatibility notes
//! (patroni-compat.md §2, patroni-4x-delta.md §2), round trips, and garbage.

use keel_dcs::model::{Cluster, Lsn, MemberData, Role, SyncState};
use keel_dcs::{Entry, Formation, GroupEntries};

fn entry(key: &str, value: &str, version: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
        version: version.into(),
        session: None,
    }
}

const REPLICA_DOC: &str = r#"{"conn_url":"postgres://10.0.0.2:5432/postgres","api_url":"http://10.0.0.2:8008/patroni","state":"running","role":"replica","version":"3.3.1","xlog_location":50331968,"replication_state":"streaming","timeline":2}"#;

#[test]
fn member_from_the_docs_round_trips_byte_for_byte() {
    let m = MemberData::parse(REPLICA_DOC, "pg2");
    assert_eq!(m.role, Some(Role::Replica));
    assert_eq!(m.xlog_location, Some(50_331_968));
    assert_eq!(m.timeline, Some(2));
    assert!(m.is_running());
    assert_eq!(m.render(), REPLICA_DOC);
}

#[test]
fn member_41_fields_render_in_patroni_order() {
    let m = MemberData {
        conn_url: Some("postgres://10.0.0.3:5432/postgres".into()),
        api_url: Some("http://10.0.0.3:8008/patroni".into()),
        state: Some("running".into()),
        role: Some(Role::Replica),
        version: Some("4.1.4".into()),
        proxy_url: Some("postgres://10.0.0.9:6432/postgres".into()),
        tags: serde_json::from_str(r#"{"nosync":true,"sync_priority":0}"#).unwrap(),
        pending_restart: true,
        pending_restart_reason: serde_json::from_str(
            r#"{"max_connections":{"old_value":"100","new_value":"200"}}"#,
        )
        .unwrap(),
        xlog_location: Some(100),
        replay_lsn: Some(90),
        receive_lsn: Some(100),
        replication_state: Some("streaming".into()),
        timeline: Some(3),
        pause: true,
        ..MemberData::default()
    };
    let want = concat!(
        r#"{"conn_url":"postgres://10.0.0.3:5432/postgres","api_url":"http://10.0.0.3:8008/patroni","#,
        r#""state":"running","role":"replica","version":"4.1.4","proxy_url":"postgres://10.0.0.9:6432/postgres","#,
        r#""tags":{"nosync":true,"sync_priority":0},"pending_restart":true,"#,
        r#""pending_restart_reason":{"max_connections":{"new_value":"200","old_value":"100"}},"#,
        r#""xlog_location":100,"replay_lsn":90,"receive_lsn":100,"replication_state":"streaming","#,
        r#""timeline":3,"pause":true}"#
    );
    assert_eq!(m.render(), want);
    assert_eq!(MemberData::parse(want, "pg3"), m);
}

#[test]
fn primary_is_written_as_primary_and_master_is_read_as_primary() {
    let old = MemberData::parse(
        r#"{"role":"master","checkpoint_after_promote":false}"#,
        "pg0",
    );
    assert_eq!(old.role, Some(Role::Primary));
    assert_eq!(
        old.render(),
        r#"{"role":"primary","checkpoint_after_promote":false}"#
    );
    let other = MemberData::parse(r#"{"role":"witness"}"#, "x");
    assert_eq!(other.render(), r#"{"role":"witness"}"#);
    // replica LSNs of zero are not written (4.1 writes them only when non-zero)
    let zero = MemberData {
        replay_lsn: Some(0),
        receive_lsn: Some(0),
        xlog_location: Some(0),
        ..MemberData::default()
    };
    assert_eq!(zero.render(), r#"{"xlog_location":0}"#);
}

#[test]
fn legacy_connection_url_members() {
    let m = MemberData::parse(
        "postgres://replicator:secret@10.0.0.1:5432/postgres?application_name=http%3A%2F%2F10.0.0.1%3A8008%2Fpatroni",
        "pg1",
    );
    assert_eq!(
        m.conn_url.as_deref(),
        Some("postgres://replicator:secret@10.0.0.1:5432/postgres")
    );
    assert_eq!(m.api_url.as_deref(), Some("http://10.0.0.1:8008/patroni"));
    let bare = MemberData::parse("postgresql://h:5432/db", "pg1");
    assert_eq!(bare.conn_url.as_deref(), Some("postgresql://h:5432/db"));
    assert_eq!(bare.api_url, None);
    let kwargs = MemberData::parse(
        r#"{"conn_kwargs":{"host":"h1","port":5433,"dbname":"x"}}"#,
        "k",
    );
    assert_eq!(kwargs.conn_url.as_deref(), Some("postgresql://h1:5433"));
}

#[test]
fn lsns_are_integers_on_the_wire() {
    let lsn: Lsn = "0/3000140".parse().unwrap();
    let m = MemberData {
        xlog_location: Some(lsn.0),
        ..MemberData::default()
    };
    assert_eq!(m.render(), r#"{"xlog_location":50331968}"#);
    // Patroni's parse_int also takes decimal strings; X/Y text is not an LSN there
    assert_eq!(
        MemberData::parse(r#"{"xlog_location":"50331968"}"#, "a").xlog_location,
        Some(50_331_968)
    );
    assert_eq!(
        MemberData::parse(r#"{"xlog_location":"0/3000140"}"#, "a").xlog_location,
        None
    );
}

#[test]
fn member_garbage_drops_only_the_bad_field() {
    type Check = fn(&MemberData) -> bool;
    let cases: &[(&str, Check)] = &[
        (r#"{"xlog_location":"abc","state":"running"}"#, |m| {
            m.xlog_location.is_none()
        }),
        (r#"{"xlog_location":-1,"state":"running"}"#, |m| {
            m.xlog_location.is_none()
        }),
        (r#"{"xlog_location":1.5,"state":"running"}"#, |m| {
            m.xlog_location.is_none()
        }),
        (r#"{"timeline":4294967296,"state":"running"}"#, |m| {
            m.timeline.is_none()
        }),
        (r#"{"role":5,"state":"running"}"#, |m| m.role.is_none()),
        (r#"{"tags":[1],"state":"running"}"#, |m| m.tags.is_empty()),
        (r#"{"pending_restart":"yes","state":"running"}"#, |m| {
            !m.pending_restart
        }),
        (r#"{"pause":1,"state":"running"}"#, |m| !m.pause),
        (r#"{"scheduled_restart":"soon","state":"running"}"#, |m| {
            m.scheduled_restart.is_none()
        }),
        (r#"{"unknown":{"x":1},"state":"running"}"#, |m| {
            m.render() == r#"{"state":"running"}"#
        }),
        (r#"{"api_url":null,"state":"running"}"#, |m| {
            m.api_url.is_none()
        }),
    ];
    for (raw, check) in cases {
        let m = MemberData::parse(raw, "g");
        assert!(check(&m), "{raw}");
        assert_eq!(m.state.as_deref(), Some("running"), "{raw}");
    }
    for raw in ["", "{", "[]", "null", "42", "\"s\"", "\u{0}", "{\"a\":}"] {
        assert_eq!(
            MemberData::parse(raw, "g"),
            MemberData::default(),
            "{raw:?}"
        );
    }
}

/// A whole cluster as a Patroni 4.1 leader leaves it in etcd.
fn patroni_cluster() -> Vec<Entry> {
    vec![
        entry(
            "config",
            r#"{"ttl":30,"loop_wait":10,"retry_timeout":10,"maximum_lag_on_failover":1048576,"postgresql":{"use_pg_rewind":true,"parameters":{"max_connections":100}}}"#,
            "3",
        ),
        entry("initialize", "7386413437497364538", "2"),
        entry("leader", "pg0", "10"),
        entry(
            "members/pg0",
            r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.4","xlog_location":50331968,"timeline":2}"#,
            "11",
        ),
        entry("members/pg1", REPLICA_DOC, "12"),
        entry(
            "status",
            r#"{"optime":50331968,"slots":{"pg0":50331968,"pg1":50331968},"retain_slots":["pg0","pg1"]}"#,
            "13",
        ),
        entry(
            "failover",
            r#"{"leader":"pg0","member":"pg1","scheduled_at":"2024-07-02T18:00:00+00:00"}"#,
            "14",
        ),
        entry(
            "sync",
            r#"{"leader":"pg0","quorum":0,"sync_standby":"pg1"}"#,
            "15",
        ),
        entry(
            "history",
            r#"[[1,25165984,"no recovery target specified","2024-07-02T16:10:00.123456+02:00","pg1"]]"#,
            "16",
        ),
        entry(
            "failsafe",
            r#"{"pg0":"http://10.0.0.1:8008/patroni","pg1":"http://10.0.0.2:8008/patroni"}"#,
            "17",
        ),
    ]
}

#[test]
fn cluster_from_patroni_values() {
    let c = Cluster::from_entries(&patroni_cluster());
    assert!(c.has_valid_sysid());
    assert!(
        c.config
            .as_ref()
            .is_some_and(|cfg| cfg.is_usable() && cfg.data["ttl"] == 30)
    );
    let leader = c.leader.as_ref().unwrap();
    assert_eq!(
        (leader.name.as_str(), leader.version.as_str()),
        ("pg0", "10")
    );
    assert_eq!(leader.timeline(), Some(2));
    assert_eq!(leader.checkpoint_after_promote(), Some(true));
    assert_eq!(c.members.len(), 2);
    assert_eq!(c.status.optime, 50_331_968);
    assert!(
        c.failover
            .as_ref()
            .is_some_and(|f| f.is_set() && f.scheduled_at.is_some())
    );
    assert!(c.sync.matches("PG1", false));
    assert_eq!(c.timeline(), 2);
    assert_eq!(c.failsafe.as_ref().map(|f| f.members.len()), Some(2));
    assert_eq!(c.min_version(), Some(vec![3, 3, 1]));
}

#[test]
fn leader_without_member_key_is_a_stub_and_empty_leader_is_none() {
    let c = Cluster::from_entries(&[entry("leader", "pg9", "1")]);
    let l = c.leader.unwrap();
    assert_eq!(l.member.name, "pg9");
    assert_eq!(l.member.version, None);
    assert_eq!(l.checkpoint_after_promote(), None);
    assert!(Cluster::from_entries(&[entry("leader", "", "1")]).is_unlocked());
    let legacy = Cluster::from_entries(&[entry("optime/leader", "12345", "1")]);
    assert_eq!(legacy.status.optime, 12345);
    let both = Cluster::from_entries(&[
        entry("optime/leader", "1", "1"),
        entry("status", r#"{"optime":2}"#, "2"),
    ]);
    assert_eq!(both.status.optime, 2);
}

#[test]
fn garbage_in_every_key_never_breaks_the_read() {
    let garbage = [
        "",
        "{",
        "}",
        "[]",
        "null",
        "true",
        "-1",
        "\"s\"",
        "[[\"a\"]]",
        "{\"x\":{}}",
        "\u{0}\u{ffff}",
        "😀",
    ];
    for g in garbage {
        let mut entries = patroni_cluster();
        for e in entries
            .iter_mut()
            .filter(|e| e.key != "leader" && e.key != "initialize")
        {
            e.value = g.to_owned();
        }
        entries.push(entry("members/", g, "20"));
        entries.push(entry("members/a/b", g, "21"));
        entries.push(entry("unknown/key", g, "22"));
        let c = Cluster::from_entries(&entries);
        // the leader key is intact, so the leader survives garbage elsewhere
        assert_eq!(c.leader_name(), Some("pg0"), "{g:?}");
        let object = g.starts_with("{\"x\"");
        assert_eq!(c.config.as_ref().unwrap().is_usable(), object, "{g:?}");
        // text that is not JSON may be the legacy `leader:candidate` form
        let legacy = g == "😀";
        assert_eq!(c.failover.as_ref().unwrap().is_set(), legacy, "{g:?}");
        assert!(c.sync.is_empty(), "{g:?}");
        assert_eq!(c.sync.version.as_deref(), Some("15"));
        // `[]` is a valid (empty) history: timeline 1, as in Patroni
        assert_eq!(c.timeline(), u32::from(g == "[]"), "{g:?}");
        assert_eq!(c.members.len(), 2, "{g:?}");
        assert!(c.members.iter().all(|m| m.data.role.is_none()), "{g:?}");
        assert!(c.status.is_empty(), "{g:?}");
        assert_eq!(c.failsafe.is_some(), object, "{g:?}");
    }
}

#[test]
fn sync_state_read_from_3x_and_written_as_4x() {
    let old = SyncState::parse("1", r#"{"leader":"pg0","sync_standby":"pg2,pg1"}"#);
    let rewritten = SyncState::new("pg0", old.voters().to_vec(), old.quorum);
    assert_eq!(
        rewritten.render(),
        r#"{"leader":"pg0","quorum":0,"sync_standby":"pg1,pg2"}"#
    );
}

#[test]
fn formation_from_groups() {
    let groups = vec![
        GroupEntries {
            group: Some(2),
            entries: vec![entry("leader", "w2", "5")],
        },
        GroupEntries {
            group: Some(0),
            entries: vec![entry("leader", "c0", "3")],
        },
        GroupEntries {
            group: None,
            entries: vec![entry("leader", "x", "1")],
        },
    ];
    let f = Formation::from_groups(&groups);
    assert_eq!(f.coordinator().leader_name(), Some("c0"));
    let workers: Vec<u32> = f.workers().map(|(g, _)| g).collect();
    assert_eq!(workers, [2]);
    assert!(Formation::default().coordinator().is_empty());
}
