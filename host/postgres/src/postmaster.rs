//! Starting, stopping and watching the postmaster (Patroni's `postgresql/postmaster.py` and the
//! process-control parts of `postgresql/__init__.py`).
//!
//! Who runs on the data directory is decided from `postmaster.pid` plus a process check: the pid
//! must be alive and its working directory must be the data directory (a postmaster `chdir`s
//! there). A live postmaster is never started twice, whoever started it. A `postmaster.pid` left
//! by a crash does not block a start: a dead pid is ignored by PostgreSQL itself; when the pid was
//! reused by an unrelated live process, PostgreSQL would refuse ("lock file already exists"), so
//! the stale file is removed. (Patroni passes that pid as `PG_GRANDPARENT_PID` instead, but it
//! launches `postgres` itself; `pg_ctl` overwrites that variable with its own parent's pid.)

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::Postgres;
use crate::bin::tail;
use crate::config::{raise_to_control, split_cmdline};
use crate::error::{Error, Result, Wait};
use crate::misc::ControlData;

/// How to stop: the postmaster signal Patroni would send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGTERM: wait for clients to disconnect.
    Smart,
    /// SIGINT: disconnect clients, shut down cleanly.
    Fast,
    /// SIGQUIT: exit without a shutdown checkpoint (crash recovery at next start).
    Immediate,
}

impl StopMode {
    fn as_arg(self) -> &'static str {
        match self {
            StopMode::Smart => "smart",
            StopMode::Fast => "fast",
            StopMode::Immediate => "immediate",
        }
    }
}

/// Who, if anyone, runs on the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostmasterStatus {
    /// No `postmaster.pid`.
    NotRunning,
    /// A `postmaster.pid` whose pid is dead or belongs to some other process.
    Stale {
        /// The pid in the file.
        pid: u32,
        /// Whether that pid is alive (as an unrelated process).
        pid_alive: bool,
    },
    /// A live postmaster on this data directory.
    Running {
        /// Its pid.
        pid: u32,
        /// Whether this handle manages it (started or [adopted](Postgres::adopt) it); false for a
        /// postmaster someone else started.
        managed: bool,
    },
}

