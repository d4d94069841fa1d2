//! Response shapes and request bodies, the way Patroni's handlers produce and
//! read them: JSON bodies as `application/json`, messages as `text/html`
//! (sic), and request bodies that must be JSON objects sized by `Content-Length`.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

/// A JSON body.
pub(crate) fn json(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A message, as Patroni's `write_response` sends it.
pub(crate) fn message(code: StatusCode, text: impl Into<String>) -> Response {
    (code, [(header::CONTENT_TYPE, "text/html")], text.into()).into_response()
}

/// A request turned away: its status and the message that says why.
#[derive(Debug)]
pub(crate) struct Refusal {
    pub(crate) code: StatusCode,
    pub(crate) text: String,
}

impl Refusal {
    fn new(code: StatusCode, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        message(self.code, self.text)
    }
}

/// Read a JSON object body. Without `Content-Length` a required body is 411;
/// anything but a JSON object (or an empty one where a body is required) is 400
/// with a message saying what was wrong. An optional absent body is `{}`.
pub(crate) fn object(
    headers: &HeaderMap,
    body: &Bytes,
    optional: bool,
) -> Result<Map<String, Value>, Refusal> {
    if !headers.contains_key(header::CONTENT_LENGTH) {
        return if optional {
            Ok(Map::new())
        } else {
            Err(Refusal::new(
                StatusCode::LENGTH_REQUIRED,
                "a JSON body with Content-Length is required",
            ))
        };
    }
    if body.is_empty() && optional {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) if !map.is_empty() || optional => Ok(map),
        Ok(Value::Object(_)) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "the body must be a non-empty JSON object",
        )),
        Ok(other) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body must be a JSON object, not {}", kind(&other)),
        )),
        Err(e) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A string field of a request; `Err` names a field of another type.
pub(crate) fn text_field(map: &Map<String, Value>, key: &str) -> Result<Option<String>, Refusal> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("`{key}` must be a string, not {}", kind(other)),
        )),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn with_length(n: usize) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        h
    }

    #[test]
    fn a_required_body_without_length_is_411() {
        let err = object(&HeaderMap::new(), &Bytes::new(), false).unwrap_err();
        assert_eq!(err.code, StatusCode::LENGTH_REQUIRED);
    }

    #[test]
    fn an_optional_absent_body_is_an_empty_object() {
        assert_eq!(
            object(&HeaderMap::new(), &Bytes::new(), true).ok(),
            Some(Map::new())
        );
        assert_eq!(
            object(&with_length(0), &Bytes::new(), true).ok(),
            Some(Map::new())
        );
    }

    #[test]
    fn anything_but_a_non_empty_object_is_400() {
        for body in ["[1]", "\"x\"", "{", "{}", "null"] {
            let bytes = Bytes::from(body);
            let err = object(&with_length(body.len()), &bytes, false).unwrap_err();
            assert_eq!(err.code, StatusCode::BAD_REQUEST, "{body}");
        }
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let map: Map<String, Value> = serde_json::from_str(r#"{"leader": 3}"#).unwrap();
        assert!(text_field(&map, "leader").is_err());
        let map: Map<String, Value> = serde_json::from_str(r#"{"leader": ""}"#).unwrap();
        assert_eq!(text_field(&map, "leader").ok(), Some(None));
    }
}
