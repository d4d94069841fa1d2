//! The example plugins of `examples/plugins/`, built from source like every plugin
//! (tests/build.rs) and run the way keeld runs plugins: the plugin directory is
//! loaded by keel-runtime, keel-select picks each plugin by its config section
//! and derives its grants and limits, and every call goes through the runtime's
//! adapters. The minimal DCS backend passes the whole DCS conformance kit on a
//! real etcd; the minimal MPP handler answers validate-config, adjust-gucs and
//! ignore-replication-slot, and passes the MPP conformance cases that apply to
//! a handler without per-group metadata; `keeld plugin check` accepts both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use keel_conformance::dcs::{DcsHarness, check};
use keel_conformance::mpp::{MppEnvironment, MppHarness};
use keel_dcs::{DcsBackend, Settings};
use keel_runtime::{MppError, MppPlugin, Parameter, PluginCatalog, SlotInfo};
use keel_select::{Choice, Selected};
use keel_testkit::etcd::TempEtcd;
use keel_tests::{PluginDir, components as c};

use crate::runtime_for;

/// A member's configuration whose sections select both example plugins.
fn member_config(plugins: &Path, etcd: &str) -> String {
    format!(
        "scope: examples\nname: m1\n\
         restapi: {{listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}}\n\
         postgresql: {{listen: 127.0.0.1:5432, connect_address: 127.0.0.1:5432, data_dir: /nonexistent,\n  \
         authentication: {{superuser: {{username: postgres}}, replication: {{username: rep}}}}}}\n\
         plugins: {{dir: {}}}\n\
         minimal-dcs: {{hosts: '{etcd}'}}\n\
         minimal-mpp: {{group: 1, slot_prefix: cdc_}}\n",
        plugins.display()
    )
}

/// What keeld would select from `dir` for a member whose DCS is at `etcd`.
async fn select(dir: &PluginDir, etcd: &str) -> (keel_config::Settings, Selected) {
    let yaml = member_config(dir.path(), etcd);
    let settings = keel_config::Settings::from_yaml_str(&yaml, &keel_config::Env::empty()).unwrap();
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    let catalog = PluginCatalog::load_dir(&runtime_for(dir), dir.path())
        .await
        .unwrap();
    assert!(catalog.rejected().is_empty(), "{:?}", catalog.rejected());
    let selected = keel_select::select(&settings, &catalog, 2).unwrap();
    (settings, selected)
}

/// The minimal DCS plugin with the grants keel-select gives it: its section's
/// etcd, and a second choice whose section names a port nothing listens on.
struct MinimalDcs {
    reachable: Choice,
    unreachable: Choice,
}

impl MinimalDcs {
    async fn backend(choice: &Choice, settings: Settings) -> Result<Arc<dyn DcsBackend>, String> {
        let backend = choice
            .plugin
            .dcs(choice.grants.clone(), choice.limits)
            .map_err(|e| e.to_string())?;
        backend
            .configure(settings)
            .await
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(backend))
    }
}

impl DcsHarness for MinimalDcs {
    fn member(&self, settings: Settings) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>> {
        Box::pin(Self::backend(&self.reachable, settings))
    }
    fn unreachable_member(
        &self,
        settings: Settings,
    ) -> BoxFuture<'_, Result<Arc<dyn DcsBackend>, String>> {
        Box::pin(Self::backend(&self.unreachable, settings))
    }
    fn advance(&self, by: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(by))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_minimal_dcs_plugin_passes_the_dcs_conformance_kit() {
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::MINIMAL_DCS, c::MINIMAL_MPP]).unwrap();
    let (_, selected) = select(&dir, &etcd.endpoint()).await;
    assert_eq!(selected.dcs.section, "minimal-dcs");
    assert_eq!(
        selected.dcs.grants.describe(),
        [
            "log".to_owned(),
            format!("etcd: http://{}", etcd.endpoint())
        ],
        "the grant is the section's endpoint and nothing else"
    );
    let nowhere = format!("127.0.0.1:{}", keel_testkit::free_port());
    let (_, unreachable) = select(&dir, &nowhere).await;
    let harness = MinimalDcs {
        reachable: selected.dcs,
        unreachable: unreachable.dcs,
    };
    let report = check(&harness).await;
    report.assert_passed();
    assert_eq!(
        report.outcomes.len(),
        keel_conformance::dcs::cases().len(),
        "every case ran"
    );
}

