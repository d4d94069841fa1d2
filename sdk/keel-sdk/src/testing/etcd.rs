//! An in-memory etcd v3 for native tests: revisions, leases on a manual clock,
//! transactions with compares, and bounded watches that read the event history.
//!
//! It follows etcd's semantics where a DCS plugin can tell the difference
//! (create_revision 0 for an absent key, lease expiry deleting keys, `LeaseNotFound`
//! on a put to a dead lease) and nothing more.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::Duration;

use crate::host::etcd::{
    Compare, CompareOp, CompareTarget, EtcdError, KeyRange, KeyValue, RangeOptions, RangeResult,
    TxnOp, TxnOpResult, TxnRequest, TxnResult, WatchEvent, WatchResult,
};

#[derive(Default)]
struct State {
    kvs: BTreeMap<String, KeyValue>,
    revision: i64,
    next_lease: i64,
    /// lease id → (ttl seconds, expiry in ms on the fake clock)
    leases: HashMap<i64, (i64, u64)>,
    now_ms: u64,
    history: Vec<(i64, WatchEvent)>,
    outage: Option<EtcdError>,
}

/// The in-memory etcd; clones share state.
#[derive(Clone, Default)]
pub struct FakeEtcd {
    state: Rc<RefCell<State>>,
}

impl std::fmt::Debug for FakeEtcd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeEtcd")
            .field("revision", &self.state.borrow().revision)
            .finish()
    }
}

fn matches(range: &KeyRange, key: &str) -> bool {
    if range.prefix {
        key.starts_with(&range.key)
    } else {
        key == range.key
    }
}

impl State {
    fn expire(&mut self) {
        let now = self.now_ms;
        let dead: Vec<i64> = self
            .leases
            .iter()
            .filter(|(_, (_, exp))| *exp <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.revoke(id);
        }
    }

    fn revoke(&mut self, lease: i64) -> bool {
        if self.leases.remove(&lease).is_none() {
            return false;
        }
        let keys: Vec<String> = self
            .kvs
            .values()
            .filter(|kv| kv.lease == lease)
            .map(|kv| kv.key.clone())
            .collect();
        if !keys.is_empty() {
            self.revision += 1;
            for key in keys {
                self.remove(&key);
            }
        }
        true
    }

    fn remove(&mut self, key: &str) {
        if let Some(mut kv) = self.kvs.remove(key) {
            kv.mod_revision = self.revision;
            kv.value.clear();
            self.history
                .push((self.revision, WatchEvent { deleted: true, kv }));
        }
    }

    fn put(&mut self, key: &str, value: &[u8], lease: Option<i64>) -> Result<i64, EtcdError> {
        let lease = lease.unwrap_or(0);
        if lease != 0 && !self.leases.contains_key(&lease) {
            return Err(EtcdError::LeaseNotFound);
        }
        self.revision += 1;
        let rev = self.revision;
        let kv = match self.kvs.get(key) {
            Some(old) => KeyValue {
                key: key.to_owned(),
                value: value.to_vec(),
                create_revision: old.create_revision,
                mod_revision: rev,
                version: old.version + 1,
                lease,
            },
            None => KeyValue {
                key: key.to_owned(),
                value: value.to_vec(),
                create_revision: rev,
                mod_revision: rev,
                version: 1,
                lease,
            },
        };
        self.history.push((
            rev,
            WatchEvent {
                deleted: false,
                kv: kv.clone(),
            },
        ));
        self.kvs.insert(key.to_owned(), kv);
        Ok(rev)
    }

    fn delete(&mut self, range: &KeyRange) -> u64 {
        let keys: Vec<String> = self
            .kvs
            .keys()
            .filter(|k| matches(range, k))
            .cloned()
            .collect();
        if keys.is_empty() {
            return 0;
        }
        self.revision += 1;
        for key in &keys {
            self.remove(key);
        }
        keys.len() as u64
    }

    fn get(&self, range: &KeyRange) -> Vec<KeyValue> {
        self.kvs
            .values()
            .filter(|kv| matches(range, &kv.key))
            .cloned()
            .collect()
    }

    fn holds(&self, compare: &Compare) -> bool {
        let kv = self.kvs.get(&compare.key);
        let ord = match &compare.target {
            CompareTarget::Value(v) => kv.map(|kv| kv.value.as_slice()).cmp(&Some(v.as_slice())),
            CompareTarget::Version(n) => kv.map_or(0, |kv| kv.version).cmp(n),
            CompareTarget::CreateRevision(n) => kv.map_or(0, |kv| kv.create_revision).cmp(n),
            CompareTarget::ModRevision(n) => kv.map_or(0, |kv| kv.mod_revision).cmp(n),
            CompareTarget::Lease(n) => kv.map_or(0, |kv| kv.lease).cmp(n),
        };
        // etcd: a value compare on an absent key never holds.
        if matches!(compare.target, CompareTarget::Value(_)) && kv.is_none() {
            return false;
        }
        match compare.op {
            CompareOp::Equal => ord.is_eq(),
            CompareOp::NotEqual => ord.is_ne(),
            CompareOp::Greater => ord.is_gt(),
            CompareOp::Less => ord.is_lt(),
        }
    }
}

