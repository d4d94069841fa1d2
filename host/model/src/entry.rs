//! Raw keys as a backend returns them, before parsing.

/// One key as the store holds it (WIT `entry`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key relative to its cluster or group path (`leader`, `members/pg1`).
    pub key: String,
    /// The raw value.
    pub value: String,
    /// The store's version of the key, opaque to the host, used for compare-and-set.
    pub version: String,
    /// The session (lease) the key is bound to, if any.
    pub session: Option<String>,
}

/// The keys of one cluster, or of one group of an MPP formation (WIT `group-entries`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupEntries {
    /// The group number; `None` for a plain cluster.
    pub group: Option<u32>,
    /// Every key under the group's path.
    pub entries: Vec<Entry>,
}
