//! The in-memory reference backend.
//!
//! [`MemoryStore`] is one shared store (think: one etcd cluster); each node gets
//! its own [`MemoryBackend`] from [`MemoryStore::connect`], holding its own
//! session, exactly as each Patroni daemon holds its own etcd lease. It implements
//! the full WIT contract with etcd3's semantics (create-only leader race, leases
//! that expire after `ttl` without keepalive, compare-and-set on the mod revision,
//! watch on the leader key), so the DCS conformance kit runs against it beside
//! etcd, and the deterministic simulation drives it through a [`ManualClock`].
//!
//! Faults for the simulation: [`MemoryStore::set_available`] makes the whole store
//! unreachable; [`MemoryBackend::set_reachable`] partitions one node. Both give
//! [`DcsError::Unavailable`](crate::DcsError::Unavailable), never `Ok(false)`.
//!
//! It never talks to the system clock or spawns tasks; expiry is evaluated
//! lazily, at every operation, against the injected clock.

mod backend;
mod clock;
mod state;

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

pub use backend::MemoryBackend;
pub use clock::{Clock, ManualClock, TokioClock};

use crate::backend::Entry;
use state::State;

/// What every node handle shares.
struct Shared {
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    /// Carries the store revision; bumped after every change, so watchers wake.
    changes: watch::Sender<u64>,
}

/// One in-memory store shared by many nodes. Cheap to clone.
#[derive(Clone)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("state", &*self.state())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store driven by `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::new()),
                clock,
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// An empty store with a [`ManualClock`], returned too so the caller moves time.
    pub fn with_manual_clock() -> (Self, ManualClock) {
        let clock = ManualClock::new();
        (Self::new(Arc::new(clock.clone())), clock)
    }

    /// A new node handle, with no session until it is configured and first used.
    pub fn connect(&self) -> MemoryBackend {
        MemoryBackend::new(self.clone())
    }

    /// The store's clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Make the store reachable or not for every node.
    pub fn set_available(&self, available: bool) {
        self.state().available = available;
    }

    /// Write a key by full path, outside any session (tests and the simulation
    /// use it to plant values written by "someone else", Patroni or garbage).
    /// Returns the key's new version.
    pub fn put_raw(&self, path: &str, value: &str) -> String {
        self.mutate(|st| st.put(path, value.to_owned(), None))
            .to_string()
    }

    /// Delete a key by full path.
    pub fn delete_raw(&self, path: &str) -> bool {
        self.mutate(|st| st.delete(path))
    }

    /// Read a key by full path (the entry's key is the full path).
    pub fn get_raw(&self, path: &str) -> Option<Entry> {
        let mut st = self.state();
        st.expire(self.shared.clock.now());
        st.get(path).map(|kv| Entry {
            key: path.to_owned(),
            value: kv.value.clone(),
            version: kv.mod_revision.to_string(),
            session: kv.session.map(|s| s.to_string()),
        })
    }

    /// Every live key's full path, sorted.
    pub fn paths(&self) -> Vec<String> {
        let mut st = self.state();
        st.expire(self.shared.clock.now());
        st.paths()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Run `f` on the state after expiring sessions, then wake watchers if the
    /// revision moved.
    fn mutate<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let (out, revision, changed) = {
            let mut st = self.state();
            let before = st.revision();
            st.expire(self.shared.clock.now());
            let out = f(&mut st);
            (out, st.revision(), st.revision() != before)
        };
        if changed {
            self.shared.changes.send_replace(revision);
        }
        out
    }
}
