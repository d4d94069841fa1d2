//! Who may become leader (§4.3 and §4.6 of patroni-compat.md): Patroni's
//! `is_healthiest_node`, `_is_healthiest_node`, `manual_failover_process_no_leader`
//! and `is_failover_possible`.

use std::collections::BTreeMap;

use keel_model::Failover;

use crate::decide::Cycle;
use crate::members::tags_of;
use crate::observation::{ConfigExt, PeerStatus};
use crate::plan::{Action, PeerRequest, Plan, Question};

/// Every member worth asking: the current view, the last view with a leader and,
/// in failsafe mode, the `/failsafe` list. Not this node; only members with an API.
fn peer_requests(c: &Cycle<'_>) -> Vec<PeerRequest> {
    let mut urls: BTreeMap<String, String> = BTreeMap::new();
    for m in &c.obs.memory.previous_members {
        if let Some(url) = &m.api_url {
            urls.insert(m.name.clone(), url.clone());
        }
    }
    if c.obs.config.failsafe_mode
        && let Some(fs) = &c.cluster.failsafe
    {
        for (name, url) in &fs.members {
            urls.insert(name.clone(), url.clone());
        }
    }
    for m in &c.cluster.members {
        if let Some(url) = &m.data.api_url {
            urls.insert(m.name.clone(), url.clone());
        }
    }
    urls.remove(c.me());
    urls.into_iter()
        .map(|(name, api_url)| PeerRequest { name, api_url })
        .collect()
}

/// The peers' statuses, asking for them the first time they are needed.
pub(crate) fn peers(c: &Cycle<'_>) -> Result<Vec<PeerStatus>, Question> {
    if let Some(peers) = &c.obs.answers.peers {
        return Ok(peers.clone());
    }
    let requests = peer_requests(c);
    if requests.is_empty() {
        return Ok(Vec::new());
    }
    Err(Question::Peers(requests))
}

/// Patroni's `is_healthiest_node`: may this node race for the lock? The plan
/// carries side writes (clearing a stale failover key) and an explanation.
pub(crate) fn is_healthiest_node(c: &Cycle<'_>) -> Result<(bool, Plan), Question> {
    let obs = c.obs;
    let pg = &obs.postgres;
    let me = c.me();
    let mut plan = Plan::new("");
    if let Some(at) = obs.memory.pre_promote_failed_at
        && obs.now - at < chrono::Duration::seconds(obs.config.ttl.into())
    {
        return Ok((false, plan));
    }
    let failover = c.cluster.failover.as_ref().filter(|f| f.is_set());

    if c.paused()
        && !obs.me.nofailover()
        && let Some(f) = failover.filter(|f| f.scheduled_at.is_none())
    {
        match manual_failover_no_leader(c, f)? {
            Verdict::Yes => return Ok((true, plan)),
            Verdict::No => return Ok((false, plan)),
            Verdict::Continue(actions) => plan = plan.then(actions),
        }
    }
    if c.acts_as_primary() {
        let healthy = if c.paused() {
            match c.cluster.initialize.as_deref() {
                None | Some("") => true,
                Some(id) => pg.sysid() == Some(id),
            }
        } else {
            pg.timeline >= c.cluster.timeline()
        };
        return Ok((healthy, plan));
    }
    if c.paused() || obs.me.nofailover() {
        return Ok((false, plan));
    }
    if obs.me.watchdog_failed {
        plan.warnings
            .push("Watchdog device is not usable".to_owned());
        return Ok((false, plan));
    }
    // Before the failover key (Patroni checks it after): a primary running on
    // in failsafe mode only reaches the members in `/failsafe`, so nobody else
    // may take over, requested or not (found by keel-sim: a pending switchover
    // let an unlisted node promote next to the failsafe primary).
    if obs.config.failsafe_mode
        && let Some(fs) = &c.cluster.failsafe
        && !fs.members.is_empty()
        && !fs.members.contains_key(me)
    {
        return Ok((false, plan));
    }
    let in_sync = c.cluster.sync.matches(me, true);
    if let Some(f) = failover {
        if f.leader.is_some() && c.sync_active() && !obs.config.quorum_mode() && !in_sync {
            return Ok((false, plan));
        }
        match manual_failover_no_leader(c, f)? {
            Verdict::Yes => return Ok((true, plan)),
            Verdict::No => return Ok((false, plan)),
            Verdict::Continue(actions) => plan = plan.then(actions),
        }
    }
    if c.sync_active() && !obs.config.quorum_mode() && !in_sync {
        return Ok((false, plan));
    }
    Ok((healthiest_among(c, None, true)?, plan))
}

