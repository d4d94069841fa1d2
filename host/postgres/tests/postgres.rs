//! keel-postgres against a real PostgreSQL on loopback: temp dirs, free ports, unix sockets in
//! the temp dir, run as the unprivileged user (re-exec when root).

mod common;

use std::time::Duration;

use common::{Cluster, initdb_options, kill_tree, wait_caught_up, wait_streaming, wait_until};
use keel_postgres::{
    BootstrapMethod, Divergence, Error, Lane, LeaderInfo, Parameters, PostmasterStatus,
    ReplicaMethod, RewindOutcome, Role, SlotSpec, StopMode,
};

#[tokio::test]
async fn bootstrap_creates_a_primary_and_keeps_existing_data() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let pg = &c.nodes[n1].pg;
    let st = pg.state().await.expect("state");
    assert_eq!(st.role, Role::Primary);
    assert_eq!(st.timeline, Some(1));
    assert!(st.system_identifier > 0);
    assert!(pg.pending_restart().await.expect("pending").is_empty());
    let conf = std::fs::read_to_string(pg.data_dir().join("postgresql.conf")).expect("conf");
    assert!(conf.starts_with("# Do not edit"));
    assert!(conf.contains("include 'postgresql.base.conf'"));
    assert!(pg.data_dir().join("postgresql.base.conf").exists());
    // Command-line GUCs are in effect.
    assert_eq!(pg.query_text("SHOW cluster_name").await.expect("q"), "test");
    assert_eq!(pg.query_text("SHOW wal_log_hints").await.expect("q"), "on");
    // Post-bootstrap roles exist with the right attributes.
    let roles = pg
        .query_text("SELECT string_agg(rolname, ',' ORDER BY rolname) FROM pg_roles WHERE rolname IN ('replicator','rewind_user')")
        .await
        .expect("roles");
    assert_eq!(roles, "replicator,rewind_user");
    // A second bootstrap must not wipe the existing cluster.
    pg.stop(StopMode::Fast).await.expect("stop");
    let err = pg
        .bootstrap(&BootstrapMethod::Initdb(initdb_options()), false)
        .await
        .expect_err("must refuse");
    assert!(matches!(err, Error::DataDirNotEmpty { .. }), "{err}");
    assert!(pg.data_dir().join("PG_VERSION").exists());
}

#[tokio::test]
async fn an_unwritable_server_log_fails_bootstrap_before_initdb() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c
        .add("n1", |s| s.log_file = "/nonexistent-keel-dir/n1.log".into())
        .await;
    let pg = &c.nodes[n1].pg;
    let err = pg
        .bootstrap(&BootstrapMethod::Initdb(initdb_options()), false)
        .await
        .expect_err("the log cannot be written");
    assert!(
        err.to_string().contains("/nonexistent-keel-dir/n1.log"),
        "the error names the file: {err}"
    );
    assert!(
        !pg.data_dir().join("PG_VERSION").exists(),
        "nothing half-made is left behind"
    );
}

