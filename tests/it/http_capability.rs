//! `wasi:http` for DCS plugins: requests reach the endpoints of the plugin's
//! section and nothing else; a denied request never opens a connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use keel_dcs::{DcsBackend, DcsError, LoadScope, Settings};
use keel_runtime::capabilities::HttpGrant;
use keel_runtime::{Grants, LoadedPlugin, PluginLimits};
use keel_tests::{PluginDir, components as c};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::runtime_for;

/// A one-route HTTP/1.1 server on loopback that counts its connections.
async fn serve(body: &'static str) -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
            });
        }
    });
    (port, connections)
}

async fn probe(grant: Option<HttpGrant>, url: &str) -> Result<String, DcsError> {
    let dir = PluginDir::with(&[c::FIXTURE_DCS]).unwrap();
    let loaded = LoadedPlugin::load(&runtime_for(&dir), &dir.path().join("fixture_dcs.wasm"))
        .await
        .unwrap();
    let grants = Grants {
        http: grant.map(Arc::new),
        ..Grants::default()
    };
    let plugin = loaded.dcs(grants, PluginLimits::default()).unwrap();
    let config = format!(r#"{{"probe_url":"{url}"}}"#);
    plugin
        .configure(Settings {
            config,
            ..Settings::new("http", "m1")
        })
        .await
        .unwrap();
    let groups = plugin.load(LoadScope::OwnGroup).await?;
    Ok(groups[0].entries[0].value.clone())
}

#[tokio::test]
async fn a_dcs_plugin_reaches_its_own_endpoint_over_http() {
    let (port, connections) = serve("hello from the store").await;
    let grant = HttpGrant::new(&[format!("http://127.0.0.1:{port}")]).unwrap();
    let answer = probe(
        Some(grant),
        &format!("http://127.0.0.1:{port}/v1/kv/service?recurse"),
    )
    .await
    .unwrap();
    assert_eq!(answer, "200 hello from the store");
    assert_eq!(connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_request_elsewhere_is_denied_before_connecting() {
    let (port, connections) = serve("secret").await;
    let (other, _) = serve("other").await;
    let grant = HttpGrant::new(&[format!("http://127.0.0.1:{other}")]).unwrap();
    for grant in [Some(grant), None] {
        match probe(grant, &format!("http://127.0.0.1:{port}/")).await {
            Err(DcsError::Unavailable { reason }) => {
                assert!(reason.contains("HttpRequestDenied"), "{reason}");
            }
            other => panic!("expected a denied request, got {other:?}"),
        }
    }
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the denied requests never connected"
    );
}
