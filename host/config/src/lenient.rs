//! Lenient scalar parsing, the way Patroni reads its YAML and environment.
//!
//! Patroni accepts `on`/`yes`/`1` for booleans, numbers written as strings, and time and
//! size values with units (`10s`, `16MB`); environment variables are always strings. Keel must
//! accept every file Patroni accepts, so every scalar in the raw stage goes through one of
//! these functions. They work on `serde_json::Value` because every source (YAML files,
//! `PATRONI_CONFIGURATION`, environment, the DCS `config` key) is converted to JSON first.
//! The serde wrapper types at the bottom let the raw structs use them with path tracking.

use std::time::Duration;

use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Parses a boolean: `true`/`false`, or case-insensitive `on/true/yes/1`, `off/false/no/0`.
pub fn parse_bool(value: &Value) -> Result<bool, String> {
    let text = match value {
        Value::Bool(b) => return Ok(*b),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_ascii_lowercase(),
        other => return Err(format!("expected a boolean, got {other}")),
    };
    match text.as_str() {
        "on" | "true" | "yes" | "1" => Ok(true),
        "off" | "false" | "no" | "0" => Ok(false),
        _ => Err(format!(
            "expected a boolean (on/off, true/false, yes/no, 1/0), got {value}"
        )),
    }
}

/// Parses an integer written as a number or a string (`"5432"`, `" 42 "`, `"0x10"`).
pub fn parse_int(value: &Value) -> Result<i64, String> {
    let err = || format!("expected an integer, got {value}");
    match value {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
            .ok_or_else(err),
        Value::String(s) => {
            let s = s.trim();
            let (neg, digits) = match s.strip_prefix('-') {
                Some(rest) => (true, rest),
                None => (false, s.strip_prefix('+').unwrap_or(s)),
            };
            let parsed = match digits
                .strip_prefix("0x")
                .or_else(|| digits.strip_prefix("0X"))
            {
                Some(hex) => i64::from_str_radix(hex, 16),
                None => digits.parse::<i64>(),
            };
            parsed.map(|v| if neg { -v } else { v }).map_err(|_| err())
        }
        _ => Err(err()),
    }
}

/// Splits `"16 MB"` into `(16.0, "MB")`; the number may be fractional.
fn split_unit(s: &str) -> Option<(f64, &str)> {
    let s = s.trim();
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let number = s[..end].parse::<f64>().ok()?;
    Some((number, s[end..].trim()))
}

/// Parses a duration: a number of seconds (`10`, `2.5`, `"10"`) or a number with one of
/// Postgres's time units `us`, `ms`, `s`, `min`, `h`, `d` (`"10s"`, `"1min"`).
pub fn parse_duration(value: &Value) -> Result<Duration, String> {
    let err = || format!("expected a duration such as 10 or \"10s\", got {value}");
    let seconds = match value {
        Value::Number(n) => n.as_f64().ok_or_else(err)?,
        Value::String(s) => {
            let (number, unit) = split_unit(s).ok_or_else(err)?;
            let scale = match unit {
                "" | "s" => 1.0,
                "us" => 1e-6,
                "ms" => 1e-3,
                "min" => 60.0,
                "h" => 3600.0,
                "d" => 86400.0,
                _ => return Err(err()),
            };
            number * scale
        }
        _ => return Err(err()),
    };
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(format!("expected a non-negative duration, got {value}"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a size in bytes: a number of bytes or a number with one of Postgres's memory units
/// `B`, `kB`, `MB`, `GB`, `TB` (1024-based; `KB` is accepted for `kB`).
pub fn parse_size(value: &Value) -> Result<u64, String> {
    let err = || format!("expected a size such as 1048576 or \"16MB\", got {value}");
    let bytes = match value {
        Value::Number(n) => n.as_f64().ok_or_else(err)?,
        Value::String(s) => {
            let (number, unit) = split_unit(s).ok_or_else(err)?;
            let scale: f64 = match unit {
                "" | "B" => 1.0,
                "kB" | "KB" => 1024.0,
                "MB" => 1024.0 * 1024.0,
                "GB" => 1024.0 * 1024.0 * 1024.0,
                "TB" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
                _ => return Err(err()),
            };
            number * scale
        }
        _ => return Err(err()),
    };
    if !(bytes.is_finite() && bytes >= 0.0) {
        return Err(format!("expected a non-negative size, got {value}"));
    }
    Ok(bytes.round() as u64)
}

/// Renders a scalar as text: strings as they are, numbers and booleans the way YAML wrote
/// them (`5432` → `"5432"`). Used where Patroni keeps a value as a string.
pub fn parse_text(value: &Value) -> Result<String, String> {
    match value {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!("expected a string, got {other}")),
    }
}

/// Parses a list of strings: a YAML list of scalars, or one comma-separated string.
pub fn parse_list(value: &Value) -> Result<Vec<String>, String> {
    match value {
        Value::Array(items) => items.iter().map(parse_text).collect(),
        Value::String(s) => Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()),
        Value::Number(_) => parse_text(value).map(|s| vec![s]),
        other => Err(format!(
            "expected a list or a comma-separated string, got {other}"
        )),
    }
}

macro_rules! lenient_type {
    ($(#[$doc:meta])* $name:ident($ty:ty) = $parse:path) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq)]
        pub(crate) struct $name(pub(crate) $ty);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = Value::deserialize(deserializer)?;
                $parse(&value).map($name).map_err(serde::de::Error::custom)
            }
        }
    };
}

