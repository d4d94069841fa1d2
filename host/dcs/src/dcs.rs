//! The typed facade the HA loop talks to.
//!
//! [`Dcs`] wraps any [`DcsBackend`] and speaks the cluster model: reads come back
//! as [`Cluster`] / [`Formation`], writes take typed values and render them in
//! Patroni's exact format before handing raw strings to the backend. It also keeps
//! Patroni's two write-side caches (the last `status` and `failsafe` seen or
//! written), so an unchanged status is not rewritten every cycle and an optime-only
//! write keeps the known slots, as `AbstractDCS.write_status` does.
//!
//! The facade never turns an error into a boolean: `Ok(false)` always means the
//! store answered "no" (another member holds the key, the key already exists),
//! and every error keeps its [`DcsError`] kind for the HA loop to match on.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::{Map, Value};

use crate::backend::{DcsBackend, GroupEntries, LoadScope, Settings, ValueKey};
use crate::error::{DcsError, Result};
use crate::model::{
    Cluster, ClusterConfig, Failover, Failsafe, Formation, MemberData, Status, SyncState,
    TimelineHistory,
};

/// What this node last read or wrote for the keys Patroni skips when unchanged.
#[derive(Debug, Default)]
struct LastSeen {
    status: Option<Status>,
    failsafe: Option<Failsafe>,
}

/// The typed DCS facade over a backend. Cheap to clone; clones share the caches.
#[derive(Clone)]
pub struct Dcs {
    backend: Arc<dyn DcsBackend>,
    last: Arc<Mutex<LastSeen>>,
}

impl std::fmt::Debug for Dcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dcs").finish_non_exhaustive()
    }
}

impl Dcs {
    /// Wrap a backend.
    pub fn new(backend: Arc<dyn DcsBackend>) -> Self {
        Self {
            backend,
            last: Arc::default(),
        }
    }

    /// The backend, for operations the facade does not type.
    pub fn backend(&self) -> &Arc<dyn DcsBackend> {
        &self.backend
    }

    fn last(&self) -> std::sync::MutexGuard<'_, LastSeen> {
        self.last.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Hand the settings to the backend.
    pub async fn configure(&self, settings: Settings) -> Result<()> {
        self.backend.configure(settings).await
    }

    /// Read this member's own cluster (or own group). Also refreshes the caches
    /// of the last known `status` and `failsafe`, as Patroni's `get_cluster` does.
    pub async fn load(&self) -> Result<Cluster> {
        let groups = self.backend.load(LoadScope::OwnGroup).await?;
        let cluster = single_group(&groups, "own group");
        self.remember(&cluster);
        Ok(cluster)
    }

    /// Read one group of the formation (a worker reading the coordinator, 0).
    pub async fn load_group(&self, group: u32) -> Result<Cluster> {
        let groups = self.backend.load(LoadScope::Group(group)).await?;
        Ok(single_group(&groups, "group"))
    }

    /// Read the whole formation in one read (the coordinator's view). Refreshes
    /// the caches from the coordinator group.
    pub async fn load_formation(&self) -> Result<Formation> {
        let groups = self.backend.load(LoadScope::Formation).await?;
        let formation = Formation::from_groups(&groups);
        self.remember(&formation.coordinator());
        Ok(formation)
    }

    fn remember(&self, cluster: &Cluster) {
        let mut last = self.last();
        last.status = Some(cluster.status.clone());
        last.failsafe = cluster.failsafe.clone();
    }

    /// Race for the leader key. `Ok(true)` when won.
    pub async fn attempt_to_acquire_leader(&self) -> Result<bool> {
        self.backend.attempt_to_acquire_leader().await
    }

    /// Keep the leader key. `Ok(false)`: another member holds it.
    pub async fn update_leader(&self) -> Result<bool> {
        self.backend.update_leader().await
    }

    /// Write the leader key unconditionally (right after bootstrap).
    pub async fn take_leader(&self) -> Result<bool> {
        self.backend.take_leader().await
    }

    /// Release the leader key if it is still ours.
    pub async fn delete_leader(&self) -> Result<bool> {
        self.backend.delete_leader().await
    }

    /// Publish this member's key.
    pub async fn touch_member(&self, data: &MemberData) -> Result<bool> {
        self.backend.touch_member(data.render()).await
    }

    /// Write `initialize` (`""` to race for bootstrap, then the sysid).
    pub async fn initialize(&self, create_new: bool, sysid: &str) -> Result<bool> {
        self.backend.initialize(create_new, sysid.to_owned()).await
    }

    /// Delete `initialize` after a failed bootstrap.
    pub async fn cancel_initialization(&self) -> Result<bool> {
        self.backend.cancel_initialization().await
    }

