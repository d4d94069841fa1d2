//! The low-level backend contract: the `keel:dcs` WIT `backend` interface in Rust.
//!
//! A [`DcsBackend`] moves raw strings: it never parses member JSON, failover
//! requests or anything else. That is the host's job ([`crate::Dcs`]), so every
//! backend stores byte-identical, Patroni-compatible values and none of them
//! re-implements the formats. The runtime implements this trait over a wasm
//! component; [`crate::memory::MemoryBackend`] implements it natively.
//!
//! The trait is object safe (`Arc<dyn DcsBackend>`) and its futures are `Send`, so
//! an HA loop can hold one behind an `Arc` and call it from `tokio::spawn`ed tasks.
//! Arguments are owned so that the futures borrow nothing but `self`.

use std::future::Future;
use std::pin::Pin;

use crate::error::DcsError;

/// The future every [`DcsBackend`] operation returns.
pub type DcsFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DcsError>> + Send + 'a>>;

pub use keel_model::{Entry, GroupEntries};

/// What [`DcsBackend::load`] reads (WIT `load-scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadScope {
    /// The member's own cluster, or its own group in a formation.
    OwnGroup,
    /// One group of the formation (a worker reading the coordinator, group 0).
    Group(u32),
    /// Every group of the formation in one read (the coordinator's view).
    Formation,
}

/// Keys the host writes through [`DcsBackend::set_value`] (WIT `value-key`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKey {
    /// `config`: the dynamic configuration (JSON).
    Config,
    /// `failover`: a requested switchover or failover (JSON).
    Failover,
    /// `sync`: the synchronous replication state (JSON).
    Sync,
    /// `history`: the timeline history (JSON).
    History,
    /// `status`: the leader's optime and slots (JSON).
    Status,
    /// `failsafe`: the members confirmed for failsafe mode (JSON).
    Failsafe,
    /// `optime/leader`: the legacy optime key (a decimal LSN).
    OptimeLeader,
}

impl ValueKey {
    /// The key relative to the cluster path.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Failover => "failover",
            Self::Sync => "sync",
            Self::History => "history",
            Self::Status => "status",
            Self::Failsafe => "failsafe",
            Self::OptimeLeader => "optime/leader",
        }
    }
}

impl std::fmt::Display for ValueKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where this member sits and how the loop is timed (WIT `settings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The DCS namespace, normalised to start and end with `/` (`/service/`).
    pub namespace: String,
    /// The cluster name (Patroni's `scope`).
    pub scope: String,
    /// This member's group in an MPP formation; `None` for a plain cluster.
    pub group: Option<u32>,
    /// This member's name.
    pub member: String,
    /// Leader lock time to live, seconds.
    pub ttl: u32,
    /// Seconds between HA cycles.
    pub loop_wait: u32,
    /// Budget for retrying a DCS operation, seconds.
    pub retry_timeout: u32,
    /// The plugin's own config section, as JSON.
    pub config: String,
}

impl Settings {
    /// Settings with Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10,
    /// namespace `/service/`, no group, empty plugin config `{}`).
    pub fn new(scope: impl Into<String>, member: impl Into<String>) -> Self {
        Self {
            namespace: crate::path::DEFAULT_NAMESPACE.to_owned(),
            scope: scope.into(),
            group: None,
            member: member.into(),
            ttl: 30,
            loop_wait: 10,
            retry_timeout: 10,
            config: "{}".to_owned(),
        }
    }
}

/// A DCS backend: exactly the operations of the WIT `backend` interface, on raw
/// strings. See the WIT file for the full contract of each operation.
///
/// Booleans answer "did it happen" (`false`: the key was held by someone else, or
/// already existed); errors are reserved for the cases of [`DcsError`]. An adapter
/// must map a trap or broken contract to [`DcsError::PluginFault`], never to
/// `Ok(false)`.
pub trait DcsBackend: Send + Sync {
    /// Accept (or refuse with [`DcsError::InvalidConfig`]) the settings.
    fn configure(&self, settings: Settings) -> DcsFuture<'_, ()>;
    /// Read the cluster, a group, or the whole formation.
    fn load(&self, scope: LoadScope) -> DcsFuture<'_, Vec<GroupEntries>>;
    /// Create the leader key bound to our session if absent. `true` when won.
    fn attempt_to_acquire_leader(&self) -> DcsFuture<'_, bool>;
    /// Renew our session and keep the leader key ours. `false`: held by another.
    fn update_leader(&self) -> DcsFuture<'_, bool>;
    /// Write the leader key unconditionally (right after bootstrap).
    fn take_leader(&self) -> DcsFuture<'_, bool>;
    /// Delete the leader key only if it still holds our name.
    fn delete_leader(&self) -> DcsFuture<'_, bool>;
    /// Write `members/<name>` bound to our session.
    fn touch_member(&self, value: String) -> DcsFuture<'_, bool>;
    /// Write `initialize`; with `create_new` only if absent (the bootstrap race).
    fn initialize(&self, create_new: bool, value: String) -> DcsFuture<'_, bool>;
    /// Delete `initialize`.
    fn cancel_initialization(&self) -> DcsFuture<'_, bool>;
    /// Write a value, compare-and-set on `expected_version`. Returns the new version.
    fn set_value(
        &self,
        key: ValueKey,
        value: String,
        expected_version: Option<String>,
    ) -> DcsFuture<'_, String>;
    /// Delete a value, compare-and-set on `expected_version`.
    fn delete_value(&self, key: ValueKey, expected_version: Option<String>) -> DcsFuture<'_, ()>;
    /// Delete every key of this cluster (or of this member's group).
    fn delete_cluster(&self) -> DcsFuture<'_, ()>;
    /// The leader lock's time to live changed; applies from the next renewal.
    fn set_ttl(&self, seconds: u32) -> DcsFuture<'_, ()>;
    /// The retry budget changed.
    fn set_retry_timeout(&self, seconds: u32) -> DcsFuture<'_, ()>;
    /// Wait until the leader key's version differs from `leader_version` (`None`:
    /// absent) or `timeout_ms` passes. `true` when woken by a change.
    fn watch(&self, leader_version: Option<String>, timeout_ms: u32) -> DcsFuture<'_, bool>;
}
