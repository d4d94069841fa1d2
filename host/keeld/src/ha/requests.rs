//! Operator requests that reach the loop from the REST API: restart (now or
//! scheduled), reinitialize and reload. The API hands them over on a channel
//! and waits for the answer; the loop runs them as its own long actions, so a
//! restart can never race a promotion or a rewind.

use std::time::Duration;

use chrono::{DateTime, Utc};
use keel_api::{RestartOutcome, RestartRequest, version_number};
use keel_ha::RunningAction;
use keel_postgres::StopMode;
use tokio::sync::oneshot;

use super::{Daemon, TaskOutcome, lock};

/// A request from the API.
#[derive(Debug)]
pub(crate) enum Command {
    /// Re-read the local configuration.
    Reload,
    /// Restart PostgreSQL now; the answer comes once it is up (or failed).
    Restart {
        request: RestartRequest,
        reply: oneshot::Sender<RestartOutcome>,
    },
    /// Re-create this replica.
    Reinitialize {
        force: bool,
        from_leader: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

/// A restart remembered for later, and the postmaster it was meant for.
#[derive(Debug, Clone)]
pub(crate) struct ScheduledRestart {
    pub(crate) request: RestartRequest,
    pub(crate) postmaster_start_time: Option<String>,
}

impl ScheduledRestart {
    /// The member key's `scheduled_restart`: the request plus the postmaster start time.
    pub(crate) fn published(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut out = self.request.to_json();
        if let Some(t) = &self.postmaster_start_time {
            out.insert("postmaster_start_time".into(), t.clone().into());
        }
        out
    }
}

impl Daemon {
    pub(super) async fn handle(&mut self, command: Command) {
        match command {
            Command::Reload => self.reload_config().await,
            Command::Restart { request, reply } => {
                if let Some(refusal) = self.refuse_restart(&request).await {
                    let _ = reply.send(refusal);
                    return;
                }
                self.start_restart(request.timeout, Some(reply));
            }
            Command::Reinitialize {
                force,
                from_leader,
                reply,
            } => {
                let _ = reply.send(self.start_reinitialize(force, from_leader).await);
            }
        }
    }

    /// Why this restart may not run now, if it may not (Patroni's `restart_matches`
    /// and the async executor's "already in progress").
    async fn refuse_restart(&self, request: &RestartRequest) -> Option<RestartOutcome> {
        if let Some(task) = &self.task {
            return Some(RestartOutcome::Busy(task.kind.label().to_owned()));
        }
        let state = self.pg.state().await.ok();
        let mut reason = None;
        if request.role.as_deref().is_some_and(|r| r != self.role) {
            reason = Some("host role mismatch");
        }
        if let Some(wanted) = request.postgres_version.as_deref().and_then(version_number)
            && state.as_ref().is_some_and(|s| wanted <= s.server_version)
        {
            reason = Some("postgres version mismatch");
        }
        if request.restart_pending && lock(&self.shared).pending_restart.is_empty() {
            reason = Some("pending restart flag is not set");
        }
        reason.map(|why| {
            tracing::info!("not proceeding with the restart: {why}");
            RestartOutcome::ConditionsNotMet
        })
    }

    /// Run the restart as the loop's long action; answer `reply` when it ends,
    /// or with "still starting" once `timeout` has passed.
    fn start_restart(
        &mut self,
        timeout: Option<u32>,
        reply: Option<oneshot::Sender<RestartOutcome>>,
    ) {
        let timeout = Duration::from_secs(u64::from(
            timeout.unwrap_or(self.dynamic.primary_start_timeout).max(1),
        ));
        self.spawn(RunningAction::Restart, move |pg| async move {
            let outcome = tokio::time::timeout(timeout, pg.restart(StopMode::Fast)).await;
            let (answer, result) = match outcome {
                Ok(Ok(())) => (RestartOutcome::Restarted, Ok(TaskOutcome::Started)),
                Ok(Err(e)) => (RestartOutcome::Failed, Err(anyhow::Error::new(e))),
                Err(_) => (RestartOutcome::StillStarting, Ok(TaskOutcome::Started)),
            };
            if let Some(reply) = reply {
                let _ = reply.send(answer);
            }
            result
        });
        self.wake.notify_one();
    }

    async fn start_reinitialize(&mut self, force: bool, from_leader: bool) -> Result<(), String> {
        let cluster = self
            .dcs
            .load()
            .await
            .map_err(|e| format!("DCS is not reachable, can not reinitialize: {e}"))?;
        let Some(leader) = cluster.leader_name().map(str::to_owned) else {
            return Err("Cluster has no leader, can not reinitialize".to_owned());
        };
        if leader == self.settings.name {
            return Err("I am the leader, can not reinitialize".to_owned());
        }
        if let Some(task) = &self.task {
            if !force {
                return Err(format!("{} already in progress", task.kind.label()));
            }
            tracing::warn!("reinitialize: cancelling {}", task.kind.label());
            if let Some(task) = self.task.take() {
                task.handle.abort();
            }
        }
        let source = if from_leader {
            leader
        } else {
            cluster
                .members
                .iter()
                .find(|m| {
                    m.name != self.settings.name
                        && m.data.is_running()
                        && keel_ha::tags_of(m).clonefrom()
                })
                .map_or(leader, |m| m.name.clone())
        };
        tracing::info!("reinitialize: cloning again from {source}");
        self.reinitialize_from(&cluster, &source)
            .map_err(|e| format!("{e:#}"))?;
        self.wake.notify_one();
        Ok(())
    }

    /// Run a scheduled restart when it is due (after the cycle, when no action runs).
    pub(super) async fn run_scheduled_restart(&mut self) -> Option<DateTime<Utc>> {
        let scheduled = lock(&self.shared).scheduled_restart.clone()?;
        if self.task.is_some() {
            return None;
        }
        let at = scheduled.request.schedule?.with_timezone(&Utc);
        let now = Utc::now();
        if at > now {
            return Some(at);
        }
        lock(&self.shared).scheduled_restart = None;
        let current = self.pg.state().await.ok().map(|s| s.postmaster_start_time);
        if scheduled.postmaster_start_time.is_some()
            && current.is_some()
            && current != scheduled.postmaster_start_time
        {
            tracing::info!("Cancelling scheduled restart: postgres restart has already happened");
            return None;
        }
        let stale = i64::from(self.timeouts().loop_wait) * 1500;
        if (now - at).num_milliseconds() > stale {
            tracing::warn!("Found a stale scheduled restart at {at}, removed it");
            return None;
        }
        if let Some(refusal) = self.refuse_restart(&scheduled.request).await {
            tracing::warn!("Scheduled restart: {refusal:?}");
            return None;
        }
        tracing::info!("running the scheduled restart");
        self.start_restart(scheduled.request.timeout, None);
        None
    }
}
