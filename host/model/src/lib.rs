//! Keel's cluster model: Patroni 4.1's DCS values, parsed and rendered.
//!
//! A crate of its own, without I/O or an async runtime, so that the pure HA
//! decision (`keel-ha`) and the simulation can share it with the DCS layer.
//!
//! Keel shares a DCS with Patroni nodes and `patronictl`, so every value here is
//! read the way Patroni reads it and written byte for byte the way Patroni writes
//! it (compact JSON, Patroni's key order, LSNs as integers, ASCII-only strings).
//! Readers never fail: each parser logs garbage and falls back to the key's
//! "absent" or "empty" meaning (see each type). Writers never see garbage: they
//! render typed values.
//!
//! Each key has its own module; [`Cluster::from_entries`] puts them together.
#![deny(missing_docs)]

mod cluster;
mod entry;
mod history;
mod json;
mod lsn;
mod member;
mod status;
mod sync;
mod values;

pub use cluster::{Cluster, Formation, Leader};
pub use entry::{Entry, GroupEntries};
pub use history::{HistoryLine, TimelineHistory};
pub use lsn::{Lsn, ParseLsnError};
pub use member::{Member, MemberData, Role};
pub use status::Status;
pub use sync::SyncState;
pub use values::{
    ClusterConfig, Failover, Failsafe, is_valid_sysid, parse_timestamp, python_isoformat,
};
