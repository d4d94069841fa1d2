//! Routing: the daemon's [`Node`] behind axum.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::health::{HealthFacts, health_code};

/// One status report: the `/patroni` object and the facts the health checks use.
#[derive(Debug, Clone, Default)]
pub struct StatusReport {
    /// The status object (patroni-compat.md §3.3).
    pub body: Map<String, Value>,
    /// What the health checks look at.
    pub facts: HealthFacts,
}

/// `POST /failsafe` from a primary that lost the DCS.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct FailsafeRequest {
    /// The primary's member name.
    pub name: String,
    /// Its `conn_url`.
    #[serde(default)]
    pub conn_url: Option<String>,
    /// Its `api_url`.
    #[serde(default)]
    pub api_url: Option<String>,
    /// Its slots' positions.
    #[serde(default)]
    pub slots: Option<BTreeMap<String, u64>>,
}

/// What this node says to a failsafe request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailsafeReply {
    /// Recorded: this replica keeps following the sender.
    Accepted,
    /// This node runs as a primary itself.
    RunningAsLeader,
    /// failsafe_mode is off.
    Disabled,
}

/// What the daemon offers the API.
pub trait Node: Send + Sync + 'static {
    /// A fresh status report (PostgreSQL queried now, bounded).
    fn status(&self) -> BoxFuture<'_, StatusReport>;
    /// Handle `POST /failsafe`.
    fn failsafe(&self, request: FailsafeRequest) -> FailsafeReply;
    /// `GET /liveness`: the HA loop ran recently enough.
    fn live(&self) -> bool;
}

type Shared = Arc<dyn Node>;

/// The router for `node`.
pub fn router(node: Shared) -> Router {
    Router::new()
        .route("/patroni", get(patroni))
        .route("/liveness", get(liveness).head(liveness).options(liveness))
        .route(
            "/readiness",
            get(readiness).head(readiness).options(readiness),
        )
        .route("/failsafe", post(failsafe))
        .fallback(health)
        .with_state(node)
}

/// Serve `node` on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, node: Shared) -> std::io::Result<()> {
    let app = router(node).into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, app).await
}

fn json(code: StatusCode, body: &Map<String, Value>) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        Value::Object(body.clone()).to_string(),
    )
        .into_response()
}

fn text(code: StatusCode, body: &'static str) -> Response {
    (code, [(header::CONTENT_TYPE, "text/html")], body).into_response()
}

async fn patroni(State(node): State<Shared>) -> Response {
    json(StatusCode::OK, &node.status().await.body)
}

async fn liveness(State(node): State<Shared>) -> StatusCode {
    if node.live() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn readiness(State(node): State<Shared>) -> StatusCode {
    let f = node.status().await.facts;
    if f.is_leader || (f.running && f.has_cluster_view) {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn failsafe(State(node): State<Shared>, body: Bytes) -> Response {
    let request: FailsafeRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("POST /failsafe: bad body: {e}");
            return (
                StatusCode::BAD_REQUEST,
                format!("bad failsafe request: {e}"),
            )
                .into_response();
        }
    };
    match node.failsafe(request) {
        FailsafeReply::Accepted => text(StatusCode::OK, "Accepted"),
        FailsafeReply::RunningAsLeader => {
            text(StatusCode::INTERNAL_SERVER_ERROR, "Running as a leader")
        }
        FailsafeReply::Disabled => text(StatusCode::BAD_GATEWAY, "Failsafe mode is not enabled"),
    }
}

async fn health(
    State(node): State<Shared>,
    method: Method,
    uri: Uri,
    Query(query): Query<BTreeMap<String, String>>,
) -> Response {
    if !matches!(method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return text(StatusCode::NOT_IMPLEMENTED, "Unsupported method");
    }
    let report = node.status().await;
    let code = health_code(uri.path(), &query, &report.facts);
    let code = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    if method == Method::GET {
        json(code, &report.body)
    } else {
        code.into_response()
    }
}
