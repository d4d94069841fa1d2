//! One HA cycle (Patroni's `Ha._run_cycle`), in the order Patroni runs it.
//!
//! Internally every step returns `Step = Result<Plan, Question>`: `Err` is not a
//! failure but "ask this first", so `?` reads as "needs an answer". The public
//! [`decide`] turns that into a [`Decision`].

use keel_model::Cluster;

use crate::observation::{
    ConfigExt, DataDir, DcsUnreachable, Divergence, FailsafeAnswer, LockAnswer, Observation,
    PgRole, Process, RunningAction,
};
use crate::plan::{Action, Decision, DemoteMode, PeerRequest, Plan, Question, Source};
use crate::switchover::LeaderSide;
use crate::{race, switchover, sync};

pub(crate) type Step = Result<Plan, Question>;

/// Decide what this member does in this cycle.
///
/// Pure: the same observation gives the same decision. When the decision needs
/// I/O that only some situations justify (a lock race, the peers' positions),
/// it returns [`Decision::Ask`]; call again with the answer in
/// [`crate::Answers`]. A cycle asks at most a few questions, each once.
pub fn decide(obs: &Observation) -> Decision {
    let step = match &obs.cluster {
        Err(error) => dcs_unreachable(obs, error),
        Ok(cluster) => Cycle::new(obs, cluster).run(),
    };
    match step {
        Ok(mut plan) => {
            if obs.config.pause {
                plan.message = format!("PAUSE: {}", plan.message);
            }
            Decision::Act(plan)
        }
        Err(question) => Decision::Ask(question),
    }
}

/// §4.10: the DCS could not be read, or a lock operation raised.
fn dcs_unreachable(obs: &Observation, error: &DcsUnreachable) -> Step {
    let pg = &obs.postgres;
    let leading = !pg.is_stopped()
        && (pg.role == PgRole::Primary || obs.running == Some(RunningAction::Promote));
    if obs.running == Some(RunningAction::Demote) {
        return Ok(Plan::new(format!(
            "DCS is not accessible ({}); demote in progress",
            error.0
        ))
        .unpublished());
    }
    if obs.config.pause || !leading {
        return Ok(Plan::new(format!("DCS is not accessible: {}", error.0)).unpublished());
    }
    if obs.config.failsafe_mode {
        match failsafe_round(obs)? {
            Some(FailsafeAnswer::AllAccepted) => {
                let mut plan = Plan::new(
                    "continue to run as a leader because failsafe mode is enabled and all members \
                     are accessible",
                )
                .unpublished();
                plan.failsafe_active = true;
                return Ok(plan);
            }
            Some(FailsafeAnswer::NotAll) | None => {}
        }
    }
    Ok(Plan::new(format!(
        "demoting self because DCS is not accessible and I was a leader ({})",
        error.0
    ))
    .with(Action::Demote {
        mode: DemoteMode::Offline,
        upstream: None,
    })
    .unpublished())
}

/// §4.8: a primary that lost the DCS asks every member in the last `/failsafe`
/// to accept it. `None`: failsafe does not apply (this node is not listed).
fn failsafe_round(obs: &Observation) -> Result<Option<FailsafeAnswer>, Question> {
    let Some(failsafe) = &obs.memory.last_failsafe else {
        return Ok(None);
    };
    if !failsafe.members.contains_key(&obs.me.name) {
        return Ok(None);
    }
    let others: Vec<PeerRequest> = failsafe
        .members
        .iter()
        .filter(|(name, _)| **name != obs.me.name)
        .map(|(name, url)| PeerRequest {
            name: name.clone(),
            api_url: url.clone(),
        })
        .collect();
    if others.is_empty() {
        return Ok(Some(FailsafeAnswer::AllAccepted));
    }
    match obs.answers.failsafe {
        Some(answer) => Ok(Some(answer)),
        None => Err(Question::Failsafe(others)),
    }
}

/// One cycle over a readable DCS.
pub(crate) struct Cycle<'a> {
    pub(crate) obs: &'a Observation,
    pub(crate) cluster: &'a Cluster,
    /// The leader: the key's holder, or the failsafe leader that called us.
    pub(crate) leader: Option<&'a str>,
    /// Bookkeeping writes that go before whatever the cycle decides.
    prelude: Vec<Action>,
}

