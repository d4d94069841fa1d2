//! The HA loop end to end: real PostgreSQL 15, real etcd, the etcd plugin and
//! three `keeld` on loopback (issue 5, part 4).

use std::time::Duration;

use crate::cluster::{Cluster, http_post_with_head};

const BOOT: Duration = Duration::from_secs(120);
const FAILOVER: Duration = Duration::from_secs(60);

fn name(c: &Cluster, i: usize) -> String {
    c.members[i].name.clone()
}

#[test]
fn bootstrap_failover_and_rejoin_with_rewind() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::start(3, "") else {
        return;
    };
    let old = c.wait_healthy(2, BOOT);
    c.sql(old, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .unwrap();

    c.kill_node(old);
    let new = c.wait_for("a new leader after kill -9", FAILOVER, |c| {
        c.leader().filter(|l| *l != old)
    });
    assert_eq!(
        c.sql(new, "SELECT count(*) FROM t").unwrap(),
        ["1"],
        "{}",
        c.logs()
    );
    if let Err(e) = c.sql(new, "INSERT INTO t VALUES (2)") {
        panic!("the new leader refused a write: {e}{}", c.logs());
    }

    c.start_daemon(old);
    c.wait_for(
        "the old leader to rejoin as a streaming replica",
        BOOT,
        |c| c.streaming_replicas().contains(&old).then_some(()),
    );
    c.wait_for("the rejoined node to have the new rows", FAILOVER, |c| {
        (c.sql(old, "SELECT count(*) FROM t").ok()? == ["2"]).then_some(())
    });
    let history = c.etcd_get("history").unwrap_or_default();
    assert!(
        history.contains(&name(&c, new)),
        "history names the new leader: {history}"
    );
}

#[test]
fn switchover_to_a_named_candidate_and_to_any() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Cluster::start(3, "") else {
        return;
    };
    let leader = c.wait_healthy(2, BOOT);
    let candidate = c.streaming_replicas()[0];
    c.request_failover(Some(&name(&c, leader)), Some(&name(&c, candidate)));
    c.wait_for("the named candidate to lead", FAILOVER, |c| {
        (c.leader()? == candidate).then_some(())
    });
    c.wait_healthy(2, BOOT);
    assert_eq!(
        c.etcd_get("failover").as_deref(),
        Some("{}"),
        "the request is cleared"
    );

    c.request_failover(Some(&name(&c, candidate)), None);
    let third = c.wait_for("any other member to lead", FAILOVER, |c| {
        c.leader().filter(|l| *l != candidate)
    });
    assert_ne!(third, candidate);
    c.wait_healthy(2, BOOT);
    // Clean switchovers never fork a history: no member may think it diverged (a replica that
    // followed the first switchover once compared its last restartpoint's timeline instead).
    let lines = c.daemon_lines();
    assert!(
        !lines.contains("diverged from leader") && !lines.contains("running pg_rewind"),
        "a switchover made a member rewind:\n{lines}"
    );
}

#[test]
fn a_failover_without_a_healthy_candidate_is_refused() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Cluster::start(2, "") else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    c.request_failover(Some(&name(&c, leader)), Some("nobody"));
    c.wait_for("the request to be refused and cleared", FAILOVER, |c| {
        (c.etcd_get("failover").as_deref() == Some("{}")).then_some(())
    });
    let log = std::fs::read_to_string(&c.members[leader].log).unwrap();
    assert!(
        log.contains("switchover is not possible: candidate nobody is not healthy"),
        "{}",
        c.logs()
    );
    assert_eq!(c.leader(), Some(leader), "the leader stays");
}

#[test]
fn pause_stops_automatic_failover_until_resumed() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::start(2, "") else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    let replica = 1 - leader;
    let config = c.etcd_get("config").unwrap();
    let mut value: serde_json::Value = serde_json::from_str(&config).unwrap();
    value["pause"] = true.into();
    c.etcd_put("config", &value.to_string());
    c.wait_for("members to report pause", FAILOVER, |c| {
        (c.status(replica)?["pause"] == true).then_some(())
    });

    c.kill_node(leader);
    // Longer than ttl + loop_wait: without pause the replica would have taken over.
    std::thread::sleep(Duration::from_secs(15));
    let status = c.status(replica).unwrap();
    assert_eq!(
        status["role"],
        "replica",
        "no automatic failover in pause{}",
        c.logs()
    );

    value["pause"] = false.into();
    c.etcd_put("config", &value.to_string());
    c.wait_for("the replica to take over once resumed", FAILOVER, |c| {
        (c.leader()? == replica).then_some(())
    });
}

