//! One node's handle on a [`MemoryStore`]: its settings, its session, and the
//! [`DcsBackend`] operations with etcd3's semantics (see `patroni-compat.md` §2.5).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::MemoryStore;
use super::state::State;
use crate::backend::{DcsBackend, DcsFuture, GroupEntries, LoadScope, Settings, ValueKey};
use crate::error::{DcsError, Result};
use crate::path::{ClusterPath, split_formation};

/// The node's view of itself.
#[derive(Debug, Default)]
struct Node {
    settings: Option<Settings>,
    path: Option<ClusterPath>,
    session: Option<u64>,
}

/// Everything an operation needs, borrowed for its duration.
struct Ctx<'a> {
    settings: &'a Settings,
    path: &'a ClusterPath,
    session: &'a mut Option<u64>,
    now: Duration,
}

impl Ctx<'_> {
    /// The full path of a key of this member's own cluster (or group).
    fn key(&self, relative: &str) -> String {
        self.path.key(self.settings.group, relative)
    }

    /// Keepalive our session, or grant a new one if it expired (etcd: a lease
    /// that is not found is forgotten and re-granted).
    fn session(&mut self, st: &mut State) -> u64 {
        if let Some(id) = *self.session
            && st.keepalive(id, self.now)
        {
            return id;
        }
        let id = st.grant(Duration::from_secs(u64::from(self.settings.ttl)), self.now);
        *self.session = Some(id);
        id
    }
}

/// A node connected to a [`MemoryStore`]. Implements [`DcsBackend`].
#[derive(Debug)]
pub struct MemoryBackend {
    store: MemoryStore,
    node: Mutex<Node>,
    reachable: AtomicBool,
}

impl MemoryBackend {
    pub(super) fn new(store: MemoryStore) -> Self {
        Self {
            store,
            node: Mutex::default(),
            reachable: AtomicBool::new(true),
        }
    }

    /// The store this node is connected to.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    /// Partition this node from the store (`false`) or heal it (`true`).
    pub fn set_reachable(&self, reachable: bool) {
        self.reachable.store(reachable, Ordering::SeqCst);
    }

    /// This node's current session, if it holds one.
    pub fn session(&self) -> Option<String> {
        self.node().session.map(|s| s.to_string())
    }

