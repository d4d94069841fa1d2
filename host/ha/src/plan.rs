//! What [`crate::decide`] returns: a question to answer first, or a plan to carry out.

use chrono::{DateTime, Utc};
use keel_model::SyncState;

/// The outcome of one call to [`crate::decide`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer this (put the answer in [`crate::Answers`]) and call `decide` again.
    Ask(Question),
    /// Carry out this plan; the cycle is over.
    Act(Plan),
}

/// I/O `decide` needs before it can choose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Question {
    /// Race for the leader key (create it only if absent).
    AcquireLock,
    /// Refresh the leader key (and publish the leader's status with it).
    RefreshLock,
    /// Race for `initialize` (create it empty only if absent).
    Initialize,
    /// Fetch `GET /patroni` from these members concurrently (bounded, ~2 s).
    Peers(Vec<PeerRequest>),
    /// DCS down, this node primary: `POST /failsafe` to every member listed in
    /// `/failsafe` (other than this node).
    Failsafe(Vec<PeerRequest>),
    /// Activate the watchdog (this node is about to run, or runs, as a primary
    /// and the watchdog is not active).
    ActivateWatchdog,
}

/// A member to ask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerRequest {
    /// Member name.
    pub name: String,
    /// Its REST API URL.
    pub api_url: String,
}

/// Where a replica streams, or a new member clones, from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Source {
    /// A member of this cluster, by name.
    Member(String),
    /// The source of this standby cluster (`standby_cluster` in the dynamic
    /// configuration): outside the cluster, not a member.
    Remote,
}

impl Source {
    /// A member by name.
    pub fn member(name: impl Into<String>) -> Self {
        Self::Member(name.into())
    }

    /// The member's name, `None` for the remote source.
    pub fn member_name(&self) -> Option<&str> {
        match self {
            Self::Member(name) => Some(name),
            Self::Remote => None,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Member(name) => f.write_str(name),
            Self::Remote => f.write_str("the standby cluster's source"),
        }
    }
}

/// How a primary steps down (Patroni's demotion kinds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoteMode {
    /// Manual switchover or failover: checkpoint, fast stop, release the key
    /// early, restart as a replica. The MPP worker notifies its coordinator first.
    Graceful,
    /// Cannot run safely as primary: immediate stop, release the key.
    Immediate,
    /// The key is someone else's: immediate stop, keep hands off the key.
    ImmediateNoLock,
    /// The DCS is unreachable: fast stop, do not touch the DCS, follow nobody.
    Offline,
    /// The cluster became a standby cluster: fast stop, keep the key, and follow
    /// the remote source as the standby leader (Patroni's `demote-cluster`).
    ToStandbyLeader,
}

impl DemoteMode {
    /// Whether this demotion releases the leader key.
    pub fn releases_lock(self) -> bool {
        matches!(self, Self::Graceful | Self::Immediate)
    }
}

/// One step of a plan, carried out in order. A failing step ends the plan (the
/// next cycle decides again from what is then observed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Write `initialize` = this node's system identifier (create-only if absent).
    WriteInitialize {
        /// The system identifier.
        sysid: String,
    },
    /// Delete `initialize` (a bootstrap that failed).
    CancelInitialization,
    /// Write this node's dynamic configuration as `config` (it is missing).
    WriteConfig,
    /// Write the leader key unconditionally (right after this node bootstrapped).
    TakeLock,
    /// Delete the leader key if it is still ours.
    ReleaseLock,
    /// Clear the failover key (compare-and-set on its version).
    ClearFailover {
        /// The version read this cycle.
        version: Option<String>,
    },
    /// Rewrite the failover key with only a candidate (paused switchover won).
    RewriteFailover {
        /// The candidate to keep.
        candidate: String,
        /// The version read this cycle.
        version: Option<String>,
    },
    /// Write `/sync` (compare-and-set on `version`).
    WriteSync {
        /// The new state.
        state: SyncState,
        /// The version read this cycle (`None`: absent).
        version: Option<String>,
    },
    /// Delete `/sync` (synchronous mode switched off).
    DeleteSync {
        /// The version read this cycle.
        version: Option<String>,
    },
    /// Set `synchronous_standby_names` and reload.
    SetSynchronousStandbyNames(String),
    /// Publish the timeline history if the local one grew (primary only).
    UpdateHistory,
    /// Publish `/failsafe` with the members' API URLs (leader, failsafe mode on).
    WriteFailsafe,
    /// Run the post-promote CHECKPOINT if not done yet.
    Checkpoint,
    /// Start a long action: initdb or custom bootstrap, start as primary, post-bootstrap.
    Bootstrap,
    /// Start a long action: create a replica from `source` (`None`: without a leader).
    Clone {
        /// The member to clone from.
        source: Option<Source>,
    },
    /// Start a long action: create the standby leader of a new standby cluster
    /// from the remote source, and start it following that source. Succeeds like
    /// [`Action::Bootstrap`] (the executor sets `bootstrapped`).
    BootstrapStandby,
    /// Start a long action: pre-promote hook, MPP before-promote, promote, wait for writes,
    /// MPP after-promote.
    Promote,
    /// Start PostgreSQL (a long action).
    Start {
        /// As a primary (crash restart of the lock holder) or as a replica.
        as_primary: bool,
        /// For a replica, where to stream from.
        upstream: Option<Source>,
    },
    /// Point a replica at `upstream` (rewrite primary_conninfo; reload or restart).
    Follow {
        /// Where to stream from; `None`: recover from the archive only.
        upstream: Option<Source>,
    },
    /// Demote a running primary (a long action), then run as a replica of `upstream`.
    Demote {
        /// How.
        mode: DemoteMode,
        /// Who to follow afterwards (ignored by [`DemoteMode::Offline`]).
        upstream: Option<Source>,
    },
    /// Stop PostgreSQL immediately (empty or inaccessible data directory).
    StopImmediate,
    /// Start a long action: pg_rewind from `source`.
    Rewind {
        /// The leader.
        source: String,
    },
    /// Start a long action: remove the data directory and clone from `source`.
    Reinitialize {
        /// The clone source.
        source: String,
    },
    /// Compare the local history with the leader's on the next cycles.
    TriggerRewindCheck,
}

/// What to do in this cycle, and the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Steps, in order.
    pub actions: Vec<Action>,
    /// One human sentence: logged and shown by the REST API (Patroni's status string).
    pub message: String,
    /// Write this member's key at the end of the cycle (not when the DCS failed).
    pub publish: bool,
    /// Run the next cycle no later than this (a scheduled switchover is due).
    pub wake_at: Option<DateTime<Utc>>,
    /// This node runs as primary only because every member accepted it while the DCS is
    /// unreachable (Patroni's `failsafe_mode_is_active`).
    pub failsafe_active: bool,
    /// Something the operator should know that does not change the decision
    /// (logged as warnings).
    pub warnings: Vec<String>,
}

impl Plan {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            actions: Vec::new(),
            message: message.into(),
            publish: true,
            wake_at: None,
            failsafe_active: false,
            warnings: Vec::new(),
        }
    }

    pub(crate) fn with(mut self, action: Action) -> Self {
        self.actions.push(action);
        self
    }

    pub(crate) fn then(mut self, actions: impl IntoIterator<Item = Action>) -> Self {
        self.actions.extend(actions);
        self
    }

    pub(crate) fn unpublished(mut self) -> Self {
        self.publish = false;
        self
    }
}
