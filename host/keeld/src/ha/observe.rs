//! Gathering the observation: the DCS view, the dynamic configuration, the
//! local PostgreSQL and, when due, the divergence check against the leader.

use chrono::Utc;
use keel_dcs::Cluster;
use keel_ha::{DataDir, Divergence, Observation, PgRole, Process, ReplicationRow};
use keel_postgres::{Upstream, bootstrap::is_empty_dir};

use super::{Daemon, lock};

/// `postgres://host:port/dbname` → an upstream.
pub(crate) fn upstream_of(conn_url: &str) -> Option<Upstream> {
    let rest = conn_url
        .strip_prefix("postgres://")
        .or_else(|| conn_url.strip_prefix("postgresql://"))?;
    let (hostport, db) = rest.split_once('/').unwrap_or((rest, "postgres"));
    let hostport = hostport.rsplit('@').next()?;
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) => (h, p.parse().ok()?),
        None => (hostport, 5432),
    };
    let mut up = Upstream::new(host.trim_start_matches('[').trim_end_matches(']'), port);
    if !db.is_empty() {
        up.dbname = db.split('?').next().unwrap_or("postgres").to_owned();
    }
    Some(up)
}

impl Daemon {
    pub(super) async fn observe(&mut self) -> Observation {
        let mut obs = self.observation_skeleton();
        match self.dcs.load().await {
            Ok(cluster) => {
                self.apply_dynamic_config(&cluster).await;
                obs.config = self.dynamic.clone();
                self.remember_cluster(&cluster);
                obs.memory = self.memory.clone();
                obs.cluster = Ok(cluster);
            }
            Err(e) => {
                obs.cluster = Err(keel_ha::DcsUnreachable(e.to_string()));
            }
        }
        {
            let shared = lock(&self.shared);
            obs.memory.failsafe_leader =
                shared
                    .failsafe_leader
                    .as_ref()
                    .map(|(name, at)| keel_ha::FailsafeLeader {
                        name: name.clone(),
                        at: *at,
                    });
        }
        obs.postgres = self.observe_postgres(obs.cluster.as_ref().ok()).await;
        if self.memory.ssn_changed_at_lsn == super::SSN_POSITION_UNKNOWN
            && obs.postgres.is_running()
            && obs.postgres.role == PgRole::Primary
        {
            self.memory.ssn_changed_at_lsn = obs.postgres.wal_position;
        }
        obs.memory.ssn_changed_at_lsn = self.memory.ssn_changed_at_lsn;
        if obs.postgres.process != Process::Starting && self.task.is_none() {
            self.memory.starting_since = None;
        }
        obs.memory.starting_since = self.memory.starting_since;
        obs
    }

    /// Keep what the rules remember from views.
    fn remember_cluster(&mut self, cluster: &Cluster) {
        self.memory.remember_view(cluster);
        if cluster.leader_name() != Some(self.settings.name.as_str()) {
            self.memory.has_lock = false;
        }
        let mut shared = lock(&self.shared);
        shared.cluster = Some((cluster.clone(), Utc::now()));
        shared.paused = self.dynamic.pause;
        shared.ttl = self.dynamic.ttl;
        shared.failsafe_mode = self.dynamic.failsafe_mode;
        shared.standby_cluster = self.dynamic.is_standby_cluster();
        shared.quorum_mode = self.dynamic.synchronous_mode == keel_config::SynchronousMode::Quorum
            && !self.dynamic.is_standby_cluster();
    }

