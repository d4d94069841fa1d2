//! A deterministic simulation of Keel's HA: many nodes running the real
//! [`keel_ha::decide`] against a simulated DCS with leases and simulated
//! PostgreSQL (timelines, LSNs, synchronous replication), under seeded fault
//! schedules, with invariants checked after every step.
//!
//! Why: the HA rules are a pure function, so whole clusters can be run in
//! virtual time, thousands of failovers a second, and every run is replayable
//! from its seed. What it must never do: read a wall clock, iterate a hash map,
//! or do I/O — a seed must give the same run on every machine.
//!
//! The pieces: `dcs` (keys, versions, compare-and-set, one lease per node),
//! `pg` and `wal` (PostgreSQL and the ground truth of its WAL), `node` (one
//! host and its daemon), `cycle` (the HA loop: `decide`, answer its questions,
//! publish, sleep), `observe` (what a node sees), `peers` (REST calls between
//! nodes), `execute` (carry out a plan as keeld does), `long` (long actions in
//! the background), `faults` (the schedule), `invariants`.
//!
//! Time advances in steps of [`STEP_MS`]. Each step applies the fault schedule,
//! expires leases, fires watchdogs, advances long actions, runs the HA cycles
//! that are due, streams WAL, lets clients write to every node that accepts
//! writes, and checks the invariants:
//! 1. never two nodes accepting writes at the same instant on diverged histories;
//! 2. in strict synchronous mode and in quorum commit (strict or not) no
//!    acknowledged commit is missing from the history of the current leader;
//! 3. once a fault phase ends, within [`Bounds`] there is one leader key holder
//!    running as primary and every other node streams from it, and this stays so
//!    until the next fault phase.
//!
//! # What is modelled, and what is not
//!
//! Modelled: one lease per daemon (member and leader keys bound to it), the
//! leader and `initialize` races, compare-and-set on `sync` and `failover`,
//! the DCS watch on the leader key; reads and lock operations that retry for
//! `retry_timeout` before failing, peer calls that time out after 2 s; the
//! real renderers and `Cluster::from_entries` for every read; timelines,
//! history files (and a WAL archive of them), LSNs, streaming that catches up
//! within a step or two, Patroni's pg_rewind check, `synchronous_standby_names`
//! as PostgreSQL applies it (`*`, `name`, `N (a,b)`, `ANY n (a,b)`) and quorum
//! commit with `synchronous_node_count` 1 or 2; shutdown checkpoints
//! reaching connected replicas; a hardware watchdog; `POST /failsafe`.
//!
//! Not modelled: `synchronous_node_count` > 1 in `on` mode, tags
//! (`nofailover`, priorities, `replicatefrom`, `nosync`, `nostream`), standby
//! clusters, MPP, replication slots, scheduled switchovers and restarts,
//! `pre_promote` failures, dynamic configuration changes other than `pause`,
//! clock skew, a DCS that loses or reorders writes (the store is linearizable
//! and always up; only reaching it fails), one-way partitions, latency of
//! successful calls. Writes inside a plan fail at once when the store is out
//! of reach instead of retrying; the archive is always reachable.
//!
//! ```
//! use keel_sim::{Mode, SimConfig, Simulation};
//! let report = Simulation::new(SimConfig::new(7, Mode::Sync).steps(3_000)).run();
//! assert!(report.is_ok(), "{}", report.unwrap_err());
//! ```
#![deny(missing_docs)]

mod cycle;
mod dcs;
mod execute;
mod faults;
mod invariants;
mod long;
mod node;
mod observe;
mod peers;
mod pg;
mod sim;
mod trace;
mod wal;

use std::fmt;

pub use invariants::Bounds;

/// Virtual time in milliseconds since the start of the run.
pub(crate) type Ms = u64;

/// The length of one step of virtual time.
pub const STEP_MS: u64 = 100;

/// The cluster configuration a run exercises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Asynchronous replication.
    Async,
    /// `synchronous_mode: on`.
    Sync,
    /// `synchronous_mode: on` and `synchronous_mode_strict: on`.
    SyncStrict,
    /// `synchronous_mode: quorum` (`ANY n (…)`), `synchronous_node_count` 1 or 2.
    Quorum,
    /// `synchronous_mode: quorum` and `synchronous_mode_strict: on`.
    QuorumStrict,
    /// Asynchronous, `failsafe_mode: on`, with longer DCS outages.
    Failsafe,
    /// Paused (maintenance mode) after bootstrap: no automatic failover;
    /// no faults that need one.
    Pause,
}