lenient_type!(
    /// A boolean read with [`parse_bool`].
    Flag(bool) = parse_bool
);
lenient_type!(
    /// An integer read with [`parse_int`].
    Int(i64) = parse_int
);
impl Copy for Int {}
lenient_type!(
    /// A duration read with [`parse_duration`].
    Secs(Duration) = parse_duration
);
lenient_type!(
    /// A byte size read with [`parse_size`].
    Bytes(u64) = parse_size
);
lenient_type!(
    /// A string that may have been written as a number or boolean.
    Text(String) = parse_text
);
lenient_type!(
    /// A list of strings, or a comma-separated string.
    List(Vec<String>) = parse_list
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn booleans_accept_patroni_spellings() {
        for v in [
            json!(true),
            json!("on"),
            json!("YES"),
            json!("True"),
            json!(1),
            json!("1"),
        ] {
            assert_eq!(parse_bool(&v), Ok(true), "{v}");
        }
        for v in [
            json!(false),
            json!("Off"),
            json!("no"),
            json!("FALSE"),
            json!(0),
            json!("0"),
        ] {
            assert_eq!(parse_bool(&v), Ok(false), "{v}");
        }
        assert!(parse_bool(&json!("maybe")).is_err());
        assert!(parse_bool(&json!(2)).is_err());
    }

    #[test]
    fn integers_accept_strings() {
        assert_eq!(parse_int(&json!("5432")), Ok(5432));
        assert_eq!(parse_int(&json!(" -1 ")), Ok(-1));
        assert_eq!(parse_int(&json!("0x10")), Ok(16));
        assert_eq!(parse_int(&json!(3.0)), Ok(3));
        assert!(parse_int(&json!("10s")).is_err());
        assert!(parse_int(&json!(2.5)).is_err());
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(parse_duration(&json!(60)), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration(&json!("10s")), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration(&json!("1min")), Ok(Duration::from_secs(60)));
        assert_eq!(
            parse_duration(&json!("250ms")),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(parse_duration(&json!("2h")), Ok(Duration::from_secs(7200)));
        assert!(parse_duration(&json!("10 parsecs")).is_err());
        assert!(parse_duration(&json!(-1)).is_err());
    }

    #[test]
    fn sizes_accept_units() {
        assert_eq!(parse_size(&json!(1048576)), Ok(1048576));
        assert_eq!(parse_size(&json!("16MB")), Ok(16 << 20));
        assert_eq!(parse_size(&json!("1 kB")), Ok(1024));
        assert_eq!(parse_size(&json!("1GB")), Ok(1 << 30));
        assert!(parse_size(&json!("1XB")).is_err());
    }

    #[test]
    fn lists_accept_comma_strings() {
        assert_eq!(
            parse_list(&json!("a, b,c")),
            Ok(vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            parse_list(&json!(["a", 1])),
            Ok(vec!["a".into(), "1".into()])
        );
    }
}
