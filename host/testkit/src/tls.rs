//! A throw-away certificate authority for TLS tests, made with the `openssl` command.
//!
//! [`TestPki::generate`] writes, into its own temporary directory, a CA, a server certificate for
//! `127.0.0.1` and `localhost`, and a client certificate (CN `keel-test-client`), all signed by
//! that CA, with unencrypted P-256 keys, valid for two days. Two `TestPki` values have different
//! CAs, so one's CA is the "wrong CA" for the other's server. The directory is removed on drop.
//! The `openssl` binary keeps this crate free of crypto dependencies.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// A CA with one server and one client certificate, as PEM files.
#[derive(Debug)]
pub struct TestPki {
    dir: TempDir,
}

impl TestPki {
    /// Generates a fresh CA, server and client certificate. Returns `None` only when `openssl` is
    /// missing and `KEEL_SKIP_E2E=1` (after a loud SKIP line).
    ///
    /// # Panics
    /// When `openssl` is missing (with the install command) or one of its steps fails (with its
    /// output).
    pub fn generate() -> Option<Self> {
        if Command::new("openssl")
            .arg("version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_err()
        {
            if crate::skip_e2e() {
                crate::print_skip("openssl binary not found");
                return None;
            }
            panic!(
                "openssl not found: install it with `apt-get install -y openssl`; set \
                 KEEL_SKIP_E2E=1 to skip end-to-end tests instead."
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("keel-pki-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        // A CA name of its own, so that a client trusting another TestPki's CA
        // sees an unknown issuer.
        let ca_subject = format!(
            "/CN=keel-test-ca {}",
            dir.path()
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        );
        let pki = Self { dir };
        pki.key("ca.key");
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            &ca_subject,
            "-days",
            "2",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-out",
            "ca.crt",
        ]);
        pki.leaf(
            "server",
            "/CN=localhost",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf(
            "client",
            "/CN=keel-test-client",
            "extendedKeyUsage=clientAuth\n",
        );
        Some(pki)
    }

    /// The CA certificate (`ca.crt`).
    pub fn ca(&self) -> PathBuf {
        self.path("ca.crt")
    }

    /// The server certificate (`server.crt`, SAN `127.0.0.1` and `localhost`).
    pub fn server_cert(&self) -> PathBuf {
        self.path("server.crt")
    }

    /// The server's private key (`server.key`).
    pub fn server_key(&self) -> PathBuf {
        self.path("server.key")
    }

    /// The client certificate (`client.crt`).
    pub fn client_cert(&self) -> PathBuf {
        self.path("client.crt")
    }

    /// The client's private key (`client.key`, unencrypted PKCS#8).
    pub fn client_key(&self) -> PathBuf {
        self.path("client.key")
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A P-256 key in `name`.
    fn key(&self, name: &str) {
        self.openssl(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            name,
        ]);
    }

    /// `{name}.key` and `{name}.crt`, signed by the CA, with `extensions` (openssl config lines).
    fn leaf(&self, name: &str, subject: &str, extensions: &str) {
        let (key, csr, crt, ext) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
            format!("{name}.ext"),
        );
        self.key(&key);
        let extensions = format!("basicConstraints=CA:FALSE\n{extensions}");
        std::fs::write(self.path(&ext), extensions)
            .unwrap_or_else(|e| panic!("cannot write {ext}: {e}"));
        self.openssl(&["req", "-new", "-key", &key, "-subj", subject, "-out", &csr]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run openssl: {e}"));
        assert!(
            output.status.success(),
            "openssl {}: {}\n{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_pem_files() {
        let Some(pki) = TestPki::generate() else {
            return;
        };
        for (path, label) in [
            (pki.ca(), "CERTIFICATE"),
            (pki.server_cert(), "CERTIFICATE"),
            (pki.client_cert(), "CERTIFICATE"),
            (pki.server_key(), "PRIVATE KEY"),
            (pki.client_key(), "PRIVATE KEY"),
        ] {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            assert!(
                text.contains(&format!("-----BEGIN {label}-----")),
                "{}: {text}",
                path.display()
            );
        }
        let verify = Command::new("openssl")
            .args(["verify", "-CAfile"])
            .arg(pki.ca())
            .arg(pki.server_cert())
            .arg(pki.client_cert())
            .output()
            .unwrap_or_else(|e| panic!("openssl verify: {e}"));
        assert!(
            verify.status.success(),
            "{}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }
}