impl Mode {
    /// Every mode, in the order the suite runs them.
    pub const ALL: [Mode; 7] = [
        Mode::Async,
        Mode::Sync,
        Mode::SyncStrict,
        Mode::Quorum,
        Mode::QuorumStrict,
        Mode::Failsafe,
        Mode::Pause,
    ];

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Async => "async",
            Mode::Sync => "sync",
            Mode::SyncStrict => "strict",
            Mode::Quorum => "quorum",
            Mode::QuorumStrict => "quorum-strict",
            Mode::Failsafe => "failsafe",
            Mode::Pause => "pause",
        }
    }

    /// The mode called `name`.
    pub fn from_name(name: &str) -> Option<Mode> {
        Self::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// The seed: the same seed and settings give the same run.
    pub seed: u64,
    /// Cluster size (2 to 9).
    pub nodes: usize,
    /// Steps of [`STEP_MS`] to run.
    pub steps: u64,
    /// The configuration exercised.
    pub mode: Mode,
    /// Nodes have a hardware watchdog (Patroni's default `automatic` mode with
    /// a device). Without it a frozen primary can outlive its lease, as in
    /// Patroni.
    pub watchdog: bool,
    /// A WAL archive holds every timeline history file, so a promotion never
    /// picks a timeline number another promotion already used (PostgreSQL
    /// looks there through `restore_command`). Without it two promotions from
    /// the same timeline can pick the same number, and neither PostgreSQL nor
    /// pg_rewind can tell the histories apart: the simulation reports the
    /// replica that then streams a foreign history.
    pub archive: bool,
    /// A broken PostgreSQL that acknowledges commits without waiting for its
    /// synchronous standbys: only to show that the strict-mode check sees the
    /// commits a failover then loses.
    pub ack_without_standbys: bool,
    /// Inject faults (otherwise only the bootstrap and steady state run).
    pub faults: bool,
    /// Keep every event, not only the last ones (for replaying one seed).
    pub trace_all: bool,
}

impl SimConfig {
    /// Three nodes, 10 000 steps, faults and a watchdog.
    pub fn new(seed: u64, mode: Mode) -> Self {
        Self {
            seed,
            nodes: 3,
            steps: 10_000,
            mode,
            watchdog: true,
            archive: true,
            ack_without_standbys: false,
            faults: true,
            trace_all: false,
        }
    }

    /// With this many steps.
    pub fn steps(mut self, steps: u64) -> Self {
        self.steps = steps;
        self
    }

    /// With this many nodes.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }
}

/// A run that held every invariant.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Steps run.
    pub steps: u64,
    /// HA cycles run (all nodes).
    pub cycles: u64,
    /// Promotions completed.
    pub promotions: u64,
    /// Faults injected.
    pub faults: u64,
    /// Switchover requests written.
    pub switchovers: u64,
    /// Commits acknowledged to clients.
    pub acked: u64,
    /// Watchdog resets.
    pub watchdog_resets: u64,
    /// Liveness checks passed (one per fault phase).
    pub converged: u64,
    /// The longest time from the end of a fault phase to one primary holding
    /// the leader key.
    pub max_leader_ms: u64,
    /// The longest time from the end of a fault phase to a converged cluster.
    pub max_convergence_ms: u64,
    /// The bounds the liveness invariant used.
    pub bounds: Bounds,
    /// Every event, when [`SimConfig::trace_all`] was set.
    pub trace: Vec<String>,
}

/// An invariant that did not hold: where, and how to replay it.
#[derive(Debug, Clone)]
pub struct Violation {
    /// The run's settings (the seed among them).
    pub config: SimConfig,
    /// The step at which it was found.
    pub step: u64,
    /// Virtual time (ms).
    pub at_ms: u64,
    /// What did not hold.
    pub what: String,
    /// The last events before it (every event with [`SimConfig::trace_all`]).
    pub trace: Vec<String>,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.config;
        writeln!(
            f,
            "invariant violated at step {} (t={:.1}s), seed {}, mode {}, {} nodes{}:",
            self.step,
            self.at_ms as f64 / 1000.0,
            c.seed,
            c.mode.name(),
            c.nodes,
            flags(c),
        )?;
        writeln!(f, "  {}", self.what)?;
        writeln!(
            f,
            "replay: cargo run -p keel-sim --release -- --seed {} --mode {} --nodes {} --steps {}{}",
            c.seed,
            c.mode.name(),
            c.nodes,
            c.steps,
            options(c),
        )?;
        writeln!(f, "events before it:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

fn flags(c: &SimConfig) -> String {
    let mut out = String::new();
    if !c.watchdog {
        out.push_str(", no watchdog");
    }
    if !c.archive {
        out.push_str(", no WAL archive");
    }
    out
}

fn options(c: &SimConfig) -> String {
    let mut out = String::new();
    if !c.watchdog {
        out.push_str(" --no-watchdog");
    }
    if !c.archive {
        out.push_str(" --no-archive");
    }
    out
}

/// One run.
pub struct Simulation {
    world: sim::World,
}

impl Simulation {
    /// Set up a run (nothing happens until [`Simulation::run`]).
    pub fn new(config: SimConfig) -> Self {
        Self {
            world: sim::World::new(config),
        }
    }

    /// Run every step; the first invariant that fails ends the run.
    pub fn run(mut self) -> Result<Report, Violation> {
        self.world.run()
    }
}
