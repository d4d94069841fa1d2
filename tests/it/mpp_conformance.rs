//! The MPP conformance kit (keel-conformance) against plugins/citus: the wasm component
//! through keel-runtime, each case that runs SQL on a fresh PostgreSQL 15 with the Citus
//! emulation.

use futures::future::BoxFuture;
use keel_conformance::mpp::{MppEnvironment, MppHarness, check};
use keel_runtime::{BootstrapContext, Grants, MppPlugin, PluginLimits, SlotInfo};
use keel_tests::citus::{CitusComponent, TempCitus};

struct Citus {
    component: CitusComponent,
}

struct CitusServer {
    citus: TempCitus,
    plugin: MppPlugin,
}

impl MppEnvironment for CitusServer {
    fn plugin(&self) -> &MppPlugin {
        &self.plugin
    }

    fn bootstrap_context(&self) -> BootstrapContext {
        BootstrapContext {
            host: "127.0.0.1".into(),
            port: self.citus.port(),
            default_database: "postgres".into(),
            superuser_conninfo: Vec::new(),
        }
    }

    fn session(&self) -> BoxFuture<'_, Result<tokio_postgres::Client, String>> {
        Box::pin(async move { Ok(self.citus.connect("citus").await) })
    }
}

fn slot(name: &str, kind: &str, plugin: Option<&str>, database: Option<&str>) -> SlotInfo {
    SlotInfo {
        name: name.into(),
        slot_type: kind.into(),
        plugin: plugin.map(Into::into),
        database: database.map(Into::into),
    }
}

impl MppHarness for Citus {
    fn plugin(&self) -> BoxFuture<'_, Result<MppPlugin, String>> {
        let plugin = self
            .component
            .handler(Grants::default(), PluginLimits::default());
        Box::pin(async move { Ok(plugin) })
    }

    fn environment(&self) -> BoxFuture<'_, Result<Box<dyn MppEnvironment>, String>> {
        Box::pin(async move {
            let citus = TempCitus::start()
                .await
                .ok_or("PostgreSQL is not available (KEEL_SKIP_E2E)")?;
            let plugin = self
                .component
                .handler(citus.grants(), PluginLimits::default());
            Ok(Box::new(CitusServer { citus, plugin }) as Box<dyn MppEnvironment>)
        })
    }

    fn config(&self, group: u32) -> String {
        format!(r#"{{"group": {group}, "database": "citus"}}"#)
    }

    fn bad_configs(&self) -> Vec<(String, String)> {
        [
            (r#"{"database": "citus"}"#, "citus.group"),
            (r#"{"group": -1, "database": "citus"}"#, "citus.group"),
            (r#"{"group": 1}"#, "citus.database"),
            (r#"{"group": 1, "database": 5}"#, "citus.database"),
        ]
        .map(|(section, key)| (section.to_owned(), key.to_owned()))
        .to_vec()
    }

    fn own_slots(&self) -> Vec<SlotInfo> {
        vec![
            slot(
                "citus_shard_move_slot_1_2",
                "logical",
                Some("pgoutput"),
                Some("citus"),
            ),
            slot(
                "citus_shard_split_slot_3_4_5",
                "logical",
                Some("citus"),
                Some("citus"),
            ),
        ]
    }

    fn foreign_slots(&self) -> Vec<SlotInfo> {
        vec![
            slot("replica1", "physical", None, None),
            slot("cdc", "logical", Some("pgoutput"), Some("citus")),
            slot(
                "citus_shard_move_slot_1_2",
                "logical",
                Some("pgoutput"),
                Some("postgres"),
            ),
        ]
    }

    fn primary_sql(&self) -> &str {
        "SELECT nodename, nodeport FROM pg_catalog.pg_dist_node
         WHERE groupid = $1 AND noderole = 'primary'"
    }

    fn write_sql(&self) -> &str {
        "SELECT keel_emulation.coordinator_write($1)"
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_citus_plugin_passes_the_mpp_conformance_kit() {
    keel_testkit::unprivileged_test!();
    if keel_testkit::pg::PgBinaries::discover().is_none() {
        return;
    }
    let harness = Citus {
        component: CitusComponent::load().await,
    };
    check(&harness).await.assert_passed();
}
