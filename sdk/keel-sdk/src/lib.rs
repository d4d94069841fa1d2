//! # keel-sdk
//!
//! Everything a third party needs to write a Keel plugin in Rust: a DCS backend
//! (where the cluster state lives: etcd, Consul, ...) or an MPP handler (how a
//! multi-node database such as Citus is kept consistent).
//!
//! A plugin implements one trait and calls one macro:
//!
//! ```ignore
//! use keel_sdk::mpp::{MppPlugin, MppError, Parameter, Event, GroupView, BootstrapContext};
//! use keel_sdk::PluginInfo;
//!
//! struct Hello { group: u32 }
//!
//! impl MppPlugin for Hello {
//!     fn describe() -> PluginInfo {
//!         PluginInfo::new("hello", env!("CARGO_PKG_VERSION"), "says hello on every cycle")
//!     }
//!     fn validate_config(config: String) -> Result<Self, MppError> { Ok(Hello { group: 0 }) }
//!     fn group(&self) -> u32 { self.group }
//!     fn adjust_gucs(&mut self, _: Vec<Parameter>) -> Vec<Parameter> { Vec::new() }
//!     fn bootstrap(&mut self, _: BootstrapContext) -> Result<(), MppError> { Ok(()) }
//!     fn handle_event(&mut self, _: Event) -> Result<(), MppError> { Ok(()) }
//!     fn sync_meta_data(&mut self, _: Vec<GroupView>) -> Result<(), MppError> {
//!         keel_sdk::host::log::info("hello from the coordinator");
//!         Ok(())
//!     }
//! }
//!
//! keel_sdk::export_mpp_plugin!(Hello);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`; the `.wasm` file is
//! a component the daemon loads from its plugin directory.
//!
//! Host capabilities are in [`host`]: logging, SQL on the local PostgreSQL
//! (MPP plugins), and a typed etcd client (DCS plugins). Natively (not on wasm32)
//! the same calls go to a fake host from [`testing`], so plugin logic is unit
//! tested with `cargo test` and no wasm at all.

// Lets generated code name this crate as `::keel_sdk` from inside and outside alike.
extern crate self as keel_sdk;

pub mod dcs;
pub mod host;
pub mod mpp;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;

#[doc(hidden)]
pub mod bindings;
mod info;

pub use info::PluginInfo;

/// The version of the `keel:*` WIT packages this SDK builds plugins against.
pub const WIT_VERSION: &str = "0.1.0";

/// The version of this SDK; stamped into every plugin's self-description.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Used by the export macros; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::bindings;
    pub use crate::dcs::glue as dcs_glue;
    pub use crate::mpp::glue as mpp_glue;
}
