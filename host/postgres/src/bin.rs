//! Where the PostgreSQL programs live, which major version they are, and how they are run.
//!
//! Every program runs through [`Binaries::run`] with a timeout: a hung `pg_basebackup` or
//! `pg_rewind` is killed rather than stalling the HA loop. Version-dependent behaviour elsewhere
//! asks [`Binaries::major`], never the program output directly.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use tokio::process::Command;

use crate::error::{Error, Result, io_err};

/// The oldest major version supported.
pub const MIN_MAJOR: u32 = 13;

/// A PostgreSQL bin directory and the major version of its `postgres`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binaries {
    dir: PathBuf,
    major: u32,
}

impl Binaries {
    /// Inspects `dir` by running `postgres --version`.
    pub async fn new(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        let mut cmd = Command::new(dir.join("postgres"));
        cmd.arg("--version");
        let out = run(cmd, &dir.join("postgres"), Duration::from_secs(10)).await?;
        let text = String::from_utf8_lossy(&out.stdout);
        let major = parse_version_major(&text)?;
        if major < MIN_MAJOR {
            return Err(Error::UnsupportedVersion { major });
        }
        Ok(Self { dir, major })
    }

    /// The bin directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The major version, e.g. 15.
    pub fn major(&self) -> u32 {
        self.major
    }

    /// The path of a program in the bin directory.
    pub fn path(&self, program: &str) -> PathBuf {
        self.dir.join(program)
    }

    /// A command for `program` with a clean environment for PostgreSQL: `PATRONI_*`, `KEEL_*` and
    /// `KUBERNETES_*` variables are removed, as Patroni does.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.path(program));
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("PATRONI_") || k.starts_with("KEEL_") || k.starts_with("KUBERNETES_") {
                cmd.env_remove(&key);
            }
        }
        cmd
    }

    /// Runs `program args…` with a timeout; a non-zero exit is [`Error::CommandFailed`].
    pub async fn run<I, S>(&self, program: &str, args: I, timeout: Duration) -> Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(program);
        cmd.args(args);
        run(cmd, &self.path(program), timeout).await
    }
}

/// Runs a prepared command with captured output, killing it after `timeout`.
pub(crate) async fn run(mut cmd: Command, program: &Path, timeout: Duration) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().map_err(|source| Error::Spawn {
        program: program.to_owned(),
        source,
    })?;
    let out = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(io_err(program))?,
        Err(_) => {
            return Err(Error::CommandTimeout {
                program: program.to_owned(),
                timeout,
            });
        }
    };
    if !out.status.success() {
        return Err(Error::CommandFailed {
            program: program.to_owned(),
            status: out.status,
            stderr: tail(&String::from_utf8_lossy(&out.stderr), 10),
        });
    }
    Ok(out)
}

/// The last `n` lines of `text`.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Parses the major version from `postgres --version` output, e.g.
/// `postgres (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)` → 15. Versions before 10 (`9.6.3`)
/// come back as 9.
pub fn parse_version_major(text: &str) -> Result<u32> {
    let bad = || Error::Parse {
        what: "PostgreSQL version",
        text: text.trim().to_owned(),
    };
    let version = text
        .split_whitespace()
        .find(|w| w.starts_with(|c: char| c.is_ascii_digit()))
        .ok_or_else(bad)?;
    let major: String = version.chars().take_while(char::is_ascii_digit).collect();
    major.parse().map_err(|_| bad())
}

/// The major version a data directory was created with, from its `PG_VERSION` file; `None` when
/// the directory holds no cluster.
pub fn data_dir_major(data_dir: &Path) -> Result<Option<u32>> {
    let path = data_dir.join("PG_VERSION");
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_version_major(&text).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_versions() {
        let v = "postgres (PostgreSQL) 15.8 (Debian 15.8-1.pgdg120+1)\n";
        assert_eq!(parse_version_major(v).expect("15"), 15);
        assert_eq!(
            parse_version_major("postgres (PostgreSQL) 17beta1").expect("17"),
            17
        );
        assert_eq!(parse_version_major("9.6\n").expect("9"), 9);
        assert_eq!(parse_version_major("13\n").expect("13"), 13);
        assert!(parse_version_major("no digits").is_err());
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 3), "");
    }
}