impl<'a> Cycle<'a> {
    fn new(obs: &'a Observation, cluster: &'a Cluster) -> Self {
        let mut leader = cluster.leader_name();
        if leader.is_none() && obs.config.failsafe_mode {
            let ttl = chrono::Duration::seconds(obs.config.ttl.into());
            if let Some(fs) = &obs.memory.failsafe_leader
                && obs.now - fs.at <= ttl
                && fs.name != obs.me.name
            {
                leader = Some(fs.name.as_str());
            }
        }
        Self {
            obs,
            cluster,
            leader,
            prelude: Vec::new(),
        }
    }

    pub(crate) fn me(&self) -> &'a str {
        &self.obs.me.name
    }

    /// This node holds the leader key in this view.
    pub(crate) fn i_hold(&self) -> bool {
        self.cluster.leader_name() == Some(self.me())
    }

    pub(crate) fn paused(&self) -> bool {
        self.obs.config.pause
    }

    /// PostgreSQL runs (or starts) as a primary.
    pub(crate) fn acts_as_primary(&self) -> bool {
        let pg = &self.obs.postgres;
        !pg.is_stopped() && pg.role == PgRole::Primary
    }

    /// The dynamic configuration makes this a standby cluster: its leader
    /// replicates from a remote source instead of accepting writes.
    pub(crate) fn standby_cluster(&self) -> bool {
        self.obs.config.is_standby_cluster()
    }

    /// Synchronous mode is on and `/sync` names a leader.
    pub(crate) fn sync_active(&self) -> bool {
        self.obs.config.sync_mode() && !self.cluster.sync.is_empty()
    }

    fn finish(&mut self, plan: Plan) -> Plan {
        let mut actions = std::mem::take(&mut self.prelude);
        actions.extend(plan.actions);
        Plan { actions, ..plan }
    }

    fn run(mut self) -> Step {
        let plan = self.cycle()?;
        Ok(self.finish(plan))
    }

    fn cycle(&mut self) -> Step {
        let obs = self.obs;
        let pg = &obs.postgres;

        // §4.2 steps 4-5: the lock holder repairs `initialize` and `config`.
        if self.i_hold() && !obs.memory.bootstrapped {
            if let Some(sysid) = pg.sysid()
                && !self.cluster.has_valid_sysid()
            {
                self.prelude.push(Action::WriteInitialize {
                    sysid: sysid.to_owned(),
                });
            }
            if !self.cluster.config.as_ref().is_some_and(|c| c.is_usable()) {
                self.prelude.push(Action::WriteConfig);
            }
        }

        // Step 6: a long action is running.
        if let Some(action) = obs.running {
            return self.long_action(action);
        }
        // Step 7: PostgreSQL is starting.
        if pg.process == Process::Starting && !self.paused() && self.i_hold() {
            return match self.refresh()? {
                LockAnswer::Held => self.starting_as_leader(),
                LockAnswer::NotHeld => Ok(Plan::new(
                    "stopped PostgreSQL while starting up because leader key was lost",
                )
                .with(Action::Demote {
                    mode: DemoteMode::ImmediateNoLock,
                    upstream: None,
                })),
                LockAnswer::Failed(e) => dcs_unreachable(obs, &DcsUnreachable(e)),
            };
        }
        // Step 8: this node bootstrapped the cluster; finish it.
        if obs.memory.bootstrapped {
            return Ok(self.finish_bootstrap());
        }
        // Step 9: the last cycle started PostgreSQL; did it come up?
        if obs.memory.just_started && pg.is_stopped() {
            if self.i_hold() {
                return Ok(Plan::new(
                    "removed leader key after trying and failing to start postgres",
                )
                .with(Action::ReleaseLock));
            }
            return Ok(Plan::new("failed to start postgres"));
        }
        // Step 10: the data directory.
        match &pg.data_dir {
            DataDir::Empty | DataDir::Inaccessible(_) => return self.no_data_directory(),
            DataDir::Initialized { sysid } => {
                if let Some(theirs) = &self.cluster.initialize
                    && self.cluster.has_valid_sysid()
                    && theirs != sysid
                {
                    return Ok(Plan::new(format!(
                        "system ID mismatch: the data directory belongs to system {sysid}, \
                             the cluster in the DCS to {theirs}; not managing PostgreSQL until \
                             this is fixed"
                    )));
                }
            }
        }
        // Step 11: PostgreSQL is not running.
        if pg.is_stopped() {
            return self.not_running();
        }
        // Step 12: the leader race, or life under a leader.
        match self.leader {
            None => self.unhealthy_cluster(),
            Some(leader) => self.healthy_cluster(leader),
        }
    }

    /// The refresh answer, asking for it first.
    pub(crate) fn refresh(&self) -> Result<LockAnswer, Question> {
        self.obs
            .answers
            .refresh
            .clone()
            .ok_or(Question::RefreshLock)
    }

    fn finish_bootstrap(&self) -> Plan {
        let pg = &self.obs.postgres;
        // A standby cluster's first member was cloned from the remote source and
        // runs as a replica of it: the standby leader.
        let standby = self.standby_cluster();
        let up = if standby {
            !pg.is_stopped()
        } else {
            pg.is_primary()
        };
        let Some(sysid) = pg.sysid().filter(|_| up) else {
            let expected = if standby {
                "running"
            } else {
                "running as a primary"
            };
            return Plan::new(format!(
                "bootstrap failed: PostgreSQL is not {expected} after bootstrap; initialize key \
                 removed"
            ))
            .with(Action::CancelInitialization);
        };
        let mut plan = Plan::new("initialized a new cluster").with(Action::WriteInitialize {
            sysid: sysid.to_owned(),
        });
        if !self.cluster.config.as_ref().is_some_and(|c| c.is_usable()) {
            plan = plan.with(Action::WriteConfig);
        }
        plan = plan.with(Action::TakeLock);
        if standby {
            return plan;
        }
        if self.obs.config.sync_mode() {
            plan = plan.with(Action::SetSynchronousStandbyNames(sync::empty_names(
                &self.obs.config,
            )));
        }
        plan.with(Action::UpdateHistory)
    }

    /// The lock holder's PostgreSQL is still starting (crash recovery can take
    /// long): past `primary_start_timeout`, hand over if someone can take over.
    fn starting_as_leader(&self) -> Step {
        let obs = self.obs;
        let timeout = i64::from(obs.config.primary_start_timeout);
        let Some(since) = obs.memory.starting_since else {
            return Ok(Plan::new("PostgreSQL is still starting up"));
        };
        let left = timeout - (obs.now - since).num_seconds();
        if left > 0 {
            return Ok(Plan::new(format!(
                "PostgreSQL is still starting up, {left} seconds until timeout"
            )));
        }
        if race::failover_possible(self, None, false)? {
            return Ok(
                Plan::new("stopped PostgreSQL because of startup timeout").with(Action::Demote {
                    mode: DemoteMode::Immediate,
                    upstream: None,
                }),
            );
        }
        Ok(Plan::new(
            "primary start has timed out, but continuing to wait because failover is not possible",
        ))
    }

    /// §4.2 step 10 with an empty or unreadable data directory.
    fn no_data_directory(&self) -> Step {
        let pg = &self.obs.postgres;
        let mut plan = Plan::new("");
        if !pg.is_stopped() {
            plan = plan.with(Action::StopImmediate);
        }
        let what = match &pg.data_dir {
            DataDir::Inaccessible(_) => "not accessible",
            _ => "empty",
        };
        if self.i_hold() {
            plan.message =
                format!("released leader key voluntarily as data dir {what} and currently leader");
            return Ok(plan.with(Action::ReleaseLock));
        }
        if let DataDir::Inaccessible(error) = &pg.data_dir {
            plan.message = format!("data directory is not accessible: {error}");
            return Ok(plan);
        }
        if self.paused() {
            plan.message = "running with empty data directory".to_owned();
            return Ok(plan);
        }
        let next = self.bootstrap_or_clone()?;
        Ok(Plan {
            actions: plan.actions.into_iter().chain(next.actions).collect(),
            ..next
        })
    }

    /// §4.13: an empty node bootstraps the cluster or clones a member.
    fn bootstrap_or_clone(&self) -> Step {
        let obs = self.obs;
        let cluster = self.cluster;
        if let Some(leader) = self.leader {
            let source = cluster
                .members
                .iter()
                .filter(|m| m.name != self.me() && m.name != leader)
                .filter(|m| crate::members::is_running(m) && crate::members::tags_of(m).clonefrom())
                .map(|m| m.name.as_str())
                .min();
            return Ok(match source {
                Some(replica) => Plan::new(format!("trying to bootstrap from replica '{replica}'"))
                    .with(Action::Clone {
                        source: Some(Source::member(replica)),
                    }),
                None => Plan::new(format!("trying to bootstrap from leader '{leader}'")).with(
                    Action::Clone {
                        source: Some(Source::member(leader)),
                    },
                ),
            });
        }
        // A node that may never lead (nofailover, a required watchdog it cannot use)
        // does not bootstrap the cluster either.
        if cluster.initialize.is_none()
            && !obs.me.nofailover()
            && !obs.me.watchdog_failed
            && obs.me.can_bootstrap
        {
            return Ok(match obs.answers.initialize.as_ref() {
                None => return Err(Question::Initialize),
                Some(Ok(true)) if self.standby_cluster() => {
                    Plan::new("trying to bootstrap a new standby leader")
                        .with(Action::BootstrapStandby)
                }
                Some(Ok(true)) => {
                    Plan::new("trying to bootstrap a new cluster").with(Action::Bootstrap)
                }
                Some(Ok(false)) => Plan::new("failed to acquire initialize lock"),
                Some(Err(e)) => Plan::new(format!("DCS is not accessible: {e}")).unpublished(),
            });
        }
        if obs.me.can_clone_without_leader && cluster.initialize.as_deref() != Some("") {
            return Ok(Plan::new("trying to bootstrap (without leader)")
                .with(Action::Clone { source: None }));
        }
        Ok(Plan::new(if self.standby_cluster() {
            "waiting for standby_leader to bootstrap"
        } else {
            "waiting for leader to bootstrap"
        }))
    }

    /// §4.2 step 11 and §4.13 "recover".
    fn not_running(&self) -> Step {
        let obs = self.obs;
        let pg = &obs.postgres;
        if self.paused() {
            if self.i_hold() {
                return Ok(
                    Plan::new("removed leader lock because postgres is not running")
                        .with(Action::ReleaseLock),
                );
            }
            return Ok(Plan::new("postgres is not running"));
        }
        let crashed = matches!(pg.process, Process::Stopped { crashed: true });
        if self.i_hold() {
            match self.refresh()? {
                LockAnswer::Held if self.standby_cluster() => {
                    return Ok(Plan::new(
                        "starting as a standby leader because i had the session lock",
                    )
                    .with(Action::Start {
                        as_primary: false,
                        upstream: self.follow_target(),
                    }));
                }
                LockAnswer::Held => {
                    if crashed && pg.role == PgRole::Primary {
                        return Ok(Plan::new("starting primary after failure").with(
                            Action::Start {
                                as_primary: true,
                                upstream: None,
                            },
                        ));
                    }
                    return Ok(
                        Plan::new("starting as readonly because i had the session lock").with(
                            Action::Start {
                                as_primary: false,
                                upstream: None,
                            },
                        ),
                    );
                }
                LockAnswer::NotHeld => {}
                LockAnswer::Failed(e) => return dcs_unreachable(obs, &DcsUnreachable(e)),
            }
        }
        let leader = self.leader.filter(|l| *l != self.me());
        if let Some(leader) = leader {
            // A former primary must not stream from the new leader before we know
            // its history did not fork.
            match pg.divergence {
                Divergence::Unknown if pg.role == PgRole::Primary || obs.memory.rewind_check => {
                    return Ok(Plan::new(format!(
                        "checking whether the local timeline diverged from leader {leader}"
                    ))
                    .with(Action::TriggerRewindCheck));
                }
                Divergence::Diverged | Divergence::RewindFailed => {
                    return Ok(self.repair_divergence(leader));
                }
                _ => {}
            }
        }
        let upstream = self.follow_target();
        let message = if leader.is_some() {
            "starting as a secondary"
        } else if upstream == Some(Source::Remote) {
            "trying to follow a remote member because standby cluster is unhealthy"
        } else {
            "starting as a secondary (no leader yet)"
        };
        Ok(Plan::new(message).with(Action::Start {
            as_primary: false,
            upstream,
        }))
    }

    /// §5.4: rewind, or remove and re-clone, or refuse with the reason.
    fn repair_divergence(&self, leader: &str) -> Plan {
        let me = &self.obs.me;
        match self.obs.postgres.divergence {
            Divergence::RewindFailed if me.remove_data_directory_on_rewind_failure => {
                Plan::new("reinitializing after a failed pg_rewind").with(Action::Reinitialize {
                    source: leader.to_owned(),
                })
            }
            Divergence::RewindFailed => Plan::new(
                "pg_rewind failed earlier; not starting PostgreSQL as a replica until the node \
                 is reinitialized (keelctl reinit)",
            ),
            _ if me.use_pg_rewind => {
                Plan::new(format!("running pg_rewind from {leader}")).with(Action::Rewind {
                    source: leader.to_owned(),
                })
            }
            _ if me.remove_data_directory_on_diverged_timelines => {
                Plan::new("reinitializing due to diverged timelines").with(Action::Reinitialize {
                    source: leader.to_owned(),
                })
            }
            _ => Plan::new(format!(
                "cannot follow {leader}: the local timeline diverged and neither \
                 postgresql.use_pg_rewind nor remove_data_directory_on_diverged_timelines is set"
            )),
        }
    }

    /// §4.4.1 step 1: who to stream from. In a standby cluster the standby
    /// leader, and everyone while there is none (unless paused), streams from
    /// the remote source.
    pub(crate) fn follow_target(&self) -> Option<Source> {
        let me = &self.obs.me;
        if me.tags.nostream() {
            return None;
        }
        if self.standby_cluster() && (self.i_hold() || self.leader.is_none() && !self.paused()) {
            return Some(Source::Remote);
        }
        if let Some(from) = me.tags.replicatefrom()
            && from != me.name
            && self.cluster.member(from).is_some()
        {
            return Some(Source::member(from));
        }
        self.leader.filter(|l| *l != me.name).map(Source::member)
    }

    /// The standby leader's part (Patroni's `enforce_follow_remote_member`):
    /// replicate from the remote source; a primary here demotes into it.
    fn follow_remote(&self, message: &str) -> Plan {
        let upstream = self.follow_target();
        if self.acts_as_primary() {
            if self.paused() {
                return Plan::new("continue to run as primary without lock");
            }
            return Plan::new("cannot be a real primary in standby cluster").with(Action::Demote {
                mode: DemoteMode::ToStandbyLeader,
                upstream,
            });
        }
        if self.obs.postgres.upstream != upstream {
            return Plan::new(message).with(Action::Follow { upstream });
        }
        Plan::new(message)
    }

    /// §4.13 "long action running".
    fn long_action(&self, action: RunningAction) -> Step {
        let obs = self.obs;
        let label = action.label();
        // A demotion gives the lock up (or never had it): refreshing it now
        // would race the release and keep the key on a node that is stepping down.
        if action == RunningAction::Demote {
            return Ok(Plan::new(format!("{label} in progress")));
        }
        if self.i_hold() {
            return match self.refresh()? {
                LockAnswer::Held => Ok(Plan::new(format!("updated leader lock during {label}"))),
                LockAnswer::NotHeld => self.lost_lock_during(action),
                LockAnswer::Failed(e) => dcs_unreachable(obs, &DcsUnreachable(e)),
            };
        }
        if action != RunningAction::Bootstrap && !self.paused() {
            return self.lost_lock_during(action);
        }
        Ok(Plan::new(format!("{label} in progress")))
    }

    fn lost_lock_during(&self, action: RunningAction) -> Step {
        let label = action.label();
        if action == RunningAction::Promote {
            return Ok(
                Plan::new("lost leader before promote").with(Action::Demote {
                    mode: DemoteMode::ImmediateNoLock,
                    upstream: self.follow_target(),
                }),
            );
        }
        if self.acts_as_primary() && action != RunningAction::Demote {
            return Ok(Plan::new(format!("lost leader lock during {label}")).with(
                Action::Demote {
                    mode: DemoteMode::ImmediateNoLock,
                    upstream: self.follow_target(),
                },
            ));
        }
        Ok(Plan::new(format!("{label} in progress")))
    }

    /// §4.3: nobody holds the leader key.
    fn unhealthy_cluster(&self) -> Step {
        let obs = self.obs;
        let (healthy, mut plan) = race::is_healthiest_node(self)?;
        if healthy {
            match obs.answers.acquire.clone() {
                None => return Err(Question::AcquireLock),
                Some(LockAnswer::Held) => {
                    if let Some(failover) = self.cluster.failover.as_ref().filter(|f| f.is_set()) {
                        match (&failover.leader, &failover.candidate) {
                            (Some(_), Some(candidate)) if self.paused() => {
                                plan = plan.with(Action::RewriteFailover {
                                    candidate: candidate.clone(),
                                    version: failover.version.clone(),
                                });
                            }
                            _ => {
                                plan = plan.with(Action::ClearFailover { version: None });
                            }
                        }
                    }
                    let next = if self.standby_cluster() {
                        self.follow_remote(
                            "promoted self to a standby leader by acquiring session lock",
                        )
                    } else if self.acts_as_primary() {
                        self.enforce_primary_role("acquired session lock as a leader")?
                    } else {
                        self.enforce_primary_role(
                            "promoted self to leader by acquiring session lock",
                        )?
                    };
                    return Ok(plan.then(next.actions).message_from(next.message));
                }
                Some(LockAnswer::NotHeld) => {
                    if self.acts_as_primary() && self.paused() {
                        return Ok(plan.message_from("continue to run as primary without lock"));
                    }
                    if self.acts_as_primary() {
                        return Ok(plan
                            .with(Action::Demote {
                                mode: DemoteMode::ImmediateNoLock,
                                upstream: None,
                            })
                            .message_from("demoted self after trying and failing to obtain lock"));
                    }
                    return Ok(plan.message_from(
                        "following new leader after trying and failing to obtain lock",
                    ));
                }
                Some(LockAnswer::Failed(e)) => return dcs_unreachable(obs, &DcsUnreachable(e)),
            }
        }
        let failover_requested = self.cluster.failover.as_ref().is_some_and(|f| f.is_set());
        if (obs.me.nofailover() && !self.paused())
            || failover_requested
                && self
                    .cluster
                    .failover
                    .as_ref()
                    .and_then(|f| f.candidate.as_ref())
                    .is_some()
        {
            plan = plan.with(Action::TriggerRewindCheck);
        }
        // Paused, nothing is demoted (Patroni's follow()): a paused primary that
        // demoted here left the cluster without one (found by keel-sim).
        if self.acts_as_primary() && self.paused() {
            return Ok(plan.message_from("continue to run as primary without lock"));
        }
        let message = match (obs.me.nofailover(), self.acts_as_primary()) {
            (true, true) => "demoting self because I am not allowed to become primary",
            (true, false) => "following a different leader because I am not allowed to promote",
            (false, true) => "demoting self because i am not the healthiest node",
            (false, false) => "following a different leader because i am not the healthiest node",
        };
        if self.acts_as_primary() {
            plan = plan.with(Action::Demote {
                mode: DemoteMode::ImmediateNoLock,
                upstream: None,
            });
        }
        Ok(plan.message_from(message))
    }

    /// §4.4: someone holds the leader key.
    fn healthy_cluster(&self, leader: &str) -> Step {
        let obs = self.obs;
        if leader == self.me() && self.i_hold() {
            if self.paused() && !self.acts_as_primary() && !self.standby_cluster() {
                let candidate = self
                    .cluster
                    .failover
                    .as_ref()
                    .and_then(|f| f.candidate.as_deref());
                if candidate == Some(self.me()) {
                    return Ok(Plan::new("waiting to become primary after promote..."));
                }
                return Ok(Plan::new(
                    "removed leader lock because postgres is not running as primary",
                )
                .with(Action::ReleaseLock));
            }
            return match self.refresh()? {
                LockAnswer::Held => {
                    let (before, wake_at, note) = match switchover::process_as_leader(self)? {
                        LeaderSide::Demote(plan) => return Ok(plan),
                        LeaderSide::Continue {
                            actions,
                            wake_at,
                            note,
                        } => (actions, wake_at, note),
                    };
                    let mut plan = if self.standby_cluster() {
                        let settled = self.obs.postgres.upstream == self.follow_target()
                            && !self.acts_as_primary();
                        self.follow_remote(&if settled {
                            format!(
                                "no action. I am ({}), the standby leader with the lock",
                                self.me()
                            )
                        } else {
                            "promoted self to a standby leader because i had the session lock"
                                .to_owned()
                        })
                    } else if self.acts_as_primary() {
                        self.enforce_primary_role(&format!(
                            "no action. I am ({}), the leader with the lock",
                            self.me()
                        ))?
                    } else {
                        self.enforce_primary_role(
                            "promoted self to leader because I had the session lock",
                        )?
                    };
                    if self.acts_as_primary() && !self.standby_cluster() {
                        plan.actions.insert(0, Action::Checkpoint);
                    }
                    plan.actions.splice(0..0, before);
                    plan.wake_at = match (plan.wake_at, wake_at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    if let Some(note) = note {
                        plan.message = format!("{}; {note}", plan.message);
                    }
                    Ok(plan)
                }
                LockAnswer::NotHeld if self.acts_as_primary() => {
                    if self.paused() {
                        return Ok(Plan::new(
                            "continue to run as primary after failing to update leader lock in DCS",
                        ));
                    }
                    Ok(
                        Plan::new("demoted self because failed to update leader lock in DCS").with(
                            Action::Demote {
                                mode: DemoteMode::ImmediateNoLock,
                                upstream: None,
                            },
                        ),
                    )
                }
                LockAnswer::NotHeld => Ok(Plan::new(
                    "not promoting because failed to update leader lock in DCS",
                )),
                LockAnswer::Failed(e) => dcs_unreachable(obs, &DcsUnreachable(e)),
            };
        }
        if self.acts_as_primary() {
            if self.paused() {
                return Ok(Plan::new("continue to run as primary without lock"));
            }
            return Ok(Plan::new(
                "demoting self because I do not have the lock and I was a leader",
            )
            .with(Action::Demote {
                mode: DemoteMode::ImmediateNoLock,
                upstream: self.follow_target(),
            }));
        }
        Ok(self.follow(leader))
    }

    /// §4.4.1 for a replica.
    fn follow(&self, leader: &str) -> Plan {
        let pg = &self.obs.postgres;
        if matches!(
            pg.divergence,
            Divergence::Diverged | Divergence::RewindFailed
        ) {
            return self.repair_divergence(leader);
        }
        let upstream = self.follow_target();
        let whom = if self.standby_cluster() {
            "a standby leader"
        } else {
            "a leader"
        };
        let message = format!(
            "no action. I am ({}), a secondary, and following {whom} ({leader})",
            self.me()
        );
        if pg.upstream != upstream {
            return Plan::new(message)
                .with(Action::Follow { upstream })
                .with(Action::TriggerRewindCheck);
        }
        // Check the history again on the first cycle after a start (§4.2 step 13;
        // a daemon that restarted has lost any check armed before), and while the
        // leader publishes a newer timeline than ours (Patroni's follow(): the
        // leader's history may have changed under an unchanged upstream).
        let behind = self
            .cluster
            .leader
            .as_ref()
            .and_then(|l| l.timeline())
            .is_some_and(|theirs| pg.timeline != 0 && pg.timeline < theirs);
        if (self.obs.memory.just_started || behind) && !self.obs.memory.rewind_check {
            return Plan::new(message).with(Action::TriggerRewindCheck);
        }
        Plan::new(message)
    }

    /// §4.5: keep being, or become, the primary.
    pub(crate) fn enforce_primary_role(&self, message: &str) -> Step {
        let obs = self.obs;
        if !self.paused() && obs.me.watchdog_enabled && !obs.memory.watchdog_active {
            match obs.answers.watchdog {
                None => return Err(Question::ActivateWatchdog),
                Some(true) => {}
                Some(false) if self.acts_as_primary() => {
                    return Ok(
                        Plan::new("Demoting self because watchdog could not be activated").with(
                            Action::Demote {
                                mode: DemoteMode::Immediate,
                                upstream: None,
                            },
                        ),
                    );
                }
                Some(false) => {
                    return Ok(Plan::new(
                        "Not promoting self because watchdog could not be activated",
                    )
                    .with(Action::ReleaseLock));
                }
            }
        }
        Ok(self.keep_or_become_primary(message))
    }

    fn keep_or_become_primary(&self, message: &str) -> Plan {
        let obs = self.obs;
        if self.acts_as_primary() {
            let mut plan = sync::maintain(self, Plan::new(message));
            plan = plan.with(Action::UpdateHistory);
            if obs.config.failsafe_mode {
                plan = plan.with(Action::WriteFailsafe);
            }
            return plan;
        }
        if let Some(at) = obs.memory.pre_promote_failed_at
            && obs.now - at < chrono::Duration::seconds(obs.config.ttl.into())
        {
            return Plan::new("Promotion cancelled because the pre-promote script failed")
                .with(Action::ReleaseLock);
        }
        Plan::new(message)
            .then(sync::before_promote(self))
            .with(Action::Promote)
    }
}

