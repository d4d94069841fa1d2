//! # The etcd v3 DCS plugin
//!
//! Keel's reference DCS backend, with the semantics of Patroni's `etcd3` backend
//! so Patroni, patronictl and Keel can share a cluster:
//!
//! * one lease per member, TTL = `ttl`, shared by its member key and (while it
//!   leads) the leader key; refreshed by keep-alive, re-granted when lost;
//! * the leader race is a transaction that creates `leader` only if its
//!   create_revision is 0; renewal re-attaches the key under a compare on its
//!   value when the lease had to be re-granted; release deletes it only if it
//!   still holds our name;
//! * compare-and-set writes compare the key's mod_revision (the "version");
//! * reads are linearizable; a watch on the leader key wakes the HA loop early;
//! * every request is retried while etcd is unreachable, for at most
//!   `retry_timeout`.
//!
//! Endpoints, TLS and credentials are not the plugin's business: the host reads
//! them from the `etcd3:` (or `etcd:`) section and hands the plugin a client.

mod config;
mod keys;
mod lease;
mod retry;

use std::time::Duration;

use keel_sdk::PluginInfo;
use keel_sdk::dcs::{
    DcsError, DcsPlugin, GroupEntries, LoadScope, Settings, ValueKey, value_key_name,
};
use keel_sdk::host::etcd::{
    self, Compare, CompareTarget, EtcdError, KeyRange, RangeOptions, TxnOp, TxnRequest,
};

use keys::Paths;
use lease::Lease;
use retry::{dcs_error, with_retry};

/// The backend's state inside one plugin instance.
pub struct Etcd3 {
    paths: Paths,
    member: String,
    lease: Lease,
    retry_timeout: Duration,
    /// The leader key as the last load saw it: (holder, lease).
    seen_leader: Option<(String, i64)>,
    /// The store revision of the last load, where a watch resumes.
    seen_revision: i64,
}

/// Put `value` at `key` only if the key's `condition` attribute equals it
/// (create_revision 0: the key is absent; value: it still holds ours).
fn put_if(
    key: &str,
    condition: CompareTarget,
    value: &[u8],
    lease: Option<i64>,
) -> Result<bool, EtcdError> {
    let request = TxnRequest::when(
        vec![Compare::equal(key, condition)],
        vec![TxnOp::put(key, value, lease)],
    );
    etcd::txn(&request).map(|r| r.succeeded)
}

fn parse_version(version: &str) -> Result<i64, DcsError> {
    version
        .parse()
        .map_err(|_| DcsError::Failed(format!("version {version:?} is not an etcd mod_revision")))
}

impl Etcd3 {
    fn retry<T>(
        &self,
        what: &str,
        op: impl FnMut() -> Result<T, EtcdError>,
    ) -> Result<T, DcsError> {
        with_retry(self.retry_timeout, op).map_err(|e| dcs_error(what, e))
    }

    /// Run `op` with our lease; if etcd says the lease is gone, grant a new one
    /// and try once more (Patroni's LeaseNotFound handling).
    fn with_lease<T>(
        &mut self,
        what: &str,
        force_refresh: bool,
        op: impl Fn(i64) -> Result<T, EtcdError>,
    ) -> Result<T, DcsError> {
        let budget = self.retry_timeout;
        let id = self
            .lease
            .ensure(budget, force_refresh)
            .map_err(|e| dcs_error(what, e))?;
        match with_retry(budget, || op(id)) {
            Err(EtcdError::LeaseNotFound) => {
                self.lease.forget();
                let id = self
                    .lease
                    .ensure(budget, false)
                    .map_err(|e| dcs_error(what, e))?;
                with_retry(budget, || op(id)).map_err(|e| dcs_error(what, e))
            }
            other => other.map_err(|e| dcs_error(what, e)),
        }
    }

    fn txn(&self, what: &str, request: &TxnRequest) -> Result<etcd::TxnResult, DcsError> {
        self.retry(what, || etcd::txn(request))
    }

    /// Write `key` (compare-and-set on its mod_revision when a version is given).
    fn set(&self, key: &str, value: &str, expected: Option<&str>) -> Result<String, DcsError> {
        let Some(expected) = expected else {
            return self
                .retry("put", || etcd::put(key, value.as_bytes(), None))
                .map(|rev| rev.to_string());
        };
        let at = CompareTarget::ModRevision(parse_version(expected)?);
        let request = TxnRequest::when(
            vec![Compare::equal(key, at)],
            vec![TxnOp::put(key, value, None)],
        );
        let result = self.txn("compare-and-set", &request)?;
        if !result.succeeded {
            return Err(DcsError::Conflict(format!(
                "{key} is no longer at version {expected}"
            )));
        }
        Ok(result.revision.to_string())
    }

