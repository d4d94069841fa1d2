//! What a node observes: the [`keel_ha::Observation`] built from the
//! simulated PostgreSQL (with `pg_stat_replication` and Patroni's rewind check
//! against the leader) and what the cycle gathered so far.

use keel_ha::{
    DataDir, DcsUnreachable, Divergence, Me, Observation, Postgres, Process, ReplicationRow,
};
use keel_model::Cluster;

use crate::node::InFlight;
use crate::pg::{Proc, SyncRule};
use crate::sim::World;

impl World {
    /// What node `i` observes now, with what its cycle gathered so far.
    pub(crate) fn observe(&self, i: usize, fl: &InFlight) -> Observation {
        let node = &self.nodes[i];
        let cluster = fl
            .cluster
            .clone()
            .unwrap_or_else(|| Err(DcsUnreachable("not read".to_owned())));
        let postgres = self.pg_observation(i, &cluster);
        Observation {
            now: self.clock(),
            me: Me {
                name: node.name.clone(),
                can_bootstrap: true,
                use_pg_rewind: true,
                remove_data_directory_on_rewind_failure: true,
                ..Me::default()
            },
            config: node.config.1.clone(),
            cluster,
            postgres,
            memory: node.memory.clone(),
            running: node.running.as_ref().map(|r| r.action.kind()),
            answers: fl.answers.clone(),
        }
    }

    fn pg_observation(&self, i: usize, cluster: &Result<Cluster, DcsUnreachable>) -> Postgres {
        let node = &self.nodes[i];
        let pg = &node.pg;
        let wal = pg.wal();
        let divergence = if pg.rewind_failed {
            Divergence::RewindFailed
        } else if node.memory.rewind_check {
            self.divergence(i, cluster)
        } else {
            Divergence::Unknown
        };
        let mut replication = Vec::new();
        if pg.is_primary() {
            let replicas = self.replicas_of(i);
            let names: Vec<&str> = replicas
                .iter()
                .map(|j| self.nodes[*j].name.as_str())
                .collect();
            let states = SyncRule::parse(&pg.ssn).states(&names);
            for (j, state) in replicas.iter().zip(states) {
                replication.push(ReplicationRow {
                    name: self.nodes[*j].name.clone(),
                    streaming: true,
                    sync_state: state.to_owned(),
                    lsn: self.nodes[*j].pg.wal().map_or(0, |w| w.end()),
                });
            }
        }
        Postgres {
            data_dir: match &pg.data {
                None => DataDir::Empty,
                Some(d) => DataDir::Initialized {
                    sysid: d.sysid.clone(),
                },
            },
            process: match pg.proc {
                Proc::Stopped { crashed } => Process::Stopped { crashed },
                Proc::Starting => Process::Starting,
                Proc::Running => Process::Running,
            },
            role: pg.role,
            timeline: wal.map_or(0, |w| w.timeline()),
            wal_position: wal.map_or(0, |w| w.end()),
            upstream: pg.upstream.clone().map(keel_ha::Source::Member),
            synchronous_standby_names: pg.ssn.clone(),
            replication,
            pending_restart: false,
            divergence,
        }
    }

    /// Patroni's rewind check against the leader, when the leader can be asked.
    fn divergence(&self, i: usize, cluster: &Result<Cluster, DcsUnreachable>) -> Divergence {
        let Some(l) = cluster
            .as_ref()
            .ok()
            .and_then(|c| c.leader_name())
            .and_then(|name| self.index(name))
            .filter(|l| *l != i)
        else {
            return Divergence::Unknown;
        };
        let leader = &self.nodes[l];
        if !leader.reachable_host() || !self.linked(i, l) || !leader.pg.is_primary() {
            return Divergence::Unknown;
        }
        match (&self.nodes[i].pg.data, &leader.pg.data) {
            (Some(mine), Some(theirs)) if mine.sysid == theirs.sysid => {
                if mine.wal.diverged_from(&theirs.wal) {
                    Divergence::Diverged
                } else {
                    Divergence::None
                }
            }
            _ => Divergence::Unknown,
        }
    }
}
