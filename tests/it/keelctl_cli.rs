//! `keelctl` (issue 6, part 2) operating a running Keel cluster: it reads the
//! DCS through the etcd plugin as keeld does and drives members over REST.
//! list agrees with patronictl 4.1; switchover, pause/resume, edit-config,
//! history, restart, reinit, query and remove work; bad input fails with an
//! error that names what is wrong.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::cluster::{Cluster, keeld_binary};
use crate::patroni_interop::patronictl;

const BOOT: Duration = Duration::from_secs(120);
const SWITCH: Duration = Duration::from_secs(60);

/// target/<profile>/keelctl, built by `cargo build --workspace --bins`.
fn keelctl_binary() -> PathBuf {
    keeld_binary().with_file_name("keelctl")
}

/// keelctl with a member's configuration (it names etcd and the plugin dir).
struct Ctl {
    config: PathBuf,
    scope: String,
}

impl Ctl {
    fn output(&self, args: &[&str], stdin: &str) -> Output {
        self.output_env(args, stdin, &[])
    }

    fn output_env(&self, args: &[&str], stdin: &str, env: &[(&str, &Path)]) -> Output {
        let mut child = Command::new(keelctl_binary())
            .envs(env.iter().copied())
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env("NO_COLOR", "1")
            .env("PGPASSWORD", "pw")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; run `cargo build --workspace --bins`",
                    keelctl_binary().display()
                )
            });
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// Run; stdout on success, a panic with both streams otherwise.
    fn run(&self, args: &[&str]) -> String {
        self.run_with_input(args, "")
    }

    fn run_with_input(&self, args: &[&str], stdin: &str) -> String {
        let out = self.output(args, stdin);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "keelctl {args:?} failed:\n{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    }

    /// Run expecting failure: the exit code and standard error.
    fn fail(&self, args: &[&str]) -> (Option<i32>, String) {
        let out = self.output(args, "");
        assert!(
            !out.status.success(),
            "keelctl {args:?} succeeded:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn list(&self) -> Vec<Value> {
        let text = self.run(&["list", "-f", "json", &self.scope]);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }
}

/// patronictl's `list -f json` against the same etcd.
fn patronictl_list(bin: &Path, c: &Cluster, dir: &Path) -> Vec<Value> {
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
    let out = Command::new(bin)
        .arg("-c")
        .arg(&config)
        .args(["list", "-f", "json", &c.scope])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What both tools must agree on, per member.
fn summary(rows: &[Value]) -> Vec<(String, String, String, String, String)> {
    let mut out: Vec<_> = rows
        .iter()
        .map(|r| {
            let s = |k: &str| text(&r[k]);
            (s("Member"), s("Host"), s("Role"), s("State"), s("TL"))
        })
        .collect();
    out.sort();
    out
}

#[test]
fn keelctl_operates_a_keel_cluster() {
    keel_testkit::unprivileged_test!();
    let Some(patronictl) = patronictl() else {
        return;
    };
    let Some(mut c) = Cluster::start(3, "") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ctl = Ctl {
        config: c.members[0].config.clone(),
        scope: c.scope.clone(),
    };
    let leader = c.wait_healthy(2, BOOT);
    let leader_name = c.members[leader].name.clone();

    // list: three members, two streaming, and the same view as patronictl's.
    let rows = c.wait_for(
        "keelctl and patronictl to agree on two streaming replicas",
        BOOT,
        |c| {
            let rows = ctl.list();
            let streaming = rows.iter().filter(|r| r["State"] == "streaming").count();
            let theirs = patronictl_list(&patronictl, c, dir.path());
            (rows.len() == 3 && streaming == 2 && summary(&rows) == summary(&theirs))
                .then_some(rows)
        },
    );
    let shown: Vec<&str> = rows
        .iter()
        .filter(|r| r["Role"] == "Leader")
        .map(|r| r["Member"].as_str().unwrap())
        .collect();
    assert_eq!(shown, [leader_name.as_str()]);
    // A patronictl-style file (scope, DCS section, plugin dir) lists the same.
    let member_config = std::fs::read_to_string(&ctl.config).unwrap();
    let plugins = member_config
        .lines()
        .find(|l| l.starts_with("plugins:"))
        .unwrap();
    let own = dir.path().join("keelctl.yaml");
    std::fs::write(
        &own,
        format!(
            "scope: {}\netcd3: {{hosts: {}}}\n{plugins}\n",
            c.scope,
            c.etcd.endpoint()
        ),
    )
    .unwrap();
    let mine = Ctl {
        config: own,
        scope: c.scope.clone(),
    };
    let rows_own: Vec<Value> = serde_json::from_str(&mine.run(&["list", "-f", "json"])).unwrap();
    assert_eq!(summary(&rows_own).len(), 3, "{rows_own:?}");
    let table = ctl.run(&["list", &ctl.scope]);
    assert!(
        table.starts_with(&format!("+ Cluster: {} (", ctl.scope)),
        "{table}"
    );
    assert!(table.contains("| Member | Host"), "{table}");
    let topology = ctl.run(&["topology", &ctl.scope]);
    assert!(topology.contains("| + m"), "{topology}");

    // Bad input: an unknown member, an unreachable DCS.
    let (code, err) = ctl.fail(&["restart", &ctl.scope, "nosuch", "--force"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("nosuch is not a member of cluster"), "{err}");
    let (code, err) = ctl.fail(&["switchover", "--candidate", "nosuch", "--force", &ctl.scope]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("Member nosuch does not exist"), "{err}");
    let dead = format!("127.0.0.1:{}", keel_testkit::free_port());
    let out = Command::new(keelctl_binary())
        .arg("-c")
        .arg(&ctl.config)
        .args(["--dcs-url", &format!("etcd3://{dead}"), "list", &ctl.scope])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&dead) && err.contains("cannot read cluster"),
        "{err}"
    );

    // Interactive: patronictl's questions, defaults taken, refused at the end.
    let out = ctl.output(&["switchover", &ctl.scope], "\n\n\nn\n");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("Primary [{leader_name}]: Candidate ['"))
            && text.contains("When should the switchover take place (e.g. ")
            && text.contains(&format!("Are you sure you want to switchover cluster {}, demoting current leader {leader_name}? [y/N]: ", ctl.scope)),
        "{text}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("Aborting switchover"));

    // dsn and query find the leader through the DCS.
    let dsn = ctl.run(&["dsn", &ctl.scope]);
    assert_eq!(
        dsn.trim(),
        format!("host=127.0.0.1 port={}", c.members[leader].pg_port)
    );
    let answer = ctl.run(&[
        "query",
        &ctl.scope,
        "-U",
        "postgres",
        "-c",
        "SELECT pg_is_in_recovery() AS r",
    ]);
    assert_eq!(answer, "r\nf\n");

    // switchover to a named candidate.
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
    // history: the new leader records the promotion once it has checkpointed.
    c.wait_for("history to name the new leader", SWITCH, |_| {
        let history: Value =
            serde_json::from_str(&ctl.run(&["history", "-f", "json", &ctl.scope])).unwrap();
        history
            .as_array()?
            .iter()
            .any(|h| h["New Leader"] == cand_name.as_str())
            .then_some(())
    });

    // pause / resume, waiting until every member reports it.
    let text = ctl.run(&["pause", "--wait", &ctl.scope]);
    assert!(
        text.contains("Success: cluster management is paused"),
        "{text}"
    );
    for i in 0..3 {
        assert_eq!(c.status(i).unwrap()["pause"], true, "member {i}");
    }
    let (_, err) = ctl.fail(&["pause", &ctl.scope]);
    assert!(err.contains("Cluster is already paused"), "{err}");
    let text = ctl.run(&["resume", "--wait", &ctl.scope]);
    assert!(
        text.contains("Success: cluster management is resumed"),
        "{text}"
    );

    // edit-config with -s/-p; show-config shows it and etcd holds it.
    let text = ctl.run(&[
        "edit-config",
        "--force",
        "-p",
        "work_mem=7MB",
        "-s",
        "maximum_lag_on_failover=2097152",
        &ctl.scope,
    ]);
    assert!(
        text.contains("+  work_mem: 7MB") || text.contains("+    work_mem: 7MB"),
        "{text}"
    );
    assert!(text.contains("Configuration changed"), "{text}");
    let shown = ctl.run(&["show-config", &ctl.scope]);
    assert!(
        shown.contains("work_mem: 7MB") && shown.contains("maximum_lag_on_failover: 2097152"),
        "{shown}"
    );
    let stored: Value = serde_json::from_str(&c.etcd_get("config").unwrap()).unwrap();
    assert_eq!(stored["postgresql"]["parameters"]["work_mem"], "7MB");
    c.wait_for("work_mem to be applied", SWITCH, |c| {
        (c.sql(candidate, "SHOW work_mem").ok()? == ["7MB"]).then_some(())
    });

    // edit-config in $EDITOR: the diff, a question, compare-and-set. An editor
    // that lets another keelctl change the configuration first loses the race.
    let editor = |name: &str, before: &str| {
        let path = dir.path().join(name);
        let script = format!(
            "#!/bin/sh\n{before}\nsed -i 's/^maximum_lag_on_failover: 2097152$/maximum_lag_on_failover: 3145728/' \"$1\"\n"
        );
        std::fs::write(&path, script).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        path
    };
    let racing = editor(
        "racing-editor",
        "\"$KEELCTL\" -c \"$CFG\" edit-config --force -s loop_wait=2 \"$SCOPE\" >/dev/null",
    );
    let bin = keelctl_binary();
    let env = [
        ("EDITOR", racing.as_path()),
        ("KEELCTL", bin.as_path()),
        ("CFG", ctl.config.as_path()),
        ("SCOPE", Path::new(&ctl.scope)),
    ];
    let out = ctl.output_env(&["edit-config", &ctl.scope], "y\n", &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Config modification aborted due to concurrent changes"),
        "{err}"
    );
    let plain = editor("editor", "");
    let out = ctl.output_env(
        &["edit-config", &ctl.scope],
        "y\n",
        &[("EDITOR", plain.as_path())],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("-maximum_lag_on_failover: 2097152\n+maximum_lag_on_failover: 3145728")
            && text.contains("Apply these changes? [y/N]: Configuration changed"),
        "{text}"
    );
    let shown = ctl.run(&["show-config", &ctl.scope]);
    assert!(
        shown.contains("maximum_lag_on_failover: 3145728") && shown.contains("loop_wait: 2"),
        "{shown}"
    );

    // restart the old leader, now a replica.
    let replica = leader;
    let before = c.status(replica).unwrap()["postmaster_start_time"].clone();
    let text = ctl.run(&["restart", &ctl.scope, &leader_name, "--force"]);
    assert!(
        text.contains(&format!("Success: restart on member {leader_name}")),
        "{text}"
    );
    assert_ne!(
        before,
        c.status(replica).unwrap()["postmaster_start_time"],
        "not restarted"
    );

    // reinit it and wait.
    let text = ctl.run(&["reinit", &ctl.scope, &leader_name, "--force", "--wait"]);
    assert!(
        text.contains(&format!("Success: reinitialize for member {leader_name}")),
        "{text}\n{}",
        c.logs()
    );
    assert!(
        text.contains(&format!("Reinitialize is completed on: {leader_name}")),
        "{text}"
    );
    c.wait_for("the reinitialized replica to stream", BOOT, |c| {
        c.streaming_replicas().contains(&replica).then_some(())
    });

    // remove: the daemons go (keys stay, the leader key until its ttl), then
    // the three confirmations delete every key of the cluster.
    for i in 0..3 {
        c.kill_node(i);
    }
    let leader_now = c
        .etcd_get("leader")
        .expect("the leader key outlives a killed leader for its ttl");
    let (_, err) = {
        let out = ctl.output(
            &["remove", &ctl.scope],
            &format!("{}\nYes I am\n", ctl.scope),
        );
        assert!(!out.status.success());
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert!(
        err.contains("You did not exactly type \"Yes I am aware\""),
        "{err}"
    );
    assert!(c.etcd_get("initialize").is_some());
    let text = ctl.run_with_input(
        &["remove", &ctl.scope],
        &format!("{}\nYes I am aware\n{leader_now}\n", ctl.scope),
    );
    assert!(text.contains("Please specify the leader name"), "{text}");
    for key in ["initialize", "config", "leader", "history", "members/m1"] {
        assert_eq!(c.etcd_get(key), None, "{key} survived remove");
    }
}