#[tokio::test]
async fn replica_by_basebackup_streams_with_a_slot() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    c.nodes[n1]
        .pg
        .sync_slots(&[SlotSpec::physical("n2")], &|_| false)
        .await
        .expect("slot");
    let up = c.nodes[n1].upstream();
    // A failing custom method first: basebackup is the fallback.
    let n2 = c
        .add("n2", |s| {
            s.create_replica_methods = vec![
                ReplicaMethod::Command {
                    name: "broken".into(),
                    command: "/bin/false".into(),
                    options: vec![],
                    no_params: false,
                    keep_data: false,
                    no_leader: false,
                },
                ReplicaMethod::Basebackup,
            ];
        })
        .await;
    let used = c.nodes[n2]
        .pg
        .create_replica(Some(&up))
        .await
        .expect("clone");
    assert_eq!(used, "basebackup");
    // A clone that lost postgresql.base.conf gets Keel's backup copy back (never a self-include).
    let base = c.nodes[n2].pg.data_dir().join("postgresql.base.conf");
    std::fs::remove_file(&base).expect("rm base");
    c.nodes[n2].pg.follow(Some(&up)).await.expect("follow");
    wait_streaming(&c.nodes[n1].pg, "n2").await;
    let (p, r) = (&c.nodes[n1].pg, &c.nodes[n2].pg);
    p.execute("CREATE TABLE t(x int); INSERT INTO t VALUES (42)")
        .await
        .expect("write");
    wait_caught_up(p, r).await;
    assert_eq!(
        r.query_text("SELECT x::text FROM t").await.expect("read"),
        "42"
    );
    let st = r.state().await.expect("state");
    assert_eq!(st.role, Role::Replica);
    assert_eq!(st.wal_receiver_status.as_deref(), Some("streaming"));
    assert!(st.receive_lsn.is_some() && st.replay_lsn.is_some() && st.flush_lsn.is_some());
    assert_eq!(st.timeline, Some(1));
    // The API lane reads the same state on its own connection, walsender rows included.
    let primary = p.state_on(Lane::Api).await.expect("primary state");
    let row = primary
        .replication
        .iter()
        .find(|row| row.application_name == "n2")
        .expect("n2 in pg_stat_replication");
    assert_eq!(row.state.as_deref(), Some("streaming"));
    assert!(row.flush_lsn.is_some() && row.replay_lsn.is_some() && row.pid > 0);
    let slots = p.slots().await.expect("slots");
    assert!(slots.iter().any(|s| s.name == "n2" && s.active));
    let conf = std::fs::read_to_string(r.data_dir().join("postgresql.conf")).expect("conf");
    assert!(conf.contains("primary_slot_name = 'n2'"));
    assert!(
        !std::fs::read_to_string(&base)
            .expect("base")
            .contains("Keel")
    );
    assert!(
        !conf.contains("rep-pass"),
        "password must live in the pgpass file"
    );
}

#[tokio::test]
async fn promote_waits_for_writes() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let n2 = c.replica("n2", n1).await;
    wait_streaming(&c.nodes[n1].pg, "n2").await;
    let r = &c.nodes[n2].pg;
    if let Err(e) = r.promote().await {
        panic!("promote: {e}\n{}", r.log_tail());
    }
    let st = r.state().await.expect("state");
    assert_eq!(st.role, Role::Primary);
    assert_eq!(st.timeline, Some(2));
    r.execute("CREATE TABLE after_promote(x int)")
        .await
        .expect("write");
    r.checkpoint().await.expect("checkpoint");
    assert!(r.checkpoint_after_promote_done().await.expect("cp"));
    assert!(!r.data_dir().join("standby.signal").exists());
}

#[tokio::test]
async fn old_primary_is_demoted_and_follows_the_new_one() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let n2 = c.replica("n2", n1).await;
    wait_streaming(&c.nodes[n1].pg, "n2").await;
    // Switchover: stop the old primary cleanly, let the replica replay its shutdown checkpoint.
    let (old, new) = (&c.nodes[n1].pg, &c.nodes[n2].pg);
    old.execute("CREATE TABLE s(x int); INSERT INTO s VALUES (1)")
        .await
        .expect("w");
    wait_caught_up(old, new).await;
    old.stop(StopMode::Fast).await.expect("stop");
    let (_, cp) = old
        .controldata()
        .await
        .expect("cd")
        .checkpoint()
        .expect("cp");
    wait_until(
        "shutdown checkpoint replayed",
        Duration::from_secs(30),
        || async {
            new.state()
                .await
                .is_ok_and(|s| s.replay_lsn.is_some_and(|l| l > cp))
        },
    )
    .await;
    new.promote().await.expect("promote");
    new.checkpoint().await.expect("checkpoint");
    // The new leader keeps a slot for the old one, as the HA loop would.
    new.sync_slots(&[SlotSpec::physical("n1")], &|_| false)
        .await
        .expect("slot");
    let up = c.nodes[n2].upstream();
    assert_eq!(
        old.check_divergence(&up).await.expect("check"),
        Divergence::None
    );
    old.follow(Some(&up)).await.expect("follow");
    wait_streaming(new, "n1").await;
    new.execute("INSERT INTO s VALUES (2)").await.expect("w");
    wait_caught_up(new, old).await;
    assert_eq!(
        old.query_text("SELECT sum(x)::text FROM s")
            .await
            .expect("r"),
        "3"
    );
    assert_eq!(old.state().await.expect("st").timeline, Some(2));
}

