//! JSON helpers shared by the value codecs.
//!
//! Two jobs: write JSON byte for byte as Patroni's `json.dumps(value,
//! separators=(',', ':'))` does, and read JSON the way Patroni tolerates it
//! (integers may arrive as decimal strings, a wrong type means "absent").
//!
//! Python's `json.dumps` escapes every character outside printable ASCII
//! (`ensure_ascii=True`) as a lowercase `\uXXXX` (a surrogate pair above the BMP),
//! DEL included; serde_json writes UTF-8. Both read back the same, but only the
//! escaped form gives byte-identical values, so every writer here goes through
//! [`to_compact`]. Object keys inside free-form maps (tags, the dynamic config)
//! come out in serde_json's map order (sorted), which Patroni never compares
//! byte-wise: it uses `deep_compare`.

use std::io;

use serde_json::{Map, Value};

/// A serde_json formatter that writes compact JSON with Python's `ensure_ascii`.
struct PythonCompact;

impl serde_json::ser::Formatter for PythonCompact {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if (c as u32) < 0x7f {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..i])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Render `value` as Patroni does: compact separators, ASCII only.
pub(crate) fn to_compact(value: &Value) -> String {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonCompact);
    // Serializing a `Value` into a Vec cannot fail, and the formatter only writes
    // ASCII, so both fallbacks are unreachable in practice.
    if serde::Serialize::serialize(value, &mut ser).is_err() {
        return "null".to_owned();
    }
    String::from_utf8(out).unwrap_or_else(|_| "null".to_owned())
}

/// Parse `raw` as a JSON object; anything else is `None`.
pub(crate) fn parse_object(raw: &str) -> Option<Map<String, Value>> {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    }
}

/// A non-negative integer, also from a decimal string (Patroni's `parse_int`).
pub(crate) fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// A short description of a JSON value's type, for logs.
pub(crate) fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn compact_matches_python_json_dumps() {
        let cases = [
            (
                json!({"a": 1, "b": [true, null]}),
                r#"{"a":1,"b":[true,null]}"#,
            ),
            (json!("pg-é"), r#""pg-\u00e9""#),
            (json!("𝄞"), r#""\ud834\udd1e""#),
            (json!("\u{7f}x"), r#""\u007fx""#),
            (json!("tab\tquote\"back\\"), r#""tab\tquote\"back\\""#),
            (json!("\u{1}"), r#""\u0001""#),
            (json!(50331968u64), "50331968"),
        ];
        for (value, want) in cases {
            assert_eq!(to_compact(&value), want);
        }
    }

    #[test]
    fn integers_from_strings() {
        assert_eq!(as_u64(&json!(5)), Some(5));
        assert_eq!(as_u64(&json!("42")), Some(42));
        assert_eq!(as_u64(&json!(-1)), None);
        assert_eq!(as_u64(&json!(1.5)), None);
        assert_eq!(as_u64(&json!("x")), None);
        assert_eq!(as_u64(&json!(null)), None);
    }
}
