//! What one HA cycle knows: everything [`crate::decide`] reads.
//!
//! The daemon (or the simulation) gathers an [`Observation`] — the DCS view, the
//! local PostgreSQL, the settings, the clock, what it remembers from earlier
//! cycles — and hands it over. Some facts cost I/O that is only worth paying in
//! some situations (racing for the lock, asking the peers for their WAL
//! positions); `decide` asks for those with a [`crate::Question`] and is called
//! again with the answer in [`Answers`].

use chrono::{DateTime, Utc};
use keel_config::{DynamicConfig, SynchronousMode, Tags};
use keel_model::{Cluster, Failsafe};

/// The input of one decision.
#[derive(Debug, Clone)]
pub struct Observation {
    /// Wall-clock time of the cycle.
    pub now: DateTime<Utc>,
    /// This member: name, tags and what it can do.
    pub me: Me,
    /// The dynamic configuration in force (the DCS `config`, else the bootstrap one).
    pub config: DynamicConfig,
    /// The DCS read of this cycle; `Err` when the store was not reachable.
    pub cluster: Result<Cluster, DcsUnreachable>,
    /// The local PostgreSQL.
    pub postgres: Postgres,
    /// What the daemon remembers between cycles.
    pub memory: Memory,
    /// A long action (bootstrap, clone, promote, ...) still running, if any.
    pub running: Option<RunningAction>,
    /// Answers to the questions `decide` asked earlier in this cycle.
    pub answers: Answers,
}

/// The DCS could not be read (or a lock operation raised, not answered "no").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DcsUnreachable(pub String);

/// This member's identity and local settings.
#[derive(Debug, Clone, Default)]
pub struct Me {
    /// Member name.
    pub name: String,
    /// Tags from the local configuration.
    pub tags: Tags,
    /// The node may bootstrap a new cluster (it has a `bootstrap` section).
    pub can_bootstrap: bool,
    /// A configured replica method works without a leader (`no_leader`).
    pub can_clone_without_leader: bool,
    /// `postgresql.use_pg_rewind`.
    pub use_pg_rewind: bool,
    /// `postgresql.remove_data_directory_on_rewind_failure`.
    pub remove_data_directory_on_rewind_failure: bool,
    /// `postgresql.remove_data_directory_on_diverged_timelines`.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// `watchdog.mode` is not `off`: the watchdog is activated before this node
    /// runs as a primary ([`Question::ActivateWatchdog`](crate::Question)).
    pub watchdog_enabled: bool,
    /// `watchdog.mode: required` and the device is known to be unusable: this
    /// node never becomes leader (Patroni's `watchdog_failed`).
    pub watchdog_failed: bool,
}

impl Me {
    /// `nofailover`, or a `failover_priority` of 0.
    pub fn nofailover(&self) -> bool {
        self.tags.nofailover()
    }
}

/// The data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataDir {
    /// Missing or empty: needs bootstrap or a clone.
    Empty,
    /// Cannot be read (permissions, I/O error); the text says why.
    Inaccessible(String),
    /// Holds a cluster with this system identifier.
    Initialized {
        /// `pg_controldata`'s database system identifier.
        sysid: String,
    },
}

/// The postmaster, as far as the daemon can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Process {
    /// Not running. `crashed` when it was running (or starting) at the last look
    /// and nobody stopped it.
    Stopped {
        /// It died on its own.
        crashed: bool,
    },
    /// Started, not accepting connections yet.
    Starting,
    /// Accepting connections.
    Running,
}

/// Primary or replica, for a running server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgRole {
    /// Not in recovery: accepts writes.
    Primary,
    /// In recovery.
    Replica,
}

/// Whether the local history diverged from the leader's (computed by the daemon
/// when [`Memory::rewind_check`] is set and a leader exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Divergence {
    /// Not checked (no leader, or nothing to check).
    #[default]
    Unknown,
    /// The node can follow the leader as it is.
    None,
    /// The node has WAL the leader does not have.
    Diverged,
    /// A pg_rewind was attempted and failed; the data directory was kept.
    RewindFailed,
}

/// One row of `pg_stat_replication`, as the sync rules need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicationRow {
    /// The replica's application_name (its member name).
    pub name: String,
    /// `state = 'streaming'`.
    pub streaming: bool,
    /// `sync_state`: `sync`, `quorum`, `potential`, `async`.
    pub sync_state: String,
    /// The LSN that counts for `synchronous_commit` (flush by default).
    pub lsn: u64,
}

