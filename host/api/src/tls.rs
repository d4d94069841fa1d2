//! HTTPS for the REST API (`restapi.certfile`, `keyfile`, `cafile`,
//! `verify_client`): rustls on ring, one task per connection, and a
//! [`ClientCertificate`] mark on every request so the access check knows
//! whether the caller presented a verified certificate (`verify_client:
//! optional` asks for one without demanding it at the handshake).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use keel_config::{RestApiSettings, VerifyClient};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use crate::access::ClientCertificate;

/// Why HTTPS cannot be set up; names the `restapi` key and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM item.
    #[error("restapi.{key}: {path}: {reason}")]
    File {
        /// The configuration key.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A combination of settings Keel does not support.
    #[error("restapi.{key}: {reason}")]
    Setting {
        /// The configuration key.
        key: &'static str,
        /// What was wrong.
        reason: String,
    },
}

/// The server configuration for `restapi`, or `None` without `certfile`.
pub fn server_config(
    restapi: &RestApiSettings,
) -> Result<Option<Arc<rustls::ServerConfig>>, TlsError> {
    let Some(certfile) = &restapi.certfile else {
        return Ok(None);
    };
    if restapi.keyfile_password.is_some() {
        return Err(TlsError::Setting {
            key: "keyfile_password",
            reason: "encrypted private keys are not supported; decrypt the key file".into(),
        });
    }
    if restapi.ciphers.is_some() {
        tracing::warn!("restapi.ciphers is ignored: rustls offers only its safe default suites");
    }
    let certs = read_certs("certfile", certfile)?;
    let keyfile = restapi.keyfile.as_deref().unwrap_or(certfile);
    let key = PrivateKeyDer::from_pem_file(keyfile).map_err(|e| TlsError::File {
        key: "keyfile",
        path: keyfile.to_owned(),
        reason: format!("no private key: {e}"),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setting {
            key: "certfile",
            reason: e.to_string(),
        })?;
    let verify = restapi.verify_client.unwrap_or(VerifyClient::None);
    let builder = match (verify, &restapi.cafile) {
        (VerifyClient::None, _) => builder.with_no_client_auth(),
        (_, None) => {
            return Err(TlsError::Setting {
                key: "verify_client",
                reason: "client certificates need restapi.cafile (the CA that signs them)".into(),
            });
        }
        (mode, Some(cafile)) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs("cafile", cafile)? {
                roots.add(cert).map_err(|e| TlsError::File {
                    key: "cafile",
                    path: cafile.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == VerifyClient::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::Setting {
                key: "cafile",
                reason: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::File {
            key: "certfile",
            path: certfile.clone(),
            reason: format!("certificate and key do not form a usable pair: {e}"),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Arc::new(config)))
}

fn read_certs(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::File {
            key,
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::File {
            key,
            path: path.to_owned(),
            reason: "no certificate in the file".into(),
        });
    }
    Ok(certs)
}

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serve `router` over HTTPS on `listener` until the future is dropped. Each connection is
/// accepted with the configuration `config` holds at that moment, so sending a new one
/// (certificates re-read on SIGHUP) takes effect without dropping the listener.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    config: tokio::sync::watch::Receiver<Arc<rustls::ServerConfig>>,
) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let acceptor = TlsAcceptor::from(Arc::clone(&config.borrow()));
        let router = router.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {e}");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let verified = tls
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|c| !c.is_empty());
            let service =
                router.map_request(move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request
                        .extensions_mut()
                        .insert(ConnectInfo::<SocketAddr>(peer));
                    request.extensions_mut().insert(ClientCertificate(verified));
                    request
                });
            let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                tracing::debug!(%peer, "HTTPS connection ended: {e}");
            }
        });
    }
}
