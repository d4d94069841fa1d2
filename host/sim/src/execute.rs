//! Carrying out a plan's actions, keeping the executor's side of keel-ha's
//! contract (steps in order, the first failure ends the plan, a later
//! `WriteSync` compares against the version the earlier one produced, memory
//! kept as the crate docs say).

use keel_ha::{Action, Observation, Plan};
use keel_model::{Failover, Failsafe, HistoryLine, TimelineHistory, is_valid_sysid};

use crate::node::Long;
use crate::sim::{Failure, World};

/// Why a step did not work out.
pub(crate) enum StepError {
    /// The step failed (the DCS said no, a precondition did not hold): the
    /// plan ends, the next cycle decides again.
    Failed(String),
    /// The plan broke keel-ha's contract: the run fails.
    Broken(Failure),
}

type Step = Result<(), StepError>;

fn failed(why: impl Into<String>) -> StepError {
    StepError::Failed(why.into())
}

impl World {
    /// Carry out `plan` for node `i`.
    pub(crate) fn execute(
        &mut self,
        i: usize,
        plan: &Plan,
        obs: &Observation,
    ) -> Result<(), Failure> {
        let mut sync_version: Option<Option<String>> = None;
        for action in &plan.actions {
            match self.act(i, action, obs, &mut sync_version) {
                Ok(()) => {}
                Err(StepError::Failed(why)) => {
                    let name = self.nodes[i].name.clone();
                    self.trace
                        .push(self.now, &name, format!("{} failed: {why}", short(action)));
                    break;
                }
                Err(StepError::Broken(failure)) => return Err(failure),
            }
        }
        Ok(())
    }

    fn need_dcs(&self, i: usize) -> Step {
        if self.dcs_ok(i) {
            Ok(())
        } else {
            Err(failed("DCS unreachable"))
        }
    }

    fn act(
        &mut self,
        i: usize,
        action: &Action,
        obs: &Observation,
        sync_version: &mut Option<Option<String>>,
    ) -> Step {
        let name = self.nodes[i].name.clone();
        match action {
            Action::WriteInitialize { sysid } => {
                self.need_dcs(i)?;
                match self.dcs.value("initialize") {
                    Some(v) if v == sysid => {}
                    Some(v) if is_valid_sysid(v) => {
                        return Err(failed("initialize holds another system identifier"));
                    }
                    _ => self.dcs.put("initialize", sysid.clone(), None),
                }
            }
            Action::CancelInitialization => {
                self.need_dcs(i)?;
                self.dcs.delete("initialize");
            }
            Action::WriteConfig => {
                self.need_dcs(i)?;
                self.dcs.put("config", self.dynamic.to_json(), None);
            }
            Action::TakeLock => {
                self.need_dcs(i)?;
                let lease = self.keepalive(i);
                self.dcs.put("leader", name.clone(), Some(lease));
                let now = self.clock();
                let memory = &mut self.nodes[i].memory;
                memory.has_lock = true;
                memory.lock_refreshed_at = Some(now);
                memory.bootstrapped = false;
                self.trace.push(self.now, &name, "took the leader key");
            }
            Action::ReleaseLock => {
                self.need_dcs(i)?;
                if self.dcs.value("leader") == Some(name.as_str()) {
                    self.dcs.delete("leader");
                    self.trace.push(self.now, &name, "released the leader key");
                }
                self.nodes[i].memory.has_lock = false;
            }
            Action::ClearFailover { version } => {
                self.need_dcs(i)?;
                self.cas("failover", "{}".to_owned(), version.as_deref(), true)?;
            }
            Action::RewriteFailover { candidate, version } => {
                self.need_dcs(i)?;
                let f = Failover {
                    candidate: Some(candidate.clone()),
                    ..Failover::default()
                };
                self.cas("failover", f.render(), version.as_deref(), false)?;
            }
            Action::WriteSync { state, version } => {
                self.need_dcs(i)?;
                let expected = sync_version.clone().unwrap_or_else(|| version.clone());
                self.cas("sync", state.render(), expected.as_deref(), false)?;
                let written = self.dcs.get("sync").map(|k| k.version.to_string());
                *sync_version = Some(written);
            }
            Action::DeleteSync { version } => {
                self.need_dcs(i)?;
                let expected = sync_version.clone().unwrap_or_else(|| version.clone());
                if !self.dcs.compare_and_delete("sync", expected.as_deref()) {
                    return Err(failed("sync changed since it was read"));
                }
                self.set_ssn(i, "");
            }
            Action::SetSynchronousStandbyNames(names) => self.set_ssn(i, names),
            Action::UpdateHistory => self.update_history(i, obs)?,
            Action::WriteFailsafe => {
                self.need_dcs(i)?;
                let mut fs = Failsafe::default();
                if let Ok(c) = &obs.cluster {
                    for m in &c.members {
                        if let Some(url) = &m.data.api_url {
                            fs.members.insert(m.name.clone(), url.clone());
                        }
                    }
                }
                fs.members.insert(name.clone(), self.nodes[i].api_url());
                let value = fs.render();
                if self.dcs.value("failsafe") != Some(value.as_str()) {
                    self.trace
                        .push(self.now, &name, format!("failsafe = {value}"));
                    self.dcs.put("failsafe", value, None);
                }
                self.nodes[i].memory.last_failsafe = Some(fs);
            }
            Action::Checkpoint => {}
            Action::Bootstrap => self.start_long(i, Long::Bootstrap)?,
            // The simulated clusters are never standby clusters: no remote source.
            Action::BootstrapStandby => {
                return Err(failed("the simulation has no standby cluster to bootstrap"));
            }
            Action::Clone { source } => self.start_long(
                i,
                Long::Clone {
                    source: member_of(source.as_ref()),
                },
            )?,
            Action::Promote => self.start_long(i, Long::Promote)?,
            Action::Start {
                as_primary,
                upstream,
            } => {
                self.start_long(
                    i,
                    Long::Start {
                        as_primary: *as_primary,
                    },
                )?;
                self.nodes[i].pg.upstream = member_of(upstream.as_ref()).filter(|_| !*as_primary);
            }
            Action::Follow { upstream } => self.nodes[i].pg.upstream = member_of(upstream.as_ref()),
            Action::Demote { mode, upstream } => self.start_long(
                i,
                Long::Demote {
                    mode: *mode,
                    upstream: member_of(upstream.as_ref()),
                    stopped: false,
                },
            )?,
            Action::StopImmediate => self.nodes[i].pg.stop(false),
            Action::Rewind { source } => self.start_long(
                i,
                Long::Rewind {
                    source: source.clone(),
                },
            )?,
            Action::Reinitialize { source } => self.start_long(
                i,
                Long::Reinitialize {
                    source: source.clone(),
                },
            )?,
            Action::TriggerRewindCheck => self.nodes[i].memory.rewind_check = true,
        }
        Ok(())
    }

