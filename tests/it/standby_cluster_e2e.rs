//! A standby cluster end to end: a Keel cluster whose dynamic configuration
//! names another cluster's primary in `standby_cluster`. Its first member is
//! cloned from that source and leads as a replica of it (the standby leader);
//! its other members stream from the standby leader; when the standby leader
//! dies another member takes the lock and follows the source; removing
//! `standby_cluster` promotes the cluster.

use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, Spec};

const BOOT: Duration = Duration::from_secs(120);
const FAILOVER: Duration = Duration::from_secs(60);

/// The member of `c` that answers 200 on `/standby-leader`, if exactly one does.
fn standby_leader(c: &Cluster) -> Option<usize> {
    let leaders: Vec<usize> = (0..c.members.len())
        .filter(|i| c.health(*i, "/standby-leader") == Some(200))
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

/// `SELECT count(*) FROM t` on member `i` equals `rows`.
fn has_rows(c: &Cluster, i: usize, rows: &str) -> Option<()> {
    (c.sql(i, "SELECT count(*) FROM t").ok()? == [rows]).then_some(())
}

#[test]
fn a_standby_cluster_replicates_fails_over_and_is_promoted() {
    keel_testkit::unprivileged_test!();
    let Some(source) = Cluster::start(1, "") else {
        return;
    };
    let primary = source.wait_healthy(0, BOOT);
    source
        .sql(primary, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .unwrap();

    let extra = format!(
        "standby_cluster: {{host: 127.0.0.1, port: {}}}",
        source.members[primary].pg_port
    );
    let Some(mut standby) = Cluster::start_spec(&Spec {
        dcs_extra: &extra,
        ..Spec::plain(2)
    }) else {
        return;
    };
    let leader = standby.wait_for("a standby leader and a streaming replica", BOOT, |c| {
        let leader = standby_leader(c)?;
        let replicas = c.streaming_replicas();
        (replicas.len() == 1 && replicas[0] != leader).then_some(leader)
    });
    let replica = 1 - leader;
    let status = standby.status(leader).unwrap();
    assert_eq!(status["role"], "standby_leader", "{status}");
    assert_eq!(standby.health(leader, "/primary"), Some(503));
    assert_eq!(standby.health(leader, "/leader"), Some(200));
    assert_eq!(standby.health(replica, "/replica"), Some(200));
    let key = standby
        .etcd_get(&format!("members/{}", standby.members[leader].name))
        .unwrap_or_default();
    assert!(key.contains(r#""role":"standby_leader""#), "{key}");
    assert!(
        standby.sql(leader, "INSERT INTO t VALUES (0)").is_err(),
        "the standby leader accepts no writes"
    );

    // Writes on the source reach both members of the standby cluster.
    source.sql(primary, "INSERT INTO t VALUES (2)").unwrap();
    for i in [leader, replica] {
        standby.wait_for("the source's rows on the standby cluster", FAILOVER, |c| {
            has_rows(c, i, "2")
        });
    }

    // The standby leader dies: the replica takes the lock and follows the source.
    standby.kill_node(leader);
    standby.wait_for("the replica to become standby leader", FAILOVER, |c| {
        (standby_leader(c)? == replica).then_some(())
    });
    source.sql(primary, "INSERT INTO t VALUES (3)").unwrap();
    standby.wait_for(
        "the new standby leader to stream from the source",
        FAILOVER,
        |c| has_rows(c, replica, "3"),
    );

    // Without `standby_cluster` the standby leader is promoted.
    let mut config: Value = serde_json::from_str(&standby.etcd_get("config").unwrap()).unwrap();
    config.as_object_mut().unwrap().remove("standby_cluster");
    standby.etcd_put("config", &config.to_string());
    let promoted = standby.wait_for("the standby cluster to be promoted", FAILOVER, |c| {
        c.leader()
    });
    assert_eq!(promoted, replica);
    if let Err(e) = standby.sql(promoted, "INSERT INTO t VALUES (4)") {
        panic!(
            "the promoted cluster refused a write: {e}{}",
            standby.logs()
        );
    }
}
