//! The `postgresql` section is the one both the local file and the DCS may set; this module
//! owns the rules for combining them, as Patroni's `_build_effective_configuration` does:
//!
//! * the DCS value is the base, Patroni's defaults under it;
//! * the local value wins for every key it sets, except `use_slots` (cluster-wide only);
//! * `connect_address`, `proxy_address`, `listen`, `config_dir`, `data_dir`, `pgpass` and
//!   `authentication` are never taken from the DCS;
//! * the GUCs Patroni passes on the postmaster command line (§5.6) come only from the DCS,
//!   are validated there (an invalid value is replaced by the default), and are dropped from
//!   the local `parameters`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::check::Reader;
use crate::lenient::{parse_bool, parse_duration, parse_int, parse_list, parse_size};
use crate::postgresql::{PostgresqlSettings, render_parameter};

/// `postgresql` keys that are never read from the DCS.
pub const LOCAL_ONLY_POSTGRESQL_KEYS: &[&str] = &[
    "connect_address",
    "proxy_address",
    "listen",
    "config_dir",
    "data_dir",
    "pgpass",
    "authentication",
];

#[derive(Clone, Copy)]
enum Check {
    /// Keel derives it (`listen_addresses`, `port`, `cluster_name`): never settable.
    Derived,
    Int(i64),
    /// A size in MB units, with this minimum.
    SizeMb(u64),
    Bool,
    True,
    WalLevel,
}

/// (GUC, default placed in the effective parameters, validation)
const COMMAND_LINE_GUCS: &[(&str, Option<&str>, Check)] = &[
    ("listen_addresses", None, Check::Derived),
    ("port", None, Check::Derived),
    ("cluster_name", None, Check::Derived),
    ("wal_level", Some("hot_standby"), Check::WalLevel),
    ("hot_standby", Some("on"), Check::True),
    ("max_connections", Some("100"), Check::Int(25)),
    ("max_wal_senders", Some("10"), Check::Int(3)),
    ("wal_keep_segments", None, Check::Int(1)),
    ("wal_keep_size", None, Check::SizeMb(16)),
    ("max_prepared_transactions", Some("0"), Check::Int(0)),
    ("max_locks_per_transaction", Some("64"), Check::Int(32)),
    ("track_commit_timestamp", Some("off"), Check::Bool),
    ("max_replication_slots", Some("10"), Check::Int(4)),
    ("max_worker_processes", Some("8"), Check::Int(2)),
    ("wal_log_hints", Some("on"), Check::Bool),
];

/// True for the GUCs only the DCS (or Keel itself) may set (case-insensitive).
pub fn is_command_line_guc(name: &str) -> bool {
    COMMAND_LINE_GUCS
        .iter()
        .any(|(g, _, _)| g.eq_ignore_ascii_case(name))
}

fn check(check: Check, value: &str) -> Result<(), String> {
    let v = Value::from(value);
    let ok = match check {
        Check::Derived => return Err("is set by Keel from the local configuration".to_owned()),
        Check::Int(min) => parse_int(&v).is_ok_and(|n| n >= min),
        Check::SizeMb(min) => {
            let bytes = parse_int(&v)
                .map(|mb| mb.max(0) as u64 * 1024 * 1024)
                .or_else(|_| parse_size(&v));
            bytes.is_ok_and(|b| b >= min * 1024 * 1024)
        }
        Check::Bool => parse_bool(&v).is_ok(),
        Check::True => parse_bool(&v) == Ok(true),
        Check::WalLevel => {
            ["hot_standby", "replica", "logical"].contains(&value.to_ascii_lowercase().as_str())
        }
    };
    if ok {
        Ok(())
    } else {
        Err(format!("invalid value {value:?}"))
    }
}

/// `postgresql` as the DCS gives it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct DynamicPostgresql {
    /// `use_slots`, default true. Only ever read from the DCS.
    pub use_slots: bool,
    /// `use_pg_rewind`.
    pub use_pg_rewind: Option<bool>,
    /// `parameters`, rendered; invalid command-line GUCs are left out.
    pub parameters: BTreeMap<String, String>,
    /// `pg_hba`.
    pub pg_hba: Option<Vec<String>>,
    /// `pg_ident`.
    pub pg_ident: Option<Vec<String>>,
    /// `pg_ctl_timeout`.
    pub pg_ctl_timeout: Option<Duration>,
    /// `recovery_conf`.
    pub recovery_conf: Option<Map<String, Value>>,
    /// Every other key (`create_replica_methods`, replica method sections, …), verbatim.
    pub other: Map<String, Value>,
}

impl Default for DynamicPostgresql {
    fn default() -> Self {
        Self {
            use_slots: true,
            use_pg_rewind: None,
            parameters: BTreeMap::new(),
            pg_hba: None,
            pg_ident: None,
            pg_ctl_timeout: None,
            recovery_conf: None,
            other: Map::new(),
        }
    }
}

