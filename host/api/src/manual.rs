//! `POST /switchover`, `POST /failover` and `DELETE /switchover`
//! (patroni-compat.md §3.5.1): validate the request in Patroni's order, check
//! that some member can take over, write the `failover` key, wake the loop and
//! follow the DCS until the leader changes.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use keel_config::DynamicConfig;
use keel_ha::manual::{ManualKind, candidates, judge};
use keel_model::{Cluster, Failover};

use crate::reply::{message, object, text_field};
use crate::server::Api;

pub(crate) async fn switchover(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    request(api, ManualKind::Switchover, &headers, &body).await
}

pub(crate) async fn failover(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    request(api, ManualKind::Failover, &headers, &body).await
}

/// The dynamic configuration in `cluster` (defaults when absent or broken).
pub(crate) fn dynamic_config(cluster: &Cluster) -> DynamicConfig {
    cluster
        .config
        .as_ref()
        .map(|c| DynamicConfig::from_json_lenient(&c.raw).0)
        .unwrap_or_default()
}

async fn request(api: Api, mut kind: ManualKind, headers: &HeaderMap, body: &Bytes) -> Response {
    let fields = match object(headers, body, false) {
        Ok(map) => map,
        Err(refusal) => return refusal.into_response(),
    };
    let field = |k: &str| text_field(&fields, k);
    let (leader, candidate, scheduled_at) = match (
        field("leader"),
        field("candidate").and_then(|c| match c {
            Some(c) => Ok(Some(c)),
            None => field("member"),
        }),
        field("scheduled_at"),
    ) {
        (Ok(l), Ok(c), Ok(s)) => (l, c, s),
        (Err(r), _, _) | (_, Err(r), _) | (_, _, Err(r)) => return r.into_response(),
    };
    let cluster = match api.dcs.load().await {
        Ok(c) => c,
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("DCS is not reachable: {e}"),
            );
        }
    };
    let config = dynamic_config(&cluster);
    tracing::info!(
        "received {} request with leader={leader:?} candidate={candidate:?} scheduled_at={scheduled_at:?}",
        kind.as_str()
    );
    let bad = |text: &str| message(StatusCode::BAD_REQUEST, text);
    if kind == ManualKind::Failover && candidate.is_none() {
        return bad("Failover could be performed only to a specific candidate");
    }
    if kind == ManualKind::Switchover && leader.is_none() {
        return bad("Switchover could be performed only from a specific leader");
    }
    let mut at = None;
    if let Some(text) = &scheduled_at {
        if kind == ManualKind::Failover {
            return bad("Failover can't be scheduled");
        }
        if config.pause {
            return bad("Can't schedule switchover in the paused state");
        }
        match crate::schedule::parse(text, kind.as_str(), Utc::now()) {
            Ok(t) => at = Some(t),
            Err((code, text)) => return message(code, text),
        }
    }
    if config.pause && candidate.is_none() {
        return bad("Switchover is possible only to a specific candidate in a paused state");
    }
    if kind == ManualKind::Failover && leader.is_some() {
        tracing::warn!(
            "received failover request with leader specified - performing switchover instead"
        );
        kind = ManualKind::Switchover;
    }
    if leader.is_some() && leader == candidate {
        return bad("Switchover target and source are the same");
    }
    if at.is_none() {
        let ask = match candidates(
            kind,
            leader.as_deref(),
            candidate.as_deref(),
            &cluster,
            &config,
        ) {
            Ok(members) => members.into_iter().cloned().collect(),
            Err(why) => return message(StatusCode::PRECONDITION_FAILED, why),
        };
        let statuses = api.node.peer_statuses(ask).await;
        if let Err(why) = judge(kind, &statuses) {
            return message(StatusCode::PRECONDITION_FAILED, why);
        }
    }
    let request = Failover {
        version: None,
        leader: leader.clone(),
        candidate: candidate.clone(),
        scheduled_at: at,
    };
    if let Err(e) = api.dcs.set_failover(&request, None).await {
        tracing::error!("writing the failover key: {e}");
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "failed to write failover key into DCS",
        );
    }
    api.node.wake();
    if at.is_some() {
        return message(StatusCode::ACCEPTED, "Switchover scheduled");
    }
    let old_leader = cluster.leader_name().map(str::to_owned);
    let (code, text) = follow(
        &api,
        kind,
        old_leader.as_deref(),
        candidate.as_deref(),
        config.loop_wait,
    )
    .await;
    message(code, text)
}

/// Poll the DCS once a second for `2 × max(10, loop_wait)` seconds.
async fn follow(
    api: &Api,
    kind: ManualKind,
    old_leader: Option<&str>,
    candidate: Option<&str>,
    loop_wait: u32,
) -> (StatusCode, String) {
    let (done, title) = match kind {
        ManualKind::Switchover => ("switched", "Switchover"),
        ManualKind::Failover => ("failed", "Failover"),
    };
    let rounds = 2 * loop_wait.max(10);
    for _ in 0..rounds {
        tokio::time::sleep(POLL_INTERVAL).await;
        let Ok(cluster) = api.dcs.load().await else {
            continue;
        };
        if let Some(new) = cluster.leader_name().filter(|n| Some(*n) != old_leader) {
            return match candidate {
                Some(c) if c != new => (
                    StatusCode::OK,
                    format!(
                        "{}ed over to \"{new}\" instead of \"{c}\"",
                        &title[..title.len() - 4]
                    ),
                ),
                _ => (
                    StatusCode::OK,
                    format!("Successfully {done} over to \"{new}\""),
                ),
            };
        }
        if !cluster.failover.as_ref().is_some_and(Failover::is_set) {
            return (StatusCode::SERVICE_UNAVAILABLE, format!("{title} failed"));
        }
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{title} status unknown"),
    )
}

/// `DELETE /switchover`: cancel a scheduled switchover.
pub(crate) async fn cancel(State(api): State<Api>) -> Response {
    let cluster = match api.dcs.load().await {
        Ok(c) => c,
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("DCS is not reachable: {e}"),
            );
        }
    };
    match cluster.failover.filter(|f| f.scheduled_at.is_some()) {
        Some(f) => match api.dcs.clear_failover(f.version.as_deref()).await {
            Ok(_) => message(StatusCode::OK, "scheduled switchover deleted"),
            Err(e) => message(
                StatusCode::CONFLICT,
                format!("could not delete the scheduled switchover: {e}"),
            ),
        },
        None => message(StatusCode::NOT_FOUND, "no switchover is scheduled"),
    }
}

/// How often a waiting switchover or failover re-reads the cluster.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);
