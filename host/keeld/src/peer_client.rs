//! The HTTP client for other members' REST APIs (status, failsafe, MPP events), shared by
//! the loop, the REST API and the MPP handler, and rebuilt on SIGHUP so that renewed
//! `ctl`/`restapi` certificates take effect without a restart.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use anyhow::Context;
use keel_config::Settings;

/// A cheap handle on the current client.
#[derive(Clone)]
pub(crate) struct PeerClient(Arc<RwLock<reqwest::Client>>);

impl PeerClient {
    pub(crate) fn new(settings: &Settings) -> anyhow::Result<Self> {
        Ok(Self(Arc::new(RwLock::new(build(settings)?))))
    }

    /// The client in force (a clone shares its connection pool).
    pub(crate) fn get(&self) -> reqwest::Client {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the client for `settings`; on an error the running one stays.
    pub(crate) fn reload(&self, settings: &Settings) -> anyhow::Result<()> {
        let client = build(settings)?;
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = client;
        Ok(())
    }
}

/// The client for other members' REST APIs (status, failsafe): trusts
/// `ctl.cacert` or `restapi.cafile`, presents `ctl.certfile`/`keyfile` (or the
/// REST API's own certificate), skips verification with `ctl.insecure`.
fn build(settings: &Settings) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .use_rustls_tls();
    let ctl = &settings.ctl;
    let rest = &settings.restapi;
    if let Some((key, ca)) = ctl
        .cacert
        .as_ref()
        .map(|p| ("ctl.cacert", p))
        .or(rest.cafile.as_ref().map(|p| ("restapi.cafile", p)))
    {
        let pem = std::fs::read(ca).with_context(|| format!("{key}: {}", ca.display()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{key}: {}: not a PEM certificate bundle", ca.display()))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    let identity = match (&ctl.certfile, &ctl.keyfile) {
        (Some(cert), key) => Some(("ctl.certfile", cert, key.as_ref().unwrap_or(cert))),
        (None, _) => rest.certfile.as_ref().map(|cert| {
            (
                "restapi.certfile",
                cert,
                rest.keyfile.as_ref().unwrap_or(cert),
            )
        }),
    };
    if let Some((key, cert, private)) = identity
        && (ctl.certfile.is_some() || rest.cafile.is_some())
    {
        let mut pem = std::fs::read(cert).with_context(|| format!("{key}: {}", cert.display()))?;
        pem.extend(
            std::fs::read(private).with_context(|| format!("{key}: {}", private.display()))?,
        );
        builder =
            builder.identity(reqwest::Identity::from_pem(&pem).with_context(|| {
                format!("{key}: {} is not a certificate and key", cert.display())
            })?);
    }
    if ctl.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().context("HTTP client for other members")
}
