//! §4.7: synchronous replication as the primary keeps it.
//!
//! The rule that makes it safe: a name enters `/sync` only after PostgreSQL
//! already treats it as synchronous, and leaves `/sync` before PostgreSQL stops
//! waiting for it. Only `/sync` members may race for the lock, so a commit
//! acknowledged by a synchronous standby is never lost by a failover.
//!
//! `synchronous_mode: quorum` is run with the same priority rules for now (a
//! stricter setting: every listed standby must confirm); the quorum resolver is
//! still to come.

use std::collections::BTreeSet;

use keel_config::DynamicConfig;
use keel_model::SyncState;

use crate::decide::Cycle;
use crate::members::{is_running, tags_of};
use crate::observation::ConfigExt;
use crate::plan::Action;

/// `synchronous_standby_names` when no standby is picked.
pub(crate) fn empty_names(cfg: &DynamicConfig) -> String {
    if cfg.synchronous_mode_strict {
        "*".to_owned()
    } else {
        String::new()
    }
}

/// A name as it goes into `synchronous_standby_names`.
fn quote(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain && name != "first" && name != "any" {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Patroni's rendering: one name as is, several as `N (a,b)`, sorted.
pub(crate) fn render_names(names: &BTreeSet<String>) -> String {
    let quoted: Vec<String> = names.iter().map(|n| quote(n)).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{n} ({})", quoted.join(",")),
    }
}

/// The standbys to make synchronous, and those already fit to be promoted.
fn pick(c: &Cycle<'_>) -> (BTreeSet<String>, BTreeSet<String>) {
    let obs = c.obs;
    let cfg = &obs.config;
    let pg = &obs.postgres;
    let wanted = if cfg.synchronous_mode_strict {
        cfg.synchronous_node_count.max(1)
    } else {
        cfg.synchronous_node_count
    } as usize;
    struct Candidate<'r> {
        name: &'r str,
        sync_priority: i64,
        nofailover: bool,
        sync: bool,
        lsn: u64,
    }
    let mut candidates: Vec<Candidate<'_>> = pg
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
            (is_running(member) && !tags.nosync()).then(|| Candidate {
                name: member.name.as_str(),
                sync_priority: tags.sync_priority(),
                nofailover: tags.nofailover(),
                sync: r.sync_state == "sync",
                lsn: r.lsn,
            })
        })
        .collect();
    candidates.sort_by(|a, b| {
        (b.sync_priority, b.sync, b.lsn, !b.nofailover).cmp(&(
            a.sync_priority,
            a.sync,
            a.lsn,
            !a.nofailover,
        ))
    });
    let reference = if candidates.len() == 1 {
        pg.wal_position
    } else {
        candidates.iter().map(|x| x.lsn).max().unwrap_or(0)
    };
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
        if cand.sync && ready {
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
pub(crate) fn maintain(c: &Cycle<'_>) -> Vec<Action> {
    let cfg = &c.obs.config;
    let sync = &c.cluster.sync;
    if !cfg.sync_mode() {
        if !sync.is_empty() {
            return vec![Action::DeleteSync {
                version: sync.version.clone(),
            }];
        }
        return Vec::new();
    }
    if !sync.leader_matches(c.me()) {
        return vec![write(c, &BTreeSet::new())];
    }
    let (picked, allow) = pick(c);
    let current: BTreeSet<String> = sync.voters().iter().cloned().collect();
    let mut actions = Vec::new();
    let names = if picked.is_empty() {
        empty_names(cfg)
    } else {
        render_names(&picked)
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

/// What goes before a promotion in synchronous mode: claim `/sync` for this
/// node (compare-and-set on the version read, so a concurrent change postpones
/// the promotion) and start with no synchronous standby (`*` in strict mode).
pub(crate) fn before_promote(c: &Cycle<'_>) -> Vec<Action> {
    let cfg = &c.obs.config;
    if !cfg.sync_mode() {
        return Vec::new();
    }
    vec![
        write(c, &BTreeSet::new()),
        Action::SetSynchronousStandbyNames(empty_names(cfg)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_rendered_as_patroni_does() {
        let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
        assert_eq!(render_names(&set(&[])), "");
        assert_eq!(render_names(&set(&["b"])), "b");
        assert_eq!(render_names(&set(&["pg-2", "a"])), "2 (a,\"pg-2\")");
        assert_eq!(render_names(&set(&["first"])), "\"first\"");
        assert_eq!(render_names(&set(&["Node1"])), "\"Node1\"");
    }
}
