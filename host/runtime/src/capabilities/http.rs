//! Outgoing HTTP (`wasi:http/outgoing-handler`) for DCS plugins of HTTP stores
//! (Consul, the Kubernetes API, etcd's JSON gateway), restricted to the
//! endpoints named in the plugin's own config section.
//!
//! wasmtime-wasi-http does the protocol work; this module only decides whether
//! a request may leave: its scheme and authority (host and port) must match an
//! allowed endpoint exactly. Anything else is answered with
//! `HTTP-request-denied` before a socket is opened.

use std::future::Future;

use wasmtime_wasi_http::{
    Error, RequestOptions, WasiBody, WasiHttpCtxView, WasiHttpHooks, WasiHttpView,
};

use crate::state::HostState;

/// The endpoints a plugin may send HTTP requests to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HttpGrant {
    /// `(scheme, host, port)`, lower case.
    allowed: Vec<(String, String, u16)>,
}

impl HttpGrant {
    /// Allow exactly these base URLs (`http://host:port`, `https://host:port`).
    /// A URL that cannot be parsed is an error naming it.
    pub fn new(urls: &[String]) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for url in urls {
            let uri: http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
            let scheme = uri
                .scheme_str()
                .ok_or_else(|| format!("{url:?}: no scheme"))?
                .to_ascii_lowercase();
            let authority = uri.authority().ok_or_else(|| format!("{url:?}: no host"))?;
            let port = authority
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            allowed.push((scheme, authority.host().to_ascii_lowercase(), port));
        }
        Ok(Self { allowed })
    }

    /// The endpoints a Patroni-style DCS section names (see
    /// [`super::section_endpoints`]); `Ok(None)` when it names none.
    pub fn from_section(
        section_name: &str,
        section: &serde_json::Value,
        default_port: u16,
    ) -> Result<Option<Self>, String> {
        let endpoints = super::section_endpoints(section_name, section, default_port)?;
        if endpoints.is_empty() {
            return Ok(None);
        }
        Self::new(&endpoints)
            .map(Some)
            .map_err(|e| format!("{section_name}: {e}"))
    }

    /// The allowed endpoints, as URLs.
    pub fn endpoints(&self) -> Vec<String> {
        self.allowed
            .iter()
            .map(|(s, h, p)| format!("{s}://{h}:{p}"))
            .collect()
    }

    fn permits(&self, uri: &http::Uri) -> bool {
        let Some(authority) = uri.authority() else {
            return false;
        };
        let scheme = uri.scheme_str().unwrap_or("https").to_ascii_lowercase();
        let port = authority
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let host = authority.host().to_ascii_lowercase();
        self.allowed
            .iter()
            .any(|(s, h, p)| *s == scheme && *h == host && *p == port)
    }
}

type ResponseFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

/// The hooks wasmtime-wasi-http consults; one per store.
pub(crate) struct AllowlistHooks {
    pub(crate) plugin: std::sync::Arc<str>,
    pub(crate) grant: Option<std::sync::Arc<HttpGrant>>,
}

impl WasiHttpHooks for AllowlistHooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> ResponseFuture {
        let permitted = self
            .grant
            .as_ref()
            .is_some_and(|g| g.permits(request.uri()));
        if !permitted {
            tracing::warn!(
                target: "keel::plugin",
                plugin = &*self.plugin,
                uri = %request.uri(),
                "HTTP request denied: not an endpoint of the plugin's config section"
            );
            return Box::new(async { Err(Error::HttpRequestDenied) });
        }
        // `fut` signals the end of the outgoing body; the default sender has no use for it.
        drop(fut);
        Box::new(async move {
            use http_body_util::BodyExt;
            let (response, io) = wasmtime_wasi_http::default_send_request(request, options).await?;
            Ok((
                response.map(BodyExt::boxed_unsync),
                Box::new(io) as Box<dyn Future<Output = Result<(), Error>> + Send>,
            ))
        })
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.http_hooks,
            table: &mut self.table,
            ctx: &mut self.http_ctx,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_endpoints_are_permitted() {
        let grant =
            HttpGrant::new(&["http://127.0.0.1:8500".into(), "https://Kube.local".into()]).unwrap();
        let ok = |u: &str| grant.permits(&u.parse().unwrap());
        assert!(ok("http://127.0.0.1:8500/v1/kv/service?recurse"));
        assert!(ok("https://kube.local/api"));
        assert!(ok("https://kube.local:443/api"));
        assert!(!ok("http://127.0.0.1:8501/"));
        assert!(!ok("https://127.0.0.1:8500/"));
        assert!(!ok("http://127.0.0.2:8500/"));
        assert!(!ok("http://kube.local/"));
        assert!(HttpGrant::new(&["not a url".into()]).is_err());
    }
}
