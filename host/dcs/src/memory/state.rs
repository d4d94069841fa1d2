//! The store itself: keys with etcd-style revisions, and sessions that expire.
//!
//! Modelled on etcd v3 because that is the backend Patroni's semantics were
//! written for: one global revision bumped by every change, each key remembering
//! the revision it was created and last modified at (the key's "version" is its
//! mod revision in decimal), and leases whose expiry deletes every key bound to
//! them in one revision.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::backend::Entry;

/// One stored key.
#[derive(Debug, Clone)]
pub(super) struct Kv {
    pub(super) value: String,
    pub(super) mod_revision: u64,
    pub(super) session: Option<u64>,
}

#[derive(Debug, Clone, Copy)]
struct Session {
    ttl: Duration,
    expires_at: Duration,
}

/// Keys, sessions and the revision counter.
#[derive(Debug)]
pub(super) struct State {
    revision: u64,
    keys: BTreeMap<String, Kv>,
    sessions: HashMap<u64, Session>,
    next_session: u64,
    pub(super) available: bool,
}

impl State {
    pub(super) fn new() -> Self {
        Self {
            revision: 1,
            keys: BTreeMap::new(),
            sessions: HashMap::new(),
            next_session: 1,
            available: true,
        }
    }

    pub(super) fn revision(&self) -> u64 {
        self.revision
    }

    /// Drop every session whose time ran out, and the keys bound to it.
    pub(super) fn expire(&mut self, now: Duration) {
        let expired: Vec<u64> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.expires_at <= now)
            .map(|(id, _)| *id)
            .collect();
        if expired.is_empty() {
            return;
        }
        for id in &expired {
            self.sessions.remove(id);
        }
        let before = self.keys.len();
        self.keys
            .retain(|_, kv| kv.session.is_none_or(|s| !expired.contains(&s)));
        if self.keys.len() != before {
            self.revision += 1;
        }
    }

    /// Grant a new session.
    pub(super) fn grant(&mut self, ttl: Duration, now: Duration) -> u64 {
        let id = self.next_session;
        self.next_session += 1;
        self.sessions.insert(
            id,
            Session {
                ttl,
                expires_at: now + ttl,
            },
        );
        id
    }

    /// Renew a live session; `false` when it is gone.
    pub(super) fn keepalive(&mut self, id: u64, now: Duration) -> bool {
        match self.sessions.get_mut(&id) {
            Some(s) => {
                s.expires_at = now + s.ttl;
                true
            }
            None => false,
        }
    }

    /// When the session a key is bound to runs out.
    pub(super) fn expiry_of(&self, path: &str) -> Option<Duration> {
        let session = self.keys.get(path)?.session?;
        self.sessions.get(&session).map(|s| s.expires_at)
    }

    pub(super) fn get(&self, path: &str) -> Option<&Kv> {
        self.keys.get(path)
    }

    /// Create or overwrite a key; returns the new revision.
    pub(super) fn put(&mut self, path: &str, value: String, session: Option<u64>) -> u64 {
        self.revision += 1;
        let kv = Kv {
            value,
            mod_revision: self.revision,
            session,
        };
        self.keys.insert(path.to_owned(), kv);
        self.revision
    }

    /// Delete a key; `true` when it existed.
    pub(super) fn delete(&mut self, path: &str) -> bool {
        let existed = self.keys.remove(path).is_some();
        if existed {
            self.revision += 1;
        }
        existed
    }

    /// Delete every key under `prefix` in one revision.
    pub(super) fn delete_prefix(&mut self, prefix: &str) {
        let before = self.keys.len();
        self.keys.retain(|k, _| !k.starts_with(prefix));
        if self.keys.len() != before {
            self.revision += 1;
        }
    }

    /// Every key under `prefix`, made relative to it, in key order.
    pub(super) fn range(&self, prefix: &str) -> Vec<Entry> {
        self.keys
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, kv)| Entry {
                key: k[prefix.len()..].to_owned(),
                value: kv.value.clone(),
                version: kv.mod_revision.to_string(),
                session: kv.session.map(|s| s.to_string()),
            })
            .collect()
    }

    /// Every full key path.
    pub(super) fn paths(&self) -> Vec<String> {
        self.keys.keys().cloned().collect()
    }
}