#[test]
fn strict_synchronous_mode_makes_writes_wait_without_a_sync_standby() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::start(2, "synchronous_mode: true, synchronous_mode_strict: true")
    else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    let replica = 1 - leader;
    let replica_name = name(&c, replica);
    c.wait_for("the replica to be the synchronous standby", FAILOVER, |c| {
        c.etcd_get("sync")?.contains(&replica_name).then_some(())
    });
    c.sql(leader, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .unwrap();

    c.stop_daemon(replica);
    let err = c.sql(leader, "INSERT INTO t VALUES (2)").unwrap_err();
    assert!(
        err.contains("timed out"),
        "the write waits for a standby: {err}"
    );
}

/// `/sync` parsed: (leader, quorum, voters).
fn sync_key(c: &Cluster) -> Option<(String, u64, Vec<String>)> {
    let v: serde_json::Value = serde_json::from_str(&c.etcd_get("sync")?).ok()?;
    let voters = v["sync_standby"]
        .as_str()
        .map(|s| s.split(',').map(str::to_owned).collect())
        .unwrap_or_default();
    Some((
        v["leader"].as_str()?.to_owned(),
        v["quorum"].as_u64()?,
        voters,
    ))
}

#[test]
fn quorum_commit_elects_from_the_voters_and_follows_membership() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::start(3, "synchronous_mode: quorum") else {
        return;
    };
    let leader = c.wait_healthy(2, BOOT);
    let replicas: Vec<usize> = (0..3).filter(|i| *i != leader).collect();
    let mut standbys: Vec<String> = replicas.iter().map(|i| name(&c, *i)).collect();
    standbys.sort();
    // Both standbys vote, any one of them confirms a commit.
    let (_, quorum, voters) = c.wait_for("both replicas to become voters", FAILOVER, |c| {
        sync_key(c).filter(|(l, _, v)| *l == name(c, leader) && *v == standbys)
    });
    assert_eq!(quorum, 1);
    assert_eq!(voters, standbys);
    assert_eq!(
        c.sql(leader, "SHOW synchronous_standby_names").unwrap(),
        [format!("ANY 1 ({})", standbys.join(","))]
    );
    for r in &replicas {
        // Each member answers from its last view of the cluster.
        c.wait_for(
            "replicas to see themselves as quorum standbys",
            FAILOVER,
            |c| (c.health(*r, "/quorum") == Some(200)).then_some(()),
        );
        assert_eq!(c.status(*r).unwrap()["quorum_standby"], true);
        assert_eq!(
            c.health(*r, "/sync"),
            Some(503),
            "quorum standbys are not sync standbys"
        );
    }
    assert_eq!(c.health(leader, "/quorum"), Some(503));
    c.sql(leader, "CREATE TABLE t (v int); INSERT INTO t VALUES (1)")
        .unwrap();

    // The leader dies: a voter wins with the other's vote and keeps the row.
    c.kill_node(leader);
    let new = c.wait_for("a new leader after kill -9", FAILOVER, |c| {
        c.leader().filter(|l| *l != leader)
    });
    assert!(replicas.contains(&new));
    assert_eq!(c.sql(new, "SELECT count(*) FROM t").unwrap(), ["1"]);
    // Once the loop_wait for reconnecting standbys has passed, the dead one leaves
    // both sides and the survivor confirms commits alone.
    let survivor = replicas.iter().copied().find(|r| *r != new).unwrap();
    c.wait_for("/sync to shrink to the surviving standby", FAILOVER, |c| {
        sync_key(c).filter(|(l, q, v)| *l == name(c, new) && *q == 0 && *v == [name(c, survivor)])
    });
    assert_eq!(
        c.sql(new, "SHOW synchronous_standby_names").unwrap(),
        [format!("ANY 1 ({})", name(&c, survivor))]
    );
    c.sql(new, "INSERT INTO t VALUES (2)").unwrap();

    // The old leader rejoins (rewind) and becomes a voter again.
    c.start_daemon(leader);
    let mut all: Vec<String> = [leader, survivor].iter().map(|i| name(&c, *i)).collect();
    all.sort();
    c.wait_for("the old leader to vote again", BOOT, |c| {
        sync_key(c).filter(|(l, q, v)| *l == name(c, new) && *q == 1 && *v == all)
    });
    assert_eq!(c.sql(leader, "SELECT count(*) FROM t").unwrap(), ["2"]);
}