    /// Write a raw value, compare-and-set on `version`. Returns the new version.
    pub async fn set_value(
        &self,
        key: ValueKey,
        value: String,
        version: Option<&str>,
    ) -> Result<String> {
        let new = self
            .backend
            .set_value(key, value, version.map(str::to_owned))
            .await?;
        if new.is_empty() {
            return Err(DcsError::failed(
                "set-value",
                format!("backend returned no version for `{key}`"),
            ));
        }
        Ok(new)
    }

    /// Write the dynamic configuration (compare-and-set on `version` if given).
    pub async fn set_config(
        &self,
        config: &Map<String, Value>,
        version: Option<&str>,
    ) -> Result<String> {
        self.set_value(ValueKey::Config, ClusterConfig::render(config), version)
            .await
    }

    /// Request a failover or switchover (plain put unless `version` is given).
    pub async fn set_failover(&self, failover: &Failover, version: Option<&str>) -> Result<String> {
        self.set_value(ValueKey::Failover, failover.render(), version)
            .await
    }

    /// Clear a failover request the way Patroni does: write `{}`.
    pub async fn clear_failover(&self, version: Option<&str>) -> Result<String> {
        self.set_value(ValueKey::Failover, "{}".to_owned(), version)
            .await
    }

    /// Write the sync state; returns it with the new version, for the next
    /// compare-and-set in the same cycle.
    pub async fn set_sync_state(
        &self,
        sync: &SyncState,
        version: Option<&str>,
    ) -> Result<SyncState> {
        let new = self
            .set_value(ValueKey::Sync, sync.render(), version)
            .await?;
        Ok(SyncState {
            version: Some(new),
            ..sync.clone()
        })
    }

    /// Delete the sync state (synchronous mode switched off).
    pub async fn delete_sync_state(&self, version: Option<&str>) -> Result<()> {
        self.backend
            .delete_value(ValueKey::Sync, version.map(str::to_owned))
            .await
    }

    /// Write the timeline history (plain put).
    pub async fn set_history(&self, history: &TimelineHistory) -> Result<String> {
        self.set_value(ValueKey::History, history.render(), None)
            .await
    }

    /// Write `status` unless it equals the last one read or written. `Ok(true)`
    /// when written.
    pub async fn write_status(&self, status: &Status) -> Result<bool> {
        if self.last().status.as_ref() == Some(status) {
            return Ok(false);
        }
        self.set_value(ValueKey::Status, status.render(), None)
            .await?;
        self.last().status = Some(status.clone());
        Ok(true)
    }

    /// Write only a new optime (voluntary release), keeping the last known slots
    /// and retained slots, as Patroni's `write_leader_optime` does.
    pub async fn write_optime(&self, optime: u64) -> Result<bool> {
        let mut status = self.last().status.clone().unwrap_or_default();
        status.optime = optime;
        self.write_status(&status).await
    }

    /// Write the legacy `optime/leader` key (only needed while a member runs a
    /// daemon older than 2.1.0; see [`Cluster::min_version`]).
    pub async fn write_leader_optime(&self, optime: u64) -> Result<String> {
        self.set_value(ValueKey::OptimeLeader, optime.to_string(), None)
            .await
    }

    /// Write `failsafe` unless it equals the last one read or written.
    pub async fn write_failsafe(&self, failsafe: &Failsafe) -> Result<bool> {
        if self.last().failsafe.as_ref() == Some(failsafe) {
            return Ok(false);
        }
        self.set_value(ValueKey::Failsafe, failsafe.render(), None)
            .await?;
        self.last().failsafe = Some(failsafe.clone());
        Ok(true)
    }

    /// Delete every key of this cluster (or group).
    pub async fn delete_cluster(&self) -> Result<()> {
        self.backend.delete_cluster().await
    }

    /// The leader lock's ttl changed.
    pub async fn set_ttl(&self, seconds: u32) -> Result<()> {
        self.backend.set_ttl(seconds).await
    }

    /// The retry budget changed.
    pub async fn set_retry_timeout(&self, seconds: u32) -> Result<()> {
        self.backend.set_retry_timeout(seconds).await
    }

    /// Sleep until the leader key changes from `leader_version` or `timeout`
    /// passes (saturating at `u32::MAX` ms). `Ok(true)` when woken by a change.
    pub async fn watch(&self, leader_version: Option<&str>, timeout: Duration) -> Result<bool> {
        let ms = u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX);
        self.backend
            .watch(leader_version.map(str::to_owned), ms)
            .await
    }
}

/// The one cluster of an `OwnGroup` / `Group` read. A backend that answers more
/// than one group broke the contract; the first is used and the rest logged.
fn single_group(groups: &[GroupEntries], what: &str) -> Cluster {
    if groups.len() > 1 {
        tracing::warn!(
            count = groups.len(),
            "{what} read returned several groups, using the first"
        );
    }
    groups
        .first()
        .map(|g| Cluster::from_entries(&g.entries))
        .unwrap_or_default()
}
