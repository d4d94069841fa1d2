//! `plugins`: Keel's own section, where WASM plugins live and what each may consume.
//!
//! Patroni has no equivalent, so this is the one section with Keel-only semantics. Limits are
//! resolved here (global defaults, then a per-plugin override) so that the runtime receives a
//! finished [`PluginLimits`] and never re-implements the fallback.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::ConfigError;
use crate::check::{Ctx, int_in, path};
use crate::error::join;
use crate::raw::{RawLimits, RawPlugins};

/// Default memory limit of one plugin instance, in MiB.
pub const DEFAULT_MEMORY_MB: u32 = 64;
/// Default time limit of one call into a plugin, in milliseconds.
pub const DEFAULT_CALL_TIMEOUT_MS: u32 = 5000;

/// Resource limits of one plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PluginLimits {
    /// Linear memory limit in MiB.
    pub memory_mb: u32,
    /// Time limit of one call in milliseconds.
    pub call_timeout_ms: u32,
}

impl Default for PluginLimits {
    fn default() -> Self {
        Self {
            memory_mb: DEFAULT_MEMORY_MB,
            call_timeout_ms: DEFAULT_CALL_TIMEOUT_MS,
        }
    }
}

/// A per-plugin override; unset fields fall back to the global limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitsOverride {
    /// `memory_mb`.
    pub memory_mb: Option<u32>,
    /// `call_timeout_ms`.
    pub call_timeout_ms: Option<u32>,
}

/// `plugins`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PluginsSettings {
    /// `dir`: where plugin components are found.
    pub dir: Option<PathBuf>,
    /// `cache_dir` as given; see [`PluginsSettings::cache_dir`].
    pub cache_dir: Option<PathBuf>,
    /// `limits`, with defaults filled in.
    pub limits: PluginLimits,
    /// `overrides.<plugin name>`.
    pub overrides: BTreeMap<String, LimitsOverride>,
}

impl PluginsSettings {
    /// The compilation cache directory: `cache_dir`, else `<dir>/.cache`.
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.cache_dir
            .clone()
            .or_else(|| self.dir.as_ref().map(|d| d.join(".cache")))
    }

    /// The limits for one plugin: its override where set, the global limits otherwise.
    pub fn limits_for(&self, plugin: &str) -> PluginLimits {
        let o = self.overrides.get(plugin).copied().unwrap_or_default();
        PluginLimits {
            memory_mb: o.memory_mb.unwrap_or(self.limits.memory_mb),
            call_timeout_ms: o.call_timeout_ms.unwrap_or(self.limits.call_timeout_ms),
        }
    }
}

fn limits(raw: &RawLimits, key: &str, ctx: &mut Ctx) -> Result<LimitsOverride, ConfigError> {
    ctx.unknown_keys(key, &raw.extra);
    Ok(LimitsOverride {
        memory_mb: int_in(raw.memory_mb, &join(key, "memory_mb"), 1, u32::MAX.into())?,
        call_timeout_ms: int_in(
            raw.call_timeout_ms,
            &join(key, "call_timeout_ms"),
            1,
            u32::MAX.into(),
        )?,
    })
}

pub(crate) fn plugins(raw: RawPlugins, ctx: &mut Ctx) -> Result<PluginsSettings, ConfigError> {
    ctx.unknown_keys("plugins", &raw.extra);
    let global = limits(&raw.limits.unwrap_or_default(), "plugins.limits", ctx)?;
    let mut overrides = BTreeMap::new();
    for (name, o) in raw.overrides.unwrap_or_default() {
        let key = format!("plugins.overrides.{name}");
        overrides.insert(name, limits(&o, &key, ctx)?);
    }
    Ok(PluginsSettings {
        dir: path(raw.dir),
        cache_dir: path(raw.cache_dir),
        limits: PluginLimits {
            memory_mb: global.memory_mb.unwrap_or(DEFAULT_MEMORY_MB),
            call_timeout_ms: global.call_timeout_ms.unwrap_or(DEFAULT_CALL_TIMEOUT_MS),
        },
        overrides,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_fall_back_per_field() {
        let mut p = PluginsSettings {
            dir: Some("/p".into()),
            ..Default::default()
        };
        p.limits.memory_mb = 128;
        p.overrides.insert(
            "etcd".into(),
            LimitsOverride {
                memory_mb: None,
                call_timeout_ms: Some(100),
            },
        );
        assert_eq!(
            p.limits_for("etcd"),
            PluginLimits {
                memory_mb: 128,
                call_timeout_ms: 100
            }
        );
        assert_eq!(
            p.limits_for("citus"),
            PluginLimits {
                memory_mb: 128,
                call_timeout_ms: 5000
            }
        );
        assert_eq!(p.cache_dir(), Some(PathBuf::from("/p/.cache")));
    }
}