/// The local PostgreSQL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    /// The data directory.
    pub data_dir: DataDir,
    /// The postmaster.
    pub process: Process,
    /// Primary or replica (meaningful when running or starting).
    pub role: PgRole,
    /// Current (primary) or received/replayed (replica) timeline; 0 unknown.
    pub timeline: u32,
    /// Flush LSN on a primary, max(receive, replay) on a replica.
    pub wal_position: u64,
    /// Where this replica is configured to stream from (`None`: nowhere, or primary).
    pub upstream: Option<crate::Source>,
    /// The running `synchronous_standby_names`, as Keel last set it.
    pub synchronous_standby_names: String,
    /// `pg_stat_replication` on a primary.
    pub replication: Vec<ReplicationRow>,
    /// A parameter change waits for a restart.
    pub pending_restart: bool,
    /// The divergence check against the current leader.
    pub divergence: Divergence,
}

impl Postgres {
    /// A node with nothing on disk.
    pub fn empty() -> Self {
        Self {
            data_dir: DataDir::Empty,
            process: Process::Stopped { crashed: false },
            role: PgRole::Replica,
            timeline: 0,
            wal_position: 0,
            upstream: None,
            synchronous_standby_names: String::new(),
            replication: Vec::new(),
            pending_restart: false,
            divergence: Divergence::Unknown,
        }
    }

    /// The postmaster is gone.
    pub fn is_stopped(&self) -> bool {
        matches!(self.process, Process::Stopped { .. })
    }

    /// Running (accepting connections).
    pub fn is_running(&self) -> bool {
        self.process == Process::Running
    }

    /// Running and not in recovery.
    pub fn is_primary(&self) -> bool {
        self.is_running() && self.role == PgRole::Primary
    }

    /// The system identifier, if the data directory holds a cluster.
    pub fn sysid(&self) -> Option<&str> {
        match &self.data_dir {
            DataDir::Initialized { sysid } => Some(sysid),
            _ => None,
        }
    }
}

/// What the daemon carries from one cycle to the next.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Memory {
    /// The watchdog is active (activated and kept alive while this node leads).
    pub watchdog_active: bool,
    /// This node won the `initialize` race and ran the bootstrap: the next cycle
    /// finishes it (sysid, config, leader key).
    pub bootstrapped: bool,
    /// The last cycle (re)started PostgreSQL; this one checks that it came up (also
    /// set on a new daemon's first cycle that finds PostgreSQL running).
    pub just_started: bool,
    /// The daemon believes it holds the leader lock (last acquire/refresh succeeded).
    pub has_lock: bool,
    /// When the last successful acquire or refresh of the lock happened.
    pub lock_refreshed_at: Option<DateTime<Utc>>,
    /// When a `pre_promote` failure made this node give the lock back (backoff for `ttl`).
    pub pre_promote_failed_at: Option<DateTime<Utc>>,
    /// A divergence check against the leader is due (after a demotion, crash,
    /// or a leader change).
    pub rewind_check: bool,
    /// Members of the last view that had a leader (the race considers them too).
    pub previous_members: Vec<PreviousMember>,
    /// The last `/failsafe` read or written (the members a failsafe leader must
    /// reach when the DCS is down).
    pub last_failsafe: Option<Failsafe>,
    /// The leader that announced itself with `POST /failsafe`, if recent.
    pub failsafe_leader: Option<FailsafeLeader>,
    /// When this node became primary (promotion or bootstrap); the quorum and
    /// sync rules wait `loop_wait` after it for replicas to reconnect.
    pub promoted_at: Option<DateTime<Utc>>,
    /// The `synchronous_standby_names` last set and the primary's flush LSN at that moment.
    pub ssn_changed_at_lsn: u64,
    /// When the daemon last started PostgreSQL, while it has not come up yet
    /// (`primary_start_timeout` counts from here).
    pub starting_since: Option<DateTime<Utc>>,
}

impl Memory {
    /// Keep what the rules need from a successful read: the members of a view
    /// with a leader (the race asks them too) and the `/failsafe` list.
    pub fn remember_view(&mut self, cluster: &Cluster) {
        if cluster.leader.is_some() {
            self.previous_members = cluster
                .members
                .iter()
                .map(|m| PreviousMember {
                    name: m.name.clone(),
                    api_url: m.data.api_url.clone(),
                })
                .collect();
        }
        self.last_failsafe = cluster.failsafe.clone();
    }
}

