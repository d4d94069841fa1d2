//! A configuration directory is merged file by file in alphabetical order.
#![allow(clippy::unwrap_used)] // helpers in test binaries may unwrap, like the tests

use keel_config::{Env, Settings};
use serde_json::json;

#[test]
fn yaml_files_merge_in_alphabetical_order() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "00-base.yml",
        "name: pg1\nscope: demo\nrestapi: {listen: ':8008', connect_address: 10.0.0.1:8008}\n\
         etcd3: {hosts: a:2379, protocol: http}\ntags: {zone: a, nofailover: true}\n\
         postgresql:\n  listen: '*:5432'\n  connect_address: 10.0.0.1:5432\n  data_dir: /data\n\
         \x20 parameters: {work_mem: 4MB, shared_buffers: 128MB}\n\
         \x20 authentication: {superuser: {username: postgres}, replication: {username: rep}}\n",
    );
    write(
        "10-site.yaml",
        "scope: prod\netcd3: {hosts: b:2379}\npostgresql: {parameters: {work_mem: 8MB}}\n",
    );
    write("20-node.yml", "name: pg2\ntags: {nofailover: null}\n");
    write("30-ignored.txt", "name: not-yaml-extension\n");
    std::fs::create_dir(dir.path().join("40-subdir.yml")).unwrap();
    let s = Settings::load(dir.path(), &Env::empty()).unwrap();
    assert_eq!((s.name.as_str(), s.scope.as_str()), ("pg2", "prod"));
    assert_eq!(
        s.restapi.listen.host, "",
        "an empty listen host means all interfaces"
    );
    assert_eq!(
        s.plugin_sections["etcd3"],
        json!({"hosts": "b:2379", "protocol": "http"})
    );
    assert_eq!(s.postgresql.parameters["work_mem"], "8MB");
    assert_eq!(s.postgresql.parameters["shared_buffers"], "128MB");
    assert!(!s.tags.nofailover(), "null deletes a key");
    assert_eq!(s.tags.custom()["zone"], json!("a"));
}

#[test]
fn a_bad_file_in_a_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.yml"), "name: pg1\n").unwrap();
    std::fs::write(dir.path().join("b.yml"), "- not a mapping\n").unwrap();
    let err = Settings::load(dir.path(), &Env::empty()).unwrap_err();
    assert!(err.to_string().contains("b.yml"), "{err}");
}
