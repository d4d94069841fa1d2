//! The small keys: `config`, `failover`, `failsafe` and `initialize`.
//!
//! Each follows Patroni's reader exactly where its tolerance protects the cluster
//! (a garbled `config` gets modify version 0 and is then ignored by everyone, so a
//! wiped DCS cannot push a bogus configuration onto the nodes), and is stricter
//! only where Patroni would crash or misread: an unparsable `scheduled_at` makes
//! Patroni's whole cluster read fail; here it makes the failover request empty
//! (logged), so nothing is switched over and the leader can still clear the key.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Value};

use super::json::{parse_object, to_compact};

/// `config`: the dynamic configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The key's version.
    pub version: String,
    /// The raw value as stored.
    pub raw: String,
    /// The parsed object; empty when the value was not a JSON object.
    pub data: Map<String, Value>,
    /// The version that counts for "has the config changed"; `None` when the value
    /// was unparsable or the version was `0` (Patroni's modify version 0).
    pub modify_version: Option<String>,
}

impl ClusterConfig {
    /// Parse a `config` value. Never fails.
    pub fn parse(version: &str, raw: &str) -> Self {
        let data = parse_object(raw);
        if data.is_none() {
            tracing::warn!("config key is not a JSON object, ignored");
        }
        let valid = data.is_some() && version != "0";
        Self {
            version: version.to_owned(),
            raw: raw.to_owned(),
            data: data.unwrap_or_default(),
            modify_version: valid.then(|| version.to_owned()),
        }
    }

    /// `false` for a config everyone must ignore (unparsable, or modify version 0).
    pub fn is_usable(&self) -> bool {
        self.modify_version.is_some()
    }

    /// Render a dynamic configuration for `set_config`.
    pub fn render(data: &Map<String, Value>) -> String {
        to_compact(&Value::Object(data.clone()))
    }
}

/// `failover`: a requested failover or switchover.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failover {
    /// The key's version (`None` for a value about to be written).
    pub version: Option<String>,
    /// The leader to switch away from; set → switchover.
    pub leader: Option<String>,
    /// The candidate (`member` in JSON).
    pub candidate: Option<String>,
    /// When to run it (a scheduled switchover).
    pub scheduled_at: Option<DateTime<FixedOffset>>,
}

impl Failover {
    /// Parse a `failover` value: JSON, or the legacy `leader:candidate` text.
    pub fn parse(version: &str, raw: &str) -> Self {
        let mut out = Self {
            version: Some(version.to_owned()),
            ..Self::default()
        };
        if raw.is_empty() {
            return out;
        }
        match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => {
                let text = |k: &str| match map.get(k) {
                    Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
                    None | Some(Value::Null) | Some(Value::String(_)) => None,
                    Some(_) => {
                        tracing::warn!(field = k, "failover field is not a string, ignored");
                        None
                    }
                };
                let scheduled = text("scheduled_at");
                let at = scheduled.as_deref().map(parse_timestamp);
                if let Some(None) = at {
                    tracing::warn!(value = ?scheduled, "failover scheduled_at does not parse, request ignored");
                    return out;
                }
                out.leader = text("leader");
                out.candidate = text("member");
                out.scheduled_at = at.flatten();
            }
            Ok(_) => tracing::warn!("failover key is not a JSON object, ignored"),
            Err(_) if !is_legacy_text(raw) => {
                tracing::warn!("failover key is neither JSON nor `leader:candidate`, ignored");
            }
            Err(_) => {
                let mut parts = raw.split(':').map(str::trim);
                out.leader = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
                out.candidate = parts.next().filter(|s| !s.is_empty()).map(str::to_owned);
            }
        }
        out
    }

    /// `true` when a leader or a candidate is named (Patroni: `bool(failover)`).
    pub fn is_set(&self) -> bool {
        self.leader.is_some() || self.candidate.is_some()
    }

    /// Render as Patroni's `manual_failover` does: `{"leader","member","scheduled_at"}`
    /// with empty parts omitted; `{}` clears the request.
    pub fn render(&self) -> String {
        let mut parts = Vec::new();
        let mut push = |k: &str, v: &str| {
            parts.push(format!(
                "\"{k}\":{}",
                to_compact(&Value::String(v.to_owned()))
            ));
        };
        if let Some(l) = self.leader.as_deref().filter(|s| !s.is_empty()) {
            push("leader", l);
        }
        if let Some(c) = self.candidate.as_deref().filter(|s| !s.is_empty()) {
            push("member", c);
        }
        if let Some(at) = &self.scheduled_at {
            push("scheduled_at", &python_isoformat(at));
        }
        format!("{{{}}}", parts.join(","))
    }
}

/// `true` for text that can be the legacy `leader:candidate` form: no control
/// characters and none of JSON's brackets or quotes (broken JSON is garbage, not a
/// member called `{"leader"`).
fn is_legacy_text(raw: &str) -> bool {
    raw.chars()
        .all(|c| !c.is_control() && !matches!(c, '{' | '}' | '[' | ']' | '"'))
}