    fn node(&self) -> MutexGuard<'_, Node> {
        self.node.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Run one operation: check reachability and configuration, then run `f` on
    /// the store with expired sessions already dropped.
    fn op<T>(
        &self,
        name: &'static str,
        f: impl FnOnce(&mut State, &mut Ctx<'_>) -> Result<T>,
    ) -> Result<T> {
        if !self.reachable.load(Ordering::SeqCst) {
            return Err(DcsError::unavailable("node is partitioned from the store"));
        }
        let mut node = self.node();
        let Node {
            settings: Some(settings),
            path: Some(path),
            session,
        } = &mut *node
        else {
            return Err(DcsError::failed(name, "backend is not configured"));
        };
        let now = self.store.shared.clock.now();
        let mut ctx = Ctx {
            settings,
            path,
            session,
            now,
        };
        self.store.mutate(|st| {
            if st.available {
                f(st, &mut ctx)
            } else {
                Err(DcsError::unavailable("store is unavailable"))
            }
        })
    }

    fn configure_now(&self, settings: Settings) -> Result<()> {
        if settings.scope.is_empty() {
            return Err(DcsError::invalid_config("scope: must not be empty"));
        }
        if settings.member.is_empty() || settings.member.contains('/') {
            return Err(DcsError::invalid_config(
                "name: must be non-empty and contain no `/`",
            ));
        }
        if settings.ttl == 0 {
            return Err(DcsError::invalid_config("ttl: must be at least 1 second"));
        }
        if !settings.config.trim().is_empty()
            && !matches!(
                serde_json::from_str(&settings.config),
                Ok(serde_json::Value::Object(_))
            )
        {
            return Err(DcsError::invalid_config(
                "memory: the plugin section must be a JSON object",
            ));
        }
        let mut node = self.node();
        let ttl_changed = node
            .settings
            .as_ref()
            .is_some_and(|s| s.ttl != settings.ttl);
        let identity_changed = node
            .settings
            .as_ref()
            .is_some_and(|s| s.member != settings.member || s.scope != settings.scope);
        if ttl_changed || identity_changed {
            node.session = None;
        }
        node.path = Some(ClusterPath::new(Some(&settings.namespace), &settings.scope));
        node.settings = Some(settings);
        Ok(())
    }

    fn load_now(&self, scope: LoadScope) -> Result<Vec<GroupEntries>> {
        self.op("load", |st, cx| {
            Ok(match scope {
                LoadScope::OwnGroup => vec![GroupEntries {
                    group: cx.settings.group,
                    entries: st.range(&cx.path.cluster(cx.settings.group)),
                }],
                LoadScope::Group(g) => vec![GroupEntries {
                    group: Some(g),
                    entries: st.range(&cx.path.group(g)),
                }],
                LoadScope::Formation => split_formation(st.range(cx.path.base())),
            })
        })
    }

    fn acquire_now(&self) -> Result<bool> {
        self.op("attempt-to-acquire-leader", |st, cx| {
            let session = cx.session(st);
            let key = cx.key("leader");
            if st.get(&key).is_some() {
                return Ok(false);
            }
            st.put(&key, cx.settings.member.clone(), Some(session));
            Ok(true)
        })
    }

    fn update_leader_now(&self) -> Result<bool> {
        self.op("update-leader", |st, cx| {
            let session = cx.session(st);
            let key = cx.key("leader");
            match st.get(&key) {
                Some(kv) if kv.value != cx.settings.member => Ok(false),
                Some(kv) if kv.session == Some(session) => Ok(true),
                _ => {
                    st.put(&key, cx.settings.member.clone(), Some(session));
                    Ok(true)
                }
            }
        })
    }

    fn check_version(st: &State, key: ValueKey, path: &str, expected: Option<&str>) -> Result<()> {
        let Some(expected) = expected else {
            return Ok(());
        };
        let current = st.get(path).map(|kv| kv.mod_revision.to_string());
        if current.as_deref() == Some(expected) {
            Ok(())
        } else {
            let now = current.unwrap_or_else(|| "absent".to_owned());
            Err(DcsError::conflict(
                key.as_str(),
                format!("expected version {expected}, key is at {now}"),
            ))
        }
    }

    fn watch_once(&self, leader_version: Option<&str>) -> Result<(bool, Option<Duration>)> {
        self.op("watch", |st, cx| {
            let key = cx.key("leader");
            let current = st.get(&key).map(|kv| kv.mod_revision.to_string());
            Ok((current.as_deref() != leader_version, st.expiry_of(&key)))
        })
    }

    async fn watch_now(&self, leader_version: Option<String>, timeout_ms: u32) -> Result<bool> {
        let clock = self.store.shared.clock.clone();
        let deadline = clock.now() + Duration::from_millis(u64::from(timeout_ms));
        let mut changes = self.store.shared.changes.subscribe();
        loop {
            changes.mark_unchanged();
            let (changed, expiry) = self.watch_once(leader_version.as_deref())?;
            if changed {
                return Ok(true);
            }
            if clock.now() >= deadline {
                return Ok(false);
            }
            let wake = expiry.map_or(deadline, |e| e.min(deadline));
            tokio::select! {
                _ = changes.changed() => {}
                () = clock.sleep_until(wake) => {}
            }
        }
    }
}

impl DcsBackend for MemoryBackend {
    fn configure(&self, settings: Settings) -> DcsFuture<'_, ()> {
        Box::pin(async move { self.configure_now(settings) })
    }