/// The outcome of the manual-failover rules without a leader.
#[derive(Debug, PartialEq)]
enum Verdict {
    Yes,
    No,
    /// Not decided by the request; go on with the normal checks after these writes.
    Continue(Vec<Action>),
}

fn manual_failover_no_leader(c: &Cycle<'_>, f: &Failover) -> Result<Verdict, Question> {
    let me = c.me();
    if let Some(candidate) = f.candidate.as_deref() {
        if candidate == me {
            // Paused, nothing stops a former primary that lost its key (no
            // demotion, no watchdog): take over only once it has stepped down.
            if c.paused() && !former_primary_stepped_down(c, f)? {
                return Ok(Verdict::No);
            }
            // A switchover whose leader went away before carrying it out: with
            // quorum commit the candidate may lack commits other voters
            // confirmed, so it needs the votes a failover needs, or the request
            // is void. (Patroni takes over unconditionally here; keel-sim found
            // the lost commit.) A failover the operator forced is obeyed.
            if f.leader.is_some()
                && c.sync_active()
                && c.obs.config.quorum_mode()
                && !c.paused()
                && !healthiest_among(c, None, false)?
            {
                return Ok(Verdict::Continue(vec![Action::ClearFailover {
                    version: f.version.clone(),
                }]));
            }
            return Ok(Verdict::Yes);
        }
        if c.paused() {
            // The primary named as the former leader lost its key before it
            // could carry the switchover out: the request is void (found by
            // keel-sim; waiting for it left the cluster without a key holder).
            let void = c.cluster.member(candidate).is_none() || f.leader.as_deref() == Some(me);
            if void && c.acts_as_primary() {
                return Ok(Verdict::Continue(vec![Action::ClearFailover {
                    version: f.version.clone(),
                }]));
            }
            return Ok(Verdict::No);
        }
        if c.sync_active() && !c.obs.config.quorum_mode() && !c.cluster.sync.matches(me, true) {
            return Ok(Verdict::No);
        }
        // A candidate that may not race (a switchover candidate outside
        // `/sync`, or outside a non-empty `/failsafe`) would block every
        // election if we waited for it (found by keel-sim).
        let outside_sync = f.leader.is_some()
            && c.sync_active()
            && !c.obs.config.quorum_mode()
            && !c.cluster.sync.matches(candidate, true);
        let may_race = !outside_sync && !outside_failsafe(c, candidate);
        if may_race && c.cluster.member(candidate).is_some() {
            let usable = peers(c)?
                .iter()
                .any(|p| p.name == candidate && p.reachable && p.running && !p.nofailover);
            if usable {
                return Ok(Verdict::No);
            }
        }
        // The candidate cannot take over: treat the request as having none.
    } else if c.paused() {
        return Ok(Verdict::No);
    }
    if f.leader.as_deref() == Some(me) {
        return Ok(if failover_possible(c, None, true)? {
            Verdict::No
        } else {
            Verdict::Yes
        });
    }
    Ok(if healthiest_among(c, f.leader.as_deref(), false)? {
        Verdict::Yes
    } else {
        Verdict::No
    })
}

/// Failsafe mode and a non-empty `/failsafe` without `name`: it may not race.
fn outside_failsafe(c: &Cycle<'_>, name: &str) -> bool {
    c.obs.config.failsafe_mode
        && c.cluster
            .failsafe
            .as_ref()
            .is_some_and(|fs| !fs.members.is_empty() && !fs.members.contains_key(name))
}

/// No peer answered as a running primary, and the former leader named by a
/// switchover answered (one that could not even be asked, its member key gone
/// with its lease, may still be running).
fn former_primary_stepped_down(c: &Cycle<'_>, f: &Failover) -> Result<bool, Question> {
    let peers = peers(c)?;
    if peers
        .iter()
        .any(|p| p.reachable && p.running && !p.in_recovery)
    {
        return Ok(false);
    }
    Ok(match f.leader.as_deref().filter(|l| *l != c.me()) {
        Some(leader) => peers.iter().any(|p| p.name == leader && p.reachable),
        None => true,
    })
}