    /// A changed `config` key: new timings and parameters.
    async fn apply_dynamic_config(&mut self, cluster: &Cluster) {
        let Some(config) = cluster.config.as_ref().filter(|c| c.is_usable()) else {
            return;
        };
        if self.dynamic_version.as_deref() == config.modify_version.as_deref() {
            return;
        }
        let (dynamic, warnings) = keel_config::DynamicConfig::from_json_lenient(&config.raw);
        for w in warnings {
            tracing::warn!("config: {w}");
        }
        let old = self.timeouts();
        self.dynamic = dynamic;
        self.dynamic_version = config.modify_version.clone();
        let new = self.timeouts();
        if new.ttl != old.ttl
            && let Err(e) = self.dcs.set_ttl(new.ttl).await
        {
            tracing::warn!("could not apply ttl {}: {e}", new.ttl);
        }
        if new.retry_timeout != old.retry_timeout
            && let Err(e) = self.dcs.set_retry_timeout(new.retry_timeout).await
        {
            tracing::warn!("could not apply retry_timeout {}: {e}", new.retry_timeout);
        }
        match super::pgconf::postgres_settings(&self.settings, &self.dynamic) {
            Ok(wanted) => {
                let mut params = wanted.parameters;
                self.enforce_hot_standby_feedback(&mut params);
                if !self.ssn.is_empty()
                    || self.dynamic.synchronous_mode != keel_config::SynchronousMode::Off
                {
                    params.set("synchronous_standby_names", self.ssn.clone());
                }
                if !self.pg.data_dir().join("PG_VERSION").exists() {
                    // Nothing to rewrite yet; bootstrap or clone writes them.
                    if let Some(mpp) = &self.mpp {
                        mpp.adjust_parameters(&self.pg, &params).await;
                    }
                    self.pg.set_parameters(params);
                    return;
                }
                match self.apply_parameters(params).await {
                    Ok(plan) if !plan.restart.is_empty() => tracing::info!(
                        "parameters changed; pending restart for {}",
                        plan.restart.join(", ")
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!("could not apply the new parameters: {e}"),
                }
            }
            Err(e) => tracing::warn!("config: {e:#}"),
        }
    }

    /// Reads the parameters waiting for a restart into the shared state; a failed read keeps
    /// the last answer.
    async fn read_pending_restart(&self) -> bool {
        match self.pg.pending_restart().await {
            Ok(pending) => {
                let mut shared = lock(&self.shared);
                if pending != shared.pending_restart {
                    for p in &pending {
                        tracing::info!(
                            parameter = %p.name,
                            old_value = %p.old_value,
                            new_value = %p.new_value,
                            "parameter waits for a restart"
                        );
                    }
                    shared.pending_restart = pending;
                }
                !shared.pending_restart.is_empty()
            }
            Err(e) => {
                tracing::debug!("could not read pending restarts: {e}");
                !lock(&self.shared).pending_restart.is_empty()
            }
        }
    }

    async fn observe_postgres(&mut self, cluster: Option<&Cluster>) -> keel_ha::Postgres {
        let mut out = keel_ha::Postgres::empty();
        let dir = self.pg.data_dir().to_owned();
        out.data_dir = match is_empty_dir(&dir) {
            Ok(true) => {
                self.sysid = None;
                DataDir::Empty
            }
            Err(e) => DataDir::Inaccessible(e.to_string()),
            Ok(false) => match self.read_sysid().await {
                Some(sysid) => DataDir::Initialized { sysid },
                None => DataDir::Inaccessible(format!(
                    "{} holds no readable cluster (pg_controldata failed)",
                    dir.display()
                )),
            },
        };
        out.upstream = self.upstream.clone();
        out.synchronous_standby_names = self.ssn.clone();
        if !self.pg.is_running() {
            lock(&self.shared).pending_restart.clear();
            let crashed = self.pg.crashed();
            out.process = Process::Stopped { crashed };
            out.role = self.stopped_role().await;
        } else {
            match self.pg.state().await {
                Ok(st) => {
                    out.process = Process::Running;
                    out.role = match st.role {
                        keel_postgres::Role::Primary => PgRole::Primary,
                        keel_postgres::Role::Replica => PgRole::Replica,
                    };
                    out.timeline = match st.role {
                        keel_postgres::Role::Replica if st.wal_receiver_status.is_none() => {
                            self.replay_timeline(cluster).await.or(st.timeline)
                        }
                        _ => st.timeline,
                    }
                    .unwrap_or(0);
                    out.wal_position = match st.role {
                        keel_postgres::Role::Primary => st.wal_lsn.map_or(0, |l| l.0),
                        keel_postgres::Role::Replica => {
                            st.receive_lsn.max(st.replay_lsn).map_or(0, |l| l.0)
                        }
                    };
                    lock(&self.shared).wal_position = Some(out.wal_position);
                    out.pending_restart = self.read_pending_restart().await;
                    out.replication = st
                        .replication
                        .iter()
                        .map(|r| ReplicationRow {
                            name: r.application_name.clone(),
                            streaming: r.state.as_deref() == Some("streaming"),
                            sync_state: r.sync_state.clone().unwrap_or_default(),
                            lsn: r.flush_lsn.map_or(0, |l| l.0),
                        })
                        .collect();
                }
                Err(e) => {
                    tracing::debug!("PostgreSQL not answering yet: {e}");
                    out.process = Process::Starting;
                    out.role = self.stopped_role().await;
                }
            }
        }
        out.divergence = self.divergence(cluster).await;
        out
    }

    /// The timeline a replica without a WAL receiver replays: its state's fallback (the last
    /// restartpoint's) lags behind timeline switches it already followed, which would keep it
    /// out of a failover with check_timeline. Cached per cluster timeline, as Patroni caches it.
    async fn replay_timeline(&mut self, cluster: Option<&Cluster>) -> Option<u32> {
        let cluster_timeline = cluster.map_or(0, Cluster::timeline);
        if let Some((under, tli)) = self.replay_timeline
            && under == cluster_timeline
        {
            return Some(tli);
        }
        match self.pg.replay_timeline().await {
            Ok(tli) => {
                self.replay_timeline = Some((cluster_timeline, tli));
                Some(tli)
            }
            Err(e) => {
                tracing::debug!("replay timeline unknown: {e}");
                None
            }
        }
    }

    async fn read_sysid(&mut self) -> Option<String> {
        if self.sysid.is_none() {
            match self.pg.controldata().await {
                Ok(cd) => self.sysid = cd.system_identifier().map(|id| id.to_string()),
                Err(e) => tracing::warn!("pg_controldata: {e}"),
            }
        }
        self.sysid.clone()
    }

    /// The role of a stopped (or not yet answering) server, from its files.
    async fn stopped_role(&self) -> PgRole {
        let dir = self.pg.data_dir();
        if dir.join("standby.signal").exists() || dir.join("recovery.signal").exists() {
            return PgRole::Replica;
        }
        match self.pg.controldata().await {
            Ok(cd) => match cd.state() {
                Some("in production" | "shut down" | "shutting down" | "in crash recovery") => {
                    PgRole::Primary
                }
                _ => PgRole::Replica,
            },
            Err(_) => PgRole::Replica,
        }
    }

    /// Compare with the leader's history when a check is due.
    async fn divergence(&mut self, cluster: Option<&Cluster>) -> Divergence {
        if self.pg.rewind_failed() {
            return Divergence::RewindFailed;
        }
        if !self.memory.rewind_check || self.sysid.is_none() || self.task.is_some() {
            return Divergence::Unknown;
        }
        let Some(leader) = cluster.and_then(|c| c.leader.as_ref()) else {
            return Divergence::Unknown;
        };
        if leader.name == self.settings.name {
            return Divergence::Unknown;
        }
        let Some(up) = leader.conn_url().and_then(upstream_of) else {
            return Divergence::Unknown;
        };
        match self.pg.check_divergence(&up).await {
            Ok(keel_postgres::Divergence::None) => {
                self.memory.rewind_check = false;
                Divergence::None
            }
            Ok(keel_postgres::Divergence::Diverged {
                local_timeline,
                local_lsn,
                leader_timeline,
            }) => {
                tracing::warn!(
                    "local timeline {local_timeline} at {local_lsn} diverged from leader {} on \
                     timeline {leader_timeline}",
                    leader.name
                );
                Divergence::Diverged
            }
            Err(e) => {
                tracing::info!("cannot compare timelines with {} yet: {e}", leader.name);
                Divergence::Unknown
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conn_urls_parse() {
        let up = upstream_of("postgres://127.0.0.1:5433/postgres").expect("parses");
        assert_eq!(
            (up.host.as_str(), up.port, up.dbname.as_str()),
            ("127.0.0.1", 5433, "postgres")
        );
        let up = upstream_of("postgres://[::1]:5432/app").expect("parses");
        assert_eq!(
            (up.host.as_str(), up.port, up.dbname.as_str()),
            ("::1", 5432, "app")
        );
        assert!(upstream_of("http://x").is_none());
        assert!(upstream_of("postgres://h:notaport/x").is_none());
    }
}
