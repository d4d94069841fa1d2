//! `postgresql.callbacks` end to end: two members whose callbacks append
//! `action role scope` to a file; bootstrap, a switchover, a restart over REST
//! and a clean stop must each run the matching callback, as Patroni runs them.

use std::path::Path;
use std::time::Duration;

use keel_tests::components as c;

use crate::cluster::{Cluster, Spec, http_post};

const BOOT: Duration = Duration::from_secs(120);
const SWITCH: Duration = Duration::from_secs(60);

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn callbacks_run_on_start_role_change_restart_and_stop() {
    keel_testkit::unprivileged_test!();
    let dir = tempfile::tempdir().unwrap();
    let out = |i: usize| dir.path().join(format!("m{}.log", i + 1));
    let callbacks = |i: usize| {
        let cmd = format!("sh -c 'echo \"$1 $2 $3\" >> {}' callback", out(i).display());
        let cmd = cmd.replace('\'', "''");
        ["on_start", "on_stop", "on_restart", "on_role_change"]
            .iter()
            .map(|cb| format!("    {cb}: '{cmd}'\n"))
            .fold("  callbacks:\n".to_owned(), |acc, l| acc + &l)
    };
    let Some(mut c) = Cluster::start_spec(&Spec {
        members: 2,
        dcs_extra: "",
        pg_parameters: "",
        member_yaml: &|_| String::new(),
        postgresql_yaml: &callbacks,
        plugins: &[c::ETCD],
        post_bootstrap: None,
    }) else {
        return;
    };
    let scope = c.scope.clone();
    let has = |i: usize, line: &str| lines(&out(i)).iter().any(|l| l == line);
    let leader = c.wait_healthy(1, BOOT);
    let replica = 1 - leader;
    c.wait_for("on_start on both members", BOOT, |_| {
        (has(leader, &format!("on_start primary {scope}"))
            && has(replica, &format!("on_start replica {scope}")))
        .then_some(())
    });

    let body = format!(
        r#"{{"leader":"{}","candidate":"{}"}}"#,
        c.members[leader].name, c.members[replica].name
    );
    let (code, text) = http_post(c.members[leader].api_port, "/switchover", &body).unwrap();
    assert_eq!(code, 200, "{text}");
    c.wait_for("on_role_change on both members", SWITCH, |_| {
        (has(replica, &format!("on_role_change primary {scope}"))
            && has(leader, &format!("on_role_change replica {scope}")))
        .then_some(())
    });

    // The old leader is a replica now: restart it over REST.
    let (code, text) = http_post(c.members[leader].api_port, "/restart", "{}").unwrap();
    assert_eq!(code, 200, "{text}");
    c.wait_for("on_restart", SWITCH, |_| {
        has(leader, &format!("on_restart replica {scope}")).then_some(())
    });

    c.stop_daemon(leader);
    c.wait_for("on_stop", SWITCH, |_| {
        has(leader, &format!("on_stop replica {scope}")).then_some(())
    });
    // Nothing ran that was not asked for: every line is one of the four actions.
    for i in [leader, replica] {
        for line in lines(&out(i)) {
            assert!(
                ["on_start", "on_stop", "on_restart", "on_role_change"]
                    .iter()
                    .any(|cb| line.starts_with(&format!("{cb} "))),
                "{line}"
            );
        }
    }
}
