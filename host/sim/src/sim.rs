//! The world: nodes, the DCS, the network, clients, and the step loop.

use std::collections::{BTreeMap, VecDeque};

use keel_config::{DynamicConfig, SynchronousMode};
use keel_ha::Memory;

use crate::dcs::Dcs;
use crate::faults::Schedule;
use crate::invariants::{Bounds, Checker};
use crate::node::Node;
use crate::pg::SyncRule;
use crate::trace::Trace;
use crate::{Mode, Ms, Report, STEP_MS, SimConfig, Violation};

/// An invariant or contract that did not hold (the text says which).
#[derive(Debug)]
pub(crate) struct Failure(pub(crate) String);

/// The `ttl`, `loop_wait` and `retry_timeout` a seed may draw (Patroni's
/// default first, then short and edge-of-the-rule settings).
const TIMINGS: [(u32, u32, u32); 3] = [(30, 10, 10), (20, 5, 5), (25, 3, 10)];

/// Everything that exists in a run.
pub(crate) struct World {
    pub(crate) cfg: SimConfig,
    pub(crate) rng: fastrand::Rng,
    pub(crate) now: Ms,
    pub(crate) step: u64,
    pub(crate) dcs: Dcs,
    /// The DCS is unreachable for everyone; nested outages count.
    pub(crate) outage: u32,
    pub(crate) nodes: Vec<Node>,
    /// REST and replication cut between two nodes (lower index first).
    pub(crate) peer_cuts: BTreeMap<(usize, usize), u32>,
    /// The dynamic configuration every node bootstraps with.
    pub(crate) dynamic: DynamicConfig,
    pub(crate) next_uid: u32,
    /// The highest timeline whose history file is in the WAL archive.
    pub(crate) archived_timeline: u32,
    pub(crate) trace: Trace,
    pub(crate) schedule: Schedule,
    /// Per node, commits waiting for synchronous standbys: (segment, LSN).
    pub(crate) pending: Vec<VecDeque<(u32, u64)>>,
    pub(crate) checker: Checker,
    pub(crate) report: Report,
}

impl World {
    pub(crate) fn new(mut cfg: SimConfig) -> Self {
        cfg.nodes = cfg.nodes.clamp(2, 9);
        let mut rng = fastrand::Rng::with_seed(cfg.seed);
        let (ttl, loop_wait, retry_timeout) = TIMINGS[rng.usize(0..TIMINGS.len())];
        let mut dynamic = DynamicConfig::default();
        dynamic.ttl = ttl;
        dynamic.loop_wait = loop_wait;
        dynamic.retry_timeout = retry_timeout;
        dynamic.check_timeline = rng.bool();
        match cfg.mode {
            Mode::Sync => dynamic.synchronous_mode = SynchronousMode::On,
            Mode::SyncStrict => {
                dynamic.synchronous_mode = SynchronousMode::On;
                dynamic.synchronous_mode_strict = true;
            }
            Mode::Quorum | Mode::QuorumStrict => {
                dynamic.synchronous_mode = SynchronousMode::Quorum;
                dynamic.synchronous_mode_strict = cfg.mode == Mode::QuorumStrict;
                dynamic.synchronous_node_count = rng.u32(1..=2);
            }
            Mode::Failsafe => dynamic.failsafe_mode = true,
            Mode::Async | Mode::Pause => {}
        }
        let nodes: Vec<Node> = (0..cfg.nodes)
            .map(|i| Node::new(format!("n{i}"), dynamic.clone(), rng.u64(0..3_000)))
            .collect();
        let bounds = Bounds::new(&dynamic);
        let total = cfg.steps * STEP_MS;
        let schedule = Schedule::generate(&mut rng, &cfg, nodes.len(), &dynamic, &bounds, total);
        let checker = Checker::new(bounds, schedule.first_phase_start());
        Self {
            pending: vec![VecDeque::new(); nodes.len()],
            trace: Trace::new(cfg.trace_all),
            report: Report {
                bounds,
                ..Report::default()
            },
            cfg,
            rng,
            now: 0,
            step: 0,
            dcs: Dcs::default(),
            outage: 0,
            nodes,
            peer_cuts: BTreeMap::new(),
            dynamic,
            next_uid: 0,
            archived_timeline: 0,
            schedule,
            checker,
        }
    }

