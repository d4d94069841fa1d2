//! The scheduling rules against an in-memory `pg_dist_node` that answers like
//! Citus does where it matters: nodeids handed out once, unique addresses, one
//! primary per group, and additions/removals failing while a primary worker is
//! paused (`-demoted`), because Citus syncs them to every primary.
//!
//! Over 600 lines: a test module, one test per scheduling rule, plus the fake.

use std::time::{Duration, Instant};

use keel_sdk::mpp::{Event, EventKind, GroupView, Member};
use keel_sdk::testing::FakeHost;

use super::*;
use crate::formation::{event_task, loop_tasks};

#[derive(Default)]
struct FakeCitus {
    committed: Vec<Row>,
    /// The transaction's view, while one is open.
    open: Option<Vec<Row>>,
    last_nodeid: i32,
    /// Every call, in order.
    calls: Vec<String>,
    /// Fail the next call whose text contains this.
    fail_on: Option<String>,
}

impl FakeCitus {
    fn table(&mut self) -> &mut Vec<Row> {
        match &mut self.open {
            Some(rows) => rows,
            None => &mut self.committed,
        }
    }

    /// Committed rows as `g<group> #<id> <host> <role>`, by nodeid.
    fn rows(&self) -> Vec<String> {
        let mut rows = self.committed.clone();
        rows.sort_by_key(|r| r.nodeid);
        rows.iter()
            .map(|r| format!("g{} #{} {} {}", r.group, r.nodeid, r.host, r.role))
            .collect()
    }

    fn take_calls(&mut self) -> Vec<String> {
        std::mem::take(&mut self.calls)
    }

    fn call(&mut self, text: String) -> Result<(), Failure> {
        self.calls.push(text.clone());
        match &self.fail_on {
            Some(needle) if text.contains(needle.as_str()) => {
                self.fail_on = None;
                Err(refused(&text, "injected failure"))
            }
            _ => Ok(()),
        }
    }

    fn a_worker_is_paused(&mut self) -> bool {
        self.table()
            .iter()
            .any(|r| r.group != 0 && r.role == "primary" && r.host.ends_with("-demoted"))
    }
}

fn refused(what: &str, message: &str) -> Failure {
    Failure {
        what: what.to_owned(),
        message: message.to_owned(),
    }
}

impl Metadata for FakeCitus {
    fn load(&mut self) -> Result<Vec<Row>, Failure> {
        self.call("load".into())?;
        Ok(self.table().clone())
    }

    fn begin(&mut self) -> Result<(), Failure> {
        self.call("begin".into())?;
        assert!(self.open.is_none(), "BEGIN inside a transaction");
        self.open = Some(self.committed.clone());
        Ok(())
    }

    fn commit(&mut self) -> Result<(), Failure> {
        self.call("commit".into())?;
        let rows = self.open.take().expect("COMMIT without a transaction");
        self.committed = rows;
        Ok(())
    }

    fn rollback(&mut self) -> Result<(), Failure> {
        self.call("rollback".into())?;
        self.open = None;
        Ok(())
    }

    fn apply(&mut self, group: u32, change: &Change, _: u32) -> Result<Option<i32>, Failure> {
        match change {
            Change::Add { host, port, role } => {
                let text = format!("add {host} {role}");
                self.call(text.clone())?;
                if let Some(row) = self
                    .table()
                    .iter()
                    .find(|r| r.host == *host && r.port == *port)
                {
                    return Ok(Some(row.nodeid));
                }
                if self.a_worker_is_paused() {
                    return Err(refused(&text, "could not translate host name"));
                }
                if role == "primary"
                    && self
                        .table()
                        .iter()
                        .any(|r| r.group == group && r.role == "primary")
                {
                    return Err(refused(&text, "group already has a primary node"));
                }
                self.last_nodeid += 1;
                let nodeid = self.last_nodeid;
                let row = Row {
                    group,
                    host: host.clone(),
                    port: *port,
                    role: role.clone(),
                    nodeid,
                };
                self.table().push(row);
                Ok(Some(nodeid))
            }
            Change::Update { nodeid, host, port } => {
                let text = format!("update {nodeid} {host}");
                self.call(text.clone())?;
                let table = self.table();
                if table
                    .iter()
                    .any(|r| r.nodeid != *nodeid && r.host == *host && r.port == *port)
                {
                    return Err(refused(&text, "already another node with this address"));
                }
                let row = table
                    .iter_mut()
                    .find(|r| r.nodeid == *nodeid)
                    .ok_or_else(|| refused(&text, "node not found"))?;
                row.host = host.clone();
                row.port = *port;
                Ok(None)
            }
            Change::Remove { host, port } => {
                let text = format!("remove {host}");
                self.call(text.clone())?;
                if self.a_worker_is_paused() {
                    return Err(refused(&text, "could not translate host name"));
                }
                let table = self.table();
                let before = table.len();
                table.retain(|r| !(r.host == *host && r.port == *port));
                if table.len() == before {
                    return Err(refused(&text, "node does not exist"));
                }
                Ok(None)
            }
        }
    }

