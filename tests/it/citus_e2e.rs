//! A Citus-shaped formation end to end (issue 7): real etcd, real PostgreSQL 15, the etcd and
//! Citus plugins, one `keeld` per member. The coordinator (group 0) registers the worker group's
//! primary and secondary in `pg_dist_node`; a switchover inside the worker group is announced to
//! the coordinator (`before_demote` / `after_promote` over `POST /citus`) and the group's row
//! follows the new primary, keeping its nodeid.
//!
//! No registry ships Citus, so each member preloads an empty library named `citus`
//! (tests/fixtures/citus_stub.c) and post_bootstrap loads the SQL emulation of Citus's metadata
//! surface (tests/fixtures/citus_emulation.sql) into the `citus` database.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use keel_tests::components as c;

use crate::cluster::{Cluster, Spec, http_post};

const BOOT: Duration = Duration::from_secs(180);
const SWITCH: Duration = Duration::from_secs(90);
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// The group of each member: a coordinator and a worker group of two.
const GROUPS: [u32; 3] = [0, 1, 1];

/// Builds the stand-in `citus.so` for the server's major version into `dir`.
fn stub_library(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/citus_stub.c");
    let out = dir.join("citus.so");
    let major = Command::new(format!("{PG_BIN}/pg_config"))
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|v| v.split_whitespace().nth(1).map(str::to_owned))
        .and_then(|v| v.split('.').next().map(str::to_owned))
        .unwrap_or_else(|| "15".to_owned());
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", &format!("-DPG_MAJOR={major}"), "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("a C compiler (cc) is needed to build the citus stub");
    assert!(status.success(), "building {} failed", source.display());
    out
}

