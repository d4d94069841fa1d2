//! keeld's REST API across a SIGHUP: the new `restapi` section and tags take effect
//! without a restart (Patroni's `reload_config`), and an unusable one changes nothing.

use std::time::Duration;

use keel_testkit::tls::TestPki;

use crate::cluster::{Cluster, http_get, http_post};

const BOOT: Duration = Duration::from_secs(120);
const RELOAD: Duration = Duration::from_secs(30);

/// One HTTPS request from a client that trusts `pki`'s CA only: status and body. A fresh
/// client per call, so no pooled connection outlives a certificate change.
fn https(
    pki: &TestPki,
    method: &str,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Option<(u16, String)> {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(pki.ca()).ok()?).ok()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .add_root_certificate(ca)
            .use_rustls_tls()
            .timeout(Duration::from_secs(5))
            .build()
            .ok()?;
        let mut request = client.request(method.parse().ok()?, url);
        if let Some((user, password)) = auth {
            request = request.basic_auth(user, Some(password));
        }
        let response = request.send().await.ok()?;
        let code = response.status().as_u16();
        Some((code, response.text().await.ok()?))
    })
}

fn patroni_https(pki: &TestPki, port: u16) -> Option<serde_json::Value> {
    let (_, body) = https(
        pki,
        "GET",
        &format!("https://localhost:{port}/patroni"),
        None,
    )?;
    serde_json::from_str(&body).ok()
}

#[test]
fn sighup_moves_the_rest_api_to_https_with_auth_and_new_tags_in_place() {
    keel_testkit::unprivileged_test!();
    let Some(pki) = TestPki::generate() else {
        return;
    };
    let Some(c) = Cluster::start(1, "") else {
        return;
    };
    c.wait_healthy(0, BOOT);
    let port = c.members[0].api_port;
    assert_eq!(http_post(port, "/reload", "").map(|r| r.0), Some(202));

    let config = &c.members[0].config;
    let original = std::fs::read_to_string(config).unwrap();
    let plain = format!("restapi: {{listen: 127.0.0.1:{port}, connect_address: 127.0.0.1:{port}}}");
    assert!(original.contains(&plain), "{original}");
    let secured = format!(
        "restapi: {{listen: 127.0.0.1:{port}, connect_address: 127.0.0.1:{port}, \
         certfile: {}, keyfile: {}, authentication: {{username: admin, password: s3cret}}}}\n\
         tags: {{rack: r1}}",
        pki.server_cert().display(),
        pki.server_key().display()
    );
    std::fs::write(config, original.replace(&plain, &secured)).unwrap();
    c.signal(0, "HUP");
    let status = c.wait_for("the API to answer over HTTPS", RELOAD, |_| {
        patroni_https(&pki, port)
    });
    assert_eq!(status["tags"]["rack"], "r1", "{status}");
    assert_eq!(status["role"], "primary", "{status}");
    assert!(http_get(port, "/patroni").is_none_or(|(code, _)| code == 400));
    let reload = format!("https://localhost:{port}/reload");
    let code = |auth| https(&pki, "POST", &reload, auth).map(|(code, _)| code);
    assert_eq!(code(None), Some(401));
    assert_eq!(code(Some(("admin", "s3cret"))), Some(202));

    // An unusable `restapi` section (a missing key file) is refused: HTTPS and the
    // credentials stay as they are, while the rest of the file applies.
    let broken = std::fs::read_to_string(config)
        .unwrap()
        .replace(
            &pki.server_key().display().to_string(),
            "/nonexistent/key.pem",
        )
        .replace("rack: r1", "rack: r2");
    std::fs::write(config, broken).unwrap();
    c.signal(0, "HUP");
    c.wait_for("the reload to be refused", RELOAD, |c| {
        c.daemon_lines()
            .contains("REST API settings not reloaded")
            .then_some(())
    });
    let status = patroni_https(&pki, port).expect("still HTTPS");
    assert_eq!(code(None), Some(401));
    assert_eq!(status["tags"]["rack"], "r2", "{status}");
}
