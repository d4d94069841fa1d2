//! `bootstrap`: what the member that wins the initialize race does to create the cluster.
//!
//! Read once per cluster lifetime, but a mistake here is only discovered at the worst moment
//! (a fresh cluster that will not come up), so it is validated eagerly: forbidden `initdb`
//! options are errors and a custom method must have a `command`. `bootstrap.dcs` is both kept
//! verbatim (it is written to the DCS `config` key as given) and typed as a [`DynamicConfig`].

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::ConfigError;
use crate::check::{Ctx, text};
use crate::dynamic::DynamicConfig;
use crate::lenient::{parse_bool, parse_text};
use crate::raw::RawBootstrap;

/// One `bootstrap.initdb` entry: a bare flag or a `{option: value}` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitdbOption {
    /// `data-checksums` → `--data-checksums`.
    Flag(String),
    /// `{encoding: UTF8}` → `--encoding=UTF8`.
    Value(String, String),
}

impl InitdbOption {
    /// The command-line argument for initdb.
    pub fn to_arg(&self) -> String {
        match self {
            Self::Flag(name) => format!("--{name}"),
            Self::Value(name, value) => format!("--{name}={value}"),
        }
    }
}

/// initdb options Keel sets itself (Patroni refuses them too).
pub const FORBIDDEN_INITDB_OPTIONS: &[&str] =
    &["pgdata", "nosync", "pwfile", "sync-only", "version"];

/// A custom bootstrap method section, `bootstrap.<method>`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct CustomBootstrap {
    /// `command` to run instead of initdb.
    pub command: String,
    /// `keep_existing_recovery_conf`.
    pub keep_existing_recovery_conf: bool,
    /// `no_params`: do not append `--scope`/`--datadir`.
    pub no_params: bool,
    /// `recovery_conf` to write after the command, as JSON.
    pub recovery_conf: Option<Map<String, Value>>,
    /// Every other key, passed to the command as `--key=value`.
    pub extra: Map<String, Value>,
}

/// `bootstrap`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BootstrapSettings {
    /// `dcs` verbatim: the initial DCS `config` value (an object, `{}` when absent).
    pub dcs: Value,
    /// `dcs` typed with Patroni's defaults.
    pub dcs_config: DynamicConfig,
    /// `method`, default `initdb`.
    pub method: String,
    /// `initdb` options in order.
    pub initdb: Vec<InitdbOption>,
    /// Custom method sections by name.
    pub custom_methods: BTreeMap<String, CustomBootstrap>,
    /// `post_bootstrap` (or its older name `post_init`): a script run after bootstrap.
    pub post_bootstrap: Option<String>,
    /// `pg_hba` lines to use right after bootstrap.
    pub pg_hba: Option<Vec<String>>,
}

impl BootstrapSettings {
    /// Use `mode` as `bootstrap.dcs.synchronous_mode` unless the file sets it
    /// (an MPP formation defaults to quorum commit, as Patroni does for Citus).
    pub fn default_synchronous_mode(&mut self, mode: crate::SynchronousMode) {
        let Value::Object(map) = &mut self.dcs else {
            return;
        };
        if map.contains_key("synchronous_mode") {
            return;
        }
        let text = match mode {
            crate::SynchronousMode::Off => "off",
            crate::SynchronousMode::On => "on",
            crate::SynchronousMode::Quorum => "quorum",
        };
        map.insert(
            "synchronous_mode".to_owned(),
            Value::String(text.to_owned()),
        );
        self.dcs_config.synchronous_mode = mode;
    }
}

impl Default for BootstrapSettings {
    fn default() -> Self {
        Self {
            dcs: Value::Object(Map::new()),
            dcs_config: DynamicConfig::default(),
            method: "initdb".to_owned(),
            initdb: Vec::new(),
            custom_methods: BTreeMap::new(),
            post_bootstrap: None,
            pg_hba: None,
        }
    }
}

fn initdb_option(value: &Value, key: &str, out: &mut Vec<InitdbOption>) -> Result<(), ConfigError> {
    let check = |name: &str| {
        if FORBIDDEN_INITDB_OPTIONS.contains(&name) {
            Err(ConfigError::invalid(
                key,
                format!("initdb option {name:?} is set by Keel and not allowed here"),
            ))
        } else {
            Ok(())
        }
    };
    match value {
        Value::String(flag) => {
            check(flag)?;
            out.push(InitdbOption::Flag(flag.clone()));
        }
        Value::Object(map) => {
            for (name, v) in map {
                check(name)?;
                let v =
                    parse_text(v).map_err(|p| ConfigError::invalid(format!("{key}.{name}"), p))?;
                out.push(InitdbOption::Value(name.clone(), v));
            }
        }
        other => {
            return Err(ConfigError::invalid(
                key,
                format!("expected a flag or {{option: value}}, got {other}"),
            ));
        }
    }
    Ok(())
}

