//! Whether a manual switchover or failover asked for over the REST API can
//! succeed, before the request is written to the DCS (patroni-compat.md
//! §3.5.1 step 7). The lock holder judges the written request again when it
//! acts on it ([`crate::switchover`]); this check only turns hopeless
//! requests away early, with the message `patronictl` shows.

use keel_config::DynamicConfig;
use keel_model::{Cluster, Member};

use crate::PeerStatus;
use crate::observation::ConfigExt;

/// Which endpoint the request came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManualKind {
    /// `POST /switchover` (or `/failover` naming a leader).
    Switchover,
    /// `POST /failover` to a candidate.
    Failover,
}

impl ManualKind {
    /// `switchover` or `failover`, as in Patroni's messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Switchover => "switchover",
            Self::Failover => "failover",
        }
    }
}

/// The members whose status decides the request: ask each for `GET /patroni`
/// and pass the answers to [`judge`]. `Err` is the reason it is refused
/// without asking anyone.
pub fn candidates<'c>(
    kind: ManualKind,
    leader: Option<&str>,
    candidate: Option<&str>,
    cluster: &'c Cluster,
    config: &DynamicConfig,
) -> Result<Vec<&'c Member>, String> {
    let action = kind.as_str();
    let current = cluster.leader.as_ref().map(|l| l.name.as_str());
    if leader.is_some() && leader != current {
        return Err("leader name does not match".to_owned());
    }
    // In quorum mode any member may be promoted; `on` mode insists on /sync.
    let sync_on = config.sync_mode() && !config.quorum_mode();
    if let Some(candidate) = candidate {
        if kind == ManualKind::Switchover && sync_on && !cluster.sync.matches(candidate, false) {
            return Err("candidate name does not match with sync_standby".to_owned());
        }
        let found: Vec<&Member> = cluster
            .members
            .iter()
            .filter(|m| m.name == candidate)
            .collect();
        if found.is_empty() {
            return Err("candidate does not exists".to_owned());
        }
        return Ok(found);
    }
    if sync_on {
        let found: Vec<&Member> = cluster
            .members
            .iter()
            .filter(|m| cluster.sync.matches(&m.name, false))
            .collect();
        if found.is_empty() {
            return Err(format!(
                "{action} is not possible: can not find sync_standby"
            ));
        }
        return Ok(found);
    }
    let found: Vec<&Member> = cluster
        .members
        .iter()
        .filter(|m| Some(m.name.as_str()) != current && m.data.api_url.is_some())
        .collect();
    if found.is_empty() {
        return Err(format!(
            "{action} is not possible: cluster does not have members except leader"
        ));
    }
    Ok(found)
}

/// Given the candidates' statuses, is one of them fit to be promoted
/// (reachable, allowed to fail over, watchdog healthy)?
pub fn judge(kind: ManualKind, statuses: &[PeerStatus]) -> Result<(), String> {
    if statuses
        .iter()
        .any(|p| p.reachable && !p.nofailover && !p.watchdog_failed)
    {
        Ok(())
    } else {
        Err(format!(
            "{} is not possible: no good candidates have been found",
            kind.as_str()
        ))
    }
}

#[cfg(test)]
mod tests {
    use keel_config::SynchronousMode;

    use super::*;
    use crate::testing::{cluster_with, peer};

    fn names(found: Result<Vec<&Member>, String>) -> Result<Vec<String>, String> {
        found.map(|ms| ms.iter().map(|m| m.name.clone()).collect())
    }

    #[test]
    fn a_leader_that_is_not_the_leader_is_refused() {
        let view = cluster_with(Some("a"), &["a", "b"], &[]);
        let cfg = DynamicConfig::default();
        let got = candidates(ManualKind::Switchover, Some("b"), None, &view, &cfg);
        assert_eq!(names(got), Err("leader name does not match".into()));
    }

    #[test]
    fn without_a_candidate_every_other_member_is_asked() {
        let view = cluster_with(Some("a"), &["a", "b", "c"], &[]);
        let cfg = DynamicConfig::default();
        let got = candidates(ManualKind::Switchover, Some("a"), None, &view, &cfg);
        assert_eq!(names(got), Ok(vec!["b".into(), "c".into()]));
    }

    #[test]
    fn an_unknown_candidate_is_refused() {
        let view = cluster_with(Some("a"), &["a", "b"], &[]);
        let cfg = DynamicConfig::default();
        let got = candidates(ManualKind::Failover, None, Some("z"), &view, &cfg);
        assert_eq!(names(got), Err("candidate does not exists".into()));
    }

    #[test]
    fn sync_mode_on_wants_a_candidate_from_sync_but_quorum_does_not() {
        let view = cluster_with(
            Some("a"),
            &["a", "b", "c"],
            &[("sync", r#"{"leader":"a","quorum":0,"sync_standby":"b"}"#)],
        );
        let mut cfg = DynamicConfig::default();
        cfg.synchronous_mode = SynchronousMode::On;
        let got = candidates(ManualKind::Switchover, Some("a"), Some("c"), &view, &cfg);
        assert_eq!(
            names(got),
            Err("candidate name does not match with sync_standby".into())
        );
        let got = candidates(ManualKind::Switchover, Some("a"), None, &view, &cfg);
        assert_eq!(names(got), Ok(vec!["b".into()]));
        cfg.synchronous_mode = SynchronousMode::Quorum;
        let got = candidates(ManualKind::Switchover, Some("a"), Some("c"), &view, &cfg);
        assert_eq!(names(got), Ok(vec!["c".into()]));
    }

    #[test]
    fn sync_mode_without_a_sync_standby_is_refused() {
        let view = cluster_with(Some("a"), &["a", "b"], &[]);
        let mut cfg = DynamicConfig::default();
        cfg.synchronous_mode = SynchronousMode::On;
        let got = candidates(ManualKind::Switchover, Some("a"), None, &view, &cfg);
        assert_eq!(
            names(got),
            Err("switchover is not possible: can not find sync_standby".into())
        );
    }

    #[test]
    fn a_lone_leader_has_nobody_to_hand_over_to() {
        let view = cluster_with(Some("a"), &["a"], &[]);
        let cfg = DynamicConfig::default();
        let got = candidates(ManualKind::Switchover, Some("a"), None, &view, &cfg);
        assert_eq!(
            names(got),
            Err("switchover is not possible: cluster does not have members except leader".into())
        );
    }

    #[test]
    fn only_a_reachable_promotable_peer_counts() {
        let mut unwilling = peer("b", false);
        unwilling.nofailover = true;
        let gone = PeerStatus::unreachable("c");
        assert_eq!(
            judge(ManualKind::Failover, &[unwilling, gone.clone()]),
            Err("failover is not possible: no good candidates have been found".into())
        );
        assert_eq!(
            judge(ManualKind::Failover, &[gone, peer("d", false)]),
            Ok(())
        );
    }
}
