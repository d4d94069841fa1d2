//! The in-memory reference backend through the typed facade: the properties the
//! DCS conformance kit will demand of every backend.

use std::sync::Arc;
use std::time::Duration;

use keel_dcs::memory::{MemoryBackend, MemoryStore, TokioClock};
use keel_dcs::model::{Failover, Failsafe, MemberData, Role, Status, SyncState};
use keel_dcs::{Dcs, DcsBackend, DcsError, Settings};

fn settings(member: &str, group: Option<u32>) -> Settings {
    Settings {
        group,
        ..Settings::new("batman", member)
    }
}

async fn node(store: &MemoryStore, member: &str, group: Option<u32>) -> (Dcs, Arc<MemoryBackend>) {
    let backend = Arc::new(store.connect());
    let dcs = Dcs::new(backend.clone());
    dcs.configure(settings(member, group))
        .await
        .expect("valid settings");
    (dcs, backend)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_leader_among_n_concurrent_contenders() {
    let store = MemoryStore::new(Arc::new(TokioClock::new()));
    let mut nodes = Vec::new();
    for i in 0..16 {
        nodes.push(node(&store, &format!("pg{i}"), None).await.0);
    }
    for round in 0..5 {
        let barrier = Arc::new(tokio::sync::Barrier::new(nodes.len()));
        let tasks: Vec<_> = nodes
            .iter()
            .cloned()
            .map(|dcs| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    dcs.attempt_to_acquire_leader().await
                })
            })
            .collect();
        let mut winners = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if t.await.unwrap().unwrap() {
                winners.push(i);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let winner = winners[0];
        let cluster = nodes[0].load().await.unwrap();
        assert_eq!(cluster.leader_name(), Some(format!("pg{winner}").as_str()));
        // only the holder can release it
        let other = (winner + 1) % nodes.len();
        assert!(!nodes[other].delete_leader().await.unwrap());
        assert!(!nodes[other].update_leader().await.unwrap());
        assert!(nodes[winner].update_leader().await.unwrap());
        assert!(nodes[winner].delete_leader().await.unwrap());
    }
}

#[tokio::test]
async fn leader_vanishes_after_ttl_without_renewal() {
    let (store, clock) = MemoryStore::with_manual_clock();
    let (a, _) = node(&store, "a", None).await;
    let (b, _) = node(&store, "b", None).await;
    assert!(a.touch_member(&MemberData::default()).await.unwrap());
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    clock.advance(secs(29));
    assert!(!b.attempt_to_acquire_leader().await.unwrap());
    assert_eq!(b.load().await.unwrap().leader_name(), Some("a"));
    clock.advance(secs(1));
    let cluster = b.load().await.unwrap();
    assert!(cluster.is_unlocked(), "leader key outlived its ttl");
    assert!(
        cluster.member("a").is_none(),
        "member key outlived its lease"
    );
    assert!(b.attempt_to_acquire_leader().await.unwrap());
    // a's lease is gone and b holds the key: a's refresh must say "not ours"
    assert!(!a.update_leader().await.unwrap());
}

#[tokio::test]
async fn renewal_keeps_the_lock_and_reattaches_after_lease_loss() {
    let (store, clock) = MemoryStore::with_manual_clock();
    let (a, backend) = node(&store, "a", None).await;
    let (b, _) = node(&store, "b", None).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    for _ in 0..10 {
        clock.advance(secs(20));
        assert!(a.update_leader().await.unwrap());
        assert!(!b.attempt_to_acquire_leader().await.unwrap());
    }
    // lease lost (no renewal), nobody took the key: update_leader re-creates it
    let first_session = backend.session();
    clock.advance(secs(31));
    assert!(a.load().await.unwrap().is_unlocked());
    assert!(a.update_leader().await.unwrap());
    let cluster = b.load().await.unwrap();
    let leader = cluster.leader.unwrap();
    assert_eq!(leader.name, "a");
    assert_ne!(leader.session, first_session);
    assert_eq!(leader.session, backend.session());
}

#[tokio::test]
async fn ttl_change_moves_the_leader_key_to_a_new_lease() {
    let (store, clock) = MemoryStore::with_manual_clock();
    let (a, backend) = node(&store, "a", None).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let old = backend.session();
    a.set_ttl(60).await.unwrap();
    assert!(a.update_leader().await.unwrap());
    assert_ne!(backend.session(), old);
    clock.advance(secs(45));
    assert_eq!(
        a.load().await.unwrap().leader_name(),
        Some("a"),
        "new 60 s lease"
    );
    assert!(a.set_ttl(0).await.unwrap_err().to_string().contains("ttl"));
}

