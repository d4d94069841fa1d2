//! Reading YAML sources into one JSON tree: a file, a directory of files, or the
//! `PATRONI_CONFIGURATION` document, with the environment overlay patched on top.
//!
//! Everything is converted to `serde_json::Value` before it is typed, for two reasons: plugin
//! sections are handed to WASM plugins as JSON, and the same lenient readers then serve the
//! local file, the environment and the DCS `config` key. Merging follows Patroni's
//! `patch_config`: mappings merge recursively, anything else is replaced, and an explicit `null`
//! deletes the key. This module does no validation; that is the typed stage's job.

use std::path::Path;

use serde_json::{Map, Number, Value};
use serde_yaml_ng::Value as Yaml;

use crate::ConfigError;

/// Converts a YAML value to JSON. Non-string mapping keys are rendered as text (`1` → `"1"`),
/// tags are dropped, and non-finite floats become strings.
pub(crate) fn yaml_to_json(yaml: Yaml) -> Value {
    match yaml {
        Yaml::Null => Value::Null,
        Yaml::Bool(b) => Value::Bool(b),
        Yaml::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                let f = n.as_f64().unwrap_or(f64::NAN);
                Number::from_f64(f).map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Yaml::String(s) => Value::String(s),
        Yaml::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Yaml::Mapping(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| (key_text(k), yaml_to_json(v)))
                .collect(),
        ),
        Yaml::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

fn key_text(key: Yaml) -> String {
    match yaml_to_json(key) {
        Value::String(s) => s,
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

/// Parses a YAML document into JSON, resolving `<<` merge keys.
pub(crate) fn yaml_str_to_json(text: &str) -> Result<Value, serde_yaml_ng::Error> {
    let mut yaml: Yaml = serde_yaml_ng::from_str(text)?;
    yaml.apply_merge()?;
    Ok(yaml_to_json(yaml))
}

/// Parses one configuration document, which must be a mapping.
pub(crate) fn parse_document(text: &str, origin: &str) -> Result<Map<String, Value>, ConfigError> {
    match yaml_str_to_json(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ConfigError::NotAMapping {
            origin: origin.to_owned(),
        }),
        Err(source) => Err(ConfigError::Yaml {
            origin: origin.to_owned(),
            source,
        }),
    }
}

/// Reads a file, or every `*.yml`/`*.yaml` file of a directory in alphabetical order,
/// deep-merging later files over earlier ones.
pub(crate) fn read_path(path: &Path) -> Result<Map<String, Value>, ConfigError> {
    let io = |source| ConfigError::Io {
        file: path.to_owned(),
        source,
    };
    let files = if path.is_dir() {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(path).map_err(io)? {
            let file = entry.map_err(io)?.path();
            let yaml = matches!(
                file.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            );
            if yaml && file.is_file() {
                files.push(file);
            }
        }
        files.sort();
        files
    } else {
        vec![path.to_owned()]
    };
    let mut merged = Map::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|source| ConfigError::Io {
            file: file.clone(),
            source,
        })?;
        let doc = parse_document(&text, &file.display().to_string())?;
        patch(&mut merged, doc);
    }
    Ok(merged)
}

/// Patroni's `patch_config`: merges `data` into `config`. Mappings merge recursively, other
/// values replace, and `null` removes the key.
pub(crate) fn patch(config: &mut Map<String, Value>, data: Map<String, Value>) {
    for (key, value) in data {
        match value {
            Value::Null => {
                config.remove(&key);
            }
            Value::Object(inner) => match config.get_mut(&key) {
                Some(Value::Object(existing)) => patch(existing, inner),
                _ => {
                    config.insert(key, Value::Object(inner));
                }
            },
            other => {
                config.insert(key, other);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_keys_and_merge_keys() {
        let v = yaml_str_to_json("base: &b {x: 1}\nother:\n  <<: *b\n  y: 2\n1: one\ntrue: t\n")
            .unwrap();
        assert_eq!(
            v,
            json!({"base": {"x": 1}, "other": {"x": 1, "y": 2}, "1": "one", "true": "t"})
        );
    }

    #[test]
    fn patch_merges_replaces_and_deletes() {
        let mut a = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": 1});
        let b = json!({"a": {"c": 3, "f": 4}, "d": [2], "e": null});
        let (Value::Object(a_map), Value::Object(b_map)) = (&mut a, b) else {
            unreachable!()
        };
        patch(a_map, b_map);
        assert_eq!(a, json!({"a": {"b": 1, "c": 3, "f": 4}, "d": [2]}));
    }

    #[test]
    fn document_must_be_a_mapping() {
        assert!(matches!(
            parse_document("- a\n", "x"),
            Err(ConfigError::NotAMapping { .. })
        ));
        assert!(matches!(
            parse_document("", "x"),
            Err(ConfigError::NotAMapping { .. })
        ));
        assert!(matches!(
            parse_document("a: [", "x"),
            Err(ConfigError::Yaml { .. })
        ));
    }
}
