//! One read of a cluster as commands see it: a plain cluster, one group of an
//! MPP formation, or the whole formation (the coordinator and its workers),
//! and the member filters patronictl applies to it (`--role`, leader first).

use std::collections::BTreeMap;

use keel_model::{Cluster, Formation, Member, Role};
use serde_json::Value;

/// What was read.
#[derive(Debug, Clone)]
pub(crate) struct View {
    /// The cluster, the group asked for, or the coordinator (group 0).
    pub(crate) cluster: Cluster,
    /// The group asked for with `--group`, if any.
    pub(crate) group: Option<u32>,
    /// The worker groups, when the whole formation was read.
    pub(crate) workers: BTreeMap<u32, Cluster>,
}

impl View {
    pub(crate) fn single(cluster: Cluster, group: Option<u32>) -> Self {
        Self {
            cluster,
            group,
            workers: BTreeMap::new(),
        }
    }

    pub(crate) fn formation(formation: &Formation) -> Self {
        Self {
            cluster: formation.coordinator(),
            group: None,
            workers: formation.workers().map(|(g, c)| (g, c.clone())).collect(),
        }
    }

    /// Every group read, by number (a plain cluster is group 0).
    pub(crate) fn groups(&self) -> Vec<(u32, &Cluster)> {
        std::iter::once((self.group.unwrap_or(0), &self.cluster))
            .chain(self.workers.iter().map(|(g, c)| (*g, c)))
            .collect()
    }

    /// The members with `role`, from every group read.
    pub(crate) fn members_with(&self, role: CtlRole) -> Vec<Member> {
        let mut out = Vec::new();
        for (_, cluster) in self.groups() {
            let leader = cluster.leader.as_ref();
            match role {
                CtlRole::Leader | CtlRole::Primary | CtlRole::StandbyLeader => {
                    let Some(leader) = leader.filter(|l| !l.name.is_empty()) else {
                        continue;
                    };
                    let member_role = leader.member.data.role.as_ref();
                    let wanted = match role {
                        CtlRole::Leader => true,
                        CtlRole::StandbyLeader => member_role != Some(&Role::Primary),
                        _ => member_role != Some(&Role::StandbyLeader),
                    };
                    if wanted {
                        out.push(leader.member.clone());
                    }
                }
                CtlRole::Any => out.extend(cluster.members.iter().cloned()),
                CtlRole::Replica | CtlRole::Standby => out.extend(
                    cluster
                        .members
                        .iter()
                        .filter(|m| Some(m.name.as_str()) != cluster.leader_name())
                        .cloned(),
                ),
            }
        }
        out
    }

    /// Members with a REST API, the leader first (where pause and flush go).
    pub(crate) fn members_leader_first(&self) -> Vec<Member> {
        let cluster = &self.cluster;
        let leader = cluster
            .leader
            .as_ref()
            .filter(|l| l.member.data.api_url.is_some());
        let mut out: Vec<Member> = leader.map(|l| l.member.clone()).into_iter().collect();
        out.extend(
            cluster
                .members
                .iter()
                .filter(|m| {
                    m.data.api_url.is_some()
                        && Some(m.name.as_str()) != leader.map(|l| l.name.as_str())
                })
                .cloned(),
        );
        out
    }
}

/// `--role` values (patronictl 4.1: `master` is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum CtlRole {
    /// The leader of each group.
    Leader,
    /// A leader that is a primary (not a standby leader).
    Primary,
    /// A leader of a standby cluster.
    StandbyLeader,
    /// Every member but the leader.
    Replica,
    /// Every member but the leader.
    Standby,
    /// Every member.
    Any,
}

impl CtlRole {
    /// The name as typed.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Leader => "leader",
            Self::Primary => "primary",
            Self::StandbyLeader => "standby-leader",
            Self::Replica => "replica",
            Self::Standby => "standby",
            Self::Any => "any",
        }
    }
}

/// Patroni's `nofailover`: the tag, or a `failover_priority` of 0 or less.
pub(crate) fn nofailover(member: &Member) -> bool {
    let tags = &member.data.tags;
    match tags.get("nofailover") {
        Some(v) if !v.is_null() => truthy(v),
        _ => tags
            .get("failover_priority")
            .and_then(|p| keel_config::lenient::parse_int(p).ok())
            .is_some_and(|p| p <= 0),
    }
}

fn truthy(v: &Value) -> bool {
    keel_config::lenient::parse_bool(v).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use keel_model::Entry;

    use super::*;

    fn entry(key: &str, value: &str) -> Entry {
        Entry {
            key: key.into(),
            value: value.into(),
            version: "1".into(),
            session: None,
        }
    }

    fn cluster() -> Cluster {
        Cluster::from_entries(&[
            entry("leader", "b"),
            entry(
                "members/a",
                r#"{"role":"replica","api_url":"http://a/patroni","tags":{"nofailover":true}}"#,
            ),
            entry(
                "members/b",
                r#"{"role":"primary","api_url":"http://b/patroni"}"#,
            ),
            entry(
                "members/c",
                r#"{"role":"replica","tags":{"failover_priority":0}}"#,
            ),
        ])
    }

    #[test]
    fn roles_filter_members() {
        let view = View::single(cluster(), None);
        let names = |role| -> Vec<String> {
            view.members_with(role)
                .into_iter()
                .map(|m| m.name)
                .collect()
        };
        assert_eq!(names(CtlRole::Leader), ["b"]);
        assert_eq!(names(CtlRole::Primary), ["b"]);
        assert!(names(CtlRole::StandbyLeader).is_empty());
        assert_eq!(names(CtlRole::Replica), ["a", "c"]);
        assert_eq!(names(CtlRole::Any), ["a", "b", "c"]);
        let first: Vec<String> = view
            .members_leader_first()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(first, ["b", "a"]);
    }

    #[test]
    fn nofailover_from_the_tag_or_the_priority() {
        let c = cluster();
        assert!(nofailover(c.member("a").unwrap()));
        assert!(!nofailover(c.member("b").unwrap()));
        assert!(nofailover(c.member("c").unwrap()));
    }
}
