//! The HA loop: observe → decide → act, every `loop_wait` or sooner.
//!
//! `keel_ha::decide` makes every choice; this module gathers what it reads
//! ([`observe`]), answers its questions and carries out its plans ([`execute`]),
//! runs long actions in the background ([`Task`]) while cycles go on, and keeps
//! the REST API's view current ([`status`]).

mod execute;
pub(crate) mod lease;
mod observe;
mod peers;
pub(crate) mod pgconf;
pub(crate) mod requests;
mod slot_readiness;
pub(crate) mod slots;
mod status;

pub(crate) use observe::upstream_of;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_config::{DynamicConfig, Settings, TtlFloor};
use keel_dcs::{Cluster, Dcs};
use keel_ha::{Decision, Memory, Observation, PgRole, RunningAction};
use keel_postgres::Postgres;
use tokio::sync::Notify;

use crate::callbacks::Callback;
use crate::signals::{Request, Signals};
use tokio::task::JoinHandle;

pub(crate) use status::ApiNode;

/// The Patroni version Keel is wire-compatible with, published in member keys
/// so Patroni peers and `patronictl` apply their 4.x rules to Keel members.
pub(crate) const WIRE_VERSION: &str = "4.1.4";

/// `Memory::ssn_changed_at_lsn` while `synchronous_standby_names` changed when the
/// primary's position could not be read (as a replica, or at start): no standby
/// counts as confirmed until the first cycle as primary records the position.
pub(crate) const SSN_POSITION_UNKNOWN: u64 = u64::MAX;

/// A long action running in the background.
pub(crate) struct Task {
    pub(crate) kind: RunningAction,
    pub(crate) handle: JoinHandle<()>,
    /// The outcome, sent before the task wakes the loop: a woken loop always finds
    /// it (the join handle may not count as finished yet at that instant).
    pub(crate) outcome: tokio::sync::oneshot::Receiver<anyhow::Result<TaskOutcome>>,
}

/// What a finished long action changes in the daemon's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaskOutcome {
    /// Nothing to remember.
    Done,
    /// The bootstrap succeeded: finish it next cycle.
    Bootstrapped,
    /// PostgreSQL was (re)started: check it came up next cycle.
    Started,
    /// A promotion succeeded.
    Promoted,
    /// A demotion finished; `released` when the leader key was given up.
    Demoted,
    /// The node was rewound or re-cloned: its history matches the leader's.
    Repaired,
}

/// What the daemon and its REST API share.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The last cycle's sentence.
    pub(crate) message: String,
    /// The last successful DCS read, and when.
    pub(crate) cluster: Option<(Cluster, DateTime<Utc>)>,
    /// The daemon holds the leader lock.
    pub(crate) is_leader: bool,
    /// The dynamic configuration in force.
    pub(crate) paused: bool,
    /// When the last cycle ended.
    pub(crate) last_cycle: Option<DateTime<Utc>>,
    /// `ttl`, for liveness.
    pub(crate) ttl: u32,
    /// failsafe_mode is on.
    pub(crate) failsafe_mode: bool,
    /// `synchronous_mode: quorum` is in force: standbys in `/sync` are quorum
    /// standbys, not synchronous ones.
    pub(crate) quorum_mode: bool,
    /// `standby_cluster` is set: this cluster replicates from another one.
    pub(crate) standby_cluster: bool,
    /// `watchdog.mode: required` and the device is unusable (Patroni's `watchdog_failed`).
    pub(crate) watchdog_failed: bool,
    /// `maximum_lag_on_failover`, the default lag limit of `/readiness`.
    pub(crate) maximum_lag_on_failover: u64,
    /// A primary accepted by POST /failsafe, and when.
    pub(crate) failsafe_leader: Option<(String, DateTime<Utc>)>,
    /// The role the daemon manages (`primary`, `replica`, `demoted`, `uninitialized`).
    pub(crate) role: String,
    /// `pg_postmaster_start_time()` as last read (a scheduled restart is
    /// cancelled if PostgreSQL restarted in between).
    pub(crate) postmaster_start_time: Option<String>,
    /// A restart asked for at a later time (`POST /restart` with `schedule`).
    pub(crate) scheduled_restart: Option<requests::ScheduledRestart>,
    /// The timeline the last cycle observed (a replica's replay timeline).
    pub(crate) timeline: Option<u32>,
    /// Running as primary on the members' failsafe acceptance (DCS unreachable).
    pub(crate) failsafe_active: bool,
    /// The parameters waiting for a restart, read once per cycle (a health check must not
    /// scan `pg_settings`).
    pub(crate) pending_restart: Vec<keel_postgres::PendingChange>,
    /// The WAL position the last cycle read (a replica's received/replayed LSN), which
    /// `POST /failsafe` returns in its `lsn` header.
    pub(crate) wal_position: Option<u64>,
    /// The member's tags as published (`/patroni`, health checks); reloaded on SIGHUP.
    pub(crate) tags: serde_json::Map<String, serde_json::Value>,
}

