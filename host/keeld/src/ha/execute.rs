//! Answering `decide`'s questions and carrying out its plans.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use keel_dcs::model::{Failover, Failsafe, HistoryLine, Role, Status, TimelineHistory};
use keel_dcs::{Cluster, DcsError, MemberData};
use keel_ha::{
    Action, DemoteMode, LockAnswer, Observation, PgRole, Plan, Question, RunningAction, Source,
};
use keel_postgres::{LeaderInfo, Postgres, RewindOutcome, StopMode, Upstream};
use keel_runtime::MppEventKind;

use crate::callbacks::Callback;

use super::observe::upstream_of;
use super::{Daemon, Task, TaskOutcome, WIRE_VERSION, lock, peers};

/// The role of a replica streaming from `upstream`: the standby leader streams
/// from the standby cluster's source.
fn replica_role(upstream: Option<&Source>) -> &'static str {
    match upstream {
        Some(Source::Remote) => "standby_leader",
        _ => "replica",
    }
}

fn lock_answer(result: Result<bool, DcsError>) -> LockAnswer {
    match result {
        Ok(true) => LockAnswer::Held,
        Ok(false) => LockAnswer::NotHeld,
        Err(e) => LockAnswer::Failed(e.to_string()),
    }
}

impl Daemon {
    /// Answer one question into `obs.answers`.
    pub(super) async fn answer(&mut self, question: &Question, obs: &mut Observation) {
        match question {
            Question::AcquireLock => {
                let sent = tokio::time::Instant::now();
                let answer = lock_answer(self.dcs.attempt_to_acquire_leader().await);
                if answer == LockAnswer::Held {
                    self.lease_renewed(sent);
                }
                self.note_lock(&answer);
                obs.answers.acquire = Some(answer);
            }
            Question::RefreshLock => {
                let sent = tokio::time::Instant::now();
                let answer = lock_answer(self.dcs.update_leader().await);
                match answer {
                    LockAnswer::Held => self.lease_renewed(sent),
                    LockAnswer::NotHeld => self.disarm(),
                    // The last renewal's deadline stands.
                    LockAnswer::Failed(_) => {}
                }
                self.note_lock(&answer);
                if answer == LockAnswer::Held {
                    self.publish_status(obs).await;
                }
                obs.answers.refresh = Some(answer);
            }
            Question::Initialize => {
                obs.answers.initialize = Some(
                    self.dcs
                        .initialize(true, "")
                        .await
                        .map_err(|e| e.to_string()),
                );
            }
            Question::Peers(requests) => {
                obs.answers.peers = Some(peers::fetch_statuses(&self.http.get(), requests).await);
            }
            Question::Failsafe(requests) => {
                let body = serde_json::json!({
                    "name": self.settings.name,
                    "conn_url": self.conn_url(),
                    "api_url": self.api_url(),
                });
                obs.answers.failsafe =
                    Some(peers::failsafe_round(&self.http.get(), requests, &body).await);
            }
            Question::ActivateWatchdog => {
                let t = self.timeouts();
                obs.answers.watchdog = Some(self.watchdog.activate(t.ttl, t.loop_wait));
                self.memory.watchdog_active = self.watchdog.is_active();
            }
        }
        obs.memory.watchdog_active = self.memory.watchdog_active;
        obs.memory.has_lock = self.memory.has_lock;
        obs.memory.lock_refreshed_at = self.memory.lock_refreshed_at;
    }

    fn note_lock(&mut self, answer: &LockAnswer) {
        match answer {
            LockAnswer::Held => {
                self.memory.has_lock = true;
                self.memory.lock_refreshed_at = Some(Utc::now());
            }
            LockAnswer::NotHeld => self.memory.has_lock = false,
            LockAnswer::Failed(_) => {}
        }
    }

    /// The leader's `status` key, written with every refresh.
    async fn publish_status(&self, obs: &Observation) {
        if obs.postgres.role != PgRole::Primary || !obs.postgres.is_running() {
            return;
        }
        let slots = &self.slot_state;
        let status = match (&slots.retained, &obs.cluster) {
            // Before this primary's first slot sync: carry the previous leader's lists over.
            (None, Ok(cluster)) if self.pg.settings().use_slots => Status {
                optime: obs.postgres.wal_position,
                ..cluster.status.clone()
            },
            _ => Status {
                optime: obs.postgres.wal_position,
                slots: (!slots.positions.is_empty()).then(|| slots.positions.clone()),
                retain_slots: slots.retain.clone(),
            },
        };
        if let Err(e) = self.dcs.write_status(&status).await {
            tracing::warn!("could not publish the leader status: {e}");
        }
    }

    pub(super) fn conn_url(&self) -> String {
        let pg = &self.settings.postgresql;
        format!(
            "postgres://{}:{}/{}",
            pg.connect_address.host, pg.connect_address.port, pg.database
        )
    }

