//! Long actions (bootstrap, clone, promote, start, pg_rewind, reinitialize,
//! demote): they take virtual time while HA cycles go on with
//! `Observation.running` set, as keel-ha's contract says.

use keel_ha::{DemoteMode, PgRole};

use crate::Ms;
use crate::execute::StepError;
use crate::node::{Long, Running};
use crate::pg::{Data, END_OF_RECOVERY, Proc};
use crate::sim::{Failure, World};
use crate::wal::Wal;

/// How long each long action takes (ms, a range drawn from the seed). The
/// liveness bounds are built from the upper ends.
pub(crate) mod durations {
    use std::ops::Range;

    use crate::Ms;

    pub(crate) const BOOTSTRAP: Range<Ms> = 2_000..5_000;
    pub(crate) const CLONE: Range<Ms> = 3_000..8_000;
    pub(crate) const PROMOTE: Range<Ms> = 300..1_500;
    pub(crate) const START: Range<Ms> = 800..3_000;
    pub(crate) const REWIND: Range<Ms> = 1_000..5_000;
    /// Checkpoint and fast stop.
    pub(crate) const STOP_GRACEFUL: Range<Ms> = 300..1_500;
    pub(crate) const STOP_IMMEDIATE: Range<Ms> = 50..300;
    pub(crate) const STOP_FAST: Range<Ms> = 200..1_000;
    /// Restart as a replica after a demotion.
    pub(crate) const RESTART: Range<Ms> = 500..2_000;
}

/// In a hundred: how often a start, clone or pg_rewind fails on its own
/// (a fault like the others: only during fault phases).
const FAILURE_PERCENT: u32 = 3;

impl World {
    fn draw(&mut self, range: std::ops::Range<Ms>) -> Ms {
        self.now + self.rng.u64(range)
    }

    fn fails(&mut self) -> bool {
        self.rng.u32(0..100) < FAILURE_PERCENT && !self.checker.quiet()
    }

    /// Start a long action for node `i` (a demotion aborts a running one).
    pub(crate) fn start_long(&mut self, i: usize, action: Long) -> Result<(), StepError> {
        use durations::*;
        if let Some(run) = &self.nodes[i].running {
            if !matches!(action, Long::Demote { .. }) {
                return Err(StepError::Broken(Failure(format!(
                    "{}: the plan starts {:?} while {:?} runs",
                    self.nodes[i].name, action, run.action
                ))));
            }
            self.abort_long(i);
        }
        let pg = &self.nodes[i].pg;
        let at = match &action {
            Long::Bootstrap | Long::Clone { .. } if pg.data.is_some() => {
                return Err(StepError::Failed("the data directory is not empty".into()));
            }
            Long::Bootstrap => self.draw(BOOTSTRAP),
            Long::Clone { .. } => self.draw(CLONE),
            Long::Promote if !pg.is_replica() => {
                return Err(StepError::Failed("not a running replica".into()));
            }
            Long::Promote => self.draw(PROMOTE),
            Long::Start { .. } if pg.data.is_none() || !matches!(pg.proc, Proc::Stopped { .. }) => {
                return Err(StepError::Failed("nothing to start".into()));
            }
            Long::Start { as_primary } => {
                let pg = &mut self.nodes[i].pg;
                pg.proc = Proc::Starting;
                pg.role = if *as_primary {
                    PgRole::Primary
                } else {
                    PgRole::Replica
                };
                self.draw(START)
            }
            Long::Rewind { .. } if pg.data.is_none() => {
                return Err(StepError::Failed("no data directory".into()));
            }
            Long::Rewind { .. } => {
                self.nodes[i].pg.stop(false);
                self.draw(REWIND)
            }
            Long::Reinitialize { .. } => {
                let pg = &mut self.nodes[i].pg;
                pg.stop(false);
                pg.data = None;
                pg.rewind_failed = false;
                self.draw(CLONE)
            }
            Long::Demote { mode, .. } => {
                let memory = &mut self.nodes[i].memory;
                memory.rewind_check = true;
                memory.promoted_at = None;
                self.draw(match mode {
                    DemoteMode::Graceful => STOP_GRACEFUL,
                    DemoteMode::Immediate | DemoteMode::ImmediateNoLock => STOP_IMMEDIATE,
                    DemoteMode::Offline | DemoteMode::ToStandbyLeader => STOP_FAST,
                })
            }
        };
        self.nodes[i].running = Some(Running { action, at });
        Ok(())
    }