/// Parse an ISO 8601 timestamp with an offset (`2024-07-02T18:00:00+00:00`,
/// `2016-01-14T10:09:57.1394Z`). A timestamp without an offset is refused: Patroni
/// only accepts timezone-aware schedules.
pub fn parse_timestamp(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s.trim()).ok()
}

/// Python's `datetime.isoformat()`: microseconds only when non-zero, `+HH:MM`.
pub fn python_isoformat(at: &DateTime<FixedOffset>) -> String {
    if at.timestamp_subsec_micros() == 0 {
        at.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string()
    }
}

/// `failsafe`: member name → api_url of the members a failsafe leader must reach.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Failsafe {
    /// The members and their REST API URLs.
    pub members: BTreeMap<String, String>,
}

impl Failsafe {
    /// Parse a `failsafe` value; `None` when it is not a JSON object. Entries whose
    /// URL is not a string are dropped.
    pub fn parse(raw: &str) -> Option<Self> {
        let Some(map) = parse_object(raw) else {
            tracing::warn!("failsafe key is not a JSON object, ignored");
            return None;
        };
        let members = map
            .into_iter()
            .filter_map(|(name, url)| match url {
                Value::String(u) => Some((name, u)),
                _ => {
                    tracing::warn!(member = %name, "failsafe entry is not a string, ignored");
                    None
                }
            })
            .collect();
        Some(Self { members })
    }

    /// Render as compact JSON.
    pub fn render(&self) -> String {
        let map: Map<String, Value> = self
            .members
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        to_compact(&Value::Object(map))
    }
}

/// `true` for a Postgres system identifier as Patroni checks it: at least 10
/// characters, all ASCII digits (`""` during bootstrap is not valid).
pub fn is_valid_sysid(value: &str) -> bool {
    value.len() >= 10 && value.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_modify_version() {
        let ok = ClusterConfig::parse("7", r#"{"ttl":30,"loop_wait":10}"#);
        assert!(ok.is_usable());
        assert_eq!(ok.modify_version.as_deref(), Some("7"));
        assert_eq!(ok.data["ttl"], 30);
        for raw in ["{", "[]", "null", "", "30", "\"x\""] {
            let bad = ClusterConfig::parse("7", raw);
            assert!(!bad.is_usable(), "{raw:?}");
            assert!(bad.data.is_empty());
            assert_eq!(bad.raw, raw);
        }
        assert!(!ClusterConfig::parse("0", "{}").is_usable());
    }

    #[test]
    fn failover_values() {
        let f = Failover::parse(
            "3",
            r#"{"leader":"pg0","member":"pg1","scheduled_at":"2024-07-02T18:00:00+00:00"}"#,
        );
        assert_eq!(f.leader.as_deref(), Some("pg0"));
        assert_eq!(f.candidate.as_deref(), Some("pg1"));
        assert!(f.is_set());
        assert_eq!(
            f.render(),
            r#"{"leader":"pg0","member":"pg1","scheduled_at":"2024-07-02T18:00:00+00:00"}"#
        );
        let legacy = Failover::parse("1", "abc: def");
        assert_eq!(
            (legacy.leader.as_deref(), legacy.candidate.as_deref()),
            (Some("abc"), Some("def"))
        );
        let z = Failover::parse(
            "1",
            r#"{"scheduled_at":"2016-01-14T10:09:57.1394Z","member":"b"}"#,
        );
        assert_eq!(
            z.render(),
            r#"{"member":"b","scheduled_at":"2016-01-14T10:09:57.139400+00:00"}"#
        );
        for raw in [
            "{}",
            "",
            "null",
            "[]",
            "5",
            "{\"leader\":",
            r#"{"leader":1}"#,
        ] {
            let f = Failover::parse("1", raw);
            assert!(!f.is_set(), "{raw:?}");
            assert_eq!(f.version.as_deref(), Some("1"));
        }
        let bad_time = Failover::parse("1", r#"{"leader":"a","scheduled_at":"tomorrow"}"#);
        assert!(!bad_time.is_set());
        let naive = Failover::parse(
            "1",
            r#"{"leader":"a","scheduled_at":"2024-07-02T18:00:00"}"#,
        );
        assert!(!naive.is_set());
        assert_eq!(Failover::default().render(), "{}");
    }

    #[test]
    fn failsafe_and_sysid() {
        let f = Failsafe::parse(r#"{"pg1":"http://10.0.0.1:8008/patroni","bad":1}"#).unwrap();
        assert_eq!(f.members.len(), 1);
        assert_eq!(f.render(), r#"{"pg1":"http://10.0.0.1:8008/patroni"}"#);
        assert_eq!(Failsafe::parse("[]"), None);
        assert!(is_valid_sysid("7386413437497364538"));
        assert!(is_valid_sysid("4294967296"));
        assert!(!is_valid_sysid(""));
        assert!(!is_valid_sysid("123456789"));
        assert!(!is_valid_sysid("73864134374973645x8"));
    }
}
