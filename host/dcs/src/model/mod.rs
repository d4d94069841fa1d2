//! The cluster model: Patroni 4.1's DCS values, parsed and rendered.
//!
//! Keel shares a DCS with Patroni nodes and `patronictl`, so every value here is
//! read the way Patroni reads it and written byte for byte the way Patroni writes
//! it (compact JSON, Patroni's key order, LSNs as integers, ASCII-only strings).
//! Readers never fail: each parser logs garbage and falls back to the key's
//! "absent" or "empty" meaning (see each type). Writers never see garbage: they
//! render typed values.
//!
//! Each key has its own module; [`Cluster::from_entries`] puts them together.

mod cluster;
mod history;
mod json;
mod lsn;
mod member;
mod status;
mod sync;
mod values;

pub use cluster::{Cluster, Formation, Leader};
pub use history::{HistoryLine, TimelineHistory};
pub use lsn::{Lsn, ParseLsnError};
pub use member::{Member, MemberData, Role};
pub use status::Status;
pub use sync::SyncState;
pub use values::{
    ClusterConfig, Failover, Failsafe, is_valid_sysid, parse_timestamp, python_isoformat,
};
