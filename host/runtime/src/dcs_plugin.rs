//! A DCS component behind [`keel_dcs::DcsBackend`].
//!
//! Besides forwarding, the adapter checks what the plugin returns (keys, groups,
//! versions) so a broken plugin is a [`DcsError::PluginFault`], never a
//! plausible-looking cluster; and it replays the last accepted `configure` on
//! every fresh instance, so a plugin that faulted comes back configured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keel_dcs::{
    DcsBackend, DcsError, DcsFuture, Entry, GroupEntries, LoadScope, Settings, ValueKey,
};
use wasmtime::Store;

use crate::bindings::dcs::{self as wit, DcsPlugin as Bindings, DcsPluginPre};
use crate::capabilities::Grants;
use crate::catalog::PluginDescription;
use crate::error::PluginError;
use crate::instance::{CallFuture, Init, Instances, Pre};
use crate::limits::PluginLimits;
use crate::metrics::PluginMetrics;
use crate::runtime::Runtime;
use crate::state::HostState;

use wit::keel::dcs::types as t;

impl Pre<Bindings> for DcsPluginPre<HostState> {
    fn instantiate<'a>(&'a self, store: &'a mut Store<HostState>) -> CallFuture<'a, Bindings> {
        Box::pin(self.instantiate_async(store))
    }
}

/// A loaded DCS plugin with its grants: one live instance, calls one at a time.
pub struct DcsPlugin {
    inner: Instances<Bindings>,
    /// The plugin retries an unreachable store for up to `retry_timeout`; its
    /// calls get that on top of the compute budget (milliseconds).
    retry_budget_ms: AtomicU64,
}

impl std::fmt::Debug for DcsPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DcsPlugin")
            .field("plugin", &self.inner.plugin())
            .finish_non_exhaustive()
    }
}

struct Configure(t::Settings);

impl Init<Bindings> for Configure {
    fn name(&self) -> &'static str {
        "configure"
    }
    fn run<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
        b: &'a Bindings,
    ) -> CallFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let answer = b.keel_dcs_backend().call_configure(store, &self.0).await?;
            Ok(answer.map_err(|e| format!("{e:?}")))
        })
    }
}

fn wit_settings(s: &Settings) -> t::Settings {
    t::Settings {
        namespace: s.namespace.clone(),
        scope: s.scope.clone(),
        group: s.group,
        member: s.member.clone(),
        ttl: s.ttl,
        loop_wait: s.loop_wait,
        retry_timeout: s.retry_timeout,
        config: s.config.clone(),
    }
}

fn dcs_error(operation: &'static str, error: t::DcsError) -> DcsError {
    match error {
        t::DcsError::Unavailable(reason) => DcsError::Unavailable { reason },
        t::DcsError::Conflict(reason) => DcsError::Conflict {
            key: operation.to_owned(),
            reason,
        },
        t::DcsError::InvalidConfig(reason) => DcsError::InvalidConfig { reason },
        t::DcsError::Failed(reason) => DcsError::Failed { operation, reason },
    }
}

fn fault(error: &PluginError) -> DcsError {
    DcsError::PluginFault {
        plugin: error.plugin().to_owned(),
        reason: error.to_string(),
    }
}

fn value_key(key: ValueKey) -> t::ValueKey {
    match key {
        ValueKey::Config => t::ValueKey::Config,
        ValueKey::Failover => t::ValueKey::Failover,
        ValueKey::Sync => t::ValueKey::Sync,
        ValueKey::History => t::ValueKey::History,
        ValueKey::Status => t::ValueKey::Status,
        ValueKey::Failsafe => t::ValueKey::Failsafe,
        ValueKey::OptimeLeader => t::ValueKey::OptimeLeader,
    }
}

/// Check a `load` answer against the scope asked for.
fn check_load(scope: LoadScope, groups: &[t::GroupEntries]) -> Result<(), String> {
    match scope {
        LoadScope::OwnGroup | LoadScope::Group(_) if groups.len() != 1 => {
            return Err(format!("asked for one group, got {}", groups.len()));
        }
        LoadScope::Group(n) if groups[0].group != Some(n) => {
            return Err(format!("asked for group {n}, got {:?}", groups[0].group));
        }
        LoadScope::Formation if groups.iter().any(|g| g.group.is_none()) => {
            return Err("a formation load returned a group without a number".into());
        }
        _ => {}
    }
    if groups.windows(2).any(|w| w[0].group >= w[1].group) {
        return Err("groups are not in strictly ascending order".into());
    }
    for entry in groups.iter().flat_map(|g| &g.entries) {
        let bad = entry.key.is_empty()
            || entry.key.starts_with('/')
            || entry
                .key
                .split('/')
                .any(|part| part.is_empty() || part == "." || part == "..")
            || entry.key.chars().any(char::is_control);
        if bad {
            return Err(format!("key {:?} is not a relative cluster key", entry.key));
        }
        if entry.version.is_empty() {
            return Err(format!("key {:?} has an empty version", entry.key));
        }
    }
    Ok(())
}

