//! The pure half of `edit-config`: `-s`/`-p` pairs, `--apply` patches and the
//! diff, with patronictl's rules. Pure, so the rules are unit-tested here; the
//! command around it (editor, prompts, compare-and-set) is in `commands/config.rs`.
//!
//! patronictl reads each value with PyYAML, which speaks YAML 1.1: `on`, `yes`
//! and `off` are booleans there, `010` is octal, and `1e3` is a string (a float
//! needs a dot). [`yaml_value`] follows those rules for plain scalars, so
//! `keelctl edit-config -p wal_log_hints=on` writes the same JSON as patronictl.

use anyhow::bail;
use serde_json::{Map, Number, Value};
use similar::TextDiff;

/// Apply `key.path=value` pairs (patronictl's `--set`; `--pg x=y` arrives as
/// `postgresql.parameters.x=y`). A null value removes the key, and a mapping
/// emptied by a removal goes too. Below `postgresql.parameters` the rest of
/// the path is one name, because GUCs may contain dots.
pub(crate) fn apply_pairs(
    data: &Map<String, Value>,
    pairs: &[String],
) -> anyhow::Result<Map<String, Value>> {
    let mut changed = data.clone();
    for pair in pairs {
        let Some((path, value)) = pair.split_once('=').filter(|_| !pair.is_empty()) else {
            bail!("Invalid parameter setting {pair}: expected KEY=VALUE, for example ttl=30");
        };
        let path: Vec<&str> = path.trim().split('.').collect();
        set_path(&mut changed, &path, yaml_value(value)?, &[]);
    }
    Ok(changed)
}