/// A member seen in an earlier view with a leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousMember {
    /// Member name.
    pub name: String,
    /// Its REST API URL.
    pub api_url: Option<String>,
}

/// A primary that reached this node over `POST /failsafe` while the DCS was down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailsafeLeader {
    /// Its name.
    pub name: String,
    /// When it called.
    pub at: DateTime<Utc>,
}

/// A long action the daemon runs in the background while cycles go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunningAction {
    /// initdb or a custom bootstrap, then post-bootstrap.
    Bootstrap,
    /// A replica being created.
    Clone,
    /// Promotion in progress.
    Promote,
    /// A (re)start or restart.
    Start,
    /// pg_rewind.
    Rewind,
    /// Remove the data directory and clone again.
    Reinitialize,
    /// A demotion.
    Demote,
    /// A restart asked for over the REST API or scheduled.
    Restart,
}

impl RunningAction {
    /// Patroni's name for the action, used in messages.
    pub fn label(self) -> &'static str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::Clone => "creating replica",
            Self::Promote => "promote",
            Self::Start => "starting",
            Self::Rewind => "pg_rewind",
            Self::Reinitialize => "reinitialize",
            Self::Demote => "demote",
            Self::Restart => "restart",
        }
    }
}

/// The answer to [`crate::Question::AcquireLock`] or [`crate::Question::RefreshLock`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockAnswer {
    /// The store said yes.
    Held,
    /// The store said no: someone else holds it.
    NotHeld,
    /// The store could not be asked (unreachable, timeout, plugin fault).
    Failed(String),
}

/// What a peer says about itself over `GET /patroni`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Member name.
    pub name: String,
    /// `false` when the request failed or timed out.
    pub reachable: bool,
    /// Its PostgreSQL is running.
    pub running: bool,
    /// Its PostgreSQL is in recovery.
    pub in_recovery: bool,
    /// Its WAL position (`xlog.received_location`/`replayed_location` or `location`).
    pub wal_position: u64,
    /// Its timeline.
    pub timeline: u32,
    /// Tagged `nofailover` (or `failover_priority` 0).
    pub nofailover: bool,
    /// Its `failover_priority` (default 1).
    pub failover_priority: i64,
    /// It reports an unusable watchdog.
    pub watchdog_failed: bool,
}

impl PeerStatus {
    /// A peer that did not answer.
    pub fn unreachable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reachable: false,
            running: false,
            in_recovery: true,
            wal_position: 0,
            timeline: 0,
            nofailover: false,
            failover_priority: 1,
            watchdog_failed: false,
        }
    }
}

/// What the failsafe peers said to this primary's `POST /failsafe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailsafeAnswer {
    /// Every member listed in `/failsafe` accepted.
    AllAccepted,
    /// Somebody refused or did not answer.
    NotAll,
}

/// Answers gathered during this cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answers {
    /// The leader-key race.
    pub acquire: Option<LockAnswer>,
    /// The leader-key refresh.
    pub refresh: Option<LockAnswer>,
    /// The `initialize` race (`true`: won).
    pub initialize: Option<Result<bool, String>>,
    /// The peers' statuses (those asked for).
    pub peers: Option<Vec<PeerStatus>>,
    /// The failsafe confirmation round.
    pub failsafe: Option<FailsafeAnswer>,
    /// The watchdog activation: `false` when `watchdog.mode: required` and it
    /// could not be activated (an `automatic` failure answers `true`).
    pub watchdog: Option<bool>,
}

/// Shorthands over the dynamic configuration.
pub(crate) trait ConfigExt {
    /// `synchronous_mode` is on or quorum (and this is not a standby cluster).
    fn sync_mode(&self) -> bool;
    /// Quorum mode.
    fn quorum_mode(&self) -> bool;
}

impl ConfigExt for DynamicConfig {
    fn sync_mode(&self) -> bool {
        self.synchronous_mode != SynchronousMode::Off && !self.is_standby_cluster()
    }
    fn quorum_mode(&self) -> bool {
        self.synchronous_mode == SynchronousMode::Quorum && !self.is_standby_cluster()
    }
}
