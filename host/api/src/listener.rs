//! The REST API's socket: bound from `restapi.listen`, HTTP or HTTPS by `restapi.certfile`,
//! and reconfigured on reload as Patroni's `RestApiServer.reload_config` does — access rules
//! and headers swapped, certificates re-read (rotated files take effect for the next
//! connection), the socket rebound only when the address or the scheme changed.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use keel_config::RestApiSettings;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::server::{ApiOptions, ApiReloader};
use crate::tls::{TlsError, serve_tls, server_config};

/// Why the REST API could not be served (as configured).
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// `restapi.listen` could not be bound.
    #[error("restapi.listen: cannot listen on {host}:{port}: {source}")]
    Bind {
        /// The configured host (`0.0.0.0` for all interfaces).
        host: String,
        /// The configured port.
        port: u16,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The TLS settings or files are unusable.
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A bound, serving REST API.
pub struct ApiServer {
    router: Router,
    reloader: ApiReloader,
    bound: Bound,
}

struct Bound {
    /// The configured address, as bound.
    host: String,
    port: u16,
    local: SocketAddr,
    /// The HTTPS configuration the accept loop reads per connection.
    tls: Option<watch::Sender<Arc<rustls::ServerConfig>>>,
    task: JoinHandle<()>,
}

impl Drop for Bound {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The address to bind for `restapi.listen`: an empty host or `*` means every interface.
fn bind_host(restapi: &RestApiSettings) -> String {
    match restapi.listen.host.as_str() {
        "" | "*" => "0.0.0.0".to_owned(),
        host => host.to_owned(),
    }
}

async fn bind(
    router: Router,
    host: String,
    port: u16,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Result<Bound, ServeError> {
    let bind_error = |source| ServeError::Bind {
        host: host.clone(),
        port,
        source,
    };
    let listener = tokio::net::TcpListener::bind((host.as_str(), port))
        .await
        .map_err(bind_error)?;
    let local = listener.local_addr().map_err(bind_error)?;
    let (tls, task) = match tls {
        Some(config) => {
            let (sender, configs) = watch::channel(config);
            let task = tokio::spawn(async move {
                if let Err(e) = serve_tls(listener, router, configs).await {
                    tracing::error!("REST API stopped: {e}");
                }
            });
            (Some(sender), task)
        }
        None => {
            let task = tokio::spawn(async move {
                if let Err(e) = crate::server::serve(listener, router).await {
                    tracing::error!("REST API stopped: {e}");
                }
            });
            (None, task)
        }
    };
    Ok(Bound {
        host,
        port,
        local,
        tls,
        task,
    })
}

impl ApiServer {
    /// Binds `restapi.listen` and serves `router` on it (HTTPS when `restapi.certfile` is set).
    pub async fn start(
        router: Router,
        reloader: ApiReloader,
        restapi: &RestApiSettings,
    ) -> Result<Self, ServeError> {
        let tls = server_config(restapi)?;
        let bound = bind(router.clone(), bind_host(restapi), restapi.listen.port, tls).await?;
        Ok(Self {
            router,
            reloader,
            bound,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.bound.local
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.bound.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Applies a reloaded `restapi` section with its `options`. Everything that can fail is
    /// checked first: on an error the running server is left exactly as it was.
    pub async fn reload(
        &mut self,
        options: ApiOptions,
        restapi: &RestApiSettings,
    ) -> Result<(), ServeError> {
        let tls = server_config(restapi)?;
        let (host, port) = (bind_host(restapi), restapi.listen.port);
        let same_address = host == self.bound.host && port == self.bound.port;
        if same_address && tls.is_some() == self.bound.tls.is_some() {
            if let (Some(sender), Some(config)) = (&self.bound.tls, tls) {
                sender.send_replace(config);
            }
        } else if same_address {
            // HTTP ↔ HTTPS on the same port: the old socket must close first. Listening
            // sockets are SO_REUSEADDR, so binding again right after succeeds.
            let old = std::mem::replace(&mut self.bound.task, tokio::spawn(async {}));
            old.abort();
            let _ = old.await;
            match bind(self.router.clone(), host, port, tls).await {
                Ok(bound) => self.bound = bound,
                Err(e) => {
                    self.restore().await;
                    return Err(e);
                }
            }
            tracing::info!(
                scheme = self.scheme(),
                "REST API now serves {}",
                self.bound.local
            );
        } else {
            self.bound = bind(self.router.clone(), host, port, tls).await?;
            tracing::info!(
                scheme = self.scheme(),
                "REST API moved to {}",
                self.bound.local
            );
        }
        self.reloader.reload(options);
        Ok(())
    }

    /// Rebinds the address and scheme in force after a failed switch of scheme.
    async fn restore(&mut self) {
        let tls = self.bound.tls.as_ref().map(|s| Arc::clone(&s.borrow()));
        let (host, port) = (self.bound.host.clone(), self.bound.port);
        match bind(self.router.clone(), host, port, tls).await {
            Ok(bound) => self.bound = bound,
            Err(e) => tracing::error!("REST API could not be restored: {e}"),
        }
    }
}
