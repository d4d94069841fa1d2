//! The parts of the dynamic configuration that describe replication topology beyond one
//! cluster: `standby_cluster`, permanent `slots` and `ignore_slots`.
//!
//! They are read leniently like the rest of the DCS document (a bad entry is dropped with a
//! warning, the others still apply), and rendered back in Patroni's shape.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::check::Reader;
use crate::lenient::{parse_list, parse_text};

/// `standby_cluster`: this whole cluster replicates from another one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StandbyCluster {
    /// `host` of the source cluster.
    pub host: Option<String>,
    /// `port` of the source cluster.
    pub port: Option<u16>,
    /// `primary_slot_name` to use on the source.
    pub primary_slot_name: Option<String>,
    /// `create_replica_methods` for the standby leader.
    pub create_replica_methods: Vec<String>,
    /// `restore_command`.
    pub restore_command: Option<String>,
    /// `archive_cleanup_command`.
    pub archive_cleanup_command: Option<String>,
    /// `recovery_min_apply_delay`, as written.
    pub recovery_min_apply_delay: Option<String>,
}

impl StandbyCluster {
    /// Patroni's rule: configured iff `host`, `port` or `restore_command` is non-empty.
    pub fn is_configured(&self) -> bool {
        self.host.is_some() || self.port.is_some() || self.restore_command.is_some()
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.to_owned(), v);
            }
        };
        put("host", self.host.clone().map(Value::from));
        put("port", self.port.map(Value::from));
        put(
            "primary_slot_name",
            self.primary_slot_name.clone().map(Value::from),
        );
        put(
            "create_replica_methods",
            (!self.create_replica_methods.is_empty())
                .then(|| self.create_replica_methods.clone().into()),
        );
        put(
            "restore_command",
            self.restore_command.clone().map(Value::from),
        );
        put(
            "archive_cleanup_command",
            self.archive_cleanup_command.clone().map(Value::from),
        );
        put(
            "recovery_min_apply_delay",
            self.recovery_min_apply_delay.clone().map(Value::from),
        );
        Value::Object(m)
    }
}

/// A permanent replication slot from `slots`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PermanentSlot {
    /// A physical slot (also what `name: null` means).
    Physical {
        /// `cluster_type`: `primary` or `standby` to restrict where it exists.
        cluster_type: Option<String>,
    },
    /// A logical slot.
    Logical {
        /// `database`.
        database: String,
        /// `plugin` (output plugin).
        plugin: String,
        /// `cluster_type`.
        cluster_type: Option<String>,
    },
}

impl PermanentSlot {
    fn read(name: &str, value: &Value) -> Result<Self, String> {
        let map = match value {
            Value::Null => return Ok(Self::Physical { cluster_type: None }),
            Value::Object(m) => m,
            other => return Err(format!("slots.{name}: expected a mapping, got {other}")),
        };
        let field = |k: &str| {
            map.get(k)
                .filter(|v| !v.is_null())
                .and_then(|v| parse_text(v).ok())
        };
        let cluster_type = field("cluster_type");
        match field("type").as_deref() {
            None | Some("physical") => Ok(Self::Physical { cluster_type }),
            Some("logical") => match (field("database"), field("plugin")) {
                (Some(database), Some(plugin)) => Ok(Self::Logical {
                    database,
                    plugin,
                    cluster_type,
                }),
                _ => Err(format!(
                    "slots.{name}: a logical slot needs database and plugin"
                )),
            },
            Some(other) => Err(format!("slots.{name}: unknown slot type {other:?}")),
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        let (mut m, ct) = match self {
            Self::Physical { cluster_type } => (
                Map::from_iter([("type".to_owned(), Value::from("physical"))]),
                cluster_type,
            ),
            Self::Logical {
                database,
                plugin,
                cluster_type,
            } => (
                Map::from_iter([
                    ("type".to_owned(), Value::from("logical")),
                    ("database".to_owned(), Value::from(database.clone())),
                    ("plugin".to_owned(), Value::from(plugin.clone())),
                ]),
                cluster_type,
            ),
        };
        if let Some(ct) = ct {
            m.insert("cluster_type".to_owned(), ct.clone().into());
        }
        Value::Object(m)
    }
}

/// One `ignore_slots` matcher: a slot matching every given field is never dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IgnoreSlot {
    /// `name`, `type`, `database`, `plugin` as given.
    pub fields: BTreeMap<String, String>,
}

impl IgnoreSlot {
    pub(crate) fn to_value(&self) -> Value {
        Value::Object(
            self.fields
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect(),
        )
    }
}