impl DcsPlugin {
    pub(crate) fn new(
        name: &str,
        runtime: &Runtime,
        pre: Arc<DcsPluginPre<HostState>>,
        grants: Grants,
        limits: PluginLimits,
    ) -> Self {
        Self {
            inner: Instances::new(name.into(), runtime.clone(), pre, grants, limits),
            retry_budget_ms: AtomicU64::new(0),
        }
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.inner.plugin()
    }

    /// The plugin's counters.
    pub fn metrics(&self) -> &Arc<PluginMetrics> {
        self.inner.metrics()
    }

    /// Ask the plugin who it is (not yet checked against its world).
    pub async fn describe(&self) -> Result<PluginDescription, PluginError> {
        let d = self
            .inner
            .call("describe", Duration::ZERO, |store, b| {
                Box::pin(b.keel_dcs_backend().call_describe(store))
            })
            .await?;
        Ok(crate::catalog::described!(dcs, d))
    }

    /// A call whose inner answer is a `result<T, dcs-error>`.
    async fn call<T, F>(&self, op: &'static str, extra: Duration, f: F) -> Result<T, DcsError>
    where
        T: Send,
        F: for<'a> FnOnce(
                &'a mut Store<HostState>,
                &'a Bindings,
            ) -> CallFuture<'a, Result<T, t::DcsError>>
            + Send,
    {
        let extra = extra + Duration::from_millis(self.retry_budget_ms.load(Ordering::Relaxed));
        match self.inner.call(op, extra, f).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(error)) => Err(dcs_error(op, error)),
            Err(error) => Err(fault(&error)),
        }
    }

    fn bad_return(&self, call: &'static str, problem: String) -> DcsError {
        let error = PluginError::BadReturn {
            plugin: self.name().to_owned(),
            call,
            problem,
        };
        self.inner.metrics().record_failure(&error);
        fault(&error)
    }

    /// Benchmark probe on the fixture plugin: one call, no work (`set-ttl`).
    #[doc(hidden)]
    pub async fn probe_noop(&self) -> Result<(), DcsError> {
        self.set_ttl(0).await
    }
}

macro_rules! forward {
    ($self:ident, $op:literal, $method:ident $(, $arg:expr)*) => {
        $self.call($op, Duration::ZERO, move |store, b| {
            Box::pin(async move { b.keel_dcs_backend().$method(store $(, $arg)*).await })
        })
    };
}