/// Patroni's `pending_restart_reason`: `{name: {old_value, new_value}}`; `None` when empty.
pub(crate) fn pending_restart_reason(
    pending: &[keel_postgres::PendingChange],
) -> Option<serde_json::Map<String, serde_json::Value>> {
    (!pending.is_empty()).then(|| {
        pending
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    serde_json::json!({"old_value": p.old_value, "new_value": p.new_value}),
                )
            })
            .collect()
    })
}

/// Everything the loop owns.
pub(crate) struct Daemon {
    pub(crate) settings: Settings,
    /// Where the configuration came from (re-read on SIGHUP).
    pub(crate) config_path: Option<std::path::PathBuf>,
    pub(crate) dynamic: DynamicConfig,
    pub(crate) dynamic_version: Option<String>,
    pub(crate) dcs: Dcs,
    /// A second instance of the DCS plugin that only waits in `watch`, so a
    /// long watch never holds up the loop's or a background action's calls.
    pub(crate) watcher: Dcs,
    pub(crate) pg: Arc<Postgres>,
    pub(crate) memory: Memory,
    pub(crate) task: Option<Task>,
    pub(crate) shared: Arc<Mutex<Shared>>,
    pub(crate) wake: Arc<Notify>,
    /// Operator requests from the REST API.
    pub(crate) commands: tokio::sync::mpsc::UnboundedReceiver<requests::Command>,
    pub(crate) http: crate::peer_client::PeerClient,
    /// Where this replica streams from, as last configured.
    pub(crate) upstream: Option<keel_ha::Source>,
    /// `synchronous_standby_names` as last set.
    pub(crate) ssn: String,
    /// The system identifier, once read.
    pub(crate) sysid: Option<String>,
    /// A non-streaming replica's replay timeline (IDENTIFY_SYSTEM costs a process and a
    /// connection) and the cluster timeline it was read under: re-read when that changes.
    pub(crate) replay_timeline: Option<(u32, u32)>,
    /// Promoted and the post-promote CHECKPOINT is not done yet.
    pub(crate) checkpoint_pending: bool,
    /// What the daemon believes PostgreSQL should be doing (for crash detection).
    pub(crate) role: &'static str,
    /// The MPP handler (Citus), when the config selects one.
    pub(crate) mpp: Option<Arc<crate::mpp::Mpp>>,
    /// Promoted: tell the coordinator `after_promote` once the member key says so.
    pub(crate) announce_promotion: bool,
    /// `postgresql.callbacks`.
    pub(crate) callbacks: crate::callbacks::Callbacks,
    /// No start or role-change callback ran yet: the first cycle that finds
    /// PostgreSQL running (adopted at start) runs `on_start`, as Patroni does.
    pub(crate) start_callback_due: bool,
    /// Stops PostgreSQL if the leader lease could end before the loop renews it.
    pub(crate) lease: lease::LeaseGuard,
    /// The watchdog device, active while this node leads.
    pub(crate) watchdog: crate::watchdog::Watchdog,
    /// The REST API's socket, reconfigured on SIGHUP.
    pub(crate) rest: keel_api::ApiServer,
    /// Slot retention and the positions the next `/status` publishes.
    pub(crate) slot_state: slots::SlotState,
    /// `hot_standby_feedback` is forced on (logical slot copies here or downstream).
    pub(crate) hot_standby_feedback_enforced: bool,
}