#[test]
fn without_failsafe_losing_etcd_demotes_the_primary() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::start(2, "") else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    c.etcd.kill();
    c.wait_for("the primary to step down", FAILOVER, |c| {
        let s = c.status(leader)?;
        (s["role"] == "replica").then_some(())
    });
    c.etcd.restart();
    c.wait_healthy(1, BOOT);
}

#[test]
fn a_primary_whose_etcd_hangs_stops_taking_writes() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::start(2, "") else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    // A frozen etcd answers nothing: the loop's calls time out (or, with a slower plugin,
    // the lease guard stops PostgreSQL first); either way the primary stops taking writes.
    c.etcd.freeze(true);
    c.wait_for("the primary to stop accepting writes", FAILOVER, |c| {
        c.sql(leader, "CREATE TABLE IF NOT EXISTS w (x int)")
            .is_err()
            .then_some(())
    });
    c.etcd.freeze(false);
    c.wait_healthy(1, BOOT);
}

#[test]
fn with_failsafe_the_primary_keeps_serving_while_etcd_is_down() {
    keel_testkit::unprivileged_test!();
    let Some(mut c) = Cluster::start(2, "failsafe_mode: true") else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    c.wait_for("the leader to publish /failsafe", FAILOVER, |c| {
        let fs = c.etcd_get("failsafe")?;
        (fs.contains(&name(c, 0)) && fs.contains(&name(c, 1))).then_some(())
    });
    c.sql(leader, "CREATE TABLE t (v int)").unwrap();
    c.etcd.kill();
    // Longer than retry_timeout + ttl: without failsafe it would have stepped down.
    std::thread::sleep(Duration::from_secs(15));
    let status = c.status(leader).unwrap();
    assert_eq!(status["role"], "primary", "{}", c.logs());
    assert_eq!(status["failsafe_mode_is_active"], true, "{status}");
    c.sql(leader, "INSERT INTO t VALUES (1)").unwrap();
    // Patroni's /failsafe answers: a replica accepts and returns its WAL position in the
    // `lsn` header; the primary refuses.
    let replica = 1 - leader;
    let body = format!(
        r#"{{"name":"{}","api_url":"http://127.0.0.1:1/patroni"}}"#,
        name(&c, leader)
    );
    let (code, head, text) =
        http_post_with_head(c.members[replica].api_port, "/failsafe", &body).unwrap();
    assert_eq!((code, text.as_str()), (200, "Accepted"), "{head}");
    let lsn: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("lsn: "))
        .unwrap_or_else(|| panic!("no lsn header in {head}"))
        .trim()
        .parse()
        .unwrap();
    assert!(lsn > 0, "{head}");
    let (code, _, text) =
        http_post_with_head(c.members[leader].api_port, "/failsafe", &body).unwrap();
    assert_eq!((code, text.as_str()), (500, "Running as a leader"));
    c.etcd.restart();
    c.wait_healthy(1, BOOT);
}

/// The slot names on member `i`, sorted.
fn slot_names(c: &Cluster, i: usize) -> Vec<String> {
    c.sql(i, "SELECT slot_name FROM pg_replication_slots ORDER BY 1")
        .unwrap_or_default()
}

