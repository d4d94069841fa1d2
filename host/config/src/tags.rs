//! `tags`: what this member tells the cluster about itself, and how Patroni reads it.
//!
//! Tags are published in the member key and read by every peer, including Patroni peers, so
//! the rules must match Patroni exactly: `nofailover` and `failover_priority` (and `nosync`
//! and `sync_priority`) describe the same thing twice, the boolean wins when both are given,
//! and a contradiction is only a warning. Boolean tags are published as JSON booleans (never
//! `"yes"`), so every reader sees the same value; custom tags are published verbatim.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::ConfigError;
use crate::lenient::{parse_bool, parse_int};

/// The `tags` section, typed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tags {
    nofailover: Option<bool>,
    failover_priority: Option<i64>,
    clonefrom: bool,
    noloadbalance: bool,
    replicatefrom: Option<String>,
    nosync: Option<bool>,
    sync_priority: Option<i64>,
    nostream: bool,
    custom: BTreeMap<String, Value>,
}

fn flag(map: &BTreeMap<String, Value>, name: &str) -> Result<Option<bool>, ConfigError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_bool(v)
            .map(Some)
            .map_err(|p| ConfigError::invalid(format!("tags.{name}"), p)),
    }
}

fn priority(map: &BTreeMap<String, Value>, name: &str) -> Result<Option<i64>, ConfigError> {
    match map.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match parse_int(v) {
            Ok(n) if n >= 0 => Ok(Some(n)),
            Ok(n) => Err(ConfigError::invalid(
                format!("tags.{name}"),
                format!("expected an integer >= 0, got {n}"),
            )),
            Err(p) => Err(ConfigError::invalid(format!("tags.{name}"), p)),
        },
    }
}

const PREDEFINED: &[&str] = &[
    "nofailover",
    "failover_priority",
    "clonefrom",
    "noloadbalance",
    "replicatefrom",
    "nosync",
    "sync_priority",
    "nostream",
];

impl Tags {
    /// Types a `tags` mapping. Returns the tags and warnings about contradictory combinations.
    pub fn parse(map: &BTreeMap<String, Value>) -> Result<(Self, Vec<String>), ConfigError> {
        let tags = Self {
            nofailover: flag(map, "nofailover")?,
            failover_priority: priority(map, "failover_priority")?,
            clonefrom: flag(map, "clonefrom")?.unwrap_or(false),
            noloadbalance: flag(map, "noloadbalance")?.unwrap_or(false),
            replicatefrom: match map.get("replicatefrom") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    crate::lenient::parse_text(v)
                        .map_err(|p| ConfigError::invalid("tags.replicatefrom", p))?,
                ),
            },
            nosync: flag(map, "nosync")?,
            sync_priority: priority(map, "sync_priority")?,
            nostream: flag(map, "nostream")?.unwrap_or(false),
            custom: map
                .iter()
                .filter(|(k, _)| !PREDEFINED.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut warnings = Vec::new();
        for (b, p, bn, pn) in [
            (
                tags.nofailover,
                tags.failover_priority,
                "nofailover",
                "failover_priority",
            ),
            (tags.nosync, tags.sync_priority, "nosync", "sync_priority"),
        ] {
            if let (Some(b), Some(p)) = (b, p)
                && (b == (p > 0))
            {
                warnings.push(format!(
                    "tags.{bn}: conflicting configuration between {bn}: {b} and {pn}: {p}; {bn}: {b} wins"
                ));
            }
        }
        Ok((tags, warnings))
    }

    /// True if this member must never become leader: the explicit `nofailover` tag if
    /// present, else `failover_priority <= 0`.
    pub fn nofailover(&self) -> bool {
        self.nofailover
            .unwrap_or(self.failover_priority.is_some_and(|p| p <= 0))
    }

    /// Failover priority: 0 if `nofailover` is true, else the tag (default 1).
    pub fn failover_priority(&self) -> i64 {
        if self.nofailover == Some(true) {
            0
        } else {
            self.failover_priority.unwrap_or(1)
        }
    }

    /// True if this member must never be a synchronous standby (same rules as `nofailover`).
    pub fn nosync(&self) -> bool {
        self.nosync
            .unwrap_or(self.sync_priority.is_some_and(|p| p <= 0))
    }

    /// Synchronous-standby priority: 0 if `nosync` is true, else the tag (default 1).
    pub fn sync_priority(&self) -> i64 {
        if self.nosync == Some(true) {
            0
        } else {
            self.sync_priority.unwrap_or(1)
        }
    }

    /// `clonefrom`: this member may be used as a source for new replicas.
    pub fn clonefrom(&self) -> bool {
        self.clonefrom
    }

    /// `noloadbalance`: REST `/replica` and friends answer 503.
    pub fn noloadbalance(&self) -> bool {
        self.noloadbalance
    }

    /// `replicatefrom`: the member to stream from (cascading replication).
    pub fn replicatefrom(&self) -> Option<&str> {
        self.replicatefrom.as_deref()
    }

