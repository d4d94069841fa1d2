//! The Citus emulation fixture (`tests/fixtures/citus_emulation.sql`, issue 7 part 8) against a
//! real PostgreSQL: the plugin's tests trust it to answer like Citus, so every answer they rely
//! on is pinned here — nodeids, flags, Citus's error messages and SQLSTATEs, and the lock that
//! makes a worker switchover transparent (coordinator writes wait while an update of the
//! worker's row is in flight; reads never do).
//!
//! Waiting is proved with bounds, never with sleeps alone: a writer with a short
//! `lock_timeout` must fail with 55P03 while the update is open, and a blocked writer must be
//! seen waiting on the lock in `pg_locks` before the update commits.
//!
//! Over 600 lines: a test module, one test per property of the fixture.

use std::time::{Duration, Instant};

use keel_tests::TempPostgres;
use tokio_postgres::Client;

const FIXTURE: &str = include_str!("../fixtures/citus_emulation.sql");

/// A coordinator write to group `g`, answering the node it went to.
const WRITE: &str = "SELECT nodename FROM keel_emulation.coordinator_write($1)";

/// A fresh server with the fixture loaded into `postgres`; `None` when e2e tests are skipped.
async fn citus() -> Option<(TempPostgres, Client)> {
    let pg = TempPostgres::start()?;
    let client = pg.connect().await;
    client
        .batch_execute(FIXTURE)
        .await
        .expect("load the fixture");
    Some((pg, client))
}

/// The coordinator (nodeid 1), a primary in groups 1 and 2 (nodeids 2, 3) and a secondary in
/// group 1 (nodeid 4), registered with the exact calls Patroni makes.
async fn formation(client: &Client) {
    client
        .batch_execute(
            "SELECT pg_catalog.citus_set_coordinator_host('10.0.0.1', 5432, 'primary', 'default');
             SELECT pg_catalog.citus_add_node('10.0.1.1', 5432, 1, 'primary', 'default');
             SELECT pg_catalog.citus_add_node('10.0.2.1', 5432, 2, 'primary', 'default');
             SELECT pg_catalog.citus_add_node('10.0.1.2', 5432, 1, 'secondary', 'default');",
        )
        .await
        .expect("register the formation");
}

/// `(SQLSTATE, message)` of a failed statement.
fn db_error(result: Result<impl std::fmt::Debug, tokio_postgres::Error>) -> (String, String) {
    let error = result.expect_err("the statement should fail");
    let db = error
        .as_db_error()
        .unwrap_or_else(|| panic!("not a server error: {error}"));
    (db.code().code().to_owned(), db.message().to_owned())
}