#[test]
fn permanent_retained_and_ignored_slots_follow_patronis_rules() {
    keel_testkit::unprivileged_test!();
    let Some(c) = Cluster::start(
        2,
        "slots: {archiver: {type: physical}}, ignore_slots: [{name: external}]",
    ) else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    let replica = 1 - leader;
    let (leader_slot, replica_slot) = (name(&c, leader), name(&c, replica));
    // Every node keeps the permanent slot and one per other member (member_slots_ttl).
    c.wait_for("the slots on both members", FAILOVER, |c| {
        (slot_names(c, leader) == ["archiver", replica_slot.as_str()]
            && slot_names(c, replica) == ["archiver", leader_slot.as_str()])
        .then_some(())
    });
    // A slot nobody asked for is dropped; one `ignore_slots` names is left alone.
    c.sql(
        leader,
        "SELECT pg_create_physical_replication_slot('external'); \
         SELECT pg_create_physical_replication_slot('stray')",
    )
    .unwrap();
    c.wait_for("the stray slot to be dropped", FAILOVER, |c| {
        let names = slot_names(c, leader);
        (!names.contains(&"stray".to_owned())).then_some(names)
    });
    assert!(slot_names(&c, leader).contains(&"external".to_owned()));
    // The leader publishes positions and the member slots it retains (its own included,
    // as Patroni does).
    let mut members = [leader_slot.clone(), replica_slot.clone()];
    members.sort();
    let status = c.wait_for("the leader's status to list both members", FAILOVER, |c| {
        let status: serde_json::Value = serde_json::from_str(&c.etcd_get("status")?).ok()?;
        (status["retain_slots"] == serde_json::json!(members)).then_some(status)
    });
    assert!(status["slots"][&leader_slot].as_u64() > Some(0), "{status}");
    assert!(status["slots"][&replica_slot].is_u64(), "{status}");
    assert!(status["slots"]["archiver"].is_u64(), "{status}");
    // The replica moves its slot for the leader forward as the leader writes.
    let restart_lsn = |c: &Cluster| {
        c.sql(
            replica,
            &format!(
                "SELECT restart_lsn - '0/0' FROM pg_replication_slots \
                 WHERE slot_name = '{leader_slot}'"
            ),
        )
        .ok()
        .and_then(|rows| rows.first()?.parse::<u64>().ok())
    };
    let before = restart_lsn(&c).unwrap_or(0);
    c.sql(
        leader,
        "CREATE TABLE s AS SELECT generate_series(1, 10000) AS x",
    )
    .unwrap();
    c.wait_for("the replica to advance its slot", FAILOVER, |c| {
        (restart_lsn(c)? > before).then_some(())
    });
}

/// `watchdog: {mode: required}` on a member whose device cannot be opened: it
/// neither bootstraps nor takes the key, says so in `/patroni`, and stays a
/// replica when the leader dies rather than promoting without a watchdog.
#[test]
fn a_member_without_its_required_watchdog_never_leads() {
    keel_testkit::unprivileged_test!();
    // No such device on a test machine (and an unprivileged user could not open one).
    let watchdog = |i: usize| {
        if i == 0 {
            "watchdog: {mode: required, device: /dev/watchdog250}\n".to_owned()
        } else {
            String::new()
        }
    };
    let Some(mut c) = Cluster::start_spec(&crate::cluster::Spec {
        member_yaml: &watchdog,
        ..crate::cluster::Spec::plain(2)
    }) else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    assert_eq!(
        leader,
        1,
        "the member without a watchdog bootstrapped{}",
        c.logs()
    );
    let status = c.status(0).unwrap();
    assert_eq!(status["watchdog_failed"], true, "{status}");

    c.kill_node(1);
    // Past ttl (8 s) and a few cycles: the key has expired and nobody may take it.
    std::thread::sleep(Duration::from_secs(15));
    let status = c.status(0).unwrap();
    assert_eq!(status["role"], "replica", "{status}{}", c.logs());
    assert_eq!(c.health(0, "/primary"), Some(503));
}

