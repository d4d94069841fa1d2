//! Stage two: [`Settings`], the validated configuration every other crate reads, and the
//! entry points that produce it.
//!
//! The order is fixed and mirrors Patroni: read the file (or directory, or
//! `PATRONI_CONFIGURATION`), patch the environment overlay on top, deserialize the raw
//! structs, then check and type each section. Nothing in here performs I/O beyond reading
//! the configuration files, and nothing consults the process environment: the caller passes
//! an [`Env`].

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::ConfigError;
use crate::bootstrap::{BootstrapSettings, bootstrap};
use crate::check::{Ctx, int_in, required, text};
use crate::dynamic::DynamicConfig;
use crate::env::{Env, overlay};
use crate::load::{parse_document, patch, read_path};
use crate::merge::{EffectivePostgresql, merge_postgresql};
use crate::plugins::{PluginLimits, PluginsSettings, plugins};
use crate::postgresql::{PostgresqlSettings, postgresql};
use crate::raw::RawConfig;
use crate::sections::{
    CtlSettings, LogSettings, RestApiSettings, WatchdogSettings, ctl, log, restapi, watchdog,
};
use crate::tags::Tags;

/// Top-level keys Keel itself interprets; every other key is a plugin section.
pub const CORE_KEYS: &[&str] = &[
    "name",
    "scope",
    "namespace",
    "log",
    "restapi",
    "ctl",
    "bootstrap",
    "postgresql",
    "watchdog",
    "tags",
    "plugins",
    "thread_pool_size",
    "thread_stack_size",
];

/// Top-level keys that belong to the DCS configuration and are ignored in the local file.
const DCS_ONLY_KEYS: &[&str] = &["ttl", "loop_wait", "retry_timeout", "standby_cluster"];

pub(crate) fn is_core_key(key: &str) -> bool {
    CORE_KEYS.contains(&key) || DCS_ONLY_KEYS.contains(&key)
}

/// The validated local configuration.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// `name` (required): this member's name, unique in the cluster.
    pub name: String,
    /// `scope` (required): the cluster name.
    pub scope: String,
    /// `namespace`, normalised to `/name/` form (default `/service/`).
    pub namespace: String,
    /// `log`.
    pub log: LogSettings,
    /// `restapi`.
    pub restapi: RestApiSettings,
    /// `ctl`.
    pub ctl: CtlSettings,
    /// `bootstrap`.
    pub bootstrap: BootstrapSettings,
    /// `postgresql`.
    pub postgresql: PostgresqlSettings,
    /// `watchdog`.
    pub watchdog: WatchdogSettings,
    /// `tags`.
    pub tags: Tags,
    /// `plugins` (Keel only).
    pub plugins: PluginsSettings,
    /// `thread_pool_size` (Patroni 4), default 5; Keel accepts it but has no use for it.
    pub thread_pool_size: u32,
    /// Every top-level section Keel does not interpret (`etcd3`, `citus`, …) as JSON, with
    /// environment overrides applied, for the plugins.
    pub plugin_sections: BTreeMap<String, Value>,
    /// Everything that was accepted but looks wrong, each naming its key path.
    pub warnings: Vec<String>,
}

/// Normalises a DCS namespace: a leading and trailing `/`, runs of `/` collapsed;
/// empty means `/service/`.
pub fn normalize_namespace(namespace: &str) -> String {
    let parts: Vec<&str> = namespace.split('/').filter(|p| !p.is_empty()).collect();
    if namespace.trim().is_empty() {
        "/service/".to_owned()
    } else if parts.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}/", parts.join("/"))
    }
}

impl Settings {
    /// Loads a file, or a directory whose `*.yml`/`*.yaml` files are merged in alphabetical
    /// order, then applies the environment.
    pub fn load(path: &Path, env: &Env) -> Result<Self, ConfigError> {
        Self::from_tree(read_path(path)?, env)
    }

