//! `POST /restart`, `DELETE /restart`, `POST /reload` and `POST /reinitialize`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Map, Value};

use crate::node::{RestartOutcome, RestartRequest};
use crate::reply::{message, object};
use crate::server::Api;

pub(crate) async fn restart(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match object(&headers, &body, true) {
        Ok(map) => map,
        Err(refusal) => return refusal.into_response(),
    };
    let paused = match api.dcs.load().await {
        Ok(cluster) => crate::manual::dynamic_config(&cluster).pause,
        Err(e) => {
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("DCS is not reachable: {e}"),
            );
        }
    };
    if paused && fields.contains_key("schedule") {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Can't schedule restart in the paused state",
        );
    }
    let request = match parse_request(&fields) {
        Ok(r) => r,
        Err((code, text)) => return message(code, text),
    };
    if request.schedule.is_some() {
        return if api.node.schedule_restart(request) {
            message(StatusCode::ACCEPTED, "Restart scheduled")
        } else {
            message(StatusCode::CONFLICT, "Another restart is already scheduled")
        };
    }
    match api.node.restart(request).await {
        RestartOutcome::Restarted => message(StatusCode::OK, "restarted successfully"),
        RestartOutcome::ConditionsNotMet => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "restart conditions are not satisfied",
        ),
        RestartOutcome::Busy(action) => message(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{action} already in progress"),
        ),
        RestartOutcome::StillStarting => message(
            StatusCode::SERVICE_UNAVAILABLE,
            "postgres is still starting",
        ),
        RestartOutcome::Failed => message(StatusCode::SERVICE_UNAVAILABLE, "restart failed"),
    }
}

/// Validate the restart filters in the order given, as Patroni does.
pub(crate) fn parse_request(
    fields: &Map<String, Value>,
) -> Result<RestartRequest, (StatusCode, String)> {
    let bad = |text: String| (StatusCode::BAD_REQUEST, text);
    let mut out = RestartRequest::default();
    for (key, value) in fields {
        match key.as_str() {
            "schedule" => {
                let text = value
                    .as_str()
                    .ok_or_else(|| bad("`schedule` must be a timestamp string".to_owned()))?;
                out.schedule = Some(crate::schedule::parse(text, "restart", Utc::now())?);
            }
            "role" => match value.as_str() {
                Some(r @ ("primary" | "standby_leader" | "replica")) => {
                    out.role = Some(r.to_owned());
                }
                _ => {
                    return Err(bad(
                        "PostgreSQL role should be either primary, standby_leader, or replica"
                            .to_owned(),
                    ));
                }
            },
            "postgres_version" => {
                let text = value
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| value.to_string());
                if version_number(&text).is_none() {
                    return Err(bad(format!("{text} is not a valid PostgreSQL version")));
                }
                out.postgres_version = Some(text);
            }
            "timeout" => match seconds(value) {
                Some(t) if t > 0 => out.timeout = Some(t),
                _ => {
                    return Err(bad(
                        "Timeout should be a positive number of seconds".to_owned()
                    ));
                }
            },
            "restart_pending" => out.restart_pending = true,
            other => {
                return Err(bad(format!(
                    "Unknown filter for the scheduled restart: {other}"
                )));
            }
        }
    }
    Ok(out)
}

/// `X.Y` or `X.Y.Z` (pre-10 style) as PostgreSQL's integer version, e.g. `15.2` → 150002.
pub fn version_number(text: &str) -> Option<u32> {
    let parts: Vec<u32> = text
        .split('.')
        .map(|p| p.parse().ok())
        .collect::<Option<Vec<_>>>()?;
    match parts.as_slice() {
        [major, minor] if *major >= 10 => Some(major * 10_000 + minor),
        [major, minor, patch] if *major < 10 => Some(major * 10_000 + minor * 100 + patch),
        _ => None,
    }
}

/// A timeout in whole seconds, as Patroni's `parse_int(value, 's')` reads it
/// (`30`, `"30s"`, `"2min"`).
fn seconds(value: &Value) -> Option<u32> {
    keel_config::lenient::parse_duration(value)
        .ok()
        .and_then(|d| u32::try_from(d.as_secs()).ok())
}

pub(crate) async fn cancel(State(api): State<Api>) -> Response {
    if api.node.cancel_scheduled_restart() {
        message(StatusCode::OK, "scheduled restart deleted")
    } else {
        message(StatusCode::NOT_FOUND, "no restarts are scheduled")
    }
}

pub(crate) async fn reload(State(api): State<Api>) -> Response {
    api.node.reload();
    message(StatusCode::ACCEPTED, "reload scheduled")
}

pub(crate) async fn reinitialize(
    State(api): State<Api>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match object(&headers, &body, true) {
        Ok(map) => map,
        Err(refusal) => return refusal.into_response(),
    };
    let flag = |k: &str| {
        fields
            .get(k)
            .is_some_and(|v| keel_config::lenient::parse_bool(v).unwrap_or(false))
    };
    match api
        .node
        .reinitialize(flag("force"), flag("from_leader"))
        .await
    {
        Ok(()) => message(StatusCode::OK, "reinitialize started"),
        Err(why) => message(StatusCode::SERVICE_UNAVAILABLE, why),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<RestartRequest, (StatusCode, String)> {
        match v {
            Value::Object(m) => parse_request(&m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn filters_are_validated_with_patronis_messages() {
        let e = parse(json!({"role": "master"})).unwrap_err();
        assert_eq!(
            e.1,
            "PostgreSQL role should be either primary, standby_leader, or replica"
        );
        let e = parse(json!({"timeout": -1})).unwrap_err();
        assert_eq!(e.1, "Timeout should be a positive number of seconds");
        let e = parse(json!({"when": "now"})).unwrap_err();
        assert_eq!(e.1, "Unknown filter for the scheduled restart: when");
        let e = parse(json!({"postgres_version": "fifteen"})).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn a_valid_request_keeps_every_filter() {
        let r = parse(
            json!({"role": "replica", "postgres_version": "15.4", "timeout": "2min",
            "restart_pending": true, "schedule": "2999-01-01T00:00:00+00:00"}),
        )
        .unwrap();
        assert_eq!(r.role.as_deref(), Some("replica"));
        assert_eq!(r.timeout, Some(120));
        assert!(r.restart_pending && r.schedule.is_some());
        assert_eq!(
            Value::Object(r.to_json()),
            json!({"schedule": "2999-01-01T00:00:00+00:00", "role": "replica",
                "postgres_version": "15.4", "timeout": 120, "restart_pending": true})
        );
    }

    #[test]
    fn versions_read_like_postgres() {
        assert_eq!(version_number("15.2"), Some(150_002));
        assert_eq!(version_number("9.6.24"), Some(90_624));
        assert_eq!(version_number("15"), None);
    }
}