    /// Stop the running action (a demotion comes, or the daemon died).
    pub(crate) fn abort_long(&mut self, i: usize) {
        let Some(run) = self.nodes[i].running.take() else {
            return;
        };
        let pg = &mut self.nodes[i].pg;
        match run.action {
            a if a.destroys_data_when_killed() => pg.data = None,
            // pg_ctl start was issued: the postmaster comes up on its own.
            Long::Start { .. } if pg.proc == Proc::Starting => pg.proc = Proc::Running,
            // pg_ctl stop was issued: PostgreSQL stops, nobody restarts it.
            Long::Demote {
                mode,
                stopped: false,
                ..
            } => pg.stop(!matches!(
                mode,
                DemoteMode::Immediate | DemoteMode::ImmediateNoLock
            )),
            _ => {}
        }
    }

    /// Move the long actions whose time has come.
    pub(crate) fn advance_long_actions(&mut self) {
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if !node.up || node.frozen > 0 {
                continue;
            }
            let Some(run) = node.running.clone().filter(|r| r.at <= self.now) else {
                continue;
            };
            self.nodes[i].running = None;
            self.finish(i, run.action);
        }
    }

    fn finish(&mut self, i: usize, action: Long) {
        let name = self.nodes[i].name.clone();
        match action {
            Long::Bootstrap => {
                let uid = self.uid();
                let sysid = format!("7{:018}", self.rng.u64(0..1_000_000_000_000_000_000));
                let now = self.clock();
                let node = &mut self.nodes[i];
                node.pg.data = Some(Data {
                    sysid,
                    wal: Wal::initdb(uid, 0x0300_0000),
                });
                node.pg.proc = Proc::Running;
                node.pg.role = PgRole::Primary;
                node.pg.upstream = None;
                node.memory.bootstrapped = true;
                node.memory.promoted_at = Some(now);
                self.trace
                    .push(self.now, &name, "bootstrap done: running as primary");
            }
            Long::Clone { source } => self.copy_from(i, source.as_deref()),
            Long::Reinitialize { source } => self.copy_from(i, Some(&source)),
            Long::Promote => {
                if !self.nodes[i].pg.is_replica() {
                    self.trace
                        .push(self.now, &name, "promote failed: not a running replica");
                    return;
                }
                let uid = self.uid();
                let now = self.clock();
                let archived = self.archived_timeline;
                let node = &mut self.nodes[i];
                if let Some(wal) = node.pg.wal_mut() {
                    wal.new_writer(uid, Some(archived));
                    wal.append(END_OF_RECOVERY);
                }
                node.pg.role = PgRole::Primary;
                node.pg.upstream = None;
                node.memory.promoted_at = Some(now);
                let tl = node.pg.wal().map_or(0, Wal::timeline);
                if self.cfg.archive {
                    // The new history file is archived at once.
                    self.archived_timeline = self.archived_timeline.max(tl);
                }
                self.report.promotions += 1;
                self.trace
                    .push(self.now, &name, format!("promoted: timeline {tl}"));
            }
            Long::Start { as_primary } => self.finish_start(i, as_primary),
            Long::Rewind { source } => self.finish_rewind(i, &source),
            Long::Demote {
                mode,
                upstream,
                stopped: false,
            } => self.demote_stop(i, mode, upstream),
            Long::Demote {
                mode,
                upstream,
                stopped: true,
            } => {
                let pg = &mut self.nodes[i].pg;
                pg.proc = Proc::Running;
                pg.role = PgRole::Replica;
                pg.upstream = upstream.filter(|_| mode != DemoteMode::Offline);
                self.trace
                    .push(self.now, &name, "demoted: running as a replica");
            }
        }
    }

    fn finish_start(&mut self, i: usize, as_primary: bool) {
        let name = self.nodes[i].name.clone();
        if self.nodes[i].pg.proc != Proc::Starting {
            return;
        }
        self.nodes[i].memory.just_started = true;
        if self.fails() {
            self.nodes[i].pg.proc = Proc::Stopped { crashed: false };
            self.trace
                .push(self.now, &name, "PostgreSQL failed to start");
            return;
        }
        let uid = self.uid();
        let pg = &mut self.nodes[i].pg;
        pg.proc = Proc::Running;
        if as_primary && let Some(wal) = pg.wal_mut() {
            wal.new_writer(uid, None);
        }
        let role = if as_primary { "primary" } else { "replica" };
        self.trace
            .push(self.now, &name, format!("started as {role}"));
    }

    fn finish_rewind(&mut self, i: usize, source: &str) {
        let name = self.nodes[i].name.clone();
        let source_wal = self.index(source).and_then(|j| {
            let s = &self.nodes[j];
            let usable = s.reachable_host() && self.linked(i, j) && s.pg.is_primary();
            s.pg.data
                .as_ref()
                .filter(|_| usable)
                .map(|d| (d.sysid.clone(), d.wal.clone()))
        });
        let failed = self.fails();
        let pg = &mut self.nodes[i].pg;
        match (source_wal, pg.data.as_mut()) {
            (Some((sysid, wal)), Some(data)) if sysid == data.sysid && !failed => {
                data.wal = wal;
                pg.role = PgRole::Replica;
                pg.proc = Proc::Stopped { crashed: false };
                pg.rewind_failed = false;
                self.nodes[i].memory.rewind_check = false;
                self.trace
                    .push(self.now, &name, format!("pg_rewind from {source} done"));
            }
            _ => {
                pg.rewind_failed = true;
                self.trace
                    .push(self.now, &name, format!("pg_rewind from {source} failed"));
            }
        }
    }

    /// A clone (basebackup) from `source` completes, or fails and leaves the
    /// data directory empty.
    fn copy_from(&mut self, i: usize, source: Option<&str>) {
        let name = self.nodes[i].name.clone();
        let copy = source.and_then(|s| self.index(s)).and_then(|j| {
            let s = &self.nodes[j];
            let usable = s.reachable_host() && self.linked(i, j) && s.pg.running();
            s.pg.data.clone().filter(|_| usable)
        });
        let failed = self.fails();
        let node = &mut self.nodes[i];
        match copy {
            Some(data) if !failed => {
                node.pg.data = Some(data);
                node.pg.proc = Proc::Stopped { crashed: false };
                node.pg.role = PgRole::Replica;
                node.pg.upstream = None;
                node.pg.ssn.clear();
                node.pg.rewind_failed = false;
                node.memory.rewind_check = false;
                self.trace
                    .push(self.now, &name, format!("replica created from {source:?}"));
            }
            _ => {
                node.pg.data = None;
                self.trace
                    .push(self.now, &name, format!("clone from {source:?} failed"));
            }
        }
    }

    /// The first half of a demotion: stop (connected replicas receive the
    /// shutdown checkpoint of a fast stop), release the key if the mode says
    /// so, then restart as a replica after a while.
    fn demote_stop(&mut self, i: usize, mode: DemoteMode, upstream: Option<String>) {
        let name = self.nodes[i].name.clone();
        let fast = matches!(mode, DemoteMode::Graceful | DemoteMode::Offline);
        let replicas = self.replicas_of(i);
        self.nodes[i].pg.stop(fast);
        self.nodes[i].pg.ssn.clear();
        self.nodes[i].watchdog.active = false;
        for j in replicas {
            let (replica, me) = crate::sim::pair_mut(&mut self.nodes, j, i);
            if let (Some(mine), Some(theirs)) = (replica.pg.wal_mut(), me.pg.wal()) {
                mine.receive(theirs, u64::MAX);
            }
        }
        let mut what = format!("stopped PostgreSQL ({mode:?} demotion)");
        if mode.releases_lock() && self.dcs_ok(i) && self.dcs.value("leader") == Some(name.as_str())
        {
            self.dcs.delete("leader");
            if let Some(wal) = self.nodes[i].pg.wal() {
                let status = keel_model::Status::with_optime(wal.end()).render();
                self.dcs.put("status", status, None);
            }
            what.push_str(", released the leader key");
        }
        self.nodes[i].memory.has_lock = false;
        self.trace.push(self.now, &name, what);
        let at = self.draw(durations::RESTART);
        self.nodes[i].running = Some(Running {
            action: Long::Demote {
                mode,
                upstream,
                stopped: true,
            },
            at,
        });
    }

    /// A freeze ended: long actions resume where they were.
    pub(crate) fn thaw_long(&mut self, i: usize, frozen_for: Ms) {
        if let Some(run) = self.nodes[i].running.as_mut() {
            run.at += frozen_for;
        }
    }
}