    pub(crate) fn run(&mut self) -> Result<Report, Violation> {
        let timing = format!(
            "ttl={} loop_wait={} retry_timeout={} check_timeline={}",
            self.dynamic.ttl,
            self.dynamic.loop_wait,
            self.dynamic.retry_timeout,
            self.dynamic.check_timeline
        );
        self.trace.push(0, "sim", timing);
        for _ in 0..self.cfg.steps {
            self.step += 1;
            self.now += STEP_MS;
            if let Err(Failure(what)) = self.tick() {
                self.trace
                    .push(self.now, "check", format!("VIOLATION: {what}"));
                return Err(Violation {
                    config: self.cfg.clone(),
                    step: self.step,
                    at_ms: self.now,
                    what,
                    trace: self.trace.lines(),
                });
            }
        }
        let mut report = self.report.clone();
        report.steps = self.step;
        report.trace = if self.cfg.trace_all {
            self.trace.lines()
        } else {
            Vec::new()
        };
        Ok(report)
    }

    /// One step.
    fn tick(&mut self) -> Result<(), Failure> {
        self.apply_schedule();
        for key in self.dcs.expire(self.now) {
            self.trace
                .push(self.now, "dcs", format!("lease expired: {key} deleted"));
        }
        self.watchdogs();
        self.advance_long_actions();
        self.run_daemons()?;
        self.wake_watchers();
        self.replicate()?;
        self.clients();
        self.check()
    }

    /// A fresh segment id.
    pub(crate) fn uid(&mut self) -> u32 {
        self.next_uid += 1;
        self.next_uid
    }

    /// The node called `name`.
    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// Node `i` can reach the DCS.
    pub(crate) fn dcs_ok(&self, i: usize) -> bool {
        self.outage == 0 && self.nodes[i].dcs_cut == 0
    }

    /// Nothing cuts `a` off from `b`.
    pub(crate) fn linked(&self, a: usize, b: usize) -> bool {
        self.peer_cuts
            .get(&(a.min(b), a.max(b)))
            .is_none_or(|c| *c == 0)
    }

    /// `a` gets an answer from `b`'s REST API.
    pub(crate) fn rest_ok(&self, a: usize, b: usize) -> bool {
        a != b && self.linked(a, b) && self.nodes[b].reachable_host() && self.nodes[b].daemon
    }

    /// The `ttl` in force for node `i`, in ms.
    pub(crate) fn ttl_ms(&self, i: usize) -> Ms {
        u64::from(self.nodes[i].config.1.ttl) * 1000
    }

    /// The node replica `j` streams from right now, if it does.
    pub(crate) fn streams_from(&self, j: usize) -> Option<usize> {
        let r = &self.nodes[j];
        if !r.reachable_host() || !r.pg.is_replica() {
            return None;
        }
        let u = self.index(r.pg.upstream.as_deref()?)?;
        let up = &self.nodes[u];
        if u == j || !up.reachable_host() || !up.pg.running() || !self.linked(j, u) {
            return None;
        }
        let (mine, theirs) = (r.pg.data.as_ref()?, up.pg.data.as_ref()?);
        (mine.sysid == theirs.sysid && mine.wal.can_stream_from(&theirs.wal)).then_some(u)
    }