pub(crate) fn read_slots(r: &mut Reader<'_>) -> BTreeMap<String, PermanentSlot> {
    let mut out = BTreeMap::new();
    let key = ["slots", "permanent_slots", "permanent_replication_slots"]
        .into_iter()
        .find(|k| r.get(k).is_some());
    let Some(key) = key else { return out };
    let slots = match r.get(key) {
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            r.warnings.push(format!(
                "{}{key}: expected a mapping, got {other}; ignored",
                r.prefix
            ));
            return out;
        }
        None => return out,
    };
    for (name, value) in &slots {
        match PermanentSlot::read(name, value) {
            Ok(slot) => {
                out.insert(name.clone(), slot);
            }
            Err(problem) => r
                .warnings
                .push(format!("{}{problem}; slot ignored", r.prefix)),
        }
    }
    out
}

pub(crate) fn read_ignore_slots(r: &mut Reader<'_>) -> Vec<IgnoreSlot> {
    const FIELDS: &[&str] = &["name", "type", "database", "plugin"];
    let items = match r.get("ignore_slots") {
        None => return Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(other) => {
            r.warnings.push(format!(
                "{}ignore_slots: expected a list, got {other}; ignored",
                r.prefix
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Value::Object(m) = item else {
            r.warnings.push(format!(
                "{}ignore_slots[{i}]: expected a mapping; ignored",
                r.prefix
            ));
            continue;
        };
        let fields = m
            .iter()
            .filter(|(k, _)| FIELDS.contains(&k.as_str()))
            .filter_map(|(k, v)| parse_text(v).ok().map(|v| (k.clone(), v)))
            .collect();
        out.push(IgnoreSlot { fields });
    }
    out
}

pub(crate) fn read_standby_cluster(r: &mut Reader<'_>) -> Option<StandbyCluster> {
    let map = match r.get("standby_cluster")? {
        Value::Object(m) => m.clone(),
        other => {
            r.warnings.push(format!(
                "{}standby_cluster: expected a mapping, got {other}; ignored",
                r.prefix
            ));
            return None;
        }
    };
    let prefix = format!("{}standby_cluster.", r.prefix);
    let mut s = Reader {
        map: &map,
        prefix: &prefix,
        warnings: r.warnings,
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
    Some(StandbyCluster {
        host: nonempty(s.text("host")),
        port: s
            .parse("port", |v| {
                if v.as_str().is_some_and(str::is_empty) {
                    return Ok(None);
                }
                let n = crate::lenient::parse_int(v)?;
                u16::try_from(n)
                    .map(Some)
                    .map_err(|_| format!("expected a port, got {n}"))
            })
            .flatten(),
        primary_slot_name: nonempty(s.text("primary_slot_name")),
        create_replica_methods: s
            .parse("create_replica_methods", parse_list)
            .unwrap_or_default(),
        restore_command: nonempty(s.text("restore_command")),
        archive_cleanup_command: nonempty(s.text("archive_cleanup_command")),
        recovery_min_apply_delay: nonempty(s.text("recovery_min_apply_delay")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dynamic::DynamicConfig;
    use serde_json::json;

    #[test]
    fn slots_and_aliases() {
        let (c, w) = DynamicConfig::from_value_lenient(&json!({"permanent_slots": {
            "a": null, "b": {"type": "logical", "database": "db", "plugin": "pgoutput"},
            "c": {"type": "logical"}, "d": {"type": "physical", "cluster_type": "primary"}}}));
        assert_eq!(c.slots.len(), 3);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(c.slots["a"], PermanentSlot::Physical { cluster_type: None });
    }

    #[test]
    fn standby_cluster_configured_rule() {
        let (c, _) = DynamicConfig::from_value_lenient(
            &json!({"standby_cluster": {"host": "", "port": ""}}),
        );
        assert!(c.standby_cluster.is_some() && !c.is_standby_cluster());
        let (c, _) = DynamicConfig::from_value_lenient(
            &json!({"standby_cluster": {"restore_command": "cp x"}}),
        );
        assert!(c.is_standby_cluster());
        let (c, _) = DynamicConfig::from_value_lenient(
            &json!({"standby_cluster": {"host": "h", "port": "5432"}}),
        );
        assert_eq!(c.standby_cluster.unwrap().port, Some(5432));
    }

    #[test]
    fn ignore_slots_keep_known_fields() {
        let (c, w) = DynamicConfig::from_value_lenient(
            &json!({"ignore_slots": [{"name": "x", "plugin": "p", "junk": 1}, 3]}),
        );
        assert_eq!(c.ignore_slots.len(), 1);
        assert_eq!(c.ignore_slots[0].fields.len(), 2);
        assert_eq!(w.len(), 1);
    }
}