    pub(super) fn api_url(&self) -> String {
        let api = &self.settings.restapi.connect_address;
        let scheme = if self.settings.restapi.certfile.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}:{}/patroni", api.host, api.port)
    }

    /// Carry out a plan, step by step; the first failure ends it.
    pub(super) async fn carry_out(&mut self, plan: &Plan, obs: &Observation) {
        let mut sync_version: Option<Option<String>> = None;
        for action in &plan.actions {
            if let Err(e) = self.act(action, obs, &mut sync_version).await {
                tracing::error!("{action:?} failed: {e:#}");
                return;
            }
        }
    }

    async fn act(
        &mut self,
        action: &Action,
        obs: &Observation,
        sync_version: &mut Option<Option<String>>,
    ) -> anyhow::Result<()> {
        let cluster = obs.cluster.as_ref().ok();
        match action {
            Action::WriteInitialize { sysid } => {
                let absent = cluster.is_none_or(|c| c.initialize.is_none());
                self.dcs.initialize(absent, sysid).await?;
            }
            Action::CancelInitialization => {
                self.dcs.cancel_initialization().await?;
                if self.memory.bootstrapped {
                    // The bootstrap did not hold: never retry on its remains.
                    self.memory.bootstrapped = false;
                    self.set_aside_failed_bootstrap().await;
                }
            }
            Action::WriteConfig => {
                let value = self.dynamic.to_value();
                let map = value.as_object().cloned().unwrap_or_default();
                self.dcs.set_config(&map, None).await?;
            }
            Action::TakeLock => {
                let sent = tokio::time::Instant::now();
                anyhow::ensure!(
                    self.dcs.take_leader().await?,
                    "the DCS refused the leader key"
                );
                self.lease_renewed(sent);
                self.memory.has_lock = true;
                self.memory.lock_refreshed_at = Some(Utc::now());
                self.memory.bootstrapped = false;
                self.role = "primary";
            }
            Action::ReleaseLock => {
                self.disarm();
                self.dcs.delete_leader().await?;
                self.memory.has_lock = false;
            }
            Action::ClearFailover { version } => {
                self.dcs.clear_failover(version.as_deref()).await?;
            }
            Action::RewriteFailover { candidate, version } => {
                let f = Failover {
                    candidate: Some(candidate.clone()),
                    ..Failover::default()
                };
                self.dcs.set_failover(&f, version.as_deref()).await?;
            }
            Action::WriteSync { state, version } => {
                let version = sync_version.clone().unwrap_or_else(|| version.clone());
                let written = self.dcs.set_sync_state(state, version.as_deref()).await?;
                *sync_version = Some(written.version);
            }
            Action::DeleteSync { version } => {
                self.dcs.delete_sync_state(version.as_deref()).await?;
                self.set_ssn(String::new()).await?;
            }
            Action::SetSynchronousStandbyNames(names) => self.set_ssn(names.clone()).await?,
            Action::UpdateHistory => self.update_history(cluster).await?,
            Action::WriteFailsafe => {
                if let Some(c) = cluster {
                    let members = c
                        .members
                        .iter()
                        .filter_map(|m| Some((m.name.clone(), m.data.api_url.clone()?)))
                        .collect();
                    let failsafe = Failsafe { members };
                    self.dcs.write_failsafe(&failsafe).await?;
                    // What we wrote is what we must reach if the DCS goes away
                    // before the next read shows it.
                    self.memory.last_failsafe = Some(failsafe);
                }
            }
            Action::Checkpoint => {
                if self.checkpoint_pending {
                    self.pg.checkpoint().await?;
                    self.checkpoint_pending = false;
                }
            }
            Action::StopImmediate => {
                if self.pg.stop(StopMode::Immediate).await? {
                    self.callbacks.call(Callback::Stop, self.role);
                }
            }
            Action::TriggerRewindCheck => self.memory.rewind_check = true,
            Action::Follow { upstream } => {
                let up = self.upstream_of_source(cluster, upstream.as_ref())?;
                self.pg.follow(up.as_ref()).await?;
                self.upstream = upstream.clone();
                self.role = replica_role(upstream.as_ref());
            }
            Action::Bootstrap => self.spawn_bootstrap()?,
            Action::BootstrapStandby => {
                let remote = super::pgconf::remote_source(&self.settings, &self.dynamic)?;
                self.upstream = Some(Source::Remote);
                self.spawn(RunningAction::Bootstrap, move |pg| async move {
                    pg.create_replica(Some(&remote)).await?;
                    pg.follow(Some(&remote)).await?;
                    Ok(TaskOutcome::Bootstrapped)
                });
            }
            Action::Clone { source } => {
                let up = self.upstream_of_source(cluster, source.as_ref())?;
                let leader = cluster
                    .and_then(Cluster::leader_name)
                    .filter(|l| *l != self.settings.name)
                    .map(str::to_owned);
                let leader_up = self.member_upstream(cluster, leader.as_deref())?;
                self.upstream = leader.map(Source::Member);
                self.spawn(RunningAction::Clone, move |pg| async move {
                    pg.create_replica(up.as_ref()).await?;
                    pg.follow(leader_up.as_ref()).await?;
                    Ok(TaskOutcome::Started)
                });
            }
            Action::Promote => {
                self.upstream = None;
                let unready = match (self.pg.state().await, self.pg.slots().await) {
                    (Ok(state), Ok(slots)) => {
                        let copies: Vec<_> = slots
                            .into_iter()
                            .filter(|s| self.dynamic.slots.contains_key(&s.name))
                            .collect();
                        self.slot_state
                            .readiness
                            .unready_now(&state.postmaster_start_time, &copies)
                    }
                    _ => self.slot_state.readiness.unready(),
                };
                if !unready.is_empty() {
                    tracing::warn!(
                        "logical replication slots that might be unsafe to use after promote: {}",
                        unready.join(", ")
                    );
                }
                let pre_promote = self.settings.postgresql.pre_promote.clone();
                let mpp = self.mpp.clone();
                let t = self.timeouts();
                self.spawn(RunningAction::Promote, move |pg| async move {
                    if let Some(cmd) = pre_promote {
                        run_hook("pre_promote", &cmd).await?;
                    }
                    if let Some(mpp) = mpp {
                        mpp.notify(MppEventKind::BeforePromote, t.ttl, t.retry_timeout)
                            .await;
                    }
                    pg.promote().await?;
                    Ok(TaskOutcome::Promoted)
                });
            }
            Action::Start {
                as_primary,
                upstream,
            } => {
                let as_primary = *as_primary;
                let up = self.upstream_of_source(cluster, upstream.as_ref())?;
                self.upstream = upstream.clone();
                self.role = if as_primary {
                    "primary"
                } else {
                    replica_role(upstream.as_ref())
                };
                self.spawn(RunningAction::Start, move |pg| async move {
                    if as_primary {
                        pg.start_as_primary().await?;
                    } else {
                        pg.follow(up.as_ref()).await?;
                    }
                    Ok(TaskOutcome::Started)
                });
            }
            Action::Demote { mode, upstream } => {
                self.spawn_demote(*mode, upstream.clone(), cluster)?;
            }
            Action::Rewind { source } => {
                let leader = cluster
                    .and_then(|c| c.leader.as_ref())
                    .filter(|l| l.name == *source)
                    .context("the rewind source is no longer the leader")?;
                let up = leader
                    .conn_url()
                    .and_then(upstream_of)
                    .with_context(|| format!("leader {source} publishes no usable conn_url"))?;
                let info = LeaderInfo {
                    upstream: up.clone(),
                    checkpoint_after_promote: leader.checkpoint_after_promote(),
                };
                self.upstream = Some(Source::member(source));
                self.spawn(RunningAction::Rewind, move |pg| async move {
                    match pg.rewind(&info).await? {
                        RewindOutcome::Rewound => {
                            pg.follow(Some(&up)).await?;
                            Ok(TaskOutcome::Repaired)
                        }
                        RewindOutcome::DataDirectoryRemoved => Ok(TaskOutcome::Done),
                    }
                });
            }
            Action::Reinitialize { source } => {
                let cluster = cluster.context("no cluster view to reinitialize from")?;
                self.reinitialize_from(cluster, source)?;
            }
        }
        Ok(())
    }

    /// Where a source is: a member's `conn_url`, or the standby cluster's source.
    fn upstream_of_source(
        &self,
        cluster: Option<&Cluster>,
        source: Option<&Source>,
    ) -> anyhow::Result<Option<Upstream>> {
        match source {
            None => Ok(None),
            Some(Source::Member(name)) => self.member_upstream(cluster, Some(name)),
            Some(Source::Remote) => {
                super::pgconf::remote_source(&self.settings, &self.dynamic).map(Some)
            }
        }
    }

    /// The upstream of a member by name (its `conn_url`).
    fn member_upstream(
        &self,
        cluster: Option<&Cluster>,
        name: Option<&str>,
    ) -> anyhow::Result<Option<Upstream>> {
        let Some(name) = name else {
            return Ok(None);
        };
        let url = cluster
            .and_then(|c| c.member(name))
            .and_then(|m| m.data.conn_url.clone())
            .with_context(|| format!("member {name} publishes no conn_url"))?;
        upstream_of(&url)
            .map(Some)
            .with_context(|| format!("member {name}: cannot parse conn_url {url}"))
    }

    /// Stop, remove the data directory and clone again from `source`.
    pub(super) fn reinitialize_from(
        &mut self,
        cluster: &Cluster,
        source: &str,
    ) -> anyhow::Result<()> {
        let up = self.member_upstream(Some(cluster), Some(source))?;
        self.sysid = None;
        self.upstream = Some(Source::member(source));
        self.role = "replica";
        self.spawn(RunningAction::Reinitialize, move |pg| async move {
            pg.stop(StopMode::Immediate).await?;
            pg.remove_data_directory()?;
            pg.create_replica(up.as_ref()).await?;
            pg.follow(up.as_ref()).await?;
            Ok(TaskOutcome::Repaired)
        });
        Ok(())
    }

    pub(super) fn spawn<F, Fut>(&mut self, kind: RunningAction, work: F)
    where
        F: FnOnce(Arc<Postgres>) -> Fut,
        Fut: Future<Output = anyhow::Result<TaskOutcome>> + Send + 'static,
    {
        if matches!(kind, RunningAction::Start | RunningAction::Restart) {
            // primary_start_timeout counts from here while the server is not up.
            self.memory.starting_since = Some(chrono::Utc::now());
        }
        let work = work(Arc::clone(&self.pg));
        let wake = Arc::clone(&self.wake);
        // The loop reaps the outcome at once (as Patroni's async executor wakes its HA loop),
        // not a loop_wait later: a promoted worker's after_promote, the member key of a new
        // primary and a rejoined replica's role would otherwise wait for it.
        let (done, outcome) = tokio::sync::oneshot::channel();
        let handle = tokio::spawn(async move {
            let _ = done.send(work.await);
            wake.notify_one();
        });
        self.task = Some(Task {
            kind,
            handle,
            outcome,
        });
    }

    fn spawn_bootstrap(&mut self) -> anyhow::Result<()> {
        let method = super::pgconf::bootstrap_method(&self.settings)?;
        let post = self.settings.bootstrap.post_bootstrap.clone();
        let dsn = format!(
            "host={} port={} user={} dbname=postgres",
            self.pg.settings().socket_dir.display(),
            self.pg.settings().port,
            self.pg.settings().superuser.username
        );
        let mpp = self.mpp.clone();
        let settings = self.settings.clone();
        self.spawn(RunningAction::Bootstrap, move |pg| async move {
            pg.bootstrap(&method, false).await?;
            if let Some(cmd) = post {
                run_hook("bootstrap.post_bootstrap", &format!("{cmd} '{dsn}'")).await?;
            }
            if let Some(mpp) = mpp {
                mpp.bootstrap(&settings)
                    .await
                    .context("preparing the new primary for the MPP handler")?;
            }
            Ok(TaskOutcome::Bootstrapped)
        });
        Ok(())
    }

    fn spawn_demote(
        &mut self,
        mode: DemoteMode,
        upstream: Option<Source>,
        cluster: Option<&Cluster>,
    ) -> anyhow::Result<()> {
        if let Some(task) = self.task.take() {
            tracing::warn!("aborting {} to demote", task.kind.label());
            task.handle.abort();
        }
        let up = match mode {
            DemoteMode::Offline => None,
            _ => self
                .upstream_of_source(cluster, upstream.as_ref())
                .unwrap_or(None),
        };
        self.upstream = if up.is_some() { upstream } else { None };
        self.memory.rewind_check = true;
        self.role = "demoted";
        let dcs = self.dcs.clone();
        let releases = mode.releases_lock();
        // Only a graceful demotion of the lock holder pauses the coordinator's traffic (Patroni
        // sends before_demote for switchovers, not when the lock is already lost).
        let announce = self.memory.has_lock && mode == DemoteMode::Graceful;
        // A primary turned standby leader keeps the key (and refreshes it again next cycle).
        self.memory.has_lock &= mode == DemoteMode::ToStandbyLeader;
        self.disarm();
        let mpp = self.mpp.clone();
        let t = self.timeouts();
        self.spawn(RunningAction::Demote, move |pg| async move {
            let stop = match mode {
                DemoteMode::Graceful | DemoteMode::Offline | DemoteMode::ToStandbyLeader => {
                    StopMode::Fast
                }
                DemoteMode::Immediate | DemoteMode::ImmediateNoLock => StopMode::Immediate,
            };
            // Before the coordinator pauses its traffic (as Patroni orders it): the stop's
            // own CHECKPOINT then has little left, and the pause stays short.
            if mode == DemoteMode::Graceful
                && let Err(e) = pg.checkpoint().await
            {
                tracing::warn!("CHECKPOINT before the switchover failed: {e}");
            }
            if let Some(mpp) = mpp {
                if announce {
                    mpp.notify(MppEventKind::BeforeDemote, t.ttl, t.retry_timeout)
                        .await;
                }
                mpp.on_demote().await;
            }
            let started = std::time::Instant::now();
            pg.stop(stop).await?;
            tracing::debug!("stopped PostgreSQL in {:?}", started.elapsed());
            if releases {
                if let Ok(cd) = pg.controldata().await
                    && let Some((_, lsn)) = cd.checkpoint()
                    && let Err(e) = dcs.write_optime(lsn.0).await
                {
                    tracing::warn!("could not publish the final WAL position: {e}");
                }
                release_leader_key(&dcs).await;
                tracing::debug!("demoted and released in {:?}", started.elapsed());
            }
            pg.follow(up.as_ref()).await?;
            Ok(TaskOutcome::Demoted)
        });
        Ok(())
    }

    /// `synchronous_standby_names`, through the parameters so a later config
    /// rewrite keeps it.
    async fn set_ssn(&mut self, names: String) -> anyhow::Result<()> {
        let mut params = self.current_parameters();
        params.set("synchronous_standby_names", names.clone());
        self.apply_parameters(params).await?;
        self.ssn = names;
        // Standbys count as confirmed once they reach the primary's position of
        // this moment; on a replica (before a promotion) that position is only
        // known once it runs as primary.
        self.memory.ssn_changed_at_lsn = match self.pg.state().await {
            Ok(st) => st.wal_lsn.map_or(super::SSN_POSITION_UNKNOWN, |l| l.0),
            Err(_) => super::SSN_POSITION_UNKNOWN,
        };
        Ok(())
    }

    /// Rewrite the configuration with `params`, the MPP handler's adjustments on top.
    pub(super) async fn apply_parameters(
        &self,
        params: keel_postgres::Parameters,
    ) -> keel_postgres::Result<keel_postgres::ParameterPlan> {
        if let Some(mpp) = &self.mpp {
            mpp.adjust_parameters(&self.pg, &params).await;
        }
        let running = self.pg.is_running();
        let plan = self.pg.apply_parameters(params).await?;
        if running && !(plan.reload.is_empty() && plan.restart.is_empty()) {
            self.callbacks.call(Callback::Reload, self.role);
        }
        Ok(plan)
    }

    fn current_parameters(&self) -> keel_postgres::Parameters {
        let mut params = super::pgconf::postgres_settings(&self.settings, &self.dynamic)
            .map(|s| s.parameters)
            .unwrap_or_default();
        self.enforce_hot_standby_feedback(&mut params);
        params
    }

    /// Patroni's override: with logical slot copies here or downstream, the feedback that
    /// protects them is on whatever the configuration says.
    pub(super) fn enforce_hot_standby_feedback(&self, params: &mut keel_postgres::Parameters) {
        if self.hot_standby_feedback_enforced {
            params.set("hot_standby_feedback", "on");
        }
    }

    /// Turns the `hot_standby_feedback` override on or off as the cluster now needs it
    /// (a reload; Patroni re-decides it every cycle too).
    async fn update_hot_standby_feedback(&mut self, cluster: &Cluster) {
        let needed = super::slots::needs_hot_standby_feedback(
            &self.settings.name,
            &self.settings.tags,
            cluster,
            &self.dynamic,
            self.pg.settings().use_slots,
        );
        if needed == self.hot_standby_feedback_enforced {
            return;
        }
        self.hot_standby_feedback_enforced = needed;
        let mut params = self.current_parameters();
        if !self.ssn.is_empty()
            || self.dynamic.synchronous_mode != keel_config::SynchronousMode::Off
        {
            params.set("synchronous_standby_names", self.ssn.clone());
        }
        if needed {
            tracing::info!(
                "hot_standby_feedback is on: logical slot copies here or on a member streaming \
                 from this one need it"
            );
        }
        if let Err(e) = self.apply_parameters(params).await {
            tracing::warn!("could not apply hot_standby_feedback: {e}");
        }
    }

    /// Publish the timeline history when ours is longer than the DCS's.
    async fn update_history(&self, cluster: Option<&Cluster>) -> anyhow::Result<()> {
        let Some(cluster) = cluster else {
            return Ok(());
        };
        let st = self.pg.state().await?;
        let timeline = st.timeline.unwrap_or(1);
        if timeline <= 1 || cluster.timeline() >= timeline {
            return Ok(());
        }
        let local = Upstream::new(
            self.pg.settings().socket_dir.display().to_string(),
            self.pg.settings().port,
        );
        let (_, entries) = self.pg.leader_history(&local).await?;
        let known: Vec<HistoryLine> = cluster
            .history
            .as_ref()
            .map(|h| h.lines.clone())
            .unwrap_or_default();
        let mut lines = Vec::new();
        for e in entries {
            let old = known.iter().find(|l| l.timeline == e.parent);
            lines.push(old.cloned().unwrap_or_else(|| HistoryLine {
                timeline: e.parent,
                lsn: e.switch_point.0,
                reason: "no recovery target specified".to_owned(),
                timestamp: Some(Utc::now().to_rfc3339()),
                new_leader: Some(self.settings.name.clone()),
            }));
        }
        self.dcs.set_history(&TimelineHistory::new(lines)).await?;
        Ok(())
    }

    /// This member's key.
    pub(super) async fn publish_member(&self, cluster: &Cluster) {
        let data = self.member_data(cluster).await;
        if let Err(e) = self.dcs.touch_member(&data).await {
            tracing::warn!("could not publish the member key: {e}");
        }
    }

    async fn member_data(&self, cluster: &Cluster) -> MemberData {
        let mut data = MemberData {
            conn_url: Some(self.conn_url()),
            api_url: Some(self.api_url()),
            version: Some(WIRE_VERSION.to_owned()),
            tags: self.settings.tags.published(),
            pause: self.dynamic.pause,
            ..MemberData::default()
        };
        let running = self.pg.is_running();
        let state = if running {
            self.pg.state().await.ok()
        } else {
            None
        };
        data.state = Some(
            match (&state, running, &self.task) {
                (_, _, Some(t))
                    if matches!(t.kind, RunningAction::Clone | RunningAction::Reinitialize) =>
                {
                    "creating replica"
                }
                (_, _, Some(t)) if t.kind == RunningAction::Restart => "restarting",
                (_, _, Some(t)) if t.kind == RunningAction::Bootstrap => "initializing new cluster",
                (_, _, Some(t)) if t.kind == RunningAction::Rewind => {
                    "running custom bootstrap script"
                }
                (Some(_), _, _) => "running",
                (None, true, _) => "starting",
                (None, false, _) if self.pg.crashed() => "crashed",
                (None, false, _) => "stopped",
            }
            .to_owned(),
        );
        if matches!(&self.task, Some(t) if t.kind == RunningAction::Rewind) {
            data.state = Some("running pg_rewind".to_owned());
        }
        match &state {
            Some(st) if st.role == keel_postgres::Role::Primary => {
                data.role = Some(Role::Primary);
                data.xlog_location = st.wal_lsn.map(|l| l.0);
                data.timeline = st.timeline;
                if self.checkpoint_pending && cluster.leader_name() == Some(&self.settings.name) {
                    data.checkpoint_after_promote = Some(false);
                }
            }
            Some(st) => {
                // The lock holder of a standby cluster runs as a replica.
                let standby_leader = self.dynamic.is_standby_cluster() && self.memory.has_lock;
                data.role = Some(if standby_leader {
                    Role::StandbyLeader
                } else {
                    Role::Replica
                });
                let receive = st.receive_lsn.map(|l| l.0);
                let replay = st.replay_lsn.map(|l| l.0);
                data.xlog_location = receive.max(replay);
                data.receive_lsn = receive.filter(|l| *l > 0);
                data.replay_lsn = replay.filter(|l| *l > 0);
                data.replication_state = Some(
                    if st.wal_receiver_status.as_deref() == Some("streaming") {
                        "streaming"
                    } else {
                        "in archive recovery"
                    }
                    .to_owned(),
                );
                // Without a receiver, the replay timeline the last cycle read (see observe).
                data.timeline = match (&st.wal_receiver_status, self.replay_timeline) {
                    (None, Some((_, tli))) => Some(tli),
                    _ => st.timeline,
                };
            }
            None => {
                data.role = Some(match self.role {
                    "primary" => Role::Primary,
                    "demoted" => Role::Demoted,
                    _ if self.sysid.is_none() => Role::Uninitialized,
                    _ => Role::Replica,
                });
            }
        }
        if let Some(st) = &state {
            let mut shared = lock(&self.shared);
            data.pending_restart_reason = super::pending_restart_reason(&shared.pending_restart);
            data.pending_restart = data.pending_restart_reason.is_some();
            shared.postmaster_start_time = Some(st.postmaster_start_time.clone());
        }
        data.scheduled_restart = lock(&self.shared)
            .scheduled_restart
            .as_ref()
            .map(super::requests::ScheduledRestart::published);
        data
    }

    /// Makes this node's replication slots what Patroni 4.1 would keep (see `slots`): member
    /// and permanent slots created, unknown ones dropped unless `ignore_slots`, pause or the
    /// MPP handler keep them; a replica advances the slots nobody streams from to the
    /// leader's published positions; a primary prepares what its next `/status` says.
    pub(super) async fn sync_slots(&mut self, obs: &Observation) {
        let Ok(cluster) = &obs.cluster else {
            return;
        };
        if obs.postgres.is_running() {
            self.update_hot_standby_feedback(cluster).await;
        }
        if !self.pg.settings().use_slots {
            return;
        }
        let primary = obs.postgres.is_primary();
        let existing = match self.pg.slots().await {
            Ok(slots) => slots,
            Err(e) => {
                tracing::warn!("replication slots: {e}");
                return;
            }
        };
        let node = super::slots::Node {
            name: &self.settings.name,
            primary,
            standby_leader: !primary && self.dynamic.is_standby_cluster() && self.memory.has_lock,
            nofailover: self.settings.tags.nofailover(),
        };
        let wanted = super::slots::wanted_slots(&node, cluster, &self.dynamic);
        let specs: Vec<keel_postgres::SlotSpec> = wanted.iter().map(|w| w.spec.clone()).collect();
        // The MPP handler's own slots (Citus shard moves) are never ours to drop; ask only
        // about the slots the sync would otherwise drop.
        let handler_keeps = match &self.mpp {
            Some(mpp) => {
                let droppable: Vec<_> = existing
                    .iter()
                    .filter(|s| !s.temporary && !specs.iter().any(|w| w.name == s.name))
                    .cloned()
                    .collect();
                mpp.ignored_slots(&droppable).await
            }
            None => Default::default(),
        };
        let keeps_copies = !primary
            && !node.standby_leader
            && super::slots::keeps_logical_copies(
                &self.settings.name,
                &self.settings.tags,
                cluster,
                &self.dynamic,
            );
        let dynamic = &self.dynamic;
        let ignore = |slot: &keel_postgres::ReplicationSlot| {
            dynamic.pause
                || handler_keeps.contains(&slot.name)
                || super::slots::is_ignored(slot, &dynamic.ignore_slots)
                // A replica keeps the permanent logical slots it has (copies of the primary's).
                || (keeps_copies
                    && matches!(slot.kind, keel_postgres::SlotKind::Logical { .. })
                    && dynamic.slots.contains_key(&slot.name))
        };
        match self.pg.sync_slots_from(&existing, &specs, &ignore).await {
            Ok(report) => {
                for name in &report.created {
                    tracing::info!("created replication slot {name}");
                }
                for name in &report.dropped {
                    tracing::info!("dropped replication slot {name}");
                }
            }
            Err(e) => tracing::warn!("replication slots: {e}"),
        }
        if primary {
            let now = std::time::Instant::now();
            let state = &mut self.slot_state;
            state.readiness.clear();
            let retained = state.retained.get_or_insert_with(|| {
                let mut r = super::slots::RetainedSlots::default();
                r.adopt(&cluster.status.retain_slots, now);
                r
            });
            state.retain = retained.update(&self.settings.name, cluster, dynamic, &existing, now);
            state.positions = super::slots::published_positions(
                &self.settings.name,
                dynamic,
                &existing,
                obs.postgres.wal_position,
            );
        } else {
            self.slot_state = super::slots::SlotState {
                copied_at: self.slot_state.copied_at,
                copied_positions: std::mem::take(&mut self.slot_state.copied_positions),
                readiness: std::mem::take(&mut self.slot_state.readiness),
                copies_deferred: self.slot_state.copies_deferred.take(),
                ..Default::default()
            };
            let published = cluster.status.slots.clone().unwrap_or_default();
            let targets = super::slots::advance_targets(
                &wanted,
                &existing,
                &published,
                obs.postgres.wal_position,
            );
            for (name, lsn) in targets {
                if let Err(e) = self.pg.advance_slot(&name, keel_postgres::Lsn(lsn)).await {
                    tracing::debug!("could not advance replication slot {name}: {e}");
                }
            }
            if keeps_copies && !self.dynamic.pause {
                self.sync_logical_copies(cluster, &existing, &published)
                    .await;
            } else {
                self.slot_state.readiness.clear();
            }
        }
    }

    /// Patroni 4's slot failover on a replica: copy the leader's permanent logical slots
    /// that are missing here (their state files; PostgreSQL restarts to load them), move the
    /// copies along with the leader's published positions, and tell when each copy is safe
    /// to use after a failover (`slot_readiness`), so a consumer finds its slot, at about its
    /// position, on whichever member is promoted.
    async fn sync_logical_copies(
        &mut self,
        cluster: &Cluster,
        existing: &[keel_postgres::ReplicationSlot],
        published: &std::collections::BTreeMap<String, u64>,
    ) {
        let copies = super::slots::logical_copies(&self.dynamic, published);
        if copies.is_empty() {
            self.slot_state.readiness.clear();
            return;
        }
        let Ok(state) = self.pg.state().await else {
            return;
        };
        let replayed = state.replay_lsn.map_or(0, |l| l.0);
        let targets = super::slots::logical_advance_targets(&copies, existing, published, replayed);
        let mut unusable = Vec::new();
        for (name, lsn) in targets {
            match self.pg.advance_slot(&name, keel_postgres::Lsn(lsn)).await {
                Ok(()) => {}
                // The copy starts before the WAL this replica has (the primary's slot needed
                // older WAL when it was copied): drop it and copy it again, as Patroni does.
                Err(e) if e.is_wal_removed() => {
                    tracing::warn!(
                        "the copy of logical slot {name} is unusable here ({e}); copying it again"
                    );
                    match self.pg.drop_slot(&name).await {
                        Ok(()) => unusable.push(name),
                        Err(e) => {
                            tracing::warn!("could not drop the copy of logical slot {name}: {e}");
                        }
                    }
                }
                Err(e) => tracing::warn!("could not advance the copy of logical slot {name}: {e}"),
            }
        }
        let Some(leader) = cluster
            .leader_name()
            .filter(|l| *l != self.settings.name)
            .map(str::to_owned)
        else {
            return;
        };
        let up = match self.member_upstream(Some(cluster), Some(&leader)) {
            Ok(Some(up)) => up,
            Ok(None) | Err(_) => return,
        };
        // Every copy here, including one the leader has stopped publishing a position for.
        let here: Vec<_> = existing
            .iter()
            .filter(|s| {
                matches!(s.kind, keel_postgres::SlotKind::Logical { .. })
                    && self.dynamic.slots.contains_key(&s.name)
                    && !unusable.contains(&s.name)
            })
            .cloned()
            .collect();
        let epoch = super::slot_readiness::Epoch {
            postmaster_start: state.postmaster_start_time.clone(),
            leader: leader.clone(),
        };
        self.check_copy_readiness(cluster, epoch, &up, &here).await;

        let missing: Vec<String> = copies
            .into_iter()
            .filter(|name| here.iter().all(|s| &s.name != name))
            .collect();
        let moved = missing
            .iter()
            .any(|name| self.slot_state.copied_positions.get(name) != published.get(name));
        let due = self.slot_state.copied_at.is_none_or(|at| {
            let waited = at.elapsed();
            waited >= LOGICAL_COPY_RETRY || moved && waited >= LOGICAL_COPY_MIN_INTERVAL
        });
        if missing.is_empty() {
            self.slot_state.copies_deferred = None;
            return;
        }
        if !due {
            return;
        }
        // Deferred copies count as an attempt too: looked at again once the leader's
        // position for them moves (at most every LOGICAL_COPY_MIN_INTERVAL), or after
        // LOGICAL_COPY_RETRY.
        self.slot_state.copied_at = Some(std::time::Instant::now());
        self.slot_state.copied_positions = missing
            .iter()
            .filter_map(|name| Some((name.clone(), *published.get(name)?)))
            .collect();
        let missing = self.usable_copies(&leader, &up, missing).await;
        if missing.is_empty() {
            return;
        }
        tracing::info!(
            "copying logical replication slots {} from {leader}; PostgreSQL restarts",
            missing.join(", ")
        );
        self.spawn(RunningAction::Restart, move |pg| async move {
            let copied = pg.copy_logical_slots(&up, &missing).await?;
            tracing::info!("copied logical replication slots: {}", copied.join(", "));
            Ok(TaskOutcome::Started)
        });
    }

    /// Of the slots `wanted` from the leader, those worth copying now: a slot that still
    /// needs WAL older than any this replica has could be neither advanced nor decoded here
    /// (a copy would only cost a restart and be dropped again), so it waits until its
    /// consumer moves on. Unknown positions do not hold a copy back.
    async fn usable_copies(
        &mut self,
        leader: &str,
        up: &keel_postgres::Upstream,
        wanted: Vec<String>,
    ) -> Vec<String> {
        let oldest_here = match self.pg.oldest_wal_lsn().await {
            Ok(Some(lsn)) => lsn,
            Ok(None) | Err(_) => return wanted,
        };
        let on_primary = match self.pg.leader_slots(up, &wanted).await {
            Ok(slots) => slots,
            Err(_) => return wanted,
        };
        let (usable, waiting): (Vec<String>, Vec<String>) = wanted.into_iter().partition(|name| {
            on_primary
                .iter()
                .find(|s| &s.name == name)
                .and_then(|s| s.restart_lsn)
                .is_none_or(|needed| needed >= oldest_here)
        });
        // Said once per set of slots waiting, not every cycle.
        let deferred = (!waiting.is_empty()).then(|| waiting.join(", "));
        if deferred != self.slot_state.copies_deferred {
            if let Some(names) = &deferred {
                tracing::info!(
                    "not copying logical slots {names} yet: on the primary {leader} they still \
                     need WAL older than this replica's oldest ({oldest_here}); they are copied \
                     once their consumers move on"
                );
            }
            self.slot_state.copies_deferred = deferred;
        }
        usable
    }

    /// Patroni 4's readiness check of the copies this replica has (see `slot_readiness`):
    /// reads the primary's side and logs each copy that became safe to use after a failover,
    /// or, once, why the check cannot progress.
    async fn check_copy_readiness(
        &mut self,
        cluster: &Cluster,
        epoch: super::slot_readiness::Epoch,
        up: &keel_postgres::Upstream,
        here: &[keel_postgres::ReplicationSlot],
    ) {
        let leader = epoch.leader.clone();
        self.slot_state.readiness.begin(epoch, here);
        if self.slot_state.readiness.unready().is_empty() {
            return;
        }
        let Some(physical) =
            super::slots::slot_on_primary(&self.settings.name, &self.settings.tags, cluster)
        else {
            return self.copy_check_stalled(
                true,
                "logical slot copies cannot be kept safe after a failover: this member \
                 streams through no physical slot on the primary (nostream, or a \
                 replicatefrom loop)",
            );
        };
        let mut names = self.slot_state.readiness.awaiting_primary();
        names.push(physical.clone());
        let on_primary = match self.pg.leader_slots(up, &names).await {
            Ok(slots) => slots,
            Err(e) => {
                // Logged once per reason: the error's own text may vary; it is at debug.
                tracing::debug!("reading slots on the primary {leader}: {e}");
                return self.copy_check_stalled(
                    true,
                    &format!("cannot check the logical slot copies against the primary {leader}"),
                );
            }
        };
        let physical_xmin = on_primary
            .iter()
            .find(|s| s.name == physical && s.kind == keel_postgres::SlotKind::Physical)
            .map(|s| s.catalog_xmin);
        match physical_xmin {
            None => self.copy_check_stalled(
                true,
                &format!(
                    "physical slot {physical} is not on the primary {leader} (or it does not \
                     run as primary yet)"
                ),
            ),
            Some(None) => {
                let feedback_off = self
                    .pg
                    .query_text("SHOW hot_standby_feedback")
                    .await
                    .is_ok_and(|v| v != "on");
                let reason = if feedback_off {
                    "logical slot failover requires hot_standby_feedback = on: the copies here \
                     are not protected on the primary"
                        .to_owned()
                } else {
                    format!(
                        "waiting for hot_standby_feedback to reach physical slot {physical} on \
                         the primary {leader} before the logical slot copies are safe"
                    )
                };
                self.copy_check_stalled(feedback_off, &reason);
            }
            Some(Some(xmin)) => {
                for name in self.slot_state.readiness.settle(xmin, &on_primary, here) {
                    tracing::info!("logical slot {name} is safe to use after a failover");
                }
            }
        }
    }
}

