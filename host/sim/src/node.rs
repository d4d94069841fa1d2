//! One simulated node: the host (up, frozen, cut off), its PostgreSQL, and the
//! daemon's state between and within HA cycles.

use keel_config::DynamicConfig;
use keel_ha::{Answers, DcsUnreachable, DemoteMode, Memory, RunningAction};
use keel_model::Cluster;

use crate::Ms;
use crate::pg::Pg;

/// A long action in the background (Patroni's async executor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Long {
    Bootstrap,
    Clone {
        source: Option<String>,
    },
    Promote,
    Start {
        as_primary: bool,
    },
    Rewind {
        source: String,
    },
    Reinitialize {
        source: String,
    },
    /// `stopped`: the first phase (stop, release) is done; restart is next.
    Demote {
        mode: DemoteMode,
        upstream: Option<String>,
        stopped: bool,
    },
}

impl Long {
    pub(crate) fn kind(&self) -> RunningAction {
        match self {
            Self::Bootstrap => RunningAction::Bootstrap,
            Self::Clone { .. } => RunningAction::Clone,
            Self::Promote => RunningAction::Promote,
            Self::Start { .. } => RunningAction::Start,
            Self::Rewind { .. } => RunningAction::Rewind,
            Self::Reinitialize { .. } => RunningAction::Reinitialize,
            Self::Demote { .. } => RunningAction::Demote,
        }
    }

    /// Killing it midway leaves an unusable data directory (removed).
    pub(crate) fn destroys_data_when_killed(&self) -> bool {
        matches!(
            self,
            Self::Bootstrap | Self::Clone { .. } | Self::Reinitialize { .. }
        )
    }
}

/// A long action and when its next phase happens.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) action: Long,
    pub(crate) at: Ms,
}

/// What a cycle waits for before it can call `decide` again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// Nothing: decide now.
    Ready,
    /// A DCS operation, retried until `deadline` (Patroni's `retry_timeout`).
    Dcs { op: DcsOp, deadline: Ms },
    /// Peer requests that time out (2 s) before the answers are complete.
    Until(Ms),
}

/// The DCS operations a cycle waits on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DcsOp {
    Read,
    Acquire,
    Refresh,
    Initialize,
}

/// A cycle in progress (it may span ticks while it waits).
#[derive(Debug, Clone)]
pub(crate) struct InFlight {
    pub(crate) started: Ms,
    pub(crate) cluster: Option<Result<Cluster, DcsUnreachable>>,
    pub(crate) answers: Answers,
    pub(crate) rounds: u32,
    pub(crate) wait: Wait,
    /// The questions asked so far (each may be asked once).
    pub(crate) asked: Vec<&'static str>,
}

/// The hardware watchdog (§4.11): it resets the host unless kept alive.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Watchdog {
    pub(crate) active: bool,
    pub(crate) last_keepalive: Ms,
}

/// One node.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    /// The host is up (not crashed).
    pub(crate) up: bool,
    /// The daemon runs (it may be down while PostgreSQL runs on).
    pub(crate) daemon: bool,
    /// Frozen (the whole host: daemon and PostgreSQL); nested freezes count.
    pub(crate) frozen: u32,
    /// When the (outermost) freeze began.
    pub(crate) frozen_since: Ms,
    /// Cut off from the DCS; nested partitions count.
    pub(crate) dcs_cut: u32,
    /// The daemon's loop runs late: no cycle before this.
    pub(crate) stalled_until: Ms,
    pub(crate) pg: Pg,
    pub(crate) memory: Memory,
    /// The daemon's DCS lease.
    pub(crate) lease: Option<u64>,
    pub(crate) next_cycle: Ms,
    pub(crate) inflight: Option<InFlight>,
    pub(crate) running: Option<Running>,
    pub(crate) watchdog: Watchdog,
    /// The last dynamic configuration read (version, value).
    pub(crate) config: (Option<String>, DynamicConfig),
    /// A new daemon that has not run a cycle yet.
    pub(crate) fresh: bool,
    /// The last plan's message, to log only changes.
    pub(crate) last_message: String,
}

impl Node {
    pub(crate) fn new(name: String, config: DynamicConfig, start_at: Ms) -> Self {
        Self {
            name,
            up: true,
            daemon: true,
            frozen: 0,
            frozen_since: 0,
            dcs_cut: 0,
            stalled_until: 0,
            pg: Pg::empty(),
            memory: Memory::default(),
            lease: None,
            next_cycle: start_at,
            inflight: None,
            running: None,
            watchdog: Watchdog::default(),
            config: (None, config),
            fresh: true,
            last_message: String::new(),
        }
    }

    /// The daemon can act (host up, daemon running, not frozen).
    pub(crate) fn daemon_active(&self) -> bool {
        self.up && self.daemon && self.frozen == 0
    }

    /// The host answers on the network (REST API, replication).
    pub(crate) fn reachable_host(&self) -> bool {
        self.up && self.frozen == 0
    }

    /// PostgreSQL accepts writes: running as a primary on a host that is not frozen.
    pub(crate) fn accepts_writes(&self) -> bool {
        self.up && self.frozen == 0 && self.pg.is_primary()
    }

    pub(crate) fn api_url(&self) -> String {
        format!("http://{}:8008/patroni", self.name)
    }

    pub(crate) fn conn_url(&self) -> String {
        format!("postgres://{}:5432/postgres", self.name)
    }
}
