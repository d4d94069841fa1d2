//! plugins/citus, the wasm component loaded by keel-runtime as keeld loads it, on a real
//! PostgreSQL 15 with the Citus emulation fixture: bootstrap, pg_dist_node kept equal to the
//! formation through a worker failover, and the transparent worker switchover (coordinator
//! writes wait while the pause is open and go to the new primary after it), with its deadline,
//! its queue, demotion, and failing or trapping calls that must not leave a pause behind.
//!
//! Waiting is proved with bounds, as in citus_fixture.rs: a blocked writer must be seen waiting
//! for the group's lock in pg_locks, and must finish within 10 s of the pause ending.
//!
//! Over 600 lines: a test module, one test per property, sharing one coordinator helper.

use std::time::{Duration, Instant};

use keel_runtime::{
    BootstrapContext, GroupView, MppError, MppEvent, MppEventKind, MppPlugin, Parameter,
    PluginKind, PluginLimits, SlotInfo,
};
use keel_tests::citus::{CitusComponent, TempCitus, group, member};
use tokio::task::JoinHandle;
use tokio_postgres::Client;

/// `(nodeid, groupid, nodename, nodeport, noderole)`.
type NodeRow = (i32, i32, String, i32, String);

/// A coordinator leader with the plugin bootstrapped on it.
struct Coordinator {
    citus: TempCitus,
    plugin: MppPlugin,
    /// A superuser session on the Citus database, for checking effects.
    admin: Client,
    _component: CitusComponent,
}

const CONFIG: &str = r#"{"group": 0, "database": "citus"}"#;

impl Coordinator {
    async fn start() -> Option<Self> {
        Self::start_with(PluginLimits::default()).await
    }

    async fn start_with(limits: PluginLimits) -> Option<Self> {
        let citus = TempCitus::start().await?;
        let component = CitusComponent::load().await;
        let plugin = component.handler(citus.grants(), limits);
        plugin.validate_config(CONFIG).await.unwrap();
        plugin.bootstrap(&context(citus.port(), &[])).await.unwrap();
        let admin = citus.connect("citus").await;
        Some(Self {
            citus,
            plugin,
            admin,
            _component: component,
        })
    }

    /// A coordinator whose plugin calls may run 1 s (plus what the host allows an event),
    /// with the formation already registered.
    async fn synced_with_one_second_calls() -> Option<Self> {
        let limits = PluginLimits {
            call_timeout: Duration::from_secs(1),
            ..PluginLimits::default()
        };
        let c = Self::start_with(limits).await?;
        c.plugin.sync_meta_data(&c.formation()).await.unwrap();
        Some(c)
    }

    fn port(&self) -> u16 {
        self.citus.port()
    }

    /// The coordinator `coord` with a replica, worker group 1 (`w1a` leads, `w1b`
    /// replicates) and group 2 (`w2a` leads, `w2b` replicates).
    fn formation(&self) -> Vec<GroupView> {
        vec![
            group(
                0,
                "coord",
                vec![
                    member("coord", "127.0.0.1", self.port(), "primary", "running"),
                    member("coord-r", "127.0.0.2", 5432, "replica", "running"),
                ],
            ),
            worker(
                1,
                ("w1a", "primary", "running"),
                ("w1b", "replica", "running"),
            ),
            worker(
                2,
                ("w2a", "primary", "running"),
                ("w2b", "replica", "running"),
            ),
        ]
    }

    /// Bootstrap plus one cycle: every row registered.
    async fn registered() -> Option<Self> {
        let c = Self::start().await?;
        c.plugin.sync_meta_data(&c.formation()).await.unwrap();
        assert_eq!(c.rows().await, c.registered_rows());
        Some(c)
    }

    fn registered_rows(&self) -> Vec<NodeRow> {
        let port = i32::from(self.port());
        vec![
            (1, 0, "127.0.0.1".into(), port, "primary".into()),
            (2, 0, "127.0.0.2".into(), 5432, "secondary".into()),
            row(3, 1, "127.0.1.1", "primary"),
            row(4, 1, "127.0.1.2", "secondary"),
            row(5, 2, "127.0.2.1", "primary"),
            row(6, 2, "127.0.2.2", "secondary"),
        ]
    }

