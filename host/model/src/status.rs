//! `status` (and the legacy `optime/leader`): the leader's last known WAL position
//! and its replication slots.
//!
//! Patroni 4.x writes `{"optime":N,"slots":{name:N},"retain_slots":[..]}`, compact,
//! with `slots` and `retain_slots` omitted when empty. Readers accept a bare integer
//! (the legacy `optime/leader` value and pre-2.1 status), `slots` given as a JSON
//! string holding an object, and `retain_slots` given as a JSON string holding a
//! list. A value that does not parse reads as the empty status (optime 0), which
//! replicas treat as "leader position unknown".

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::json::{as_u64, to_compact, type_name};

/// The leader's published position and slots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Status {
    /// The leader's WAL position (bytes); 0 when unknown.
    pub optime: u64,
    /// Slot name → LSN (bytes); `None` when not published.
    pub slots: Option<BTreeMap<String, u64>>,
    /// Physical slots of absent members that must be kept (4.x).
    pub retain_slots: Vec<String>,
}

impl Status {
    /// A status holding only the optime.
    pub fn with_optime(optime: u64) -> Self {
        Self {
            optime,
            ..Self::default()
        }
    }

    /// `true` when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.optime == 0 && self.slots.is_none() && self.retain_slots.is_empty()
    }

    /// Parse a `status` or `optime/leader` value. Never fails.
    pub fn parse(raw: &str) -> Self {
        let map = match serde_json::from_str::<Value>(raw) {
            Ok(Value::Object(map)) => map,
            Ok(v @ Value::Number(_)) => return Self::with_optime(as_u64(&v).unwrap_or(0)),
            _ => {
                tracing::warn!("status key is not a JSON object, ignored");
                return Self::default();
            }
        };
        let optime = map.get("optime").and_then(as_u64).unwrap_or(0);
        Self {
            optime,
            slots: parse_slots(map.get("slots")),
            retain_slots: parse_retain_slots(map.get("retain_slots")),
        }
    }

    /// Render as Patroni 4.x's `write_status`.
    pub fn render(&self) -> String {
        let mut out = format!("{{\"optime\":{}", self.optime);
        if let Some(slots) = self.slots.as_ref().filter(|s| !s.is_empty()) {
            let map: Map<String, Value> = slots
                .iter()
                .map(|(k, v)| (k.clone(), Value::from(*v)))
                .collect();
            out.push_str(",\"slots\":");
            out.push_str(&to_compact(&Value::Object(map)));
        }
        if !self.retain_slots.is_empty() {
            let mut names = self.retain_slots.clone();
            names.sort();
            names.dedup();
            out.push_str(",\"retain_slots\":");
            out.push_str(&to_compact(&Value::from(names)));
        }
        out.push('}');
        out
    }
}

/// `slots`: an object, or a JSON string holding one. Unparsable LSNs read as 0,
/// as Patroni's `Cluster.slots` does.
fn parse_slots(value: Option<&Value>) -> Option<BTreeMap<String, u64>> {
    let parsed;
    let map = match value? {
        Value::Object(m) => m,
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => {
                parsed = m;
                &parsed
            }
            _ => {
                tracing::warn!("status slots string is not a JSON object, ignored");
                return None;
            }
        },
        Value::Null => return None,
        v => {
            tracing::warn!(got = type_name(v), "status slots is not an object, ignored");
            return None;
        }
    };
    Some(
        map.iter()
            .map(|(name, lsn)| {
                let lsn = as_u64(lsn).unwrap_or_else(|| {
                    tracing::warn!(slot = %name, "status slot LSN is not an integer, read as 0");
                    0
                });
                (name.clone(), lsn)
            })
            .collect(),
    )
}

/// `retain_slots`: a list of names, or a JSON string holding one.
fn parse_retain_slots(value: Option<&Value>) -> Vec<String> {
    let list = match value {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(items)) => items,
            _ => {
                tracing::warn!("status retain_slots string is not a JSON list, ignored");
                return Vec::new();
            }
        },
        Some(v) => {
            tracing::warn!(
                got = type_name(v),
                "status retain_slots is not a list, ignored"
            );
            return Vec::new();
        }
    };
    list.into_iter()
        .filter_map(|v| match v {
            Value::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_patroni_reads() {
        let s = Status::parse(
            r#"{"optime":50331968,"slots":{"pg2":50331968,"logical":50331000},"retain_slots":["pg1","pg2"]}"#,
        );
        assert_eq!(s.optime, 50_331_968);
        assert_eq!(s.slots.as_ref().map(|m| m["logical"]), Some(50_331_000));
        assert_eq!(s.retain_slots, ["pg1", "pg2"]);
        assert_eq!(Status::parse("12345"), Status::with_optime(12345));
        let str_slots =
            Status::parse(r#"{"optime":"7","slots":"{\"a\":1}","retain_slots":"[\"a\"]"}"#);
        assert_eq!(str_slots.optime, 7);
        assert_eq!(str_slots.slots.map(|m| m["a"]), Some(1));
        assert_eq!(str_slots.retain_slots, ["a"]);
    }

    #[test]
    fn renders_and_omits_empty_parts() {
        assert_eq!(Status::with_optime(42).render(), r#"{"optime":42}"#);
        let s = Status {
            optime: 10,
            slots: Some(BTreeMap::from([("pg1".into(), 9), ("ls".into(), 8)])),
            retain_slots: vec!["pg2".into(), "pg1".into()],
        };
        let raw = s.render();
        assert_eq!(
            raw,
            r#"{"optime":10,"slots":{"ls":8,"pg1":9},"retain_slots":["pg1","pg2"]}"#
        );
        assert_eq!(Status::parse(&raw).slots, s.slots);
        let empty_slots = Status {
            slots: Some(BTreeMap::new()),
            ..Status::with_optime(1)
        };
        assert_eq!(empty_slots.render(), r#"{"optime":1}"#);
    }

    #[test]
    fn garbage_reads_as_empty_or_partial() {
        for raw in ["", "{", "[]", "null", "\"x\"", "-5"] {
            assert!(Status::parse(raw).is_empty(), "{raw:?}");
        }
        let partial = Status::parse(r#"{"optime":"x","slots":[1],"retain_slots":{"a":1}}"#);
        assert!(partial.is_empty());
        let bad_lsn = Status::parse(r#"{"optime":5,"slots":{"a":"zz"},"retain_slots":["a",3]}"#);
        assert_eq!(bad_lsn.slots.map(|m| m["a"]), Some(0));
        assert_eq!(bad_lsn.retain_slots, ["a"]);
    }
}