impl Plan {
    /// Replace the message, keeping the actions.
    pub(crate) fn message_from(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{cluster, observation, replica, with_divergence};

    fn plan(obs: &Observation) -> Plan {
        match decide(obs) {
            Decision::Act(plan) => plan,
            Decision::Ask(q) => panic!("unexpected question {q:?}"),
        }
    }

    /// A replica that just started checks its history against the leader, even
    /// when no check was armed (its daemon restarted): otherwise a replica with
    /// a diverged history runs on without ever streaming (found by keel-sim).
    #[test]
    fn a_replica_checks_for_divergence_after_a_start() {
        let view = cluster(Some("n1"), &["n0", "n1"]);
        let mut obs = observation("n0", view, replica(Some("n1")));
        obs.memory.just_started = true;
        assert_eq!(plan(&obs).actions, [Action::TriggerRewindCheck]);
        // The next cycle sees the divergence and repairs it.
        obs.memory.just_started = false;
        obs.memory.rewind_check = true;
        obs.postgres = with_divergence(replica(Some("n1")), Divergence::Diverged);
        assert_eq!(
            plan(&obs).actions,
            [Action::Rewind {
                source: "n1".to_owned()
            }]
        );
        // Without a start there is nothing to check.
        obs.memory.rewind_check = false;
        obs.postgres = replica(Some("n1"));
        assert!(plan(&obs).actions.is_empty());
    }

    /// Paused, a primary without the key is never demoted, and one whose
    /// switchover request was not carried out (it lost the key first) drops the
    /// request and takes the key back: demoting it left a paused cluster with
    /// no primary when the candidate was stopped (found by keel-sim).
    #[test]
    fn a_paused_primary_keeps_running_and_retakes_the_key() {
        let view = crate::testing::cluster_with(
            None,
            &["n0", "n1"],
            &[("failover", r#"{"leader":"n1","member":"n0"}"#)],
        );
        let mut pg = replica(None);
        pg.role = crate::observation::PgRole::Primary;
        let mut obs = observation("n1", view, pg);
        obs.config.pause = true;
        obs.answers.peers = Some(vec![crate::testing::peer("n0", false)]);
        assert_eq!(decide(&obs), Decision::Ask(Question::AcquireLock));
        obs.answers.acquire = Some(LockAnswer::NotHeld);
        let p = plan(&obs);
        assert!(
            !p.actions.iter().any(|a| matches!(a, Action::Demote { .. })),
            "{p:?}"
        );
        // Not the named leader: no key, but still no demotion.
        let view = crate::testing::cluster_with(
            None,
            &["n0", "n1"],
            &[("failover", r#"{"member":"n0"}"#)],
        );
        obs.cluster = Ok(view);
        obs.answers = Default::default();
        obs.answers.peers = Some(vec![crate::testing::peer("n0", false)]);
        let p = plan(&obs);
        assert!(
            !p.actions.iter().any(|a| matches!(a, Action::Demote { .. })),
            "{p:?}"
        );
    }

    /// A replica behind the leader's published timeline checks its history,
    /// even when its upstream did not change: the leader may have been rewound
    /// and promoted again while this replica kept pointing at it (found by
    /// keel-sim: the replica never streamed again).
    #[test]
    fn a_replica_behind_the_leaders_timeline_checks_for_divergence() {
        let mut view = cluster(Some("n1"), &["n0", "n1"]);
        if let Some(leader) = view.leader.as_mut() {
            leader.member.data.timeline = Some(3);
        }
        let obs = observation("n0", view.clone(), replica(Some("n1")));
        assert_eq!(plan(&obs).actions, [Action::TriggerRewindCheck]);
        if let Some(leader) = view.leader.as_mut() {
            leader.member.data.timeline = Some(2);
        }
        let obs = observation("n0", view, replica(Some("n1")));
        assert!(plan(&obs).actions.is_empty());
    }
}
