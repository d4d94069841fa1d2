//! HAProxy (Debian's package) with examples/haproxy.cfg routes writes to the
//! primary and reads to replicas, and follows a switchover (issue 6, part 3).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use keel_testkit::net::free_port;

use crate::cluster::{Cluster, sql_on_port};

const BOOT: Duration = Duration::from_secs(120);
const FOLLOW: Duration = Duration::from_secs(60);

/// The example file with the test cluster's ports, and checks every 500 ms
/// instead of 3 s so the test stays short.
fn config_for(c: &Cluster, primary: u16, replicas: u16, stats: u16) -> String {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/haproxy.cfg"),
    )
    .unwrap();
    let mut text = example
        .replace("127.0.0.1:5000", &format!("127.0.0.1:{primary}"))
        .replace("127.0.0.1:5001", &format!("127.0.0.1:{replicas}"))
        .replace("127.0.0.1:7000", &format!("127.0.0.1:{stats}"))
        .replace("inter 3s fall 3 rise 2", "inter 500ms fall 2 rise 1");
    for (i, m) in c.members.iter().enumerate() {
        text = text
            .replace(
                &format!("127.0.0.1:{}", 5441 + i),
                &format!("127.0.0.1:{}", m.pg_port),
            )
            .replace(
                &format!("port {}", 8008 + i),
                &format!("port {}", m.api_port),
            );
    }
    assert!(
        !text.contains(":544"),
        "the example's ports changed: {text}"
    );
    text
}

struct Haproxy(Child);

impl Drop for Haproxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn haproxy() -> Option<&'static str> {
    let bin = "/usr/sbin/haproxy";
    if Path::new(bin).exists() {
        return Some(bin);
    }
    if keel_testkit::skip_e2e() {
        keel_testkit::print_skip("haproxy not installed");
        return None;
    }
    panic!("{bin} is missing: run scripts/setup.sh (it installs Debian's haproxy)");
}

/// The port of the server a new connection through `port` lands on.
fn server_port(port: u16) -> Option<u16> {
    sql_on_port(port, "SELECT inet_server_port()")
        .ok()?
        .first()?
        .parse()
        .ok()
}

#[test]
fn haproxy_routes_writes_to_the_primary_and_follows_a_switchover() {
    keel_testkit::unprivileged_test!();
    let Some(bin) = haproxy() else {
        return;
    };
    let Some(c) = Cluster::start(3, "") else {
        return;
    };
    let leader = c.wait_healthy(2, BOOT);
    let dir = tempfile::tempdir().unwrap();
    let (primary, replicas, stats) = (free_port(), free_port(), free_port());
    let cfg = dir.path().join("haproxy.cfg");
    std::fs::write(&cfg, config_for(&c, primary, replicas, stats)).unwrap();
    let check = Command::new(bin)
        .arg("-c")
        .arg("-f")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let _proxy = Haproxy(
        Command::new(bin)
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("haproxy.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    let leader_port = c.members[leader].pg_port;
    c.wait_for("HAProxy to route writes to the leader", FOLLOW, |_| {
        (server_port(primary) == Some(leader_port)).then_some(())
    });
    // HAProxy starts with every server up until two checks fail, so the
    // first connections may land on a replica and be cut when it is marked
    // down (on-marked-down shutdown-sessions); retry until the checks settle.
    c.wait_for("a write through HAProxy", FOLLOW, |_| {
        match sql_on_port(
            primary,
            "CREATE TABLE IF NOT EXISTS through_haproxy (v int)",
        ) {
            Ok(_) => Some(()),
            Err(e) => {
                eprintln!("write through HAProxy failed, retrying: {e}");
                None
            }
        }
    });
    sql_on_port(primary, "INSERT INTO through_haproxy VALUES (1)").unwrap();
    let replica_ports: Vec<u16> = (0..3)
        .filter(|i| *i != leader)
        .map(|i| c.members[i].pg_port)
        .collect();
    c.wait_for("HAProxy to route reads to a replica", FOLLOW, |_| {
        let port = server_port(replicas)?;
        replica_ports.contains(&port).then_some(())
    });

    // Switch over through the leader's REST API, as patronictl does.
    let candidate = (0..3).find(|i| *i != leader).unwrap();
    let body = format!(
        r#"{{"leader":"{}","candidate":"{}"}}"#,
        c.members[leader].name, c.members[candidate].name
    );
    let answer =
        crate::cluster::http_post(c.members[leader].api_port, "/switchover", &body).unwrap();
    assert_eq!(answer.0, 200, "{answer:?}\n{}", c.logs());

    let new_port = c.members[candidate].pg_port;
    c.wait_for("HAProxy to route writes to the new leader", FOLLOW, |_| {
        (server_port(primary) == Some(new_port)).then_some(())
    });
    assert_eq!(
        sql_on_port(
            primary,
            "INSERT INTO through_haproxy VALUES (2); SELECT count(*) FROM through_haproxy"
        )
        .unwrap(),
        ["2"]
    );
}
