//! The seeded fault schedule: fault phases separated by quiet phases long
//! enough for the liveness bound, each fault a start and an end event.
//!
//! Faults: a host crash (daemon and PostgreSQL; back after a while with
//! PostgreSQL stopped, crashed), a PostgreSQL crash, a daemon restart
//! (PostgreSQL runs on), a freeze of the whole host, a DCS partition of one
//! node, a REST/replication partition between two nodes, a full DCS outage, a
//! loop that runs late (renewals at the edge of `ttl`), and a manual
//! switchover written to the `failover` key.

use std::collections::{BTreeMap, BTreeSet};

use keel_config::DynamicConfig;
use keel_model::Failover;

use crate::invariants::Bounds;
use crate::sim::World;
use crate::{Mode, Ms, STEP_MS, SimConfig};

/// How long a fault phase lasts.
const PHASE: Ms = 240_000;
/// Quiet time beyond the liveness bound before the next phase.
const QUIET_EXTRA: Ms = 30_000;

/// One scheduled event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Crash(usize),
    Reboot(usize),
    PgCrash(usize),
    DaemonDown(usize),
    DaemonUp(usize),
    Freeze(usize),
    Thaw(usize),
    CutDcs(usize),
    HealDcs(usize),
    CutPeers(usize, usize),
    HealPeers(usize, usize),
    Outage,
    OutageEnd,
    LateLoop(usize, Ms),
    Switchover(Option<usize>),
    Pause,
    PhaseStart,
    PhaseEnd,
}

/// The schedule of a run.
#[derive(Debug, Default)]
pub(crate) struct Schedule {
    /// (time, sequence) → (fault id, event); id 0 is never skipped.
    events: BTreeMap<(Ms, u64), (u32, Event)>,
    seq: u64,
    /// Faults whose start did not apply (their end is skipped too).
    skipped: BTreeSet<u32>,
    /// Fault phase starts, ascending.
    phase_starts: Vec<Ms>,
}

impl Schedule {
    fn push(&mut self, at: Ms, id: u32, event: Event) {
        self.seq += 1;
        self.events.insert((at, self.seq), (id, event));
    }

    /// A host reset by its watchdog comes back at `at`.
    pub(crate) fn reboot(&mut self, at: Ms, node: usize) {
        self.push(at, 0, Event::Reboot(node));
    }

    /// The first fault phase (the end of the run if none).
    pub(crate) fn first_phase_start(&self) -> Ms {
        self.phase_starts.first().copied().unwrap_or(Ms::MAX)
    }

    /// The next fault phase after `t`.
    fn next_phase_start(&self, t: Ms) -> Ms {
        self.phase_starts
            .iter()
            .copied()
            .find(|s| *s > t)
            .unwrap_or(Ms::MAX)
    }

    pub(crate) fn generate(
        rng: &mut fastrand::Rng,
        cfg: &SimConfig,
        nodes: usize,
        dynamic: &DynamicConfig,
        bounds: &Bounds,
        total: Ms,
    ) -> Self {
        let mut s = Self::default();
        if !cfg.faults {
            return s;
        }
        let quiet = bounds.follow_ms + QUIET_EXTRA;
        let mut start = quiet;
        let mut id = 0;
        while start + PHASE <= total {
            let end = start + PHASE;
            if cfg.mode == Mode::Pause && s.phase_starts.is_empty() {
                s.push(start - 15_000, 0, Event::Pause);
            }
            s.phase_starts.push(start);
            s.push(start, 0, Event::PhaseStart);
            let mut t = start + rng.u64(2_000..10_000);
            while t + 1_000 < end {
                id += 1;
                s.fault(rng, cfg.mode, nodes, dynamic, id, t, end);
                t += rng.u64(4_000..25_000);
            }
            s.push(end, 0, Event::PhaseEnd);
            start = end + quiet;
        }
        s
    }

