//! Patroni's HA rules as tables: one row per situation, the decision it must give.
//! (The simulation in host/sim checks the rules together under faults; these
//! rows pin each rule on its own.)

#![allow(clippy::unwrap_used, reason = "table rows panic on a broken fixture")]
use chrono::{TimeZone, Utc};
use keel_config::DynamicConfig;
use keel_ha::{
    Action, Answers, DataDir, DcsUnreachable, Decision, DemoteMode, LockAnswer, Me, Memory,
    Observation, PeerStatus, PgRole, Postgres, Process, Question, Source, decide,
};
use keel_model::{Cluster, Entry};

const ME: &str = "a";

fn entry(key: &str, value: &str) -> Entry {
    Entry {
        key: key.into(),
        value: value.into(),
        version: "1".into(),
        session: None,
    }
}

fn member(name: &str, role: &str, xlog: u64) -> Entry {
    entry(
        &format!("members/{name}"),
        &format!(
            r#"{{"conn_url":"postgres://127.0.0.1:5432/postgres","api_url":"http://127.0.0.1:8008/patroni","state":"running","role":"{role}","version":"4.1.4","xlog_location":{xlog},"timeline":1}}"#
        ),
    )
}

fn cluster(entries: &[Entry]) -> Cluster {
    let mut all = vec![
        entry("initialize", "7000000000000000001"),
        entry("config", "{}"),
    ];
    all.extend_from_slice(entries);
    Cluster::from_entries(&all)
}

fn running(role: PgRole, wal: u64) -> Postgres {
    Postgres {
        data_dir: DataDir::Initialized {
            sysid: "7000000000000000001".into(),
        },
        process: Process::Running,
        role,
        timeline: 1,
        wal_position: wal,
        ..Postgres::empty()
    }
}

fn obs(cluster: Result<Cluster, DcsUnreachable>, postgres: Postgres) -> Observation {
    Observation {
        now: Utc.with_ymd_and_hms(2026, 11, 23, 12, 0, 0).unwrap(),
        me: Me {
            name: ME.into(),
            can_bootstrap: true,
            use_pg_rewind: true,
            ..Me::default()
        },
        config: DynamicConfig::from_json_lenient("{}").0,
        cluster,
        postgres,
        memory: Memory::default(),
        running: None,
        answers: Answers::default(),
    }
}

fn peer(name: &str, in_recovery: bool, wal: u64) -> PeerStatus {
    PeerStatus {
        name: name.into(),
        reachable: true,
        running: true,
        in_recovery,
        wal_position: wal,
        timeline: 1,
        nofailover: false,
        failover_priority: 1,
        watchdog_failed: false,
    }
}

/// Answer every question from `answers` and return the plan.
fn plan(mut o: Observation, answers: &Answers) -> keel_ha::Plan {
    for _ in 0..8 {
        match decide(&o) {
            Decision::Act(plan) => return plan,
            Decision::Ask(q) => match q {
                Question::AcquireLock => o.answers.acquire = answers.acquire.clone(),
                Question::RefreshLock => o.answers.refresh = answers.refresh.clone(),
                Question::Initialize => o.answers.initialize = answers.initialize.clone(),
                Question::Peers(_) => o.answers.peers = answers.peers.clone(),
                Question::Failsafe(_) => o.answers.failsafe = answers.failsafe,
                Question::ActivateWatchdog => o.answers.watchdog = answers.watchdog,
            },
        }
    }
    panic!("decide kept asking");
}

fn has_demote(plan: &keel_ha::Plan, mode: DemoteMode) -> bool {
    plan.actions
        .iter()
        .any(|a| matches!(a, Action::Demote { mode: m, .. } if *m == mode))
}

#[test]
fn the_leader_race() {
    let held = Answers {
        acquire: Some(LockAnswer::Held),
        ..Answers::default()
    };
    // (situation, peers, I race and promote?)
    let rows: &[(&str, Vec<PeerStatus>, u64, bool)] = &[
        ("alone and healthy", vec![], 100, true),
        (
            "a peer is further ahead",
            vec![peer("b", true, 200)],
            100,
            false,
        ),
        ("equal positions", vec![peer("b", true, 100)], 100, true),
        (
            "the old primary still answers",
            vec![peer("b", false, 50)],
            100,
            false,
        ),
        (
            "an unreachable peer is ignored",
            vec![PeerStatus::unreachable("b")],
            100,
            true,
        ),
    ];
    for (what, peers, wal, promotes) in rows {
        let c = cluster(&[member(ME, "replica", *wal), member("b", "replica", 0)]);
        let answers = Answers {
            peers: Some(peers.clone()),
            ..held.clone()
        };
        let p = plan(obs(Ok(c), running(PgRole::Replica, *wal)), &answers);
        let promoted = p.actions.contains(&Action::Promote);
        assert_eq!(promoted, *promotes, "{what}: {p:?}");
    }
}

