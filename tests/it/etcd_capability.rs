//! `keel:host/etcd` against a real etcd: a DCS plugin's keys, transactions and
//! watches land in etcd; an outage is `unavailable`, never a conflict.

use std::sync::Arc;
use std::time::Duration;

use keel_dcs::{DcsBackend, DcsError, LoadScope, Settings, ValueKey};
use keel_runtime::capabilities::EtcdGrant;
use keel_runtime::{DcsPlugin, Grants, LoadedPlugin, PluginLimits};
use keel_testkit::etcd::TempEtcd;
use keel_tests::{PluginDir, components as c};

use crate::runtime_for;

async fn member(dir: &PluginDir, etcd: &TempEtcd, name: &str) -> DcsPlugin {
    let loaded = LoadedPlugin::load(&runtime_for(dir), &dir.path().join("fixture_dcs.wasm"))
        .await
        .unwrap();
    let plugin = loaded
        .dcs(
            keel_tests::etcd_grants(vec![etcd.endpoint()], None),
            PluginLimits::default(),
        )
        .unwrap();
    plugin
        .configure(Settings::new("capability-test", name))
        .await
        .unwrap();
    plugin
}

#[tokio::test]
async fn a_dcs_plugin_reads_and_writes_real_etcd() {
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    let pg1 = member(&dir, &etcd, "pg1").await;
    let pg2 = member(&dir, &etcd, "pg2").await;

    assert!(pg1.attempt_to_acquire_leader().await.unwrap());
    assert!(
        !pg2.attempt_to_acquire_leader().await.unwrap(),
        "create_revision == 0 lets one member win"
    );
    pg1.touch_member(r#"{"role":"primary"}"#.into())
        .await
        .unwrap();
    let version = pg1
        .set_value(ValueKey::Config, r#"{"ttl":30}"#.into(), None)
        .await
        .unwrap();
    assert!(version.parse::<i64>().unwrap() > 0);

    let groups = pg2.load(LoadScope::OwnGroup).await.unwrap();
    let keys: Vec<(&str, &str)> = groups[0]
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("config", r#"{"ttl":30}"#),
            ("leader", "pg1"),
            ("members/pg1", r#"{"role":"primary"}"#)
        ]
    );

    // A watch wakes on the leader key's deletion.
    let (woke, deleted) = tokio::join!(pg2.watch(None, 5_000), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        pg1.delete_leader().await
    });
    assert!(deleted.unwrap());
    assert!(
        woke.unwrap(),
        "the watch returned because the leader key changed"
    );
}

#[tokio::test]
async fn an_etcd_outage_is_unavailable_not_a_conflict() {
    let Some(mut etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    let pg1 = member(&dir, &etcd, "pg1").await;
    pg1.load(LoadScope::OwnGroup).await.unwrap();
    etcd.kill();
    for result in [
        pg1.attempt_to_acquire_leader().await.map(|_| ()),
        pg1.load(LoadScope::OwnGroup).await.map(|_| ()),
    ] {
        match result {
            Err(DcsError::Unavailable { .. }) => {}
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    // Back up: the plugin reconnects by itself.
    etcd.restart();
    let mut last = None;
    for _ in 0..50 {
        match pg1.load(LoadScope::OwnGroup).await {
            Ok(_) => return,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("never reconnected: {last:?}");
}

#[tokio::test]
async fn a_dcs_plugin_without_endpoints_is_told_so() {
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("fixture_dcs.wasm"))
        .await
        .unwrap();
    let plugin = loaded
        .dcs(Grants::default(), PluginLimits::default())
        .unwrap();
    plugin.configure(Settings::new("s", "m")).await.unwrap();
    let err = plugin
        .load(LoadScope::OwnGroup)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no etcd endpoints"), "{err}");
}

#[tokio::test]
async fn a_refused_configuration_is_invalid_config() {
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("fixture_dcs.wasm"))
        .await
        .unwrap();
    let plugin = loaded
        .dcs(Grants::default(), PluginLimits::default())
        .unwrap();
    let settings = Settings {
        config: r#"{"reject": true}"#.into(),
        ..Settings::new("s", "m")
    };
    match plugin.configure(settings).await {
        Err(DcsError::InvalidConfig { reason }) => {
            assert!(reason.contains("fixture-dcs.reject"), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}

#[tokio::test]
async fn a_dead_endpoint_among_several_is_skipped() {
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("etcd.wasm"))
        .await
        .unwrap();
    let dead = format!("127.0.0.1:{}", keel_testkit::free_port());
    let plugin = loaded
        .dcs(
            keel_tests::etcd_grants(vec![dead, etcd.endpoint()], None),
            PluginLimits::default(),
        )
        .unwrap();
    plugin
        .configure(Settings::new("failover", "pg1"))
        .await
        .unwrap();
    for _ in 0..5 {
        assert!(plugin.touch_member("{}".into()).await.unwrap());
    }
    assert!(plugin.attempt_to_acquire_leader().await.unwrap());
}

#[tokio::test]
async fn credentials_from_the_section_authenticate() {
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let etcdctl = |args: &[&str]| {
        let output = std::process::Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoint()))
            .args(args)
            .output()
            .expect("etcdctl (apt-get install etcd-client)");
        assert!(
            output.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    etcdctl(&["user", "add", "root:s3cret"]);
    etcdctl(&["auth", "enable"]);
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("etcd.wasm"))
        .await
        .unwrap();
    let connect = |credentials: Option<(&str, &str)>| {
        let credentials = credentials.map(|(u, p)| (u.to_owned(), p.to_owned()));
        let grant = EtcdGrant::new(vec![etcd.endpoint()], credentials, Duration::from_secs(2));
        loaded
            .dcs(
                Grants {
                    etcd: Some(Arc::new(grant)),
                    ..Grants::default()
                },
                PluginLimits::default(),
            )
            .unwrap()
    };
    let authenticated = connect(Some(("root", "s3cret")));
    authenticated
        .configure(Settings::new("auth", "pg1"))
        .await
        .unwrap();
    assert!(authenticated.attempt_to_acquire_leader().await.unwrap());

    let anonymous = connect(None);
    anonymous
        .configure(Settings::new("auth", "pg2"))
        .await
        .unwrap();
    match anonymous.load(LoadScope::OwnGroup).await {
        Err(DcsError::Failed { reason, .. }) => {
            assert!(reason.contains("permission denied"), "{reason}");
        }
        other => panic!("expected a permission error, got {other:?}"),
    }
}
