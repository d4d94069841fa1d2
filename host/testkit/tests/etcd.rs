//! TempEtcd starts, survives a kill + restart, and answers on its endpoint.

use keel_testkit::TempEtcd;
use std::io::{Read, Write};
use std::net::TcpStream;

fn get(endpoint: &str, path: &str) -> String {
    let mut s = TcpStream::connect(endpoint).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: {endpoint}\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    out
}

#[test]
fn etcd_starts_kills_and_restarts() {
    let Some(mut etcd) = TempEtcd::start() else {
        return;
    };
    let endpoint = etcd.endpoint();
    assert!(get(&endpoint, "/version").contains("etcdserver"));
    etcd.kill();
    assert!(!etcd.is_running());
    assert!(TcpStream::connect(&endpoint).is_err());
    etcd.restart();
    assert_eq!(etcd.endpoint(), endpoint);
    assert!(get(&endpoint, "/health").contains("true"));
    etcd.stop();
    assert!(!etcd.is_running());
}
