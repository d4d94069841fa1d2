//! The member's `citus:` section: `{group: <int ≥ 0>, database: <name>}`.
//!
//! The group may arrive as a string, because Patroni reads `PATRONI_CITUS_GROUP`
//! from the environment and so does the host. Keys Patroni does not know are
//! ignored, as Patroni ignores them. A refusal names the key it is about.

use keel_sdk::mpp::MppError;
use serde_json::Value;

/// The group of the coordinator; every other group is a worker.
pub const COORDINATOR_GROUP: u32 = 0;

/// The validated section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This member's group; 0 is the coordinator.
    pub group: u32,
    /// The database Citus lives in (the extension, pg_dist_node).
    pub database: String,
}

impl Config {
    /// Parse and check the section (JSON).
    pub fn parse(section: &str) -> Result<Self, MppError> {
        let value: Value = serde_json::from_str(section)
            .map_err(|e| invalid(format!("citus: not a mapping: {e}")))?;
        let Value::Object(map) = value else {
            return Err(invalid(
                "citus: expected a mapping with `group` and `database`".into(),
            ));
        };
        let group = match map.get("group") {
            None | Some(Value::Null) => {
                return Err(invalid(
                    "citus.group: missing; 0 for the coordinator, 1, 2, ... for workers".into(),
                ));
            }
            Some(value) => parse_group(value).ok_or_else(|| {
                invalid(format!(
                    "citus.group: expected an integer >= 0 (0 is the coordinator), got {value}"
                ))
            })?,
        };
        let database = match map.get("database") {
            None | Some(Value::Null) => {
                return Err(invalid(
                    "citus.database: missing; the database the citus extension lives in".into(),
                ));
            }
            Some(Value::String(name)) if !name.is_empty() && !name.contains('\0') => name.clone(),
            Some(value) => {
                return Err(invalid(format!(
                    "citus.database: expected a non-empty database name, got {value}"
                )));
            }
        };
        Ok(Self { group, database })
    }

    /// Whether this member belongs to the coordinator's group.
    pub fn is_coordinator(&self) -> bool {
        self.group == COORDINATOR_GROUP
    }
}

fn invalid(message: String) -> MppError {
    MppError::InvalidConfig(message)
}

/// An integer, or a string of decimal digits (environment variables).
fn parse_group(value: &Value) -> Option<u32> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) => {
            let digits = s.trim();
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(section: &str) -> String {
        match Config::parse(section) {
            Err(MppError::InvalidConfig(message)) => message,
            other => panic!("{section} should be refused as invalid config, got {other:?}"),
        }
    }

    #[test]
    fn a_coordinator_and_a_worker_section_are_accepted() {
        let c = Config::parse(r#"{"group": 0, "database": "citus"}"#).unwrap();
        assert_eq!(
            c,
            Config {
                group: 0,
                database: "citus".into()
            }
        );
        assert!(c.is_coordinator());
        let w = Config::parse(r#"{"group": 2, "database": "app"}"#).unwrap();
        assert!(!w.is_coordinator());
    }

    #[test]
    fn the_group_may_be_a_string_as_environment_variables_give_it() {
        let c = Config::parse(r#"{"group": "1", "database": "citus"}"#).unwrap();
        assert_eq!(c.group, 1);
        assert_eq!(
            Config::parse(r#"{"group": " 3 ", "database": "citus"}"#)
                .unwrap()
                .group,
            3
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let c = Config::parse(r#"{"group": 1, "database": "citus", "colour": "blue"}"#).unwrap();
        assert_eq!(c.group, 1);
    }

    #[test]
    fn bad_groups_are_refused_naming_citus_group() {
        for section in [
            r#"{"database": "citus"}"#,
            r#"{"group": null, "database": "citus"}"#,
            r#"{"group": -1, "database": "citus"}"#,
            r#"{"group": 1.5, "database": "citus"}"#,
            r#"{"group": "one", "database": "citus"}"#,
            r#"{"group": "-1", "database": "citus"}"#,
            r#"{"group": "", "database": "citus"}"#,
            r#"{"group": true, "database": "citus"}"#,
            r#"{"group": 4294967296, "database": "citus"}"#,
        ] {
            let message = refusal(section);
            assert!(message.starts_with("citus.group:"), "{section}: {message}");
        }
    }

    #[test]
    fn bad_databases_are_refused_naming_citus_database() {
        for section in [
            r#"{"group": 0}"#,
            r#"{"group": 0, "database": ""}"#,
            r#"{"group": 0, "database": 7}"#,
            r#"{"group": 0, "database": ["citus"]}"#,
        ] {
            let message = refusal(section);
            assert!(
                message.starts_with("citus.database:"),
                "{section}: {message}"
            );
        }
    }

    #[test]
    fn a_section_that_is_not_a_mapping_is_refused_naming_citus() {
        for section in ["[]", "3", "not json"] {
            assert!(refusal(section).starts_with("citus:"), "{section}");
        }
    }
}
