//! The invariants, checked after every step.
//!
//! 1. Never two nodes that accept writes (PostgreSQL running as primary on a
//!    host that is not frozen) at the same instant on diverged histories.
//! 2. Strict synchronous mode and quorum commit: every acknowledged commit is
//!    in the history of the current leader (the leader key holder, once it runs as primary).
//! 3. Liveness: within [`Bounds`] of the end of a fault phase there is exactly
//!    one primary and it holds the leader key; then every other node streams
//!    from it; and this holds until the next fault phase. Paused, a node whose
//!    PostgreSQL is stopped is exempt (Patroni never starts it in pause).
//!
//! A watchdog reset or a host coming back after the phase ended counts as part
//! of the faults: the bounds are measured from the last such event.

use std::collections::{BTreeMap, BTreeSet};

use keel_config::DynamicConfig;

use crate::long::durations;
use crate::pg::Proc;
use crate::sim::{Failure, World};
use crate::{Mode, Ms, STEP_MS};

/// How long after the faults end the cluster must have recovered.
///
/// `leader_ms` = `ttl` + `loop_wait` + the longest start + the longest
/// promotion + 2 steps. A leader key whose holder stopped renewing it expires
/// within `ttl`, and the DCS watch wakes the others at once; a node that must
/// first start PostgreSQL does so in its next cycle and races in the one after
/// (2 × `loop_wait` + start, which `ttl` + `loop_wait` + start covers since
/// `loop_wait` < `ttl`); then the promotion.
///
/// `follow_ms` = `leader_ms` + 4 × `loop_wait` + the longest demotion (stop and
/// restart), pg_rewind, clone and start: the slowest path of a former primary
/// is a cycle to arm the rewind check, one to run pg_rewind, one to
/// re-initialize after a failed rewind and one to start PostgreSQL.
///
/// The action times are the simulation's (see `long::durations`): a start
/// takes at most 3 s, a promotion 1.5 s, a demotion 3.5 s, pg_rewind 5 s, a
/// clone 8 s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    /// To one primary holding the leader key (ms).
    pub leader_ms: u64,
    /// To every other node streaming from it (ms).
    pub follow_ms: u64,
}

impl Bounds {
    pub(crate) fn new(cfg: &DynamicConfig) -> Self {
        let ttl = u64::from(cfg.ttl) * 1000;
        let loop_wait = u64::from(cfg.loop_wait) * 1000;
        let leader_ms =
            ttl + loop_wait + durations::START.end + durations::PROMOTE.end + 2 * STEP_MS;
        let follow_ms = leader_ms
            + 4 * loop_wait
            + durations::STOP_GRACEFUL.end
            + durations::RESTART.end
            + durations::REWIND.end
            + durations::CLONE.end
            + durations::START.end;
        Self {
            leader_ms,
            follow_ms,
        }
    }
}

/// A quiet phase being watched.
#[derive(Debug)]
struct Quiet {
    since: Ms,
    until: Ms,
    led: bool,
    converged: bool,
}

/// The checker's state between steps.
#[derive(Debug)]
pub(crate) struct Checker {
    bounds: Bounds,
    /// Per WAL segment, the highest acknowledged commit.
    acked: BTreeMap<u32, u64>,
    /// Segments with new acknowledgements since the last check.
    dirty: BTreeSet<u32>,
    /// The leader (node, its segment) the acknowledged commits were last checked against.
    checked: Option<(usize, u32)>,
    quiet: Option<Quiet>,
}

impl Checker {
    pub(crate) fn new(bounds: Bounds, first_phase: Ms) -> Self {
        Self {
            bounds,
            acked: BTreeMap::new(),
            dirty: BTreeSet::new(),
            checked: None,
            quiet: Some(Quiet {
                since: 0,
                until: first_phase,
                led: false,
                converged: false,
            }),
        }
    }

