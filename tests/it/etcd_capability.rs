//! `keel:host/etcd` against a real etcd: a DCS plugin's keys, transactions and
//! watches land in etcd; an outage is `unavailable`, never a conflict; TLS with
//! client certificates works, and a wrong CA or certificate file is a clear error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use keel_dcs::{DcsBackend, DcsError, LoadScope, Settings, ValueKey};
use keel_runtime::capabilities::EtcdGrant;
use keel_runtime::{DcsPlugin, Grants, LoadedPlugin, PluginLimits};
use keel_testkit::TestPki;
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

/// The `etcd3:` section for a TLS etcd: its https URL, `cacert` and, when
/// `client` is set, the client certificate and key of `etcd`'s own CA.
fn tls_section(etcd: &TempEtcd, cacert: &std::path::Path, client: bool) -> serde_json::Value {
    let pki = etcd.pki().unwrap();
    let mut section = serde_json::json!({ "url": etcd.url(), "cacert": cacert });
    if client {
        section["cert"] = serde_json::json!(pki.client_cert());
        section["key"] = serde_json::json!(pki.client_key());
    }
    section
}

/// The etcd plugin, configured as `member` with a 2 s retry budget, with the
/// grant of `section` (2 s request timeout).
async fn etcd_plugin(dir: &PluginDir, section: &serde_json::Value, member: &str) -> DcsPlugin {
    let grant = EtcdGrant::from_section("etcd3", section, Duration::from_secs(2))
        .unwrap()
        .unwrap();
    assert!(grant.uses_tls());
    let loaded = LoadedPlugin::load(&runtime_for(dir), &dir.path().join("etcd.wasm"))
        .await
        .unwrap();
    let plugin = loaded
        .dcs(
            Grants {
                etcd: Some(Arc::new(grant)),
                ..Grants::default()
            },
            PluginLimits::default(),
        )
        .unwrap();
    let settings = Settings {
        retry_timeout: 2,
        ..Settings::new("tls", member)
    };
    plugin.configure(settings).await.unwrap();
    plugin
}

/// `plugin.load` fails as unavailable within the retry budget (plus one request
/// timeout and slack), with a reason that contains `needle` (any case).
async fn assert_prompt_unavailable(plugin: &DcsPlugin, needle: &str) {
    let started = Instant::now();
    let result = plugin.load(LoadScope::OwnGroup).await;
    let elapsed = started.elapsed();
    match result {
        Err(DcsError::Unavailable { reason }) => {
            assert!(reason.to_lowercase().contains(needle), "{reason}");
        }
        other => panic!("expected Unavailable, got {other:?}"),
    }
    assert!(elapsed < Duration::from_secs(6), "took {elapsed:?}");
}

#[tokio::test]
async fn the_etcd_plugin_works_over_tls_with_a_client_certificate() {
    keel_testkit::unprivileged_test!();
    let Some(etcd) = TempEtcd::start_tls() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let ca = etcd.pki().unwrap().ca();
    let pg1 = etcd_plugin(&dir, &tls_section(&etcd, &ca, true), "pg1").await;
    // `hosts` with `protocol: https` reach the same etcd.
    let mut by_host = tls_section(&etcd, &ca, true);
    by_host["url"] = serde_json::Value::Null;
    by_host["hosts"] = serde_json::json!([etcd.endpoint()]);
    by_host["protocol"] = serde_json::json!("https");
    let pg2 = etcd_plugin(&dir, &by_host, "pg2").await;

    assert!(
        pg1.touch_member(r#"{"role":"primary"}"#.into())
            .await
            .unwrap()
    );
    assert!(pg1.attempt_to_acquire_leader().await.unwrap());
    assert!(!pg2.attempt_to_acquire_leader().await.unwrap());
    let groups = pg2.load(LoadScope::OwnGroup).await.unwrap();
    let keys: Vec<(&str, &str)> = groups[0]
        .entries
        .iter()
        .map(|e| (e.key.as_str(), e.value.as_str()))
        .collect();
    assert_eq!(
        keys,
        vec![("leader", "pg1"), ("members/pg1", r#"{"role":"primary"}"#)]
    );
}

#[tokio::test]
async fn a_wrong_ca_is_a_prompt_unavailable_naming_the_certificate() {
    keel_testkit::unprivileged_test!();
    let Some(etcd) = TempEtcd::start_tls() else {
        return;
    };
    let Some(other) = TestPki::generate() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let plugin = etcd_plugin(&dir, &tls_section(&etcd, &other.ca(), true), "pg1").await;
    assert_prompt_unavailable(&plugin, "invalid peer certificate").await;
}

#[tokio::test]
async fn etcd_requiring_client_certificates_refuses_a_client_without_one() {
    keel_testkit::unprivileged_test!();
    let Some(etcd) = TempEtcd::start_tls() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let ca = etcd.pki().unwrap().ca();
    let plugin = etcd_plugin(&dir, &tls_section(&etcd, &ca, false), "pg1").await;
    // TLS 1.3: the server's verdict on the (absent) client certificate comes
    // after the client's handshake, as an alert or just a closed connection.
    assert_prompt_unavailable(&plugin, "").await;
}

#[test]
fn a_missing_certificate_file_is_named_at_start() {
    let missing = "/nonexistent/keel/client.crt";
    let section = serde_json::json!({
        "hosts": "127.0.0.1:2379",
        "protocol": "https",
        "cert": missing,
        "key": "/nonexistent/keel/client.key",
    });
    let err = EtcdGrant::from_section("etcd3", &section, Duration::from_secs(2)).unwrap_err();
    assert!(err.contains("etcd3.cert") && err.contains(missing), "{err}");
}