pub(crate) fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Daemon {
    /// The timings in force.
    pub(crate) fn timeouts(&self) -> keel_config::Timeouts {
        self.dynamic.validated_timeouts(TtlFloor::keel()).0
    }

    /// The leader lease's length.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_secs(self.timeouts().ttl.into())
    }

    /// A renewal of the leader key sent at `sent` succeeded.
    pub(crate) fn lease_renewed(&mut self, sent: tokio::time::Instant) {
        // A standby leader accepts no writes: nothing to stop when its lease runs out.
        if self.dynamic.pause || self.dynamic.is_standby_cluster() {
            self.disarm();
        } else {
            self.lease.renewed(sent, self.ttl());
            self.watchdog.keepalive();
        }
    }

    /// This node no longer leads (or the cluster is paused): neither the lease guard
    /// nor the watchdog may act on PostgreSQL any more.
    pub(crate) fn disarm(&mut self) {
        self.lease.disarm();
        self.watchdog.disable();
        self.memory.watchdog_active = false;
    }

    /// Run cycles until SIGTERM/SIGINT, then shut down cleanly.
    pub(crate) async fn run(mut self, mut signals: Signals) -> anyhow::Result<()> {
        self.adopt_running_postgres();
        loop {
            let started = tokio::time::Instant::now();
            let wake_at = self.cycle().await;
            let loop_wait = Duration::from_secs(self.timeouts().loop_wait.into());
            let mut deadline = started + loop_wait;
            if let Some(at) = wake_at {
                let until = (at - Utc::now()).to_std().unwrap_or_default();
                deadline = deadline.min(tokio::time::Instant::now() + until);
            }
            let leader_version = lock(&self.shared)
                .cluster
                .as_ref()
                .and_then(|(c, _)| c.leader.as_ref().map(|l| l.version.clone()));
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            if remaining.is_zero() {
                tracing::warn!("Loop time exceeded, rescheduling immediately.");
                continue;
            }
            // The leader sleeps (its own refreshes would wake it); the others
            // wake early when the leader key changes.
            let dcs = self.watcher.clone();
            let holds_lock = self.memory.has_lock;
            let watch = async move {
                if holds_lock {
                    tokio::time::sleep_until(deadline).await;
                    return;
                }
                // The watch returns early when the leader key changes; on an error
                // (DCS down) just sleep out the rest of the interval.
                match dcs.watch(leader_version.as_deref(), remaining).await {
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep_until(deadline).await,
                }
            };
            tokio::select! {
                () = watch => {}
                () = self.wake.notified() => {}
                Some(command) = self.commands.recv() => self.handle(command).await,
                request = signals.next() => match request {
                    Request::Stop => break,
                    Request::Reload => self.reload_config().await,
                },
            }
        }
        self.shutdown().await;
        Ok(())
    }

    /// A postmaster already running on our data directory (a daemon restart) is
    /// adopted, not started twice.
    fn adopt_running_postgres(&mut self) {
        if let Ok(pid) = self.pg.adopt() {
            tracing::info!(pid, "adopted a running PostgreSQL");
            // The first cycle treats it like a fresh start (Patroni's on_start):
            // the history is rechecked before the node keeps streaming.
            self.memory.just_started = true;
        }
    }

    /// SIGHUP: re-read the local configuration. A section that cannot be applied keeps
    /// its running state (an unusable REST API setting keeps the API as it was).
    pub(super) async fn reload_config(&mut self) {
        let settings = match crate::run::load_settings(self.config_path.as_deref()) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration: {e:#}");
                return;
            }
        };
        let rest = match crate::run::api_options(&settings) {
            Ok(options) => self
                .rest
                .reload(options, &settings.restapi)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        if let Err(e) = rest {
            tracing::error!("REST API settings not reloaded, keeping the running ones: {e:#}");
        }
        if let Err(e) = self.http.reload(&settings) {
            tracing::error!(
                "client for other members not reloaded, keeping the running one: {e:#}"
            );
        }
        lock(&self.shared).tags = settings.tags.published();
        self.callbacks
            .reconfigure(settings.postgresql.callbacks.clone());
        if settings.watchdog != self.settings.watchdog {
            // Re-activated with the new settings when this node next enforces its role.
            self.watchdog.disable();
            self.memory.watchdog_active = false;
            self.watchdog = crate::watchdog::Watchdog::new(settings.watchdog.clone());
        }
        self.settings = settings;
        self.apply_parameters_later();
        tracing::info!("configuration reloaded");
    }

    /// Forget the applied dynamic config version so the next cycle re-applies parameters.
    fn apply_parameters_later(&mut self) {
        self.dynamic_version = None;
    }

    /// One cycle; returns when to wake at the latest (a scheduled action).
    async fn cycle(&mut self) -> Option<DateTime<Utc>> {
        let cycle_started = tokio::time::Instant::now();
        self.reap_task().await;
        let mut obs = self.observe().await;
        if self.start_callback_due && obs.postgres.is_running() && self.task.is_none() {
            self.start_callback_due = false;
            let role = match obs.postgres.role {
                PgRole::Primary => "primary",
                PgRole::Replica => "replica",
            };
            self.callbacks.call(Callback::Start, role);
        }
        let mut rounds = 0;
        let plan = loop {
            match keel_ha::decide(&obs) {
                Decision::Act(plan) => break plan,
                Decision::Ask(question) => {
                    rounds += 1;
                    if rounds > 8 {
                        tracing::error!(
                            ?question,
                            "the HA decision keeps asking; skipping this cycle"
                        );
                        return None;
                    }
                    self.answer(&question, &mut obs).await;
                }
            }
        };
        self.memory = obs.memory.clone();
        if self.dynamic.pause {
            self.disarm();
        } else if plan.failsafe_active {
            // Every member accepted this primary just now: that acceptance is its lease.
            self.lease.renewed(cycle_started, self.ttl());
            self.watchdog.keepalive();
        }
        let message = plan.message.clone();
        for warning in &plan.warnings {
            tracing::warn!("{warning}");
        }
        tracing::info!("{message}");
        self.carry_out(&plan, &obs).await;
        if plan.publish
            && let Ok(cluster) = &obs.cluster
        {
            self.publish_member(cluster).await;
        }
        if obs.cluster.is_ok() && self.pg.is_running() && self.task.is_none() {
            self.sync_slots(&obs).await;
            self.mpp_cycle(&obs).await;
        }
        let restart_at = self.run_scheduled_restart().await;
        self.memory.just_started = false;
        let mut shared = lock(&self.shared);
        shared.message = message;
        shared.last_cycle = Some(Utc::now());
        shared.is_leader = self.memory.has_lock;
        shared.watchdog_failed = self.watchdog.failed();
        shared.role = self.role.to_owned();
        shared.timeline = (obs.postgres.timeline != 0).then_some(obs.postgres.timeline);
        shared.failsafe_active = plan.failsafe_active;
        shared.maximum_lag_on_failover = self.dynamic.maximum_lag_on_failover;
        match (plan.wake_at, restart_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Collect a finished long action.
    async fn reap_task(&mut self) {
        let received = match self.task.as_mut().map(|t| t.outcome.try_recv()) {
            None | Some(Err(tokio::sync::oneshot::error::TryRecvError::Empty)) => return,
            Some(received) => received,
        };
        let Some(task) = self.task.take() else {
            return;
        };
        let outcome = match received {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(e)) => {
                tracing::error!("{} failed: {e:#}", task.kind.label());
                self.task_failed(task.kind).await;
                return;
            }
            Err(_) => {
                tracing::error!("{} panicked or was cancelled", task.kind.label());
                return;
            }
        };
        // Whatever ran may have restarted, promoted, demoted or rewound the server.
        self.replay_timeline = None;
        self.run_callback_after(task.kind, &outcome);
        match outcome {
            TaskOutcome::Done => {}
            TaskOutcome::Bootstrapped => {
                self.memory.bootstrapped = true;
                // A standby cluster's first member runs as a replica of its source.
                self.role = if self.dynamic.is_standby_cluster() {
                    "standby_leader"
                } else {
                    "primary"
                };
            }
            TaskOutcome::Started => self.memory.just_started = true,
            TaskOutcome::Promoted => {
                self.announce_promotion = true;
                self.memory.promoted_at = Some(Utc::now());
                self.checkpoint_pending = true;
                self.role = "primary";
            }
            TaskOutcome::Demoted => {
                self.memory.rewind_check = true;
                self.memory.just_started = true;
                self.role = "replica";
            }
            TaskOutcome::Repaired => {
                self.memory.rewind_check = false;
                self.memory.just_started = true;
                self.role = "replica";
            }
        }
    }

    /// The callback a finished long action calls for.
    fn run_callback_after(&mut self, kind: RunningAction, outcome: &TaskOutcome) {
        let (callback, role) = match outcome {
            TaskOutcome::Bootstrapped if self.dynamic.is_standby_cluster() => {
                (Callback::Start, "standby_leader")
            }
            TaskOutcome::Bootstrapped => (Callback::Start, "primary"),
            TaskOutcome::Started if kind == RunningAction::Restart => {
                (Callback::Restart, self.role)
            }
            TaskOutcome::Started => (Callback::Start, self.role),
            TaskOutcome::Promoted => (Callback::RoleChange, "primary"),
            TaskOutcome::Demoted => (Callback::RoleChange, "replica"),
            TaskOutcome::Done | TaskOutcome::Repaired => return,
        };
        self.start_callback_due = false;
        self.callbacks.call(callback, role);
    }

    /// Clean up after a failed long action.
    async fn task_failed(&mut self, kind: RunningAction) {
        match kind {
            RunningAction::Bootstrap => {
                if let Err(e) = self.dcs.cancel_initialization().await {
                    tracing::error!("could not remove the initialize key: {e}");
                }
                self.set_aside_failed_bootstrap().await;
            }
            RunningAction::Clone | RunningAction::Reinitialize => {
                let _ = self.pg.stop(keel_postgres::StopMode::Immediate).await;
                if let Err(e) = self.pg.remove_data_directory() {
                    tracing::error!("could not remove the half-cloned data directory: {e}");
                }
                self.sysid = None;
            }
            RunningAction::Promote => {
                self.memory.pre_promote_failed_at = Some(Utc::now());
            }
            RunningAction::Start | RunningAction::Restart => self.memory.just_started = true,
            RunningAction::Rewind | RunningAction::Demote => {}
        }
    }

    /// Stop PostgreSQL and move a failed bootstrap's data directory aside
    /// (`<data_dir>.failed.<time>`), as Patroni does: kept for inspection, never reused.
    pub(crate) async fn set_aside_failed_bootstrap(&mut self) {
        let _ = self.pg.stop(keel_postgres::StopMode::Immediate).await;
        let failed = std::path::PathBuf::from(format!(
            "{}.failed.{}",
            self.pg.data_dir().display(),
            Utc::now().timestamp()
        ));
        match std::fs::rename(self.pg.data_dir(), &failed) {
            Ok(()) => tracing::error!(
                "bootstrap failed; the data directory was moved to {}",
                failed.display()
            ),
            Err(e) => tracing::error!("could not move the failed data directory aside: {e}"),
        }
        self.sysid = None;
    }

    /// SIGTERM: stop PostgreSQL (fast) and give up the lock, unless paused.
    async fn shutdown(mut self) {
        if let Some(task) = self.task.take() {
            task.handle.abort();
        }
        if self.dynamic.pause {
            tracing::info!("paused: leaving PostgreSQL running and the leader key in place");
            return;
        }
        self.disarm();
        if self.memory.has_lock
            && let Some(mpp) = &self.mpp
        {
            let t = self.timeouts();
            mpp.notify(
                keel_runtime::MppEventKind::BeforeDemote,
                t.ttl,
                t.retry_timeout,
            )
            .await;
            mpp.on_demote().await;
        }
        match self.pg.stop(keel_postgres::StopMode::Fast).await {
            Ok(stopped) => {
                tracing::info!("PostgreSQL stopped");
                if stopped {
                    self.callbacks.call(Callback::Stop, self.role);
                }
            }
            Err(e) => {
                tracing::error!("PostgreSQL refused to stop, keeping the leader key: {e}");
                return;
            }
        }
        if self.memory.has_lock {
            if let Ok(cd) = self.pg.controldata().await
                && let Some((_, lsn)) = cd.checkpoint()
            {
                let _ = self.dcs.write_optime(lsn.0).await;
            }
            match self.dcs.delete_leader().await {
                Ok(_) => tracing::info!("leader key released"),
                Err(e) => tracing::warn!("could not release the leader key: {e}"),
            }
        }
        self.role = "replica";
        if let Ok(cluster) = self.dcs.load().await {
            self.publish_member(&cluster).await;
        }
    }

    pub(crate) fn observation_skeleton(&self) -> Observation {
        Observation {
            now: Utc::now(),
            me: self.me(),
            config: self.dynamic.clone(),
            cluster: Err(keel_ha::DcsUnreachable("not read yet".into())),
            postgres: keel_ha::Postgres::empty(),
            memory: self.memory.clone(),
            running: self.task.as_ref().map(|t| t.kind),
            answers: keel_ha::Answers::default(),
        }
    }

    fn me(&self) -> keel_ha::Me {
        let pg = self.pg.settings();
        keel_ha::Me {
            name: self.settings.name.clone(),
            tags: self.settings.tags.clone(),
            can_bootstrap: true,
            can_clone_without_leader: pg.create_replica_methods.iter().any(|m| m.no_leader()),
            use_pg_rewind: pg.use_pg_rewind,
            remove_data_directory_on_rewind_failure: pg.remove_data_directory_on_rewind_failure,
            remove_data_directory_on_diverged_timelines: pg
                .remove_data_directory_on_diverged_timelines,
            watchdog_enabled: self.watchdog.enabled(),
            watchdog_failed: self.watchdog.failed(),
        }
    }
}
