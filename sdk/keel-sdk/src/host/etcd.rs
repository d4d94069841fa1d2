//! A typed etcd v3 client, implemented by the host (DCS plugins only).
//!
//! The host owns endpoints, TLS and credentials (from the plugin's config
//! section); the plugin only names keys.

pub use crate::bindings::host::keel::host::etcd::{
    Compare, CompareOp, CompareTarget, EtcdError, KeyRange, KeyValue, RangeOptions, RangeResult,
    TxnOp, TxnOpResult, TxnRequest, TxnResult, WatchEvent, WatchResult,
};

use std::collections::BTreeMap;

use crate::dcs::{DcsError, Entry, GroupEntries, parse_group};

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

impl Compare {
    /// The compare `key`'s `target` attribute equals the given value.
    pub fn equal(key: impl Into<String>, target: CompareTarget) -> Self {
        Self {
            key: key.into(),
            op: CompareOp::Equal,
            target,
        }
    }
    /// `key` does not exist (its create_revision is 0): the compare of a race.
    pub fn absent(key: impl Into<String>) -> Self {
        Self::equal(key, CompareTarget::CreateRevision(0))
    }
}

impl TxnOp {
    /// Write `value` at `key`, attached to `lease` if one is given.
    pub fn put(key: impl Into<String>, value: impl Into<Vec<u8>>, lease: Option<i64>) -> Self {
        Self::Put((key.into(), value.into(), lease))
    }
    /// Delete a key or a prefix.
    pub fn delete(keys: KeyRange) -> Self {
        Self::Delete(keys)
    }
}

impl TxnRequest {
    /// Run `success` if every compare holds, else nothing.
    pub fn when(compares: Vec<Compare>, success: Vec<TxnOp>) -> Self {
        Self {
            compares,
            success,
            failure: Vec::new(),
        }
    }
}

/// An etcd failure as the HA loop must see it: unreachable stays unreachable
/// (the case retries and failsafe mode are for), a refused grant is the
/// operator's config, everything else fails the call.
impl From<EtcdError> for DcsError {
    fn from(error: EtcdError) -> Self {
        match error {
            EtcdError::Unavailable(reason) => DcsError::Unavailable(format!("etcd: {reason}")),
            EtcdError::NotGranted(reason) => DcsError::InvalidConfig(reason),
            EtcdError::PermissionDenied(reason) => {
                DcsError::Failed(format!("etcd: permission denied: {reason}"))
            }
            EtcdError::LeaseNotFound => DcsError::Failed("etcd: lease not found".into()),
            EtcdError::Compacted => DcsError::Failed("etcd: revision compacted".into()),
            EtcdError::Rejected(reason) => DcsError::Failed(format!("etcd: {reason}")),
        }
    }
}

impl KeyValue {
    /// This key-value as a DCS entry whose key is relative to `base` (the
    /// cluster or group path, ending in `/`); `None` outside `base` or for
    /// `base` itself.
    pub fn entry(&self, base: &str) -> Option<Entry> {
        let key = self.key.strip_prefix(base).filter(|key| !key.is_empty())?;
        Some(Entry {
            key: key.to_owned(),
            value: String::from_utf8_lossy(&self.value).into_owned(),
            version: self.mod_revision.to_string(),
            session: (self.lease != 0).then(|| self.lease.to_string()),
        })
    }
}

/// Split one read of a formation's cluster path (`/<namespace>/<scope>/`) into
/// its groups (`<cluster><group>/<key>`), ascending; keys outside a valid group
/// directory are ignored, as Patroni's readers do.
pub fn split_formation(cluster: &str, kvs: &[KeyValue]) -> Vec<GroupEntries> {
    let mut groups: BTreeMap<u32, Vec<Entry>> = BTreeMap::new();
    for kv in kvs {
        let dir = kv
            .key
            .strip_prefix(cluster)
            .and_then(|rest| rest.split_once('/'));
        let Some((dir, _)) = dir else { continue };
        let Some(group) = parse_group(dir) else {
            continue;
        };
        if let Some(entry) = kv.entry(&format!("{cluster}{dir}/")) {
            groups.entry(group).or_default().push(entry);
        }
    }
    groups
        .into_iter()
        .map(|(group, entries)| GroupEntries {
            group: Some(group),
            entries,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: b"v".to_vec(),
            create_revision: 1,
            mod_revision: 7,
            version: 1,
            lease: 0,
        }
    }

    #[test]
    fn a_formation_splits_into_ascending_groups() {
        let kvs = [
            kv("/service/demo/1/leader"),
            kv("/service/demo/0/leader"),
            kv("/service/demo/0/members/c1"),
            kv("/service/demo/01/leader"),
            kv("/service/demo/leader"),
            kv("/service/demo/10/config"),
            kv("/service/demo/2/"),
        ];
        let groups = split_formation("/service/demo/", &kvs);
        let shape: Vec<(Option<u32>, Vec<&str>)> = groups
            .iter()
            .map(|g| (g.group, g.entries.iter().map(|e| e.key.as_str()).collect()))
            .collect();
        assert_eq!(
            shape,
            vec![
                (Some(0), vec!["leader", "members/c1"]),
                (Some(1), vec!["leader"]),
                (Some(10), vec!["config"])
            ]
        );
        assert_eq!(groups[0].entries[0].version, "7");
    }

    #[test]
    fn entries_carry_their_lease_as_the_session() {
        let mut leased = kv("/service/demo/leader");
        assert_eq!(leased.entry("/service/demo/").unwrap().session, None);
        leased.lease = 42;
        let entry = leased.entry("/service/demo/").unwrap();
        assert_eq!(
            (entry.key.as_str(), entry.session.as_deref()),
            ("leader", Some("42"))
        );
        assert!(leased.entry("/service/other/").is_none());
    }

    #[test]
    fn only_an_unreachable_store_reads_as_unavailable() {
        let unreachable = DcsError::from(EtcdError::Unavailable("connection refused".into()));
        assert!(matches!(unreachable, DcsError::Unavailable(r) if r.contains("refused")));
        assert!(matches!(
            DcsError::from(EtcdError::LeaseNotFound),
            DcsError::Failed(_)
        ));
        let denied = DcsError::from(EtcdError::NotGranted("no endpoints".into()));
        assert!(matches!(denied, DcsError::InvalidConfig(_)));
    }
}