impl DynamicPostgresql {
    pub(crate) fn read(r: &mut Reader<'_>) -> Self {
        let map = match r.get("postgresql") {
            None => return Self::default(),
            Some(Value::Object(m)) => m.clone(),
            Some(other) => {
                r.warnings.push(format!(
                    "{}postgresql: expected a mapping, got {other}; ignored",
                    r.prefix
                ));
                return Self::default();
            }
        };
        let prefix = format!("{}postgresql.", r.prefix);
        let mut p = Reader {
            map: &map,
            prefix: &prefix,
            warnings: r.warnings,
        };
        let mut parameters = BTreeMap::new();
        if let Some(params) = p.parse("parameters", |v| {
            v.as_object()
                .cloned()
                .ok_or_else(|| format!("expected a mapping, got {v}"))
        }) {
            for (name, value) in params {
                let rendered = render_parameter(&value).and_then(|text| {
                    match COMMAND_LINE_GUCS
                        .iter()
                        .find(|(g, _, _)| g.eq_ignore_ascii_case(&name))
                    {
                        Some((_, _, c)) => check(*c, &text).map(|()| text),
                        None => Ok(text),
                    }
                });
                match rendered {
                    Ok(text) => {
                        parameters.insert(name, text);
                    }
                    Err(problem) => p.warnings.push(format!(
                        "{prefix}parameters.{name}: {problem}; using the default"
                    )),
                }
            }
        }
        let mut other = Map::new();
        for (key, value) in &map {
            if LOCAL_ONLY_POSTGRESQL_KEYS.contains(&key.as_str()) {
                p.warnings
                    .push(format!("{prefix}{key}: never taken from the DCS; ignored"));
            } else if ![
                "use_slots",
                "use_pg_rewind",
                "parameters",
                "pg_hba",
                "pg_ident",
                "pg_ctl_timeout",
                "recovery_conf",
            ]
            .contains(&key.as_str())
            {
                other.insert(key.clone(), value.clone());
            }
        }
        Self {
            use_slots: p.flag("use_slots", true),
            use_pg_rewind: p.parse("use_pg_rewind", parse_bool),
            parameters,
            pg_hba: p.parse("pg_hba", parse_list),
            pg_ident: p.parse("pg_ident", parse_list),
            pg_ctl_timeout: p.parse("pg_ctl_timeout", parse_duration),
            recovery_conf: p.parse("recovery_conf", |v| {
                v.as_object()
                    .cloned()
                    .ok_or_else(|| format!("expected a mapping, got {v}"))
            }),
            other,
        }
    }

    pub(crate) fn to_value(&self) -> Value {
        let mut m = self.other.clone();
        m.insert("use_slots".to_owned(), self.use_slots.into());
        if let Some(v) = self.use_pg_rewind {
            m.insert("use_pg_rewind".to_owned(), v.into());
        }
        if !self.parameters.is_empty() {
            let params = self
                .parameters
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            m.insert("parameters".to_owned(), Value::Object(params));
        }
        for (k, v) in [("pg_hba", &self.pg_hba), ("pg_ident", &self.pg_ident)] {
            if let Some(lines) = v {
                m.insert(k.to_owned(), lines.clone().into());
            }
        }
        if let Some(t) = self.pg_ctl_timeout {
            m.insert("pg_ctl_timeout".to_owned(), Value::from(t.as_secs_f64()));
        }
        if let Some(rc) = &self.recovery_conf {
            m.insert("recovery_conf".to_owned(), Value::Object(rc.clone()));
        }
        Value::Object(m)
    }
}

/// The `postgresql` configuration in force: local over DCS over defaults.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct EffectivePostgresql {
    /// Parameters for postgresql.conf and the command line. `listen_addresses`, `port` and
    /// `cluster_name` are not included: they come from `postgresql.listen` and `scope`.
    pub parameters: BTreeMap<String, String>,
    /// `use_slots` (DCS only).
    pub use_slots: bool,
    /// `use_pg_rewind`, default false.
    pub use_pg_rewind: bool,
    /// `pg_hba` lines, if either side gives them.
    pub pg_hba: Option<Vec<String>>,
    /// `pg_ident` lines, if either side gives them.
    pub pg_ident: Option<Vec<String>>,
    /// `pg_ctl_timeout`, default 60 s.
    pub pg_ctl_timeout: Duration,
    /// `recovery_conf`.
    pub recovery_conf: Option<Map<String, Value>>,
    /// `create_replica_methods`, default `[basebackup]`.
    pub create_replica_methods: Vec<String>,
    /// Per-method sections, a local section replacing the DCS one of the same name.
    pub replica_method_sections: BTreeMap<String, Value>,
}

/// Combines the local `postgresql` section with the DCS one (see the module docs).
pub fn merge_postgresql(
    local: &PostgresqlSettings,
    dynamic: &DynamicPostgresql,
) -> EffectivePostgresql {
    let mut parameters: BTreeMap<String, String> = COMMAND_LINE_GUCS
        .iter()
        .filter_map(|(g, default, _)| default.map(|d| ((*g).to_owned(), d.to_owned())))
        .collect();
    parameters.extend(
        dynamic
            .parameters
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    parameters.extend(
        local
            .parameters
            .iter()
            .filter(|(k, _)| !is_command_line_guc(k))
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let dcs_methods = dynamic
        .other
        .get("create_replica_methods")
        .and_then(|v| parse_list(v).ok());
    let mut sections: BTreeMap<String, Value> = dynamic
        .other
        .iter()
        .filter(|(_, v)| v.is_object())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    sections.extend(local.replica_method_sections.clone());
    EffectivePostgresql {
        parameters,
        use_slots: dynamic.use_slots,
        use_pg_rewind: local
            .use_pg_rewind
            .or(dynamic.use_pg_rewind)
            .unwrap_or(false),
        pg_hba: local.pg_hba.clone().or_else(|| dynamic.pg_hba.clone()),
        pg_ident: local.pg_ident.clone().or_else(|| dynamic.pg_ident.clone()),
        pg_ctl_timeout: local
            .pg_ctl_timeout
            .or(dynamic.pg_ctl_timeout)
            .unwrap_or(Duration::from_secs(60)),
        recovery_conf: local
            .recovery_conf
            .clone()
            .or_else(|| dynamic.recovery_conf.clone()),
        create_replica_methods: local
            .create_replica_methods
            .clone()
            .or(dcs_methods)
            .unwrap_or_else(|| vec!["basebackup".to_owned()]),
        replica_method_sections: sections,
    }
}