impl Daemon {
    /// Logs why the copy readiness check cannot progress, once per reason; `warn` for what
    /// needs the operator.
    fn copy_check_stalled(&mut self, warn: bool, reason: &str) {
        if self.slot_state.readiness.note_stall(reason) {
            if warn {
                tracing::warn!("{reason}");
            } else {
                tracing::info!("{reason}");
            }
        }
    }
}

/// How long a replica waits before copying logical slots again after a copy that left
/// some missing, unless the leader's positions for them moved (each copy restarts
/// PostgreSQL).
const LOGICAL_COPY_RETRY: std::time::Duration = std::time::Duration::from_secs(300);

/// The least time between two copies (each restarts PostgreSQL), however fast the
/// leader's positions move.
const LOGICAL_COPY_MIN_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

impl Daemon {
    /// The MPP moments of a cycle: the coordinator's leader aligns the metadata with the
    /// formation; a promoted worker leader announces `after_promote` once its member key
    /// says it runs as primary.
    pub(super) async fn mpp_cycle(&mut self, obs: &Observation) {
        let Some(mpp) = self.mpp.clone() else {
            return;
        };
        if !self.memory.has_lock || !obs.postgres.is_primary() {
            return;
        }
        if self.announce_promotion {
            self.announce_promotion = false;
            let t = self.timeouts();
            let mpp = Arc::clone(&mpp);
            tokio::spawn(async move {
                mpp.notify(MppEventKind::AfterPromote, t.ttl, t.retry_timeout)
                    .await;
            });
        }
        if mpp.is_coordinator() {
            match self.dcs.load_formation().await {
                Ok(formation) => mpp.sync_meta_data(&formation).await,
                Err(e) => tracing::warn!("cannot read the formation for the MPP handler: {e}"),
            }
        }
    }
}