    /// Compare-and-set `key` on `version` (`None`: must be absent, or with
    /// `plain_if_none` an unconditional put).
    fn cas(
        &mut self,
        key: &str,
        value: String,
        version: Option<&str>,
        plain_if_none: bool,
    ) -> Step {
        if version.is_none() && plain_if_none {
            self.dcs.put(key, value, None);
            return Ok(());
        }
        if self.dcs.compare_and_set(key, value, version) {
            Ok(())
        } else {
            Err(failed(format!("{key} changed since it was read")))
        }
    }

    /// Set `synchronous_standby_names` and reload; on a change the primary
    /// records its flush LSN and forces a small WAL write (as Patroni does).
    fn set_ssn(&mut self, i: usize, names: &str) {
        let pg = &mut self.nodes[i].pg;
        if pg.ssn == names {
            return;
        }
        pg.ssn = names.to_owned();
        if pg.is_primary()
            && let Some(wal) = pg.wal_mut()
        {
            let lsn = wal.end();
            wal.append(8);
            self.nodes[i].memory.ssn_changed_at_lsn = lsn;
        }
    }

    /// Publish the timeline history if the local one is newer (primary only).
    fn update_history(&mut self, i: usize, obs: &Observation) -> Step {
        let pg = &self.nodes[i].pg;
        let Some(wal) = pg.wal().filter(|_| pg.is_primary()) else {
            return Ok(());
        };
        let published = obs.cluster.as_ref().map_or(0, |c| c.timeline());
        let present = obs.cluster.as_ref().is_ok_and(|c| c.history.is_some());
        if present && published >= wal.timeline() {
            return Ok(());
        }
        let lines = wal
            .history()
            .into_iter()
            .map(|(timeline, lsn)| HistoryLine {
                timeline,
                lsn,
                reason: "no recovery target specified".to_owned(),
                timestamp: None,
                new_leader: None,
            })
            .collect();
        let value = TimelineHistory::new(lines).render();
        self.need_dcs(i)?;
        self.dcs.put("history", value, None);
        Ok(())
    }
}

/// The member a source names (the simulation has no remote sources).
fn member_of(source: Option<&keel_ha::Source>) -> Option<String> {
    source
        .and_then(keel_ha::Source::member_name)
        .map(str::to_owned)
}

/// An action in a few words, for the trace.
pub(crate) fn short(action: &Action) -> String {
    match action {
        Action::WriteInitialize { .. } => "write initialize".to_owned(),
        Action::CancelInitialization => "cancel initialize".to_owned(),
        Action::WriteConfig => "write config".to_owned(),
        Action::TakeLock => "take lock".to_owned(),
        Action::ReleaseLock => "release lock".to_owned(),
        Action::ClearFailover { .. } => "clear failover".to_owned(),
        Action::RewriteFailover { candidate, .. } => format!("rewrite failover to {candidate}"),
        Action::WriteSync { state, .. } => format!("sync={}", state.render()),
        Action::DeleteSync { .. } => "delete sync".to_owned(),
        Action::SetSynchronousStandbyNames(s) => format!("ssn='{s}'"),
        Action::UpdateHistory => "history".to_owned(),
        Action::WriteFailsafe => "failsafe".to_owned(),
        Action::Checkpoint => "checkpoint".to_owned(),
        Action::Bootstrap => "BOOTSTRAP".to_owned(),
        Action::BootstrapStandby => "BOOTSTRAP standby".to_owned(),
        Action::Clone { source } => format!("CLONE from {source:?}"),
        Action::Promote => "PROMOTE".to_owned(),
        Action::Start {
            as_primary,
            upstream,
        } => format!(
            "START as {} {upstream:?}",
            if *as_primary { "primary" } else { "replica" }
        ),
        Action::Follow { upstream } => format!("follow {upstream:?}"),
        Action::Demote { mode, upstream } => format!("DEMOTE {mode:?} then follow {upstream:?}"),
        Action::StopImmediate => "STOP immediate".to_owned(),
        Action::Rewind { source } => format!("REWIND from {source}"),
        Action::Reinitialize { source } => format!("REINIT from {source}"),
        Action::TriggerRewindCheck => "rewind check".to_owned(),
    }
}