impl DcsBackend for DcsPlugin {
    fn configure(&self, settings: Settings) -> DcsFuture<'_, ()> {
        Box::pin(async move {
            let settings = wit_settings(&settings);
            let arg = settings.clone();
            self.call("configure", Duration::ZERO, move |store, b| {
                Box::pin(async move { b.keel_dcs_backend().call_configure(store, &arg).await })
            })
            .await?;
            self.retry_budget_ms
                .store(u64::from(settings.retry_timeout) * 1000, Ordering::Relaxed);
            self.inner.set_init(Arc::new(Configure(settings)));
            Ok(())
        })
    }

    fn load(&self, scope: LoadScope) -> DcsFuture<'_, Vec<GroupEntries>> {
        Box::pin(async move {
            let wit_scope = match scope {
                LoadScope::OwnGroup => t::LoadScope::OwnGroup,
                LoadScope::Group(n) => t::LoadScope::Group(n),
                LoadScope::Formation => t::LoadScope::Formation,
            };
            let groups = forward!(self, "load", call_load, wit_scope).await?;
            check_load(scope, &groups).map_err(|problem| self.bad_return("load", problem))?;
            Ok(groups
                .into_iter()
                .map(|g| GroupEntries {
                    group: g.group,
                    entries: g
                        .entries
                        .into_iter()
                        .map(|e| Entry {
                            key: e.key,
                            value: e.value,
                            version: e.version,
                            session: e.session,
                        })
                        .collect(),
                })
                .collect())
        })
    }

    fn attempt_to_acquire_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(forward!(
            self,
            "attempt-to-acquire-leader",
            call_attempt_to_acquire_leader
        ))
    }

    fn update_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(forward!(self, "update-leader", call_update_leader))
    }

    fn take_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(forward!(self, "take-leader", call_take_leader))
    }

    fn delete_leader(&self) -> DcsFuture<'_, bool> {
        Box::pin(forward!(self, "delete-leader", call_delete_leader))
    }

    fn touch_member(&self, value: String) -> DcsFuture<'_, bool> {
        Box::pin(async move { forward!(self, "touch-member", call_touch_member, &value).await })
    }

    fn initialize(&self, create_new: bool, value: String) -> DcsFuture<'_, bool> {
        Box::pin(
            async move { forward!(self, "initialize", call_initialize, create_new, &value).await },
        )
    }

    fn cancel_initialization(&self) -> DcsFuture<'_, bool> {
        Box::pin(forward!(
            self,
            "cancel-initialization",
            call_cancel_initialization
        ))
    }

    fn set_value(
        &self,
        key: ValueKey,
        value: String,
        expected_version: Option<String>,
    ) -> DcsFuture<'_, String> {
        Box::pin(async move {
            let version = forward!(
                self,
                "set-value",
                call_set_value,
                value_key(key),
                &value,
                expected_version.as_deref()
            )
            .await
            .map_err(|e| match e {
                DcsError::Conflict { reason, .. } => DcsError::Conflict {
                    key: key.as_str().to_owned(),
                    reason,
                },
                other => other,
            })?;
            if version.is_empty() {
                return Err(self.bad_return("set-value", "empty version".into()));
            }
            Ok(version)
        })
    }

    fn delete_value(&self, key: ValueKey, expected_version: Option<String>) -> DcsFuture<'_, ()> {
        Box::pin(async move {
            forward!(
                self,
                "delete-value",
                call_delete_value,
                value_key(key),
                expected_version.as_deref()
            )
            .await
            .map_err(|e| match e {
                DcsError::Conflict { reason, .. } => DcsError::Conflict {
                    key: key.as_str().to_owned(),
                    reason,
                },
                other => other,
            })
        })
    }

    fn delete_cluster(&self) -> DcsFuture<'_, ()> {
        Box::pin(forward!(self, "delete-cluster", call_delete_cluster))
    }

    fn set_ttl(&self, seconds: u32) -> DcsFuture<'_, ()> {
        Box::pin(forward!(self, "set-ttl", call_set_ttl, seconds))
    }

    fn set_retry_timeout(&self, seconds: u32) -> DcsFuture<'_, ()> {
        Box::pin(forward!(
            self,
            "set-retry-timeout",
            call_set_retry_timeout,
            seconds
        ))
    }

    fn watch(&self, leader_version: Option<String>, timeout_ms: u32) -> DcsFuture<'_, bool> {
        Box::pin(async move {
            // The wait itself is not the plugin's compute time: add it to the budget.
            let wait = Duration::from_millis(u64::from(timeout_ms));
            self.call("watch", wait, move |store, b| {
                Box::pin(async move {
                    b.keel_dcs_backend()
                        .call_watch(store, leader_version.as_deref(), timeout_ms)
                        .await
                })
            })
            .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: Option<u32>, keys: &[&str]) -> t::GroupEntries {
        t::GroupEntries {
            group: n,
            entries: keys
                .iter()
                .map(|k| t::Entry {
                    key: (*k).into(),
                    value: String::new(),
                    version: "1".into(),
                    session: None,
                })
                .collect(),
        }
    }

    #[test]
    fn load_answers_are_checked() {
        assert!(
            check_load(
                LoadScope::OwnGroup,
                &[group(None, &["leader", "members/a"])]
            )
            .is_ok()
        );
        assert!(
            check_load(
                LoadScope::Formation,
                &[group(Some(0), &[]), group(Some(1), &[])]
            )
            .is_ok()
        );
        let bad: Vec<(LoadScope, Vec<t::GroupEntries>)> = vec![
            (LoadScope::OwnGroup, vec![]),
            (LoadScope::Group(2), vec![group(Some(1), &[])]),
            (
                LoadScope::Formation,
                vec![group(Some(1), &[]), group(Some(0), &[])],
            ),
            (LoadScope::Formation, vec![group(None, &[])]),
            (LoadScope::OwnGroup, vec![group(None, &["/abs"])]),
            (LoadScope::OwnGroup, vec![group(None, &["members/../x"])]),
            (LoadScope::OwnGroup, vec![group(None, &["a//b"])]),
        ];
        for (scope, groups) in bad {
            assert!(check_load(scope, &groups).is_err(), "{scope:?} {groups:?}");
        }
    }
}