fn custom(name: &str, mut map: Map<String, Value>) -> Result<CustomBootstrap, ConfigError> {
    let key = |k: &str| format!("bootstrap.{name}.{k}");
    let flag = |map: &mut Map<String, Value>, k: &str| -> Result<bool, ConfigError> {
        map.remove(k)
            .filter(|v| !v.is_null())
            .map_or(Ok(false), |v| {
                parse_bool(&v).map_err(|p| ConfigError::invalid(key(k), p))
            })
    };
    let command = match map.remove("command") {
        Some(v) if !v.is_null() => {
            parse_text(&v).map_err(|p| ConfigError::invalid(key("command"), p))?
        }
        _ => return Err(ConfigError::missing(key("command"))),
    };
    let recovery_conf = match map.remove("recovery_conf") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(m),
        Some(other) => {
            return Err(ConfigError::invalid(
                key("recovery_conf"),
                format!("expected a mapping, got {other}"),
            ));
        }
    };
    Ok(CustomBootstrap {
        command,
        keep_existing_recovery_conf: flag(&mut map, "keep_existing_recovery_conf")?,
        no_params: flag(&mut map, "no_params")?,
        recovery_conf,
        extra: map,
    })
}

pub(crate) fn bootstrap(
    raw: RawBootstrap,
    ctx: &mut Ctx,
) -> Result<BootstrapSettings, ConfigError> {
    let dcs = match raw.dcs {
        None | Some(Value::Null) => Value::Object(Map::new()),
        Some(v @ Value::Object(_)) => v,
        Some(other) => {
            return Err(ConfigError::invalid(
                "bootstrap.dcs",
                format!("expected a mapping, got {other}"),
            ));
        }
    };
    let (dcs_config, dcs_warnings) = DynamicConfig::from_value_lenient(&dcs);
    for w in dcs_warnings {
        // Reader warnings start with the key path inside the document.
        match w.strip_prefix("config: ") {
            Some(rest) => ctx.warn("bootstrap.dcs", rest),
            None => ctx.warnings.push(format!("bootstrap.dcs.{w}")),
        }
    }
    let method = text(raw.method).unwrap_or_else(|| "initdb".to_owned());
    let mut initdb = Vec::new();
    for (i, v) in raw.initdb.unwrap_or_default().iter().enumerate() {
        initdb_option(v, &format!("bootstrap.initdb[{i}]"), &mut initdb)?;
    }
    if raw.users.is_some() {
        ctx.warn(
            "bootstrap.users",
            "removed in Patroni 4; create users in post_bootstrap instead; ignored",
        );
    }
    let mut custom_methods = BTreeMap::new();
    for (name, value) in raw.extra {
        match value {
            Value::Object(map) => {
                custom_methods.insert(name.clone(), custom(&name, map)?);
            }
            _ => ctx.warn(&format!("bootstrap.{name}"), "unknown key, ignored"),
        }
    }
    if method != "initdb" && !custom_methods.contains_key(&method) {
        return Err(ConfigError::missing(format!("bootstrap.{method}.command")));
    }
    Ok(BootstrapSettings {
        dcs,
        dcs_config,
        method,
        initdb,
        custom_methods,
        post_bootstrap: text(raw.post_bootstrap).or_else(|| text(raw.post_init)),
        pg_hba: raw.pg_hba.map(|v| v.into_iter().map(|t| t.0).collect()),
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_mpp_default_synchronous_mode_never_overrides_the_file() {
        let mut unset = BootstrapSettings::default();
        unset.default_synchronous_mode(crate::SynchronousMode::Quorum);
        assert_eq!(unset.dcs["synchronous_mode"], "quorum");
        assert_eq!(
            unset.dcs_config.synchronous_mode,
            crate::SynchronousMode::Quorum
        );
        let mut set = BootstrapSettings {
            dcs: serde_json::json!({"synchronous_mode": false}),
            ..BootstrapSettings::default()
        };
        set.default_synchronous_mode(crate::SynchronousMode::Quorum);
        assert_eq!(set.dcs["synchronous_mode"], false);
        assert_eq!(set.dcs_config.synchronous_mode, crate::SynchronousMode::Off);
    }

    use super::*;
    use serde_json::json;

    fn opts(v: &Value) -> Result<Vec<InitdbOption>, ConfigError> {
        let mut out = Vec::new();
        initdb_option(v, "bootstrap.initdb[0]", &mut out).map(|()| out)
    }

    #[test]
    fn initdb_flags_and_values() {
        let o = opts(&json!({"encoding": "UTF8", "locale": "C"})).unwrap();
        assert_eq!(o[0].to_arg(), "--encoding=UTF8");
        assert_eq!(
            opts(&json!("data-checksums")).unwrap()[0].to_arg(),
            "--data-checksums"
        );
    }

    #[test]
    fn forbidden_initdb_options_name_their_path() {
        for bad in [json!("nosync"), json!({"pgdata": "/x"}), json!("sync-only")] {
            let err = opts(&bad).unwrap_err();
            assert_eq!(err.path(), Some("bootstrap.initdb[0]"), "{err}");
        }
    }

    #[test]
    fn custom_method_needs_command() {
        let err = custom("clone", Map::new()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bootstrap.clone.command: required key is missing"
        );
        let Value::Object(m) = json!({"command": "x.sh", "no_params": "yes", "target": "t"}) else {
            unreachable!()
        };
        let c = custom("clone", m).unwrap();
        assert!(c.no_params && !c.keep_existing_recovery_conf);
        assert_eq!(c.extra.get("target"), Some(&json!("t")));
    }
}
