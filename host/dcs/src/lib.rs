//! Keel's DCS layer: the Patroni-compatible cluster model, the typed [`Dcs`]
//! facade the HA loop calls, and [`memory::MemoryBackend`], the in-memory
//! reference backend.
//!
//! The cut follows the `keel:dcs` WIT contract. A backend ([`DcsBackend`], which
//! a wasm plugin sits behind) implements the semantic operations on its store and
//! moves raw strings; this crate owns the value formats, so a value written by
//! Keel over any backend is read correctly by Patroni and the other way round.
//!
//! * [`model`] — `Cluster`, `Member`, `Leader`, `SyncState`, ... parsed leniently
//!   and rendered exactly as Patroni 4.1 does.
//! * [`path`] — where a cluster, and each MPP group, lives in the store.
//! * [`DcsBackend`] — the raw WIT operations; object safe.
//! * [`Dcs`] — the typed facade: renders the model, parses reads.
//! * [`memory`] — a reference backend with leases and an injectable clock.
//! * [`DcsError`] — unavailable vs conflict vs plugin fault, never blurred.
#![deny(missing_docs)]

mod backend;
mod dcs;
mod error;
pub mod memory;
pub use keel_model as model;
pub mod path;

pub use backend::{DcsBackend, DcsFuture, Entry, GroupEntries, LoadScope, Settings, ValueKey};
pub use dcs::Dcs;
pub use error::{DcsError, Result};
pub use model::{Cluster, Formation, Member, MemberData};