    /// One fault starting at `t`, over by `end`.
    #[allow(clippy::too_many_arguments)]
    fn fault(
        &mut self,
        rng: &mut fastrand::Rng,
        mode: Mode,
        nodes: usize,
        dynamic: &DynamicConfig,
        id: u32,
        t: Ms,
        end: Ms,
    ) {
        let paused = mode == Mode::Pause;
        let outage_weight = if mode == Mode::Failsafe { 5 } else { 1 };
        let weights = [
            if paused { 0 } else { 3 }, // host crash
            if paused { 0 } else { 2 }, // PostgreSQL crash
            2,                          // daemon restart
            2,                          // freeze
            3,                          // DCS partition
            2,                          // peer partition
            outage_weight,              // DCS outage
            2,                          // late loop
            if paused { 2 } else { 1 }, // switchover
        ];
        let total: u32 = weights.iter().sum();
        let mut pick = rng.u32(0..total);
        let kind = weights
            .iter()
            .position(|w| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        let node = rng.usize(0..nodes);
        let until = |rng: &mut fastrand::Rng, max: Ms| (t + rng.u64(1_000..max)).min(end);
        match kind {
            0 => {
                let back = until(rng, 60_000);
                self.push(t, id, Event::Crash(node));
                self.push(back, id, Event::Reboot(node));
            }
            1 => self.push(t, id, Event::PgCrash(node)),
            2 => {
                let back = until(rng, 15_000);
                self.push(t, id, Event::DaemonDown(node));
                self.push(back, id, Event::DaemonUp(node));
            }
            3 => {
                let back = until(rng, 45_000);
                self.push(t, id, Event::Freeze(node));
                self.push(back, id, Event::Thaw(node));
            }
            4 => {
                let back = until(rng, 60_000);
                self.push(t, id, Event::CutDcs(node));
                self.push(back, id, Event::HealDcs(node));
            }
            5 => {
                let other = (node + 1 + rng.usize(0..nodes - 1)) % nodes;
                let (a, b) = (node.min(other), node.max(other));
                let back = until(rng, 60_000);
                self.push(t, id, Event::CutPeers(a, b));
                self.push(back, id, Event::HealPeers(a, b));
            }
            6 => {
                let max = if mode == Mode::Failsafe {
                    90_000
                } else {
                    60_000
                };
                let back = until(rng, max);
                self.push(t, id, Event::Outage);
                self.push(back, id, Event::OutageEnd);
            }
            7 => {
                // The next renewal lands within a few seconds of the lease's end.
                let (ttl, loop_wait) = (
                    u64::from(dynamic.ttl) * 1000,
                    u64::from(dynamic.loop_wait) * 1000,
                );
                let by = (ttl - loop_wait + rng.u64(0..9_000)).saturating_sub(6_000);
                if t + by + loop_wait < end {
                    self.push(t, id, Event::LateLoop(node, by.max(STEP_MS)));
                }
            }
            _ => {
                let candidate = (paused || rng.bool()).then_some(node);
                self.push(t, id, Event::Switchover(candidate));
            }
        }
    }

    /// The events due at `now`, in order.
    fn due(&mut self, now: Ms) -> Vec<(u32, Event)> {
        let mut out = Vec::new();
        while let Some(entry) = self.events.first_entry() {
            if entry.key().0 > now {
                break;
            }
            out.push(entry.remove());
        }
        out
    }
}

impl World {
    /// Apply the events that are due.
    pub(crate) fn apply_schedule(&mut self) {
        for (id, event) in self.schedule.due(self.now) {
            if id != 0 && self.schedule.skipped.contains(&id) {
                continue;
            }
            if !self.apply(event) && id != 0 {
                self.schedule.skipped.insert(id);
            }
        }
    }