    /// A commit ending at `lsn` on segment `uid` was acknowledged.
    pub(crate) fn acknowledged(&mut self, uid: u32, lsn: u64) {
        let max = self.acked.entry(uid).or_default();
        *max = (*max).max(lsn);
        self.dirty.insert(uid);
    }

    /// A quiet phase is being watched (no faults now).
    pub(crate) fn quiet(&self) -> bool {
        self.quiet.is_some()
    }

    pub(crate) fn phase_start(&mut self) {
        self.quiet = None;
    }

    pub(crate) fn phase_end(&mut self, now: Ms, next_phase: Ms) {
        self.quiet = Some(Quiet {
            since: now,
            until: next_phase,
            led: false,
            converged: false,
        });
    }

    /// A host came back (or was reset) during a quiet phase.
    pub(crate) fn disturbed(&mut self, now: Ms) {
        if let Some(q) = &mut self.quiet {
            q.since = q.since.max(now);
            q.led = false;
            q.converged = false;
        }
    }
}

impl World {
    pub(crate) fn check(&mut self) -> Result<(), Failure> {
        self.check_writers()?;
        if matches!(
            self.cfg.mode,
            Mode::SyncStrict | Mode::Quorum | Mode::QuorumStrict
        ) {
            self.check_acknowledged()?;
        }
        self.check_liveness()
    }