/// Patroni's `_is_healthiest_node`: compare this node with every peer that
/// answered (except `exclude`).
fn healthiest_among(
    c: &Cycle<'_>,
    exclude: Option<&str>,
    check_lag: bool,
) -> Result<bool, Question> {
    let obs = c.obs;
    let pg = &obs.postgres;
    let cfg = &obs.config;
    if !pg.is_running() {
        return Ok(false);
    }
    let mine = pg.wal_position;
    let optime = c.cluster.status.optime;
    if check_lag && optime > mine && optime - mine > cfg.maximum_lag_on_failover {
        return Ok(false);
    }
    let timeline_floor =
        (cfg.check_timeline && !cfg.is_standby_cluster()).then(|| c.cluster.timeline());
    if timeline_floor.is_some_and(|floor| pg.timeline < floor) {
        return Ok(false);
    }
    let sync = &c.cluster.sync;
    let sync_active = c.sync_active();
    let quorum = sync_active && cfg.quorum_mode();
    let my_priority = obs.me.tags.failover_priority();
    let mut votes: i64 = if sync.matches(c.me(), true) { 0 } else { -1 };
    let mut ahead = 0;
    for p in peers(c)? {
        if Some(p.name.as_str()) == exclude || !p.reachable || p.nofailover || p.watchdog_failed {
            continue;
        }
        if sync_active && !sync.matches(&p.name, true) {
            continue;
        }
        if p.running && !p.in_recovery {
            return Ok(false);
        }
        // A peer that may not race itself (behind the cluster timeline with
        // check_timeline, or left out of a non-empty `/failsafe`) must not stop
        // us either: otherwise nobody wins (found by keel-sim).
        if timeline_floor.is_some_and(|floor| p.timeline < floor) || outside_failsafe(c, &p.name) {
            continue;
        }
        let former_leader = sync_active && sync.leader_matches(&p.name);
        if p.wal_position > mine {
            if former_leader {
                ahead += 1;
                continue;
            }
            return Ok(false);
        }
        let voter = !quorum || sync.matches(&p.name, true);
        if p.wal_position == mine && p.failover_priority > my_priority && voter && !former_leader {
            return Ok(false);
        }
        if quorum && p.running && p.wal_position > 0 {
            votes += 1;
        }
    }
    if quorum {
        let quorum_size = i64::from(sync.quorum);
        return Ok(votes >= quorum_size || (sync.leader_matches(c.me()) && ahead == 0));
    }
    Ok(true)
}

/// Patroni's `is_failover_possible`: is some other member fit to take over?
/// `cluster_lsn`: the position it must have reached (a shutdown checkpoint).
pub(crate) fn failover_possible(
    c: &Cycle<'_>,
    cluster_lsn: Option<u64>,
    exclude_candidate: bool,
) -> Result<bool, Question> {
    let obs = c.obs;
    let cfg = &obs.config;
    let failover = c.cluster.failover.as_ref().filter(|f| f.is_set());
    let candidate = failover
        .and_then(|f| f.candidate.as_deref())
        .filter(|_| !exclude_candidate);
    let without_leader = failover.is_some_and(|f| f.leader.is_none());
    let sync = &c.cluster.sync;
    let eligible: Vec<&str> = c
        .cluster
        .members
        .iter()
        .filter(|m| m.name != c.me() && m.data.api_url.is_some())
        .filter(|m| !tags_of(m).nofailover() && !outside_failsafe(c, &m.name))
        .filter(|m| !c.sync_active() || without_leader || sync.matches(&m.name, false))
        .filter(|m| candidate.is_none_or(|cand| cand == m.name))
        .map(|m| m.name.as_str())
        .collect();
    if eligible.is_empty() {
        return Ok(false);
    }
    let optime = c.cluster.status.optime;
    let timeline = c.cluster.timeline();
    let healthy = peers(c)?
        .iter()
        .filter(|p| eligible.contains(&p.name.as_str()))
        .filter(|p| p.reachable && p.running && !p.nofailover && !p.watchdog_failed)
        .filter(|p| match cluster_lsn {
            Some(lsn) => p.wal_position >= lsn,
            None => {
                optime <= p.wal_position || optime - p.wal_position <= cfg.maximum_lag_on_failover
            }
        })
        .filter(|p| !cfg.check_timeline || p.timeline >= timeline)
        .count();
    if c.sync_active() && cfg.quorum_mode() && candidate.is_none() {
        return Ok(healthy as i64 > i64::from(sync.quorum));
    }
    Ok(healthy > 0)
}

#[cfg(test)]
mod tests {
    use keel_config::SynchronousMode;

    use crate::testing::{cluster_with, observation, peer, replica};
    use crate::{Decision, PeerStatus, Question, decide};

