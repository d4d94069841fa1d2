//! Routing: the daemon's [`Node`] and the DCS behind axum.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::middleware::{from_fn_with_state, map_response_with_state};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use keel_dcs::Dcs;
use serde_json::Value;

use crate::access::{AccessPolicy, guard, guard_failsafe};
use crate::health::health_code;
use crate::node::{FailsafeReply, FailsafeRequest, Node};
use crate::reply::{json, message};

/// Who this API speaks for and how it is protected.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// The cluster (`scope`).
    pub scope: String,
    /// This member's name.
    pub name: String,
    /// Access rules for the mutating endpoints.
    pub access: AccessPolicy,
    /// `http_extra_headers` (and `https_extra_headers` when serving HTTPS), added to every
    /// response.
    pub extra_headers: BTreeMap<String, String>,
    /// The `Server` header (from `restapi.server_tokens`); none when `None`.
    pub server: Option<String>,
}

impl ApiOptions {
    /// Options for `name` in `scope`, open to everyone.
    pub fn open(scope: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            scope: scope.into(),
            name: name.into(),
            access: AccessPolicy::open(),
            extra_headers: BTreeMap::new(),
            server: None,
        }
    }
}

/// What every handler holds.
#[derive(Clone)]
pub(crate) struct Api {
    pub(crate) node: Arc<dyn Node>,
    pub(crate) dcs: Dcs,
    policy: Arc<RwLock<Arc<Policy>>>,
    pub(crate) scope: Arc<str>,
    pub(crate) name: Arc<str>,
}