    /// Apply one event; `false` when a fault's start does not apply (the node
    /// is already down, ...).
    fn apply(&mut self, event: Event) -> bool {
        let now = self.now;
        let name = |w: &World, i: usize| w.nodes[i].name.clone();
        let text = match event {
            Event::Crash(i) => {
                if !self.nodes[i].up {
                    return false;
                }
                self.crash_host(i, "FAULT host crash");
                None
            }
            Event::Reboot(i) => {
                self.host_up(i);
                self.checker.disturbed(now);
                None
            }
            Event::PgCrash(i) => {
                let node = &mut self.nodes[i];
                if !node.up || !(node.pg.running() || node.pg.proc == crate::pg::Proc::Starting) {
                    return false;
                }
                node.pg.crash();
                self.pending[i].clear();
                Some(format!("FAULT PostgreSQL on {} crashed", name(self, i)))
            }
            Event::DaemonDown(i) => {
                if !self.nodes[i].up || !self.nodes[i].daemon {
                    return false;
                }
                self.abort_long(i);
                let node = &mut self.nodes[i];
                node.daemon = false;
                node.inflight = None;
                Some(format!("FAULT daemon on {} died", name(self, i)))
            }
            Event::DaemonUp(i) => {
                if self.nodes[i].up && !self.nodes[i].daemon {
                    let first = now + self.rng.u64(0..1_000);
                    self.daemon_up(i, first);
                }
                None
            }
            Event::Freeze(i) => {
                let node = &mut self.nodes[i];
                if !node.up {
                    return false;
                }
                node.frozen += 1;
                if node.frozen == 1 {
                    node.frozen_since = now;
                }
                Some(format!("FAULT {} frozen", name(self, i)))
            }
            Event::Thaw(i) => {
                let node = &mut self.nodes[i];
                node.frozen = node.frozen.saturating_sub(1);
                if node.frozen == 0 {
                    let frozen_for = now - node.frozen_since;
                    self.thaw_long(i, frozen_for);
                }
                Some(format!("{} thawed", name(self, i)))
            }
            Event::CutDcs(i) => {
                self.nodes[i].dcs_cut += 1;
                Some(format!("FAULT {} cut off from the DCS", name(self, i)))
            }
            Event::HealDcs(i) => {
                self.nodes[i].dcs_cut = self.nodes[i].dcs_cut.saturating_sub(1);
                Some(format!("{} reaches the DCS again", name(self, i)))
            }
            Event::CutPeers(a, b) => {
                *self.peer_cuts.entry((a, b)).or_default() += 1;
                Some(format!(
                    "FAULT {} and {} cut off from each other",
                    name(self, a),
                    name(self, b)
                ))
            }
            Event::HealPeers(a, b) => {
                if let Some(c) = self.peer_cuts.get_mut(&(a, b)) {
                    *c = c.saturating_sub(1);
                }
                Some(format!(
                    "{} and {} reach each other again",
                    name(self, a),
                    name(self, b)
                ))
            }
            Event::Outage => {
                self.outage += 1;
                Some("FAULT DCS outage".to_owned())
            }
            Event::OutageEnd => {
                self.outage = self.outage.saturating_sub(1);
                Some("DCS outage over".to_owned())
            }
            Event::LateLoop(i, by) => {
                if !self.nodes[i].daemon_active() {
                    return false;
                }
                let node = &mut self.nodes[i];
                node.stalled_until = node.stalled_until.max(now + by);
                Some(format!(
                    "FAULT the loop of {} stalls for {:.1}s",
                    name(self, i),
                    by as f64 / 1000.0
                ))
            }
            Event::Switchover(candidate) => return self.request_switchover(candidate),
            Event::Pause => {
                self.pause_cluster();
                Some("ADMIN paused the cluster".to_owned())
            }
            Event::PhaseStart => {
                self.checker.phase_start();
                Some("-- fault phase starts".to_owned())
            }
            Event::PhaseEnd => {
                let next = self.schedule.next_phase_start(now);
                self.checker.phase_end(now, next);
                Some("-- fault phase over".to_owned())
            }
        };
        if let Some(text) = text {
            if text.starts_with("FAULT") {
                self.report.faults += 1;
            }
            self.trace.push(now, "fault", text);
        }
        true
    }

    /// Write a switchover request to the `failover` key (as patronictl does)
    /// and wake the leader (as the REST API does).
    fn request_switchover(&mut self, candidate: Option<usize>) -> bool {
        if self.outage > 0 {
            return false;
        }
        let Some(leader) = self.dcs.value("leader").map(str::to_owned) else {
            return false;
        };
        let candidate = candidate
            .map(|c| self.nodes[c].name.clone())
            .filter(|c| *c != leader);
        if self.cfg.mode == Mode::Pause && candidate.is_none() {
            return false;
        }
        let request = Failover {
            leader: Some(leader.clone()),
            candidate: candidate.clone(),
            ..Failover::default()
        };
        self.dcs.put("failover", request.render(), None);
        self.report.switchovers += 1;
        self.report.faults += 1;
        self.trace.push(
            self.now,
            "admin",
            format!("switchover requested: {leader} -> {candidate:?}"),
        );
        if let Some(l) = self.index(&leader) {
            let node = &mut self.nodes[l];
            node.next_cycle = node.next_cycle.min(self.now + STEP_MS);
        }
        true
    }

    /// `patronictl pause`: set `pause: true` in the DCS `config`.
    fn pause_cluster(&mut self) {
        let mut config = match self.dcs.value("config") {
            Some(raw) => DynamicConfig::from_json_lenient(raw).0,
            None => self.dynamic.clone(),
        };
        config.pause = true;
        self.dynamic.pause = true;
        self.dcs.put("config", config.to_json(), None);
    }
}