    /// Loads from `path` if given, else from the `PATRONI_CONFIGURATION` (or
    /// `KEEL_CONFIGURATION`) document in `env`.
    pub fn load_or_env(path: Option<&Path>, env: &Env) -> Result<Self, ConfigError> {
        match path {
            Some(path) => Self::load(path, env),
            None => {
                let doc = env
                    .configuration_document()
                    .ok_or(ConfigError::NoConfiguration)?;
                Self::from_tree(parse_document(doc, "PATRONI_CONFIGURATION")?, env)
            }
        }
    }

    /// Parses one YAML document, then applies the environment.
    pub fn from_yaml_str(text: &str, env: &Env) -> Result<Self, ConfigError> {
        Self::from_tree(parse_document(text, "<string>")?, env)
    }

    /// Validates an already merged JSON tree, then applies the environment.
    pub fn from_tree(mut tree: Map<String, Value>, env: &Env) -> Result<Self, ConfigError> {
        let present: Vec<String> = tree.keys().cloned().collect();
        let (env_overlay, env_warnings) = overlay(env, &present);
        patch(&mut tree, env_overlay);
        let mut ctx = Ctx {
            warnings: env_warnings,
        };
        let raw: RawConfig = crate::raw::parse(Value::Object(tree))?;
        Self::from_raw(raw, &mut ctx).map(|mut s| {
            s.warnings = ctx.warnings;
            s
        })
    }

    fn from_raw(raw: RawConfig, ctx: &mut Ctx) -> Result<Self, ConfigError> {
        let mut plugin_sections = BTreeMap::new();
        for (key, value) in raw.extra {
            if DCS_ONLY_KEYS.contains(&key.as_str()) {
                ctx.warn(
                    &key,
                    "comes from the DCS configuration (bootstrap.dcs); ignored in the local file",
                );
            } else {
                plugin_sections.insert(key, value);
            }
        }
        let (tags, tag_warnings) = Tags::parse(&raw.tags.unwrap_or_default())?;
        ctx.warnings.extend(tag_warnings);
        if let Some(size) = raw.thread_stack_size
            && size.0 < 64 * 1024
        {
            ctx.warn("thread_stack_size", "below 64kB; ignored");
        }
        Ok(Self {
            name: required(raw.name, "name")?,
            scope: required(raw.scope, "scope")?,
            namespace: normalize_namespace(&text(raw.namespace).unwrap_or_default()),
            log: log(raw.log.unwrap_or_default(), ctx)?,
            restapi: restapi(raw.restapi.unwrap_or_default(), ctx)?,
            ctl: ctl(raw.ctl.unwrap_or_default(), ctx)?,
            bootstrap: bootstrap(raw.bootstrap.unwrap_or_default(), ctx)?,
            postgresql: postgresql(raw.postgresql.unwrap_or_default(), ctx)?,
            watchdog: watchdog(raw.watchdog.unwrap_or_default(), ctx)?,
            tags,
            plugins: plugins(raw.plugins.unwrap_or_default(), ctx)?,
            thread_pool_size: int_in(raw.thread_pool_size, "thread_pool_size", 5, u32::MAX.into())?
                .unwrap_or(5),
            plugin_sections,
            warnings: Vec::new(),
        })
    }

    /// Emits every warning through `tracing` (call once logging is set up).
    pub fn log_warnings(&self) {
        for warning in &self.warnings {
            tracing::warn!(target: "keel_config", "{warning}");
        }
    }

    /// Resource limits for the plugin called `name`: its override, else the global limits.
    pub fn plugin_limits(&self, name: &str) -> PluginLimits {
        self.plugins.limits_for(name)
    }

    /// The `postgresql` configuration in force under the given dynamic configuration.
    pub fn effective_postgresql(&self, dynamic: &DynamicConfig) -> EffectivePostgresql {
        merge_postgresql(&self.postgresql, &dynamic.postgresql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_are_normalised() {
        for (given, want) in [
            ("", "/service/"),
            ("/service", "/service/"),
            ("service", "/service/"),
            ("/service/", "/service/"),
            ("//a///b//", "/a/b/"),
            ("/", "/"),
        ] {
            assert_eq!(normalize_namespace(given), want, "{given:?}");
        }
    }
}
