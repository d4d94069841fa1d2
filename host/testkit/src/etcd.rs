//! A throw-away single-member etcd on free loopback ports.
//!
//! [`TempEtcd::start`] runs `/usr/bin/etcd` (or `KEEL_ETCD_BIN`) with its data directory in a
//! temporary directory and waits, at most [`READY_TIMEOUT`], until `GET /health` answers
//! `"health":"true"`. [`TempEtcd::kill`] simulates an outage (SIGKILL), [`TempEtcd::restart`]
//! brings it back on the same ports and data. The process is killed when the value is dropped.
//! Health is probed with a minimal HTTP/1.0 request over a plain TCP socket so that this crate
//! stays free of gRPC and HTTP client dependencies.
//!
//! [`TempEtcd::start_tls`] serves clients over TLS only, with certificates from a fresh
//! [`TestPki`], and requires a client certificate signed by that CA (`--client-cert-auth`). Its
//! health is probed with `etcdctl endpoint health` and the test client certificate.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::free_port;
use crate::tls::TestPki;

/// The longest [`TempEtcd::start`] and [`TempEtcd::restart`] wait for `/health`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest [`TempEtcd::stop`] waits after SIGTERM before it kills.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A running (or deliberately stopped) etcd owned by a test.
#[derive(Debug)]
pub struct TempEtcd {
    bin: PathBuf,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    tls: Option<TestPki>,
    child: Option<Child>,
}

impl TempEtcd {
    /// Starts etcd and waits until it is healthy. Returns `None` only when the binary is missing
    /// and `KEEL_SKIP_E2E=1` (after a loud SKIP line).
    ///
    /// # Panics
    /// When the binary is missing (with the install command), or etcd does not become healthy
    /// within [`READY_TIMEOUT`] (with the tail of its log).
    pub fn start() -> Option<Self> {
        Self::start_with(None)
    }

    /// Starts etcd serving clients over TLS only, with a fresh [`TestPki`]: its server
    /// certificate, and client certificates required and checked against its CA (see
    /// [`TempEtcd::pki`]). Returns `None` only when etcd, etcdctl or openssl is missing and
    /// `KEEL_SKIP_E2E=1`.
    ///
    /// # Panics
    /// As [`TempEtcd::start`]; also when `etcdctl` or `openssl` is missing.
    pub fn start_tls() -> Option<Self> {
        if Command::new("etcdctl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            if crate::skip_e2e() {
                crate::print_skip("etcdctl binary not found");
                return None;
            }
            panic!(
                "etcdctl not found: install it with `apt-get install -y etcd-client`; set \
                 KEEL_SKIP_E2E=1 to skip end-to-end tests instead."
            );
        }
        Self::start_with(Some(TestPki::generate()?))
    }

    fn start_with(tls: Option<TestPki>) -> Option<Self> {
        let bin = std::env::var_os("KEEL_ETCD_BIN")
            .map_or_else(|| PathBuf::from("/usr/bin/etcd"), PathBuf::from);
        if !bin.is_file() {
            if crate::skip_e2e() {
                crate::print_skip("etcd binary not found");
                return None;
            }
            panic!(
                "etcd not found at {}: install it with `apt-get install -y etcd-server` or set \
                 KEEL_ETCD_BIN; set KEEL_SKIP_E2E=1 to skip end-to-end tests instead.",
                bin.display()
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("keel-etcd-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        let mut etcd = Self {
            bin,
            dir,
            client_port: free_port(),
            peer_port: free_port(),
            tls,
            child: None,
        };
        etcd.spawn();
        Some(etcd)
    }

    /// The client endpoint, `127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    /// The client URL, `http://127.0.0.1:PORT` (`https://` when started with
    /// [`TempEtcd::start_tls`]).
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.endpoint())
    }

    /// The CA and certificates when started with [`TempEtcd::start_tls`]: clients trust
    /// [`TestPki::ca`] and authenticate with [`TestPki::client_cert`] and [`TestPki::client_key`].
    pub fn pki(&self) -> Option<&TestPki> {
        self.tls.as_ref()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Stops etcd with SIGTERM, killing it after [`STOP_TIMEOUT`].
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills etcd with SIGKILL (an outage) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes (SIGSTOP) or thaws (SIGCONT) etcd: a store that hangs instead of refusing
    /// connections, the case where only deadlines help.
    pub fn freeze(&mut self, frozen: bool) {
        if let Some(child) = &self.child {
            let signal = if frozen { "-STOP" } else { "-CONT" };
            let _ = std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Stops etcd if it runs and starts it again on the same ports and data directory.
    ///
    /// # Panics
    /// As [`TempEtcd::start`] when it does not become healthy.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    fn spawn(&mut self) {
        let client = self.url();
        let peer = format!("http://127.0.0.1:{}", self.peer_port);
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .unwrap_or_else(|e| panic!("cannot open the etcd log: {e}"));
        let log2 = log
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot clone the etcd log handle: {e}"));
        let child = Command::new(&self.bin)
            .arg("--name=keel-test")
            .arg(format!(
                "--data-dir={}",
                self.dir.path().join("data").display()
            ))
            .arg(format!("--listen-client-urls={client}"))
            .arg(format!("--advertise-client-urls={client}"))
            .arg(format!("--listen-peer-urls={peer}"))
            .arg(format!("--initial-advertise-peer-urls={peer}"))
            .arg(format!("--initial-cluster=keel-test={peer}"))
            .args(self.tls.as_ref().map_or_else(Vec::new, |pki| {
                vec![
                    format!("--cert-file={}", pki.server_cert().display()),
                    format!("--key-file={}", pki.server_key().display()),
                    format!("--trusted-ca-file={}", pki.ca().display()),
                    "--client-cert-auth".to_owned(),
                ]
            }))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", self.bin.display()));
        self.child = Some(child);
        self.wait_healthy();
    }

    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.client_port));
        while Instant::now() < deadline {
            if !self.is_running() {
                panic!("etcd exited during start-up; log:\n{}", self.log_tail());
            }
            let healthy = match &self.tls {
                None => health(addr),
                Some(pki) => tls_health(&self.url(), pki),
            };
            if healthy {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
        panic!(
            "etcd not healthy within {READY_TIMEOUT:?}; log:\n{}",
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for TempEtcd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One bounded `GET /health` probe.
fn health(addr: SocketAddr) -> bool {
    let timeout = Duration::from_millis(500);
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.") && response.contains("\"health\":\"true\"")
}

/// One bounded `etcdctl endpoint health` over TLS with the test client certificate.
fn tls_health(url: &str, pki: &TestPki) -> bool {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={url}"))
        .arg(format!("--cacert={}", pki.ca().display()))
        .arg(format!("--cert={}", pki.client_cert().display()))
        .arg(format!("--key={}", pki.client_key().display()))
        .args([
            "--dial-timeout=500ms",
            "--command-timeout=1s",
            "endpoint",
            "health",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