    /// `nostream`: no streaming replication (archive only) and no member slot.
    pub fn nostream(&self) -> bool {
        self.nostream
    }

    /// Tags that are not Patroni's, kept verbatim.
    pub fn custom(&self) -> &BTreeMap<String, Value> {
        &self.custom
    }

    /// The `tags` object published in the member key: custom tags verbatim; `clonefrom`,
    /// `noloadbalance`, `nosync`, `nostream`, `nofailover` only when true, except that
    /// `nofailover` (`nosync`) is also published when false if `failover_priority`
    /// (`sync_priority`) is set; priorities and `replicatefrom` when set.
    pub fn published(&self) -> Map<String, Value> {
        let mut out: Map<String, Value> = self
            .custom
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let put_bool =
            |out: &mut Map<String, Value>, name: &str, value: Option<bool>, force: bool| {
                if let Some(v) = value
                    && (v || force)
                {
                    out.insert(name.to_owned(), Value::Bool(v));
                }
            };
        put_bool(&mut out, "clonefrom", Some(self.clonefrom), false);
        put_bool(&mut out, "noloadbalance", Some(self.noloadbalance), false);
        put_bool(&mut out, "nostream", Some(self.nostream), false);
        put_bool(
            &mut out,
            "nofailover",
            self.nofailover,
            self.failover_priority.is_some(),
        );
        put_bool(
            &mut out,
            "nosync",
            self.nosync,
            self.sync_priority.is_some(),
        );
        if let Some(p) = self.failover_priority {
            out.insert("failover_priority".to_owned(), p.into());
        }
        if let Some(p) = self.sync_priority {
            out.insert("sync_priority".to_owned(), p.into());
        }
        if let Some(r) = &self.replicatefrom {
            out.insert("replicatefrom".to_owned(), r.clone().into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tags(v: Value) -> (Tags, Vec<String>) {
        let Value::Object(m) = v else { unreachable!() };
        Tags::parse(&m.into_iter().collect()).unwrap()
    }

    /// (tags, nofailover, failover_priority, conflict warning?)
    #[test]
    fn failover_semantics_table() {
        let table = [
            (json!({}), false, 1, false),
            (json!({"nofailover": true}), true, 0, false),
            (json!({"nofailover": "off"}), false, 1, false),
            (json!({"failover_priority": 0}), true, 0, false),
            (json!({"failover_priority": "3"}), false, 3, false),
            (
                json!({"nofailover": true, "failover_priority": 2}),
                true,
                0,
                true,
            ),
            (
                json!({"nofailover": false, "failover_priority": 0}),
                false,
                0,
                true,
            ),
            (
                json!({"nofailover": false, "failover_priority": 5}),
                false,
                5,
                false,
            ),
            (
                json!({"nofailover": true, "failover_priority": 0}),
                true,
                0,
                false,
            ),
        ];
        for (input, nofailover, priority, conflict) in table {
            let (t, w) = tags(input.clone());
            assert_eq!(t.nofailover(), nofailover, "{input}");
            assert_eq!(t.failover_priority(), priority, "{input}");
            assert_eq!(!w.is_empty(), conflict, "{input}: {w:?}");
        }
    }

    #[test]
    fn published_tags() {
        let table = [
            (json!({}), json!({})),
            (
                json!({"nofailover": false, "clonefrom": false, "nosync": false}),
                json!({}),
            ),
            (
                json!({"nofailover": "yes", "noloadbalance": "on"}),
                json!({"nofailover": true, "noloadbalance": true}),
            ),
            (
                json!({"nofailover": false, "failover_priority": 1}),
                json!({"nofailover": false, "failover_priority": 1}),
            ),
            (
                json!({"nosync": false, "sync_priority": 2}),
                json!({"nosync": false, "sync_priority": 2}),
            ),
            (
                json!({"zone": "a", "rack": 3, "replicatefrom": "pg2"}),
                json!({"zone": "a", "rack": 3, "replicatefrom": "pg2"}),
            ),
            (
                json!({"nostream": true, "clonefrom": true}),
                json!({"nostream": true, "clonefrom": true}),
            ),
        ];
        for (input, expected) in table {
            let (t, _) = tags(input.clone());
            assert_eq!(Value::Object(t.published()), expected, "{input}");
        }
    }

    #[test]
    fn bad_tag_values_name_their_path() {
        let Value::Object(m) = json!({"failover_priority": -1}) else {
            unreachable!()
        };
        let err = Tags::parse(&m.into_iter().collect()).unwrap_err();
        assert_eq!(err.path(), Some("tags.failover_priority"));
        let Value::Object(m) = json!({"nosync": "perhaps"}) else {
            unreachable!()
        };
        assert_eq!(
            Tags::parse(&m.into_iter().collect()).unwrap_err().path(),
            Some("tags.nosync")
        );
    }
}
