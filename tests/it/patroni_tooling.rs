//! Patroni's own `patronictl` (4.1) driving a running Keel cluster through
//! Keel's REST API and the DCS (issue 6, part 3): list, switchover (now and
//! scheduled), pause/resume, edit-config/show-config, history, restart, reinit.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::cluster::Cluster;
use crate::patroni_interop::patronictl;

const BOOT: Duration = Duration::from_secs(120);
const SWITCH: Duration = Duration::from_secs(60);

/// patronictl with a config that points at the cluster's etcd.
struct Ctl {
    bin: PathBuf,
    config: PathBuf,
    scope: String,
}

impl Ctl {
    fn new(bin: PathBuf, c: &Cluster, dir: &Path) -> Self {
        let config = dir.join("patronictl.yml");
        std::fs::write(
            &config,
            format!(
                "scope: {}\netcd3: {{hosts: {}}}\n",
                c.scope,
                c.etcd.endpoint()
            ),
        )
        .unwrap();
        Self {
            bin,
            config,
            scope: c.scope.clone(),
        }
    }

    /// Run a subcommand; stdout on success, a panic with both streams otherwise.
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new(&self.bin)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "patronictl {args:?} failed:\n{text}");
        text
    }

    fn list(&self) -> Vec<Value> {
        let text = self.run(&["list", "-f", "json", &self.scope]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

#[test]
fn patronictl_operates_a_keel_cluster() {
    keel_testkit::unprivileged_test!();
    let Some(bin) = patronictl() else {
        return;
    };
    let Some(mut c) = Cluster::start(3, "") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl::new(bin, &c, dir.path());
    let leader = c.wait_healthy(2, BOOT);
    let leader_name = c.members[leader].name.clone();

    // list: every member, the right leader, streaming replicas.
    let rows = c.wait_for("patronictl to list two streaming replicas", BOOT, |_| {
        let rows = ctl.list();
        let streaming = rows.iter().filter(|r| r["State"] == "streaming").count();
        (rows.len() == 3 && streaming == 2).then_some(rows)
    });
    let shown_leader: Vec<&str> = rows
        .iter()
        .filter(|r| r["Role"] == "Leader")
        .map(|r| r["Member"].as_str().unwrap())
        .collect();
    assert_eq!(shown_leader, [leader_name.as_str()]);

    // switchover to a named candidate, through POST /switchover on the leader.
    let candidate = (0..3).find(|i| *i != leader).unwrap();
    let cand_name = c.members[candidate].name.clone();
    let text = ctl.run(&[
        "switchover",
        "--leader",
        &leader_name,
        "--candidate",
        &cand_name,
        "--force",
        &ctl.scope,
    ]);
    assert!(
        text.contains(&format!("Successfully switched over to \"{cand_name}\"")),
        "{text}\n{}",
        c.logs()
    );
    c.wait_for("the candidate to lead", SWITCH, |c| {
        (c.leader() == Some(candidate)).then_some(())
    });
    let history = ctl.run(&["history", "-f", "json", &ctl.scope]);
    let history: Value = serde_json::from_str(&history).unwrap();
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["New Leader"] == cand_name.as_str()),
        "{history}"
    );

    // A scheduled switchover is shown by list and removed by flush.
    ctl.run(&[
        "switchover",
        "--leader",
        &cand_name,
        "--scheduled",
        "2999-01-01T00:00:00+00:00",
        "--force",
        &ctl.scope,
    ]);
    assert!(c.etcd_get("failover").unwrap().contains("2999-01-01"));
    let text = ctl.run(&["flush", &ctl.scope, "switchover", "--force"]);
    assert!(text.contains("scheduled switchover deleted"), "{text}");

    // pause / resume: every member reports it.
    ctl.run(&["pause", "--wait", &ctl.scope]);
    for i in 0..3 {
        c.wait_for("members to report pause", SWITCH, |c| {
            c.status(i).filter(|s| s["pause"] == true).map(|_| ())
        });
    }
    ctl.run(&["resume", "--wait", &ctl.scope]);
    c.wait_for("members to report resume", SWITCH, |c| {
        c.status(0).filter(|s| s.get("pause").is_none()).map(|_| ())
    });

    // edit-config: the change reaches the DCS and PostgreSQL.
    ctl.run(&[
        "edit-config",
        "--force",
        "--pg",
        "work_mem=7MB",
        "--set",
        "maximum_lag_on_failover=2097152",
        &ctl.scope,
    ]);
    let shown = ctl.run(&["show-config", &ctl.scope]);
    assert!(shown.contains("work_mem: 7MB"), "{shown}");
    assert!(
        shown.contains("maximum_lag_on_failover: 2097152"),
        "{shown}"
    );
    c.wait_for("work_mem to be applied", SWITCH, |c| {
        (c.sql(candidate, "SHOW work_mem").ok()? == ["7MB"]).then_some(())
    });

    // restart a replica through POST /restart.
    let replica = leader;
    let before = c.status(replica).unwrap()["postmaster_start_time"].clone();
    let text = ctl.run(&["restart", &ctl.scope, &leader_name, "--force"]);
    assert!(
        text.contains(&format!("Success: restart on member {leader_name}")),
        "{text}"
    );
    let after = c.status(replica).unwrap()["postmaster_start_time"].clone();
    assert_ne!(before, after, "the postmaster was not restarted");

    // reinit the same replica through POST /reinitialize.
    let text = ctl.run(&["reinit", &ctl.scope, &leader_name, "--force", "--wait"]);
    assert!(
        text.contains(&format!("Success: reinitialize for member {leader_name}")),
        "{text}\n{}",
        c.logs()
    );
    c.wait_for("the reinitialized replica to stream", BOOT, |c| {
        c.streaming_replicas().contains(&replica).then_some(())
    });
    c.stop_daemon(0);
}