    /// The leader key as we hold it right after writing it: our name, our lease.
    fn holding_leader(&self) -> Option<(String, i64)> {
        self.lease.id().map(|id| (self.member.clone(), id))
    }

    fn load_range(&mut self, prefix: &str) -> Result<etcd::RangeResult, DcsError> {
        let result = self.retry("range", || {
            etcd::range(&KeyRange::prefix(prefix), RangeOptions::LINEARIZABLE)
        })?;
        self.seen_revision = self.seen_revision.max(result.revision);
        Ok(result)
    }
}

impl DcsPlugin for Etcd3 {
    fn describe() -> PluginInfo {
        PluginInfo::new(
            "etcd",
            env!("CARGO_PKG_VERSION"),
            "etcd v3 backend with Patroni's etcd3 semantics",
        )
        .with_aliases(&["etcd3"])
    }

    fn configure(settings: Settings) -> Result<Self, DcsError> {
        config::validate(&settings.config)?;
        if settings.scope.is_empty() || settings.member.is_empty() {
            return Err(DcsError::InvalidConfig(
                "scope and name must not be empty".into(),
            ));
        }
        Ok(Self {
            paths: Paths::new(&settings.namespace, &settings.scope, settings.group),
            member: settings.member,
            lease: Lease::new(settings.ttl, settings.loop_wait),
            retry_timeout: Duration::from_secs(settings.retry_timeout.max(1).into()),
            seen_leader: None,
            seen_revision: 0,
        })
    }

    fn reconfigure(&mut self, settings: Settings) -> Result<(), DcsError> {
        let lease = std::mem::replace(&mut self.lease, Lease::new(0, 0));
        *self = Self::configure(settings.clone())?;
        // Keep the lease across a reconfiguration: keys stay attached to it.
        self.lease = lease;
        self.lease.set_ttl(settings.ttl, settings.loop_wait);
        Ok(())
    }

