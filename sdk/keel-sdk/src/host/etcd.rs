//! A typed etcd v3 client, implemented by the host (DCS plugins only).
//!
//! The host owns endpoints, TLS and credentials (from the plugin's config
//! section); the plugin only names keys.

pub use crate::bindings::host::keel::host::etcd::{
    Compare, CompareOp, CompareTarget, EtcdError, KeyRange, KeyValue, RangeOptions, RangeResult,
    TxnOp, TxnOpResult, TxnRequest, TxnResult, WatchEvent, WatchResult,
};

#[cfg(target_arch = "wasm32")]
use crate::bindings::host::keel::host::etcd as imp;

impl KeyRange {
    /// Exactly one key.
    pub fn key(key: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            prefix: false,
        }
    }
    /// Every key starting with `prefix`.
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            key: prefix.into(),
            prefix: true,
        }
    }
}

impl RangeOptions {
    /// A linearizable read without a limit.
    pub const LINEARIZABLE: Self = Self {
        serializable: false,
        limit: 0,
    };
    /// A possibly stale read from the local member, without a limit.
    pub const SERIALIZABLE: Self = Self {
        serializable: true,
        limit: 0,
    };
}

macro_rules! forward {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        $(#[$doc])*
        pub fn $name($($arg: $ty),*) -> Result<$ret, EtcdError> {
            #[cfg(target_arch = "wasm32")]
            return imp::$name($($arg),*);
            #[cfg(not(target_arch = "wasm32"))]
            return crate::testing::current().etcd().$name($($arg),*);
        }
    };
}

forward!(
    /// Read a key or a prefix.
    fn range(keys: &KeyRange, options: RangeOptions) -> RangeResult
);
forward!(
    /// Write a value; returns the revision of the write.
    fn put(key: &str, value: &[u8], lease: Option<i64>) -> i64
);
forward!(
    /// Delete a key or a prefix; returns how many keys were removed.
    fn delete(keys: &KeyRange) -> u64
);
forward!(
    /// Run a transaction.
    fn txn(request: &TxnRequest) -> TxnResult
);
forward!(
    /// Grant a lease; returns its id.
    fn lease_grant(ttl_seconds: i64) -> i64
);
forward!(
    /// Keep a lease alive; returns the remaining TTL, 0 when it no longer exists.
    fn lease_keep_alive(lease: i64) -> i64
);
forward!(
    /// Revoke a lease and every key attached to it.
    fn lease_revoke(lease: i64) -> ()
);
forward!(
    /// Wait (bounded) for changes at or after `start_revision`.
    fn watch_wait(keys: &KeyRange, start_revision: i64, timeout_ms: u32) -> WatchResult
);
