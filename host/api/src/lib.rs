//! Keel's REST API, Patroni-compatible (patroni-compat.md §3 and the 4.x delta).
//!
//! The daemon implements [`Node`]; this crate turns it and the DCS into HTTP:
//! `GET /patroni` (the status object peers and `patronictl` read), the health
//! checks load balancers probe (`/`, `/primary`, `/replica`, `/read-only`, ... on
//! GET, HEAD and OPTIONS), the cluster views (`/cluster`, `/history`, `/config`,
//! `/metrics`), the operator's requests (`/switchover`, `/failover`, `/restart`,
//! `/reload`, `/reinitialize`, `PATCH /config`) and the member-to-member
//! endpoints (`/failsafe`, `/citus`). Status is computed per request, never
//! cached, because a racing peer compares its own fresh WAL position with ours.
//!
//! Requests that change something pass [`AccessPolicy`] first. A malformed body
//! is a 400 that says what was wrong; a handler never panics on input.
#![deny(missing_docs)]

mod access;
mod cluster;
mod config;
mod health;
mod listener;
mod manual;
mod metrics;
mod node;
mod reply;
mod restart;
mod schedule;
mod server;
mod tls;

pub use access::{AccessPolicy, AllowlistError, ClientCertificate, basic_header};
pub use cluster::as_json as cluster_json;
pub use health::{HealthFacts, health_code, readiness_code};
pub use listener::{ApiServer, ServeError};
pub use metrics::{escape as escape_label, render as render_metrics};
pub use node::{
    FailsafeReply, FailsafeRequest, Node, RestartOutcome, RestartRequest, StatusReport,
};
pub use restart::version_number;
pub use server::{ApiOptions, ApiReloader, router, router_with_reloader, serve};
pub use tls::{TlsError, serve_tls, server_config as tls_server_config};
