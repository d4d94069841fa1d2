//! Every configuration under `examples/` is loaded the way keeld loads it
//! (keel-config, then keel-select against the real plugins), so an example
//! cannot rot: a key Keel stops understanding is a warning here and fails the
//! test. The TLS example is also run for real: its script makes a CA, keeld's
//! HTTPS setup accepts the certificates, and keelctl reads a DCS with its file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use keel_config::{Env, Settings};
use keel_runtime::PluginCatalog;
use keel_testkit::etcd::TempEtcd;
use keel_tests::{PluginDir, components as c};

use crate::runtime_for;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Every `*.yml` under `dir`, sorted.
fn yml_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(yml_files(&path));
        } else if path.extension().is_some_and(|e| e == "yml") {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn load(path: &Path) -> Settings {
    let settings =
        Settings::load(path, &Env::empty()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert!(
        settings.warnings.is_empty(),
        "{}: {:?}",
        path.display(),
        settings.warnings
    );
    settings
}

#[tokio::test]
async fn every_example_config_loads_and_selects_its_plugins() {
    let dir = PluginDir::with(&[c::ETCD, c::CITUS]).unwrap();
    let catalog = PluginCatalog::load_dir(&runtime_for(&dir), dir.path())
        .await
        .unwrap();
    assert!(catalog.rejected().is_empty(), "{:?}", catalog.rejected());
    let files = yml_files(&examples());
    assert!(files.len() >= 10, "examples found: {files:?}");
    let mut scopes: BTreeMap<String, Vec<Settings>> = BTreeMap::new();
    for file in &files {
        let settings = load(file);
        let shown = file.display();
        assert!(
            settings.plugins.dir.is_some(),
            "{shown}: plugins.dir is not set"
        );
        let selected =
            keel_select::select(&settings, &catalog, 10).unwrap_or_else(|e| panic!("{shown}: {e}"));
        assert_eq!(selected.dcs.section, "etcd3", "{shown}");
        if let Some(mpp) = &selected.mpp {
            // The Citus plugin accepts the section and finds the member's group in it.
            let handler = mpp.plugin.mpp(mpp.grants.clone(), mpp.limits).unwrap();
            handler
                .validate_config(&mpp.config_json(&settings))
                .await
                .unwrap_or_else(|e| panic!("{shown}: {e}"));
            let group = settings.plugin_sections["citus"]["group"].as_u64();
            assert_eq!(
                Some(u64::from(handler.group().await.unwrap())),
                group,
                "{shown}"
            );
        }
        scopes
            .entry(format!(
                "{}/{}",
                file.parent().unwrap().display(),
                settings.scope
            ))
            .or_default()
            .push(settings);
    }
    // Members of one example cluster have distinct names and addresses.
    for (scope, members) in &scopes {
        let names: BTreeSet<_> = members.iter().map(|m| &m.name).collect();
        let apis: BTreeSet<_> = members
            .iter()
            .map(|m| m.restapi.connect_address.to_string())
            .collect();
        let pgs: BTreeSet<_> = members
            .iter()
            .map(|m| m.postgresql.connect_address.to_string())
            .collect();
        assert_eq!(names.len(), members.len(), "{scope}: {names:?}");
        assert_eq!(apis.len(), members.len(), "{scope}: {apis:?}");
        assert_eq!(pgs.len(), members.len(), "{scope}: {pgs:?}");
    }
}

#[test]
fn the_citus_example_is_a_coordinator_and_two_worker_groups_of_two() {
    let mut groups: BTreeMap<u64, usize> = BTreeMap::new();
    let files = yml_files(&examples().join("citus"));
    for file in &files {
        let settings = load(file);
        assert_eq!(settings.scope, "demo-citus", "{}", file.display());
        let citus = &settings.plugin_sections["citus"];
        assert_eq!(citus["database"], "citus", "{}", file.display());
        *groups.entry(citus["group"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(groups, BTreeMap::from([(0, 2), (1, 2), (2, 2)]));
}

#[test]
fn the_three_node_example_has_three_members_of_one_cluster() {
    let files = yml_files(&examples().join("three-node"));
    assert_eq!(files.len(), 3, "{files:?}");
    for file in &files {
        let settings = load(file);
        assert_eq!(settings.scope, "demo");
        let (timeouts, warnings) = settings
            .bootstrap
            .dcs_config
            .validated_timeouts(keel_config::TtlFloor::Patroni);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            (timeouts.ttl, timeouts.loop_wait, timeouts.retry_timeout),
            (30, 10, 10)
        );
        assert!(
            settings
                .effective_postgresql(&settings.bootstrap.dcs_config)
                .use_pg_rewind
        );
    }
}

#[test]
fn the_systemd_unit_keeps_postgresql_alive_across_a_daemon_restart() {
    let unit = std::fs::read_to_string(examples().join("systemd/keel.service")).unwrap();
    let directives: BTreeSet<&str> = unit
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .collect();
    for wanted in [
        "User=postgres",
        "KillMode=process",
        "Restart=on-failure",
        "ExecReload=/bin/kill -s HUP $MAINPID",
        "NoNewPrivileges=yes",
        "ProtectSystem=full",
        "LimitNOFILE=65536",
        "TimeoutStopSec=120",
    ] {
        assert!(directives.contains(wanted), "keel.service lacks {wanted}");
    }
    assert!(
        !directives.contains("MemoryDenyWriteExecute=yes"),
        "wasmtime needs executable memory for compiled plugins"
    );
    // When systemd is there, let it check the syntax (the binary path aside).
    let analyze = Path::new("/usr/bin/systemd-analyze");
    if analyze.exists() {
        let dir = tempfile::tempdir().unwrap();
        let keeld = crate::cluster::keeld_binary();
        let copy = dir.path().join("keel.service");
        std::fs::write(
            &copy,
            unit.replace("/usr/bin/keeld", &keeld.display().to_string()),
        )
        .unwrap();
        let output = Command::new(analyze)
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stderr);
        let complaints: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("keel.service"))
            .collect();
        assert!(complaints.is_empty(), "{text}");
    }
}

/// The TLS example's files with its certificate directory and DCS replaced.
fn localized(file: &str, tls: &Path, etcd: &str, plugins: &Path) -> String {
    let text = std::fs::read_to_string(examples().join("tls-basic-auth").join(file)).unwrap();
    text.replace("/etc/keel/tls/", &format!("{}/", tls.display()))
        .replace("10.0.0.11:2379,10.0.0.12:2379,10.0.0.13:2379", etcd)
        .replace("/usr/lib/keel/plugins", &plugins.display().to_string())
}

#[test]
fn the_tls_example_works_with_the_certificates_its_script_makes() {
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let tls = dir.path().join("tls");
    let script = examples().join("tls-basic-auth/make-test-ca.sh");
    let made = Command::new("bash")
        .arg(&script)
        .arg(&tls)
        .arg("pg1=127.0.0.1")
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // keeld's HTTPS setup and access rules accept the member's file.
    let member = localized("keel.yml", &tls, &etcd.endpoint(), dir.path());
    let settings = Settings::from_yaml_str(&member, &Env::empty()).unwrap();
    assert!(settings.warnings.is_empty(), "{:?}", settings.warnings);
    let server = keel_api::tls_server_config(&settings.restapi).unwrap();
    assert!(server.is_some(), "certfile set: HTTPS");
    keel_api::AccessPolicy::from_settings(&settings.restapi).unwrap();

    // keelctl reads the DCS through the etcd plugin with the ctl file, whose
    // CA and client certificate it loads before anything else.
    let ctl = dir
        .write(
            "keelctl.yaml",
            localized("keelctl.yaml", &tls, &etcd.endpoint(), dir.path()).as_bytes(),
        )
        .unwrap();
    let keelctl = crate::cluster::keeld_binary().with_file_name("keelctl");
    assert!(
        keelctl.exists(),
        "{} is missing: run `cargo build --workspace --bins`",
        keelctl.display()
    );
    let listed = Command::new(&keelctl)
        .arg("-c")
        .arg(&ctl)
        .args(["list", "-f", "json"])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(
        listed.status.success(),
        "{}{}",
        String::from_utf8_lossy(&listed.stdout),
        String::from_utf8_lossy(&listed.stderr)
    );
}
