//! The simulated DCS: the keys of one cluster, with versions, compare-and-set
//! and one lease per node, shaped like etcd v3 as Patroni uses it (§2.5).
//!
//! Leases expire in virtual time unless kept alive; a lease takes its keys (the
//! node's member key, and the leader key while it holds it) with it. Whether a
//! node can reach the store is decided by the caller, not here: this is the
//! store itself, which is always up.

use std::collections::BTreeMap;

use keel_model::Entry;

use crate::Ms;

/// One stored key.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) value: String,
    /// The revision of its last change (etcd's `mod_revision`).
    pub(crate) version: u64,
    /// The lease it is bound to.
    pub(crate) lease: Option<u64>,
}

/// The store.
#[derive(Debug, Default)]
pub(crate) struct Dcs {
    keys: BTreeMap<String, Key>,
    revision: u64,
    /// Lease id → expiry.
    leases: BTreeMap<u64, Ms>,
    next_lease: u64,
    /// The leader key changed since the flag was last taken (the watch).
    leader_changed: bool,
}

impl Dcs {
    /// Every key, as a read returns them (key order).
    pub(crate) fn entries(&self) -> Vec<Entry> {
        self.keys
            .iter()
            .map(|(k, v)| Entry {
                key: k.clone(),
                value: v.value.clone(),
                version: v.version.to_string(),
                session: v.lease.map(|l| l.to_string()),
            })
            .collect()
    }

    pub(crate) fn get(&self, key: &str) -> Option<&Key> {
        self.keys.get(key)
    }

    /// The value of `key`, if present.
    pub(crate) fn value(&self, key: &str) -> Option<&str> {
        self.keys.get(key).map(|k| k.value.as_str())
    }

    /// Keep `lease` alive for `ttl`, or grant a new one if it is gone.
    pub(crate) fn keepalive(&mut self, lease: Option<u64>, now: Ms, ttl: Ms) -> u64 {
        if let Some(id) = lease
            && let Some(expiry) = self.leases.get_mut(&id)
        {
            *expiry = now + ttl;
            return id;
        }
        self.next_lease += 1;
        let id = self.next_lease;
        self.leases.insert(id, now + ttl);
        id
    }

    /// Unconditional put.
    pub(crate) fn put(&mut self, key: &str, value: String, lease: Option<u64>) {
        self.revision += 1;
        let unchanged = self.keys.get(key).is_some_and(|k| k.value == value);
        if key == "leader" && !unchanged {
            self.leader_changed = true;
        }
        self.keys.insert(
            key.to_owned(),
            Key {
                value,
                version: self.revision,
                lease,
            },
        );
    }

    /// Put only if absent.
    pub(crate) fn create(&mut self, key: &str, value: String, lease: Option<u64>) -> bool {
        if self.keys.contains_key(key) {
            return false;
        }
        self.put(key, value, lease);
        true
    }

    /// Put if the key's version is `expected` (`None`: the key must be absent).
    pub(crate) fn compare_and_set(
        &mut self,
        key: &str,
        value: String,
        expected: Option<&str>,
    ) -> bool {
        if !self.version_matches(key, expected) {
            return false;
        }
        self.put(key, value, None);
        true
    }

    /// Delete if the key's version is `expected` (`None`: any version).
    pub(crate) fn compare_and_delete(&mut self, key: &str, expected: Option<&str>) -> bool {
        if expected.is_some() && !self.version_matches(key, expected) {
            return false;
        }
        self.delete(key)
    }

    fn version_matches(&self, key: &str, expected: Option<&str>) -> bool {
        match (self.keys.get(key), expected) {
            (None, None) => true,
            (Some(k), Some(v)) => v.parse::<u64>().ok() == Some(k.version),
            _ => false,
        }
    }

    /// Delete `key`; `false` if it was absent.
    pub(crate) fn delete(&mut self, key: &str) -> bool {
        let gone = self.keys.remove(key).is_some();
        if gone {
            self.revision += 1;
            if key == "leader" {
                self.leader_changed = true;
            }
        }
        gone
    }

    /// Drop expired leases and their keys; returns the keys deleted.
    pub(crate) fn expire(&mut self, now: Ms) -> Vec<String> {
        let expired: Vec<u64> = self
            .leases
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| *id)
            .collect();
        let mut deleted = Vec::new();
        for id in expired {
            self.leases.remove(&id);
            let keys: Vec<String> = self
                .keys
                .iter()
                .filter(|(_, k)| k.lease == Some(id))
                .map(|(name, _)| name.clone())
                .collect();
            for key in keys {
                self.delete(&key);
                deleted.push(key);
            }
        }
        deleted
    }

    /// Take the "leader key changed" flag.
    pub(crate) fn take_leader_changed(&mut self) -> bool {
        std::mem::take(&mut self.leader_changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_take_their_keys() {
        let mut dcs = Dcs::default();
        let lease = dcs.keepalive(None, 0, 30_000);
        assert!(dcs.create("leader", "n0".into(), Some(lease)));
        assert!(!dcs.create("leader", "n1".into(), None));
        assert!(dcs.take_leader_changed());
        assert_eq!(dcs.keepalive(Some(lease), 10_000, 30_000), lease);
        assert!(dcs.expire(39_999).is_empty());
        assert_eq!(dcs.expire(40_000), ["leader"]);
        assert!(dcs.take_leader_changed());
        assert_ne!(dcs.keepalive(Some(lease), 40_000, 30_000), lease);
    }

    #[test]
    fn compare_and_set_on_versions() {
        let mut dcs = Dcs::default();
        assert!(dcs.compare_and_set("sync", "a".into(), None));
        assert!(!dcs.compare_and_set("sync", "b".into(), None));
        let v = dcs.get("sync").map(|k| k.version.to_string());
        assert!(dcs.compare_and_set("sync", "b".into(), v.as_deref()));
        assert!(!dcs.compare_and_delete("sync", v.as_deref()));
        assert!(dcs.compare_and_delete("sync", None));
        assert_eq!(dcs.entries().len(), 0);
    }
}