#[tokio::test]
async fn a_replica_that_followed_a_promotion_is_not_diverged_when_its_stream_stops() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let n2 = c.replica("n2", n1).await;
    let n3 = c.replica("n3", n1).await;
    wait_streaming(&c.nodes[n1].pg, "n2").await;
    wait_streaming(&c.nodes[n1].pg, "n3").await;
    c.nodes[n1]
        .pg
        .execute("CREATE TABLE f(x int); INSERT INTO f VALUES (1)")
        .await
        .expect("w");
    wait_caught_up(&c.nodes[n1].pg, &c.nodes[n2].pg).await;
    wait_caught_up(&c.nodes[n1].pg, &c.nodes[n3].pg).await;
    c.nodes[n1].pg.stop(StopMode::Fast).await.expect("stop n1");
    let (leader, follower) = (&c.nodes[n2].pg, &c.nodes[n3].pg);
    leader.promote().await.expect("promote");
    leader
        .sync_slots(&[SlotSpec::physical("n3")], &|_| false)
        .await
        .expect("slot");
    let up = c.nodes[n2].upstream();
    follower.follow(Some(&up)).await.expect("follow");
    wait_streaming(leader, "n3").await;
    leader.execute("INSERT INTO f VALUES (2)").await.expect("w");
    wait_caught_up(leader, follower).await;
    // The stream stops (as between a leader's loss and the next one's promotion): no receiver.
    follower.follow(None).await.expect("unfollow");
    wait_until("wal receiver gone", Duration::from_secs(30), || async {
        follower
            .state()
            .await
            .is_ok_and(|s| s.wal_receiver_status.is_none())
    })
    .await;
    // Without a receiver the state's timeline is the last restartpoint's, still 1: exactly the
    // case a divergence check must not trust.
    assert_eq!(follower.state().await.expect("st").timeline, Some(1));
    assert_eq!(follower.replay_timeline().await.expect("tli"), 2);
    assert_eq!(
        follower.check_divergence(&up).await.expect("check"),
        Divergence::None
    );
}

#[tokio::test]
async fn rewind_after_a_forced_divergence() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let n2 = c.replica("n2", n1).await;
    wait_streaming(&c.nodes[n1].pg, "n2").await;
    let (old, new) = (&c.nodes[n1].pg, &c.nodes[n2].pg);
    old.execute("CREATE TABLE d(x int); INSERT INTO d VALUES (1)")
        .await
        .expect("w");
    wait_caught_up(old, new).await;
    // Split brain: promote the replica while the old primary keeps writing.
    new.promote().await.expect("promote");
    old.execute("INSERT INTO d SELECT generate_series(100, 1000)")
        .await
        .expect("w");
    if let Err(e) = old.stop(StopMode::Fast).await {
        panic!("stop: {e:?}\n{}", old.log_tail());
    }
    let up = c.nodes[n2].upstream();
    let div = old.check_divergence(&up).await.expect("check");
    assert!(
        matches!(
            div,
            Divergence::Diverged {
                local_timeline: 1,
                leader_timeline: 2,
                ..
            }
        ),
        "{div:?}"
    );
    let leader = LeaderInfo {
        upstream: up.clone(),
        checkpoint_after_promote: None,
    };
    // The rewind role may not CHECKPOINT: until the leader's own post-promote checkpoint, wait.
    let err = old.rewind(&leader).await.expect_err("no checkpoint yet");
    assert!(matches!(err, Error::LeaderCheckpointPending), "{err}");
    new.checkpoint().await.expect("checkpoint");
    new.sync_slots(&[SlotSpec::physical("n1")], &|_| false)
        .await
        .expect("slot");
    assert_eq!(
        old.rewind(&leader).await.expect("rewind"),
        RewindOutcome::Rewound
    );
    assert!(!old.rewind_failed());
    old.follow(Some(&up)).await.expect("follow");
    wait_streaming(new, "n1").await;
    wait_caught_up(new, old).await;
    assert_eq!(
        old.query_text("SELECT count(*)::text FROM d")
            .await
            .expect("r"),
        "1"
    );
}

