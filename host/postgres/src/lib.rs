//! keel-postgres manages **one** local PostgreSQL for Keel, the way Patroni's `postgresql/`
//! package does: bootstrap, configuration files, process control, replicas, promotion, rewind,
//! replication slots and state.
//!
//! It runs everything as the current OS user (keeld runs unprivileged and never switches users),
//! talks to the server over the unix socket directory with bounded timeouts, and runs the
//! PostgreSQL programs through `tokio::process` with timeouts. It knows nothing of the DCS or the
//! HA decisions: the caller (keeld's observe → decide → act loop) tells it what to become.
//!
//! The modules follow Patroni's file names: [`bin`], [`bootstrap`], [`config`], [`connection`],
//! [`postmaster`], [`promote`], [`replica`], [`rewind`], [`slots`], [`state`], [`misc`]. Each adds
//! `impl Postgres` methods for its concern.
//!
//! Version support: PostgreSQL 13 to 17 (recovery configuration is the PG12+ form; behaviour that
//! differs between majors asks [`Binaries::major`]).
#![deny(missing_docs)]

pub mod bin;
pub mod bootstrap;
pub mod config;
pub mod connection;
mod error;
mod guc;
pub mod misc;
pub mod postmaster;
pub mod promote;
pub mod replica;
pub mod rewind;
pub mod slots;
pub mod state;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

pub use bin::Binaries;
pub use bootstrap::{BootstrapMethod, InitdbOption};
pub use config::{Parameters, RecoveryConfig};
pub use connection::{Credentials, RemoteSource, Upstream};
pub use error::{Error, Result, RewindBlocker, Wait};
pub use guc::{ParameterPlan, PendingChange};
pub use misc::{ControlData, HistoryEntry, Lsn};
pub use postmaster::{PostmasterStatus, StopMode};
pub use replica::{FollowOutcome, ReplicaMethod};
pub use rewind::{Divergence, LeaderInfo, LocalPosition, RewindOutcome};
pub use slots::{ReplicationSlot, SlotKind, SlotSpec, SlotSyncReport};
pub use state::{Lane, ReplicationRow, Role, State};

/// The hook the MPP plugin uses to adjust GUCs; applied last, after local and dynamic parameters.
pub type AdjustHook = Arc<dyn Fn(&mut Parameters) + Send + Sync>;

/// Bounds on every wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Start until accepting connections (Patroni's `pg_ctl_timeout`, 60 s).
    pub start: Duration,
    /// Stop until the postmaster exits, before escalating to immediate and then SIGKILL.
    pub stop: Duration,
    /// Promote until the server accepts writes.
    pub promote: Duration,
    /// Connecting to a server.
    pub connect: Duration,
    /// One query.
    pub query: Duration,
    /// initdb, pg_basebackup, pg_rewind and custom commands.
    pub command: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            start: Duration::from_secs(60),
            stop: Duration::from_secs(60),
            promote: Duration::from_secs(60),
            connect: Duration::from_secs(3),
            query: Duration::from_secs(10),
            command: Duration::from_secs(3600),
        }
    }
}

/// How this node's PostgreSQL is set up: Patroni's `postgresql` section, already validated.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The member name (application_name, slot name).
    pub name: String,
    /// The cluster name (`cluster_name` GUC).
    pub scope: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The unix socket directory (`unix_socket_directories`); Keel connects through it.
    pub socket_dir: PathBuf,
    /// `listen_addresses`.
    pub listen_addresses: String,
    /// `port`.
    pub port: u16,
    /// The superuser Keel connects as.
    pub superuser: Credentials,
    /// The replication role replicas stream and clone with.
    pub replication: Credentials,
    /// The role pg_rewind uses; the superuser when `None`.
    pub rewind: Option<Credentials>,
    /// Local plus dynamic parameters (the adjust hook is applied on top).
    pub parameters: Parameters,
    /// `pg_hba.conf` lines; the file is left alone when empty.
    pub pg_hba: Vec<String>,
    /// The pgpass file Keel writes (mode 0600).
    pub pgpass: PathBuf,
    /// The server log `pg_ctl -l` writes to (outside the data directory).
    pub log_file: PathBuf,
    /// `use_slots`.
    pub use_slots: bool,
    /// `use_pg_rewind`.
    pub use_pg_rewind: bool,
    /// `remove_data_directory_on_rewind_failure`.
    pub remove_data_directory_on_rewind_failure: bool,
    /// `remove_data_directory_on_diverged_timelines`.
    pub remove_data_directory_on_diverged_timelines: bool,
    /// `recovery_conf`: restore_command, archive_cleanup_command, ...
    pub recovery_conf: Parameters,
    /// `create_replica_methods`, tried in order; default `[basebackup]`.
    pub create_replica_methods: Vec<ReplicaMethod>,
    /// `basebackup` options (flags or key/values) for the built-in method.
    pub basebackup: Vec<InitdbOption>,
    /// Bounds on waits.
    pub timeouts: Timeouts,
    /// `before_stop`: a shell command run (and waited for, within the stop timeout)
    /// before every stop of a running server.
    pub before_stop: Option<String>,
}