    fn close(&mut self) {
        self.calls.push("close".into());
        self.open = None;
    }
}

fn member(name: &str, role: &str, state: &str) -> Member {
    Member {
        name: name.into(),
        host: Some(name.into()),
        port: 5432,
        role: role.into(),
        state: state.into(),
        noloadbalance: false,
    }
}

/// A group led by `leader`: `members` are `name` (running replica) or `name:primary` etc.
fn view(group: u32, leader: &str, members: &[&str]) -> GroupView {
    GroupView {
        group,
        leader: Some(leader.into()),
        members: members
            .iter()
            .map(|m| match m.split_once(':') {
                Some((name, "stopped")) => member(name, "replica", "stopped"),
                Some((name, role)) => member(name, role, "running"),
                None => member(m, "replica", "running"),
            })
            .collect(),
    }
}

/// Coordinator `c` and two workers: `a` leads group 1 with replica `b`, `x` leads group 2.
fn formation() -> Vec<GroupView> {
    vec![
        view(0, "c", &["c:primary"]),
        view(1, "a", &["a:primary", "b"]),
        view(2, "x", &["x:primary"]),
    ]
}

fn event(kind: EventKind, group: u32, leader: &str, timeout_seconds: u32) -> Event {
    Event {
        kind,
        group,
        leader: leader.into(),
        host: leader.into(),
        port: 5432,
        timeout_seconds,
        cooldown_ms: 10_000,
    }
}

/// One HA cycle on the coordinator's leader.
fn sync(w: &mut Worker, db: &mut FakeCitus, formation: &[GroupView], now: Instant) {
    w.enforce_deadline(db, now).unwrap();
    for task in loop_tasks(formation) {
        w.add(task, now);
    }
    w.process(db, now).unwrap();
}

/// A worker's event, as `handle-event` applies it.
fn send(w: &mut Worker, db: &mut FakeCitus, e: &Event, formation: &[GroupView], now: Instant) {
    w.enforce_deadline(db, now).unwrap();
    w.add(event_task(e, formation), now);
    w.process(db, now).unwrap();
}

/// A worker and a table holding [`formation`].
fn registered() -> (FakeHost, Worker, FakeCitus, Instant) {
    let host = FakeHost::install();
    let (mut w, mut db, now) = (Worker::default(), FakeCitus::default(), Instant::now());
    sync(&mut w, &mut db, &formation(), now);
    db.take_calls();
    (host, w, db, now)
}

fn calls(list: &[&str]) -> Vec<String> {
    list.iter().map(|c| (*c).to_owned()).collect()
}

#[test]
fn the_first_cycle_registers_every_primary_and_secondary() {
    let _host = FakeHost::install();
    let (mut w, mut db, now) = (Worker::default(), FakeCitus::default(), Instant::now());
    sync(&mut w, &mut db, &formation(), now);
    assert_eq!(
        db.take_calls(),
        calls(&[
            "load",
            "add c primary",
            "begin",
            "add a primary",
            "add b secondary",
            "commit",
            "add x primary",
        ]),
        "coordinator first; several calls for one group in one transaction"
    );
    assert_eq!(
        db.rows(),
        [
            "g0 #1 c primary",
            "g1 #2 a primary",
            "g1 #3 b secondary",
            "g2 #4 x primary"
        ]
    );
    sync(&mut w, &mut db, &formation(), now);
    assert_eq!(db.take_calls(), calls(&[]), "nothing changed, no SQL");
}