#[tokio::test]
async fn failed_rewind_is_never_a_healthy_replica() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let n2 = c.add("n2", |s| s.use_pg_rewind = true).await;
    // A leader that does not exist: the rewind fails.
    let nowhere = keel_postgres::Upstream::new("127.0.0.1", keel_testkit::free_port());
    let _ = n2;
    let pg = &c.nodes[n1].pg;
    pg.execute("SELECT 1").await.expect("up");
    let leader = LeaderInfo {
        upstream: nowhere.clone(),
        checkpoint_after_promote: Some(true),
    };
    let err = pg.rewind(&leader).await.expect_err("must fail");
    assert!(matches!(err, Error::RewindFailed { .. }), "{err}");
    assert!(pg.rewind_failed());
    let err = pg.follow(Some(&nowhere)).await.expect_err("must not start");
    assert!(matches!(err, Error::RewindFailed { .. }), "{err}");
    assert!(!pg.is_running());
}

#[tokio::test]
async fn slots_are_created_and_dropped() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let i = c
        .primary_with("n1", |s| {
            s.parameters.set("wal_level", "logical");
        })
        .await;
    let pg = &c.nodes[i].pg;
    let wanted = [
        SlotSpec::physical("n2"),
        SlotSpec::physical("keep_me"),
        SlotSpec::logical("cdc", "postgres", "pgoutput"),
    ];
    let r = pg.sync_slots(&wanted, &|_| false).await.expect("sync");
    assert_eq!(r.created, vec!["n2", "keep_me", "cdc"]);
    let r = pg.sync_slots(&wanted, &|_| false).await.expect("sync");
    assert!(r.created.is_empty() && r.dropped.is_empty());
    // Only n2 still wanted; keep_me is ignored (e.g. by the MPP plugin), cdc goes.
    let r = pg
        .sync_slots(&wanted[..1], &|s| s.name == "keep_me")
        .await
        .expect("sync");
    assert_eq!(r.dropped, vec!["cdc"]);
    assert_eq!(r.kept, vec!["keep_me"]);
    let mut names: Vec<String> = pg
        .slots()
        .await
        .expect("slots")
        .into_iter()
        .map(|s| s.name)
        .collect();
    names.sort();
    assert_eq!(names, vec!["keep_me", "n2"]);
    assert!(
        pg.sync_slots(&[SlotSpec::physical("Bad-Name")], &|_| false)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn restart_parameters_are_reported_pending() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let pg = &c.nodes[n1].pg;
    let mut params = Parameters::new();
    params
        .set("Shared_Buffers", "64MB")
        .set("work_mem", "8MB")
        .set("max_connections", "120");
    let plan = pg.apply_parameters(params).await.expect("apply");
    assert_eq!(plan.reload, vec!["work_mem"]);
    let mut restart = plan.restart.clone();
    restart.sort();
    assert_eq!(restart, vec!["max_connections", "shared_buffers"]);
    assert_eq!(pg.query_text("SHOW work_mem").await.expect("q"), "8MB");
    let pending = pg.pending_restart().await.expect("pending");
    let names: Vec<&str> = pending.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["max_connections", "shared_buffers"]);
    // Patroni's pending_restart_reason: the running value as SHOW prints it, and the new one.
    assert_eq!(
        (pending[1].old_value.as_str(), pending[1].new_value.as_str()),
        ("128MB", "64MB")
    );
    assert_eq!(
        (pending[0].old_value.as_str(), pending[0].new_value.as_str()),
        ("100", "120")
    );
    pg.restart(StopMode::Fast).await.expect("restart");
    assert!(pg.pending_restart().await.expect("pending").is_empty());
    assert_eq!(
        pg.query_text("SHOW max_connections").await.expect("q"),
        "120"
    );
}

