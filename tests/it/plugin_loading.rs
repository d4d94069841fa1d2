//! Loading and checking components: worlds, descriptions, the compile cache,
//! and every way a component can be refused.

use keel_runtime::{Grants, LoadError, LoadedPlugin, PluginCatalog, PluginKind, PluginLimits};
use keel_tests::{PluginDir, components as c};

use crate::runtime_for;

#[tokio::test]
async fn well_behaved_plugins_load_with_checked_descriptions() {
    let dir = PluginDir::with(&[c::FIXTURE_DCS, c::FIXTURE_MPP]).unwrap();
    let catalog = PluginCatalog::load_dir(&runtime_for(&dir), dir.path())
        .await
        .unwrap();
    assert!(catalog.rejected().is_empty(), "{:?}", catalog.rejected());

    let dcs = catalog.find("fixture-dcs").expect("found by name");
    assert_eq!(dcs.description().kind, PluginKind::Dcs);
    assert_eq!(dcs.description().wit_version, "0.1.0");
    assert!(
        dcs.description().sdk_version.is_some(),
        "the SDK stamps its version"
    );
    assert!(
        catalog.find("fixture-dcs-alias").is_some(),
        "found by alias"
    );

    let mpp = catalog.find("fixture-mpp").expect("found by name");
    assert_eq!(mpp.description().kind, PluginKind::Mpp);
    assert!(catalog.find("etcd3").is_none());
    assert_eq!(
        catalog.available(),
        "fixture-dcs (also fixture-dcs-alias), fixture-mpp"
    );
}

#[tokio::test]
async fn a_second_start_compiles_nothing() {
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    let path = dir.path().join("fixture_dcs.wasm");
    let first = LoadedPlugin::load(&runtime_for(&dir), &path).await.unwrap();
    assert!(!first.from_cache());
    // A new runtime (a restarted daemon) with the same cache directory.
    let second = LoadedPlugin::load(&runtime_for(&dir), &path).await.unwrap();
    assert!(second.from_cache());
    assert_eq!(first.description(), second.description());
}

#[tokio::test]
async fn a_changed_component_is_compiled_again() {
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    let runtime = runtime_for(&dir);
    let path = dir.path().join("fixture_dcs.wasm");
    LoadedPlugin::load(&runtime, &path).await.unwrap();
    // Same code plus a custom section: different bytes, different cache key.
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(&[0, 5, 4, b'k', b'e', b'e', b'l', 0]);
    std::fs::write(&path, bytes).unwrap();
    match LoadedPlugin::load(&runtime, &path).await {
        Ok(plugin) => assert!(!plugin.from_cache()),
        // A component may refuse a trailing section; either way nothing stale was used.
        Err(LoadError::Compile { .. }) => {}
        Err(other) => panic!("unexpected: {other}"),
    }
}

#[tokio::test]
async fn a_component_without_a_keel_world_is_refused_naming_what_it_exports() {
    let dir = PluginDir::with(&[c::FIXTURE_INCOMPLETE]).unwrap();
    let catalog = PluginCatalog::load_dir(&runtime_for(&dir), dir.path())
        .await
        .unwrap();
    assert!(catalog.plugins().is_empty());
    let message = catalog.rejected()[0].error.to_string();
    assert!(message.contains("fixture_incomplete.wasm"), "{message}");
    assert!(message.contains("keel:dcs/backend@0.1.0"), "{message}");
    assert!(message.contains("it exports: hello"), "{message}");
}

#[tokio::test]
async fn a_file_that_is_not_a_component_is_refused_naming_the_file() {
    let dir = PluginDir::with(&[]).unwrap();
    dir.write("broken.wasm", b"\0asm but not really").unwrap();
    let catalog = PluginCatalog::load_dir(&runtime_for(&dir), dir.path())
        .await
        .unwrap();
    let message = catalog.rejected()[0].error.to_string();
    assert!(
        message.contains("broken.wasm") && message.contains("not a loadable"),
        "{message}"
    );
}

#[tokio::test]
async fn two_files_claiming_one_name_are_refused() {
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    std::fs::copy(c::FIXTURE_DCS, dir.path().join("zz-copy.wasm")).unwrap();
    let catalog = PluginCatalog::load_dir(&runtime_for(&dir), dir.path())
        .await
        .unwrap();
    assert_eq!(catalog.plugins().len(), 1);
    let message = catalog.rejected()[0].error.to_string();
    assert!(
        message.contains("both answer to the name `fixture-dcs`"),
        "{message}"
    );
}

#[tokio::test]
async fn a_plugin_is_only_usable_in_its_own_world() {
    let dir = PluginDir::with(&[c::FIXTURE_MPP]).unwrap();
    let plugin = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("fixture_mpp.wasm"))
        .await
        .unwrap();
    let err = plugin
        .dcs(Grants::default(), PluginLimits::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("keel:dcs/dcs-plugin") && err.contains("implements keel:mpp/mpp-plugin"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreadable_directory_is_an_error_naming_it() {
    let dir = PluginDir::with(&[]).unwrap();
    let missing = dir.path().join("nope");
    let err = PluginCatalog::load_dir(&runtime_for(&dir), &missing)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

/// What keel-select makes of a member whose only plugin section is `section`.
async fn select_dcs(dir: &PluginDir, section: &str) -> Result<keel_select::Selected, String> {
    let yaml = format!(
        "scope: grants\nname: m1\n\
         restapi: {{listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}}\n\
         postgresql: {{listen: 127.0.0.1:5432, connect_address: 127.0.0.1:5432, data_dir: /nonexistent,\n  \
         authentication: {{superuser: {{username: postgres}}, replication: {{username: rep}}}}}}\n\
         plugins: {{dir: {}}}\n\
         {section}\n",
        dir.path().display()
    );
    let settings = keel_config::Settings::from_yaml_str(&yaml, &keel_config::Env::empty()).unwrap();
    let catalog = PluginCatalog::load_dir(&runtime_for(dir), dir.path())
        .await
        .unwrap();
    keel_select::select(&settings, &catalog, 2).map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_dcs_plugin_importing_no_store_client_is_granted_nothing_and_needs_no_endpoints() {
    use keel_dcs::DcsBackend;
    let dir = PluginDir::with(&[c::FIXTURE_STORELESS, c::FIXTURE_DCS]).unwrap();
    let selected = select_dcs(&dir, "fixture-storeless: {}").await.unwrap();
    assert_eq!(selected.dcs.section, "fixture-storeless");
    assert_eq!(selected.dcs.grants.describe(), vec!["log".to_owned()]);
    let backend = selected
        .dcs
        .plugin
        .dcs(selected.dcs.grants.clone(), selected.dcs.limits)
        .unwrap();
    backend
        .configure(keel_dcs::Settings::new("grants", "m1"))
        .await
        .unwrap();
    assert!(backend.attempt_to_acquire_leader().await.unwrap());

    // A plugin that imports the etcd client still needs its section's endpoints.
    let refused = select_dcs(&dir, "fixture-dcs: {}").await.err();
    assert_eq!(
        refused.as_deref(),
        Some("fixture-dcs: names no endpoints; set fixture-dcs.hosts (for example 127.0.0.1:2379)")
    );
}