fn set_path(config: &mut Map<String, Value>, path: &[&str], value: Value, prefix: &[&str]) {
    if prefix == ["postgresql", "parameters"] && path.len() > 1 {
        let name = path.join(".");
        return set_path(config, &[name.as_str()], value, prefix);
    }
    let Some((key, rest)) = path.split_first() else {
        return;
    };
    if rest.is_empty() {
        if value.is_null() {
            config.remove(*key);
        } else {
            config.insert((*key).to_owned(), value);
        }
        return;
    }
    let entry = config
        .entry((*key).to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    if !entry.is_object() {
        *entry = Value::Object(Map::new());
    }
    if let Value::Object(child) = entry {
        let mut deeper = prefix.to_vec();
        deeper.push(key);
        set_path(child, rest, value, &deeper);
        if child.is_empty() {
            config.remove(*key);
        }
    }
}

/// Patroni's `patch_config`: merge `patch` into `config`; null removes a key,
/// mappings merge recursively, anything else replaces.
pub(crate) fn patch(config: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (name, value) in patch {
        match value {
            Value::Null => {
                config.remove(name);
            }
            Value::Object(inner) => match config.get_mut(name) {
                Some(Value::Object(existing)) => self::patch(existing, inner),
                _ => {
                    config.insert(name.clone(), value.clone());
                }
            },
            _ => {
                config.insert(name.clone(), value.clone());
            }
        }
    }
}

/// The configuration as a YAML mapping, from a file's text (`--apply`, `--replace`,
/// the editor). An empty document is an empty mapping.
pub(crate) fn parse_document(text: &str, source: &str) -> anyhow::Result<Map<String, Value>> {
    let value: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| anyhow::anyhow!("{source}: not valid YAML: {e}"))?;
    match value {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        other => bail!(
            "{source}: expected a mapping of settings, found {}",
            kind(&other)
        ),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// A unified diff of two texts, as Python's `difflib.unified_diff` prints it
/// without file names.
pub(crate) fn unified_diff(before: &str, after: &str) -> String {
    let before = format!("{}\n", before.trim_end_matches('\n'));
    let after = format!("{}\n", after.trim_end_matches('\n'));
    TextDiff::from_lines(&before, &after)
        .unified_diff()
        .context_radius(3)
        .header("", "")
        .to_string()
}

/// One `-s`/`-p` value read as PyYAML would read it.
pub(crate) fn yaml_value(text: &str) -> anyhow::Result<Value> {
    let plain = text.trim();
    let structured = plain.starts_with(['[', '{', '"', '\'', '|', '>', '!', '&', '*'])
        || plain.contains('\n')
        || plain.contains(": ")
        || plain.contains(" #");
    if structured {
        return serde_yaml_ng::from_str(text)
            .map_err(|e| anyhow::anyhow!("cannot read `{text}` as a YAML value: {e}"));
    }
    Ok(yaml11_scalar(plain))
}

/// YAML 1.1's implicit types of a plain scalar (PyYAML's resolver, without
/// timestamps and base-60 numbers, which stay strings).
fn yaml11_scalar(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if let Some(n) = yaml11_int(s) {
        return Value::Number(n.into());
    }
    if let Some(f) = yaml11_float(s).and_then(Number::from_f64) {
        return Value::Number(f);
    }
    Value::String(s.to_owned())
}

fn yaml11_int(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let digits = |t: &str, radix: u32| {
        let t: String = t.chars().filter(|c| *c != '_').collect();
        (!t.is_empty()).then(|| i64::from_str_radix(&t, radix).ok())?
    };
    let value = if let Some(bin) = body.strip_prefix("0b") {
        digits(bin, 2)?
    } else if let Some(hex) = body.strip_prefix("0x") {
        digits(hex, 16)?
    } else if body.len() > 1 && body.starts_with('0') {
        if !body.chars().all(|c| c.is_ascii_digit() || c == '_') {
            return None;
        }
        digits(&body[1..], 8)?
    } else if body.starts_with(|c: char| c.is_ascii_digit())
        && body.chars().all(|c| c.is_ascii_digit() || c == '_')
    {
        digits(body, 10)?
    } else {
        return None;
    };
    Some(if negative { -value } else { value })
}

fn yaml11_float(s: &str) -> Option<f64> {
    let body = s.trim_start_matches(['-', '+']);
    match body {
        ".inf" | ".Inf" | ".INF" | ".nan" | ".NaN" | ".NAN" => return None,
        _ => {}
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let dot = mantissa.find('.')?;
    let (whole, fraction) = (&mantissa[..dot], &mantissa[dot + 1..]);
    let ok_whole = whole.is_empty() || whole.chars().all(|c| c.is_ascii_digit() || c == '_');
    let ok_fraction = fraction
        .chars()
        .all(|c| c.is_ascii_digit() || c == '_' || c == '.');
    let ok_exponent = exponent.is_none_or(|e| {
        e.starts_with(['-', '+']) && e.len() > 1 && e[1..].chars().all(|c| c.is_ascii_digit())
    });
    if !(ok_whole && ok_fraction && ok_exponent) || (whole.is_empty() && fraction.is_empty()) {
        return None;
    }
    s.replace('_', "").parse().ok()
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
    fn values_are_read_as_pyyaml_reads_them() {
        for (text, expected) in [
            ("on", json!(true)),
            ("Off", json!(false)),
            ("yes", json!(true)),
            ("", Value::Null),
            ("null", Value::Null),
            ("30", json!(30)),
            ("-5", json!(-5)),
            ("1_000", json!(1000)),
            ("010", json!(8)),
            ("0x1F", json!(31)),
            ("0.5", json!(0.5)),
            ("1.5e+3", json!(1500.0)),
            ("1e3", json!("1e3")),
            ("7MB", json!("7MB")),
            ("'on'", json!("on")),
            ("[a, b]", json!(["a", "b"])),
            ("{x: 1}", json!({"x": 1})),
            ("  spaced  ", json!("spaced")),
            ("hot_standby,replica", json!("hot_standby,replica")),
        ] {
            assert_eq!(yaml_value(text).unwrap(), expected, "{text:?}");
        }
    }

    #[test]
    fn pairs_set_nested_keys_and_gucs_keep_their_dots() {
        let data = map(json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}}));
        let out = apply_pairs(
            &data,
            &[
                "ttl=20".into(),
                "postgresql.parameters.pg_stat_statements.max=500".into(),
                "postgresql.use_pg_rewind=true".into(),
                "synchronous_mode=on".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            Value::Object(out),
            json!({"ttl": 20, "synchronous_mode": true, "postgresql": {"use_pg_rewind": true,
                "parameters": {"work_mem": "4MB", "pg_stat_statements.max": 500}}})
        );
    }

    #[test]
    fn an_empty_value_removes_the_key_and_an_emptied_mapping() {
        let data = map(json!({"ttl": 30, "postgresql": {"parameters": {"work_mem": "4MB"}}}));
        let out = apply_pairs(
            &data,
            &["postgresql.parameters.work_mem=".into(), "ttl=null".into()],
        )
        .unwrap();
        assert_eq!(Value::Object(out), json!({}));
        // A path through a scalar replaces it with a mapping.
        let out = apply_pairs(&map(json!({"a": 1})), &["a.b=2".into()]).unwrap();
        assert_eq!(Value::Object(out), json!({"a": {"b": 2}}));
    }

    #[test]
    fn malformed_pairs_are_refused() {
        let e = apply_pairs(&Map::new(), &["ttl".into()]).unwrap_err();
        assert!(
            e.to_string().contains("Invalid parameter setting ttl"),
            "{e}"
        );
        assert!(apply_pairs(&Map::new(), &[String::new()]).is_err());
    }

    #[test]
    fn patches_merge_and_null_deletes() {
        let mut config =
            map(json!({"ttl": 30, "postgresql": {"parameters": {"a": 1, "b": 2}}, "x": 1}));
        patch(
            &mut config,
            &map(
                json!({"ttl": 20, "x": null, "postgresql": {"parameters": {"b": null, "c": 3}}, "n": {"m": 1}}),
            ),
        );
        assert_eq!(
            Value::Object(config),
            json!({"ttl": 20, "postgresql": {"parameters": {"a": 1, "c": 3}}, "n": {"m": 1}})
        );
    }

    #[test]
    fn documents_must_be_mappings() {
        assert_eq!(parse_document("", "f").unwrap(), Map::new());
        assert_eq!(
            parse_document("ttl: 30\n", "f").unwrap(),
            map(json!({"ttl": 30}))
        );
        let e = parse_document("- a\n", "edited.yaml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("edited.yaml") && e.contains("a list"), "{e}");
    }

    #[test]
    fn the_diff_is_unified_with_context() {
        let diff = unified_diff("a: 1\nb: 2\nc: 3\n", "a: 1\nb: 5\nc: 3\n");
        assert_eq!(
            diff,
            "--- \n+++ \n@@ -1,3 +1,3 @@\n a: 1\n-b: 2\n+b: 5\n c: 3\n"
        );
    }
}