#[tokio::test]
async fn crash_left_pid_file_does_not_block_start() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let pg = &c.nodes[n1].pg;
    let PostmasterStatus::Running { pid, managed: true } = pg.postmaster_status() else {
        panic!("not running")
    };
    kill_tree(pid);
    assert!(pg.crashed(), "a killed postmaster is a crash");
    // Make it worse: the pid in postmaster.pid now belongs to an unrelated live process.
    let mut sleeper = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .expect("sleep");
    let pidfile = pg.data_dir().join("postmaster.pid");
    let text = std::fs::read_to_string(&pidfile).expect("pidfile");
    let rest = text.split_once('\n').expect("lines").1;
    std::fs::write(&pidfile, format!("{}\n{rest}", sleeper.id())).expect("write");
    assert!(matches!(
        pg.postmaster_status(),
        PostmasterStatus::Stale {
            pid_alive: true,
            ..
        }
    ));
    pg.start().await.expect("start despite stale pid file");
    assert!(pg.is_running() && !pg.crashed());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

#[tokio::test]
async fn foreign_postgres_is_detected_and_not_started_twice() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    // A second handle on the same data directory did not start it.
    let settings = c.nodes[n1].pg.settings().clone();
    let bin = c.nodes[n1].pg.bin().clone();
    let other = keel_postgres::Postgres::new(settings, bin);
    let PostmasterStatus::Running {
        pid,
        managed: false,
    } = other.postmaster_status()
    else {
        panic!("running postgres not detected")
    };
    let err = other.start().await.expect_err("must not start twice");
    assert!(
        matches!(err, Error::AlreadyRunning { pid: p, .. } if p == pid),
        "{err}"
    );
    assert_eq!(other.adopt().expect("adopt"), pid);
    assert!(!other.crashed());
    assert_eq!(other.state().await.expect("state").role, Role::Primary);
}

#[tokio::test]
async fn rewind_after_the_old_primary_crashed() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c.primary("n1").await;
    let n2 = c.replica("n2", n1).await;
    wait_streaming(&c.nodes[n1].pg, "n2").await;
    let (old, new) = (&c.nodes[n1].pg, &c.nodes[n2].pg);
    old.execute("CREATE TABLE k(x int); INSERT INTO k VALUES (1)")
        .await
        .expect("w");
    wait_caught_up(old, new).await;
    new.promote().await.expect("promote");
    new.checkpoint().await.expect("checkpoint");
    new.sync_slots(&[SlotSpec::physical("n1")], &|_| false)
        .await
        .expect("slot");
    old.execute("INSERT INTO k SELECT generate_series(2, 500)")
        .await
        .expect("w");
    let PostmasterStatus::Running { pid, .. } = old.postmaster_status() else {
        panic!("not running")
    };
    kill_tree(pid);
    assert!(old.crashed());
    let up = c.nodes[n2].upstream();
    let div = old.check_divergence(&up).await.expect("check");
    assert!(matches!(div, Divergence::Diverged { .. }), "{div:?}");
    // pg_rewind needs a clean target: single-user crash recovery runs first.
    let leader = LeaderInfo {
        upstream: up.clone(),
        checkpoint_after_promote: Some(true),
    };
    assert_eq!(
        old.rewind(&leader).await.expect("rewind"),
        RewindOutcome::Rewound
    );
    old.follow(Some(&up)).await.expect("follow");
    wait_streaming(new, "n1").await;
    wait_caught_up(new, old).await;
    assert_eq!(
        old.query_text("SELECT count(*)::text FROM k")
            .await
            .expect("r"),
        "1"
    );
}

#[tokio::test]
async fn custom_bootstrap_command() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let initdb = c.bins.bin("initdb");
    let script = c.layout.root().join("bootstrap.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\nfor a in \"$@\"; do case $a in --datadir=*) D=${{a#--datadir=}};; \
             --scope=*) S=${{a#--scope=}};; esac; done\n\
             [ \"$S\" = test ] || exit 3\n\
             exec {} -D \"$D\" -U postgres --auth-local=trust --no-sync >/dev/null\n",
            initdb.display()
        ),
    )
    .expect("script");
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .expect("chmod");
    let i = c.add("n1", |_| {}).await;
    let pg = &c.nodes[i].pg;
    let method = BootstrapMethod::Custom {
        command: script.display().to_string(),
        options: vec![("label".into(), "x".into())],
        no_params: false,
        recovery_conf: None,
    };
    pg.bootstrap(&method, false)
        .await
        .expect("custom bootstrap");
    assert_eq!(pg.state().await.expect("st").role, Role::Primary);
    // Wiping has to be asked for explicitly.
    pg.stop(StopMode::Fast).await.expect("stop");
    let again = BootstrapMethod::Initdb(initdb_options());
    pg.bootstrap(&again, true)
        .await
        .expect("wipe and bootstrap");
    assert!(pg.is_running());
}