/// Patroni 4's slot failover: a replica copies the leader's permanent logical slot,
/// moves the copy along as the consumer confirms changes on the primary, and after a
/// failover the consumer resumes on the new primary where it left off.
#[test]
fn a_permanent_logical_slot_survives_a_failover_at_its_position() {
    keel_testkit::unprivileged_test!();
    // hot_standby_feedback off in the configuration: Keel turns it on where copies are
    // kept (as Patroni), since only the feedback keeps the catalog rows they need.
    let Some(mut c) = logical_slot_cluster("off") else {
        return;
    };
    let leader = c.wait_healthy(1, BOOT);
    let replica = 1 - leader;
    c.wait_for("hot_standby_feedback on at the replica", BOOT, |c| {
        (c.sql(replica, "SHOW hot_standby_feedback").ok()? == ["on"]).then_some(())
    });
    let position = consume_one_row(&c, leader);
    // The replica copies the slot once the primary's no longer needs WAL older than the
    // replica has (a live consumer gets it there: poll as one), moves the copy to the
    // consumer's position, and tells when hot_standby_feedback protects it.
    let query = format!(
        "SELECT confirmed_flush_lsn >= '{position}'::pg_lsn FROM pg_replication_slots \
         WHERE slot_name = 'cdc'"
    );
    let prefix = format!("{}: ", c.members[replica].name);
    c.wait_for("a safe copy at the consumer's position", BOOT, |c| {
        consume(c, leader);
        (c.sql(replica, &query).ok()? == ["t"]).then_some(())?;
        c.daemon_lines()
            .lines()
            .any(|l| {
                l.starts_with(&prefix)
                    && l.contains("logical slot cdc is safe to use after a failover")
            })
            .then_some(())
    });

    c.kill_node(leader);
    c.wait_for("the replica to take over", FAILOVER, |c| {
        (c.leader()? == replica).then_some(())
    });
    assert!(
        !c.daemon_lines()
            .contains("might be unsafe to use after promote"),
        "{}",
        c.logs()
    );
    assert_only_new_row_decoded(&c, replica);
}

/// Two members with the permanent logical slot `cdc` (test_decoding), hot_standby_feedback
/// as configured.
fn logical_slot_cluster(hot_standby_feedback: &str) -> Option<Cluster> {
    Cluster::start_spec(&crate::cluster::Spec {
        dcs_extra: "slots: {cdc: {type: logical, database: postgres, plugin: test_decoding}}",
        pg_parameters: &format!(
            "wal_level: logical, hot_standby_feedback: '{hot_standby_feedback}'"
        ),
        ..crate::cluster::Spec::plain(2)
    })
}

/// Writes row 1 on the leader, decodes it from `cdc` and returns the slot's position.
fn consume_one_row(c: &Cluster, leader: usize) -> String {
    c.sql(leader, "CREATE TABLE lt (v int); INSERT INTO lt VALUES (1)")
        .unwrap();
    let consumed = consume(c, leader);
    assert!(consumed > 0, "the consumer saw the first row");
    c.sql(
        leader,
        "SELECT confirmed_flush_lsn FROM pg_replication_slots WHERE slot_name = 'cdc'",
    )
    .unwrap()
    .remove(0)
}

/// Decodes (and confirms) whatever `cdc` has on member `i`, as a live consumer; the count.
fn consume(c: &Cluster, i: usize) -> usize {
    c.sql(
        i,
        "SELECT count(*) FROM pg_logical_slot_get_changes('cdc', NULL, NULL)",
    )
    .ok()
    .and_then(|rows| rows.first()?.parse().ok())
    .unwrap_or(0)
}

/// After a failover to `i`: a new row, and decoding `cdc` there shows only that row.
fn assert_only_new_row_decoded(c: &Cluster, i: usize) {
    c.sql(i, "INSERT INTO lt VALUES (2)").unwrap();
    let changes = c
        .sql(
            i,
            "SELECT data FROM pg_logical_slot_get_changes('cdc', NULL, NULL)",
        )
        .unwrap();
    let inserts: Vec<&String> = changes.iter().filter(|d| d.contains("INSERT")).collect();
    assert_eq!(inserts.len(), 1, "only the new row: {changes:?}");
    assert!(inserts[0].contains("v[integer]:2"), "{changes:?}");
}