#[tokio::test]
async fn stale_version_set_is_refused_with_conflict() {
    let (store, _clock) = MemoryStore::with_manual_clock();
    let (a, _) = node(&store, "a", None).await;
    let cfg: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(r#"{"ttl":30}"#).unwrap();
    let v1 = a.set_config(&cfg, None).await.unwrap();
    let v2 = a.set_config(&cfg, Some(&v1)).await.unwrap();
    assert_ne!(v1, v2);
    let err = a.set_config(&cfg, Some(&v1)).await.unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert!(!err.is_unavailable());
    assert!(matches!(&err, DcsError::Conflict { key, .. } if key == "config"));
    // compare-and-set against an absent key is a conflict too
    let err = a
        .set_failover(&Failover::default(), Some("1"))
        .await
        .unwrap_err();
    assert!(err.is_conflict());
    // sync: write, CAS with the returned version, stale delete refused
    let s1 = a
        .set_sync_state(&SyncState::new("a", vec!["b".into()], 0), None)
        .await
        .unwrap();
    let s2 = a
        .set_sync_state(&SyncState::new("a", vec![], 0), s1.version.as_deref())
        .await
        .unwrap();
    assert!(
        a.delete_sync_state(s1.version.as_deref())
            .await
            .unwrap_err()
            .is_conflict()
    );
    a.delete_sync_state(s2.version.as_deref()).await.unwrap();
    assert!(a.load().await.unwrap().sync.version.is_none());
    // the cluster view carries the versions to compare against
    let c = a.load().await.unwrap();
    assert_eq!(c.config.unwrap().version, v2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn initialize_race_has_one_winner() {
    let store = MemoryStore::new(Arc::new(TokioClock::new()));
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (dcs, _) = node(&store, &format!("n{i}"), None).await;
        tasks.push(tokio::spawn(async move { dcs.initialize(true, "").await }));
    }
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap().unwrap());
    }
    assert_eq!(won, 1);
    let (a, _) = node(&store, "a", None).await;
    assert_eq!(a.load().await.unwrap().initialize.as_deref(), Some(""));
    assert!(a.initialize(false, "7386413437497364538").await.unwrap());
    assert!(a.load().await.unwrap().has_valid_sysid());
    assert!(a.cancel_initialization().await.unwrap());
    assert_eq!(a.load().await.unwrap().initialize, None);
}

#[tokio::test]
async fn watch_wakes_on_leader_change_and_times_out_otherwise() {
    let (store, clock) = MemoryStore::with_manual_clock();
    let (a, _) = node(&store, "a", None).await;
    let (b, _) = node(&store, "b", None).await;
    // no leader, asked about "none": times out when the clock passes the timeout
    let w = tokio::spawn({
        let b = b.clone();
        async move { b.watch(None, secs(10)).await }
    });
    tokio::task::yield_now().await;
    clock.advance(secs(10));
    assert!(!w.await.unwrap().unwrap());
    // a version that is already stale returns at once
    assert!(b.watch(Some("999"), secs(10)).await.unwrap());
    // woken by a delete
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let version = b.load().await.unwrap().leader.unwrap().version;
    let w = tokio::spawn({
        let b = b.clone();
        let v = version.clone();
        async move { b.watch(Some(&v), secs(3600)).await }
    });
    tokio::task::yield_now().await;
    assert!(!w.is_finished());
    assert!(a.delete_leader().await.unwrap());
    assert!(w.await.unwrap().unwrap());
    // woken by lease expiry as time passes, before the timeout
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    let version = b.load().await.unwrap().leader.unwrap().version;
    let w = tokio::spawn({
        let b = b.clone();
        async move { b.watch(Some(&version), secs(3600)).await }
    });
    tokio::task::yield_now().await;
    clock.advance(secs(31));
    assert!(w.await.unwrap().unwrap());
}