#[tokio::test]
async fn replica_starts_with_the_primarys_higher_pg_control_values() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c
        .primary_with("n1", |s| {
            s.parameters.set("max_connections", "150");
        })
        .await;
    // n2 is configured with the default 100: PostgreSQL would refuse to start a hot standby.
    let n2 = c.replica("n2", n1).await;
    let r = &c.nodes[n2].pg;
    assert_eq!(
        r.query_text("SHOW max_connections").await.expect("q"),
        "150"
    );
    let pending = r.pending_restart().await.expect("pending");
    let names: Vec<&str> = pending.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, vec!["max_connections"]);
}

#[tokio::test]
async fn logical_slots_are_copied_to_a_replica() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c
        .primary_with("n1", |s| {
            s.parameters.set("wal_level", "logical");
        })
        .await;
    let n2 = c
        .add("n2", |s| {
            s.parameters.set("wal_level", "logical");
        })
        .await;
    let up = c.nodes[n1].upstream();
    c.nodes[n2]
        .pg
        .create_replica(Some(&up))
        .await
        .expect("clone");
    c.nodes[n2].pg.follow(Some(&up)).await.expect("follow");
    let (p, r) = (&c.nodes[n1].pg, &c.nodes[n2].pg);
    let mut wanted = vec![
        SlotSpec::physical("n2"),
        SlotSpec::logical("cdc", "postgres", "pgoutput"),
    ];
    p.sync_slots(&wanted, &|_| false).await.expect("slots");
    let copied = r
        .copy_logical_slots(
            &c.nodes[n1].upstream(),
            &["cdc".to_owned(), "nope".to_owned()],
        )
        .await
        .expect("copy");
    assert_eq!(copied, vec!["cdc"]);
    // Below wal_level=logical the copy is refused before anything is stopped.
    let plain = keel_postgres::Postgres::new(common::settings(&c.layout, "x", 1), r.bin().clone());
    let refused = plain.copy_logical_slots(&up, &["cdc".to_owned()]).await;
    assert!(
        matches!(refused, Err(Error::InvalidParameter { .. })),
        "{refused:?}"
    );
    assert!(r.is_running());
    let slots = r.slots().await.expect("slots");
    let cdc = slots.iter().find(|s| s.name == "cdc").expect("copied slot");
    assert!(
        matches!(&cdc.kind, keel_postgres::SlotKind::Logical { plugin, .. } if plugin == "pgoutput")
    );
    // What the HA loop reads to judge a copy: the primary's slots, with the catalog_xmin the
    // copy carries over and the feedback slot (no catalog_xmin without hot_standby_feedback) ...
    let names = ["cdc".to_owned(), "n2".to_owned(), "nope".to_owned()];
    let on_primary = r.leader_slots(&up, &names).await.expect("leader slots");
    let mut found: Vec<&str> = on_primary.iter().map(|s| s.name.as_str()).collect();
    found.sort_unstable();
    assert_eq!(found, ["cdc", "n2"]);
    let primary_cdc = on_primary.iter().find(|s| s.name == "cdc").unwrap();
    assert!(primary_cdc.catalog_xmin.is_some(), "{primary_cdc:?}");
    assert_eq!(cdc.catalog_xmin, primary_cdc.catalog_xmin, "the copy's own");
    let feedback = on_primary.iter().find(|s| s.name == "n2").unwrap();
    assert_eq!(feedback.kind, keel_postgres::SlotKind::Physical);
    // ... and nothing from a server in recovery.
    let from_replica = p
        .leader_slots(&c.nodes[n2].upstream(), &names)
        .await
        .expect("replica slots");
    assert!(from_replica.is_empty(), "{from_replica:?}");
    // The replica's oldest WAL: a segment boundary, not after what it replayed.
    let oldest = r
        .oldest_wal_lsn()
        .await
        .expect("oldest")
        .expect("a segment");
    assert_eq!(oldest.0 % (16 << 20), 0, "{oldest}");
    let replayed = r.state().await.expect("state").replay_lsn.expect("replay");
    assert!(oldest <= replayed, "{oldest} > {replayed}");

    // The replica's slot sync keeps the copy when it is wanted there.
    wanted.remove(0);
    let report = r.sync_slots(&wanted, &|_| false).await.expect("sync");
    assert!(
        report.created.is_empty() && report.dropped.is_empty(),
        "{report:?}"
    );
}

