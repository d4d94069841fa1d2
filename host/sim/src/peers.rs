//! The REST calls between nodes: `GET /patroni` (the peers' statuses for the
//! leader race) and `POST /failsafe` (a primary that lost the DCS asks the
//! members to accept it). A partition between two nodes, a frozen or crashed
//! host, or a dead daemon makes a call fail.

use keel_ha::{FailsafeAnswer, FailsafeLeader, PeerRequest, PeerStatus};

use crate::sim::World;

impl World {
    /// `GET /patroni` on each requested peer.
    pub(crate) fn peer_statuses(&self, i: usize, requests: &[PeerRequest]) -> Vec<PeerStatus> {
        requests
            .iter()
            .map(|r| {
                let Some(j) = self.index(&r.name).filter(|j| self.rest_ok(i, *j)) else {
                    return PeerStatus::unreachable(r.name.clone());
                };
                let pg = &self.nodes[j].pg;
                let wal = pg.wal().filter(|_| pg.running());
                PeerStatus {
                    name: r.name.clone(),
                    reachable: true,
                    running: pg.running(),
                    in_recovery: !pg.is_primary(),
                    wal_position: wal.map_or(0, |w| w.end()),
                    timeline: wal.map_or(0, |w| w.timeline()),
                    nofailover: false,
                    failover_priority: 1,
                    watchdog_failed: false,
                }
            })
            .collect()
    }

    /// `POST /failsafe` to each requested peer: a running primary refuses, a
    /// peer that accepts remembers the caller as the failsafe leader.
    pub(crate) fn failsafe_round(
        &mut self,
        i: usize,
        requests: &[PeerRequest],
    ) -> (FailsafeAnswer, bool) {
        let at = self.clock();
        let me = self.nodes[i].name.clone();
        let (mut accepted, mut answered) = (true, true);
        for r in requests {
            let Some(j) = self.index(&r.name).filter(|j| self.rest_ok(i, *j)) else {
                accepted = false;
                answered = false;
                continue;
            };
            if self.nodes[j].pg.is_primary() {
                accepted = false;
                continue;
            }
            self.nodes[j].memory.failsafe_leader = Some(FailsafeLeader {
                name: me.clone(),
                at,
            });
        }
        let answer = if accepted {
            FailsafeAnswer::AllAccepted
        } else {
            FailsafeAnswer::NotAll
        };
        let asked: Vec<&str> = requests.iter().map(|r| r.name.as_str()).collect();
        let line = format!("POST /failsafe to {asked:?}: {answer:?}");
        self.trace.push(self.now, &me, line);
        (answer, answered)
    }
}
