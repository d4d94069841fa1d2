//! Timings of the PostgreSQL operations the HA loop waits on, against a real PostgreSQL on
//! loopback: promote (until writes are accepted), demote-and-follow (fast stop of the old primary
//! until it streams from the new one) and pg_basebackup of an empty cluster.
//!
//! `cargo bench -p keel-postgres --bench postgres_ops`; iterations from `KEEL_BENCH_ITERS`
//! (default 10). As root it re-runs itself as the unprivileged test user.
#![allow(clippy::print_stdout, reason = "a bench binary reports on stdout")]

use std::time::{Duration, Instant};

use keel_postgres::{
    Binaries, BootstrapMethod, Credentials, InitdbOption, Postgres, Settings, SlotSpec, StopMode,
    Upstream,
};
use keel_testkit::{PgBinaries, PgLayout, StopPostgresOnDrop, free_port};

fn settings(layout: &PgLayout, name: &str) -> Settings {
    let mut s = Settings::new(
        name,
        layout.data_dir(name),
        layout.socket_dir(),
        free_port(),
    );
    s.superuser = Credentials::with_password("postgres", "su");
    s.replication = Credentials::with_password("replicator", "rep");
    s.pg_hba = vec![
        "local all all trust".into(),
        "host all all 127.0.0.1/32 scram-sha-256".into(),
        "host replication replicator 127.0.0.1/32 scram-sha-256".into(),
    ];
    s
}

fn up(pg: &Postgres) -> Upstream {
    Upstream::new("127.0.0.1", pg.settings().port)
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    let pick = |q: f64| {
        let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "{name:<21} n={:<3} p50={:>8.1} ms  p99={:>8.1} ms  min={:>8.1} ms",
        samples.len(),
        pick(0.5),
        pick(0.99),
        pick(0.0)
    );
}

async fn wait_streaming(primary: &Postgres, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if primary.replication().await.is_ok_and(|rows| {
            rows.iter()
                .any(|r| r.application_name == name && r.state.as_deref() == Some("streaming"))
        }) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} never streamed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn wait_replayed(replica: &Postgres, past: keel_postgres::Lsn) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !replica
        .state()
        .await
        .is_ok_and(|s| s.replay_lsn.is_some_and(|l| l > past))
    {
        assert!(
            Instant::now() < deadline,
            "replica never replayed {past}: {:?}\n{}",
            replica.state().await,
            replica.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn run(iters: usize) {
    let Some(bins) = PgBinaries::discover() else {
        return;
    };
    let layout = PgLayout::new();
    let bin = Binaries::new(bins.dir()).await.expect("binaries");
    let _guards = ["a", "b", "clone"].map(|n| StopPostgresOnDrop::new(&bins, layout.data_dir(n)));
    let a = Postgres::new(settings(&layout, "a"), bin.clone());
    let b = Postgres::new(settings(&layout, "b"), bin.clone());
    let options = vec![
        InitdbOption::Value("auth-local".into(), "trust".into()),
        InitdbOption::Value("auth-host".into(), "scram-sha-256".into()),
    ];
    a.bootstrap(&BootstrapMethod::Initdb(options), false)
        .await
        .expect("bootstrap");
    let both = [SlotSpec::physical("a"), SlotSpec::physical("b")];
    a.sync_slots(&both[1..], &|_| false).await.expect("slot");

    // pg_basebackup of an empty cluster: PostgreSQL's default spread checkpoint, and with
    // `basebackup: [{checkpoint: fast}]`.
    let (mut spread, mut fast) = (Vec::new(), Vec::new());
    for i in 0..2 * iters {
        let mut s = settings(&layout, "clone");
        if i % 2 == 1 {
            s.basebackup = vec![InitdbOption::Value("checkpoint".into(), "fast".into())];
        }
        let clone = Postgres::new(s, bin.clone());
        let t = Instant::now();
        clone.basebackup(&up(&a)).await.expect("basebackup");
        if i % 2 == 1 { &mut fast } else { &mut spread }.push(t.elapsed());
        clone.remove_data_directory().expect("rm");
    }

    b.create_replica(Some(&up(&a))).await.expect("clone");
    b.follow(Some(&up(&a))).await.expect("follow");
    wait_streaming(&a, "b").await;

    // Switchover cycles: the primary is demoted, the replica promoted, the old primary follows.
    let (mut primary, mut replica) = (&a, &b);
    let (mut promote, mut demote) = (Vec::new(), Vec::new());
    for _ in 0..iters {
        let t = Instant::now();
        primary.stop(StopMode::Fast).await.expect("stop");
        let stop_time = t.elapsed();
        let (_, cp) = primary
            .controldata()
            .await
            .expect("cd")
            .checkpoint()
            .expect("cp");
        wait_replayed(replica, cp).await;

        let t = Instant::now();
        replica.promote().await.expect("promote");
        promote.push(t.elapsed());

        replica
            .sync_slots(&both, &|s| s.name == replica.settings().name)
            .await
            .ok();
        replica.checkpoint().await.expect("checkpoint");
        let t = Instant::now();
        primary.follow(Some(&up(replica))).await.expect("follow");
        wait_streaming(replica, &primary.settings().name).await;
        demote.push(stop_time + t.elapsed());
        std::mem::swap(&mut primary, &mut replica);
    }
    println!(
        "keel-postgres on PostgreSQL {} ({} iterations)",
        bin.major(),
        iters
    );
    report("promote", promote);
    report("demote-and-follow", demote);
    report("basebackup (spread)", spread);
    report("basebackup (fast)", fast);
}

fn main() {
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    if let Some(status) = keel_testkit::unprivileged::reexec_current_exe_if_root(&args) {
        std::process::exit(status.code().unwrap_or(1));
    }
    let iters = std::env::var("KEEL_BENCH_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(run(iters));
}
