//! `postgresql.callbacks`: operator scripts run when PostgreSQL starts, stops,
//! restarts, reloads or changes role, as Patroni runs them.
//!
//! Each callback is the configured command (split like a shell would) with three
//! arguments appended: the action (`on_start`, ...), the role (`primary`,
//! `replica`) and the scope. Callbacks never block the HA loop: one runs at a
//! time, and a new one kills the one still running, with its children (it
//! describes a state that no longer holds). `on_reload` has a slot of its own,
//! so a reload does not cut short a role change's script.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

/// When a callback runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Callback {
    /// PostgreSQL was started (or found running when keeld started).
    Start,
    /// keeld stopped PostgreSQL.
    Stop,
    /// keeld restarted PostgreSQL.
    Restart,
    /// keeld reloaded PostgreSQL's configuration.
    Reload,
    /// PostgreSQL was promoted or demoted.
    RoleChange,
}

impl Callback {
    /// The configuration key and the first argument.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Start => "on_start",
            Self::Stop => "on_stop",
            Self::Restart => "on_restart",
            Self::Reload => "on_reload",
            Self::RoleChange => "on_role_change",
        }
    }
}

/// The callbacks configured, and the process of each slot still running.
#[derive(Debug, Clone, Default)]
pub(crate) struct Callbacks {
    commands: BTreeMap<String, String>,
    scope: String,
    running: Arc<Mutex<Slots>>,
}

#[derive(Debug, Default)]
struct Slots {
    /// Process group of the running callback (any but `on_reload`).
    main: Option<u32>,
    /// Process group of the running `on_reload`.
    reload: Option<u32>,
}

impl Slots {
    fn of(&mut self, reload: bool) -> &mut Option<u32> {
        if reload {
            &mut self.reload
        } else {
            &mut self.main
        }
    }
}

impl Callbacks {
    pub(crate) fn new(commands: BTreeMap<String, String>, scope: impl Into<String>) -> Self {
        Self {
            commands,
            scope: scope.into(),
            running: Arc::default(),
        }
    }

    /// New commands (SIGHUP); a callback already running goes on.
    pub(crate) fn reconfigure(&mut self, commands: BTreeMap<String, String>) {
        self.commands = commands;
    }

    /// Run the callback for `what`, if one is configured, without waiting for it.
    pub(crate) fn call(&self, what: Callback, role: &str) {
        let Some(command) = self.commands.get(what.name()) else {
            return;
        };
        let Some(mut argv) = shlex::split(command).filter(|a| !a.is_empty()) else {
            tracing::warn!(
                "postgresql.callbacks.{}: cannot split {command:?} into a command",
                what.name()
            );
            return;
        };
        argv.extend([what.name().to_owned(), role.to_owned(), self.scope.clone()]);
        let reload = what == Callback::Reload;
        let mut slots = self
            .running
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = slots.of(reload);
        if let Some(group) = slot.take() {
            kill_group(group);
        }
        let mut cmd = tokio::process::Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .stdin(Stdio::null())
            .kill_on_drop(false)
            .process_group(0);
        let mut child = match cmd.spawn() {
            Ok(child) => child,
            Err(e) => {
                tracing::warn!(
                    "postgresql.callbacks.{}: could not run {}: {e}",
                    what.name(),
                    argv[0]
                );
                return;
            }
        };
        let Some(pid) = child.id() else {
            return;
        };
        *slot = Some(pid);
        tracing::info!(callback = what.name(), role, pid, "running {command}");
        let running = Arc::clone(&self.running);
        let name = what.name();
        tokio::spawn(async move {
            match child.wait().await {
                Ok(status) if !status.success() => {
                    tracing::warn!("callback {name} exited with {status}");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("callback {name}: {e}"),
            }
            let mut slots = running
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = slots.of(reload);
            if *slot == Some(pid) {
                *slot = None;
            }
        });
    }
}

/// SIGKILL to a callback's process group: the script and whatever it started.
fn kill_group(group: u32) {
    let Some(group) = i32::try_from(group)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    // A group that is already gone (ESRCH) is what we wanted anyway.
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn commands(pairs: &[(&str, String)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    async fn wait_for_file(path: &std::path::Path) -> String {
        for _ in 0..100 {
            if let Ok(text) = std::fs::read_to_string(path)
                && text.ends_with('\n')
            {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{} never written", path.display());
    }

    #[tokio::test]
    async fn a_callback_gets_action_role_and_scope() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = format!("sh -c 'echo \"$@\" >> {}' callback", out.display());
        let cb = Callbacks::new(commands(&[("on_role_change", script)]), "pg-cluster");
        cb.call(Callback::Start, "replica"); // not configured: nothing runs
        cb.call(Callback::RoleChange, "primary");
        assert_eq!(
            wait_for_file(&out).await,
            "on_role_change primary pg-cluster\n"
        );
    }

    #[tokio::test]
    async fn a_new_callback_kills_the_one_still_running_but_not_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let (first, reload, last) = (
            dir.path().join("first"),
            dir.path().join("reload"),
            dir.path().join("last"),
        );
        let slow =
            |file: &std::path::Path| format!("sh -c 'sleep 1; echo done > {}'", file.display());
        let cb = Callbacks::new(
            commands(&[
                ("on_start", slow(&first)),
                ("on_reload", slow(&reload)),
                (
                    "on_role_change",
                    format!("sh -c 'echo done > {}'", last.display()),
                ),
            ]),
            "s",
        );
        cb.call(Callback::Start, "replica");
        cb.call(Callback::Reload, "replica");
        tokio::time::sleep(Duration::from_millis(200)).await;
        cb.call(Callback::RoleChange, "primary");
        assert_eq!(wait_for_file(&last).await, "done\n");
        assert_eq!(
            wait_for_file(&reload).await,
            "done\n",
            "on_reload has its own slot"
        );
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert!(!first.exists(), "on_start was killed with its sleep");
    }

    #[tokio::test]
    async fn an_unusable_command_is_reported_not_fatal() {
        let cb = Callbacks::new(
            commands(&[
                ("on_start", "'unterminated".to_owned()),
                ("on_stop", "/nonexistent/keel-callback".to_owned()),
            ]),
            "s",
        );
        cb.call(Callback::Start, "replica");
        cb.call(Callback::Stop, "replica");
    }
}
