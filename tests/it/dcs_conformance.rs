//! The DCS conformance kit (keel-conformance) against every DCS backend Keel
//! ships: the etcd plugin on a real etcd, and keel-dcs's in-memory reference.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use keel_conformance::dcs::{DcsHarness, check};
use keel_dcs::memory::{ManualClock, MemoryStore};
use keel_dcs::{DcsBackend, Settings};
use keel_runtime::capabilities::EtcdGrant;
use keel_runtime::{Grants, LoadedPlugin, PluginLimits};
use keel_testkit::etcd::TempEtcd;
use keel_tests::{PluginDir, components as c};

use crate::runtime_for;

/// The etcd plugin (wasm, through keel-runtime) on a real etcd.
struct EtcdPlugin {
    _dir: PluginDir,
    _etcd: TempEtcd,
    endpoint: String,
    plugin: LoadedPlugin,
}

impl EtcdPlugin {
    async fn backend(
        &self,
        endpoint: String,
        settings: Settings,
    ) -> Result<Arc<dyn DcsBackend>, String> {
        let grant = EtcdGrant::new(vec![endpoint], None, Duration::from_millis(700));
        let grants = Grants {
            etcd: Some(Arc::new(grant)),
            ..Grants::default()
        };
        let backend = self
            .plugin
            .dcs(grants, PluginLimits::default())
            .map_err(|e| e.to_string())?;
        backend
            .configure(settings)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(backend))
    }
}

impl DcsHarness for EtcdPlugin {
    fn member(&self, settings: Settings) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>> {
        Box::pin(self.backend(self.endpoint.clone(), settings))
    }
    fn unreachable_member(
        &self,
        settings: Settings,
    ) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>> {
        // A loopback port nothing listens on.
        let port = keel_testkit::free_port();
        Box::pin(self.backend(format!("127.0.0.1:{port}"), settings))
    }
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(by))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_plugin_passes_the_dcs_conformance_kit() {
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let plugin = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("etcd.wasm"))
        .await
        .unwrap();
    let harness = EtcdPlugin {
        endpoint: etcd.endpoint(),
        _etcd: etcd,
        _dir: dir,
        plugin,
    };
    check(&harness).await.assert_passed();
}

/// keel-dcs's in-memory reference backend on a manual clock.
struct Memory {
    store: MemoryStore,
    clock: ManualClock,
}

impl DcsHarness for Memory {
    fn member(&self, settings: Settings) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>> {
        Box::pin(async move {
            let backend = self.store.connect();
            backend
                .configure(settings)
                .await
                .map_err(|e| e.to_string())?;
            Ok(Arc::new(backend) as Arc<dyn DcsBackend>)
        })
    }
    fn unreachable_member(
        &self,
        settings: Settings,
    ) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>> {
        Box::pin(async move {
            let backend = self.store.connect();
            backend
                .configure(settings)
                .await
                .map_err(|e| e.to_string())?;
            backend.set_reachable(false);
            Ok(Arc::new(backend) as Arc<dyn DcsBackend>)
        })
    }
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        self.clock.advance(by);
        Box::pin(async {})
    }
}

#[tokio::test]
async fn the_memory_backend_passes_the_dcs_conformance_kit() {
    let (store, clock) = MemoryStore::with_manual_clock();
    check(&Memory { store, clock }).await.assert_passed();
}
