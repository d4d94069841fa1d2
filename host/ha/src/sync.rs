//! §4.7: synchronous replication as the primary keeps it.
//!
//! The rule that makes it safe: a name enters `/sync` only after PostgreSQL
//! already treats it as synchronous, and leaves `/sync` before PostgreSQL stops
//! waiting for it. Only `/sync` members may race for the lock, so a commit
//! acknowledged by a synchronous standby is never lost by a failover.
//!
//! `synchronous_mode: quorum` keeps `ANY n (…)` and the `/sync` quorum in step
//! through [`crate::quorum`].

use std::collections::BTreeSet;

use chrono::Duration;
use keel_config::DynamicConfig;
use keel_model::SyncState;

use crate::decide::Cycle;
use crate::members::{is_running, tags_of};
use crate::observation::ConfigExt;
use crate::plan::{Action, Plan};
use crate::quorum::{self, NameSet, QuorumInput, QuorumStep};
use crate::standby_names::{self, StandbyNames, render_priority, render_quorum};

/// `synchronous_standby_names` when no standby is picked: empty, or any one
/// standby in strict mode.
pub(crate) fn empty_names(cfg: &DynamicConfig) -> String {
    match (cfg.synchronous_mode_strict, cfg.quorum_mode()) {
        (false, _) => String::new(),
        (true, false) => "*".to_owned(),
        (true, true) => render_quorum(1, &NameSet::new()),
    }
}

/// Commits wait for at least this many standbys (1 in strict mode).
fn min_synchronous(cfg: &DynamicConfig) -> usize {
    usize::from(cfg.synchronous_mode_strict)
}

/// A streaming standby that may be synchronous: a running member, not this
/// node, not `nosync` (Patroni's `_ReplicaList`).
struct Standby<'r> {
    name: &'r str,
    sync_priority: i64,
    nofailover: bool,
    /// `pg_stat_replication.sync_state`.
    sync_state: &'r str,
    lsn: u64,
}

impl Standby<'_> {
    fn is_sync(&self) -> bool {
        self.sync_state == "sync"
    }
}

fn standbys<'c>(c: &'c Cycle<'_>) -> Vec<Standby<'c>> {
    c.obs
        .postgres
        .replication
        .iter()
        .filter(|r| r.streaming && !r.name.eq_ignore_ascii_case(c.me()))
        .filter_map(|r| {
            let member = c
                .cluster
                .members
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(&r.name))?;
            let tags = tags_of(member);
            (is_running(member) && !tags.nosync()).then(|| Standby {
                name: member.name.as_str(),
                sync_priority: tags.sync_priority(),
                nofailover: tags.nofailover(),
                sync_state: r.sync_state.as_str(),
                lsn: r.lsn,
            })
        })
        .collect()
}

/// What `maximum_lag_on_syncnode` is measured against: the most advanced
/// standby, or the primary's own position when there is only one.
fn lag_reference(c: &Cycle<'_>, standbys: &[Standby<'_>]) -> u64 {
    if standbys.len() > 1 {
        standbys.iter().map(|s| s.lsn).max().unwrap_or(0)
    } else {
        c.obs.postgres.wal_position
    }
}

/// The standbys to make synchronous, and those already fit to be promoted.
fn pick(c: &Cycle<'_>) -> (BTreeSet<String>, BTreeSet<String>) {
    let obs = c.obs;
    let cfg = &obs.config;
    let wanted = if cfg.synchronous_mode_strict {
        cfg.synchronous_node_count.max(1)
    } else {
        cfg.synchronous_node_count
    } as usize;
    let mut candidates = standbys(c);
    candidates.sort_by(|a, b| {
        let key = |s: &Standby<'_>| (s.sync_priority, s.is_sync(), s.lsn, !s.nofailover);
        key(b).cmp(&key(a))
    });
    let reference = lag_reference(c, &candidates);
    let max_lag = cfg.maximum_lag_on_syncnode;
    let current = &c.cluster.sync;
    let mut picked = BTreeSet::new();
    let mut allow = BTreeSet::new();
    for cand in candidates {
        if picked.len() >= wanted {
            break;
        }
        if max_lag > 0 && reference.saturating_sub(cand.lsn) > max_lag.unsigned_abs() {
            continue;
        }
        picked.insert(cand.name.to_owned());
        let ready = current.matches(cand.name, false) || cand.lsn >= obs.memory.ssn_changed_at_lsn;
        if cand.is_sync() && ready {
            allow.insert(cand.name.to_owned());
        }
    }
    (picked, allow)
}

