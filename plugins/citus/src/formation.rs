//! What `pg_dist_node` should hold, from the formation as the DCS shows it.
//!
//! Patroni 4's rules: per group one `primary` row for the group's leader and one
//! `secondary` row per other member that runs, has a `conn_url` and is not tagged
//! `noloadbalance` (the coordinator's own replicas included). The HA loop asks
//! for a worker group's primary only when its leader publishes role
//! `primary`/`master` and state `running`; the coordinator's leader is the member
//! running this code, already known to be primary, so its group is always asked
//! for (its member key may lag one cycle behind a promotion).

use std::time::Duration;

use keel_sdk::mpp::{Event, EventKind, GroupView, Member};

use crate::config::COORDINATOR_GROUP;
use crate::topology::{Group, Node, Role};
use crate::worker::Task;

/// The HA loop's tasks: the coordinator's group first, then the workers by number.
pub fn loop_tasks(formation: &[GroupView]) -> Vec<Task> {
    let mut groups: Vec<&GroupView> = formation.iter().collect();
    groups.sort_by_key(|g| (g.group != COORDINATOR_GROUP, g.group));
    groups
        .into_iter()
        .filter_map(|group| {
            let leader_name = group.leader.as_deref()?;
            let leader = group.members.iter().find(|m| m.name == leader_name)?;
            let host = leader.host.as_deref()?;
            let runs_as_primary =
                matches!(leader.role.as_str(), "primary" | "master") && leader.state == "running";
            if group.group != COORDINATOR_GROUP && !runs_as_primary {
                return None;
            }
            let primary = Node::new(host, leader.port, Role::Primary);
            Some(Task::from_loop(
                group.group,
                with_secondaries(primary, &group.members, leader_name),
            ))
        })
        .collect()
}

/// The task for a worker's event. Its secondaries come from the last formation
/// seen, since the event names only the leader.
pub fn event_task(event: &Event, formation: &[GroupView]) -> Task {
    let role = if event.kind == EventKind::BeforeDemote {
        Role::Demoted
    } else {
        Role::Primary
    };
    let primary = Node::new(event.host.clone(), event.port, role);
    let members = formation
        .iter()
        .find(|g| g.group == event.group)
        .map_or(&[][..], |g| &g.members[..]);
    Task::from_event(
        event.group,
        with_secondaries(primary, members, &event.leader),
        event.kind,
        Duration::from_secs(event.timeout_seconds.into()),
        event.cooldown_ms,
    )
}

/// `primary` and a secondary row for every member that qualifies.
fn with_secondaries(primary: Node, members: &[Member], leader: &str) -> Group {
    let secondaries = members
        .iter()
        .filter(|m| m.name != leader && !m.noloadbalance && m.state == "running")
        .filter_map(|m| Some(Node::new(m.host.as_deref()?, m.port, Role::Secondary)));
    Group::of(std::iter::once(primary).chain(secondaries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, host: Option<&str>, role: &str, state: &str) -> Member {
        Member {
            name: name.into(),
            host: host.map(Into::into),
            port: 5432,
            role: role.into(),
            state: state.into(),
            noloadbalance: false,
        }
    }

    fn view(group: u32, leader: Option<&str>, members: Vec<Member>) -> GroupView {
        GroupView {
            group,
            leader: leader.map(Into::into),
            members,
        }
    }

    fn hosts(task: &Task) -> Vec<String> {
        task.nodes.nodes.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn every_group_gets_its_leader_as_primary_and_running_members_as_secondaries() {
        let mut quiet = member("w1c", Some("10.1.0.3"), "replica", "running");
        quiet.noloadbalance = true;
        let formation = vec![
            view(
                2,
                Some("w2a"),
                vec![member("w2a", Some("10.2.0.1"), "master", "running")],
            ),
            view(
                1,
                Some("w1a"),
                vec![
                    member("w1a", Some("10.1.0.1"), "primary", "running"),
                    member("w1b", Some("10.1.0.2"), "replica", "running"),
                    quiet,
                    member("w1d", Some("10.1.0.4"), "replica", "stopped"),
                    member("w1e", None, "replica", "running"),
                ],
            ),
            view(
                0,
                Some("c1"),
                vec![
                    member("c1", Some("10.0.0.1"), "replica", "starting"),
                    member("c2", Some("10.0.0.2"), "replica", "running"),
                ],
            ),
        ];
        let tasks = loop_tasks(&formation);
        let summary: Vec<(u32, Vec<String>)> = tasks.iter().map(|t| (t.group, hosts(t))).collect();
        assert_eq!(
            summary,
            vec![
                (
                    0,
                    vec![
                        "10.0.0.1:5432 primary".to_owned(),
                        "10.0.0.2:5432 secondary".to_owned()
                    ]
                ),
                (
                    1,
                    vec![
                        "10.1.0.1:5432 primary".to_owned(),
                        "10.1.0.2:5432 secondary".to_owned()
                    ]
                ),
                (2, vec!["10.2.0.1:5432 primary".to_owned()]),
            ],
            "coordinator first; its leader counts even while its key lags"
        );
        assert!(tasks.iter().all(|t| t.timeout.is_none()));
    }

    #[test]
    fn a_worker_group_without_a_running_primary_leader_is_left_alone() {
        let formation = vec![
            view(
                1,
                Some("w1a"),
                vec![member("w1a", Some("10.1.0.1"), "replica", "running")],
            ),
            view(
                2,
                Some("w2a"),
                vec![member("w2a", Some("10.2.0.1"), "primary", "stopped")],
            ),
            view(
                3,
                None,
                vec![member("w3a", Some("10.3.0.1"), "primary", "running")],
            ),
            view(
                4,
                Some("w4a"),
                vec![member("w4a", None, "primary", "running")],
            ),
        ];
        assert_eq!(loop_tasks(&formation), Vec::new());
    }

    #[test]
    fn an_event_takes_its_secondaries_from_the_last_formation() {
        let formation = vec![view(
            1,
            Some("w1a"),
            vec![
                member("w1a", Some("10.1.0.1"), "primary", "running"),
                member("w1b", Some("10.1.0.2"), "replica", "running"),
            ],
        )];
        let event = Event {
            kind: EventKind::BeforeDemote,
            group: 1,
            leader: "w1a".into(),
            host: "10.1.0.1".into(),
            port: 5432,
            timeout_seconds: 30,
            cooldown_ms: 0,
        };
        let task = event_task(&event, &formation);
        assert_eq!(
            hosts(&task),
            vec!["10.1.0.1:5432 demoted", "10.1.0.2:5432 secondary"]
        );
        assert_eq!(task.timeout, Some(Duration::from_secs(30)));
        assert_eq!(task.cooldown_ms, 10_000, "0 means Citus's default");

        let promoted = Event {
            kind: EventKind::AfterPromote,
            leader: "w1b".into(),
            host: "10.1.0.2".into(),
            cooldown_ms: 3000,
            ..event
        };
        let task = event_task(&promoted, &formation);
        assert_eq!(
            hosts(&task),
            vec!["10.1.0.2:5432 primary", "10.1.0.1:5432 secondary"]
        );
        assert_eq!(task.cooldown_ms, 3000);
        let unknown = Event {
            group: 9,
            ..promoted
        };
        assert_eq!(
            hosts(&event_task(&unknown, &formation)),
            vec!["10.1.0.2:5432 primary"]
        );
    }
}