#[test]
fn lag_beyond_maximum_lag_on_failover_disqualifies() {
    let mut entries = vec![member(ME, "replica", 0)];
    entries.push(entry("status", r#"{"optime":100000000}"#));
    let p = plan(
        obs(Ok(cluster(&entries)), running(PgRole::Replica, 1000)),
        &Answers::default(),
    );
    assert!(p.message.contains("not the healthiest"), "{p:?}");
    assert!(!p.actions.contains(&Action::Promote));
}

#[test]
fn nofailover_never_races() {
    let mut o = obs(
        Ok(cluster(&[member(ME, "replica", 100)])),
        running(PgRole::Replica, 100),
    );
    let tags = serde_json::json!({"nofailover": true});
    let map = tags
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    o.me.tags = keel_config::Tags::parse(&map).unwrap().0;
    let p = plan(o, &Answers::default());
    assert!(p.message.contains("not allowed to promote"), "{p:?}");
}

#[test]
fn the_lock_holder() {
    let leader = entry("leader", ME);
    let c = || {
        cluster(&[
            leader.clone(),
            member(ME, "primary", 100),
            member("b", "replica", 90),
        ])
    };
    // Refresh works: stay primary.
    let p = plan(
        obs(Ok(c()), running(PgRole::Primary, 100)),
        &Answers {
            refresh: Some(LockAnswer::Held),
            ..Answers::default()
        },
    );
    assert!(
        p.message.starts_with("no action. I am (a), the leader"),
        "{p:?}"
    );
    // Refresh refused: demote without touching the key.
    let p = plan(
        obs(Ok(c()), running(PgRole::Primary, 100)),
        &Answers {
            refresh: Some(LockAnswer::NotHeld),
            ..Answers::default()
        },
    );
    assert!(has_demote(&p, DemoteMode::ImmediateNoLock), "{p:?}");
    // Refresh raised: the DCS is down, demote offline.
    let p = plan(
        obs(Ok(c()), running(PgRole::Primary, 100)),
        &Answers {
            refresh: Some(LockAnswer::Failed("timeout".into())),
            ..Answers::default()
        },
    );
    assert!(has_demote(&p, DemoteMode::Offline), "{p:?}");
    assert!(!p.publish, "nothing is written while the DCS is down");
    // Holding the lock as a replica: promote.
    let p = plan(
        obs(Ok(c()), running(PgRole::Replica, 100)),
        &Answers {
            refresh: Some(LockAnswer::Held),
            ..Answers::default()
        },
    );
    assert!(p.actions.contains(&Action::Promote), "{p:?}");
}

#[test]
fn someone_else_leads() {
    let c = || {
        cluster(&[
            entry("leader", "b"),
            member(ME, "replica", 90),
            member("b", "primary", 100),
        ])
    };
    let p = plan(
        obs(Ok(c()), running(PgRole::Primary, 100)),
        &Answers::default(),
    );
    assert!(
        has_demote(&p, DemoteMode::ImmediateNoLock),
        "a second primary steps down: {p:?}"
    );
    let p = plan(
        obs(Ok(c()), running(PgRole::Replica, 90)),
        &Answers::default(),
    );
    assert!(
        p.actions.contains(&Action::Follow {
            upstream: Some(Source::member("b"))
        }),
        "a replica follows the leader: {p:?}"
    );
}

#[test]
fn the_dcs_is_unreachable() {
    let down = || Err(DcsUnreachable("connection refused".into()));
    let p = plan(
        obs(down(), running(PgRole::Primary, 100)),
        &Answers::default(),
    );
    assert!(has_demote(&p, DemoteMode::Offline), "{p:?}");
    let p = plan(
        obs(down(), running(PgRole::Replica, 100)),
        &Answers::default(),
    );
    assert!(
        p.actions.is_empty() && !p.publish,
        "a replica just waits: {p:?}"
    );
    let mut paused = obs(down(), running(PgRole::Primary, 100));
    paused.config.pause = true;
    let p = plan(paused, &Answers::default());
    assert!(p.actions.is_empty(), "pause: nothing is demoted: {p:?}");
}

#[test]
fn failsafe_keeps_a_primary_that_every_member_accepts() {
    let mut o = obs(
        Err(DcsUnreachable("down".into())),
        running(PgRole::Primary, 100),
    );
    o.config.failsafe_mode = true;
    o.memory.last_failsafe = keel_model::Failsafe::parse(
        r#"{"a":"http://127.0.0.1:8008/patroni","b":"http://127.0.0.1:8009/patroni"}"#,
    );
    let accepted = Answers {
        failsafe: Some(keel_ha::FailsafeAnswer::AllAccepted),
        ..Answers::default()
    };
    let p = plan(o.clone(), &accepted);
    assert!(
        p.actions.is_empty() && p.message.contains("failsafe") && p.failsafe_active,
        "{p:?}"
    );
    let refused = Answers {
        failsafe: Some(keel_ha::FailsafeAnswer::NotAll),
        ..Answers::default()
    };
    let p = plan(o, &refused);
    assert!(has_demote(&p, DemoteMode::Offline), "{p:?}");
    assert!(!p.failsafe_active);
}

#[test]
fn bootstrap_and_clone() {
    // Empty node, empty cluster: race for initialize.
    let empty = Ok(Cluster::from_entries(&[]));
    let won = Answers {
        initialize: Some(Ok(true)),
        ..Answers::default()
    };
    let p = plan(obs(empty.clone(), Postgres::empty()), &won);
    assert_eq!(p.actions, vec![Action::Bootstrap]);
    let lost = Answers {
        initialize: Some(Ok(false)),
        ..Answers::default()
    };
    let p = plan(obs(empty, Postgres::empty()), &lost);
    assert!(
        p.actions.is_empty() && p.message.contains("initialize lock"),
        "{p:?}"
    );
    // A leader exists: clone from it.
    let c = cluster(&[entry("leader", "b"), member("b", "primary", 100)]);
    let p = plan(obs(Ok(c), Postgres::empty()), &Answers::default());
    assert_eq!(
        p.actions,
        vec![Action::Clone {
            source: Some(Source::member("b"))
        }]
    );
}

#[test]
fn switchover_from_the_leader() {
    let c = cluster(&[
        entry("leader", ME),
        entry("failover", r#"{"leader":"a","member":"b"}"#),
        member(ME, "primary", 100),
        member("b", "replica", 100),
    ]);
    let healthy = Answers {
        refresh: Some(LockAnswer::Held),
        peers: Some(vec![peer("b", true, 100)]),
        ..Answers::default()
    };
    let p = plan(obs(Ok(c.clone()), running(PgRole::Primary, 100)), &healthy);
    assert!(has_demote(&p, DemoteMode::Graceful), "{p:?}");
    let sick = Answers {
        refresh: Some(LockAnswer::Held),
        peers: Some(vec![PeerStatus::unreachable("b")]),
        ..Answers::default()
    };
    let p = plan(obs(Ok(c), running(PgRole::Primary, 100)), &sick);
    assert!(!has_demote(&p, DemoteMode::Graceful), "{p:?}");
    assert!(p.message.contains("not possible"), "{p:?}");
    assert!(
        p.actions
            .iter()
            .any(|a| matches!(a, Action::ClearFailover { .. }))
    );
}

#[test]
fn a_diverged_former_primary_is_rewound_before_it_streams() {
    let c = || cluster(&[entry("leader", "b"), member("b", "primary", 200)]);
    let mut pg = running(PgRole::Primary, 150);
    pg.process = Process::Stopped { crashed: true };
    let p = plan(obs(Ok(c()), pg.clone()), &Answers::default());
    assert_eq!(p.actions, vec![Action::TriggerRewindCheck], "{p:?}");
    pg.divergence = keel_ha::Divergence::Diverged;
    let p = plan(obs(Ok(c()), pg), &Answers::default());
    assert_eq!(
        p.actions,
        vec![Action::Rewind { source: "b".into() }],
        "{p:?}"
    );
}

#[test]
fn a_leader_whose_postgres_will_not_come_up_hands_over_after_primary_start_timeout() {
    let c = || {
        cluster(&[
            entry("leader", ME),
            member(ME, "primary", 100),
            member("b", "replica", 100),
        ])
    };
    let starting = || {
        let mut o = obs(Ok(c()), running(PgRole::Primary, 100));
        o.postgres.process = Process::Starting;
        o.memory.has_lock = true;
        o
    };
    let answers = |peer_ok: bool| Answers {
        refresh: Some(LockAnswer::Held),
        peers: Some(vec![if peer_ok {
            peer("b", true, 100)
        } else {
            PeerStatus::unreachable("b")
        }]),
        ..Answers::default()
    };
    // Within the timeout (300 s by default): wait, saying how long is left.
    let mut o = starting();
    o.memory.starting_since = Some(o.now - chrono::Duration::seconds(100));
    let p = plan(o, &answers(true));
    assert_eq!(
        p.message,
        "PostgreSQL is still starting up, 200 seconds until timeout"
    );
    assert!(p.actions.is_empty(), "{p:?}");
    // Past it, with a healthy replica: stop and give the lock up.
    let mut o = starting();
    o.memory.starting_since = Some(o.now - chrono::Duration::seconds(301));
    let p = plan(o.clone(), &answers(true));
    assert!(has_demote(&p, DemoteMode::Immediate), "{p:?}");
    // Past it, nobody to take over: keep waiting.
    let p = plan(o, &answers(false));
    assert!(p.actions.is_empty(), "{p:?}");
    assert!(p.message.contains("continuing to wait"), "{p:?}");
}

/// A standby cluster (`standby_cluster` in the dynamic configuration): its leader
/// replicates from the remote source instead of accepting writes, and everything a
/// primary would do is replaced by following that source.
#[test]
fn a_standby_cluster_is_led_by_a_replica_of_the_remote_source() {
    let standby = |o: &mut Observation| {
        o.config = DynamicConfig::from_json_lenient(
            r#"{"standby_cluster":{"host":"10.0.0.9","port":5432}}"#,
        )
        .0;
    };
    let with = |c: Result<Cluster, DcsUnreachable>, pg: Postgres| {
        let mut o = obs(c, pg);
        standby(&mut o);
        o
    };
    let answers = |refresh, acquire, initialize| Answers {
        refresh,
        acquire,
        initialize,
        ..Answers::default()
    };
    let following = |mut pg: Postgres, source: Option<Source>| {
        pg.upstream = source;
        pg
    };
    let remote = Some(Source::Remote);

    // Empty node, empty cluster: the initialize winner clones the remote source.
    let p = plan(
        with(Ok(Cluster::from_entries(&[])), Postgres::empty()),
        &answers(None, None, Some(Ok(true))),
    );
    assert_eq!(p.actions, vec![Action::BootstrapStandby], "{p:?}");
    // ... and finishes like a bootstrap, though it runs as a replica.
    let mut o = with(
        Ok(Cluster::from_entries(&[entry("initialize", "")])),
        following(running(PgRole::Replica, 100), remote.clone()),
    );
    o.memory.bootstrapped = true;
    let p = plan(o, &Answers::default());
    assert!(p.actions.contains(&Action::TakeLock), "{p:?}");
    assert!(!p.actions.contains(&Action::UpdateHistory), "{p:?}");

    let holding = || {
        cluster(&[
            entry("leader", ME),
            member(ME, "standby_leader", 100),
            member("b", "replica", 90),
        ])
    };
    let held = answers(Some(LockAnswer::Held), None, None);
    // The lock holder follows the remote source, and says so once it does.
    let p = plan(
        with(
            Ok(holding()),
            following(running(PgRole::Replica, 100), Some(Source::member("b"))),
        ),
        &held,
    );
    assert_eq!(
        p.actions,
        vec![Action::Follow {
            upstream: remote.clone()
        }],
        "{p:?}"
    );
    assert!(
        p.message.contains("promoted self to a standby leader"),
        "{p:?}"
    );
    let p = plan(
        with(
            Ok(holding()),
            following(running(PgRole::Replica, 100), remote.clone()),
        ),
        &held,
    );
    assert!(p.actions.is_empty(), "{p:?}");
    assert_eq!(
        p.message,
        "no action. I am (a), the standby leader with the lock"
    );
    // A primary holding the lock of a cluster turned standby demotes, keeping the key.
    let p = plan(with(Ok(holding()), running(PgRole::Primary, 100)), &held);
    assert_eq!(
        p.actions,
        vec![Action::Demote {
            mode: DemoteMode::ToStandbyLeader,
            upstream: remote.clone()
        }],
        "{p:?}"
    );
    // Stopped, the holder starts as a replica of the remote source, never as a primary.
    let mut crashed = following(running(PgRole::Primary, 100), None);
    crashed.process = Process::Stopped { crashed: true };
    let p = plan(with(Ok(holding()), crashed), &held);
    assert_eq!(
        p.actions,
        vec![Action::Start {
            as_primary: false,
            upstream: remote.clone()
        }],
        "{p:?}"
    );

    // The winner of a leader race follows the remote source rather than promoting.
    let unlocked = || cluster(&[member(ME, "replica", 100), member("b", "replica", 90)]);
    let mut o = with(
        Ok(unlocked()),
        following(running(PgRole::Replica, 100), Some(Source::member("c"))),
    );
    o.answers.peers = Some(vec![peer("b", true, 90)]);
    let p = plan(o, &answers(None, Some(LockAnswer::Held), None));
    assert!(!p.actions.contains(&Action::Promote), "{p:?}");
    assert!(
        p.actions.contains(&Action::Follow {
            upstream: remote.clone()
        }),
        "{p:?}"
    );

    // Another member leads: follow it, as in any cluster.
    let led = cluster(&[
        entry("leader", "b"),
        member(ME, "replica", 90),
        member("b", "standby_leader", 100),
    ]);
    let p = plan(
        with(Ok(led), running(PgRole::Replica, 90)),
        &Answers::default(),
    );
    assert_eq!(
        p.actions,
        vec![
            Action::Follow {
                upstream: Some(Source::member("b"))
            },
            Action::TriggerRewindCheck
        ]
    );
    assert!(
        p.message.contains("following a standby leader (b)"),
        "{p:?}"
    );

    // Without the section, the lock holder is promoted: the standby cluster is promoted.
    let p = plan(
        obs(
            Ok(holding()),
            following(running(PgRole::Replica, 100), remote),
        ),
        &held,
    );
    assert!(p.actions.contains(&Action::Promote), "{p:?}");
}

/// A watchdog is activated before this node leads; with `mode: required` a node
/// that cannot activate it does not promote (or demotes), and one whose device is
/// known to be unusable never races.
#[test]
fn a_required_watchdog_gates_leadership() {
    let holding = || {
        cluster(&[
            entry("leader", ME),
            member(ME, "replica", 100),
            member("b", "replica", 90),
        ])
    };
    let with_watchdog = |pg: Postgres| {
        let mut o = obs(Ok(holding()), pg);
        o.me.watchdog_enabled = true;
        o
    };
    let answers = |watchdog| Answers {
        refresh: Some(LockAnswer::Held),
        watchdog,
        ..Answers::default()
    };
    // Activated: promote as usual. Not activated: give the key back.
    let p = plan(
        with_watchdog(running(PgRole::Replica, 100)),
        &answers(Some(true)),
    );
    assert!(p.actions.contains(&Action::Promote), "{p:?}");
    let p = plan(
        with_watchdog(running(PgRole::Replica, 100)),
        &answers(Some(false)),
    );
    assert_eq!(p.actions, vec![Action::ReleaseLock], "{p:?}");
    assert_eq!(
        p.message,
        "Not promoting self because watchdog could not be activated"
    );
    // A primary whose watchdog cannot be activated steps down.
    let p = plan(
        with_watchdog(running(PgRole::Primary, 100)),
        &answers(Some(false)),
    );
    assert!(has_demote(&p, DemoteMode::Immediate), "{p:?}");
    // Once active, it is not asked again.
    let mut o = with_watchdog(running(PgRole::Primary, 100));
    o.memory.watchdog_active = true;
    let p = plan(o, &answers(None));
    assert!(
        p.message.starts_with("no action. I am (a), the leader"),
        "{p:?}"
    );

    // A node whose required watchdog is unusable never takes the key.
    let unlocked = cluster(&[member(ME, "replica", 100), member("b", "replica", 90)]);
    let mut o = obs(Ok(unlocked), running(PgRole::Replica, 100));
    o.me.watchdog_failed = true;
    o.answers.peers = Some(vec![peer("b", true, 90)]);
    let p = plan(o, &Answers::default());
    assert!(p.actions.iter().all(|a| *a != Action::Promote), "{p:?}");
    assert!(p.warnings.iter().any(|w| w.contains("Watchdog")), "{p:?}");
}