/// The first line of `postmaster.pid`, when it is a pid.
pub fn read_pid_file(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// True when `pid` is alive and its working directory is `data_dir`.
pub fn is_postmaster_of(pid: u32, data_dir: &Path) -> bool {
    let Ok(cwd) = std::fs::read_link(format!("/proc/{pid}/cwd")) else {
        // Gone, or another user's process: not a postmaster we could own.
        return false;
    };
    let want = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    cwd == want
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// Quotes one word for `/bin/sh`, which `pg_ctl -o` goes through.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

impl Postgres {
    /// Who runs on the data directory now.
    pub fn postmaster_status(&self) -> PostmasterStatus {
        let Some(pid) = read_pid_file(self.data_dir()) else {
            return PostmasterStatus::NotRunning;
        };
        if is_postmaster_of(pid, self.data_dir()) {
            PostmasterStatus::Running {
                pid,
                managed: self.expect_running.load(Ordering::SeqCst),
            }
        } else {
            PostmasterStatus::Stale {
                pid,
                pid_alive: pid_alive(pid),
            }
        }
    }

    /// True when a postmaster runs on the data directory.
    pub fn is_running(&self) -> bool {
        matches!(self.postmaster_status(), PostmasterStatus::Running { .. })
    }

    /// True when this handle started (or adopted) PostgreSQL and it is no longer running: the
    /// postmaster crashed or was killed behind our back.
    pub fn crashed(&self) -> bool {
        self.expect_running.load(Ordering::SeqCst) && !self.is_running()
    }

    /// Takes over a postmaster found running (Patroni adopts a running PostgreSQL at start-up).
    pub fn adopt(&self) -> Result<u32> {
        match self.postmaster_status() {
            PostmasterStatus::Running { pid, .. } => {
                self.expect_running.store(true, Ordering::SeqCst);
                Ok(pid)
            }
            _ => Err(Error::NotRunning),
        }
    }

    /// The `-c name=value` options passed on the command line.
    pub fn cmdline_options(&self) -> Vec<(String, String)> {
        self.cmdline_options_with(None)
    }

    /// The command-line options; for a replica, `control` (its pg_control) raises the GUCs of
    /// [`CONTROL_MINIMUMS`](crate::config::CONTROL_MINIMUMS) to the primary's recorded values.
    fn cmdline_options_with(&self, control: Option<&ControlData>) -> Vec<(String, String)> {
        let s = &self.settings;
        let (mut cmdline, _) = split_cmdline(&self.effective_parameters());
        if let Some(cd) = control {
            for name in raise_to_control(&mut cmdline, cd) {
                tracing::warn!(name, "raised to the value in pg_control; restart pending");
            }
        }
        let mut out = vec![
            ("listen_addresses".to_owned(), s.listen_addresses.clone()),
            ("port".to_owned(), s.port.to_string()),
            ("cluster_name".to_owned(), s.scope.clone()),
        ];
        out.extend(cmdline.iter().map(|(k, v)| (k.to_owned(), v.to_owned())));
        out
    }

    /// Writes the configuration and starts PostgreSQL, waiting (bounded by `timeouts.start`)
    /// until it accepts connections. Refuses with [`Error::AlreadyRunning`] when a postmaster runs
    /// on the data directory, and with [`Error::RewindFailed`] for a replica whose rewind failed.
    pub async fn start(&self) -> Result<()> {
        match self.postmaster_status() {
            PostmasterStatus::Running { pid, .. } => {
                return Err(Error::AlreadyRunning {
                    pid,
                    data_dir: self.data_dir().to_owned(),
                });
            }
            PostmasterStatus::Stale { pid, pid_alive } => {
                tracing::warn!(pid, pid_alive, "ignoring a stale postmaster.pid");
                if pid_alive {
                    // Checked just above: that pid is not a postmaster on this data directory.
                    crate::config::remove_if_exists(&self.data_dir().join("postmaster.pid"))?;
                }
            }
            PostmasterStatus::NotRunning => {}
        }
        if self.rewind_failed() && self.recovery().is_some() {
            return Err(Error::RewindFailed {
                data_dir: self.data_dir().to_owned(),
                cause: None,
            });
        }
        self.check_log_file()?;
        self.write_config()?;
        let control = match self.recovery() {
            Some(_) => self.controldata().await.ok(),
            None => None,
        };
        let opts: Vec<String> = self
            .cmdline_options_with(control.as_ref())
            .into_iter()
            .map(|(k, v)| format!("-c {}", shell_quote(&format!("{k}={v}"))))
            .collect();
        let timeout = self.settings.timeouts.start;
        let mut cmd = self.bin.command("pg_ctl");
        cmd.arg("start")
            .arg("-D")
            .arg(self.data_dir())
            .arg("-l")
            .arg(&self.settings.log_file)
            .arg("-o")
            .arg(opts.join(" "))
            .args(["-w", "-t", &timeout.as_secs().max(1).to_string()]);
        let program = self.bin.path("pg_ctl");
        match crate::bin::run(cmd, &program, timeout + Duration::from_secs(5)).await {
            Ok(_) => {}
            Err(Error::CommandFailed { stderr, .. }) => {
                // pg_ctl's own complaint (e.g. about its arguments) never reaches the server log.
                let log_tail = self.log_tail();
                return Err(Error::StartFailed {
                    log_tail: [stderr.trim(), log_tail.trim()]
                        .into_iter()
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join("\n"),
                });
            }
            Err(Error::CommandTimeout { .. }) => {
                return Err(Error::Timeout {
                    what: Wait::Start,
                    timeout,
                });
            }
            Err(e) => return Err(e),
        }
        self.expect_running.store(true, Ordering::SeqCst);
        self.wait_for_connection(timeout).await
    }

    /// Fails, naming the file, when the server log `pg_ctl -l` appends to cannot be opened:
    /// pg_ctl would exit before the server wrote a line, so nothing else would say why.
    pub(crate) fn check_log_file(&self) -> Result<()> {
        let path = &self.settings.log_file;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map(drop)
            .map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })
    }

    /// Stops PostgreSQL in `mode`, bounded by `timeouts.stop`; on timeout escalates to immediate
    /// and finally SIGKILL. Returns false when it was not running.
    pub async fn stop(&self, mode: StopMode) -> Result<bool> {
        self.drop_connection().await;
        let pid = match self.postmaster_status() {
            PostmasterStatus::Running { pid, .. } => pid,
            _ => {
                self.expect_running.store(false, Ordering::SeqCst);
                return Ok(false);
            }
        };
        let timeout = self.settings.timeouts.stop;
        if let Some(command) = &self.settings.before_stop {
            self.run_before_stop(command, timeout).await;
        }
        if mode != StopMode::Immediate {
            self.checkpoint_before_stop(timeout).await;
        }
        let mut result = self.pg_ctl_stop(mode, timeout).await;
        if result.is_err() && mode != StopMode::Immediate {
            tracing::warn!(?mode, "stop did not finish; escalating to immediate");
            result = self.pg_ctl_stop(StopMode::Immediate, timeout).await;
        }
        if result.is_err() && is_postmaster_of(pid, self.data_dir()) {
            tracing::warn!(pid, "immediate stop did not finish; sending SIGKILL");
            let _ = tokio::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .await;
            let deadline = Instant::now() + Duration::from_secs(5);
            while pid_alive(pid) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.expect_running.store(false, Ordering::SeqCst);
        if pid_alive(pid) && is_postmaster_of(pid, self.data_dir()) {
            return Err(Error::Timeout {
                what: Wait::Stop,
                timeout,
            });
        }
        Ok(true)
    }

    /// A CHECKPOINT first (as Patroni does) leaves the shutdown checkpoint little to
    /// write, so the server stops, and stops accepting connections, sooner. Best effort:
    /// the stop goes ahead whatever happened. The connection is closed again before
    /// the stop (a smart stop would wait for it).
    async fn checkpoint_before_stop(&self, timeout: Duration) {
        match tokio::time::timeout(timeout, self.checkpoint()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!("CHECKPOINT before stopping failed: {e}"),
            Err(_) => tracing::warn!("CHECKPOINT before stopping took over {timeout:?}"),
        }
        self.drop_connection().await;
    }

    /// The operator's `before_stop` (e.g. draining connections): its outcome is
    /// logged, and the stop goes ahead whatever it did, as in Patroni.
    async fn run_before_stop(&self, command: &str, timeout: Duration) {
        let mut cmd = tokio::process::Command::new("/bin/sh");
        cmd.arg("-c")
            .arg(command)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true);
        match tokio::time::timeout(timeout, cmd.status()).await {
            Ok(Ok(status)) => tracing::info!("before_stop `{command}` exited with {status}"),
            Ok(Err(e)) => tracing::error!("before_stop: cannot run `{command}`: {e}"),
            Err(_) => tracing::error!(
                "before_stop `{command}` did not finish within {timeout:?}; stopping anyway"
            ),
        }
    }

    async fn pg_ctl_stop(&self, mode: StopMode, timeout: Duration) -> Result<()> {
        let secs = timeout.as_secs().max(1).to_string();
        let args = ["stop", "-D"];
        let mut cmd = self.bin.command("pg_ctl");
        cmd.args(args)
            .arg(self.data_dir())
            .args(["-m", mode.as_arg(), "-w", "-t", &secs]);
        crate::bin::run(
            cmd,
            &self.bin.path("pg_ctl"),
            timeout + Duration::from_secs(5),
        )
        .await
        .map(drop)
    }

    /// Stops (in `mode`) and starts again.
    pub async fn restart(&self, mode: StopMode) -> Result<()> {
        self.stop(mode).await?;
        self.start().await
    }

    /// Rewrites the configuration and signals a reload, waiting (bounded) until the server has
    /// re-read it (`pg_conf_load_time()` changes). When stopped, only the files are written.
    pub async fn reload(&self) -> Result<()> {
        self.write_config()?;
        if !self.is_running() {
            return Ok(());
        }
        let before = self.query_text("SELECT pg_conf_load_time()::text").await?;
        let timeout = self.settings.timeouts.query;
        self.bin
            .run(
                "pg_ctl",
                [Path::new("reload"), Path::new("-D"), self.data_dir()],
                timeout,
            )
            .await?;
        let deadline = Instant::now() + timeout;
        loop {
            // A fresh session inherits the postmaster's load time.
            self.drop_connection().await;
            let now = self.query_text("SELECT pg_conf_load_time()::text").await?;
            if now != before {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Timeout {
                    what: Wait::Reload,
                    timeout,
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        tail(
            &std::fs::read_to_string(&self.settings.log_file).unwrap_or_default(),
            20,
        )
    }

    /// The log file path.
    pub fn log_file(&self) -> PathBuf {
        self.settings.log_file.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_for_shell() {
        assert_eq!(shell_quote("a=b c"), "'a=b c'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    #[test]
    fn own_process_is_not_a_postmaster_of_root() {
        let me = std::process::id();
        assert!(!is_postmaster_of(me, Path::new("/nonexistent")));
        assert!(pid_alive(me));
    }
}