    /// A switchover request naming a candidate outside `/sync` must not stop
    /// the `/sync` members from taking over when the leader is gone: the
    /// candidate may not race, and deferring to it deadlocked the cluster
    /// (found by keel-sim).
    #[test]
    fn a_candidate_outside_sync_does_not_block_the_race() {
        let view = cluster_with(
            None,
            &["n0", "n1"],
            &[
                ("sync", r#"{"leader":"n1","quorum":0,"sync_standby":null}"#),
                ("failover", r#"{"leader":"n1","member":"n0"}"#),
            ],
        );
        let mut obs = observation("n1", view, replica(None));
        obs.config.synchronous_mode = SynchronousMode::On;
        obs.answers.peers = Some(vec![peer("n0", false)]);
        assert_eq!(decide(&obs), Decision::Ask(Question::AcquireLock));
    }

    /// With check_timeline, a peer ahead in LSN but behind the cluster timeline
    /// (it cannot win) does not stop a node on the current timeline: both
    /// refused and no leader was ever elected (found by keel-sim).
    #[test]
    fn a_peer_on_an_abandoned_timeline_does_not_block_the_race() {
        let view = cluster_with(
            None,
            &["n0", "n1"],
            &[("history", r#"[[1,100,"r"],[2,500,"r"]]"#)],
        );
        let mut pg = replica(None);
        pg.timeline = 3;
        let mut obs = observation("n1", view, pg);
        obs.config.check_timeline = true;
        let mut ahead = peer("n0", false);
        ahead.wal_position = 2000;
        obs.answers.peers = Some(vec![ahead.clone()]);
        assert_eq!(decide(&obs), Decision::Ask(Question::AcquireLock));
        // On the current timeline, the peer ahead wins instead.
        ahead.timeline = 3;
        obs.answers.peers = Some(vec![ahead]);
        assert_ne!(decide(&obs), Decision::Ask(Question::AcquireLock));
    }

    /// In failsafe mode a peer left out of `/failsafe` may not race, so its
    /// WAL does not stop a listed node (found by keel-sim: no leader ever).
    #[test]
    fn a_peer_outside_failsafe_does_not_block_the_race() {
        let view = cluster_with(
            None,
            &["n0", "n1"],
            &[("failsafe", r#"{"n1":"http://n1:8008/patroni"}"#)],
        );
        let mut obs = observation("n1", view, replica(None));
        obs.config.failsafe_mode = true;
        let mut ahead = peer("n0", false);
        ahead.wal_position = 2000;
        obs.answers.peers = Some(vec![ahead]);
        assert_eq!(decide(&obs), Decision::Ask(Question::AcquireLock));
    }

    /// A switchover candidate outside `/failsafe` may not race, so the listed
    /// former leader takes over instead of waiting for it (found by keel-sim).
    #[test]
    fn a_candidate_outside_failsafe_does_not_block_the_race() {
        let view = cluster_with(
            None,
            &["n0", "n1"],
            &[
                ("failsafe", r#"{"n0":"http://n0:8008/patroni"}"#),
                ("failover", r#"{"leader":"n0","member":"n1"}"#),
            ],
        );
        let mut obs = observation("n0", view, replica(None));
        obs.config.failsafe_mode = true;
        obs.answers.peers = Some(vec![peer("n1", false)]);
        assert_eq!(decide(&obs), Decision::Ask(Question::AcquireLock));
    }

    /// In failsafe mode a node missing from `/failsafe` may not race even
    /// with a switchover request pending: the former primary may still run in
    /// failsafe, reaching only the listed members (found by keel-sim).
    #[test]
    fn failsafe_membership_goes_before_the_failover_key() {
        let view = cluster_with(
            None,
            &["n0", "n1", "n2"],
            &[
                (
                    "failsafe",
                    r#"{"n1":"http://n1:8008/patroni","n2":"http://n2:8008/patroni"}"#,
                ),
                ("failover", r#"{"leader":"n2","member":"n1"}"#),
            ],
        );
        let mut obs = observation("n0", view, replica(None));
        obs.config.failsafe_mode = true;
        obs.answers.peers = Some(vec![PeerStatus::unreachable("n1")]);
        assert!(matches!(decide(&obs), Decision::Act(_)));
    }

    /// Paused, a switchover candidate takes over only once the former primary
    /// answers and runs as a replica: a frozen primary whose key expired keeps
    /// running (paused nodes never demote), so promoting now made two
    /// primaries (found by keel-sim).
    #[test]
    fn a_paused_candidate_waits_for_the_former_primary() {
        let view = cluster_with(
            None,
            &["n0", "n2"],
            &[("failover", r#"{"leader":"n0","member":"n2"}"#)],
        );
        let mut obs = observation("n2", view, replica(Some("n0")));
        obs.config.pause = true;
        let acquire = Decision::Ask(Question::AcquireLock);
        obs.answers.peers = Some(vec![PeerStatus::unreachable("n0")]);
        assert_ne!(decide(&obs), acquire);
        obs.answers.peers = Some(Vec::new());
        assert_ne!(decide(&obs), acquire);
        obs.answers.peers = Some(vec![peer("n0", true)]);
        assert_ne!(decide(&obs), acquire);
        obs.answers.peers = Some(vec![peer("n0", false)]);
        assert_eq!(decide(&obs), acquire);
    }
}
