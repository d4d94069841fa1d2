//! Choosing plugins per cluster: a top-level config section named like a plugin
//! (or one of its aliases) selects and configures it. Exactly one DCS backend,
//! at most one MPP handler.

use std::sync::Arc;
use std::time::Duration;

use keel_config::Settings;
use keel_runtime::{Grants, LoadedPlugin, PluginCatalog, PluginKind, PluginLimits};

use crate::{Error, grants};

/// One selected plugin with what it is granted.
pub struct Choice {
    /// The config section that selected it (`etcd3`, `citus`).
    pub section: String,
    pub plugin: Arc<LoadedPlugin>,
    pub grants: Grants,
    pub limits: PluginLimits,
}

impl Choice {
    /// The plugin's config section as JSON.
    pub fn config_json(&self, settings: &Settings) -> String {
        settings
            .plugin_sections
            .get(&self.section)
            .map(ToString::to_string)
            .unwrap_or_else(|| "{}".into())
    }
}

/// The plugins this member runs with.
pub struct Selected {
    pub dcs: Choice,
    pub mpp: Option<Choice>,
}

fn limits(settings: &Settings, name: &str) -> PluginLimits {
    let configured = settings.plugin_limits(name);
    PluginLimits {
        memory_bytes: configured.memory_mb as usize * 1024 * 1024,
        call_timeout: Duration::from_millis(configured.call_timeout_ms.into()),
    }
}

fn refused(catalog: &PluginCatalog) -> String {
    if catalog.rejected().is_empty() {
        return String::new();
    }
    let lines: Vec<String> = catalog
        .rejected()
        .iter()
        .map(|r| format!("\n  refused: {}", r.error))
        .collect();
    lines.concat()
}

/// Select the plugins `settings` asks for from `catalog`.
///
/// `retry_timeout` bounds the DCS client's requests (see [`crate::etcd_request_timeout`]).
pub fn select(
    settings: &Settings,
    catalog: &PluginCatalog,
    retry_timeout: u32,
) -> Result<Selected, Error> {
    let mut dcs: Vec<Choice> = Vec::new();
    let mut mpp: Vec<Choice> = Vec::new();
    for section in settings.plugin_sections.keys() {
        let Some(plugin) = catalog.find(section) else {
            return Err(Error::UnknownSection {
                section: section.clone(),
                available: catalog.available(),
                refused: refused(catalog),
            });
        };
        let kind = plugin.description().kind;
        let choice = Choice {
            section: section.clone(),
            plugin: plugin.clone(),
            grants: grants::for_plugin(settings, plugin, section, retry_timeout)?,
            limits: limits(settings, &plugin.description().name),
        };
        match kind {
            PluginKind::Dcs => dcs.push(choice),
            PluginKind::Mpp => mpp.push(choice),
        }
    }
    let names = |choices: &[Choice]| {
        choices
            .iter()
            .map(|c| c.section.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if dcs.len() > 1 {
        return Err(Error::TooMany {
            sections: names(&dcs),
            what: "a DCS plugin; a member uses exactly one DCS",
        });
    }
    if mpp.len() > 1 {
        return Err(Error::TooMany {
            sections: names(&mpp),
            what: "an MPP plugin; a member uses at most one",
        });
    }
    let Some(dcs) = dcs.pop() else {
        let available: Vec<String> = catalog
            .plugins()
            .iter()
            .filter(|p| p.description().kind == PluginKind::Dcs)
            .map(|p| p.description().name.clone())
            .collect();
        return Err(Error::NoDcs {
            available: if available.is_empty() {
                "none".into()
            } else {
                available.join(", ")
            },
            refused: refused(catalog),
        });
    };
    Ok(Selected {
        dcs,
        mpp: mpp.pop(),
    })
}
