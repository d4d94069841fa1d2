//! TLS of the etcd grant, from Patroni's `protocol`, `cacert`, `cert` and `key`.
//!
//! The PEM files are read and checked once, when the grant is built (that is, at
//! start-up), so a wrong path or a file of the wrong kind is a config error that
//! names the key and the path, and never an `unavailable` on every DCS call later.
//! Server certificates are always verified: against `cacert` when given, else
//! against the system's CA store. There is deliberately no way to turn that off.

use std::time::Duration;

use etcd_client as ec;

use crate::capabilities::section_text;

/// What a PEM file given for a key must hold.
#[derive(Clone, Copy)]
enum Pem {
    Certificates,
    PrivateKey,
}

/// The TLS options a section asks for, `Ok(None)` when it asks for none: no
/// `cacert`, `cert` or `key`, and `protocol` is not https. `handshake_timeout`
/// bounds each TLS handshake. Errors name the key (and the file).
pub(super) fn from_section(
    section_name: &str,
    section: &serde_json::Value,
    handshake_timeout: Duration,
) -> Result<Option<ec::TlsOptions>, String> {
    let key = |k: &str| format!("{section_name}.{k}");
    let text = |k: &str| section_text(section_name, section, k);
    if text("key_password")?.is_some() {
        return Err(format!(
            "{}: encrypted client keys are not supported; give {} an unencrypted PEM key \
             (for example `openssl pkey -in encrypted.pem -out plain.pem`, readable only by Keel's user)",
            key("key_password"),
            key("key")
        ));
    }
    let protocol = text("protocol")?;
    let (cacert, cert, client_key) = (text("cacert")?, text("cert")?, text("key")?);
    let files = [("cacert", &cacert), ("cert", &cert), ("key", &client_key)];
    let named: Vec<String> = files
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(k, _)| key(k))
        .collect();
    match protocol.as_deref() {
        Some("https") => {}
        None if !named.is_empty() => {}
        None => return Ok(None),
        Some("http") if named.is_empty() => return Ok(None),
        Some("http") => {
            return Err(format!(
                "{}: is http, but TLS is configured ({}); set it to https or remove those",
                key("protocol"),
                named.join(", ")
            ));
        }
        Some(other) => {
            return Err(format!(
                "{}: expected http or https, got {other:?}",
                key("protocol")
            ));
        }
    }
    let mut options = ec::TlsOptions::new().timeout(handshake_timeout);
    options = match &cacert {
        Some(path) => options.ca_certificate(ec::Certificate::from_pem(read_pem(
            &key("cacert"),
            path,
            Pem::Certificates,
        )?)),
        None => options.with_native_roots(),
    };
    options = match (&cert, &client_key) {
        (Some(cert), Some(client_key)) => options.identity(ec::Identity::from_pem(
            read_pem(&key("cert"), cert, Pem::Certificates)?,
            read_pem(&key("key"), client_key, Pem::PrivateKey)?,
        )),
        (None, None) => options,
        (Some(_), None) | (None, Some(_)) => {
            return Err(format!(
                "{} and {}: a client certificate needs its private key; set both or neither",
                key("cert"),
                key("key")
            ));
        }
    };
    check(&options).map_err(|problem| {
        let trust = if cacert.is_some() {
            key("cacert")
        } else {
            format!(
                "the system CA store (set {} to use your own CA)",
                key("cacert")
            )
        };
        let mut what = vec![trust];
        if cert.is_some() {
            what.extend([key("cert"), key("key")]);
        }
        format!("{}: unusable TLS settings: {problem}", what.join(", "))
    })?;
    Ok(Some(options))
}

/// The TLS options for https endpoints of a section without TLS keys: verify
/// the server against the system's CA store.
pub(super) fn system_roots(
    section_name: &str,
    handshake_timeout: Duration,
) -> Result<ec::TlsOptions, String> {
    let options = ec::TlsOptions::new()
        .timeout(handshake_timeout)
        .with_native_roots();
    check(&options).map_err(|problem| {
        format!(
            "{section_name}: https endpoints need CA certificates: {problem}; set {section_name}.cacert"
        )
    })?;
    Ok(options)
}

