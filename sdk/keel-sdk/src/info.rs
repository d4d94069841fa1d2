//! The plugin's self-description, as authors write it.

/// Who a plugin is: its name (which selects its config section), version and a
/// one-line summary. The SDK adds the kind, the WIT version and its own version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginInfo {
    /// Plugin name: lower-case letters, digits and `-`.
    pub name: &'static str,
    /// Other config section names that select this plugin.
    pub aliases: &'static [&'static str],
    /// The plugin's version (use `env!("CARGO_PKG_VERSION")`).
    pub version: &'static str,
    /// One line for operators.
    pub summary: &'static str,
}

impl PluginInfo {
    /// A description without aliases.
    pub const fn new(name: &'static str, version: &'static str, summary: &'static str) -> Self {
        Self {
            name,
            aliases: &[],
            version,
            summary,
        }
    }

    /// The same description, also selected by these config section names.
    pub const fn with_aliases(mut self, aliases: &'static [&'static str]) -> Self {
        self.aliases = aliases;
        self
    }

    /// The world-specific description record; each world has its own generated
    /// copy of `keel:host/plugin.description`, hence the macro.
    pub(crate) fn aliases_owned(&self) -> Vec<String> {
        self.aliases.iter().map(|a| (*a).to_owned()).collect()
    }
}

/// Build a world's generated `description` record from a [`PluginInfo`].
macro_rules! description {
    ($module:path, $info:expr, $kind:ident) => {{
        use $module as plugin;
        let info = $info;
        plugin::Description {
            name: info.name.to_owned(),
            aliases: info.aliases_owned(),
            kind: plugin::Kind::$kind,
            version: info.version.to_owned(),
            wit_version: crate::WIT_VERSION.to_owned(),
            sdk_version: Some(crate::SDK_VERSION.to_owned()),
            summary: info.summary.to_owned(),
        }
    }};
}
pub(crate) use description;