/// `(nodeid, groupid, nodename, nodeport, noderole)` of every row, by nodeid.
async fn nodes(client: &Client) -> Vec<(i32, i32, String, i32, String)> {
    client
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

fn row(id: i32, group: i32, host: &str, role: &str) -> (i32, i32, String, i32, String) {
    (id, group, host.to_owned(), 5432, role.to_owned())
}

async fn nodename(client: &Client, nodeid: i32) -> String {
    client
        .query_one(
            "SELECT nodename FROM pg_catalog.pg_dist_node WHERE nodeid = $1",
            &[&nodeid],
        )
        .await
        .unwrap()
        .get(0)
}

/// Waits (up to 10 s) until some session waits for an advisory lock.
async fn until_a_session_waits_for_the_lock(admin: &Client) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = admin
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
        assert!(Instant::now() < deadline, "nobody waited for the lock");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn nodes_get_citus_nodeids_through_add_update_remove() {
    keel_testkit::unprivileged_test!();
    let Some((_pg, client)) = citus().await else {
        return;
    };
    formation(&client).await;
    assert_eq!(
        nodes(&client).await,
        vec![
            row(1, 0, "10.0.0.1", "primary"),
            row(2, 1, "10.0.1.1", "primary"),
            row(3, 2, "10.0.2.1", "primary"),
            row(4, 1, "10.0.1.2", "secondary"),
        ]
    );
    let flags: Vec<(bool, bool, Option<bool>, bool)> = client
        .query(
            "SELECT hasmetadata, isactive, metadatasynced, shouldhaveshards
             FROM pg_catalog.pg_dist_node ORDER BY nodeid",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect();
    assert_eq!(
        flags,
        vec![
            (true, true, Some(true), false), // the coordinator holds no shards
            (true, true, Some(true), true),  // primary workers get the metadata
            (true, true, Some(true), true),
            (false, true, Some(false), true), // secondaries do not
        ]
    );

    // The primary keeps its nodeid when it moves.
    client
        .execute(
            "SELECT pg_catalog.citus_update_node(2, '10.0.1.3', 5433, true, 10000)",
            &[],
        )
        .await
        .unwrap();
    let moved = client
        .query_one(
            "SELECT groupid, nodename, nodeport FROM pg_catalog.pg_dist_node WHERE nodeid = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            moved.get::<_, i32>(0),
            moved.get::<_, String>(1),
            moved.get::<_, i32>(2)
        ),
        (1, "10.0.1.3".to_owned(), 5433)
    );

    let removed = client
        .query_one("SELECT pg_catalog.citus_remove_node('10.0.2.1', 5432)", &[])
        .await;
    assert!(removed.is_ok(), "{removed:?}");
    let readded: i32 = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.2.1', 5432, 2, 'primary', 'default')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(readded, 5, "nodeids are never reused");
    // Without a group, Citus draws one from pg_dist_groupid_seq, which starts at 1 (a second
    // primary there would be refused; a secondary is not).
    let id: i32 = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.3.1', 5432, noderole => 'secondary')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let group: i32 = client
        .query_one(
            "SELECT groupid FROM pg_catalog.pg_dist_node WHERE nodeid = $1",
            &[&id],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!((id, group), (6, 1));

    let workers: Vec<(String, i64)> = client
        .query(
            "SELECT node_name, node_port FROM pg_catalog.citus_get_active_worker_nodes()
             ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(
        workers,
        vec![("10.0.1.3".to_owned(), 5433), ("10.0.2.1".to_owned(), 5432)],
        "active primaries outside group 0 only"
    );
}

#[tokio::test]
async fn adding_a_known_address_returns_its_nodeid_and_changes_nothing() {
    keel_testkit::unprivileged_test!();
    let Some((_pg, client)) = citus().await else {
        return;
    };
    formation(&client).await;
    let before = nodes(&client).await;
    let again: i32 = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.1.2', 5432, 7, 'primary', 'default')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(again, 4, "Citus answers the existing nodeid, not an error");
    assert_eq!(nodes(&client).await, before);
}

#[tokio::test]
async fn a_second_primary_in_a_group_is_refused_with_citus_message() {
    keel_testkit::unprivileged_test!();
    let Some((_pg, client)) = citus().await else {
        return;
    };
    formation(&client).await;
    let second = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.1.9', 5432, 1, 'primary', 'default')",
            &[],
        )
        .await;
    assert_eq!(
        db_error(second),
        (
            "XX000".to_owned(),
            "group 1 already has a primary node".to_owned()
        )
    );
    let elsewhere = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.9.1', 5432, 9, 'primary', 'other')",
            &[],
        )
        .await;
    assert_eq!(
        db_error(elsewhere).1,
        "primaries must be added to the default cluster"
    );
    let nodeid_after: i32 = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.9.1', 5432, 9, 'primary', 'default')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(nodeid_after, 5, "refused additions consume no nodeid");
}

#[tokio::test]
async fn unknown_nodes_are_refused_with_citus_messages() {
    keel_testkit::unprivileged_test!();
    let Some((_pg, client)) = citus().await else {
        return;
    };
    formation(&client).await;
    let update = |sql: &'static str| client.execute(sql, &[]);
    assert_eq!(
        db_error(update("SELECT pg_catalog.citus_update_node(42, 'h', 5432, true, 10000)").await),
        ("P0002".to_owned(), "node 42 not found".to_owned())
    );
    // Citus prints the id as unsigned.
    assert_eq!(
        db_error(update("SELECT pg_catalog.citus_update_node(-1, 'h', 5432)").await).1,
        "node 4294967295 not found"
    );
    assert_eq!(
        db_error(update("SELECT pg_catalog.citus_remove_node('nohost', 5432)").await),
        (
            "XX000".to_owned(),
            r#"node at "nohost:5432" does not exist"#.to_owned()
        )
    );
}

#[tokio::test]
async fn moving_a_node_onto_another_nodes_address_is_refused() {
    keel_testkit::unprivileged_test!();
    let Some((_pg, client)) = citus().await else {
        return;
    };
    formation(&client).await;
    let before = nodes(&client).await;
    let clash = client
        .execute(
            "SELECT pg_catalog.citus_update_node(2, '10.0.2.1', 5432, true, 10000)",
            &[],
        )
        .await;
    assert_eq!(
        db_error(clash),
        (
            "55000".to_owned(),
            "there is already another node with the specified hostname and port".to_owned()
        )
    );
    // Its own address is a no-op, not a clash.
    client
        .execute(
            "SELECT pg_catalog.citus_update_node(2, '10.0.1.1', 5432, true, 10000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(nodes(&client).await, before);
}

#[tokio::test]
async fn an_open_update_makes_coordinator_writes_wait_until_commit_while_reads_go_on() {
    keel_testkit::unprivileged_test!();
    let Some((pg, coordinator)) = citus().await else {
        return;
    };
    formation(&coordinator).await;
    // before-demote, as Patroni sends it.
    coordinator
        .batch_execute(
            "BEGIN;
             SELECT pg_catalog.citus_update_node(2, '10.0.1.1-demoted', 5432, true, 10000);",
        )
        .await
        .unwrap();

    let impatient = pg.connect().await;
    impatient
        .batch_execute("SET lock_timeout = '300ms'")
        .await
        .unwrap();
    let waited = impatient.query_one(WRITE, &[&1_i32]).await;
    assert_eq!(
        db_error(waited).0,
        "55P03",
        "a write to group 1 waits (lock_timeout)"
    );
    assert_eq!(
        impatient
            .query_one(WRITE, &[&2_i32])
            .await
            .unwrap()
            .get::<_, String>(0),
        "10.0.2.1",
        "other groups are not paused"
    );

    let reader = pg.connect().await;
    reader
        .batch_execute("SET lock_timeout = '300ms'; SET statement_timeout = '300ms'")
        .await
        .unwrap();
    assert_eq!(
        nodename(&reader, 2).await,
        "10.0.1.1",
        "reads see committed metadata"
    );
    let primaries = reader
        .query(
            "SELECT nodeid, groupid, nodename, nodeport, noderole
             FROM pg_catalog.pg_dist_node WHERE noderole = 'primary'",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(primaries.len(), 3, "Patroni's cache query does not wait");

    let patient = pg.connect().await;
    let write = tokio::spawn(async move {
        patient
            .query_one(WRITE, &[&1_i32])
            .await
            .map(|r| r.get::<_, String>(0))
    });
    until_a_session_waits_for_the_lock(&reader).await;
    // before-promote and after-promote.
    coordinator
        .batch_execute(
            "SELECT pg_catalog.citus_update_node(2, '10.0.1.2', 5433, true, 10000); COMMIT;",
        )
        .await
        .unwrap();
    let went_to = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the write resumes after COMMIT")
        .unwrap()
        .unwrap();
    assert_eq!(went_to, "10.0.1.2", "the write goes to the new primary");
}

#[tokio::test]
async fn rolling_back_an_update_restores_the_row_and_releases_writers() {
    keel_testkit::unprivileged_test!();
    let Some((pg, coordinator)) = citus().await else {
        return;
    };
    formation(&coordinator).await;
    coordinator
        .batch_execute(
            "BEGIN;
             SELECT pg_catalog.citus_update_node(2, '10.0.1.1-demoted', 5432, true, 10000);",
        )
        .await
        .unwrap();
    assert_eq!(nodename(&coordinator, 2).await, "10.0.1.1-demoted");

    let writer = pg.connect().await;
    let write = tokio::spawn(async move {
        writer
            .query_one(WRITE, &[&1_i32])
            .await
            .map(|r| r.get::<_, String>(0))
    });
    let admin = pg.connect().await;
    until_a_session_waits_for_the_lock(&admin).await;
    coordinator.batch_execute("ROLLBACK").await.unwrap();
    let went_to = tokio::time::timeout(Duration::from_secs(10), write)
        .await
        .expect("the write resumes after ROLLBACK")
        .unwrap()
        .unwrap();
    assert_eq!(went_to, "10.0.1.1", "the old primary again");
    assert_eq!(nodename(&admin, 2).await, "10.0.1.1");
}

#[tokio::test]
async fn an_update_waits_for_a_write_in_progress_and_force_ends_it_after_lock_cooldown() {
    keel_testkit::unprivileged_test!();
    let Some((pg, coordinator)) = citus().await else {
        return;
    };
    formation(&coordinator).await;
    // A write through the coordinator, still in its transaction.
    let writer = pg.connect().await;
    writer.batch_execute("BEGIN").await.unwrap();
    writer.query_one(WRITE, &[&1_i32]).await.unwrap();

    coordinator
        .batch_execute("BEGIN; SET LOCAL lock_timeout = '300ms'")
        .await
        .unwrap();
    let unforced = coordinator
        .execute(
            "SELECT pg_catalog.citus_update_node(2, '10.0.1.1-demoted', 5432, false, 0)",
            &[],
        )
        .await;
    assert_eq!(db_error(unforced).0, "55P03", "without force it waits");
    coordinator.batch_execute("ROLLBACK").await.unwrap();

    // Updating a secondary's row takes no lock.
    coordinator
        .execute(
            "SELECT pg_catalog.citus_update_node(4, '10.0.1.4', 5432, false, 0)",
            &[],
        )
        .await
        .unwrap();

    let started = Instant::now();
    coordinator
        .batch_execute(
            "BEGIN;
             SELECT pg_catalog.citus_update_node(2, '10.0.1.1-demoted', 5432, true, 500);",
        )
        .await
        .unwrap();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(500),
        "force waits lock_cooldown first: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "then ends the write: {took:?}"
    );
    let after = writer.batch_execute("COMMIT").await;
    assert!(after.is_err(), "the writer's session was terminated");
    coordinator.batch_execute("COMMIT").await.unwrap();
}

#[tokio::test]
async fn a_demoted_primary_fails_writes_and_node_additions_like_an_unreachable_host() {
    keel_testkit::unprivileged_test!();
    let Some((_pg, client)) = citus().await else {
        return;
    };
    formation(&client).await;
    client
        .execute(
            "SELECT pg_catalog.citus_update_node(2, '10.0.1.1-demoted', 5432, true, 10000)",
            &[],
        )
        .await
        .unwrap();
    let unreachable = (
        "08006".to_owned(),
        "connection to the remote node postgres@10.0.1.1-demoted:5432 failed with the \
         following error: could not translate host name \"10.0.1.1-demoted\" to address: \
         Name or service not known"
            .to_owned(),
    );
    assert_eq!(
        db_error(client.query_one(WRITE, &[&1_i32]).await),
        unreachable
    );
    // Adding or removing a node syncs metadata to every primary worker: it fails too.
    let add = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.3.1', 5432, 3, 'primary', 'default')",
            &[],
        )
        .await;
    assert_eq!(db_error(add), unreachable);
    let remove = client
        .execute("SELECT pg_catalog.citus_remove_node('10.0.1.2', 5432)", &[])
        .await;
    assert_eq!(db_error(remove), unreachable);
    // Updates always work: pointing the row at a real host heals the group.
    client
        .execute(
            "SELECT pg_catalog.citus_update_node(2, '10.0.1.2', 5433, true, 10000)",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        client
            .query_one(WRITE, &[&1_i32])
            .await
            .unwrap()
            .get::<_, String>(0),
        "10.0.1.2"
    );
}

#[tokio::test]
async fn coordinator_registration_sets_group_zero_and_moves_in_place() {
    keel_testkit::unprivileged_test!();
    let Some((pg, client)) = citus().await else {
        return;
    };
    client
        .execute(
            "SELECT pg_catalog.citus_set_coordinator_host('localhost')",
            &[],
        )
        .await
        .unwrap();
    let port = i32::from(pg.config("postgres").get_ports()[0]);
    assert_eq!(
        nodes(&client).await,
        vec![(1, 0, "localhost".to_owned(), port, "primary".to_owned())],
        "the port defaults to the server's"
    );
    let worker = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.1.1', 5432, 1, 'primary', 'default')",
            &[],
        )
        .await;
    assert_eq!(
        db_error(worker).1,
        "cannot add a worker node when the coordinator hostname is set to localhost"
    );

    client
        .execute(
            "SELECT pg_catalog.citus_set_coordinator_host('10.0.0.1', 5432, 'primary', 'default')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        nodes(&client).await,
        vec![row(1, 0, "10.0.0.1", "primary")],
        "moved in place"
    );
    let flags = client
        .query_one(
            "SELECT hasmetadata, isactive, metadatasynced, shouldhaveshards
             FROM pg_catalog.pg_dist_node WHERE nodeid = 1",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            flags.get::<_, bool>(0),
            flags.get::<_, bool>(1),
            flags.get::<_, Option<bool>>(2),
            flags.get::<_, bool>(3)
        ),
        (true, true, Some(true), false)
    );
    let local: i32 = client
        .query_one("SELECT groupid FROM pg_catalog.pg_dist_local_group", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(local, 0, "this server is the coordinator");
}

