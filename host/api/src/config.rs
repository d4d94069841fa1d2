//! `GET`, `PATCH` and `PUT /config`: the dynamic configuration in the DCS.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use crate::reply::{json, message, object};
use crate::server::Api;

pub(crate) async fn get(State(api): State<Api>) -> Response {
    match api.dcs.load().await {
        Ok(cluster) => match cluster.config.filter(|c| c.modify_version.is_some()) {
            Some(config) => json(StatusCode::OK, &Value::Object(config.data)),
            None => message(StatusCode::BAD_GATEWAY, "no configuration in the DCS"),
        },
        Err(e) => message(
            StatusCode::BAD_GATEWAY,
            format!("DCS is not reachable: {e}"),
        ),
    }
}

/// A JSON merge patch, compare-and-set on the version read.
pub(crate) async fn patch(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match object(&headers, &body, false) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
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
    let Some(config) = cluster.config.filter(|c| c.modify_version.is_some()) else {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "no configuration in the DCS to patch",
        );
    };
    let mut data = config.data;
    if apply_patch(&mut data, &request)
        && let Err(e) = api.dcs.set_config(&data, Some(&config.version)).await
    {
        let code = if e.is_conflict() {
            StatusCode::CONFLICT
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return message(code, format!("config not changed: {e}"));
    }
    api.node.wake();
    json(StatusCode::OK, &Value::Object(data))
}

/// Replace the configuration (no compare-and-set, as Patroni).
pub(crate) async fn put(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match object(&headers, &body, false) {
        Ok(r) => r,
        Err(refusal) => return refusal.into_response(),
    };
    let current = match api.dcs.load().await {
        Ok(c) => c.config.map(|c| c.data),
        Err(e) => {
            return message(
                StatusCode::BAD_GATEWAY,
                format!("DCS is not reachable: {e}"),
            );
        }
    };
    if !current.is_some_and(|c| loosely_equal_maps(&c, &request)) {
        if let Err(e) = api.dcs.set_config(&request, None).await {
            return message(StatusCode::BAD_GATEWAY, format!("config not written: {e}"));
        }
        api.node.wake();
    }
    json(StatusCode::OK, &Value::Object(request))
}

/// Patroni's `patch_config`: `null` removes a key, objects merge recursively,
/// other values replace when their text differs. Returns whether anything changed.
pub(crate) fn apply_patch(config: &mut Map<String, Value>, patch: &Map<String, Value>) -> bool {
    let mut changed = false;
    for (name, value) in patch {
        match (value, config.get_mut(name)) {
            (Value::Null, _) => {
                if config.remove(name).is_some_and(|old| !old.is_null()) {
                    changed = true;
                }
            }
            (Value::Object(inner), Some(Value::Object(existing))) => {
                changed |= apply_patch(existing, inner);
            }
            (_, Some(existing)) => {
                if value.is_object() || loose_text(existing) != loose_text(value) {
                    *existing = value.clone();
                    changed = true;
                }
            }
            (_, None) => {
                config.insert(name.clone(), value.clone());
                changed = true;
            }
        }
    }
    changed
}

/// Patroni compares values by their Python text: `true` equals `"True"`, `5` equals `"5"`.
fn loose_text(v: &Value) -> String {
    match v {
        Value::Bool(true) => "True".to_owned(),
        Value::Bool(false) => "False".to_owned(),
        Value::Null => "None".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Patroni's `deep_compare`: same keys, values equal by their text.
fn loosely_equal_maps(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.len() == b.len()
        && a.iter().all(|(k, va)| {
            b.get(k).is_some_and(|vb| match (va, vb) {
                (Value::Object(x), Value::Object(y)) => loosely_equal_maps(x, y),
                (Value::Object(_), _) | (_, Value::Object(_)) => false,
                _ => loose_text(va) == loose_text(vb),
            })
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn map(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn null_removes_objects_merge_and_scalars_replace() {
        let mut config = map(json!({"ttl": 30, "pause": true,
            "postgresql": {"parameters": {"max_connections": 100, "work_mem": "4MB"}}}));
        let changed = apply_patch(
            &mut config,
            &map(json!({"pause": null, "ttl": 20,
                "postgresql": {"parameters": {"work_mem": null, "shared_buffers": "1GB"}}})),
        );
        assert!(changed);
        assert_eq!(
            Value::Object(config),
            json!({"ttl": 20, "postgresql": {"parameters":
                {"max_connections": 100, "shared_buffers": "1GB"}}})
        );
    }

    #[test]
    fn the_same_value_as_text_is_no_change() {
        let mut config = map(json!({"ttl": 30, "pause": true, "x": {"y": 1}}));
        assert!(!apply_patch(
            &mut config,
            &map(json!({"ttl": "30", "pause": "True", "missing": null, "x": {"y": "1"}}))
        ));
    }

    #[test]
    fn an_object_over_a_scalar_replaces_it() {
        let mut config = map(json!({"standby_cluster": null}));
        assert!(apply_patch(
            &mut config,
            &map(json!({"standby_cluster": {"host": "h"}}))
        ));
        assert_eq!(config["standby_cluster"], json!({"host": "h"}));
    }

    #[test]
    fn deep_compare_follows_patroni() {
        assert!(loosely_equal_maps(
            &map(json!({"a": 2})),
            &map(json!({"a": "2"}))
        ));
        assert!(!loosely_equal_maps(
            &map(json!({"a": {}})),
            &map(json!({"a": null}))
        ));
        assert!(!loosely_equal_maps(&map(json!({"a": 1})), &map(json!({}))));
    }
}
