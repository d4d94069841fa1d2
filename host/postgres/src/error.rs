//! The one error type of keel-postgres. Variants carry the facts (paths, programs, exit status,
//! parameter names) so that callers can match on them and the HA loop can word its own sentence.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Everything that can go wrong while managing the local PostgreSQL.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A program could not be spawned at all.
    #[error("cannot run {program}")]
    Spawn {
        /// The program.
        program: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A program ran and failed.
    #[error("{program} failed ({status}): {stderr}")]
    CommandFailed {
        /// The program.
        program: PathBuf,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines it wrote to stderr.
        stderr: String,
    },
    /// A program did not finish in time and was killed.
    #[error("{program} did not finish within {timeout:?}")]
    CommandTimeout {
        /// The program.
        program: PathBuf,
        /// The bound.
        timeout: Duration,
    },
    /// A file system operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The path involved.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Connecting to or querying PostgreSQL failed.
    #[error("query failed: {}", sql_error_text(source))]
    Sql {
        /// The driver error.
        #[from]
        source: tokio_postgres::Error,
    },
    /// A wait was bounded and the bound passed.
    #[error("timed out after {timeout:?} waiting for {what}")]
    Timeout {
        /// What was awaited.
        what: Wait,
        /// The bound.
        timeout: Duration,
    },
    /// Output of a PostgreSQL program or query could not be understood.
    #[error("cannot parse {what} from {text:?}")]
    Parse {
        /// What was being parsed.
        what: &'static str,
        /// The offending text.
        text: String,
    },
    /// The PostgreSQL major version is not supported (13 and newer are).
    #[error("PostgreSQL major version {major} is not supported")]
    UnsupportedVersion {
        /// The major version found.
        major: u32,
    },
    /// The data directory holds a cluster and wiping it was not requested.
    #[error("data directory {path} is not empty")]
    DataDirNotEmpty {
        /// The data directory.
        path: PathBuf,
    },
    /// A postmaster already runs on the data directory (started by us or not); it is never started
    /// twice.
    #[error("a postmaster (pid {pid}) already runs on {data_dir}")]
    AlreadyRunning {
        /// Its pid.
        pid: u32,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// The operation needs a running postmaster.
    #[error("PostgreSQL is not running")]
    NotRunning,
    /// The postmaster exited while starting.
    #[error("postmaster exited during start-up; log tail: {log_tail}")]
    StartFailed {
        /// The last lines of the server log.
        log_tail: String,
    },
    /// A configuration value is invalid.
    #[error("invalid value {value:?} for {name}")]
    InvalidParameter {
        /// The parameter or setting name.
        name: String,
        /// The rejected value.
        value: String,
    },
    /// Every configured replica creation method failed.
    #[error("no replica creation method succeeded (tried {tried:?})")]
    ReplicaCreationFailed {
        /// The method names, in the order tried.
        tried: Vec<String>,
    },
    /// The leader has not yet written a checkpoint on its new timeline, so pg_rewind would see the
    /// old timeline; try again later.
    #[error("waiting for a checkpoint on the leader before rewind")]
    LeaderCheckpointPending,
    /// pg_rewind failed earlier and the data directory was kept: this node must not start as a
    /// healthy replica.
    #[error("pg_rewind failed; data directory {data_dir} needs a re-clone")]
    RewindFailed {
        /// The data directory.
        data_dir: PathBuf,
        /// Why the rewind failed (absent when refusing to start after an earlier failure).
        #[source]
        cause: Option<Box<Error>>,
    },
    /// The server given as leader is in recovery, so divergence cannot be judged against it.
    #[error("the leader at {host}:{port} is in recovery")]
    LeaderInRecovery {
        /// Its host.
        host: String,
        /// Its port.
        port: u16,
    },
    /// pg_rewind cannot be used (disabled, or neither wal_log_hints nor checksums are on).
    #[error("pg_rewind is not possible: {reason}")]
    RewindImpossible {
        /// Why.
        reason: RewindBlocker,
    },
}

/// What a bounded wait was waiting for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Wait {
    /// The server to accept connections after a start.
    Start,
    /// The postmaster to exit after a stop.
    Stop,
    /// The server to accept writes after a promote.
    Promote,
    /// The configuration to be re-read after a reload.
    Reload,
    /// A query answer.
    Query,
    /// A connection.
    Connect,
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Wait::Start => "the server to accept connections",
            Wait::Stop => "the postmaster to exit",
            Wait::Promote => "the server to accept writes",
            Wait::Reload => "the configuration reload",
            Wait::Query => "a query",
            Wait::Connect => "a connection",
        })
    }
}

/// Why pg_rewind cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RewindBlocker {
    /// `use_pg_rewind` is off.
    Disabled,
    /// Neither `wal_log_hints` nor data checksums are enabled in pg_control.
    NoHintsOrChecksums,
}

impl std::fmt::Display for RewindBlocker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RewindBlocker::Disabled => "use_pg_rewind is off",
            RewindBlocker::NoHintsOrChecksums => "neither wal_log_hints nor data checksums are on",
        })
    }
}

/// The result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}

/// The driver's error with what the server said: its Display alone is `db error`.
fn sql_error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{}: {}", db.severity(), db.message());
            if let Some(detail) = db.detail() {
                text.push_str(&format!(" ({detail})"));
            }
            text
        }
        None => error.to_string(),
    }
}

impl Error {
    /// The server refused because a WAL segment it needed is gone (SQLSTATE 58P01): a
    /// slot whose `restart_lsn` lies before the WAL this node has cannot be used here.
    pub fn is_wal_removed(&self) -> bool {
        matches!(self, Error::Sql { source } if source.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_FILE))
    }
}