    /// pg_dist_node as committed.
    async fn rows(&self) -> Vec<NodeRow> {
        self.admin
            .query(
                "SELECT nodeid, groupid, nodename, nodeport, noderole::text
                 FROM pg_catalog.pg_dist_node ORDER BY nodeid",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4)))
            .collect()
    }

    /// The states of the plugin's sessions (`idle`, `idle in transaction`, ...).
    async fn plugin_sessions(&self) -> Vec<String> {
        self.admin
            .query(
                "SELECT state FROM pg_stat_activity WHERE application_name = 'keel-plugin-citus'",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.get::<_, Option<String>>(0).unwrap_or_default())
            .collect()
    }

    /// Waits (up to 10 s) until the plugin holds no transaction open.
    async fn until_no_plugin_transaction(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let sessions = self.plugin_sessions().await;
            if !sessions
                .iter()
                .any(|s| s.contains("transaction") || s == "active")
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the plugin still holds a transaction: {sessions:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A write through the coordinator to a shard of `group`, in the background.
    async fn write_to(&self, group: i32) -> JoinHandle<Result<String, tokio_postgres::Error>> {
        let writer = self.citus.connect("citus").await;
        tokio::spawn(async move {
            writer
                .query_one(
                    "SELECT nodename FROM keel_emulation.coordinator_write($1)",
                    &[&group],
                )
                .await
                .map(|r| r.get(0))
        })
    }

    /// A write to `group` that gives up after 300 ms of waiting: `Ok(node)` or the SQLSTATE.
    async fn impatient_write_to(&self, group: i32) -> Result<String, String> {
        let writer = self.citus.connect("citus").await;
        writer
            .batch_execute("SET lock_timeout = '300ms'")
            .await
            .unwrap();
        writer
            .query_one(
                "SELECT nodename FROM keel_emulation.coordinator_write($1)",
                &[&group],
            )
            .await
            .map(|r| r.get(0))
            .map_err(|e| e.code().map(|c| c.code().to_owned()).unwrap_or_default())
    }

    /// Waits (up to 10 s) until some session waits for a group's lock.
    async fn until_a_writer_waits(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = self
                .admin
                .query_one(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            if waiting > 0 {
                return;
            }
            assert!(Instant::now() < deadline, "no writer waited for the group");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn row(nodeid: i32, group: i32, host: &str, role: &str) -> NodeRow {
    (nodeid, group, host.to_owned(), 5432, role.to_owned())
}

/// Worker group `n`: members `<name>` at `127.0.<n>.1` and `127.0.<n>.2`, the first leading.
fn worker(n: u32, first: (&str, &str, &str), second: (&str, &str, &str)) -> GroupView {
    let at = |i: u32| format!("127.0.{n}.{i}");
    let leader = if first.1 == "primary" {
        first.0
    } else {
        second.0
    };
    group(
        n,
        leader,
        vec![
            member(first.0, &at(1), 5432, first.1, first.2),
            member(second.0, &at(2), 5432, second.1, second.2),
        ],
    )
}

fn context(port: u16, conninfo: &[(&str, &str)]) -> BootstrapContext {
    BootstrapContext {
        host: "127.0.0.1".into(),
        port,
        default_database: "postgres".into(),
        superuser_conninfo: conninfo
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn event(kind: MppEventKind, group: u32, leader: &str, host: &str, timeout: u32) -> MppEvent {
    MppEvent {
        kind,
        group,
        leader: leader.into(),
        host: host.into(),
        port: 5432,
        timeout_seconds: timeout,
        cooldown_ms: 10_000,
    }
}

/// Waits for a background write (10 s at most) and answers the node it went to.
async fn finished(write: JoinHandle<Result<String, tokio_postgres::Error>>) -> String {
    tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the write finishes once the pause ends")
        .unwrap()
        .unwrap()
}

#[tokio::test]
async fn the_component_describes_itself_refuses_bad_sections_and_adjusts_parameters() {
    let component = CitusComponent::load().await;
    let description = component.loaded().description();
    assert_eq!(
        (description.name.as_str(), description.kind),
        ("citus", PluginKind::Mpp)
    );
    assert!(description.sdk_version.is_some());

    for (section, key) in [
        (r#"{"database": "citus"}"#, "citus.group"),
        (r#"{"group": -1, "database": "citus"}"#, "citus.group"),
        (r#"{"group": "two", "database": "citus"}"#, "citus.group"),
        (r#"{"group": 1}"#, "citus.database"),
        (r#"{"group": 1, "database": ""}"#, "citus.database"),
    ] {
        let plugin = component.handler(Default::default(), PluginLimits::default());
        match plugin.validate_config(section).await {
            Err(MppError::InvalidConfig { reason, .. }) => {
                assert!(reason.starts_with(key), "{section}: {reason}");
            }
            other => panic!("{section} accepted: {other:?}"),
        }
    }
    let plugin = component.handler(Default::default(), PluginLimits::default());
    plugin
        .validate_config(r#"{"group": "2", "database": "citus", "unknown": true}"#)
        .await
        .unwrap();
    assert_eq!(
        (
            plugin.group().await.unwrap(),
            plugin.coordinator_group().await.unwrap()
        ),
        (2, 0)
    );

    let parameter = |name: &str, value: &str| Parameter {
        name: name.into(),
        value: value.into(),
    };
    let adjusted = plugin
        .adjust_gucs(&[
            parameter("shared_preload_libraries", "pg_stat_statements"),
            parameter("max_connections", "50"),
            parameter("max_prepared_transactions", "0"),
            parameter("listen_addresses", "127.0.0.1"),
        ])
        .await
        .unwrap();
    assert_eq!(
        adjusted,
        vec![
            parameter("shared_preload_libraries", "citus,pg_stat_statements"),
            parameter("wal_level", "logical"),
            parameter("citus.local_hostname", "localhost"),
            parameter("max_prepared_transactions", "100"),
        ]
    );
    let slot = |name: &str, plugin: &str| SlotInfo {
        name: name.into(),
        slot_type: "logical".into(),
        plugin: Some(plugin.into()),
        database: Some("citus".into()),
    };
    assert!(
        plugin
            .ignore_replication_slot(&slot("citus_shard_move_slot_1_2_3", "pgoutput"))
            .await
            .unwrap()
    );
    assert!(
        !plugin
            .ignore_replication_slot(&slot("cdc", "pgoutput"))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn bootstrap_creates_the_database_and_registers_the_coordinator_and_credentials() {
    keel_testkit::unprivileged_test!();
    let Some(citus) = TempCitus::start().await else {
        return;
    };
    let component = CitusComponent::load().await;
    let plugin = component.handler(citus.grants(), PluginLimits::default());
    plugin.validate_config(CONFIG).await.unwrap();
    let credentials = [("password", "s3 cr'et"), ("sslkey", "/k")];
    let ctx = context(citus.port(), &credentials);
    plugin.bootstrap(&ctx).await.unwrap();
    // Run again (a retried bootstrap): nothing breaks, nothing doubles.
    plugin.bootstrap(&ctx).await.unwrap();

    let admin = citus.connect("citus").await;
    let rows = admin
        .query(
            "SELECT nodeid, groupid, nodename, nodeport, noderole::text FROM pg_catalog.pg_dist_node",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let coordinator: NodeRow = (
        rows[0].get(0),
        rows[0].get(1),
        rows[0].get(2),
        rows[0].get(3),
        rows[0].get(4),
    );
    assert_eq!(
        coordinator,
        (
            1,
            0,
            "127.0.0.1".into(),
            i32::from(citus.port()),
            "primary".into()
        )
    );
    let authinfo: Vec<(i32, String, String)> = admin
        .query(
            "SELECT nodeid, rolename::text, authinfo FROM pg_catalog.pg_dist_authinfo",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        authinfo,
        vec![(
            0,
            "postgres".to_owned(),
            r"password=s3\ cr\'et sslkey=/k".to_owned()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_registers_every_group_and_follows_a_worker_failover() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::registered().await else {
        return;
    };
    // Group 1 loses its primary (w1a stops); w1b is promoted.
    let mut formation = c.formation();
    formation[1] = worker(
        1,
        ("w1a", "replica", "stopped"),
        ("w1b", "primary", "running"),
    );
    c.plugin.sync_meta_data(&formation).await.unwrap();
    let mut expected = c.registered_rows();
    expected[2] = row(3, 1, "127.0.1.2", "primary");
    expected[3] = row(4, 1, "127.0.1.1", "secondary");
    assert_eq!(
        c.rows().await,
        expected,
        "the primary row keeps nodeid 3; the lost primary stays parked until metadata syncs"
    );
    c.plugin.sync_meta_data(&formation).await.unwrap();
    expected.remove(3);
    assert_eq!(c.rows().await, expected, "next cycle: the lost node goes");

    // w1a comes back as a replica; group 2 switches over without events.
    formation[1] = worker(
        1,
        ("w1a", "replica", "running"),
        ("w1b", "primary", "running"),
    );
    formation[2] = worker(
        2,
        ("w2a", "replica", "running"),
        ("w2b", "primary", "running"),
    );
    c.plugin.sync_meta_data(&formation).await.unwrap();
    let port = i32::from(c.port());
    assert_eq!(
        c.rows().await,
        vec![
            (1, 0, "127.0.0.1".into(), port, "primary".into()),
            (2, 0, "127.0.0.2".into(), 5432, "secondary".into()),
            row(3, 1, "127.0.1.2", "primary"),
            row(5, 2, "127.0.2.2", "primary"),
            row(6, 2, "127.0.2.1", "secondary"),
            row(7, 1, "127.0.1.1", "secondary"),
        ],
        "group 2's rows swap (nodeid 5 stays primary); w1a is added back"
    );
    c.plugin.sync_meta_data(&formation).await.unwrap();
    assert_eq!(c.plugin_sessions().await, vec!["idle".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_switchover_makes_coordinator_writes_wait_then_go_to_the_new_primary() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::registered().await else {
        return;
    };
    let demote = event(MppEventKind::BeforeDemote, 1, "w1a", "127.0.1.1", 30);
    c.plugin.handle_event(&demote).await.unwrap();
    // The call returned with the pause in place: the plugin's transaction is open.
    assert_eq!(
        c.plugin_sessions().await,
        vec!["idle in transaction".to_owned()]
    );
    assert_eq!(c.rows().await, c.registered_rows(), "nothing committed yet");
    let write = c.write_to(1).await;
    c.until_a_writer_waits().await;
    assert!(!write.is_finished(), "the write to group 1 waits");
    assert_eq!(
        c.impatient_write_to(2).await,
        Ok("127.0.2.1".to_owned()),
        "other groups go on"
    );

    // w1b is promoted and announces it.
    let promoted = event(MppEventKind::AfterPromote, 1, "w1b", "127.0.1.2", 30);
    c.plugin.handle_event(&promoted).await.unwrap();
    assert_eq!(
        finished(write).await,
        "127.0.1.2",
        "the waiting write goes to the new primary"
    );
    let mut expected = c.registered_rows();
    expected[2] = row(3, 1, "127.0.1.2", "primary");
    expected[3] = row(4, 1, "127.0.1.1", "secondary");
    assert_eq!(c.rows().await, expected);
    assert_eq!(c.plugin_sessions().await, vec!["idle".to_owned()]);

    // The DCS catches up; the next cycle has nothing to change.
    let mut formation = c.formation();
    formation[1] = worker(
        1,
        ("w1a", "replica", "running"),
        ("w1b", "primary", "running"),
    );
    c.plugin.sync_meta_data(&formation).await.unwrap();
    assert_eq!(c.rows().await, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_past_its_deadline_is_rolled_back_by_tick() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::registered().await else {
        return;
    };
    let started = Instant::now();
    let demote = event(MppEventKind::BeforeDemote, 1, "w1a", "127.0.1.1", 1);
    c.plugin.handle_event(&demote).await.unwrap();
    let write = c.write_to(1).await;
    c.until_a_writer_waits().await;
    c.plugin.tick().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    if started.elapsed() < Duration::from_millis(900) {
        assert!(
            !write.is_finished(),
            "before the deadline tick keeps the pause"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed())).await;
    c.plugin.tick().await.unwrap();
    assert_eq!(
        finished(write).await,
        "127.0.1.1",
        "rolled back: the write goes to the old primary"
    );
    assert_eq!(c.rows().await, c.registered_rows());
    c.until_no_plugin_transaction().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_another_group_waits_for_the_open_pause_then_applies() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::registered().await else {
        return;
    };
    let demote = event(MppEventKind::BeforeDemote, 1, "w1a", "127.0.1.1", 30);
    c.plugin.handle_event(&demote).await.unwrap();
    // Group 2 fails over to w2b meanwhile.
    let other = event(MppEventKind::AfterPromote, 2, "w2b", "127.0.2.2", 30);
    c.plugin.handle_event(&other).await.unwrap();
    assert_eq!(
        c.impatient_write_to(2).await,
        Ok("127.0.2.1".to_owned()),
        "group 2's row is untouched, not even inside the open transaction (that would lock it)"
    );
    let promoted = event(MppEventKind::AfterPromote, 1, "w1b", "127.0.1.2", 30);
    c.plugin.handle_event(&promoted).await.unwrap();
    let rows = c.rows().await;
    assert_eq!(rows[2], row(3, 1, "127.0.1.2", "primary"));
    assert_eq!(
        rows[4],
        row(5, 2, "127.0.2.2", "primary"),
        "applied once group 1 committed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demote_rolls_the_pause_back() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::registered().await else {
        return;
    };
    let demote = event(MppEventKind::BeforeDemote, 1, "w1a", "127.0.1.1", 30);
    c.plugin.handle_event(&demote).await.unwrap();
    let write = c.write_to(1).await;
    c.until_a_writer_waits().await;
    c.plugin.on_demote().await.unwrap();
    assert_eq!(finished(write).await, "127.0.1.1");
    assert_eq!(c.rows().await, c.registered_rows());
    c.until_no_plugin_transaction().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_call_says_what_failed_and_leaves_no_pause_behind() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::registered().await else {
        return;
    };
    let demote = event(MppEventKind::BeforeDemote, 1, "w1a", "127.0.1.1", 30);
    c.plugin.handle_event(&demote).await.unwrap();
    let write = c.write_to(1).await;
    c.until_a_writer_waits().await;
    // A promotion announced at an address group 2's primary holds: Citus refuses the update.
    let clash = event(MppEventKind::AfterPromote, 1, "w1b", "127.0.2.1", 30);
    let error = c.plugin.handle_event(&clash).await.unwrap_err();
    match &error {
        MppError::Failed { reason, .. } => assert!(
            reason.starts_with("citus_update_node(3, '127.0.2.1', 5432, true, 10000) failed")
                && reason.contains("SQLSTATE 55000"),
            "{reason}"
        ),
        other => panic!("expected a failure, got {other:?}"),
    }
    assert_eq!(finished(write).await, "127.0.1.1", "the pause rolled back");
    c.until_no_plugin_transaction().await;
    // The next cycle starts from what is committed.
    c.plugin.sync_meta_data(&c.formation()).await.unwrap();
    assert_eq!(c.rows().await, c.registered_rows());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pause_may_wait_out_its_lock_cooldown_beyond_the_call_timeout() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::synced_with_one_second_calls().await else {
        return;
    };
    // A write to group 1 in progress holds the group's lock: the forced update waits up to the
    // event's cooldown (2 s, twice the call timeout) and then ends that write, as Citus does.
    let writer = c.citus.connect("citus").await;
    writer.batch_execute("BEGIN").await.unwrap();
    writer
        .query_one(
            "SELECT nodename FROM keel_emulation.coordinator_write(1)",
            &[],
        )
        .await
        .unwrap();
    let demote = MppEvent {
        cooldown_ms: 2_000,
        ..event(MppEventKind::BeforeDemote, 1, "w1a", "127.0.1.1", 30)
    };
    c.plugin
        .handle_event(&demote)
        .await
        .expect("the host allows an event its cooldown");
    assert!(
        writer.batch_execute("COMMIT").await.is_err(),
        "the write in progress was ended by the forced update"
    );
    c.plugin
        .handle_event(&MppEvent {
            cooldown_ms: 2_000,
            ..event(MppEventKind::AfterPromote, 1, "w1b", "127.0.1.2", 30)
        })
        .await
        .unwrap();
    c.until_no_plugin_transaction().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_cut_off_by_its_deadline_leaves_no_pause_behind() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Coordinator::synced_with_one_second_calls().await else {
        return;
    };
    // A session holding pg_dist_node itself blocks the pause past what the host allows an
    // event (the call timeout plus the lock cooldown the event asks for): the cooldown ends
    // writes holding a worker's lock, not a lock on the catalog.
    let writer = c.citus.connect("citus").await;
    writer
        .batch_execute("BEGIN; LOCK TABLE pg_catalog.pg_dist_node IN EXCLUSIVE MODE")
        .await
        .unwrap();
    let demote = MppEvent {
        cooldown_ms: 500,
        ..event(MppEventKind::BeforeDemote, 1, "w1a", "127.0.1.1", 30)
    };
    let error = c.plugin.handle_event(&demote).await.unwrap_err();
    assert!(matches!(error, MppError::Fault(_)), "{error:?}");
    // The instance is gone with its session; once the write ends, the server finds the
    // client gone and rolls the pause back.
    writer.batch_execute("COMMIT").await.unwrap();
    c.until_no_plugin_transaction().await;
    assert_eq!(c.rows().await, c.registered_rows());
    // A fresh instance (configuration replayed) carries on.
    c.plugin.sync_meta_data(&c.formation()).await.unwrap();
    assert_eq!(c.rows().await, c.registered_rows());
    assert_eq!(c.plugin.group().await.unwrap(), 0);
}
