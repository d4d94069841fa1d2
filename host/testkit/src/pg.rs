//! Finding PostgreSQL binaries and laying out temporary clusters.
//!
//! The binaries come from `KEEL_PG_BIN_DIR` or the newest of `/usr/lib/postgresql/{17..13}/bin`.
//! A missing install panics with the command that installs one, unless `KEEL_SKIP_E2E=1`.
//! This module knows nothing of keel-postgres: it only provides directories, ports and a guard
//! that stops whatever postmaster runs in a data directory when the test ends.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use tempfile::TempDir;

/// Majors searched under `/usr/lib/postgresql/<major>/bin`, newest first.
pub const SEARCHED_MAJORS: [u32; 5] = [17, 16, 15, 14, 13];

/// The directory holding `initdb`, `pg_ctl`, `postgres`, ...
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgBinaries {
    dir: PathBuf,
}

impl PgBinaries {
    /// Finds the binaries. Returns `None` only when none are installed and `KEEL_SKIP_E2E=1`
    /// (after printing a loud SKIP line); the caller then returns from the test.
    ///
    /// # Panics
    /// When no install is found and `KEEL_SKIP_E2E` is not `1`.
    pub fn discover() -> Option<Self> {
        let candidates: Vec<PathBuf> = match std::env::var_os("KEEL_PG_BIN_DIR") {
            Some(dir) => vec![PathBuf::from(dir)],
            None => SEARCHED_MAJORS
                .iter()
                .map(|m| PathBuf::from(format!("/usr/lib/postgresql/{m}/bin")))
                .collect(),
        };
        if let Some(dir) = candidates.iter().find(|d| d.join("initdb").is_file()) {
            return Some(Self { dir: dir.clone() });
        }
        if crate::skip_e2e() {
            crate::print_skip("no PostgreSQL binaries found");
            return None;
        }
        panic!(
            "no PostgreSQL binaries found (looked in {candidates:?}). Install them with \
             `apt-get install -y postgresql-15` or point KEEL_PG_BIN_DIR at a bin directory; \
             set KEEL_SKIP_E2E=1 to skip end-to-end tests instead."
        );
    }

    /// The bin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one program, e.g. `bin("pg_ctl")`.
    pub fn bin(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }
}

/// A temporary root for one test: data directories below it and a short socket directory
/// (`<root>/sock`, well inside the 107-byte limit of unix socket paths). Removed on drop.
#[derive(Debug)]
pub struct PgLayout {
    root: TempDir,
}

impl PgLayout {
    /// Creates the temporary root and its socket directory.
    ///
    /// # Panics
    /// When the temporary directory cannot be created.
    pub fn new() -> Self {
        let root = tempfile::Builder::new()
            .prefix("keel-pg-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temporary directory: {e}"));
        std::fs::create_dir(root.path().join("sock"))
            .unwrap_or_else(|e| panic!("cannot create the socket directory: {e}"));
        Self { root }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The unix socket directory shared by the servers of this test.
    pub fn socket_dir(&self) -> PathBuf {
        self.root.path().join("sock")
    }

    /// The (not yet existing) data directory for the node `name`.
    pub fn data_dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }
}

impl Default for PgLayout {
    fn default() -> Self {
        Self::new()
    }
}

/// Stops the postmaster of a data directory (`pg_ctl stop -m immediate`, bounded) when dropped,
/// whoever started it. Declare it after the [`PgLayout`] so it drops first.
#[derive(Debug)]
pub struct StopPostgresOnDrop {
    pg_ctl: PathBuf,
    data_dir: PathBuf,
}

impl StopPostgresOnDrop {
    /// Guards `data_dir`.
    pub fn new(bins: &PgBinaries, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            pg_ctl: bins.bin("pg_ctl"),
            data_dir: data_dir.into(),
        }
    }
}

impl Drop for StopPostgresOnDrop {
    fn drop(&mut self) {
        if !self.data_dir.join("postmaster.pid").exists() {
            return;
        }
        let _ = Command::new(&self.pg_ctl)
            .arg("stop")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-m", "immediate", "-w", "-t", "10"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}