#[tokio::test]
async fn before_stop_runs_while_the_server_is_still_up() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let marker = tempfile::NamedTempFile::new().expect("marker");
    let marker_path = marker.path().to_owned();
    let n1 = c
        .primary_with("n1", |s| {
            s.before_stop = Some(format!(
                "test -f {}/postmaster.pid && echo up >> {}",
                s.data_dir.display(),
                marker_path.display()
            ));
        })
        .await;
    let pg = &c.nodes[n1].pg;
    let lines = || {
        std::fs::read_to_string(&marker_path)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let before = lines();
    assert!(pg.stop(StopMode::Fast).await.expect("stop"));
    assert_eq!(
        lines(),
        before + 1,
        "before_stop ran once, with the server up"
    );
    assert!(!pg.stop(StopMode::Fast).await.expect("stop"));
    assert_eq!(lines(), before + 1, "nothing to stop, nothing run");
}

/// A fast stop runs a CHECKPOINT first (Patroni does too): the shutdown checkpoint then has
/// little left to write. An immediate stop does not.
#[tokio::test]
async fn a_fast_stop_checkpoints_before_shutting_down() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let n1 = c
        .primary_with("n1", |s| {
            s.parameters.set("log_checkpoints", "on");
        })
        .await;
    let pg = &c.nodes[n1].pg;
    let log = || std::fs::read_to_string(&pg.settings().log_file).unwrap_or_default();
    let requested = |text: &str| {
        text.matches("checkpoint starting: immediate force wait")
            .count()
    };
    let before = requested(&log());
    assert!(pg.stop(StopMode::Fast).await.expect("stop"));
    let text = log();
    assert_eq!(requested(&text), before + 1, "{text}");
    let forced = text
        .rfind("checkpoint starting: immediate force wait")
        .unwrap();
    let shutdown = text
        .rfind("checkpoint starting: shutdown")
        .expect("a shutdown checkpoint");
    assert!(forced < shutdown, "the CHECKPOINT came first: {text}");

    pg.start().await.expect("start");
    let before = requested(&log());
    assert!(pg.stop(StopMode::Immediate).await.expect("stop"));
    assert_eq!(
        requested(&log()),
        before,
        "no CHECKPOINT before an immediate stop"
    );
}

