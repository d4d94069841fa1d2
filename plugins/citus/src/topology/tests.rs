//! The transition algorithm as tables: registered rows, wanted rows, the calls in
//! order, and what pg_dist_node holds afterwards.
//!
//! A group is written `a p 4, b s 5`: host, role (`p` primary, `s` secondary,
//! `d` paused primary, i.e. `<host>-demoted`) and nodeid if the row exists; every
//! port is 5432. A call is written `update 4 a-demoted`, `add b secondary`,
//! `remove b`.

use super::*;

fn group(spec: &str) -> Group {
    let mut g = Group::default();
    for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = item.split_whitespace().collect();
        let role = match parts[1] {
            "p" => Role::Primary,
            "s" => Role::Secondary,
            "d" => Role::Demoted,
            other => panic!("unknown role {other}"),
        };
        let mut node = Node::new(parts[0], 5432, role);
        node.nodeid = parts.get(2).map(|id| id.parse().unwrap());
        assert!(g.insert(node), "duplicate in {spec}");
    }
    g
}

fn call(change: &Change) -> String {
    match change {
        Change::Add { host, role, .. } => format!("add {host} {role}"),
        Change::Update { nodeid, host, .. } => format!("update {nodeid} {host}"),
        Change::Remove { host, .. } => format!("remove {host}"),
    }
}

/// Sorted `host role id` of every row, for comparing outcomes.
fn rows(g: &Group) -> Vec<String> {
    let mut out: Vec<String> = g
        .nodes
        .iter()
        .map(|n| {
            let role = match n.role {
                Role::Primary => "p",
                Role::Secondary => "s",
                Role::Demoted => "d",
                Role::Other(_) => "?",
            };
            match n.nodeid {
                Some(id) => format!("{} {role} {id}", n.host),
                None => format!("{} {role}", n.host),
            }
        })
        .collect();
    out.sort();
    out
}

struct Case {
    name: &'static str,
    registered: &'static str,
    wanted: &'static str,
    calls: &'static [&'static str],
    after: &'static str,
    failover: bool,
}

const CASES: &[Case] = &[
    Case {
        name: "an empty group gets its primary",
        registered: "",
        wanted: "a p",
        calls: &["add a primary"],
        after: "a p",
        failover: false,
    },
    Case {
        name: "nothing changed, nothing to do; nodeids carried over",
        registered: "a p 1, b s 2",
        wanted: "a p, b s",
        calls: &[],
        after: "a p 1, b s 2",
        failover: false,
    },
    Case {
        name: "pause: the primary row goes to <host>-demoted",
        registered: "a p 1, b s 2",
        wanted: "a d, b s",
        calls: &["update 1 a-demoted"],
        after: "a d 1, b s 2",
        failover: true,
    },
    Case {
        name: "resume on the same host: the row comes back",
        registered: "a d 1, b s 2",
        wanted: "a p, b s",
        calls: &["update 1 a"],
        after: "a p 1, b s 2",
        failover: true,
    },
    Case {
        name: "switchover to a secondary, old primary stays: rows swap through -demoted",
        registered: "a p 1, b s 2",
        wanted: "b p, a s",
        calls: &["update 1 a-demoted", "update 2 a", "update 1 b"],
        after: "a s 2, b p 1",
        failover: true,
    },
    Case {
        name: "switchover after a pause: the primary is already demoted",
        registered: "a d 1, b s 2",
        wanted: "b p, a s",
        calls: &["update 2 a", "update 1 b"],
        after: "a s 2, b p 1",
        failover: true,
    },
    Case {
        name: "failover to a secondary, old primary gone: it stays parked in the promoted row",
        registered: "a p 1, b s 2",
        wanted: "b p",
        calls: &["update 1 a-demoted", "update 2 a", "update 1 b"],
        after: "a s 2, b p 1",
        failover: true,
    },
    Case {
        name: "failover to a secondary while another was added: the added one takes the promoted row",
        registered: "a p 1, b s 2",
        wanted: "b p, c s",
        calls: &["update 2 c", "update 1 b"],
        after: "b p 1, c s 2",
        failover: true,
    },
    Case {
        name: "failover to a node that never was a secondary: the primary row moves",
        registered: "a p 1",
        wanted: "c p",
        calls: &["update 1 c"],
        after: "c p 1",
        failover: true,
    },
    Case {
        name: "failover defers adding a new secondary to the next cycle",
        registered: "a p 1",
        wanted: "c p, d s",
        calls: &["update 1 c"],
        after: "c p 1",
        failover: true,
    },
    Case {
        name: "failover defers removing gone secondaries to the next cycle",
        registered: "a p 1, b s 2, e s 3",
        wanted: "c p",
        calls: &["update 1 c"],
        after: "b s 2, c p 1, e s 3",
        failover: true,
    },
    Case {
        name: "a paused primary lost mid-switchover is parked in a gone secondary's row",
        registered: "a d 1, b s 2",
        wanted: "c p",
        calls: &["update 1 c", "update 2 a"],
        after: "a s 2, c p 1",
        failover: true,
    },
    Case {
        name: "gone secondaries' rows are reused for added ones",
        registered: "a p 1, b s 2",
        wanted: "a p, c s",
        calls: &["update 2 c"],
        after: "a p 1, c s 2",
        failover: false,
    },
    Case {
        name: "a new secondary is added when metadata is in sync",
        registered: "a p 1",
        wanted: "a p, b s",
        calls: &["add b secondary"],
        after: "a p 1, b s",
        failover: false,
    },
    Case {
        name: "a gone secondary is removed when metadata is in sync",
        registered: "a p 1, b s 2, c s 3",
        wanted: "a p, c s",
        calls: &["remove b"],
        after: "a p 1, c s 3",
        failover: false,
    },
    Case {
        name: "a pause with no row yet writes nothing",
        registered: "",
        wanted: "a d",
        calls: &[],
        after: "a d",
        failover: false,
    },
];

