//! The dynamic configuration: the JSON object in the DCS `config` key, shared by the cluster.
//!
//! Unlike the local file, this document is written by other members, by `patronictl
//! edit-config` and by hand, and a bad value must never take a running cluster down: reading
//! it *never fails*. A value that cannot be understood is replaced by Patroni's default and
//! reported as a warning, and a document that is not an object at all yields all defaults
//! (Patroni additionally ignores such a config; that decision belongs to the HA loop).
//! Unknown keys are kept, so that writing the config back does not lose anything.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::check::Reader;
use crate::lenient::{parse_bool, parse_int, parse_size};
use crate::merge::DynamicPostgresql;
use crate::standby::{IgnoreSlot, PermanentSlot, StandbyCluster};

/// `synchronous_mode`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SynchronousMode {
    /// Asynchronous replication (the default).
    #[default]
    Off,
    /// Patroni-managed `synchronous_standby_names` with priority standbys.
    On,
    /// Quorum commit (`ANY n (…)`), Patroni 4.
    Quorum,
}

/// The DCS `config` document, typed, with Patroni's defaults.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DynamicConfig {
    /// `ttl` in seconds (leader key lease), default 30. Unvalidated; see
    /// [`DynamicConfig::validated_timeouts`].
    pub ttl: u32,
    /// `loop_wait` in seconds, default 10.
    pub loop_wait: u32,
    /// `retry_timeout` in seconds, default 10.
    pub retry_timeout: u32,
    /// `maximum_lag_on_failover` in bytes, default 1048576.
    pub maximum_lag_on_failover: u64,
    /// `maximum_lag_on_syncnode` in bytes, default -1 (≤ 0 disables).
    pub maximum_lag_on_syncnode: i64,
    /// `max_timelines_history`, default 0 (unlimited).
    pub max_timelines_history: u32,
    /// `primary_start_timeout` (legacy `master_start_timeout`) in seconds, default 300.
    pub primary_start_timeout: u32,
    /// `primary_stop_timeout` (legacy `master_stop_timeout`) in seconds, default 0.
    pub primary_stop_timeout: u32,
    /// `synchronous_mode`: booleans, `on`/`off` spellings and `quorum`.
    pub synchronous_mode: SynchronousMode,
    /// `synchronous_mode_strict`.
    pub synchronous_mode_strict: bool,
    /// `synchronous_node_count`, default 1.
    pub synchronous_node_count: u32,
    /// `failsafe_mode`.
    pub failsafe_mode: bool,
    /// `check_timeline`.
    pub check_timeline: bool,
    /// `pause`: maintenance mode.
    pub pause: bool,
    /// `member_slots_ttl` in seconds, default 1800.
    pub member_slots_ttl: u32,
    /// `slots` (aliases `permanent_slots`, `permanent_replication_slots`).
    pub slots: BTreeMap<String, PermanentSlot>,
    /// `ignore_slots` matchers.
    pub ignore_slots: Vec<IgnoreSlot>,
    /// `standby_cluster`, if the section is present.
    pub standby_cluster: Option<StandbyCluster>,
    /// `postgresql`.
    pub postgresql: DynamicPostgresql,
    /// Keys this crate does not know, kept verbatim for round trips.
    pub extra: Map<String, Value>,
}

impl Default for DynamicConfig {
    fn default() -> Self {
        Self {
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            maximum_lag_on_failover: 1_048_576,
            maximum_lag_on_syncnode: -1,
            max_timelines_history: 0,
            primary_start_timeout: 300,
            primary_stop_timeout: 0,
            synchronous_mode: SynchronousMode::Off,
            synchronous_mode_strict: false,
            synchronous_node_count: 1,
            failsafe_mode: false,
            check_timeline: false,
            pause: false,
            member_slots_ttl: 1800,
            slots: BTreeMap::new(),
            ignore_slots: Vec::new(),
            standby_cluster: None,
            postgresql: DynamicPostgresql::default(),
            extra: Map::new(),
        }
    }
}

fn sync_mode(v: &Value) -> Result<SynchronousMode, String> {
    if v.as_str()
        .is_some_and(|s| s.trim().eq_ignore_ascii_case("quorum"))
    {
        return Ok(SynchronousMode::Quorum);
    }
    parse_bool(v)
        .map(|on| {
            if on {
                SynchronousMode::On
            } else {
                SynchronousMode::Off
            }
        })
        .map_err(|_| format!("expected on, off or quorum, got {v}"))
}