    fn load(&mut self, scope: LoadScope) -> Result<Vec<GroupEntries>, DcsError> {
        match scope {
            LoadScope::OwnGroup => {
                let base = self.paths.own();
                let found = self.load_range(&base)?;
                let entries: Vec<_> = found.kvs.iter().filter_map(|kv| kv.entry(&base)).collect();
                self.seen_leader = found
                    .kvs
                    .iter()
                    .find(|kv| kv.key == self.paths.key("leader"))
                    .map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.lease));
                Ok(vec![GroupEntries {
                    group: self.paths.group,
                    entries,
                }])
            }
            LoadScope::Group(group) => {
                let base = self.paths.group_path(group);
                let found = self.load_range(&base)?;
                let entries = found.kvs.iter().filter_map(|kv| kv.entry(&base)).collect();
                Ok(vec![GroupEntries {
                    group: Some(group),
                    entries,
                }])
            }
            LoadScope::Formation => {
                let cluster = self.paths.cluster.clone();
                let found = self.load_range(&cluster)?;
                if self.paths.group.is_some() {
                    let own_leader = self.paths.key("leader");
                    self.seen_leader = found
                        .kvs
                        .iter()
                        .find(|kv| kv.key == own_leader)
                        .map(|kv| (String::from_utf8_lossy(&kv.value).into_owned(), kv.lease));
                }
                Ok(etcd::split_formation(&cluster, &found.kvs))
            }
        }
    }

    fn attempt_to_acquire_leader(&mut self) -> Result<bool, DcsError> {
        let key = self.paths.key("leader");
        let member = self.member.clone();
        let acquired = self.with_lease("leader race", false, |lease| {
            put_if(
                &key,
                CompareTarget::CreateRevision(0),
                member.as_bytes(),
                Some(lease),
            )
        })?;
        if acquired {
            self.seen_leader = self.holding_leader();
        } else {
            keel_sdk::host::log::info("Could not take out TTL lock");
        }
        Ok(acquired)
    }

    fn update_leader(&mut self) -> Result<bool, DcsError> {
        let key = self.paths.key("leader");
        let member = self.member.clone();
        let seen = self.seen_leader.clone();
        // A forced keep-alive; if the lease survived and the key is attached to it,
        // the lock is renewed without writing anything.
        let renewed = self.with_lease("leader renewal", true, |lease| {
            if seen.as_ref() == Some(&(member.clone(), lease)) {
                return Ok(true);
            }
            // Re-attach the key to the (new) lease, but only if it is still ours,
            // or if it vanished meanwhile.
            let ours = CompareTarget::Value(member.as_bytes().to_vec());
            Ok(put_if(&key, ours, member.as_bytes(), Some(lease))?
                || put_if(
                    &key,
                    CompareTarget::CreateRevision(0),
                    member.as_bytes(),
                    Some(lease),
                )?)
        })?;
        self.seen_leader = if renewed { self.holding_leader() } else { None };
        Ok(renewed)
    }

    fn take_leader(&mut self) -> Result<bool, DcsError> {
        let key = self.paths.key("leader");
        let member = self.member.clone();
        self.with_lease("take leader", false, |lease| {
            etcd::put(&key, member.as_bytes(), Some(lease))
        })?;
        self.seen_leader = self.holding_leader();
        Ok(true)
    }

    fn delete_leader(&mut self) -> Result<bool, DcsError> {
        let key = self.paths.key("leader");
        let ours = CompareTarget::Value(self.member.as_bytes().to_vec());
        let request = TxnRequest::when(
            vec![Compare::equal(&key, ours)],
            vec![TxnOp::delete(KeyRange::key(&key))],
        );
        let deleted = self.txn("leader release", &request)?.succeeded;
        self.seen_leader = None;
        Ok(deleted)
    }

    fn touch_member(&mut self, value: String) -> Result<bool, DcsError> {
        let key = self.paths.key(&format!("members/{}", self.member));
        self.with_lease("member update", false, |lease| {
            etcd::put(&key, value.as_bytes(), Some(lease))
        })?;
        Ok(true)
    }

    fn initialize(&mut self, create_new: bool, value: String) -> Result<bool, DcsError> {
        let key = self.paths.key("initialize");
        if !create_new {
            self.retry("initialize", || etcd::put(&key, value.as_bytes(), None))?;
            return Ok(true);
        }
        self.retry("initialize race", || {
            put_if(
                &key,
                CompareTarget::CreateRevision(0),
                value.as_bytes(),
                None,
            )
        })
    }

    fn cancel_initialization(&mut self) -> Result<bool, DcsError> {
        let key = self.paths.key("initialize");
        Ok(self.retry("cancel initialization", || {
            etcd::delete(&KeyRange::key(&key))
        })? > 0)
    }

    fn set_value(
        &mut self,
        key: ValueKey,
        value: String,
        expected_version: Option<String>,
    ) -> Result<String, DcsError> {
        self.set(
            &self.paths.key(value_key_name(key)),
            &value,
            expected_version.as_deref(),
        )
    }

    fn delete_value(
        &mut self,
        key: ValueKey,
        expected_version: Option<String>,
    ) -> Result<(), DcsError> {
        let key = self.paths.key(value_key_name(key));
        let Some(expected) = expected_version else {
            self.retry("delete", || etcd::delete(&KeyRange::key(&key)))?;
            return Ok(());
        };
        let at = CompareTarget::ModRevision(parse_version(&expected)?);
        let request = TxnRequest::when(
            vec![Compare::equal(&key, at)],
            vec![TxnOp::delete(KeyRange::key(&key))],
        );
        if self.txn("compare-and-delete", &request)?.succeeded {
            Ok(())
        } else {
            Err(DcsError::Conflict(format!(
                "{key} is no longer at version {expected}"
            )))
        }
    }

    fn delete_cluster(&mut self) -> Result<(), DcsError> {
        let base = self.paths.own();
        self.retry("delete cluster", || etcd::delete(&KeyRange::prefix(&base)))?;
        Ok(())
    }

    fn set_ttl(&mut self, seconds: u32) -> Result<(), DcsError> {
        self.lease.set_ttl(seconds, self.lease.loop_wait());
        Ok(())
    }

    fn set_retry_timeout(&mut self, seconds: u32) -> Result<(), DcsError> {
        self.retry_timeout = Duration::from_secs(seconds.max(1).into());
        Ok(())
    }

    fn watch(&mut self, leader_version: Option<String>, timeout_ms: u32) -> Result<bool, DcsError> {
        // The lease is refreshed at least once per HA cycle, even on a quiet node.
        self.lease
            .refresh_if_due(self.retry_timeout)
            .map_err(|e| dcs_error("lease refresh", e))?;
        let key = self.paths.key("leader");
        let start = match leader_version.as_deref().map(parse_version).transpose()? {
            Some(version) => version + 1,
            // No leader: wake when one appears. This instance may never have read the store
            // (the daemon's watch instance only watches); starting from its own revision 0
            // would replay the key's old create/delete events and return at once, a cycle
            // without sleep for as long as the cluster has no leader.
            None if self.seen_revision == 0 => {
                let current = self.retry("range", || {
                    etcd::range(&KeyRange::key(&key), RangeOptions::LINEARIZABLE)
                })?;
                self.seen_revision = current.revision;
                current.revision + 1
            }
            None => self.seen_revision + 1,
        };
        match etcd::watch_wait(&KeyRange::key(&key), start, timeout_ms) {
            Ok(result) => Ok(!result.events.is_empty()),
            // History compacted past our start: something changed, re-read.
            Err(EtcdError::Compacted) => Ok(true),
            Err(e) => Err(dcs_error("watch", e)),
        }
    }
}

keel_sdk::export_dcs_plugin!(Etcd3);

#[cfg(test)]
mod tests;
