//! `keel:host/postgres` against a real PostgreSQL: sessions that outlive calls,
//! parameters, SQLSTATE errors, and a discarded instance taking its open
//! transaction with it.

use std::sync::Arc;
use std::time::Duration;

use keel_runtime::capabilities::PostgresGrant;
use keel_runtime::{
    BootstrapContext, Grants, GroupView, LoadedPlugin, MppEvent, MppEventKind, PluginLimits,
};
use keel_tests::{PluginDir, TempPostgres, components as c};

use crate::runtime_for;

async fn sessions_of_plugin(client: &tokio_postgres::Client) -> Vec<String> {
    client
        .query(
            "SELECT state FROM pg_stat_activity WHERE application_name = 'keel-plugin-fixture-mpp'",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<_, String>(0))
        .collect()
}

#[tokio::test]
async fn an_mpp_plugin_keeps_a_transaction_open_across_calls() {
    keel_testkit::unprivileged_test!();
    let Some(pg) = TempPostgres::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::FIXTURE_MPP]).unwrap();
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("fixture_mpp.wasm"))
        .await
        .unwrap();
    let grant = PostgresGrant::new(pg.config("postgres"), Duration::from_secs(5));
    let grants = Grants {
        postgres: Some(Arc::new(grant)),
        ..Grants::default()
    };
    let plugin = loaded.mpp(grants, PluginLimits::default()).unwrap();
    let admin = pg.connect().await;

    plugin.validate_config(r#"{"group": 0}"#).await.unwrap();
    let context = BootstrapContext {
        host: "127.0.0.1".into(),
        port: 5432,
        default_database: "postgres".into(),
        superuser_conninfo: vec![],
    };
    plugin.bootstrap(&context).await.unwrap();
    let formation = vec![
        GroupView {
            group: 0,
            leader: Some("coord1".into()),
            members: vec![],
        },
        GroupView {
            group: 1,
            leader: Some("it's-a-worker".into()),
            members: vec![],
        },
    ];
    plugin.sync_meta_data(&formation).await.unwrap();
    let rows = admin
        .query(
            "SELECT grp, leader FROM keel_fixture_formation ORDER BY grp",
            &[],
        )
        .await
        .unwrap();
    let seen: Vec<(i32, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        seen,
        vec![(0, "coord1".to_owned()), (1, "it's-a-worker".to_owned())],
        "parameters bound verbatim"
    );

    // before-demote opens a transaction that outlives the call...
    let event = MppEvent {
        kind: MppEventKind::BeforeDemote,
        group: 1,
        leader: "w1".into(),
        host: "127.0.0.1".into(),
        port: 5433,
        timeout_seconds: 30,
        cooldown_ms: 10_000,
    };
    plugin.handle_event(&event).await.unwrap();
    assert_eq!(
        sessions_of_plugin(&admin).await,
        vec!["idle in transaction".to_owned()]
    );
    // ...and after-promote commits it.
    plugin
        .handle_event(&MppEvent {
            kind: MppEventKind::AfterPromote,
            ..event.clone()
        })
        .await
        .unwrap();
    assert_eq!(sessions_of_plugin(&admin).await, vec!["idle".to_owned()]);

    // on-demote drops the plugin's session: the server sees it go.
    plugin.handle_event(&event).await.unwrap();
    plugin.on_demote().await.unwrap();
    for _ in 0..50 {
        if sessions_of_plugin(&admin).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the plugin's session outlived on-demote: {:?}",
        sessions_of_plugin(&admin).await
    );
}

#[tokio::test]
async fn an_mpp_plugin_without_the_grant_gets_an_error_not_a_trap() {
    let dir = PluginDir::with(&[c::FIXTURE_MPP]).unwrap();
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("fixture_mpp.wasm"))
        .await
        .unwrap();
    let plugin = loaded
        .mpp(Grants::default(), PluginLimits::default())
        .unwrap();
    plugin.validate_config(r#"{"group": 0}"#).await.unwrap();
    let err = plugin.sync_meta_data(&[]).await.unwrap_err().to_string();
    assert!(err.contains("not granted access to PostgreSQL"), "{err}");
    assert_eq!(plugin.metrics().snapshot().traps, 0);
}