const KNOWN: &[&str] = &[
    "ttl",
    "loop_wait",
    "retry_timeout",
    "maximum_lag_on_failover",
    "maximum_lag_on_syncnode",
    "max_timelines_history",
    "primary_start_timeout",
    "master_start_timeout",
    "primary_stop_timeout",
    "master_stop_timeout",
    "synchronous_mode",
    "synchronous_mode_strict",
    "synchronous_node_count",
    "failsafe_mode",
    "check_timeline",
    "pause",
    "member_slots_ttl",
    "slots",
    "permanent_slots",
    "permanent_replication_slots",
    "ignore_slots",
    "standby_cluster",
    "postgresql",
];

impl DynamicConfig {
    /// Parses the DCS `config` value. Never fails: anything unusable becomes the default,
    /// with a warning naming the key.
    pub fn from_json_lenient(text: &str) -> (Self, Vec<String>) {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => Self::from_value_lenient(&value),
            Err(e) => (
                Self::default(),
                vec![format!("config: not valid JSON ({e}); using defaults")],
            ),
        }
    }

    /// Like [`DynamicConfig::from_json_lenient`], for an already parsed value.
    pub fn from_value_lenient(value: &Value) -> (Self, Vec<String>) {
        let mut warnings = Vec::new();
        let Value::Object(map) = value else {
            warnings.push(format!(
                "config: expected a JSON object, got {value}; using defaults"
            ));
            return (Self::default(), warnings);
        };
        let d = Self::default();
        let mut r = Reader {
            map,
            prefix: "",
            warnings: &mut warnings,
        };
        let start = r
            .seconds("primary_start_timeout")
            .or_else(|| r.seconds("master_start_timeout"));
        let stop = r
            .seconds("primary_stop_timeout")
            .or_else(|| r.seconds("master_stop_timeout"));
        let config = Self {
            ttl: r.uint("ttl", d.ttl),
            loop_wait: r.uint("loop_wait", d.loop_wait),
            retry_timeout: r.uint("retry_timeout", d.retry_timeout),
            maximum_lag_on_failover: r
                .parse("maximum_lag_on_failover", parse_size)
                .unwrap_or(d.maximum_lag_on_failover),
            maximum_lag_on_syncnode: r
                .parse("maximum_lag_on_syncnode", |v| {
                    parse_int(v).or_else(|_| parse_size(v).map(|s| s as i64))
                })
                .unwrap_or(d.maximum_lag_on_syncnode),
            max_timelines_history: r.uint("max_timelines_history", d.max_timelines_history),
            primary_start_timeout: start.unwrap_or(d.primary_start_timeout),
            primary_stop_timeout: stop.unwrap_or(d.primary_stop_timeout),
            synchronous_mode: r.parse("synchronous_mode", sync_mode).unwrap_or_default(),
            synchronous_mode_strict: r.flag("synchronous_mode_strict", false),
            synchronous_node_count: r.uint("synchronous_node_count", d.synchronous_node_count),
            failsafe_mode: r.flag("failsafe_mode", false),
            check_timeline: r.flag("check_timeline", false),
            pause: r.flag("pause", false),
            member_slots_ttl: r.seconds("member_slots_ttl").unwrap_or(d.member_slots_ttl),
            slots: crate::standby::read_slots(&mut r),
            ignore_slots: crate::standby::read_ignore_slots(&mut r),
            standby_cluster: crate::standby::read_standby_cluster(&mut r),
            postgresql: DynamicPostgresql::read(&mut r),
            extra: map
                .iter()
                .filter(|(k, _)| !KNOWN.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        (config, warnings)
    }

    /// True if `standby_cluster` makes this a standby cluster (non-empty host, port or
    /// restore_command).
    pub fn is_standby_cluster(&self) -> bool {
        self.standby_cluster
            .as_ref()
            .is_some_and(StandbyCluster::is_configured)
    }

    /// The value to store in the DCS `config` key.
    pub fn to_value(&self) -> Value {
        let mut out = self.extra.clone();
        let sync = match self.synchronous_mode {
            SynchronousMode::Off => Value::Bool(false),
            SynchronousMode::On => Value::Bool(true),
            SynchronousMode::Quorum => Value::from("quorum"),
        };
        let fields: [(&str, Value); 15] = [
            ("ttl", self.ttl.into()),
            ("loop_wait", self.loop_wait.into()),
            ("retry_timeout", self.retry_timeout.into()),
            (
                "maximum_lag_on_failover",
                self.maximum_lag_on_failover.into(),
            ),
            (
                "maximum_lag_on_syncnode",
                self.maximum_lag_on_syncnode.into(),
            ),
            ("max_timelines_history", self.max_timelines_history.into()),
            ("primary_start_timeout", self.primary_start_timeout.into()),
            ("primary_stop_timeout", self.primary_stop_timeout.into()),
            ("synchronous_mode", sync),
            (
                "synchronous_mode_strict",
                self.synchronous_mode_strict.into(),
            ),
            ("synchronous_node_count", self.synchronous_node_count.into()),
            ("failsafe_mode", self.failsafe_mode.into()),
            ("check_timeline", self.check_timeline.into()),
            ("pause", self.pause.into()),
            ("member_slots_ttl", self.member_slots_ttl.into()),
        ];
        for (k, v) in fields {
            out.insert(k.to_owned(), v);
        }
        if !self.slots.is_empty() {
            let slots = self
                .slots
                .iter()
                .map(|(k, s)| (k.clone(), s.to_value()))
                .collect();
            out.insert("slots".to_owned(), Value::Object(slots));
        }
        if !self.ignore_slots.is_empty() {
            let list = self.ignore_slots.iter().map(IgnoreSlot::to_value).collect();
            out.insert("ignore_slots".to_owned(), Value::Array(list));
        }
        if let Some(sc) = &self.standby_cluster {
            out.insert("standby_cluster".to_owned(), sc.to_value());
        }
        out.insert("postgresql".to_owned(), self.postgresql.to_value());
        Value::Object(out)
    }

    /// [`DynamicConfig::to_value`] as compact JSON.
    pub fn to_json(&self) -> String {
        self.to_value().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn garbage_gives_defaults_and_a_warning() {
        for text in ["", "not json", "[1,2]", "42", "null", "\"x\""] {
            let (c, w) = DynamicConfig::from_json_lenient(text);
            assert_eq!(c, DynamicConfig::default(), "{text}");
            assert_eq!(w.len(), 1, "{text}: {w:?}");
        }
    }

    #[test]
    fn bad_values_fall_back_one_by_one() {
        let (c, w) = DynamicConfig::from_json_lenient(
            r#"{"ttl": "abc", "loop_wait": "5", "pause": "yes", "synchronous_mode": "maybe", "retry_timeout": -3}"#,
        );
        assert_eq!((c.ttl, c.loop_wait, c.retry_timeout), (30, 5, 10));
        assert!(c.pause);
        assert_eq!(c.synchronous_mode, SynchronousMode::Off);
        assert_eq!(w.len(), 3, "{w:?}");
        assert!(w.iter().any(|w| w.starts_with("ttl: ")), "{w:?}");
    }

    #[test]
    fn synchronous_mode_spellings_and_legacy_names() {
        for (v, mode) in [
            (json!(true), SynchronousMode::On),
            (json!("on"), SynchronousMode::On),
            (json!("Quorum"), SynchronousMode::Quorum),
            (json!(false), SynchronousMode::Off),
        ] {
            let (c, _) = DynamicConfig::from_value_lenient(&json!({"synchronous_mode": v}));
            assert_eq!(c.synchronous_mode, mode);
        }
        let (c, _) = DynamicConfig::from_value_lenient(
            &json!({"master_start_timeout": 10, "master_stop_timeout": "5"}),
        );
        assert_eq!((c.primary_start_timeout, c.primary_stop_timeout), (10, 5));
        let (c, _) = DynamicConfig::from_value_lenient(
            &json!({"master_start_timeout": 10, "primary_start_timeout": 20, "member_slots_ttl": "30min"}),
        );
        assert_eq!((c.primary_start_timeout, c.member_slots_ttl), (20, 1800));
    }

    #[test]
    fn round_trip_keeps_unknown_keys() {
        let text = r#"{"ttl":20,"synchronous_mode":"quorum","custom":{"a":1},"postgresql":{"use_slots":false,"parameters":{"max_connections":100}}}"#;
        let (c, w) = DynamicConfig::from_json_lenient(text);
        assert!(w.is_empty(), "{w:?}");
        let (again, _) = DynamicConfig::from_json_lenient(&c.to_json());
        assert_eq!(again, c);
        let v: Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(v["custom"], json!({"a": 1}));
        assert_eq!(v["synchronous_mode"], json!("quorum"));
        assert_eq!(
            v["postgresql"]["parameters"]["max_connections"],
            json!("100")
        );
    }
}
