//! A minimal DCS backend for Keel: Patroni's keys in etcd v3, through the host's
//! `keel:host/etcd` capability (endpoints, TLS and credentials come from the
//! operator's `minimal-dcs:` config section, never from the plugin).
//!
//! One lease per member, with TTL = `ttl`, carries the member key and, on the
//! leader, the leader key; every write through the lease keeps it alive, so a
//! member that stops cycling loses both keys after `ttl`. Versions are etcd
//! mod_revisions. Left out, compared with `plugins/etcd`: retries within
//! `retry_timeout` (a failed request is `unavailable` at once, and the HA loop
//! reacts as to an unreachable store) and any validation of the config section.

use keel_sdk::PluginInfo;
use keel_sdk::dcs::{DcsError, DcsPlugin, GroupEntries, LoadScope, Settings, ValueKey};
use keel_sdk::host::etcd::{self, Compare, CompareTarget as Target, EtcdError, KeyRange};
use keel_sdk::host::etcd::{KeyValue, RangeOptions, TxnOp, TxnRequest};

/// Where this member's keys live and the lease that binds them.
pub struct MinimalDcs {
    /// `/<namespace>/<scope>/`.
    cluster: String,
    group: Option<u32>,
    member: String,
    ttl: u32,
    lease: Option<i64>,
}

/// Run `success` if every compare holds; whether it ran.
fn txn(compares: Vec<Compare>, success: Vec<TxnOp>) -> Result<bool, DcsError> {
    Ok(etcd::txn(&TxnRequest::when(compares, success))?.succeeded)
}

fn version(text: &str) -> Result<i64, DcsError> {
    text.parse().map_err(|_| DcsError::Failed(format!("{text:?} is not a version of this store")))
}

impl MinimalDcs {
    fn group_path(&self, group: Option<u32>) -> String {
        group.map_or_else(|| self.cluster.clone(), |g| format!("{}{g}/", self.cluster))
    }

    fn key(&self, relative: &str) -> String {
        format!("{}{relative}", self.group_path(self.group))
    }

    /// The member's lease, kept alive, or granted anew when etcd no longer knows it.
    fn lease(&mut self) -> Result<i64, DcsError> {
        if let Some(id) = self.lease {
            match etcd::lease_keep_alive(id) {
                Ok(remaining) if remaining > 0 => return Ok(id),
                Ok(_) | Err(EtcdError::LeaseNotFound) => {}
                Err(other) => return Err(other.into()),
            }
        }
        let id = etcd::lease_grant(self.ttl.into())?;
        self.lease = Some(id);
        Ok(id)
    }

    fn read(&self, prefix: &str) -> Result<Vec<KeyValue>, DcsError> {
        Ok(etcd::range(&KeyRange::prefix(prefix), RangeOptions::LINEARIZABLE)?.kvs)
    }

    /// Write (`Some(value)`) or delete (`None`) a value, compare-and-set when `expected`.
    fn change(
        &self,
        key: ValueKey,
        value: Option<&str>,
        at: Option<&str>,
    ) -> Result<String, DcsError> {
        let key = self.key(keel_sdk::dcs::value_key_name(key));
        let op =
            value.map_or_else(|| TxnOp::delete(KeyRange::key(&key)), |v| TxnOp::put(&key, v, None));
        let at = at.map(version).transpose()?;
        let compare = at.map(|v| Compare::equal(&key, Target::ModRevision(v)));
        let done = etcd::txn(&TxnRequest::when(compare.into_iter().collect(), vec![op]))?;
        match done.succeeded {
            true => Ok(done.revision.to_string()),
            false => Err(DcsError::Conflict(format!("{key} is no longer at version {at:?}"))),
        }
    }
}

impl DcsPlugin for MinimalDcs {
    fn describe() -> PluginInfo {
        PluginInfo::new("minimal-dcs", env!("CARGO_PKG_VERSION"), "example: Patroni's keys in etcd")
    }

    fn configure(s: Settings) -> Result<Self, DcsError> {
        let cluster = format!("{}{}/", s.namespace, s.scope);
        Ok(Self { cluster, group: s.group, member: s.member, ttl: s.ttl, lease: None })
    }