#[test]
fn a_switchover_pauses_the_group_then_moves_its_primary_row_in_one_transaction() {
    let (_host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 1, "a", 30),
        &formation(),
        now,
    );
    assert_eq!(db.take_calls(), calls(&["begin", "update 2 a-demoted"]));
    assert_eq!(w.open_group(), Some(1));
    assert!(
        db.rows().contains(&"g1 #2 a primary".to_owned()),
        "not committed yet"
    );

    // b is promoted; the formation still shows the old view (a leads).
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 1, "b", 30),
        &formation(),
        now,
    );
    assert_eq!(
        db.take_calls(),
        calls(&["update 3 a", "update 2 b", "commit"]),
        "the promoted secondary's row takes the old primary's address"
    );
    assert_eq!(w.open_group(), None);
    assert_eq!(
        db.rows(),
        [
            "g0 #1 c primary",
            "g1 #2 b primary",
            "g1 #3 a secondary",
            "g2 #4 x primary"
        ],
        "the primary row keeps nodeid 2"
    );
    // The DCS catches up: b leads, a replicates. Nothing left to do.
    let after = vec![
        view(0, "c", &["c:primary"]),
        view(1, "b", &["b:primary", "a"]),
        view(2, "x", &["x:primary"]),
    ];
    sync(&mut w, &mut db, &after, now);
    assert_eq!(db.take_calls(), calls(&[]));
}

#[test]
fn before_promote_joins_the_open_transaction() {
    let (_host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 1, "a", 30),
        &formation(),
        now,
    );
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforePromote, 1, "b", 30),
        &formation(),
        now,
    );
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 1, "b", 30),
        &formation(),
        now,
    );
    assert_eq!(
        db.take_calls(),
        calls(&[
            "begin",
            "update 2 a-demoted",
            "update 3 a",
            "update 2 b",
            "commit"
        ]),
        "one BEGIN, one COMMIT"
    );
}

#[test]
fn events_for_another_group_wait_for_the_open_transaction_then_apply() {
    let (_host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 1, "a", 30),
        &formation(),
        now,
    );
    db.take_calls();
    // Group 2 fails over to y meanwhile.
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 2, "y", 30),
        &formation(),
        now,
    );
    assert_eq!(db.take_calls(), calls(&[]), "group 2 waits");
    assert!(w.is_queued(2));
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 1, "b", 30),
        &formation(),
        now,
    );
    assert_eq!(
        db.take_calls(),
        calls(&["update 3 a", "update 2 b", "commit", "update 4 y"]),
        "group 2 right after group 1 commits"
    );
    assert!(!w.is_queued(2));
}

#[test]
fn the_coordinator_goes_first_then_the_oldest_and_a_newer_task_keeps_its_place() {
    let (_host, mut w, mut db, now) = registered();
    let moved = |group, leader| event_task(&event(EventKind::AfterPromote, group, leader, 30), &[]);
    assert!(w.add(moved(2, "y"), now));
    assert!(w.add(moved(1, "b"), now));
    assert!(w.add(moved(0, "d"), now));
    assert!(
        w.add(moved(2, "z"), now),
        "replaces group 2's task in its place"
    );
    assert!(
        !w.add(moved(2, "z"), now),
        "the same task again changes nothing"
    );
    w.process(&mut db, now).unwrap();
    assert_eq!(
        db.take_calls(),
        calls(&[
            "update 1 d",
            "update 4 z",
            "begin",
            "update 2 a-demoted",
            "update 3 a",
            "update 2 b",
            "commit",
        ])
    );
}

#[test]
fn loop_tasks_never_replace_an_event_task_nor_touch_an_open_event_transaction() {
    let (_host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 2, "x", 30),
        &formation(),
        now,
    );
    // Group 1 switches over while group 2's transaction is open: queued.
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 1, "b", 30),
        &formation(),
        now,
    );
    db.take_calls();
    let stale = formation();
    let tasks = loop_tasks(&stale);
    assert!(
        !w.add(tasks[1].clone(), now),
        "group 1: the queued event task stays"
    );
    assert!(
        !w.add(tasks[2].clone(), now),
        "group 2: open event transaction before its deadline"
    );
    let later = now + Duration::from_secs(31);
    assert!(
        w.add(tasks[2].clone(), later),
        "past the deadline the loop may act"
    );
}

#[test]
fn an_open_transaction_rolls_back_at_its_deadline_and_the_queue_moves_on() {
    let (host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 1, "a", 2),
        &formation(),
        now,
    );
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 2, "y", 30),
        &formation(),
        now,
    );
    db.take_calls();
    w.enforce_deadline(&mut db, now + Duration::from_secs(1))
        .unwrap();
    assert_eq!(
        db.take_calls(),
        calls(&[]),
        "before the deadline nothing happens"
    );
    let later = now + Duration::from_secs(3);
    w.enforce_deadline(&mut db, later).unwrap();
    w.process(&mut db, later).unwrap();
    assert_eq!(db.take_calls(), calls(&["rollback", "update 4 y"]));
    assert!(host.logged("rolling back"));
    assert_eq!(w.open_group(), None);
    assert!(
        db.rows().contains(&"g1 #2 a primary".to_owned()),
        "the row is back"
    );
}