#[tokio::test]
async fn the_fixture_stands_in_for_create_extension_and_reloads_idempotently() {
    keel_testkit::unprivileged_test!();
    let Some((_pg, client)) = citus().await else {
        return;
    };
    formation(&client).await;
    // Patroni's bootstrap statements, unchanged.
    client
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS citus;
             INSERT INTO pg_catalog.pg_dist_authinfo
                 VALUES (0, pg_catalog.current_user(), 'password=''s3 cr\\''et'' sslkey=/k');",
        )
        .await
        .unwrap();
    let bad = client
        .execute(
            "INSERT INTO pg_catalog.pg_dist_authinfo VALUES (0, 'postgres', 'host=elsewhere')",
            &[],
        )
        .await;
    assert_eq!(
        db_error(bad).0,
        "23514",
        "authinfo takes only password, sslcert, sslkey"
    );

    let before = nodes(&client).await;
    client.batch_execute(FIXTURE).await.unwrap();
    assert_eq!(nodes(&client).await, before, "reloading keeps the data");
    let authinfo: i64 = client
        .query_one("SELECT count(*) FROM pg_catalog.pg_dist_authinfo", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(authinfo, 1);
    let next: i32 = client
        .query_one(
            "SELECT pg_catalog.citus_add_node('10.0.3.1', 5432, 3, 'primary', 'default')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(next, 5, "the nodeid sequence survives a reload");
}