#[test]
fn transitions_follow_citus_rules() {
    for case in CASES {
        let old = group(case.registered);
        let mut new = group(case.wanted);
        let calls: Vec<String> = transition(&mut new, &old).iter().map(call).collect();
        assert_eq!(calls, case.calls, "{}: calls", case.name);
        assert_eq!(
            rows(&new),
            rows(&group(case.after)),
            "{}: rows after",
            case.name
        );
        assert_eq!(new.failover, case.failover, "{}: failover flag", case.name);
    }
}

#[test]
fn the_primary_row_keeps_its_nodeid_through_every_move() {
    for case in CASES {
        let old = group(case.registered);
        let (Some(old_primary), Some(_)) = (old.primary(), group(case.wanted).primary()) else {
            continue;
        };
        let mut new = group(case.wanted);
        transition(&mut new, &old);
        assert_eq!(
            new.primary().and_then(|p| p.nodeid),
            old_primary.nodeid,
            "{}",
            case.name
        );
    }
}

#[test]
fn no_call_puts_an_address_on_two_rows() {
    // Replay every case's calls on a table and check uniqueness after each one.
    for case in CASES {
        let old = group(case.registered);
        let mut table: Vec<(i32, String)> = old
            .nodes
            .iter()
            .filter_map(|n| {
                let host = match n.role {
                    Role::Demoted => format!("{}-demoted", n.host),
                    _ => n.host.clone(),
                };
                n.nodeid.map(|id| (id, host))
            })
            .collect();
        let mut new = group(case.wanted);
        let mut next = 100;
        for change in transition(&mut new, &old) {
            match change {
                Change::Update { nodeid, host, .. } => {
                    let row = table.iter_mut().find(|(id, _)| *id == nodeid).unwrap();
                    row.1 = host;
                }
                Change::Add { host, .. } => {
                    next += 1;
                    table.push((next, host));
                }
                Change::Remove { host, .. } => table.retain(|(_, h)| *h != host),
            }
            let mut hosts: Vec<&String> = table.iter().map(|(_, h)| h).collect();
            hosts.sort();
            hosts.dedup();
            assert_eq!(hosts.len(), table.len(), "{}: {table:?}", case.name);
        }
    }
}

#[test]
fn the_next_cycle_finishes_what_a_failover_deferred() {
    // After "failover defers ...", the next cycle starts from the committed state
    // with the flag cleared (it is cleared once the change commits).
    let mut first = group("c p, d s");
    transition(&mut first, &group("a p 1"));
    first.failover = false;
    let mut second = group("c p, d s");
    let calls: Vec<String> = transition(&mut second, &first).iter().map(call).collect();
    assert_eq!(calls, ["add d secondary"]);

    let mut first = group("c p");
    transition(&mut first, &group("a p 1, b s 2"));
    first.failover = false;
    let mut second = group("c p");
    let calls: Vec<String> = transition(&mut second, &first).iter().map(call).collect();
    assert_eq!(calls, ["remove b"]);
}

#[test]
fn sameness_ignores_nodeids_and_order_but_not_roles() {
    assert!(group("a p 1, b s 2").same_as(&group("b s, a p")));
    assert!(!group("a p 1").same_as(&group("a d 1")));
    assert!(!group("a p 1").same_as(&group("a p 1, b s 2")));
}
