//! The `keeld` binary: plugin selection per config section, refusals that name
//! what is wrong, `plugin check`, and a member that starts, reports its grants,
//! and stops cleanly on SIGTERM.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use keel_testkit::etcd::TempEtcd;
use keel_tests::{PluginDir, components as c};

/// target/<profile>/keeld, next to the test binary's deps/ directory.
fn keeld() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("keeld");
    assert!(
        path.exists(),
        "{} is missing: run `cargo build -p keeld` (cargo test --workspace builds it)",
        path.display()
    );
    path
}

fn config(dir: &PluginDir, sections: &str) -> PathBuf {
    let yaml = format!(
        "scope: cli-test\nname: m1\nrestapi: {{listen: 127.0.0.1:8008, connect_address: 127.0.0.1:8008}}\n\
         postgresql: {{listen: 127.0.0.1:5432, connect_address: 127.0.0.1:5432, data_dir: /nonexistent,\n  \
         authentication: {{superuser: {{username: postgres}}, replication: {{username: rep}}}}}}\n\
         plugins: {{dir: {}}}\n{sections}\n",
        dir.path().display()
    );
    dir.write("keel.yml", yaml.as_bytes()).unwrap()
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(keeld())
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn a_section_naming_no_plugin_is_an_error_listing_the_plugins() {
    let dir = PluginDir::with(&[c::ETCD, c::FIXTURE_MPP]).unwrap();
    let file = config(
        &dir,
        "etcd3: {hosts: 127.0.0.1:2379}\nconsul: {host: 127.0.0.1:8500}",
    );
    let output = run(&[file.as_os_str()]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let message = text(&output);
    assert!(
        message.contains("config section `consul` selects a plugin"),
        "{message}"
    );
    assert!(
        message.contains("available: etcd (also etcd3), fixture-mpp"),
        "{message}"
    );
}

#[test]
fn validate_config_catches_what_start_would_refuse() {
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let validate = |sections: &str| {
        let file = config(&dir, sections);
        run(&["validate-config".as_ref(), file.as_os_str()])
    };
    let good = validate("etcd3: {hosts: 127.0.0.1:2379}");
    assert_eq!(good.status.code(), Some(0), "{}", text(&good));
    // A misspelt section selects no plugin.
    let misspelt = validate("etcd3: {hosts: 127.0.0.1:2379}\npostgressql: {}");
    assert_eq!(misspelt.status.code(), Some(1), "{}", text(&misspelt));
    assert!(
        text(&misspelt).contains("config section `postgressql` selects a plugin"),
        "{}",
        text(&misspelt)
    );
    // The REST API's certificate is read now, not at the next restart.
    let file = config(&dir, "etcd3: {hosts: 127.0.0.1:2379}");
    let tls = Command::new(keeld())
        .arg("validate-config")
        .arg(&file)
        .env("NO_COLOR", "1")
        .env("PATRONI_RESTAPI_CERTFILE", "/nonexistent/server.pem")
        .output()
        .unwrap();
    assert_eq!(tls.status.code(), Some(1), "{}", text(&tls));
    assert!(text(&tls).contains("restapi.certfile"), "{}", text(&tls));
}

#[test]
fn a_config_without_a_dcs_is_refused() {
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let file = config(&dir, "");
    let output = run(&[file.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("no DCS configured"),
        "{}",
        text(&output)
    );
}

#[test]
fn plugin_check_describes_a_component_and_its_grants() {
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let file = config(&dir, "etcd3: {hosts: '127.0.0.1:2379,127.0.0.2:2379'}");
    let wasm = dir.path().join("etcd.wasm");
    let output = run(&[
        "plugin".as_ref(),
        "check".as_ref(),
        wasm.as_os_str(),
        "-c".as_ref(),
        file.as_os_str(),
    ]);
    let message = text(&output);
    assert!(output.status.success(), "{message}");
    assert!(
        message.contains("world:        keel:dcs/dcs-plugin@0.1.0"),
        "{message}"
    );
    assert!(
        message.contains("granted:      log; etcd: http://127.0.0.1:2379,http://127.0.0.2:2379"),
        "{message}"
    );
    assert!(
        !message.contains("http: http://"),
        "the etcd plugin does not import wasi:http: {message}"
    );

    let incomplete = PluginDir::with(&[c::FIXTURE_INCOMPLETE]).unwrap();
    let wasm = incomplete.path().join("fixture_incomplete.wasm");
    let output = run(&["plugin".as_ref(), "check".as_ref(), wasm.as_os_str()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("exports neither keel:dcs/backend"),
        "{}",
        text(&output)
    );
}

#[test]
fn a_member_starts_reports_its_plugins_and_stops_on_sigterm() {
    let Some(etcd) = TempEtcd::start() else {
        return;
    };
    let dir = PluginDir::with(&[c::ETCD]).unwrap();
    let file = config(&dir, &format!("etcd3: {{hosts: {}}}", etcd.endpoint()));
    let log = dir.path().join("keeld.log");
    let mut child = Command::new(keeld())
        .arg(&file)
        .env("NO_COLOR", "1")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap()
        .contains("DCS plugin `etcd`")
    {
        assert!(
            Instant::now() < deadline,
            "keeld did not report its plugins: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        assert!(child.try_wait().unwrap().is_none(), "keeld exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains(&format!("granted: log; etcd: http://{}", etcd.endpoint()))
    );
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "keeld exit status after SIGTERM: {status}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "keeld ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
