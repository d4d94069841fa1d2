//! Which plugins a configuration selects and what each is granted.
//!
//! A top-level config section named like a plugin (or one of its aliases)
//! selects and configures it: exactly one DCS backend, at most one MPP handler.
//! The daemon (`keeld`) and the operator CLI (`keelctl`) both call [`select`],
//! so `keelctl` reads the DCS through the very plugin, endpoints and grants the
//! daemon uses. Capabilities are decided here, from the operator's config, and
//! never by the plugin. This crate does no I/O beyond what the plugin catalog
//! already loaded.

mod grants;
mod selection;

pub use grants::{etcd_request_timeout, for_plugin};
pub use selection::{Choice, Selected, select};

/// Why a configuration does not select a usable set of plugins.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A section is named like no plugin in the directory.
    #[error(
        "config section `{section}` selects a plugin, but none in the plugin directory answers to that name; available: {available}{refused}"
    )]
    UnknownSection {
        /// The section.
        section: String,
        /// The plugins in the directory, comma-separated.
        available: String,
        /// Components the directory refused, one `\n  refused: ...` line each.
        refused: String,
    },
    /// More than one section selects a plugin of the same kind.
    #[error("sections {sections} each select {what}")]
    TooMany {
        /// The sections, comma-separated.
        sections: String,
        /// What is allowed, as a phrase.
        what: &'static str,
    },
    /// No section selects a DCS plugin.
    #[error(
        "no DCS configured: add a section that selects a DCS plugin, such as `etcd3: {{hosts: 127.0.0.1:2379}}`; DCS plugins available: {available}{refused}"
    )]
    NoDcs {
        /// The DCS plugins in the directory, comma-separated, or `none`.
        available: String,
        /// Components the directory refused.
        refused: String,
    },
    /// A section names no endpoints for its DCS.
    #[error("{section}: names no endpoints; set {section}.hosts (for example 127.0.0.1:2379)")]
    NoEndpoints {
        /// The section.
        section: String,
    },
    /// A section's endpoints or credentials are malformed.
    #[error("{problem}")]
    Section {
        /// The section.
        section: String,
        /// What is wrong, naming the key.
        problem: String,
    },
}