fn write(c: &Cycle<'_>, standbys: &BTreeSet<String>) -> Action {
    Action::WriteSync {
        state: SyncState::new(c.me(), standbys.iter().cloned().collect(), 0),
        version: c.cluster.sync.version.clone(),
    }
}

/// The primary's per-cycle synchronous replication maintenance.
pub(crate) fn maintain(c: &Cycle<'_>, plan: Plan) -> Plan {
    let cfg = &c.obs.config;
    let sync = &c.cluster.sync;
    if !cfg.sync_mode() {
        if !sync.is_empty() {
            return plan.with(Action::DeleteSync {
                version: sync.version.clone(),
            });
        }
        return plan;
    }
    if cfg.quorum_mode() {
        return maintain_quorum(c, plan);
    }
    plan.then(maintain_priority(c))
}

/// `synchronous_mode: on`.
fn maintain_priority(c: &Cycle<'_>) -> Vec<Action> {
    let cfg = &c.obs.config;
    let sync = &c.cluster.sync;
    if !sync.leader_matches(c.me()) {
        return vec![write(c, &BTreeSet::new())];
    }
    let (picked, allow) = pick(c);
    let current: BTreeSet<String> = sync.voters().iter().cloned().collect();
    let mut actions = Vec::new();
    let names = if picked.is_empty() {
        empty_names(cfg)
    } else {
        render_priority(&picked)
    };
    if picked == current {
        if current != allow {
            actions.push(write(c, &allow));
        }
    } else {
        let shrunk: BTreeSet<String> = current.intersection(&allow).cloned().collect();
        if shrunk != current {
            actions.push(write(c, &shrunk));
        }
        if names != c.obs.postgres.synchronous_standby_names {
            actions.push(Action::SetSynchronousStandbyNames(names.clone()));
        }
        if !allow.is_empty() && allow != shrunk {
            actions.push(write(c, &allow));
        }
        return actions;
    }
    if names != c.obs.postgres.synchronous_standby_names {
        actions.push(Action::SetSynchronousStandbyNames(names));
    }
    actions
}

/// What goes before a promotion in synchronous mode.
///
/// `on`: claim `/sync` for this node (compare-and-set on the version read, so a
/// concurrent change postpones the promotion) and start with no synchronous
/// standby (`*` in strict mode).
///
/// `quorum`: commits wait for as many of the other voters, the old leader among
/// them, as the quorum that elected this node guarantees to overlap; and `/sync`
/// names this node as leader, the old one a voter, before the promotion.
/// (Patroni leaves that to the first cycle as primary; keel-sim found the
/// window: a new primary that lost the DCS before that cycle acknowledged
/// commits while `/sync` still let the old leader win a race without votes.)
pub(crate) fn before_promote(c: &Cycle<'_>) -> Vec<Action> {
    let cfg = &c.obs.config;
    if !cfg.sync_mode() {
        return Vec::new();
    }
    if cfg.quorum_mode() {
        let sync = &c.cluster.sync;
        if sync.is_empty() {
            return vec![Action::SetSynchronousStandbyNames(empty_names(cfg))];
        }
        let mut members: NameSet = sync.voters().iter().collect();
        members.insert(sync.leader.as_deref().unwrap_or_default());
        let quorum = usize::try_from(sync.quorum).unwrap_or(usize::MAX);
        let mut num = members.len().saturating_sub(quorum.saturating_add(1));
        let names: NameSet = if members.contains(c.me()) {
            members
                .iter()
                .filter(|n| !n.eq_ignore_ascii_case(c.me()))
                .collect()
        } else {
            // Elected from outside the voters: one more must confirm.
            num += 1;
            members
        };
        let mut actions = Vec::new();
        if !sync.leader_matches(c.me()) {
            actions.push(Action::WriteSync {
                state: SyncState::new(
                    c.me(),
                    names.iter().map(str::to_owned).collect(),
                    sync.quorum,
                ),
                version: sync.version.clone(),
            });
        }
        actions.push(Action::SetSynchronousStandbyNames(render_quorum(
            num, &names,
        )));
        return actions;
    }
    vec![
        write(c, &BTreeSet::new()),
        Action::SetSynchronousStandbyNames(empty_names(cfg)),
    ]
}