    /// Invariant 1.
    fn check_writers(&self) -> Result<(), Failure> {
        let writers: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].accepts_writes())
            .collect();
        for (k, a) in writers.iter().enumerate() {
            for b in &writers[k + 1..] {
                let (Some(wa), Some(wb)) = (self.nodes[*a].pg.wal(), self.nodes[*b].pg.wal())
                else {
                    continue;
                };
                if !wa.extends(wb) && !wb.extends(wa) {
                    return Err(Failure(format!(
                        "split brain: {} and {} both accept writes on diverged histories \
                         (common up to {}); {}",
                        self.nodes[*a].name,
                        self.nodes[*b].name,
                        wa.common_prefix(wb),
                        self.describe()
                    )));
                }
            }
        }
        Ok(())
    }

    /// Invariant 2.
    fn check_acknowledged(&mut self) -> Result<(), Failure> {
        let Some(l) = self.dcs.value("leader").and_then(|n| self.index(n)) else {
            return Ok(());
        };
        let leader = &self.nodes[l];
        let Some(wal) = leader
            .pg
            .wal()
            .filter(|_| leader.up && leader.pg.is_primary())
        else {
            return Ok(());
        };
        let key = (l, wal.last_uid());
        let checker = &mut self.checker;
        let all = checker.checked != Some(key);
        let uids: Vec<u32> = if all {
            checker.acked.keys().copied().collect()
        } else {
            checker.dirty.iter().copied().collect()
        };
        for uid in uids {
            let lsn = checker.acked[&uid];
            if !wal.contains(uid, lsn) {
                return Err(Failure(format!(
                    "acknowledged commit lost: the commit at LSN {lsn} (WAL segment {uid}) is \
                     not in the history of the leader {} (timeline {}, LSN {}); {}",
                    leader.name,
                    wal.timeline(),
                    wal.end(),
                    self.describe()
                )));
            }
        }
        checker.checked = Some(key);
        checker.dirty.clear();
        Ok(())
    }

    /// Invariant 3.
    fn check_liveness(&mut self) -> Result<(), Failure> {
        let now = self.now;
        let bounds = self.checker.bounds;
        let Some(q) = &self.checker.quiet else {
            return Ok(());
        };
        if now >= q.until {
            self.checker.quiet = None;
            return Ok(());
        }
        let (since, had_led, was_converged) = (q.since, q.led, q.converged);
        let leader = self.single_leader();
        let converged = leader.is_some_and(|l| self.all_follow(l));
        if leader.is_some() && !had_led {
            if let Some(q) = &mut self.checker.quiet {
                q.led = true;
            }
            self.report.max_leader_ms = self.report.max_leader_ms.max(now - since);
        }
        if converged && !was_converged {
            if let Some(q) = &mut self.checker.quiet {
                q.converged = true;
            }
            self.report.converged += 1;
            self.report.max_convergence_ms = self.report.max_convergence_ms.max(now - since);
        }
        if now >= since + bounds.leader_ms && leader.is_none() {
            return Err(Failure(format!(
                "no single primary holding the leader key {:.1}s after the faults ended \
                 (bound {:.1}s); {}",
                (now - since) as f64 / 1000.0,
                bounds.leader_ms as f64 / 1000.0,
                self.describe()
            )));
        }
        if now >= since + bounds.follow_ms && !converged {
            return Err(Failure(format!(
                "not every node follows the leader {:.1}s after the faults ended (bound \
                 {:.1}s){}; {}",
                (now - since) as f64 / 1000.0,
                bounds.follow_ms as f64 / 1000.0,
                if was_converged {
                    ", although it had converged"
                } else {
                    ""
                },
                self.describe()
            )));
        }
        Ok(())
    }

    /// The one primary, if exactly one node runs as primary and it holds the key.
    fn single_leader(&self) -> Option<usize> {
        let holder = self.dcs.value("leader").and_then(|n| self.index(n))?;
        let primaries: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].up && self.nodes[*i].pg.is_primary())
            .collect();
        (primaries == [holder] && self.nodes[holder].frozen == 0).then_some(holder)
    }

    /// Every other node streams from `leader`. Paused, a node whose PostgreSQL
    /// is stopped is left alone (a paused cluster never starts PostgreSQL).
    fn all_follow(&self, leader: usize) -> bool {
        let name = &self.nodes[leader].name;
        let paused = self.cfg.mode == Mode::Pause;
        (0..self.nodes.len()).filter(|j| *j != leader).all(|j| {
            let node = &self.nodes[j];
            (paused && matches!(node.pg.proc, Proc::Stopped { .. }))
                || (self.streams_from(j) == Some(leader)
                    && node.pg.upstream.as_deref() == Some(name.as_str()))
        })
    }

    /// Every node in a few words, for failure messages.
    pub(crate) fn describe(&self) -> String {
        let holder = self.dcs.value("leader").unwrap_or("-");
        let nodes: Vec<String> = (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                let pg = &n.pg;
                let proc = match pg.proc {
                    Proc::Running => format!("{:?}", pg.role).to_lowercase(),
                    Proc::Starting => "starting".to_owned(),
                    Proc::Stopped { crashed: true } => "crashed".to_owned(),
                    Proc::Stopped { crashed: false } => "stopped".to_owned(),
                };
                let wal = pg.wal().map_or("empty".to_owned(), |w| {
                    format!("tl{} lsn {} segs {}", w.timeline(), w.end(), w.segments())
                });
                let mut flags = Vec::new();
                if !n.up {
                    flags.push("DOWN".to_owned());
                }
                if !n.daemon && n.up {
                    flags.push("no daemon".to_owned());
                }
                if n.frozen > 0 {
                    flags.push("frozen".to_owned());
                }
                if let Some(u) = &pg.upstream {
                    let streaming = self.streams_from(i).is_some();
                    flags.push(format!(
                        "upstream {u}{}",
                        if streaming {
                            " streaming"
                        } else {
                            " NOT streaming"
                        }
                    ));
                }
                if let Some(r) = &n.running {
                    flags.push(format!("running {:?}", r.action.kind()));
                }
                if pg.rewind_failed {
                    flags.push("rewind failed".to_owned());
                }
                format!("{}: {proc} {wal} {}", n.name, flags.join(", "))
            })
            .collect();
        format!(
            "leader key: {holder}; sync: {}; {}",
            self.dcs.value("sync").unwrap_or("-"),
            nodes.join(" | ")
        )
    }
}