impl FakeEtcd {
    /// Advance the fake clock; leases whose TTL ran out expire with their keys.
    pub fn advance(&self, by: Duration) {
        let mut s = self.state.borrow_mut();
        s.now_ms += by.as_millis() as u64;
        s.expire();
    }

    /// Make every request fail with `error` (an outage) until called with `None`.
    pub fn set_outage(&self, error: Option<EtcdError>) {
        self.state.borrow_mut().outage = error;
    }

    /// The value of a key, as a string, if present.
    pub fn value(&self, key: &str) -> Option<String> {
        let s = self.state.borrow();
        s.kvs
            .get(key)
            .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
    }

    /// Every key currently stored.
    pub fn keys(&self) -> Vec<String> {
        self.state.borrow().kvs.keys().cloned().collect()
    }

    fn enter(&self) -> Result<std::cell::RefMut<'_, State>, EtcdError> {
        let mut s = self.state.borrow_mut();
        if let Some(err) = &s.outage {
            return Err(err.clone());
        }
        s.expire();
        Ok(s)
    }

    pub(crate) fn range(
        &self,
        keys: &KeyRange,
        options: RangeOptions,
    ) -> Result<RangeResult, EtcdError> {
        let s = self.enter()?;
        let mut kvs = s.get(keys);
        let more = options.limit > 0 && kvs.len() as u64 > options.limit;
        if options.limit > 0 {
            kvs.truncate(options.limit as usize);
        }
        Ok(RangeResult {
            kvs,
            revision: s.revision,
            more,
        })
    }

    pub(crate) fn put(
        &self,
        key: &str,
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<i64, EtcdError> {
        self.enter()?.put(key, value, lease)
    }

    pub(crate) fn delete(&self, keys: &KeyRange) -> Result<u64, EtcdError> {
        Ok(self.enter()?.delete(keys))
    }

    pub(crate) fn txn(&self, request: &TxnRequest) -> Result<TxnResult, EtcdError> {
        let mut s = self.enter()?;
        let succeeded = request.compares.iter().all(|c| s.holds(c));
        let ops = if succeeded {
            &request.success
        } else {
            &request.failure
        };
        let mut results = Vec::with_capacity(ops.len());
        for op in ops {
            results.push(match op {
                TxnOp::Put((key, value, lease)) => TxnOpResult::Put(s.put(key, value, *lease)?),
                TxnOp::Delete(range) => TxnOpResult::Delete(s.delete(range)),
                TxnOp::Get(range) => TxnOpResult::Get(s.get(range)),
            });
        }
        Ok(TxnResult {
            succeeded,
            revision: s.revision,
            results,
        })
    }

    pub(crate) fn lease_grant(&self, ttl_seconds: i64) -> Result<i64, EtcdError> {
        let mut s = self.enter()?;
        s.next_lease += 1;
        let id = 0x1000 + s.next_lease;
        let expiry = s.now_ms + ttl_seconds.max(1) as u64 * 1000;
        s.leases.insert(id, (ttl_seconds, expiry));
        Ok(id)
    }

    pub(crate) fn lease_keep_alive(&self, lease: i64) -> Result<i64, EtcdError> {
        let mut s = self.enter()?;
        let now = s.now_ms;
        match s.leases.get_mut(&lease) {
            Some((ttl, expiry)) => {
                *expiry = now + *ttl as u64 * 1000;
                Ok(*ttl)
            }
            None => Ok(0),
        }
    }

    pub(crate) fn lease_revoke(&self, lease: i64) -> Result<(), EtcdError> {
        if self.enter()?.revoke(lease) {
            Ok(())
        } else {
            Err(EtcdError::LeaseNotFound)
        }
    }

    /// Returns the recorded events at or after `start_revision`; when there are
    /// none, the fake clock advances by the timeout (the wait "happens").
    pub(crate) fn watch_wait(
        &self,
        keys: &KeyRange,
        start_revision: i64,
        timeout_ms: u32,
    ) -> Result<WatchResult, EtcdError> {
        let events: Vec<WatchEvent> = {
            let s = self.enter()?;
            s.history
                .iter()
                .filter(|(rev, ev)| *rev >= start_revision && matches(keys, &ev.kv.key))
                .map(|(_, ev)| ev.clone())
                .collect()
        };
        if events.is_empty() {
            self.advance(Duration::from_millis(u64::from(timeout_ms)));
        }
        let next_revision = self.state.borrow().revision + 1;
        Ok(WatchResult {
            events,
            next_revision,
        })
    }
}