impl Settings {
    /// Settings with Patroni's defaults: superuser `postgres`, replication role `replicator`,
    /// listening on 127.0.0.1, slots and pg_rewind on, pgpass and log next to the data directory.
    pub fn new(
        name: impl Into<String>,
        data_dir: impl Into<PathBuf>,
        socket_dir: impl Into<PathBuf>,
        port: u16,
    ) -> Self {
        let data_dir: PathBuf = data_dir.into();
        let sibling = |suffix: &str| {
            let mut s = data_dir.clone().into_os_string();
            s.push(suffix);
            PathBuf::from(s)
        };
        Self {
            name: name.into(),
            scope: "keel".to_owned(),
            pgpass: sibling(".pgpass"),
            log_file: sibling(".log"),
            data_dir,
            socket_dir: socket_dir.into(),
            listen_addresses: "127.0.0.1".to_owned(),
            port,
            superuser: Credentials::new("postgres"),
            replication: Credentials::new("replicator"),
            rewind: None,
            parameters: Parameters::new(),
            pg_hba: Vec::new(),
            use_slots: true,
            use_pg_rewind: true,
            remove_data_directory_on_rewind_failure: false,
            remove_data_directory_on_diverged_timelines: false,
            recovery_conf: Parameters::new(),
            create_replica_methods: vec![ReplicaMethod::Basebackup],
            basebackup: Vec::new(),
            timeouts: Timeouts::default(),
            before_stop: None,
        }
    }
}

/// The handle on the local PostgreSQL. Cheap to share behind an `Arc`; methods take `&self`.
pub struct Postgres {
    settings: Settings,
    bin: Binaries,
    adjust: Mutex<Option<AdjustHook>>,
    parameters: Mutex<Parameters>,
    recovery: Mutex<Option<RecoveryConfig>>,
    conn: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
    api_conn: tokio::sync::Mutex<Option<Arc<tokio_postgres::Client>>>,
    rewind_failed: AtomicBool,
    expect_running: AtomicBool,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("name", &self.settings.name)
            .field("data_dir", &self.settings.data_dir)
            .field("major", &self.bin.major())
            .finish_non_exhaustive()
    }
}

impl Postgres {
    /// A handle for `settings` using the programs in `bin`. Nothing is started or touched.
    pub fn new(settings: Settings, bin: Binaries) -> Self {
        Self {
            parameters: Mutex::new(settings.parameters.clone()),
            settings,
            bin,
            adjust: Mutex::new(None),
            recovery: Mutex::new(None),
            conn: tokio::sync::Mutex::new(None),
            api_conn: tokio::sync::Mutex::new(None),
            rewind_failed: AtomicBool::new(false),
            expect_running: AtomicBool::new(false),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The binaries and their major version.
    pub fn bin(&self) -> &Binaries {
        &self.bin
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.settings.data_dir
    }

    /// Replaces the parameters (e.g. after the dynamic configuration changed). Takes effect on
    /// the next [`Postgres::write_config`] / [`Postgres::apply_parameters`].
    pub fn set_parameters(&self, parameters: Parameters) {
        *lock(&self.parameters) = parameters;
    }

    /// Installs the MPP adjust hook, applied last to the parameters.
    pub fn set_adjust_hook(&self, hook: Option<AdjustHook>) {
        *lock(&self.adjust) = hook;
    }

    /// The parameters that will be written: configured ones, `unix_socket_directories`, then the
    /// adjust hook.
    pub fn effective_parameters(&self) -> Parameters {
        let configured = lock(&self.parameters).clone();
        let mut params = self.unadjusted_parameters(&configured);
        if let Some(hook) = lock(&self.adjust).as_ref() {
            hook(&mut params);
        }
        params
    }

    /// What `configured` becomes before the adjust hook: Keel's defaults under it,
    /// `unix_socket_directories` over it. The MPP handler adjusts exactly this.
    pub fn unadjusted_parameters(&self, configured: &Parameters) -> Parameters {
        let mut params = Parameters::new();
        params.set("wal_keep_size", "128MB");
        params.merge(configured);
        params.set(
            "unix_socket_directories",
            self.settings.socket_dir.display().to_string(),
        );
        params
    }

    /// The recovery configuration currently wanted (`None` = run as primary).
    pub fn recovery(&self) -> Option<RecoveryConfig> {
        lock(&self.recovery).clone()
    }

    /// True when a pg_rewind failed and the data directory was kept: the node must not be started
    /// as a healthy replica until it is re-cloned.
    pub fn rewind_failed(&self) -> bool {
        self.rewind_failed.load(Ordering::SeqCst)
    }

    pub(crate) fn set_recovery(&self, recovery: Option<RecoveryConfig>) {
        *lock(&self.recovery) = recovery;
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