fn parameter(name: &str, value: &str) -> Parameter {
    Parameter {
        name: name.into(),
        value: value.into(),
    }
}

fn slot(name: &str, kind: &str) -> SlotInfo {
    SlotInfo {
        name: name.into(),
        slot_type: kind.into(),
        plugin: (kind == "logical").then(|| "pgoutput".into()),
        database: (kind == "logical").then(|| "postgres".into()),
    }
}

#[tokio::test]
async fn the_minimal_mpp_plugin_adjusts_a_guc_and_keeps_its_slots() {
    let dir = PluginDir::with(&[c::MINIMAL_DCS, c::MINIMAL_MPP]).unwrap();
    let (settings, selected) = select(&dir, "127.0.0.1:2379").await;
    let choice = selected
        .mpp
        .expect("the minimal-mpp section selects the MPP plugin");
    assert_eq!(choice.section, "minimal-mpp");
    assert!(
        choice.grants.postgres.is_some() && choice.grants.etcd.is_none(),
        "an MPP plugin gets the local PostgreSQL and nothing else: {:?}",
        choice.grants.describe()
    );
    let mpp = choice
        .plugin
        .mpp(choice.grants.clone(), choice.limits)
        .unwrap();
    mpp.validate_config(&choice.config_json(&settings))
        .await
        .unwrap();
    assert_eq!(mpp.group().await.unwrap(), 1);
    assert_eq!(mpp.coordinator_group().await.unwrap(), 0);

    let computed = [
        parameter("max_connections", "100"),
        parameter("shared_preload_libraries", "auto_explain"),
    ];
    let adjusted = mpp.adjust_gucs(&computed).await.unwrap();
    assert_eq!(
        adjusted,
        [parameter(
            "shared_preload_libraries",
            "auto_explain,pg_stat_statements"
        )]
    );
    let again = [parameter("max_connections", "100"), adjusted[0].clone()];
    assert_eq!(
        mpp.adjust_gucs(&again).await.unwrap(),
        [],
        "applied to its own output, adjust-gucs changes nothing"
    );

    for (name, kind, ignored) in [
        ("cdc_orders", "logical", true),
        ("cdc_orders", "physical", false),
        ("pg2", "physical", false),
        ("debezium", "logical", false),
    ] {
        let answer = mpp
            .ignore_replication_slot(&slot(name, kind))
            .await
            .unwrap();
        assert_eq!(answer, ignored, "{kind} slot {name}");
    }

    let fresh = choice
        .plugin
        .mpp(choice.grants.clone(), choice.limits)
        .unwrap();
    match fresh.validate_config(r#"{"slot_prefix": "cdc_"}"#).await {
        Err(MppError::InvalidConfig { reason, .. }) => {
            assert!(reason.starts_with("minimal-mpp.group"), "{reason}");
        }
        other => panic!("a section without a group was accepted: {other:?}"),
    }
}

/// The minimal MPP plugin for the MPP kit. It keeps no per-group metadata, so
/// the kit's cases that pause and move a group's primary do not apply: they get
/// no environment.
struct MinimalMpp {
    choice: Choice,
}

/// Why the metadata cases do not apply.
const NO_METADATA: &str = "minimal-mpp keeps no per-group metadata";