    fn load(&self, scope: LoadScope) -> DcsFuture<'_, Vec<GroupEntries>> {
        Box::pin(async move { self.load_now(scope) })
    }

    fn attempt_to_acquire_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(async move { self.acquire_now() })
    }

    fn update_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(async move { self.update_leader_now() })
    }

    fn take_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(async move {
            self.op("take-leader", |st, cx| {
                let session = cx.session(st);
                st.put(&cx.key("leader"), cx.settings.member.clone(), Some(session));
                Ok(true)
            })
        })
    }

    fn delete_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(async move {
            self.op("delete-leader", |st, cx| {
                let key = cx.key("leader");
                if st
                    .get(&key)
                    .is_some_and(|kv| kv.value == cx.settings.member)
                {
                    Ok(st.delete(&key))
                } else {
                    Ok(false)
                }
            })
        })
    }

    fn touch_member(&self, value: String) -> DcsFuture<'_, bool> {
        Box::pin(async move {
            self.op("touch-member", |st, cx| {
                let session = cx.session(st);
                let key = cx.key(&format!("members/{}", cx.settings.member));
                st.put(&key, value, Some(session));
                Ok(true)
            })
        })
    }

    fn initialize(&self, create_new: bool, value: String) -> DcsFuture<'_, bool> {
        Box::pin(async move {
            self.op("initialize", |st, cx| {
                let key = cx.key("initialize");
                if create_new && st.get(&key).is_some() {
                    return Ok(false);
                }
                st.put(&key, value, None);
                Ok(true)
            })
        })
    }

    fn cancel_initialization(&self) -> DcsFuture<'_, bool> {
        Box::pin(async move {
            self.op("cancel-initialization", |st, cx| {
                st.delete(&cx.key("initialize"));
                Ok(true)
            })
        })
    }

    fn set_value(
        &self,
        key: ValueKey,
        value: String,
        expected_version: Option<String>,
    ) -> DcsFuture<'_, String> {
        Box::pin(async move {
            self.op("set-value", |st, cx| {
                let path = cx.key(key.as_str());
                Self::check_version(st, key, &path, expected_version.as_deref())?;
                Ok(st.put(&path, value, None).to_string())
            })
        })
    }

    fn delete_value(&self, key: ValueKey, expected_version: Option<String>) -> DcsFuture<'_, ()> {
        Box::pin(async move {
            self.op("delete-value", |st, cx| {
                let path = cx.key(key.as_str());
                Self::check_version(st, key, &path, expected_version.as_deref())?;
                st.delete(&path);
                Ok(())
            })
        })
    }

    fn delete_cluster(&self) -> DcsFuture<'_, ()> {
        Box::pin(async move {
            self.op("delete-cluster", |st, cx| {
                st.delete_prefix(&cx.path.cluster(cx.settings.group));
                Ok(())
            })
        })
    }

    fn set_ttl(&self, seconds: u32) -> DcsFuture<'_, ()> {
        Box::pin(async move {
            if seconds == 0 {
                return Err(DcsError::invalid_config("ttl: must be at least 1 second"));
            }
            let mut node = self.node();
            match node.settings.as_mut() {
                Some(s) if s.ttl != seconds => {
                    s.ttl = seconds;
                    // etcd3: forget the lease; a new one with the new ttl is granted
                    // at the next refresh and the leader key re-attached to it.
                    node.session = None;
                }
                Some(_) => {}
                None => return Err(DcsError::failed("set-ttl", "backend is not configured")),
            }
            Ok(())
        })
    }

    fn set_retry_timeout(&self, seconds: u32) -> DcsFuture<'_, ()> {
        Box::pin(async move {
            match self.node().settings.as_mut() {
                Some(s) => {
                    s.retry_timeout = seconds;
                    Ok(())
                }
                None => Err(DcsError::failed(
                    "set-retry-timeout",
                    "backend is not configured",
                )),
            }
        })
    }

    fn watch(&self, leader_version: Option<String>, timeout_ms: u32) -> DcsFuture<'_, bool> {
        Box::pin(self.watch_now(leader_version, timeout_ms))
    }
}
