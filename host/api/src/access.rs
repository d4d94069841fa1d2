//! Who may use the endpoints that change things (patroni-compat.md §3.6):
//! an allowlist of client networks (optionally widened by the cluster's
//! members), a client certificate when TLS asks for one, and basic auth.
//! GET, HEAD and OPTIONS are never restricted, as in Patroni.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use ipnet::IpNet;
use keel_config::{RestApiSettings, VerifyClient};
use subtle::ConstantTimeEq;

use crate::reply::message;
use crate::server::Api;

/// The access rules of one REST API.
#[derive(Debug, Clone, Default)]
pub struct AccessPolicy {
    allowlist: Vec<IpNet>,
    include_members: bool,
    /// The expected `Authorization` header value.
    authorization: Option<String>,
    require_client_certificate: bool,
}

/// A request arrived over TLS with (`true`) or without a verified client certificate.
#[derive(Debug, Clone, Copy)]
pub struct ClientCertificate(pub bool);

/// An allowlist entry that is neither an address, a network nor a resolvable name.
#[derive(Debug, thiserror::Error)]
#[error(
    "restapi.allowlist: `{entry}` is not an address, a network or a resolvable host name: {reason}"
)]
pub struct AllowlistError {
    entry: String,
    reason: String,
}

impl AccessPolicy {
    /// No restrictions.
    pub fn open() -> Self {
        Self::default()
    }

    /// The rules from the `restapi` section; host names in the allowlist are
    /// resolved now (and again on reload).
    pub fn from_settings(restapi: &RestApiSettings) -> Result<Self, AllowlistError> {
        let mut allowlist = Vec::new();
        for entry in &restapi.allowlist {
            allowlist.extend(resolve_entry(entry)?);
        }
        Ok(Self {
            allowlist,
            include_members: restapi.allowlist_include_members,
            authorization: restapi
                .authentication
                .as_ref()
                .map(|c| basic_header(&c.username, &c.password)),
            require_client_certificate: restapi.certfile.is_some()
                && matches!(
                    restapi.verify_client,
                    Some(VerifyClient::Optional | VerifyClient::Required)
                ),
        })
    }

    /// Basic auth with these credentials.
    pub fn with_credentials(mut self, username: &str, password: &str) -> Self {
        self.authorization = Some(basic_header(username, password));
        self
    }

    /// Unsafe requests need a verified client certificate (HTTPS with
    /// `verify_client: optional` or `required`).
    pub fn requiring_client_certificate(mut self) -> Self {
        self.require_client_certificate = true;
        self
    }

    /// Only these networks may change things.
    pub fn with_allowlist(mut self, nets: Vec<IpNet>, include_members: bool) -> Self {
        self.allowlist = nets;
        self.include_members = include_members;
        self
    }
}