/// Point-in-time recovery as a custom bootstrap: the command restores a base backup, and
/// `recovery_conf` replays the archive up to a target, after which the new cluster is
/// promoted and gets its roles. The row written before the target is there, the one
/// written after it is not.
#[tokio::test]
async fn a_custom_bootstrap_recovers_a_backup_to_a_point_in_time() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let archive = c.layout.root().join("archive");
    let backup = c.layout.root().join("backup");
    std::fs::create_dir_all(&archive).expect("archive dir");
    let archive_command = format!("cp %p {}/%f", archive.display());
    let n1 = c
        .primary_with("n1", |s| {
            s.parameters.set("archive_mode", "on");
            s.parameters.set("archive_command", archive_command.clone());
        })
        .await;
    let source = &c.nodes[n1].pg;
    let basebackup = c.bins.bin("pg_basebackup");
    let status = std::process::Command::new(&basebackup)
        .arg(format!("--pgdata={}", backup.display()))
        .arg(format!("--port={}", source.settings().port))
        .args(["--host=127.0.0.1", "--username=replicator"])
        .args(["--checkpoint=fast", "--wal-method=none"])
        .env("PGPASSWORD", "rep-pass")
        .status()
        .expect("pg_basebackup");
    assert!(status.success());
    source
        .execute("CREATE TABLE pitr (v int); INSERT INTO pitr VALUES (1)")
        .await
        .expect("before the target");
    source
        .execute("SELECT pg_create_restore_point('target')")
        .await
        .expect("restore point");
    source
        .execute("INSERT INTO pitr VALUES (2)")
        .await
        .expect("after the target");
    // Wait until the segment with both rows is archived.
    let segment = source
        .query_text("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .await
        .expect("segment");
    source
        .execute("SELECT pg_switch_wal()")
        .await
        .expect("switch");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !archive.join(&segment).exists() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(archive.join(&segment).exists(), "{segment} archived");
    source.stop(StopMode::Fast).await.expect("stop the source");

    let n2 = c.add("n2", |_| {}).await;
    let pg = &c.nodes[n2].pg;
    let mut recovery_conf = keel_postgres::Parameters::new();
    recovery_conf.set("restore_command", format!("cp {}/%f %p", archive.display()));
    recovery_conf.set("recovery_target_name", "target");
    let method = BootstrapMethod::Custom {
        command: format!("cp -a {}/. {}", backup.display(), pg.data_dir().display()),
        options: Vec::new(),
        no_params: true,
        recovery_conf: Some(recovery_conf),
    };
    pg.bootstrap(&method, false)
        .await
        .expect("point-in-time recovery");
    assert_eq!(pg.state().await.expect("st").role, Role::Primary);
    assert_eq!(
        pg.query_text("SELECT string_agg(v::text, ',') FROM pitr")
            .await
            .expect("rows"),
        "1"
    );
    assert!(
        !pg.data_dir().join("recovery.signal").exists(),
        "no recovery left behind"
    );
    let conf = std::fs::read_to_string(pg.data_dir().join("postgresql.conf")).expect("conf");
    assert!(!conf.contains("recovery_target_name"), "{conf}");
}

/// Before pg_rewind, the WAL the old primary never archived is archived (as Patroni does):
/// the rewind replaces it with the new primary's, and the diverged end of the old timeline
/// would otherwise never reach the archive.
#[tokio::test]
async fn unarchived_wal_is_archived_before_a_rewind() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::new() else { return };
    let archive = c.layout.root().join("archive");
    let blocked = c.layout.root().join("archiving-blocked");
    std::fs::create_dir_all(&archive).expect("archive dir");
    std::fs::write(&blocked, "").expect("flag");
    let archive_command = format!(
        "test ! -e {} && cp %p {}/%f",
        blocked.display(),
        archive.display()
    );
    let n1 = c
        .primary_with("n1", |s| {
            s.parameters.set("archive_mode", "on");
            s.parameters.set("archive_command", archive_command.clone());
        })
        .await;
    let n2 = c.replica("n2", n1).await;
    wait_streaming(&c.nodes[n1].pg, "n2").await;
    let (old, new) = (&c.nodes[n1].pg, &c.nodes[n2].pg);
    old.execute("CREATE TABLE d(x int); INSERT INTO d VALUES (1)")
        .await
        .expect("w");
    wait_caught_up(old, new).await;
    new.promote().await.expect("promote");
    old.execute("INSERT INTO d SELECT generate_series(100, 1000)")
        .await
        .expect("diverged writes");
    let diverged = old
        .query_text("SELECT pg_walfile_name(pg_current_wal_lsn())")
        .await
        .expect("segment");
    old.execute("SELECT pg_switch_wal()").await.expect("switch");
    old.stop(StopMode::Fast).await.expect("stop");
    assert!(!archive.join(&diverged).exists(), "archiving was blocked");
    // The archive works again, but nothing runs archive_command on the stopped node.
    std::fs::remove_file(&blocked).expect("unblock");
    new.checkpoint().await.expect("checkpoint");
    let leader = LeaderInfo {
        upstream: c.nodes[n2].upstream(),
        checkpoint_after_promote: None,
    };
    assert_eq!(
        old.rewind(&leader).await.expect("rewind"),
        RewindOutcome::Rewound
    );
    assert!(
        archive.join(&diverged).exists(),
        "{diverged} was archived before the rewind"
    );
}