/// A post_bootstrap script: the `citus` database with the emulation loaded.
fn post_bootstrap_script(dir: &Path) -> PathBuf {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/citus_emulation.sql");
    let script = dir.join("post_bootstrap.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nset -e\n\
             {PG_BIN}/psql \"$1\" -X -q -v ON_ERROR_STOP=1 -c 'CREATE DATABASE citus'\n\
             {PG_BIN}/psql \"$(echo \"$1\" | sed 's/dbname=postgres/dbname=citus/')\" \
             -X -q -v ON_ERROR_STOP=1 -f '{}'\n",
            fixture.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

/// The one member of `members` that answers `/primary` with 200.
fn leader_among(c: &Cluster, members: &[usize]) -> Option<usize> {
    let leaders: Vec<usize> = members
        .iter()
        .copied()
        .filter(|i| c.health(*i, "/primary") == Some(200))
        .collect();
    (leaders.len() == 1).then(|| leaders[0])
}

/// `pg_dist_node` on the coordinator as `nodeid:groupid:port:role` rows, ordered.
fn dist_nodes(c: &Cluster) -> Option<Vec<String>> {
    let rows = c
        .sql_in(
            0,
            "citus",
            "SELECT format('%s:%s:%s:%s', nodeid, groupid, nodeport, noderole) \
             FROM pg_catalog.pg_dist_node ORDER BY groupid, noderole, nodeport",
        )
        .ok()?;
    Some(rows)
}

fn row(nodeid: &str, group: u32, port: u16, role: &str) -> String {
    format!("{nodeid}:{group}:{port}:{role}")
}

#[test]
fn a_formation_registers_its_workers_and_a_worker_switchover_keeps_the_row() {
    keel_testkit::unprivileged_test!();
    let aux = tempfile::Builder::new()
        .prefix("keel-citus-")
        .tempdir()
        .unwrap();
    stub_library(aux.path());
    let script = post_bootstrap_script(aux.path());
    let pg_parameters = format!(
        "dynamic_library_path: '{}:$libdir', max_connections: 50",
        aux.path().display()
    );
    let member_yaml = |i: usize| format!("citus: {{group: {}, database: citus}}\n", GROUPS[i]);
    let Some(c) = Cluster::start_spec(&Spec {
        members: GROUPS.len(),
        dcs_extra: "",
        pg_parameters: &pg_parameters,
        member_yaml: &member_yaml,
        postgresql_yaml: &|_| String::new(),
        plugins: &[c::ETCD, c::CITUS],
        post_bootstrap: Some(&script.display().to_string()),
    }) else {
        return;
    };
    let workers = [1, 2];
    let (worker_leader, worker_replica) =
        c.wait_for("a coordinator and a worker group", BOOT, |c| {
            (c.health(0, "/primary") == Some(200)).then_some(())?;
            let leader = leader_among(c, &workers)?;
            let replica = workers.into_iter().find(|w| *w != leader)?;
            c.status(replica)
                .is_some_and(|s| s["replication_state"] == "streaming")
                .then_some((leader, replica))
        });
    let port = |i: usize| c.members[i].pg_port;

    // The handler's parameters are in force on every member.
    for i in 0..GROUPS.len() {
        let spl = c.sql(i, "SHOW shared_preload_libraries").unwrap();
        assert_eq!(spl, ["citus"], "member {i}");
    }
    assert_eq!(c.sql(0, "SHOW wal_level").unwrap(), ["logical"]);
    assert_eq!(
        c.sql(0, "SHOW max_prepared_transactions").unwrap(),
        ["100"],
        "2 × max_connections"
    );

    // The coordinator registered itself, the worker group's primary and its secondary.
    let registered = c.wait_for("pg_dist_node to show the formation", BOOT, |c| {
        let rows = dist_nodes(c)?;
        let has = |group: u32, p: u16, role: &str| {
            rows.iter()
                .any(|r| r.ends_with(&format!(":{group}:{p}:{role}")))
        };
        (rows.len() == 3
            && has(0, port(0), "primary")
            && has(1, port(worker_leader), "primary")
            && has(1, port(worker_replica), "secondary"))
        .then_some(rows)
    });
    let nodeid_of = |rows: &[String], p: u16, role: &str| {
        rows.iter()
            .find(|r| r.ends_with(&format!(":{p}:{role}")))
            .and_then(|r| r.split(':').next())
            .unwrap()
            .to_owned()
    };
    let primary_id = nodeid_of(&registered, port(worker_leader), "primary");
    let auth = c
        .sql_in(
            0,
            "citus",
            "SELECT authinfo FROM pg_catalog.pg_dist_authinfo",
        )
        .unwrap();
    assert_eq!(auth, ["password=pw"], "superuser credentials for peers");

    // Groups run quorum commit by default: a switchover goes to a voter, so wait
    // until the replica is one.
    c.wait_for("the worker replica to be a quorum standby", SWITCH, |c| {
        (c.health(worker_replica, "/quorum") == Some(200)).then_some(())
    });
    let group_config = c.etcd_get(&format!("{}/config", GROUPS[worker_leader]));
    assert!(
        group_config
            .as_deref()
            .is_some_and(|v| v.contains(r#""synchronous_mode":"quorum""#)),
        "{group_config:?}"
    );
    // A switchover inside the worker group, as an operator asks for it.
    let body = format!("{{\"leader\": \"{}\"}}", c.members[worker_leader].name);
    let (code, text) = http_post(c.members[worker_leader].api_port, "/switchover", &body)
        .expect("the worker leader answers");
    assert_eq!(code, 200, "{text}");
    c.wait_for("the replica to lead the worker group", SWITCH, |c| {
        (leader_among(c, &workers)? == worker_replica).then_some(())
    });
    // The group's primary row moved to the new primary and kept its nodeid (what keeps
    // distributed queries routed through the switchover); the old primary, back as a
    // running replica, is a secondary again. Its nodeid is kept only when the coordinator
    // never saw it restarting: a member that is not running is not a secondary (as in
    // Patroni), so its row may have been removed and added anew meanwhile.
    c.wait_for("pg_dist_node to follow the switchover", SWITCH, |c| {
        let rows = dist_nodes(c)?;
        let old_primary_is_secondary = rows
            .iter()
            .any(|r| r.ends_with(&format!(":1:{}:secondary", port(worker_leader))));
        (rows.contains(&row(&primary_id, 1, port(worker_replica), "primary"))
            && old_primary_is_secondary
            && rows.len() == 3)
            .then_some(())
    });
    // The coordinator paused and resumed the group through the worker's events.
    let lines = c.daemon_lines();
    for event in ["before_demote", "after_promote"] {
        assert!(
            lines.contains(&format!("MPP event {event} from")),
            "the coordinator never handled {event}:\n{lines}"
        );
    }
    // And nothing is left paused: no transaction open on the coordinator.
    let open = c
        .sql_in(
            0,
            "citus",
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%'",
        )
        .unwrap();
    assert_eq!(open, ["0"], "{lines}");
}
