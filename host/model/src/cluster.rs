//! One read of the store, parsed: the [`Cluster`] view the HA loop decides on,
//! and the [`Formation`] view an MPP coordinator gets.
//!
//! Building a view never fails. A daemon that cannot parse one key must still see
//! the others, above all the leader key: refusing the whole read would make a
//! garbled `history` look like a DCS outage and push a healthy primary into
//! failsafe. So every key is parsed on its own, garbage is logged and read as
//! absent (or as the key's documented empty value), and unknown keys are ignored.

use std::collections::{BTreeMap, HashMap};

use crate::entry::{Entry, GroupEntries};

use super::member::{Member, MemberData, Role};
use super::{
    ClusterConfig, Failover, Failsafe, Status, SyncState, TimelineHistory, is_valid_sysid,
};

/// The leader key, joined with the leader's member key.
#[derive(Debug, Clone, PartialEq)]
pub struct Leader {
    /// The leader's name (the key's value).
    pub name: String,
    /// The leader key's version.
    pub version: String,
    /// The session (lease) the leader key is bound to.
    pub session: Option<String>,
    /// The leader's member key, or a stub without data if it is missing.
    pub member: Member,
}

impl Leader {
    /// The leader's timeline from its member key.
    pub fn timeline(&self) -> Option<u32> {
        self.member.data.timeline
    }

    /// The leader's `conn_url` from its member key.
    pub fn conn_url(&self) -> Option<&str> {
        self.member.data.conn_url.as_deref()
    }

    /// Patroni's `Leader.checkpoint_after_promote`: `None` when the leader's version
    /// is unknown or ≤ 1.5.6; otherwise `true` iff it is a primary whose member key
    /// has no `checkpoint_after_promote` field (the checkpoint is done).
    pub fn checkpoint_after_promote(&self) -> Option<bool> {
        let data = &self.member.data;
        let version = data.patroni_version()?;
        if version.as_slice() <= [1, 5, 6].as_slice() {
            return None;
        }
        Some(data.role == Some(Role::Primary) && data.checkpoint_after_promote.is_none())
    }
}

/// The parsed content of one cluster (or one MPP group).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Cluster {
    /// `initialize`: `None` absent, `""` bootstrapping, else the system identifier.
    pub initialize: Option<String>,
    /// `config`, if present (check [`ClusterConfig::is_usable`]).
    pub config: Option<ClusterConfig>,
    /// The leader, if the leader key exists and is not empty.
    pub leader: Option<Leader>,
    /// `status` (else legacy `optime/leader`); empty when neither exists.
    pub status: Status,
    /// Every `members/<name>` key, in store order.
    pub members: Vec<Member>,
    /// `failover`, if present (check [`Failover::is_set`]).
    pub failover: Option<Failover>,
    /// `sync`; the empty state with no version when absent.
    pub sync: SyncState,
    /// `history`, if present.
    pub history: Option<TimelineHistory>,
    /// `failsafe`, if present and an object.
    pub failsafe: Option<Failsafe>,
}