#[tokio::test]
async fn formation_split_and_group_reads() {
    let (store, _clock) = MemoryStore::with_manual_clock();
    let (coord, _) = node(&store, "c0", Some(0)).await;
    let (w1, _) = node(&store, "w1", Some(1)).await;
    let (w2, _) = node(&store, "w2", Some(2)).await;
    for (dcs, role) in [
        (&coord, Role::Primary),
        (&w1, Role::Primary),
        (&w2, Role::Replica),
    ] {
        let data = MemberData {
            role: Some(role),
            ..MemberData::default()
        };
        assert!(dcs.touch_member(&data).await.unwrap());
        assert!(dcs.attempt_to_acquire_leader().await.unwrap());
    }
    for junk in [
        "/service/batman/01/leader",
        "/service/batman/x/leader",
        "/service/batman/leader",
        "/service/batman/3",
        "/service/other/0/leader",
    ] {
        store.put_raw(junk, "junk");
    }
    let f = coord.load_formation().await.unwrap();
    assert_eq!(f.groups.keys().copied().collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(f.coordinator().leader_name(), Some("c0"));
    assert_eq!(f.group(2).unwrap().leader_name(), Some("w2"));
    assert_eq!(
        f.group(2).unwrap().member("w2").unwrap().data.role,
        Some(Role::Replica)
    );
    // a worker reads its own group, and the coordinator's on demand
    let own = w1.load().await.unwrap();
    assert_eq!((own.leader_name(), own.members.len()), (Some("w1"), 1));
    assert_eq!(w1.load_group(0).await.unwrap().leader_name(), Some("c0"));
    // delete_cluster only removes the member's own group
    w2.delete_cluster().await.unwrap();
    let f = coord.load_formation().await.unwrap();
    assert_eq!(f.groups.keys().copied().collect::<Vec<_>>(), [0, 1]);
}

#[tokio::test]
async fn unreachable_store_is_unavailable_never_false() {
    let (store, _clock) = MemoryStore::with_manual_clock();
    let (a, backend) = node(&store, "a", None).await;
    assert!(a.attempt_to_acquire_leader().await.unwrap());
    store.set_available(false);
    assert!(a.load().await.unwrap_err().is_unavailable());
    assert!(a.update_leader().await.unwrap_err().is_unavailable());
    assert!(
        a.attempt_to_acquire_leader()
            .await
            .unwrap_err()
            .is_unavailable()
    );
    store.set_available(true);
    backend.set_reachable(false);
    assert!(a.update_leader().await.unwrap_err().is_unavailable());
    assert!(a.watch(None, secs(1)).await.unwrap_err().is_unavailable());
    backend.set_reachable(true);
    assert!(a.update_leader().await.unwrap());
}

#[tokio::test]
async fn configure_refuses_bad_settings_and_unconfigured_use_fails() {
    let (store, _clock) = MemoryStore::with_manual_clock();
    let backend = store.connect();
    assert!(matches!(
        backend.load(keel_dcs::LoadScope::OwnGroup).await,
        Err(DcsError::Failed { .. })
    ));
    for bad in [
        Settings {
            ttl: 0,
            ..Settings::new("s", "m")
        },
        Settings::new("", "m"),
        Settings::new("s", "a/b"),
        Settings {
            config: "[1]".into(),
            ..Settings::new("s", "m")
        },
    ] {
        let err = backend.configure(bad).await.unwrap_err();
        assert!(matches!(err, DcsError::InvalidConfig { .. }), "{err}");
    }
}

#[tokio::test]
async fn written_values_are_patroni_bytes_in_the_store() {
    let (store, _clock) = MemoryStore::with_manual_clock();
    let (a, _) = node(&store, "pg0", None).await;
    let data = MemberData {
        conn_url: Some("postgres://10.0.0.1:5432/postgres".into()),
        api_url: Some("http://10.0.0.1:8008/patroni".into()),
        state: Some("running".into()),
        role: Some(Role::Primary),
        version: Some("4.1.4".into()),
        xlog_location: Some(50_331_968),
        timeline: Some(2),
        ..MemberData::default()
    };
    a.touch_member(&data).await.unwrap();
    let raw = store.get_raw("/service/batman/members/pg0").unwrap();
    assert_eq!(
        raw.value,
        r#"{"conn_url":"postgres://10.0.0.1:5432/postgres","api_url":"http://10.0.0.1:8008/patroni","state":"running","role":"primary","version":"4.1.4","xlog_location":50331968,"timeline":2}"#
    );
    assert!(raw.session.is_some());
    a.clear_failover(None).await.unwrap();
    assert_eq!(
        store.get_raw("/service/batman/failover").unwrap().value,
        "{}"
    );
    a.write_leader_optime(50_331_968).await.unwrap();
    assert_eq!(
        store
            .get_raw("/service/batman/optime/leader")
            .unwrap()
            .value,
        "50331968"
    );
    assert!(a.initialize(true, "").await.unwrap());
    assert_eq!(
        store.get_raw("/service/batman/initialize").unwrap().session,
        None
    );
}

#[tokio::test]
async fn status_and_failsafe_are_written_only_when_changed() {
    let (store, _clock) = MemoryStore::with_manual_clock();
    let (a, _) = node(&store, "a", None).await;
    let status: Status = Status::parse(r#"{"optime":10,"slots":{"a":10},"retain_slots":["a"]}"#);
    assert!(a.write_status(&status).await.unwrap());
    assert!(!a.write_status(&status).await.unwrap());
    // an optime-only write keeps the known slots
    assert!(a.write_optime(20).await.unwrap());
    let raw = store.get_raw("/service/batman/status").unwrap().value;
    assert_eq!(
        raw,
        r#"{"optime":20,"slots":{"a":10},"retain_slots":["a"]}"#
    );
    let fs = Failsafe::parse(r#"{"a":"http://a:8008/patroni"}"#).unwrap();
    assert!(a.write_failsafe(&fs).await.unwrap());
    assert!(!a.write_failsafe(&fs).await.unwrap());
    // a fresh node learns the current values from its first read
    let (b, _) = node(&store, "b", None).await;
    b.load().await.unwrap();
    assert!(!b.write_failsafe(&fs).await.unwrap());
    assert!(!b.write_status(&Status::parse(&raw)).await.unwrap());
}

#[tokio::test]
async fn backend_is_object_safe_and_spawnable() {
    let (store, _clock) = MemoryStore::with_manual_clock();
    let backend: Arc<dyn DcsBackend> = Arc::new(store.connect());
    backend.configure(settings("a", None)).await.unwrap();
    let task = tokio::spawn({
        let backend = backend.clone();
        async move { backend.attempt_to_acquire_leader().await }
    });
    assert!(task.await.unwrap().unwrap());
    assert_eq!(
        Dcs::new(backend).load().await.unwrap().leader_name(),
        Some("a")
    );
}