/// `synchronous_mode: quorum` on the primary: take over `/sync` after a
/// failover, then move both sides towards "every streaming standby votes".
fn maintain_quorum(c: &Cycle<'_>, mut plan: Plan) -> Plan {
    let obs = c.obs;
    let cfg = &obs.config;
    let sync = &c.cluster.sync;
    let me = c.me();
    let (leader, quorum, voters) = if sync.is_empty() {
        plan = plan.with(Action::WriteSync {
            state: SyncState::new(me, Vec::new(), 0),
            version: sync.version.clone(),
        });
        (me.to_owned(), 0, NameSet::new())
    } else {
        (
            sync.leader.clone().unwrap_or_default(),
            usize::try_from(sync.quorum).unwrap_or(usize::MAX),
            sync.voters().iter().collect(),
        )
    };
    // Standbys need a moment to reconnect to a new primary; dropping the ones
    // not back yet would leave the quorum without them (Patroni waits the same).
    let loop_wait = Duration::seconds(cfg.loop_wait.into());
    if leader.eq_ignore_ascii_case(me)
        && obs
            .memory
            .promoted_at
            .is_some_and(|at| obs.now - at < loop_wait)
    {
        return plan;
    }
    let running = match standby_names::parse(&obs.postgres.synchronous_standby_names) {
        Ok(running) => running,
        Err(e) => {
            plan.warnings
                .push(format!("synchronous_standby_names: {e}; read as empty"));
            StandbyNames::off()
        }
    };
    let min_sync = min_synchronous(cfg);
    let wanted = usize::try_from(cfg.synchronous_node_count)
        .unwrap_or(0)
        .max(min_sync);
    let (active, confirmed) = quorum_candidates(c, &running, wanted);
    let input = QuorumInput {
        leader,
        quorum,
        voters,
        numsync: running.num,
        sync: if running.star {
            NameSet::new()
        } else {
            running.names
        },
        numsync_confirmed: confirmed,
        active,
        sync_wanted: wanted,
        leader_wanted: me.to_owned(),
    };
    let resolution = match quorum::resolve(&input) {
        Ok(r) => r,
        Err(e) => {
            plan.warnings.push(format!(
                "quorum commit: {e}; synchronous replication left as it is"
            ));
            return plan;
        }
    };
    if let Some(e) = resolution.repaired {
        plan.warnings.push(format!(
            "quorum commit: {e}; resetting /sync to the running synchronous_standby_names"
        ));
    }
    for step in resolution.steps {
        match step {
            QuorumStep::WriteSync {
                leader,
                quorum,
                voters,
            } => {
                let voters = voters.iter().map(str::to_owned).collect();
                let quorum = u32::try_from(quorum).unwrap_or(u32::MAX);
                plan = plan.with(Action::WriteSync {
                    state: SyncState::new(leader, voters, quorum),
                    version: sync.version.clone(),
                });
            }
            QuorumStep::SetStandbys { num, names } => {
                let num = if num < min_sync {
                    plan.warnings.push(format!(
                        "replication factor {} requested, but {num} synchronous standbys \
                         available; commits will be delayed",
                        min_sync + 1
                    ));
                    min_sync
                } else {
                    num
                };
                plan = plan.with(Action::SetSynchronousStandbyNames(render_quorum(
                    num, &names,
                )));
            }
            QuorumStep::RunAgainSoon => {
                let soon = obs.now + Duration::seconds(1);
                plan.wake_at = Some(plan.wake_at.map_or(soon, |at| at.min(soon)));
            }
        }
    }
    plan
}

/// The standbys eligible to vote (`active`), and how many of the listed ones
/// have confirmed the position of the last `synchronous_standby_names` change
/// as quorum standbys.
fn quorum_candidates(c: &Cycle<'_>, running: &StandbyNames, wanted: usize) -> (NameSet, usize) {
    let obs = c.obs;
    let mut rows = standbys(c);
    rows.sort_by(|a, b| {
        (b.sync_priority, b.sync_state, b.lsn).cmp(&(a.sync_priority, a.sync_state, a.lsn))
    });
    // Promotable standbys first: a nofailover one only fills up to the count wanted.
    rows.sort_by_key(|r| r.nofailover);
    let reference = lag_reference(c, &rows);
    let max_lag = obs.config.maximum_lag_on_syncnode;
    let mut active = NameSet::new();
    let mut confirmed = 0;
    for row in rows {
        if max_lag > 0 && reference.saturating_sub(row.lsn) > max_lag.unsigned_abs() {
            continue;
        }
        if row.nofailover && active.len() >= wanted {
            continue;
        }
        let ready = running.names.contains(row.name)
            && row.sync_state == "quorum"
            && row.lsn >= obs.memory.ssn_changed_at_lsn;
        if ready {
            confirmed += 1;
        }
        active.insert(row.name);
    }
    (active, confirmed)
}