impl Api {
    /// The access rules and headers in force (a reload swaps them).
    pub(crate) fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What a reload may change in a running API: who may change things and the extra headers.
pub(crate) struct Policy {
    pub(crate) access: AccessPolicy,
    extra_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Policy {
    fn new(
        access: AccessPolicy,
        extra_headers: &BTreeMap<String, String>,
        server: Option<&str>,
    ) -> Self {
        // The Server header first: an explicit `Server` among the extra headers wins.
        let extra_headers = server
            .map(|v| ("server", v))
            .into_iter()
            .chain(extra_headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .filter_map(|(k, v)| {
                let parsed = (HeaderName::try_from(k), HeaderValue::try_from(v));
                match parsed {
                    (Ok(k), Ok(v)) => Some((k, v)),
                    _ => {
                        tracing::warn!(header = %k, "restapi.http_extra_headers: not a valid header, skipped");
                        None
                    }
                }
            })
            .collect();
        Self {
            access,
            extra_headers,
        }
    }
}

/// Swaps a running router's access rules and response headers (SIGHUP), for the requests
/// that arrive afterwards.
#[derive(Clone)]
pub struct ApiReloader {
    policy: Arc<RwLock<Arc<Policy>>>,
}

impl ApiReloader {
    /// Installs `options`' access rules, extra headers and `Server` header (its scope and
    /// name stay what the router was built with).
    pub fn reload(&self, options: ApiOptions) {
        let policy = Policy::new(
            options.access,
            &options.extra_headers,
            options.server.as_deref(),
        );
        *self.policy.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(policy);
    }
}

/// The router for `node`, reading and writing the cluster through `dcs`.
pub fn router(node: Arc<dyn Node>, dcs: Dcs, options: ApiOptions) -> Router {
    router_with_reloader(node, dcs, options).0
}

/// [`router`], with the handle that reloads its access rules and headers.
pub fn router_with_reloader(
    node: Arc<dyn Node>,
    dcs: Dcs,
    options: ApiOptions,
) -> (Router, ApiReloader) {
    let policy = Policy::new(
        options.access,
        &options.extra_headers,
        options.server.as_deref(),
    );
    let reloader = ApiReloader {
        policy: Arc::new(RwLock::new(Arc::new(policy))),
    };
    let api = Api {
        node,
        dcs,
        policy: Arc::clone(&reloader.policy),
        scope: options.scope.into(),
        name: options.name.into(),
    };
    let guarded = Router::new()
        .route(
            "/config",
            get(crate::config::get)
                .patch(crate::config::patch)
                .put(crate::config::put)
                .fallback(health),
        )
        .route(
            "/switchover",
            with_health(post(crate::manual::switchover).delete(crate::manual::cancel)),
        )
        .route("/failover", with_health(post(crate::manual::failover)))
        .route(
            "/restart",
            with_health(post(crate::restart::restart).delete(crate::restart::cancel)),
        )
        .route("/reload", with_health(post(crate::restart::reload)))
        .route(
            "/reinitialize",
            with_health(post(crate::restart::reinitialize)),
        )
        .route("/sigterm", with_health(post(sigterm)))
        .route_layer(from_fn_with_state(api.clone(), guard));
    let failsafe_routes = Router::new()
        .route(
            "/failsafe",
            get(crate::cluster::failsafe)
                .post(failsafe)
                .fallback(health),
        )
        .route_layer(from_fn_with_state(api.clone(), guard_failsafe));
    let router = Router::new()
        .route("/patroni", get(patroni).fallback(health))
        .route("/cluster", get(crate::cluster::cluster).fallback(health))
        .route("/history", get(crate::cluster::history).fallback(health))
        .route("/metrics", get(crate::metrics::metrics).fallback(health))
        .route(
            "/liveness",
            get(liveness)
                .head(liveness)
                .options(liveness)
                .fallback(health),
        )
        .route(
            "/readiness",
            get(readiness)
                .head(readiness)
                .options(readiness)
                .fallback(health),
        )
        .route("/citus", with_health(post(mpp)))
        .route("/mpp", with_health(post(mpp)))
        .merge(guarded)
        .merge(failsafe_routes)
        .fallback(health)
        .layer(map_response_with_state(api.clone(), extra_headers_layer))
        .with_state(api);
    (router, reloader)
}

/// GET/HEAD/OPTIONS on a path that only defines other methods run the health
/// check (Patroni's generic handlers); any other method is 501.
fn with_health(route: MethodRouter<Api>) -> MethodRouter<Api> {
    route.fallback(health)
}

async fn extra_headers_layer(State(api): State<Api>, mut response: Response) -> Response {
    for (k, v) in &api.policy().extra_headers {
        response.headers_mut().insert(k.clone(), v.clone());
    }
    response
}

/// Serve `router` on `listener` (plain HTTP) until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) -> std::io::Result<()> {
    let app = router.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}

async fn patroni(State(api): State<Api>) -> Response {
    json(StatusCode::OK, &Value::Object(api.node.status().await.body))
}

async fn liveness(State(api): State<Api>) -> StatusCode {
    if api.node.live() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn readiness(
    State(api): State<Api>,
    Query(query): Query<BTreeMap<String, String>>,
) -> StatusCode {
    let f = api.node.status().await.facts;
    StatusCode::from_u16(crate::health::readiness_code(&query, &f))
        .unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
}

async fn failsafe(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match crate::reply::object(&headers, &body, false) {
        Ok(map) => map,
        Err(refusal) => return refusal.into_response(),
    };
    let request: FailsafeRequest = match serde_json::from_value(Value::Object(fields)) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("POST /failsafe: bad body: {e}");
            return message(
                StatusCode::BAD_REQUEST,
                format!("bad failsafe request: {e}"),
            );
        }
    };
    match api.node.failsafe(request) {
        FailsafeReply::Accepted { lsn } => {
            let mut reply = message(StatusCode::OK, "Accepted");
            if let Some(lsn) = lsn {
                reply.headers_mut().insert("lsn", HeaderValue::from(lsn));
            }
            reply
        }
        FailsafeReply::RunningAsLeader => {
            message(StatusCode::INTERNAL_SERVER_ERROR, "Running as a leader")
        }
        FailsafeReply::Disabled => message(StatusCode::BAD_GATEWAY, "Failsafe mode is not enabled"),
    }
}

async fn mpp(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    if let Ok(event) = crate::reply::object(&headers, &body, false) {
        api.node.mpp_event(Value::Object(event)).await;
    }
    message(StatusCode::OK, "OK")
}

async fn sigterm() -> Response {
    // Patroni only acts on this under its Windows test harness.
    message(StatusCode::ACCEPTED, "shutdown scheduled")
}

async fn health(
    State(api): State<Api>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return message(StatusCode::NOT_IMPLEMENTED, "Unsupported method");
    }
    let report = api.node.status().await;
    let code = health_code(uri.path(), &query, &report.facts);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if method == Method::GET {
        json(code, &Value::Object(report.body))
    } else {
        code.into_response()
    }
}