    /// The replicas streaming from `i`, in node order.
    pub(crate) fn replicas_of(&self, i: usize) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|j| self.streams_from(*j) == Some(i))
            .collect()
    }

    /// The host crashes: daemon and PostgreSQL die; it comes back later.
    pub(crate) fn crash_host(&mut self, i: usize, why: &str) {
        self.trace.push(self.now, &self.nodes[i].name.clone(), why);
        let node = &mut self.nodes[i];
        node.up = false;
        node.daemon = false;
        node.inflight = None;
        node.watchdog = Default::default();
        node.pg.crash();
        if let Some(run) = node.running.take()
            && run.action.destroys_data_when_killed()
        {
            node.pg.data = None;
        }
        self.pending[i].clear();
    }

    /// The host is back: PostgreSQL stopped (crashed), a fresh daemon.
    pub(crate) fn host_up(&mut self, i: usize) {
        let start = self.now + self.rng.u64(0..2_000);
        let node = &mut self.nodes[i];
        if node.up {
            return;
        }
        node.up = true;
        self.daemon_up(i, start);
    }

    /// A fresh daemon starts (memory lost, a new lease).
    pub(crate) fn daemon_up(&mut self, i: usize, first_cycle: Ms) {
        let node = &mut self.nodes[i];
        node.daemon = true;
        node.memory = Memory::default();
        node.lease = None;
        node.inflight = None;
        node.next_cycle = first_cycle;
        node.stalled_until = 0;
        node.fresh = true;
        node.last_message.clear();
        let name = node.name.clone();
        self.trace.push(self.now, &name, "daemon started");
    }

    /// The DCS watch: a leader key change wakes every idle daemon that can see it.
    fn wake_watchers(&mut self) {
        if !self.dcs.take_leader_changed() {
            return;
        }
        for i in 0..self.nodes.len() {
            let ok = self.dcs_ok(i);
            let node = &mut self.nodes[i];
            if ok && node.inflight.is_none() && node.daemon_active() {
                node.next_cycle = node.next_cycle.min(self.now + STEP_MS);
            }
        }
    }

    /// Hardware watchdogs reset hosts whose daemon stopped keeping them alive.
    fn watchdogs(&mut self) {
        if !self.cfg.watchdog {
            return;
        }
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            // Patroni's default safety margin: the timeout is ttl - 5 s.
            let timeout = self.ttl_ms(i).saturating_sub(5_000);
            let w = node.watchdog;
            if node.up && w.active && self.now.saturating_sub(w.last_keepalive) >= timeout {
                self.crash_host(i, "watchdog expired: host reset");
                self.report.watchdog_resets += 1;
                let back = self.now + self.rng.u64(10_000..30_000);
                self.schedule.reboot(back, i);
            }
        }
    }

    /// Streaming replication: every streaming replica catches up (mostly at once,
    /// sometimes a step late).
    fn replicate(&mut self) -> Result<(), Failure> {
        for j in 0..self.nodes.len() {
            let Some(u) = self.streams_from(j) else {
                continue;
            };
            let (replica, upstream) = pair_mut(&mut self.nodes, j, u);
            let (Some(mine), Some(theirs)) = (replica.pg.data.as_mut(), upstream.pg.data.as_ref())
            else {
                continue;
            };
            if mine.wal.common_prefix(&theirs.wal) < mine.wal.end() {
                return Err(Failure(format!(
                    "{} streams from {} although its WAL differs from {}'s before {} (the \
                     timelines look compatible to PostgreSQL: same timeline number on diverged \
                     histories)",
                    replica.name,
                    upstream.name,
                    upstream.name,
                    mine.wal.end()
                )));
            }
            if self.rng.u32(0..10) < 8 {
                mine.wal.receive(&theirs.wal, u64::MAX);
            }
        }
        Ok(())
    }

    /// Clients write to every node that accepts writes; commits are acknowledged
    /// at once (no synchronous standby configured) or once enough synchronous
    /// standbys have flushed them.
    fn clients(&mut self) {
        for i in 0..self.nodes.len() {
            if !self.nodes[i].accepts_writes() {
                if !(self.nodes[i].up && self.nodes[i].pg.is_primary()) {
                    // The connection is gone: the client sees an error.
                    self.pending[i].clear();
                }
                continue;
            }
            let size = self.rng.u64(64..16_384);
            let Some(wal) = self.nodes[i].pg.wal_mut() else {
                continue;
            };
            wal.append(size);
            let commit = (wal.last_uid(), wal.end());
            self.pending[i].push_back(commit);
            let upto = self.acknowledged_upto(i);
            let uid = commit.0;
            while let Some(&(u, lsn)) = self.pending[i].front() {
                if u != uid {
                    // A commit from an earlier incarnation: its connection died.
                    self.pending[i].pop_front();
                    continue;
                }
                if lsn > upto {
                    break;
                }
                self.pending[i].pop_front();
                self.report.acked += 1;
                self.checker.acknowledged(u, lsn);
            }
        }
    }

    /// The highest LSN a commit on primary `i` may have to be acknowledged.
    fn acknowledged_upto(&self, i: usize) -> u64 {
        let rule = SyncRule::parse(&self.nodes[i].pg.ssn);
        let need = rule.needed();
        if need == 0 || self.cfg.ack_without_standbys {
            return u64::MAX;
        }
        let replicas = self.replicas_of(i);
        let names: Vec<&str> = replicas
            .iter()
            .map(|j| self.nodes[*j].name.as_str())
            .collect();
        let mut flushed: Vec<u64> = rule
            .states(&names)
            .iter()
            .zip(&replicas)
            .filter(|(state, _)| matches!(**state, "sync" | "quorum"))
            .filter_map(|(_, j)| self.nodes[*j].pg.wal().map(|w| w.end()))
            .collect();
        if flushed.len() < need {
            return 0;
        }
        flushed.sort_unstable_by(|a, b| b.cmp(a));
        flushed[need - 1]
    }
}

/// `(&mut nodes[a], &nodes[b])` for `a != b`.
pub(crate) fn pair_mut(nodes: &mut [Node], a: usize, b: usize) -> (&mut Node, &Node) {
    if a < b {
        let (left, right) = nodes.split_at_mut(b);
        (&mut left[a], &right[0])
    } else {
        let (left, right) = nodes.split_at_mut(a);
        (&mut right[0], &left[b])
    }
}