/// `Basic base64(user:password)`.
pub fn basic_header(username: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

fn resolve_entry(entry: &str) -> Result<Vec<IpNet>, AllowlistError> {
    if let Ok(net) = entry.parse::<IpNet>() {
        return Ok(vec![net]);
    }
    if let Ok(ip) = entry.parse::<IpAddr>() {
        return Ok(vec![IpNet::from(ip)]);
    }
    (entry, 0)
        .to_socket_addrs()
        .map(|addrs| addrs.map(|a| IpNet::from(a.ip())).collect())
        .map_err(|e| AllowlistError {
            entry: entry.to_owned(),
            reason: e.to_string(),
        })
}

/// Guard for the mutating endpoints: allowlist (with members), client certificate, basic auth.
pub(crate) async fn guard(State(api): State<Api>, request: Request, next: Next) -> Response {
    if is_safe(request.method()) {
        return next.run(request).await;
    }
    match check(&api, Caller::of(&request), true).await {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

/// Guard for `POST /failsafe`: the allowlist only, without the members (Patroni 4).
pub(crate) async fn guard_failsafe(
    State(api): State<Api>,
    request: Request,
    next: Next,
) -> Response {
    if is_safe(request.method()) {
        return next.run(request).await;
    }
    match check(&api, Caller::of(&request), false).await {
        Some(refusal) => refusal,
        None => next.run(request).await,
    }
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// What the checks need from a request (taken out before any await: a
/// request body is not `Sync`).
struct Caller {
    client: Option<IpAddr>,
    certificate: bool,
    authorization: Option<HeaderValue>,
    path: String,
}

impl Caller {
    fn of(request: &Request) -> Self {
        Self {
            client: request
                .extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| canonical(c.0.ip())),
            certificate: request
                .extensions()
                .get::<ClientCertificate>()
                .is_some_and(|c| c.0),
            authorization: request.headers().get(header::AUTHORIZATION).cloned(),
            path: request.uri().path().to_owned(),
        }
    }
}

async fn check(api: &Api, caller: Caller, with_members: bool) -> Option<Response> {
    let policy = api.policy();
    let policy = &policy.access;
    let members = with_members && policy.include_members;
    if !policy.allowlist.is_empty() || members {
        let client = caller.client;
        let allowed = match client {
            None => false,
            Some(ip) => {
                policy.allowlist.iter().any(|n| n.contains(&ip))
                    || (members && member_addresses(api).await.contains(&ip))
            }
        };
        if !allowed {
            tracing::warn!(client = ?client, path = %caller.path, "REST API: access denied by the allowlist");
            return Some(message(StatusCode::FORBIDDEN, "Access is denied"));
        }
    }
    if !with_members {
        return None;
    }
    if policy.require_client_certificate && !caller.certificate {
        return Some(message(
            StatusCode::FORBIDDEN,
            "client certificate required",
        ));
    }
    if let Some(expected) = &policy.authorization {
        let refuse = |text: &'static str| {
            let mut r = message(StatusCode::UNAUTHORIZED, text).into_response();
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Patroni\""),
            );
            r
        };
        let Some(given) = caller.authorization else {
            return Some(refuse("no auth header received"));
        };
        if !bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
            return Some(refuse("not authenticated"));
        }
    }
    None
}

/// IPv4 clients of a dual-stack socket arrive as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses of the hosts in the members' `api_url`s.
async fn member_addresses(api: &Api) -> Vec<IpAddr> {
    let Some(cluster) = api.node.cached_cluster() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for member in &cluster.members {
        let Some(url) = member
            .data
            .api_url
            .as_deref()
            .and_then(|u| url::Url::parse(u).ok())
        else {
            continue;
        };
        let Some(host) = url
            .host_str()
            .map(|h| h.trim_matches(['[', ']']).to_owned())
        else {
            continue;
        };
        if let Ok(ip) = host.parse::<IpAddr>() {
            out.push(ip);
            continue;
        }
        let lookup = tokio::net::lookup_host((host.as_str(), 0));
        if let Ok(Ok(addrs)) = tokio::time::timeout(Duration::from_secs(2), lookup).await {
            out.extend(addrs.map(|a| canonical(a.ip())));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_entries_are_addresses_networks_or_names() {
        assert_eq!(resolve_entry("10.0.0.0/8").unwrap().len(), 1);
        assert_eq!(resolve_entry("127.0.0.1").unwrap()[0].prefix_len(), 32);
        assert!(!resolve_entry("localhost").unwrap().is_empty());
        let e = resolve_entry("no such host.invalid").unwrap_err();
        assert!(e.to_string().contains("restapi.allowlist"), "{e}");
    }

    #[test]
    fn basic_auth_header_is_patronis() {
        assert_eq!(basic_header("u", "p"), "Basic dTpw");
    }

    #[test]
    fn a_mapped_v4_client_matches_a_v4_network() {
        let ip: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(canonical(ip), "127.0.0.1".parse::<IpAddr>().unwrap());
    }
}
