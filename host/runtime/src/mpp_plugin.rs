//! An MPP component (Citus and the like) behind a typed Rust API.
//!
//! The adapter checks the parameters a handler returns before they can reach
//! postgresql.conf, and replays the last accepted `validate-config` on every
//! fresh instance. A fresh instance has lost the old one's PostgreSQL sessions,
//! so an open pause transaction rolls back: the safe outcome.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::Store;

use crate::bindings::mpp::{self as wit, MppPlugin as Bindings, MppPluginPre};
use crate::capabilities::Grants;
use crate::catalog::PluginDescription;
use crate::error::PluginError;
use crate::instance::{CallFuture, Init, Instances, Pre};
use crate::limits::PluginLimits;
use crate::metrics::PluginMetrics;
use crate::runtime::Runtime;
use crate::state::HostState;

use wit::keel::mpp::types as t;

impl Pre<Bindings> for MppPluginPre<HostState> {
    fn instantiate<'a>(&'a self, store: &'a mut Store<HostState>) -> CallFuture<'a, Bindings> {
        Box::pin(self.instantiate_async(store))
    }
}

/// Why an MPP call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MppError {
    /// The handler refused its config section.
    #[error("invalid {plugin} configuration: {reason}")]
    InvalidConfig {
        /// Plugin name.
        plugin: String,
        /// The handler's message (names the key).
        reason: String,
    },
    /// The handler could not do what was asked.
    #[error("{plugin} `{call}` failed: {reason}")]
    Failed {
        /// Plugin name.
        plugin: String,
        /// The call.
        call: &'static str,
        /// The handler's message.
        reason: String,
    },
    /// The plugin faulted.
    #[error(transparent)]
    Fault(#[from] PluginError),
}

/// A PostgreSQL parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parameter {
    /// Name.
    pub name: String,
    /// Value as written in postgresql.conf, unquoted.
    pub value: String,
}

/// What a worker announces to the coordinator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MppEventKind {
    /// About to stop for a switchover.
    BeforeDemote,
    /// About to be promoted.
    BeforePromote,
    /// Promoted and running.
    AfterPromote,
}

/// A worker's event, checked against the DCS by the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MppEvent {
    /// What happens.
    pub kind: MppEventKind,
    /// The worker's group.
    pub group: u32,
    /// The sending member.
    pub leader: String,
    /// Host of the worker's primary.
    pub host: String,
    /// Port of the worker's primary.
    pub port: u16,
    /// How long traffic may stay paused, seconds.
    pub timeout_seconds: u32,
    /// Lock cooldown, milliseconds.
    pub cooldown_ms: u32,
}

/// A member as the DCS shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberView {
    /// Name.
    pub name: String,
    /// Host from its conn_url.
    pub host: Option<String>,
    /// Port from its conn_url.
    pub port: u16,
    /// Published role.
    pub role: String,
    /// Published state.
    pub state: String,
    /// The `noloadbalance` tag.
    pub noloadbalance: bool,
}

/// One group of the formation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupView {
    /// Group number.
    pub group: u32,
    /// The leader-key holder.
    pub leader: Option<String>,
    /// Members.
    pub members: Vec<MemberView>,
}

/// A replication slot on the local primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    /// Name.
    pub name: String,
    /// `physical` or `logical`.
    pub slot_type: String,
    /// Output plugin.
    pub plugin: Option<String>,
    /// Database.
    pub database: Option<String>,
}

/// What a handler needs to prepare a new primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapContext {
    /// This member's host.
    pub host: String,
    /// This member's port.
    pub port: u16,
    /// `postgresql.database`.
    pub default_database: String,
    /// Superuser conninfo keys for peers.
    pub superuser_conninfo: Vec<(String, String)>,
}

/// Whether `p` may go into postgresql.conf: a GUC name (optionally with one
/// extension prefix) and a value without line breaks or NULs.
fn check_parameter(p: &t::Parameter) -> Result<(), String> {
    let name_ok = !p.name.is_empty()
        && p.name.len() <= 63
        && p.name
            .starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && p.name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && p.name.matches('.').count() <= 1;
    if !name_ok {
        return Err(format!("{:?} is not a PostgreSQL parameter name", p.name));
    }
    if p.value.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
        return Err(format!(
            "the value of {} contains a line break or NUL",
            p.name
        ));
    }
    Ok(())
}

