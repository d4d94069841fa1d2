//! Keel's REST API, Patroni-compatible (patroni-compat.md §3).
//!
//! The daemon implements [`Node`]; this crate turns it into HTTP: `GET /patroni`
//! (the status object peers and `patronictl` read), the health checks load
//! balancers probe (`/`, `/primary`, `/replica`, `/read-only`, `/health`,
//! `/leader`, `/liveness`, `/readiness`, ... on GET, HEAD and OPTIONS), and the
//! member-to-member `POST /failsafe`. The status is computed per request, never
//! cached, because a racing peer compares its own fresh WAL position with ours.
#![deny(missing_docs)]

mod health;
mod server;

pub use health::{HealthFacts, health_code};
pub use server::{FailsafeReply, FailsafeRequest, Node, StatusReport, router, serve};
