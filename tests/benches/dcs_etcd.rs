//! Benchmark: the etcd DCS plugin against the same operation done natively with
//! etcd-client, in the same run, on the same etcd.
//!
//! Run: `cargo bench -p keel-tests --bench dcs_etcd` (`-- --quick` for fewer samples).
//!
//! * formation load: 100 groups x 3 members (plus leader and config keys) read in
//!   one range and split into groups: through the plugin (`load(formation)`)
//!   vs natively (`get --prefix` + `keel_dcs::path::split_formation`);
//! * leader refresh: the leader's `update-leader` through the plugin vs a native
//!   lease keep-alive (the etcd work a renewal needs).
//!
//! The ratio plugin/native is the plugin's overhead; absolute figures depend on
//! the machine and etcd.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use etcd_client::{Client, GetOptions};
use keel_dcs::{DcsBackend, Entry, LoadScope, Settings};
use keel_runtime::capabilities::EtcdGrant;
use keel_runtime::{Grants, LoadedPlugin, PluginLimits, Runtime, RuntimeOptions};
use keel_testkit::etcd::TempEtcd;
use keel_tests::{PluginDir, components as c};

const GROUPS: u32 = 100;
const MEMBERS: u32 = 3;

fn p50_p99(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    (at(0.5), at(0.99))
}

async fn time<F: AsyncFnMut()>(n: usize, mut f: F) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    samples
}

fn row(name: &str, plugin: Vec<Duration>, native: Vec<Duration>) {
    let (pp50, pp99) = p50_p99(plugin);
    let (np50, np99) = p50_p99(native);
    println!(
        "{name:<28} plugin p50={pp50:>9.2?} p99={pp99:>9.2?} | native p50={np50:>9.2?} p99={np99:>9.2?} | plugin/native (p50) {:.2}x",
        pp50.as_secs_f64() / np50.as_secs_f64()
    );
}

fn member_json(group: u32, member: u32) -> String {
    format!(
        r#"{{"conn_url":"postgres://10.0.{group}.{member}:5432/postgres","api_url":"http://10.0.{group}.{member}:8008/patroni","state":"running","role":"{}","version":"4.1.0","xlog_location":50331968,"replication_state":"streaming","timeline":1}}"#,
        if member == 0 { "primary" } else { "replica" }
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let n = if quick { 20 } else { 200 };
    let etcd = TempEtcd::start().ok_or_else(|| anyhow::anyhow!("etcd is not installed"))?;
    let mut native = Client::connect([etcd.endpoint()], None).await?;
    let base = "/service/bench/";
    for group in 0..GROUPS {
        native
            .put(format!("{base}{group}/leader"), "m0", None)
            .await?;
        native
            .put(
                format!("{base}{group}/config"),
                r#"{"ttl":30,"loop_wait":10}"#,
                None,
            )
            .await?;
        for member in 0..MEMBERS {
            native
                .put(
                    format!("{base}{group}/members/m{member}"),
                    member_json(group, member),
                    None,
                )
                .await?;
        }
    }

    let dir = PluginDir::with(&[c::ETCD])?;
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.cache()),
    })?;
    let loaded = LoadedPlugin::load(&runtime, &dir.path().join("etcd.wasm")).await?;
    let grant = EtcdGrant::new(vec![etcd.endpoint()], None, Duration::from_secs(2));
    let plugin = loaded.dcs(
        Grants {
            etcd: Some(Arc::new(grant)),
            ..Grants::default()
        },
        PluginLimits::default(),
    )?;
    plugin
        .configure(Settings {
            group: Some(0),
            ..Settings::new("bench", "c1")
        })
        .await?;

    println!("etcd DCS plugin vs native etcd-client ({GROUPS} groups x {MEMBERS} members, n={n})");
    let groups = plugin.load(LoadScope::Formation).await?;
    assert_eq!(groups.len(), GROUPS as usize);
    let via_plugin = time(n, async || {
        plugin
            .load(LoadScope::Formation)
            .await
            .expect("plugin load");
    })
    .await;
    let via_native = time(n, async || {
        let response = native
            .get(base, Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        let entries = response.kvs().iter().map(|kv| Entry {
            key: String::from_utf8_lossy(&kv.key()[base.len()..]).into_owned(),
            value: String::from_utf8_lossy(kv.value()).into_owned(),
            version: kv.mod_revision().to_string(),
            session: (kv.lease() != 0).then(|| kv.lease().to_string()),
        });
        assert_eq!(
            keel_dcs::path::split_formation(entries).len(),
            GROUPS as usize
        );
    })
    .await;
    row("formation load", via_plugin, via_native);

    // Leader refresh: the coordinator of a fresh scope takes the lock, then renews.
    let leader = loaded.dcs(
        Grants {
            etcd: Some(Arc::new(EtcdGrant::new(
                vec![etcd.endpoint()],
                None,
                Duration::from_secs(2),
            ))),
            ..Grants::default()
        },
        PluginLimits::default(),
    )?;
    leader
        .configure(Settings::new("bench-refresh", "m1"))
        .await?;
    assert!(leader.attempt_to_acquire_leader().await?);
    leader.load(LoadScope::OwnGroup).await?;
    let via_plugin = time(n, async || {
        assert!(leader.update_leader().await.expect("refresh"));
    })
    .await;
    let lease = native.lease_grant(30, None).await?.id();
    let via_native = time(n, async || {
        let (mut keeper, mut stream) = native.lease_keep_alive(lease).await.expect("keep-alive");
        keeper.keep_alive().await.expect("keep-alive");
        assert!(
            stream
                .message()
                .await
                .expect("answer")
                .is_some_and(|r| r.ttl() > 0)
        );
    })
    .await;
    row("leader refresh", via_plugin, via_native);
    Ok(())
}