struct ValidateConfig(String);

impl Init<Bindings> for ValidateConfig {
    fn name(&self) -> &'static str {
        "validate-config"
    }
    fn run<'a>(
        &'a self,
        store: &'a mut Store<HostState>,
        b: &'a Bindings,
    ) -> CallFuture<'a, Result<(), String>> {
        Box::pin(async move {
            let answer = b
                .keel_mpp_handler()
                .call_validate_config(store, &self.0)
                .await?;
            Ok(answer.map_err(|e| format!("{e:?}")))
        })
    }
}

/// A loaded MPP plugin with its grants: one live instance, calls one at a time.
pub struct MppPlugin {
    inner: Instances<Bindings>,
}

impl std::fmt::Debug for MppPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MppPlugin")
            .field("plugin", &self.inner.plugin())
            .finish_non_exhaustive()
    }
}

macro_rules! call {
    ($self:ident, $op:literal, $method:ident $(, $arg:expr)*) => {
        call!($self, Duration::ZERO, $op, $method $(, $arg)*)
    };
    ($self:ident, $extra:expr, $op:literal, $method:ident $(, $arg:expr)*) => {
        $self.inner.call($op, $extra, move |store, b| {
            Box::pin(async move { b.keel_mpp_handler().$method(store $(, $arg)*).await })
        })
    };
}

/// Extra time an event may take beyond the call timeout: a forced `citus_update_node` waits up
/// to the lock cooldown for the writes holding the worker's lock; cutting it short would
/// discard the instance and roll the pause back, so clients would see errors.
fn event_allowance(event: &MppEvent) -> Duration {
    Duration::from_millis(event.cooldown_ms.into()) + Duration::from_secs(2)
}