#[test]
fn a_failed_call_ends_the_session_drops_its_task_and_reloads_before_the_next() {
    let (_host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 1, "a", 30),
        &formation(),
        now,
    );
    db.take_calls();
    db.fail_on = Some("update 3".into());
    w.add(
        event_task(&event(EventKind::AfterPromote, 1, "b", 30), &formation()),
        now,
    );
    let failure = w.process(&mut db, now).unwrap_err();
    assert_eq!(failure.to_string(), "update 3 a failed: injected failure");
    assert_eq!(db.take_calls(), calls(&["update 3 a", "close"]));
    assert_eq!(
        w.open_group(),
        None,
        "the transaction went with the session"
    );
    assert!(db.rows().contains(&"g1 #2 a primary".to_owned()));
    assert!(!w.is_queued(1), "the failed task is dropped");
    // The next cycle reads pg_dist_node again before it changes anything.
    let after = vec![
        view(0, "c", &["c:primary"]),
        view(1, "b", &["b:primary", "a"]),
        view(2, "x", &["x:primary"]),
    ];
    sync(&mut w, &mut db, &after, now);
    assert_eq!(
        db.take_calls(),
        calls(&[
            "load",
            "begin",
            "update 2 a-demoted",
            "update 3 a",
            "update 2 b",
            "commit"
        ])
    );
}

#[test]
fn rows_are_added_and_removed_only_once_a_failover_is_committed() {
    let _host = FakeHost::install();
    let (mut w, mut db, now) = (Worker::default(), FakeCitus::default(), Instant::now());
    let before = vec![view(1, "a", &["a:primary", "b", "e"])];
    sync(&mut w, &mut db, &before, now);
    db.take_calls();
    // a and both replicas are gone, c was promoted from nowhere, d replicates.
    let after = vec![view(1, "c", &["c:primary", "d"])];
    sync(&mut w, &mut db, &after, now);
    assert_eq!(
        db.take_calls(),
        calls(&["begin", "update 1 c", "update 2 d", "commit"]),
        "a gone secondary's row is reused; the other waits"
    );
    sync(&mut w, &mut db, &after, now);
    assert_eq!(
        db.take_calls(),
        calls(&["remove e"]),
        "next cycle: metadata is synced"
    );
    assert_eq!(db.rows(), ["g1 #1 c primary", "g1 #2 d secondary"]);
}

#[test]
fn on_demote_ends_the_session_and_forgets_everything() {
    let (_host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 1, "a", 30),
        &formation(),
        now,
    );
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 2, "y", 30),
        &formation(),
        now,
    );
    db.take_calls();
    w.on_demote(&mut db);
    assert_eq!(db.take_calls(), calls(&["close"]));
    assert_eq!((w.open_group(), w.is_queued(2)), (None, false));
    assert!(db.rows().contains(&"g1 #2 a primary".to_owned()));
    // Promoted again later: the cache is read before anything is trusted.
    sync(&mut w, &mut db, &formation(), now);
    assert_eq!(db.take_calls(), calls(&["load"]));
}

#[test]
fn a_pause_past_its_deadline_is_rolled_back_even_with_nothing_queued() {
    let (_host, mut w, mut db, now) = registered();
    send(
        &mut w,
        &mut db,
        &event(EventKind::BeforeDemote, 1, "a", 1),
        &formation(),
        now,
    );
    db.take_calls();
    w.enforce_deadline(&mut db, now + Duration::from_secs(2))
        .unwrap();
    assert_eq!(db.take_calls(), calls(&["rollback"]));
}

#[test]
fn a_replica_the_last_transition_could_not_register_is_registered_next_cycle() {
    let (_host, mut w, mut db, now) = registered();
    // y, never a registered secondary, takes over group 2; the stale formation
    // still lists x, so the task wants x as a secondary, which a failover cannot add.
    send(
        &mut w,
        &mut db,
        &event(EventKind::AfterPromote, 2, "y", 30),
        &formation(),
        now,
    );
    assert_eq!(db.take_calls(), calls(&["update 4 y"]));
    let after = vec![
        view(0, "c", &["c:primary"]),
        view(1, "a", &["a:primary", "b"]),
        view(2, "y", &["y:primary", "x"]),
    ];
    sync(&mut w, &mut db, &after, now);
    assert_eq!(
        db.take_calls(),
        calls(&["add x secondary"]),
        "the cache holds only rows that exist, so x is seen missing"
    );
}
