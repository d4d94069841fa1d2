//! Shared set-up for the keel-postgres integration tests: nodes in one temporary layout, with
//! password authentication over loopback and trust on the socket.

#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::time::{Duration, Instant};

use keel_postgres::{
    Binaries, BootstrapMethod, Credentials, InitdbOption, Postgres, Settings, SlotSpec, Upstream,
};
use keel_testkit::{PgBinaries, PgLayout, StopPostgresOnDrop, free_port};

pub struct Node {
    pub pg: Postgres,
    pub port: u16,
    _guard: StopPostgresOnDrop,
}

impl Node {
    pub fn upstream(&self) -> Upstream {
        Upstream::new("127.0.0.1", self.port)
    }
}

/// Nodes first, layout last: the guards stop the servers before the directories go.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub bins: PgBinaries,
    pub layout: PgLayout,
}

pub fn initdb_options() -> Vec<InitdbOption> {
    vec![
        InitdbOption::Value("encoding".into(), "UTF8".into()),
        InitdbOption::Value("locale".into(), "C".into()),
        InitdbOption::Value("auth-local".into(), "trust".into()),
        InitdbOption::Value("auth-host".into(), "scram-sha-256".into()),
        InitdbOption::Flag("no-sync".into()),
    ]
}

pub fn settings(layout: &PgLayout, name: &str, port: u16) -> Settings {
    let mut s = Settings::new(name, layout.data_dir(name), layout.socket_dir(), port);
    s.scope = "test".into();
    s.superuser = Credentials::with_password("postgres", "su-pass");
    s.replication = Credentials::with_password("replicator", "rep-pass");
    s.rewind = Some(Credentials::with_password("rewind_user", "rw-pass"));
    s.pg_hba = vec![
        "local all all trust".into(),
        "host all all 127.0.0.1/32 scram-sha-256".into(),
        "host replication replicator 127.0.0.1/32 scram-sha-256".into(),
    ];
    s.basebackup = vec![InitdbOption::Value("checkpoint".into(), "fast".into())];
    s.timeouts.start = Duration::from_secs(30);
    s.timeouts.stop = Duration::from_secs(30);
    s.timeouts.promote = Duration::from_secs(30);
    s.timeouts.command = Duration::from_secs(120);
    s
}

impl Cluster {
    /// `None` only under KEEL_SKIP_E2E=1 without PostgreSQL.
    pub fn new() -> Option<Self> {
        let bins = PgBinaries::discover()?;
        Some(Self {
            nodes: Vec::new(),
            bins,
            layout: PgLayout::new(),
        })
    }

    /// Adds a node (nothing started) with `edit` applied to its settings.
    pub async fn add(&mut self, name: &str, edit: impl FnOnce(&mut Settings)) -> usize {
        let port = free_port();
        let mut s = settings(&self.layout, name, port);
        edit(&mut s);
        let bin = Binaries::new(self.bins.dir()).await.expect("binaries");
        let guard = StopPostgresOnDrop::new(&self.bins, self.layout.data_dir(name));
        self.nodes.push(Node {
            pg: Postgres::new(s, bin),
            port,
            _guard: guard,
        });
        self.nodes.len() - 1
    }

    /// A bootstrapped primary.
    pub async fn primary(&mut self, name: &str) -> usize {
        self.primary_with(name, |_| {}).await
    }

    /// A bootstrapped primary whose settings `edit` changed first.
    pub async fn primary_with(&mut self, name: &str, edit: impl FnOnce(&mut Settings)) -> usize {
        let i = self.add(name, edit).await;
        self.nodes[i]
            .pg
            .bootstrap(&BootstrapMethod::Initdb(initdb_options()), false)
            .await
            .expect("bootstrap");
        i
    }

    /// A streaming replica of node `of`, cloned with pg_basebackup.
    pub async fn replica(&mut self, name: &str, of: usize) -> usize {
        let up = self.nodes[of].upstream();
        // What the HA loop does on the primary: a physical slot per member.
        let mut wanted: Vec<_> = self.nodes[of]
            .pg
            .slots()
            .await
            .expect("slots")
            .into_iter()
            .map(|s| SlotSpec::physical(s.name))
            .collect();
        wanted.push(SlotSpec::physical(name));
        self.nodes[of]
            .pg
            .sync_slots(&wanted, &|_| false)
            .await
            .expect("slot");
        let i = self.add(name, |_| {}).await;
        self.nodes[i]
            .pg
            .create_replica(Some(&up))
            .await
            .expect("clone");
        self.nodes[i].pg.follow(Some(&up)).await.expect("follow");
        i
    }
}

/// Polls `check` every 50 ms until it returns true, at most `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `primary` shows `replica_name` streaming.
pub async fn wait_streaming(primary: &Postgres, replica_name: &str) {
    wait_until("streaming", Duration::from_secs(30), || async {
        primary.replication().await.is_ok_and(|rows| {
            rows.iter().any(|r| {
                r.application_name == replica_name && r.state.as_deref() == Some("streaming")
            })
        })
    })
    .await;
}

/// Waits until `replica` has replayed `primary`'s current WAL position.
pub async fn wait_caught_up(primary: &Postgres, replica: &Postgres) {
    let target = primary.state().await.expect("state").wal_lsn.expect("lsn");
    wait_until("replay", Duration::from_secs(30), || async {
        replica
            .state()
            .await
            .is_ok_and(|s| s.replay_lsn.is_some_and(|l| l >= target))
    })
    .await;
}

/// SIGKILLs `pid` and its direct children (a postmaster and its backends).
pub fn kill_tree(pid: u32) {
    let mut pids = vec![pid];
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for e in entries.flatten() {
            let Ok(child) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            if ppid == Some(pid) {
                pids.push(child);
            }
        }
    }
    for p in pids {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &p.to_string()])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}
