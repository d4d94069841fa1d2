//! # keel-runtime
//!
//! Loads Keel plugins (WebAssembly components) and runs them safely.
//!
//! * One [`Runtime`] per process: one wasmtime `Engine`, an epoch ticker, and an
//!   on-disk cache of compiled code so a second start compiles nothing.
//! * [`PluginCatalog::load_dir`] scans a plugin directory and checks every
//!   component: which world it implements, that every export is there with the
//!   right types, that it imports nothing the world does not grant, and that its
//!   self-description agrees. A wrong component is refused with an error naming
//!   the file, the world and what is wrong.
//! * [`DcsPlugin`] and [`MppPlugin`] put a loaded component behind Rust APIs
//!   (`DcsPlugin` implements [`keel_dcs::DcsBackend`]). Every call is bounded by a
//!   deadline and every instance by a memory limit; a trap, a deadline hit or a
//!   memory-limit hit fails that one call with a [`PluginError`] that blames the
//!   plugin, and the next call gets a fresh instance.
//! * Capabilities ([`capabilities`]) are granted per plugin: a DCS plugin gets
//!   etcd pointed at its own config section's endpoints, an MPP plugin gets the
//!   local PostgreSQL. No plugin gets a filesystem, environment, or sockets.

mod bindings;
mod cache;
pub mod capabilities;
mod catalog;
mod dcs_plugin;
mod error;
mod instance;
mod limits;
mod metrics;
mod mpp_plugin;
mod runtime;
mod state;

pub use capabilities::Grants;
pub use catalog::{LoadedPlugin, PluginCatalog, PluginDescription, PluginKind, RejectedPlugin};
pub use dcs_plugin::DcsPlugin;
pub use error::{LoadError, PluginError};
pub use limits::PluginLimits;
pub use metrics::{LATENCY_BUCKETS, MetricsSnapshot, PluginMetrics};
pub use mpp_plugin::{
    BootstrapContext, GroupView, MemberView, MppError, MppEvent, MppEventKind, MppPlugin,
    Parameter, SlotInfo,
};
pub use runtime::{Runtime, RuntimeOptions};

/// The `keel:*` WIT version this host implements.
pub const WIT_VERSION: &str = "0.1.0";
