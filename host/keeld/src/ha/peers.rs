//! Talking to the other members' REST APIs: their status during a race, and
//! the failsafe round when the DCS is down (patroni-compat.md §3.8).

use std::time::Duration;

use futures::future::join_all;
use keel_ha::{FailsafeAnswer, PeerRequest, PeerStatus};
use serde_json::Value;

/// Patroni's bound on one peer request.
const PEER_TIMEOUT: Duration = Duration::from_secs(2);

fn as_u64(v: Option<&Value>) -> u64 {
    v.and_then(Value::as_u64).unwrap_or(0)
}

/// Read a peer's `/patroni` object the way Patroni reads it: without an `xlog`
/// object the peer counts as not reachable.
pub(crate) fn parse_status(name: &str, body: &Value) -> PeerStatus {
    let Some(xlog) = body.get("xlog").or_else(|| body.get("wal")) else {
        return PeerStatus::unreachable(name);
    };
    let role = body.get("role").and_then(Value::as_str).unwrap_or("");
    let location = as_u64(xlog.get("location"));
    let primary = location > 0 || role == "master" || role == "primary";
    let tags = body.get("tags");
    let tag_bool = |k: &str| {
        tags.and_then(|t| t.get(k))
            .is_some_and(|v| v.as_bool() == Some(true) || v.as_str() == Some("true"))
    };
    let priority = tags
        .and_then(|t| t.get("failover_priority"))
        .and_then(Value::as_i64);
    PeerStatus {
        name: name.to_owned(),
        reachable: true,
        running: body.get("state").and_then(Value::as_str) == Some("running"),
        in_recovery: !primary,
        wal_position: if primary {
            location
        } else {
            as_u64(xlog.get("received_location")).max(as_u64(xlog.get("replayed_location")))
        },
        timeline: body
            .get("timeline")
            .and_then(Value::as_u64)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(0),
        nofailover: tag_bool("nofailover") || priority.is_some_and(|p| p <= 0),
        failover_priority: if tag_bool("nofailover") {
            0
        } else {
            priority.unwrap_or(1)
        },
        watchdog_failed: body.get("watchdog_failed").and_then(Value::as_bool) == Some(true),
    }
}

/// `GET <api_url>` on every peer at once, each bounded by [`PEER_TIMEOUT`].
pub(super) async fn fetch_statuses(
    http: &reqwest::Client,
    requests: &[PeerRequest],
) -> Vec<PeerStatus> {
    join_all(requests.iter().map(|r| async move {
        let answer = async {
            let resp = http.get(&r.api_url).timeout(PEER_TIMEOUT).send().await?;
            resp.json::<Value>().await
        }
        .await;
        match answer {
            Ok(body) => parse_status(&r.name, &body),
            Err(e) => {
                tracing::info!("member {} did not answer: {e}", r.name);
                PeerStatus::unreachable(&r.name)
            }
        }
    }))
    .await
}

/// The base URL of a member's API (`api_url` minus its `/patroni` path).
fn base(api_url: &str) -> &str {
    api_url.strip_suffix("/patroni").unwrap_or(api_url)
}

/// `POST /failsafe` to every listed member; all must answer 200 `Accepted`.
pub(super) async fn failsafe_round(
    http: &reqwest::Client,
    requests: &[PeerRequest],
    body: &Value,
) -> FailsafeAnswer {
    let results = join_all(requests.iter().map(|r| async move {
        let url = format!("{}/failsafe", base(&r.api_url));
        for _attempt in 0..2 {
            let sent = http
                .post(&url)
                .json(body)
                .timeout(PEER_TIMEOUT)
                .send()
                .await;
            if let Ok(resp) = sent {
                let ok = resp.status().as_u16() == 200;
                let text = resp.text().await.unwrap_or_default();
                return ok && text == "Accepted";
            }
        }
        false
    }))
    .await;
    if results.iter().all(|ok| *ok) {
        FailsafeAnswer::AllAccepted
    } else {
        FailsafeAnswer::NotAll
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn statuses_are_read_as_patroni_reads_them() {
        let replica = parse_status(
            "b",
            &json!({"state":"running","role":"replica","timeline":3,
                    "xlog":{"received_location":100,"replayed_location":90},
                    "tags":{"failover_priority":2}}),
        );
        assert!(replica.reachable && replica.running && replica.in_recovery);
        assert_eq!(
            (
                replica.wal_position,
                replica.timeline,
                replica.failover_priority
            ),
            (100, 3, 2)
        );
        let primary = parse_status(
            "a",
            &json!({"state":"running","role":"primary","xlog":{"location":5}}),
        );
        assert!(!primary.in_recovery);
        let no_xlog = parse_status("c", &json!({"state":"stopped","role":"replica"}));
        assert!(!no_xlog.reachable);
        let nofailover = parse_status(
            "d",
            &json!({"state":"running","xlog":{},"tags":{"nofailover":true}}),
        );
        assert!(nofailover.nofailover && nofailover.failover_priority == 0);
    }
}