impl MppPlugin {
    pub(crate) fn new(
        name: &str,
        runtime: &Runtime,
        pre: Arc<MppPluginPre<HostState>>,
        grants: Grants,
        limits: PluginLimits,
    ) -> Self {
        Self {
            inner: Instances::new(name.into(), runtime.clone(), pre, grants, limits),
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

    /// The limits this handle enforces.
    pub fn limits(&self) -> PluginLimits {
        self.inner.limits()
    }

    fn answer(
        &self,
        call: &'static str,
        result: Result<Result<(), t::MppError>, PluginError>,
    ) -> Result<(), MppError> {
        let plugin = self.name().to_owned();
        match result? {
            Ok(()) => Ok(()),
            Err(t::MppError::InvalidConfig(reason)) => {
                Err(MppError::InvalidConfig { plugin, reason })
            }
            Err(t::MppError::Failed(reason)) => Err(MppError::Failed {
                plugin,
                call,
                reason,
            }),
        }
    }

    /// Ask the plugin who it is (not yet checked against its world).
    pub async fn describe(&self) -> Result<PluginDescription, PluginError> {
        let d = call!(self, "describe", call_describe).await?;
        Ok(crate::catalog::described!(mpp, d))
    }

    /// Hand the plugin its config section (JSON); replayed on fresh instances.
    pub async fn validate_config(&self, config: &str) -> Result<(), MppError> {
        let arg = config.to_owned();
        let result = call!(self, "validate-config", call_validate_config, &arg).await;
        self.answer("validate-config", result)?;
        self.inner
            .set_init(Arc::new(ValidateConfig(config.to_owned())));
        Ok(())
    }

    /// This member's group.
    pub async fn group(&self) -> Result<u32, MppError> {
        Ok(call!(self, "group", call_group).await?)
    }

    /// The coordinator's group.
    pub async fn coordinator_group(&self) -> Result<u32, MppError> {
        Ok(call!(self, "coordinator-group", call_coordinator_group).await?)
    }

    /// The parameters the handler changes or adds, checked.
    pub async fn adjust_gucs(&self, parameters: &[Parameter]) -> Result<Vec<Parameter>, MppError> {
        let arg: Vec<t::Parameter> = parameters
            .iter()
            .map(|p| t::Parameter {
                name: p.name.clone(),
                value: p.value.clone(),
            })
            .collect();
        let adjusted = call!(self, "adjust-gucs", call_adjust_gucs, &arg).await?;
        if let Some(problem) = adjusted.iter().find_map(|p| check_parameter(p).err()) {
            let error = PluginError::BadReturn {
                plugin: self.name().to_owned(),
                call: "adjust-gucs",
                problem,
            };
            self.inner.metrics().record_failure(&error);
            return Err(error.into());
        }
        Ok(adjusted
            .into_iter()
            .map(|p| Parameter {
                name: p.name.to_ascii_lowercase(),
                value: p.value,
            })
            .collect())
    }

    /// Whether Keel must leave the slot alone.
    pub async fn ignore_replication_slot(&self, slot: &SlotInfo) -> Result<bool, MppError> {
        let arg = t::Slot {
            name: slot.name.clone(),
            slot_type: slot.slot_type.clone(),
            plugin: slot.plugin.clone(),
            database: slot.database.clone(),
        };
        Ok(call!(
            self,
            "ignore-replication-slot",
            call_ignore_replication_slot,
            &arg
        )
        .await?)
    }

    /// Prepare a freshly bootstrapped primary.
    pub async fn bootstrap(&self, context: &BootstrapContext) -> Result<(), MppError> {
        let arg = t::BootstrapContext {
            host: context.host.clone(),
            port: context.port,
            default_database: context.default_database.clone(),
            superuser_conninfo: context.superuser_conninfo.clone(),
        };
        let result = call!(self, "bootstrap", call_bootstrap, &arg).await;
        self.answer("bootstrap", result)
    }

    /// This member stops being primary.
    pub async fn on_demote(&self) -> Result<(), MppError> {
        Ok(call!(self, "on-demote", call_on_demote).await?)
    }

    /// Apply a worker's event (coordinator leader only).
    pub async fn handle_event(&self, event: &MppEvent) -> Result<(), MppError> {
        let arg = t::Event {
            kind: match event.kind {
                MppEventKind::BeforeDemote => t::EventKind::BeforeDemote,
                MppEventKind::BeforePromote => t::EventKind::BeforePromote,
                MppEventKind::AfterPromote => t::EventKind::AfterPromote,
            },
            group: event.group,
            leader: event.leader.clone(),
            host: event.host.clone(),
            port: event.port,
            timeout_seconds: event.timeout_seconds,
            cooldown_ms: event.cooldown_ms,
        };
        let extra = event_allowance(event);
        let result = call!(self, extra, "handle-event", call_handle_event, &arg).await;
        self.answer("handle-event", result)
    }

    /// Align metadata with the formation (coordinator leader, every cycle).
    pub async fn sync_meta_data(&self, formation: &[GroupView]) -> Result<(), MppError> {
        let arg: Vec<t::GroupView> = formation
            .iter()
            .map(|g| t::GroupView {
                group: g.group,
                leader: g.leader.clone(),
                members: g
                    .members
                    .iter()
                    .map(|m| t::Member {
                        name: m.name.clone(),
                        host: m.host.clone(),
                        port: m.port,
                        role: m.role.clone(),
                        state: m.state.clone(),
                        noloadbalance: m.noloadbalance,
                    })
                    .collect(),
            })
            .collect();
        let result = call!(self, "sync-meta-data", call_sync_meta_data, &arg).await;
        self.answer("sync-meta-data", result)
    }

    /// Let the handler enforce its deadlines.
    pub async fn tick(&self) -> Result<(), MppError> {
        let result = call!(self, "tick", call_tick).await;
        self.answer("tick", result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_parameters_pass() {
        let p = |name: &str, value: &str| t::Parameter {
            name: name.into(),
            value: value.into(),
        };
        assert!(
            check_parameter(&p("shared_preload_libraries", "citus,pg_stat_statements")).is_ok()
        );
        assert!(check_parameter(&p("citus.local_hostname", "/tmp")).is_ok());
        for bad in [
            p("", "1"),
            p("a b", "1"),
            p("1abc", "1"),
            p("a.b.c", "1"),
            p("work_mem", "1\ninclude 'x'"),
        ] {
            assert!(check_parameter(&bad).is_err(), "{bad:?}");
        }
    }
}