/// Read `path`, given for `config_key`, and check it holds `kind` in PEM form.
fn read_pem(config_key: &str, path: &str, kind: Pem) -> Result<Vec<u8>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("{config_key}: cannot read {path:?}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let holds = |label: &str| text.contains(&format!("-----BEGIN {label}-----"));
    match kind {
        Pem::Certificates if !holds("CERTIFICATE") => Err(format!(
            "{config_key}: {path:?} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )),
        Pem::PrivateKey
            if holds("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") =>
        {
            Err(format!(
                "{config_key}: {path:?} is an encrypted key, which is not supported; \
                 decrypt it (for example `openssl pkey -in {path} -out plain.pem`)"
            ))
        }
        Pem::PrivateKey
            if !["PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY"]
                .iter()
                .any(|label| holds(label)) =>
        {
            Err(format!(
                "{config_key}: {path:?} holds no PEM private key (-----BEGIN PRIVATE KEY-----)"
            ))
        }
        _ => Ok(bytes),
    }
}

/// Build a TLS connector from `options` the way the etcd client will on
/// connecting, so that unparsable certificates or keys fail now. No I/O but
/// reading the system CA store.
fn check(options: &ec::TlsOptions) -> Result<(), String> {
    // etcd-client builds its channels with tonic's transport; the same
    // `Endpoint::tls_config` parses the certificates and the key.
    tonic::transport::Endpoint::from_static("https://localhost")
        .tls_config(options.clone())
        .map(|_| ())
        .map_err(|e| chain(&e))
}

/// An error and its sources, `: `-separated.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::EtcdGrant;

    /// A self-signed certificate and its key, usable as CA and client identity.
    fn testdata(name: &str) -> String {
        format!(
            "{}/src/capabilities/etcd/testdata/{name}",
            env!("CARGO_MANIFEST_DIR")
        )
    }

    fn tls(section: &serde_json::Value) -> Result<(Vec<String>, bool), String> {
        let grant =
            EtcdGrant::from_section("etcd3", section, Duration::from_secs(1))?.expect("endpoints");
        Ok((grant.endpoints.clone(), grant.uses_tls()))
    }

    #[test]
    fn tls_keys_make_every_endpoint_https() {
        let (ca, cert, key) = (
            testdata("test.crt"),
            testdata("test.crt"),
            testdata("test.key"),
        );
        assert_eq!(
            tls(&json!({"hosts": "a:1,b", "cacert": ca, "cert": cert, "key": key})).unwrap(),
            (vec!["https://a:1".into(), "https://b:2379".into()], true)
        );
        assert_eq!(
            tls(&json!({"host": "a:1", "protocol": "https", "cacert": ca})).unwrap(),
            (vec!["https://a:1".into()], true)
        );
        assert_eq!(
            tls(&json!({"url": "https://a:1/", "cacert": ca})).unwrap(),
            (vec!["https://a:1".into()], true)
        );
        assert_eq!(
            tls(&json!({"host": "a:1", "protocol": "http"})).unwrap(),
            (vec!["http://a:1".into()], false)
        );
    }

    #[test]
    fn tls_errors_name_the_key_and_the_file() {
        let (ca, cert, key) = (
            testdata("test.crt"),
            testdata("test.crt"),
            testdata("test.key"),
        );
        let missing = "/nonexistent/keel/ca.pem";
        let garbage = testdata("garbage.crt");
        for (section, needles) in [
            (
                json!({"host": "a", "cacert": missing}),
                vec!["etcd3.cacert", missing, "cannot read"],
            ),
            (
                json!({"host": "a", "cacert": ca, "cert": cert}),
                vec!["etcd3.cert", "etcd3.key"],
            ),
            (
                json!({"host": "a", "cacert": ca, "key": key}),
                vec!["etcd3.cert", "etcd3.key"],
            ),
            (
                json!({"host": "a", "cacert": key}),
                vec!["etcd3.cacert", "no PEM certificate"],
            ),
            (
                json!({"host": "a", "cacert": ca, "cert": cert, "key": cert}),
                vec!["etcd3.key", "no PEM private key"],
            ),
            (
                json!({"host": "a", "cacert": ca, "cert": cert,
                       "key": testdata("encrypted.key")}),
                vec!["etcd3.key", "encrypted"],
            ),
            (
                json!({"host": "a", "cert": cert, "key": key, "key_password": "x"}),
                vec!["etcd3.key_password", "not supported"],
            ),
            (
                json!({"host": "a", "protocol": "http", "cacert": ca}),
                vec!["etcd3.protocol", "etcd3.cacert"],
            ),
            (
                json!({"url": "http://a:1", "cacert": ca}),
                vec!["etcd3.url", "http://a:1"],
            ),
            (
                json!({"host": "a", "cacert": garbage}),
                vec!["etcd3.cacert", "unusable"],
            ),
            (
                json!({"host": "a", "cacert": ca, "cert": garbage, "key": key}),
                vec!["etcd3.cert", "etcd3.key", "unusable"],
            ),
        ] {
            let err = tls(&section).unwrap_err();
            for needle in needles {
                assert!(err.contains(needle), "{section}: {err}");
            }
        }
    }
}