impl MppHarness for MinimalMpp {
    fn plugin(&self) -> BoxFuture<'_, Result<MppPlugin, String>> {
        let plugin = self
            .choice
            .plugin
            .mpp(self.choice.grants.clone(), self.choice.limits)
            .map_err(|e| e.to_string());
        Box::pin(async move { plugin })
    }
    fn environment(&self) -> BoxFuture<'_, Result<Box<dyn MppEnvironment>, String>> {
        Box::pin(async { Err(NO_METADATA.to_owned()) })
    }
    fn config(&self, group: u32) -> String {
        format!(r#"{{"group": {group}, "slot_prefix": "cdc_"}}"#)
    }
    fn bad_configs(&self) -> Vec<(String, String)> {
        vec![
            ("{}".into(), "minimal-mpp.group".into()),
            (r#"{"group": "one"}"#.into(), "minimal-mpp.group".into()),
            (
                r#"{"group": 1, "slot_prefix": 7}"#.into(),
                "minimal-mpp.slot_prefix".into(),
            ),
        ]
    }
    fn own_slots(&self) -> Vec<SlotInfo> {
        vec![slot("cdc_orders", "logical"), slot("cdc_", "logical")]
    }
    fn foreign_slots(&self) -> Vec<SlotInfo> {
        vec![
            slot("pg2", "physical"),
            slot("cdc_orders", "physical"),
            slot("debezium", "logical"),
        ]
    }
    fn primary_sql(&self) -> &str {
        ""
    }
    fn write_sql(&self) -> &str {
        ""
    }
}

#[tokio::test]
async fn the_minimal_mpp_plugin_passes_the_mpp_conformance_cases_that_apply() {
    let dir = PluginDir::with(&[c::MINIMAL_DCS, c::MINIMAL_MPP]).unwrap();
    let (_, selected) = select(&dir, "127.0.0.1:2379").await;
    let harness = MinimalMpp {
        choice: selected.mpp.unwrap(),
    };
    let report = keel_conformance::mpp::check(&harness).await;
    let applies = [
        "bad_config_is_refused_naming_the_key",
        "good_config_is_accepted_with_its_group",
        "adjust_gucs_is_idempotent_and_keeps_unrelated_parameters",
        "own_slots_are_kept_and_others_are_not",
    ];
    for (name, outcome) in &report.outcomes {
        match outcome {
            Ok(()) => assert!(applies.contains(name), "{name} passed without metadata?"),
            Err(e) if applies.contains(name) => panic!("{name}: {e}"),
            Err(e) => assert!(e.contains(NO_METADATA), "{name}: {e}"),
        }
    }
    for name in applies {
        assert!(
            report.outcomes.iter().any(|(n, _)| *n == name),
            "the MPP kit has no case {name} any more"
        );
    }
}

/// target/<profile>/keeld, built by `cargo build --workspace --bins`.
fn keeld() -> PathBuf {
    let path = crate::cluster::keeld_binary();
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

#[test]
fn keeld_plugin_check_accepts_both_examples() {
    let dir = PluginDir::with(&[c::MINIMAL_DCS, c::MINIMAL_MPP]).unwrap();
    let config = dir
        .write(
            "keel.yml",
            member_config(dir.path(), "127.0.0.1:2379").as_bytes(),
        )
        .unwrap();
    for (file, world, granted) in [
        (
            "minimal_dcs.wasm",
            "keel:dcs/dcs-plugin@0.1.0",
            "granted:      log; etcd: http://127.0.0.1:2379 (from section `minimal-dcs`)",
        ),
        (
            "minimal_mpp.wasm",
            "keel:mpp/mpp-plugin@0.1.0",
            "granted:      log; postgres: ",
        ),
    ] {
        let output = Command::new(keeld())
            .args(["plugin", "check"])
            .arg(dir.path().join(file))
            .arg("-c")
            .arg(&config)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(output.status.success(), "{file}: {text}");
        assert!(text.contains(&format!("world:        {world}")), "{text}");
        assert!(text.contains("sdk version:  0.1.0"), "{text}");
        assert!(text.contains(granted), "{text}");
        assert!(text.trim_end().ends_with("ok"), "{text}");
    }
}
