//! Interop with Patroni's own tooling: `patronictl` (4.1.x, from PyPI) lists,
//! from etcd alone, a cluster whose keys Keel wrote through the etcd plugin.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use keel_dcs::model::Role;
use keel_dcs::{Dcs, MemberData, Settings};
use keel_runtime::{LoadedPlugin, PluginLimits};
use keel_testkit::etcd::TempEtcd;
use keel_tests::{PluginDir, components as c};
use serde_json::Value;

use crate::runtime_for;

/// patronictl from the venv scripts/setup.sh makes (or `KEEL_PATRONICTL`).
pub(crate) fn patronictl() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = std::env::var_os("KEEL_PATRONICTL")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    candidates.push("/opt/keel/patroni-venv/bin/patronictl".into());
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(PathBuf::from(home).join(".cache/keel/patroni-venv/bin/patronictl"));
    }
    if let Some(found) = candidates.iter().find(|p| p.exists()) {
        return Some(found.clone());
    }
    let path = &candidates[0];
    if keel_testkit::skip_e2e() {
        keel_testkit::print_skip("patronictl not installed");
        return None;
    }
    panic!(
        "{} is missing: run scripts/setup.sh (it installs Patroni 4.1 into /opt/keel/patroni-venv)",
        path.display()
    );
}

fn member(role: Role, state: &str, port: u16, xlog: u64) -> MemberData {
    let replica = role == Role::Replica;
    let replication_state = replica.then(|| "streaming".to_owned());
    MemberData {
        conn_url: Some(format!("postgres://127.0.0.1:{port}/postgres")),
        api_url: Some(format!("http://127.0.0.1:{}/patroni", port + 2567)),
        state: Some(state.into()),
        role: Some(role),
        version: Some("4.1.0".into()),
        xlog_location: Some(xlog),
        timeline: Some(1),
        replication_state,
        receive_lsn: replica.then_some(xlog),
        replay_lsn: replica.then_some(xlog),
        ..MemberData::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patronictl_lists_a_cluster_keel_wrote() {
    let Some(patronictl) = patronictl() else {
        return;
    };
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let plugin = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("etcd.wasm"))
        .await
        .unwrap();
    let mut members = Vec::new();
    for name in ["pg1", "pg2", "pg3"] {
        let backend = plugin
            .dcs(
                keel_tests::etcd_grants(vec![etcd.endpoint()], None),
                PluginLimits::default(),
            )
            .unwrap();
        let dcs = Dcs::new(Arc::new(backend));
        dcs.configure(Settings::new("interop", name)).await.unwrap();
        members.push(dcs);
    }
    let [pg1, pg2, pg3] = &members[..] else {
        unreachable!()
    };
    assert!(pg1.initialize(true, "").await.unwrap());
    assert!(pg1.initialize(false, "7312345678901234567").await.unwrap());
    let config = serde_json::json!({"ttl": 30, "loop_wait": 10, "retry_timeout": 10, "maximum_lag_on_failover": 1_048_576});
    pg1.set_config(config.as_object().unwrap(), None)
        .await
        .unwrap();
    assert!(pg1.attempt_to_acquire_leader().await.unwrap());
    pg1.touch_member(&member(Role::Primary, "running", 5441, 50_331_968))
        .await
        .unwrap();
    pg2.touch_member(&member(Role::Replica, "streaming", 5442, 50_331_968))
        .await
        .unwrap();
    pg3.touch_member(&member(Role::Replica, "streaming", 5443, 50_331_000))
        .await
        .unwrap();

    let cfg = dir
        .write(
            "patronictl.yml",
            format!(
                "scope: interop\nnamespace: /service/\netcd3:\n  hosts: {}\n",
                etcd.endpoint()
            )
            .as_bytes(),
        )
        .unwrap();
    let output = Command::new(&patronictl)
        .arg("-c")
        .arg(&cfg)
        .args(["list", "-f", "json"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "patronictl failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<Value> =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let rows: Vec<(String, String, String, String)> = listed
        .iter()
        .map(|m| {
            let field = |k: &str| {
                m.get(k)
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .unwrap_or_default()
            };
            (
                field("Member"),
                field("Host"),
                field("Role"),
                field("State"),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (
                "pg1".into(),
                "127.0.0.1:5441".into(),
                "Leader".into(),
                "running".into()
            ),
            (
                "pg2".into(),
                "127.0.0.1:5442".into(),
                "Replica".into(),
                "streaming".into()
            ),
            (
                "pg3".into(),
                "127.0.0.1:5443".into(),
                "Replica".into(),
                "streaming".into()
            ),
        ],
        "{stdout}"
    );
    assert!(listed.iter().all(|m| m["Cluster"] == "interop"), "{stdout}");
    // Patroni 4.1 renders the integer LSNs Keel wrote as X/Y and computes lag from them.
    assert_eq!(listed[2]["Receive LSN"], "0/2FFFD78", "{stdout}");
    assert_eq!(listed[2]["Replay LSN"], "0/2FFFD78", "{stdout}");
    assert_eq!(
        listed[2]["Receive Lag"], 0,
        "pg3 is 968 bytes behind, under a MB: {stdout}"
    );

    // The header shows the system identifier Keel wrote to `initialize`.
    let table = Command::new(&patronictl)
        .arg("-c")
        .arg(&cfg)
        .arg("list")
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("7312345678901234567"), "{table}");
}