impl Cluster {
    /// Build the view from the raw entries of one cluster or group. Never fails.
    pub fn from_entries(entries: &[Entry]) -> Self {
        let mut by_key: HashMap<&str, &Entry> = HashMap::new();
        let mut members = Vec::new();
        for e in entries {
            if let Some(name) = e.key.strip_prefix("members/") {
                if name.is_empty() || name.contains('/') {
                    tracing::debug!(key = %e.key, "ignoring key below members/");
                    continue;
                }
                members.push(Member {
                    name: name.to_owned(),
                    version: Some(e.version.clone()),
                    session: e.session.clone(),
                    data: MemberData::parse(&e.value, name),
                });
            } else if by_key.insert(e.key.as_str(), e).is_some() {
                tracing::warn!(key = %e.key, "key listed twice in one read, the last wins");
            }
        }
        let get = |k: &str| by_key.get(k).copied();
        let leader = get("leader").and_then(|e| {
            if e.value.is_empty() {
                tracing::warn!("leader key is empty, treated as absent");
                return None;
            }
            let member = members
                .iter()
                .find(|m| m.name == e.value)
                .cloned()
                .unwrap_or_else(|| Member::stub(e.value.clone()));
            Some(Leader {
                name: e.value.clone(),
                version: e.version.clone(),
                session: e.session.clone(),
                member,
            })
        });
        for e in entries {
            let known = [
                "initialize",
                "config",
                "leader",
                "status",
                "optime/leader",
                "failover",
                "sync",
                "history",
                "failsafe",
            ];
            if !e.key.starts_with("members/") && !known.contains(&e.key.as_str()) {
                tracing::debug!(key = %e.key, "ignoring unknown key");
            }
        }
        Self {
            initialize: get("initialize").map(|e| e.value.clone()),
            config: get("config").map(|e| ClusterConfig::parse(&e.version, &e.value)),
            leader,
            status: get("status")
                .or_else(|| get("optime/leader"))
                .map(|e| Status::parse(&e.value))
                .unwrap_or_default(),
            members,
            failover: get("failover").map(|e| Failover::parse(&e.version, &e.value)),
            sync: get("sync")
                .map_or_else(SyncState::empty, |e| SyncState::parse(&e.version, &e.value)),
            history: get("history").map(|e| TimelineHistory::parse(&e.version, &e.value)),
            failsafe: get("failsafe").and_then(|e| Failsafe::parse(&e.value)),
        }
    }

    /// The leader's name, if the cluster is locked.
    pub fn leader_name(&self) -> Option<&str> {
        self.leader.as_ref().map(|l| l.name.as_str())
    }

    /// `true` when nobody holds the leader key.
    pub fn is_unlocked(&self) -> bool {
        self.leader.is_none()
    }

    /// The member called `name`.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// `true` when `initialize` holds a valid system identifier.
    pub fn has_valid_sysid(&self) -> bool {
        self.initialize.as_deref().is_some_and(is_valid_sysid)
    }

    /// The cluster timeline derived from `history` (0 when absent or malformed).
    pub fn timeline(&self) -> u32 {
        self.history.as_ref().map_or(0, TimelineHistory::timeline)
    }

    /// The lowest daemon version among members that publish a parsable one.
    pub fn min_version(&self) -> Option<Vec<u32>> {
        self.members
            .iter()
            .filter_map(|m| m.data.patroni_version())
            .min()
    }

    /// `true` when the read found no key at all.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// An MPP formation: one [`Cluster`] per group (0 = coordinator).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Formation {
    /// The groups found, by group number.
    pub groups: BTreeMap<u32, Cluster>,
}

impl Formation {
    /// Build from a formation-wide read.
    /// Entries without a group are ignored (logged).
    pub fn from_groups(groups: &[GroupEntries]) -> Self {
        let mut out = Self::default();
        for g in groups {
            match g.group {
                Some(n) => {
                    if out
                        .groups
                        .insert(n, Cluster::from_entries(&g.entries))
                        .is_some()
                    {
                        tracing::warn!(group = n, "group listed twice in one read, the last wins");
                    }
                }
                None => tracing::warn!("formation read returned keys without a group, ignored"),
            }
        }
        out
    }

    /// The coordinator (group 0); an empty cluster when it has no keys yet.
    pub fn coordinator(&self) -> Cluster {
        self.groups.get(&0).cloned().unwrap_or_default()
    }

    /// The worker groups (every group but 0), ascending.
    pub fn workers(&self) -> impl Iterator<Item = (u32, &Cluster)> {
        self.groups
            .iter()
            .filter(|(g, _)| **g != 0)
            .map(|(g, c)| (*g, c))
    }

    /// One group.
    pub fn group(&self, group: u32) -> Option<&Cluster> {
        self.groups.get(&group)
    }
}