/// Run a user hook through the shell, bounded; a non-zero exit is an error.
async fn run_hook(what: &str, command: &str) -> anyhow::Result<()> {
    let mut cmd = tokio::process::Command::new("/bin/sh");
    cmd.arg("-c").arg(command).kill_on_drop(true);
    let status = tokio::time::timeout(std::time::Duration::from_secs(300), cmd.status())
        .await
        .with_context(|| format!("{what}: `{command}` did not finish within 300 s"))?
        .with_context(|| format!("{what}: cannot run `{command}`"))?;
    anyhow::ensure!(status.success(), "{what}: `{command}` exited with {status}");
    Ok(())
}

/// Deletes our leader key after a demotion, retrying a failed call a few times: until it is gone
/// the candidates wait for the key to expire, and our member-key refreshes keep its lease alive.
/// A key that cannot be deleted is not a reason to leave PostgreSQL stopped, so this only logs.
async fn release_leader_key(dcs: &keel_dcs::Dcs) {
    const ATTEMPTS: u32 = 4;
    for attempt in 1..=ATTEMPTS {
        match dcs.delete_leader().await {
            Ok(true) => return tracing::info!("leader key released"),
            Ok(false) => return tracing::warn!("the leader key was no longer ours to release"),
            Err(e) if attempt < ATTEMPTS => {
                tracing::warn!("releasing the leader key failed (attempt {attempt}): {e}");
                tokio::time::sleep(Duration::from_millis(250 * u64::from(attempt))).await;
            }
            Err(e) => tracing::error!(
                "could not release the leader key: {e}; the next cycle sees it still names us"
            ),
        }
    }
}