    fn load(&mut self, scope: LoadScope) -> Result<Vec<GroupEntries>, DcsError> {
        let group = match scope {
            LoadScope::OwnGroup => self.group,
            LoadScope::Group(group) => Some(group),
            // `<cluster><group>/<key>`: one read, split by group.
            LoadScope::Formation => {
                return Ok(etcd::split_formation(&self.cluster, &self.read(&self.cluster)?));
            }
        };
        let base = self.group_path(group);
        let entries = self.read(&base)?.iter().filter_map(|kv| kv.entry(&base)).collect();
        Ok(vec![GroupEntries { group, entries }])
    }

    fn attempt_to_acquire_leader(&mut self) -> Result<bool, DcsError> {
        let (key, lease) = (self.key("leader"), self.lease()?);
        let write = vec![TxnOp::put(&key, self.member.as_str(), Some(lease))];
        txn(vec![Compare::absent(&key)], write)
    }

    fn update_leader(&mut self) -> Result<bool, DcsError> {
        let (key, lease) = (self.key("leader"), self.lease()?);
        let ours = Compare::equal(&key, Target::Value(self.member.clone().into_bytes()));
        // Ours and on our lease: the keep-alive in `lease()` was the renewal.
        if txn(vec![ours.clone(), Compare::equal(&key, Target::Lease(lease))], Vec::new())? {
            return Ok(true);
        }
        // Ours on an older lease (the ttl changed), or gone: write it again.
        let write = || vec![TxnOp::put(&key, self.member.as_str(), Some(lease))];
        Ok(txn(vec![ours], write())? || txn(vec![Compare::absent(&key)], write())?)
    }

    fn take_leader(&mut self) -> Result<bool, DcsError> {
        let lease = self.lease()?;
        etcd::put(&self.key("leader"), self.member.as_bytes(), Some(lease))?;
        Ok(true)
    }

    fn delete_leader(&mut self) -> Result<bool, DcsError> {
        let key = self.key("leader");
        let ours = Compare::equal(&key, Target::Value(self.member.clone().into_bytes()));
        txn(vec![ours], vec![TxnOp::delete(KeyRange::key(&key))])
    }

    fn touch_member(&mut self, value: String) -> Result<bool, DcsError> {
        let lease = self.lease()?;
        let key = self.key(&format!("members/{}", self.member));
        etcd::put(&key, value.as_bytes(), Some(lease))?;
        Ok(true)
    }

    fn initialize(&mut self, create_new: bool, value: String) -> Result<bool, DcsError> {
        let key = self.key("initialize");
        let absent = create_new.then(|| Compare::absent(&key));
        txn(absent.into_iter().collect(), vec![TxnOp::put(&key, value, None)])
    }

    fn cancel_initialization(&mut self) -> Result<bool, DcsError> {
        Ok(etcd::delete(&KeyRange::key(self.key("initialize")))? > 0)
    }

    fn set_value(
        &mut self,
        key: ValueKey,
        value: String,
        expected: Option<String>,
    ) -> Result<String, DcsError> {
        self.change(key, Some(&value), expected.as_deref())
    }

    fn delete_value(&mut self, key: ValueKey, expected: Option<String>) -> Result<(), DcsError> {
        self.change(key, None, expected.as_deref()).map(drop)
    }

    fn delete_cluster(&mut self) -> Result<(), DcsError> {
        Ok(etcd::delete(&KeyRange::prefix(self.group_path(self.group))).map(drop)?)
    }

    fn set_ttl(&mut self, seconds: u32) -> Result<(), DcsError> {
        if seconds != self.ttl {
            // The next write grants a lease with the new ttl; update-leader moves the key onto it.
            (self.ttl, self.lease) = (seconds, None);
        }
        Ok(())
    }

    fn watch(&mut self, leader_version: Option<String>, timeout_ms: u32) -> Result<bool, DcsError> {
        let key = KeyRange::key(self.key("leader"));
        let start = match leader_version {
            Some(v) => version(&v)? + 1,
            // No leader now: wait for whatever happens after the current revision.
            None => etcd::range(&key, RangeOptions::LINEARIZABLE)?.revision + 1,
        };
        match etcd::watch_wait(&key, start, timeout_ms) {
            Ok(seen) => Ok(!seen.events.is_empty()),
            Err(EtcdError::Compacted) => Ok(true),
            Err(other) => Err(other.into()),
        }
    }
}

keel_sdk::export_dcs_plugin!(MinimalDcs);

#[cfg(test)]
mod tests;
