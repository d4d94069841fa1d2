//! Errors: [`LoadError`] when a component is refused, [`PluginError`] when a call
//! fails. Both name the plugin (or file) so an operator knows whom to blame.

use std::path::PathBuf;
use std::time::Duration;

/// A plugin could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The wasmtime engine could not be set up.
    #[error("plugin runtime: {reason}")]
    Engine {
        /// What failed.
        reason: String,
    },
    /// The plugin directory could not be read.
    #[error("plugin directory {}: {reason}", dir.display())]
    Directory {
        /// The directory.
        dir: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The compile cache could not be used.
    #[error("plugin cache {}: {reason}", path.display())]
    Cache {
        /// The cache directory.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The file is not a valid component for this engine.
    #[error("plugin {}: not a loadable WebAssembly component: {reason}", file.display())]
    Compile {
        /// The file.
        file: PathBuf,
        /// What wasmtime said.
        reason: String,
    },
    /// The component implements no Keel world.
    #[error(
        "plugin {}: exports neither keel:dcs/backend@{version} (world keel:dcs/dcs-plugin) nor keel:mpp/handler@{version} (world keel:mpp/mpp-plugin); it exports: {found}",
        file.display(), version = crate::WIT_VERSION
    )]
    NoWorld {
        /// The file.
        file: PathBuf,
        /// The component's exports, comma separated.
        found: String,
    },
    /// The component does not fit its world: a missing or mistyped export, or an
    /// import the world does not grant.
    #[error("plugin {}: does not implement world {world}: {reason}", file.display())]
    WorldMismatch {
        /// The file.
        file: PathBuf,
        /// The world it claims by its exports.
        world: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// The self-description is wrong or disagrees with the world.
    #[error("plugin {}: bad self-description: {reason}", file.display())]
    Description {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Describing the plugin failed.
    #[error("plugin {}: describe failed: {source}", file.display())]
    Describe {
        /// The file.
        file: PathBuf,
        /// The call's failure.
        source: PluginError,
    },
    /// Two files claim the same plugin name or alias.
    #[error("plugins {} and {} both answer to the name `{name}`", first.display(), second.display())]
    Duplicate {
        /// The name or alias.
        name: String,
        /// The file loaded first.
        first: PathBuf,
        /// The file refused.
        second: PathBuf,
    },
}

/// A plugin call failed. Every variant blames the plugin by name; none of them
/// is an answer of the plugin's domain (those are the inner errors of each call).
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The plugin trapped (panic, abort, invalid operation).
    #[error("plugin `{plugin}` trapped in `{call}`: {reason}")]
    Trap {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The trap and anything the plugin printed to stderr.
        reason: String,
    },
    /// The call ran past its deadline and was interrupted.
    #[error("plugin `{plugin}` did not finish `{call}` within {:?}", budget)]
    Deadline {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The budget it had.
        budget: Duration,
    },
    /// The plugin tried to grow its memory past the limit.
    #[error("plugin `{plugin}` exceeded its memory limit of {limit_bytes} bytes in `{call}`")]
    MemoryLimit {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The limit.
        limit_bytes: usize,
    },
    /// The plugin returned a value that breaks the contract.
    #[error("plugin `{plugin}` returned an invalid value from `{call}`: {problem}")]
    BadReturn {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The plugin could not be instantiated.
    #[error("plugin `{plugin}` could not be instantiated: {reason}")]
    Instantiate {
        /// Plugin name.
        plugin: String,
        /// What failed.
        reason: String,
    },
}

impl PluginError {
    /// The plugin to blame.
    pub fn plugin(&self) -> &str {
        match self {
            Self::Trap { plugin, .. }
            | Self::Deadline { plugin, .. }
            | Self::MemoryLimit { plugin, .. }
            | Self::BadReturn { plugin, .. }
            | Self::Instantiate { plugin, .. } => plugin,
        }
    }
}
