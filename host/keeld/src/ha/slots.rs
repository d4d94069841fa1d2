//! Which replication slots this node keeps, as Patroni 4.1 decides it (`Cluster.
//! get_replication_slots`, `_get_members_slots`, `_merge_permanent_slots` and the
//! `retain_slots` policy), and where a replica advances the slots it keeps.
//!
//! With `member_slots_ttl` > 0 (the default) every node keeps a physical slot for every
//! other streaming member, so a new primary already holds slots at about the right position
//! after a failover; replicas advance theirs to the positions the leader publishes in
//! `/status`. Permanent slots come from the dynamic `slots`; `ignore_slots` marks slots that
//! are someone else's to manage. Pure functions: the daemon supplies what it read.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use keel_config::{DynamicConfig, IgnoreSlot, PermanentSlot};
use keel_dcs::Cluster;
use keel_postgres::slots::slot_name_from_member_name;
use keel_postgres::{ReplicationSlot, SlotKind, SlotSpec};

/// A slot this node should have, and whether a walsender is expected to use it here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Wanted {
    pub(super) spec: SlotSpec,
    /// Active on this node (a member streaming from it); inactive slots on a replica are
    /// advanced from the leader's published positions.
    pub(super) expected_active: bool,
}

/// Who is asking.
pub(super) struct Node<'a> {
    pub(super) name: &'a str,
    pub(super) primary: bool,
    /// The standby leader of a standby cluster: its replicas stream from it as
    /// from a primary, but it accepts no writes (no logical slots).
    pub(super) standby_leader: bool,
    pub(super) nofailover: bool,
}

/// The slots `node` should have in `cluster` under `config` (`use_slots` is checked by the
/// caller). Logical permanent slots are created on the primary only: replicas copy them
/// from it instead (see [`logical_copies`]).
pub(super) fn wanted_slots(
    node: &Node<'_>,
    cluster: &Cluster,
    config: &DynamicConfig,
) -> Vec<Wanted> {
    let own_slot = slot_name_from_member_name(node.name);
    let replicatefrom =
        |m: &keel_dcs::Member| keel_ha::tags_of(m).replicatefrom().map(str::to_owned);
    let streams_from_leader = |m: &keel_dcs::Member| match replicatefrom(m) {
        None => true,
        Some(from) => from == node.name || cluster.member(&from).is_none(),
    };
    let streams_from_me = |m: &keel_dcs::Member| {
        replicatefrom(m).as_deref() == Some(node.name) && cluster.leader_name() != Some(&m.name)
    };
    let leads = node.primary || node.standby_leader;
    let standby_cluster = config.is_standby_cluster();
    let expected_active = |m: &keel_dcs::Member| {
        if leads {
            streams_from_leader(m)
        } else {
            streams_from_me(m)
        }
    };
    let mut out: Vec<Wanted> = Vec::new();
    let add = |out: &mut Vec<Wanted>, spec: SlotSpec, expected_active: bool| {
        if spec.name != own_slot && out.iter().all(|w| w.spec.name != spec.name) {
            out.push(Wanted {
                spec,
                expected_active,
            });
        }
    };
    let retention = config.member_slots_ttl > 0;
    for m in cluster
        .members
        .iter()
        .filter(|m| m.name != node.name && !keel_ha::tags_of(m).nostream())
    {
        let keep = if retention {
            !node.nofailover || streams_from_me(m)
        } else {
            expected_active(m)
        };
        if keep {
            let slot = SlotSpec::physical(slot_name_from_member_name(&m.name));
            add(&mut out, slot, expected_active(m));
        }
    }
    if node.nofailover {
        return out;
    }
    for name in &cluster.status.retain_slots {
        add(&mut out, SlotSpec::physical(name.clone()), false);
    }
    let members_with_upstream: Vec<String> = cluster
        .members
        .iter()
        .filter(|m| replicatefrom(m).is_some())
        .map(|m| slot_name_from_member_name(&m.name))
        .collect();
    for (name, slot) in &config.slots {
        if !keel_postgres::slots::is_valid_slot_name(name) {
            tracing::error!("slots.{name}: not a valid slot name ([a-z0-9_], at most 63); skipped");
            continue;
        }
        match slot {
            PermanentSlot::Physical { cluster_type }
                if applies(cluster_type.as_deref(), standby_cluster) =>
            {
                let active = leads && !members_with_upstream.contains(name);
                add(&mut out, SlotSpec::physical(name.clone()), active);
            }
            PermanentSlot::Logical {
                database,
                plugin,
                cluster_type,
            } if node.primary && applies(cluster_type.as_deref(), standby_cluster) => {
                if out.iter().any(|w| &w.spec.name == name) {
                    tracing::error!(
                        "permanent logical slot {name} conflicts with a member's physical slot; skipped"
                    );
                    continue;
                }
                add(
                    &mut out,
                    SlotSpec::logical(name.clone(), database.clone(), plugin.clone()),
                    true,
                );
            }
            _ => {}
        }
    }
    out
}

/// `cluster_type` restricts a permanent slot to a primary or a standby cluster.
fn applies(cluster_type: Option<&str>, standby_cluster: bool) -> bool {
    let this = if standby_cluster {
        "standby"
    } else {
        "primary"
    };
    cluster_type.is_none_or(|t| t == this)
}

/// True when an `ignore_slots` entry matches `slot`: every attribute the entry names
/// (`name`, `type`, `database`, `plugin`) equals the slot's.
pub(super) fn is_ignored(slot: &ReplicationSlot, matchers: &[IgnoreSlot]) -> bool {
    let (kind, database, plugin) = match &slot.kind {
        SlotKind::Physical => ("physical", None, None),
        SlotKind::Logical { database, plugin } => {
            ("logical", Some(database.as_str()), Some(plugin.as_str()))
        }
    };
    matchers.iter().any(|m| {
        m.fields.iter().all(|(field, value)| match field.as_str() {
            "name" => *value == slot.name,
            "type" => value == kind,
            "database" => database == Some(value.as_str()),
            "plugin" => plugin == Some(value.as_str()),
            _ => true,
        })
    })
}

/// Where a replica moves its inactive physical slots: the leader's published position,
/// never past what this replica replayed (PostgreSQL refuses that), and only forward.
pub(super) fn advance_targets(
    wanted: &[Wanted],
    existing: &[ReplicationSlot],
    published: &BTreeMap<String, u64>,
    replayed: u64,
) -> Vec<(String, u64)> {
    wanted
        .iter()
        .filter(|w| !w.expected_active && w.spec.kind == SlotKind::Physical)
        .filter_map(|w| {
            let slot = existing
                .iter()
                .find(|s| s.name == w.spec.name && !s.active)?;
            let target = (*published.get(&w.spec.name)?).min(replayed);
            (target > slot.restart_lsn.map_or(0, |l| l.0)).then(|| (w.spec.name.clone(), target))
        })
        .collect()
}

/// The permanent logical slots a replica keeps copies of, so that a consumer finds its
/// slot on whichever member is promoted (Patroni 4's slot failover): those of this kind
/// of cluster that the leader publishes a position for in `/status` (it has them).
/// Logical decoding needs a primary, so a standby cluster keeps none.
pub(super) fn logical_copies(
    config: &DynamicConfig,
    published: &BTreeMap<String, u64>,
) -> Vec<String> {
    if config.is_standby_cluster() {
        return Vec::new();
    }
    config
        .slots
        .iter()
        .filter(|(name, slot)| {
            matches!(slot, PermanentSlot::Logical { cluster_type, .. } if applies(cluster_type.as_deref(), false))
                && keel_postgres::slots::is_valid_slot_name(name)
                && published.contains_key(*name)
        })
        .map(|(name, _)| name.clone())
        .collect()
}

/// A member keeps copies of the permanent logical slots (Patroni 4's slot failover) when
/// it could lead (not `nofailover`) and its feedback reaches the primary through a physical
/// slot (not `nostream`, no `replicatefrom` loop), in a cluster that is not a standby one
/// and has logical permanent slots for a primary.
pub(super) fn keeps_logical_copies(
    name: &str,
    tags: &keel_config::Tags,
    cluster: &Cluster,
    config: &DynamicConfig,
) -> bool {
    !config.is_standby_cluster()
        && !tags.nofailover()
        && config.slots.values().any(|slot| {
            matches!(slot, PermanentSlot::Logical { cluster_type, .. } if applies(cluster_type.as_deref(), false))
        })
        && slot_on_primary(name, tags, cluster).is_some()
}

/// Patroni's `should_enforce_hot_standby_feedback`: `hot_standby_feedback` must be on when
/// this member keeps logical slot copies, or a member streaming from it (`replicatefrom`,
/// transitively) does: only the feedback keeps the catalog rows the copies need.
pub(super) fn needs_hot_standby_feedback(
    name: &str,
    tags: &keel_config::Tags,
    cluster: &Cluster,
    config: &DynamicConfig,
    use_slots: bool,
) -> bool {
    if !use_slots || config.is_standby_cluster() {
        return false;
    }
    let mut seen = vec![name.to_owned()];
    let mut queue = vec![(name.to_owned(), tags.clone())];
    while let Some((name, tags)) = queue.pop() {
        if keeps_logical_copies(&name, &tags, cluster, config) {
            return true;
        }
        if slot_on_primary(&name, &tags, cluster).is_none() {
            continue;
        }
        for m in &cluster.members {
            let member_tags = keel_ha::tags_of(m);
            if member_tags.replicatefrom() == Some(name.as_str())
                && cluster.leader_name() != Some(m.name.as_str())
                && !seen.contains(&m.name)
            {
                seen.push(m.name.clone());
                queue.push((m.name.clone(), member_tags));
            }
        }
    }
    false
}

/// The physical slot on the primary that carries this replica's `hot_standby_feedback`:
/// its own, or that of the member it cascades from (`replicatefrom`, followed up to a member
/// streaming from the primary); `None` for `nostream` or a `replicatefrom` loop (Patroni's
/// `get_slot_name_on_primary`).
pub(super) fn slot_on_primary(
    name: &str,
    tags: &keel_config::Tags,
    cluster: &Cluster,
) -> Option<String> {
    let mut seen = vec![name.to_owned()];
    let (mut name, mut tags) = (name.to_owned(), tags.clone());
    loop {
        if tags.nostream() {
            return None;
        }
        // Streaming from the leader itself is streaming from the primary (Patroni would
        // name the leader's own slot here, which does not exist).
        let upstream = tags
            .replicatefrom()
            .filter(|from| *from != name && cluster.leader_name() != Some(*from))
            .and_then(|from| cluster.member(from));
        let Some(upstream) = upstream else {
            return Some(slot_name_from_member_name(&name));
        };
        if seen.contains(&upstream.name) {
            return None;
        }
        seen.push(upstream.name.clone());
        name = upstream.name.clone();
        tags = keel_ha::tags_of(upstream);
    }
}

/// Where a replica moves its copies: the leader's published `confirmed_flush_lsn`,
/// but never past what the replica replayed (decoding there needs that WAL).
pub(super) fn logical_advance_targets(
    copies: &[String],
    existing: &[ReplicationSlot],
    published: &BTreeMap<String, u64>,
    replayed: u64,
) -> Vec<(String, u64)> {
    copies
        .iter()
        .filter_map(|name| {
            let slot = existing.iter().find(|s| {
                &s.name == name && !s.active && matches!(s.kind, SlotKind::Logical { .. })
            })?;
            let target = (*published.get(name)?).min(replayed);
            let at = slot.confirmed_flush_lsn.map_or(0, |l| l.0);
            (target > at).then(|| (name.clone(), target))
        })
        .collect()
}

/// What the slot sync of a primary leaves for the next `/status` write.
#[derive(Debug, Default)]
pub(crate) struct SlotState {
    /// When this replica last copied logical slots from the primary (a copy restarts
    /// PostgreSQL, so a failing one is not retried every cycle), and the leader's
    /// published positions then: a copy is retried early once they moved.
    pub(super) copied_at: Option<Instant>,
    pub(super) copied_positions: BTreeMap<String, u64>,
    /// Whether this replica's logical slot copies are safe to use after a failover.
    pub(super) readiness: super::slot_readiness::CopyReadiness,
    /// The slots whose copy waits for the primary's slot to need less old WAL, as last
    /// logged.
    pub(super) copies_deferred: Option<String>,
    /// The retention clock; `None` until this node syncs slots as a primary.
    pub(super) retained: Option<RetainedSlots>,
    /// `/status` `slots`.
    pub(super) positions: BTreeMap<String, u64>,
    /// `/status` `retain_slots`.
    pub(super) retain: Vec<String>,
}

/// The leader's `retain_slots`: member slots seen on this primary, kept for
/// `member_slots_ttl` after their member last appeared (Patroni's `_build_retain_slots`).
#[derive(Debug, Default)]
pub(crate) struct RetainedSlots {
    seen: BTreeMap<String, Instant>,
}

impl RetainedSlots {
    /// Starts from the list the previous leader published (as seen now).
    pub(super) fn adopt(&mut self, published: &[String], now: Instant) {
        for name in published {
            self.seen.entry(name.clone()).or_insert(now);
        }
    }

    /// Records the member slots that exist on this primary and returns the list to publish.
    pub(super) fn update(
        &mut self,
        me: &str,
        cluster: &Cluster,
        config: &DynamicConfig,
        existing: &[ReplicationSlot],
        now: Instant,
    ) -> Vec<String> {
        let mut members: Vec<String> = cluster
            .members
            .iter()
            .filter(|m| !keel_ha::tags_of(m).nostream())
            .map(|m| slot_name_from_member_name(&m.name))
            .collect();
        if cluster.member(me).is_none() {
            members.push(slot_name_from_member_name(me));
        }
        // The slots this primary holds, and its own name (Patroni counts it among the slots
        // it publishes, so a future replica of this node keeps a slot for it).
        let own = slot_name_from_member_name(me);
        let present = existing
            .iter()
            .map(|s| &s.name)
            .chain(std::iter::once(&own));
        for name in present {
            if members.contains(name) && !config.slots.contains_key(name) {
                self.seen.insert(name.clone(), now);
            }
        }
        let ttl = Duration::from_secs(config.member_slots_ttl.into());
        self.seen.retain(|name, at| {
            let keep = now.duration_since(*at) < ttl;
            if !keep {
                tracing::info!(
                    "replication slot {name} of an absent member expired after {}s",
                    ttl.as_secs()
                );
            }
            keep
        });
        self.seen.keys().cloned().collect()
    }
}

/// The positions the leader publishes in `/status` `slots`: every slot with retention on,
/// only permanent ones without; its own slot name carries its WAL position, for replicas
/// that keep a permanent or retained slot under that name.
pub(super) fn published_positions(
    me: &str,
    config: &DynamicConfig,
    existing: &[ReplicationSlot],
    wal_position: u64,
) -> BTreeMap<String, u64> {
    let mut out: BTreeMap<String, u64> = existing
        .iter()
        .filter(|s| !s.temporary)
        .filter(|s| config.member_slots_ttl > 0 || config.slots.contains_key(&s.name))
        .filter_map(|s| {
            let lsn = match s.kind {
                SlotKind::Physical => s.restart_lsn,
                SlotKind::Logical { .. } => s.confirmed_flush_lsn,
            }?;
            Some((s.name.clone(), lsn.0))
        })
        .collect();
    let own = slot_name_from_member_name(me);
    if config.member_slots_ttl > 0 || config.slots.contains_key(&own) {
        out.insert(own, wal_position);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_dcs::Entry;
    use keel_postgres::Lsn;
    use serde_json::json;

    fn member(name: &str, tags: &serde_json::Value) -> Entry {
        Entry {
            key: format!("members/{name}"),
            value: json!({"conn_url": format!("postgres://{name}:5432/postgres"),
                          "api_url": format!("http://{name}:8008/patroni"),
                          "state": "running", "role": "replica", "tags": tags})
            .to_string(),
            version: "1".into(),
            session: None,
        }
    }

    fn cluster(entries: Vec<Entry>) -> Cluster {
        let mut all = vec![Entry {
            key: "leader".into(),
            value: "a".into(),
            version: "1".into(),
            session: None,
        }];
        all.extend(entries);
        Cluster::from_entries(&all)
    }

    fn tags(json: serde_json::Value) -> keel_config::Tags {
        let map = serde_json::from_value(json).unwrap();
        keel_config::Tags::parse(&map).unwrap().0
    }

    fn config(json: &serde_json::Value) -> DynamicConfig {
        DynamicConfig::from_json_lenient(&json.to_string()).0
    }

    fn names(wanted: &[Wanted]) -> Vec<(&str, bool)> {
        wanted
            .iter()
            .map(|w| (w.spec.name.as_str(), w.expected_active))
            .collect()
    }

    fn slot(name: &str, kind: SlotKind, active: bool, lsn: u64) -> ReplicationSlot {
        ReplicationSlot {
            name: name.into(),
            kind,
            temporary: false,
            active,
            restart_lsn: Some(Lsn(lsn)),
            confirmed_flush_lsn: None,
            catalog_xmin: None,
        }
    }

    const PRIMARY: Node<'static> = Node {
        name: "a",
        primary: true,
        standby_leader: false,
        nofailover: false,
    };

    /// A replica copies the permanent logical slots the leader has, and moves the copies
    /// it has to the leader's positions, never past its own replay position.
    #[test]
    fn replicas_copy_and_advance_the_leaders_logical_slots() {
        let config = config(&json!({"slots": {
            "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "later": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "cdc_standby": {"type": "logical", "database": "app", "plugin": "pgoutput",
                            "cluster_type": "standby"},
            "phys": {"type": "physical"},
        }}));
        let published: BTreeMap<String, u64> = [
            ("cdc".to_owned(), 500),
            ("cdc_standby".to_owned(), 500),
            ("phys".to_owned(), 9),
        ]
        .into_iter()
        .collect();
        // `later` is not on the leader yet; `cdc_standby` is for standby clusters.
        let copies = logical_copies(&config, &published);
        assert_eq!(copies, ["cdc"]);
        let standby = self::config(&json!({"standby_cluster": {"host": "h"},
                                           "slots": {"cdc": {"type": "logical", "database": "app",
                                                             "plugin": "pgoutput"}}}));
        assert!(logical_copies(&standby, &published).is_empty());

        let logical = SlotKind::Logical {
            database: "app".into(),
            plugin: "pgoutput".into(),
        };
        let mut copy = slot("cdc", logical, false, 100);
        copy.confirmed_flush_lsn = Some(Lsn(200));
        assert_eq!(
            logical_advance_targets(&copies, &[copy.clone()], &published, 400),
            [("cdc".to_owned(), 400)],
            "not past the replay position"
        );
        assert_eq!(
            logical_advance_targets(&copies, &[copy.clone()], &published, 900),
            [("cdc".to_owned(), 500)]
        );
        copy.confirmed_flush_lsn = Some(Lsn(500));
        assert!(logical_advance_targets(&copies, &[copy], &published, 900).is_empty());
    }

    /// The standby leader keeps its replicas' slots as a primary would (they stream
    /// from it), and the permanent slots meant for standby clusters, but no logical
    /// ones: it accepts no writes.
    #[test]
    fn a_standby_leader_keeps_slots_as_its_clusters_primary() {
        let c = cluster(vec![member("a", &json!({})), member("b", &json!({}))]);
        let standby = config(&json!({
            "standby_cluster": {"host": "10.0.0.9", "port": 5432},
            "member_slots_ttl": 0,
            "slots": {
                "standby_only": {"type": "physical", "cluster_type": "standby"},
                "primary_only": {"type": "physical", "cluster_type": "primary"},
                "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            },
        }));
        let standby_leader = Node {
            standby_leader: true,
            primary: false,
            ..PRIMARY
        };
        assert_eq!(
            names(&wanted_slots(&standby_leader, &c, &standby)),
            [("b", true), ("standby_only", true)]
        );
    }

    #[test]
    fn with_retention_every_node_keeps_a_slot_per_streaming_member() {
        let c = cluster(vec![
            member("a", &json!({})),
            member("b", &json!({})),
            member("c-1", &json!({"replicatefrom": "b"})),
            member("d", &json!({"nostream": true})),
        ]);
        let defaults = config(&json!({}));
        assert_eq!(
            names(&wanted_slots(&PRIMARY, &c, &defaults)),
            [("b", true), ("c_1", false)]
        );
        let replica = Node {
            name: "b",
            primary: false,
            standby_leader: false,
            nofailover: false,
        };
        assert_eq!(
            names(&wanted_slots(&replica, &c, &defaults)),
            [("a", false), ("c_1", true)]
        );
        // Without retention a replica keeps only its cascading members' slots.
        let no_retention = config(&json!({"member_slots_ttl": 0}));
        assert_eq!(
            names(&wanted_slots(&replica, &c, &no_retention)),
            [("c_1", true)]
        );
        // A nofailover node keeps only what streams from it.
        let nofailover = Node {
            nofailover: true,
            ..replica
        };
        assert_eq!(
            names(&wanted_slots(&nofailover, &c, &defaults)),
            [("c_1", true)]
        );
    }

    #[test]
    fn permanent_slots_join_member_slots_and_retained_ones() {
        let mut c = cluster(vec![member("a", &json!({})), member("b", &json!({}))]);
        c.status.retain_slots = vec!["gone".into(), "a".into()];
        let conf = config(&json!({"slots": {
            "archiver": {"type": "physical"},
            "a": {"type": "physical"},
            "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "b": {"type": "logical", "database": "app", "plugin": "pgoutput"},
            "standby_only": {"type": "physical", "cluster_type": "standby"},
        }}));
        let wanted = wanted_slots(&PRIMARY, &c, &conf);
        // Never a slot named after the node itself; the logical slot named like member b
        // conflicts with b's physical slot and is skipped.
        assert_eq!(
            names(&wanted),
            [
                ("b", true),
                ("gone", false),
                ("archiver", true),
                ("cdc", true)
            ]
        );
        let replica = Node {
            name: "b",
            primary: false,
            standby_leader: false,
            nofailover: false,
        };
        assert_eq!(
            names(&wanted_slots(&replica, &c, &conf)),
            [("a", false), ("gone", false), ("archiver", false)]
        );
    }

    #[test]
    fn ignore_slots_match_on_every_attribute_they_name() {
        let conf = config(&json!({"ignore_slots": [
            {"name": "keep_me"},
            {"type": "logical", "plugin": "wal2json"},
        ]}));
        let logical = |name: &str, plugin: &str| {
            slot(
                name,
                SlotKind::Logical {
                    database: "app".into(),
                    plugin: plugin.into(),
                },
                false,
                1,
            )
        };
        assert!(is_ignored(
            &slot("keep_me", SlotKind::Physical, false, 1),
            &conf.ignore_slots
        ));
        assert!(is_ignored(&logical("any", "wal2json"), &conf.ignore_slots));
        assert!(!is_ignored(&logical("any", "pgoutput"), &conf.ignore_slots));
        assert!(!is_ignored(
            &slot("other", SlotKind::Physical, false, 1),
            &conf.ignore_slots
        ));
    }

    #[test]
    fn replicas_advance_inactive_physical_slots_forward_up_to_their_replay() {
        let wanted = vec![
            Wanted {
                spec: SlotSpec::physical("a"),
                expected_active: false,
            },
            Wanted {
                spec: SlotSpec::physical("c"),
                expected_active: true,
            },
            Wanted {
                spec: SlotSpec::physical("late"),
                expected_active: false,
            },
        ];
        let existing = [
            slot("a", SlotKind::Physical, false, 100),
            slot("c", SlotKind::Physical, true, 100),
            slot("late", SlotKind::Physical, false, 900),
        ];
        let published =
            BTreeMap::from([("a".into(), 700), ("c".into(), 700), ("late".into(), 800)]);
        assert_eq!(
            advance_targets(&wanted, &existing, &published, 500),
            [("a".to_owned(), 500)]
        );
    }

    #[test]
    fn retained_slots_expire_after_member_slots_ttl() {
        let c = cluster(vec![member("a", &json!({})), member("b", &json!({}))]);
        let conf = config(&json!({"member_slots_ttl": 60}));
        let t0 = Instant::now();
        let mut retained = RetainedSlots::default();
        retained.adopt(&["old".into()], t0);
        let existing = [slot("b", SlotKind::Physical, true, 1)];
        assert_eq!(
            retained.update("a", &c, &conf, &existing, t0),
            ["a", "b", "old"]
        );
        // b's member key is gone and its slot with it; its name lasts 60 s.
        let gone = cluster(vec![member("a", &json!({}))]);
        let later = t0 + Duration::from_secs(59);
        assert_eq!(
            retained.update("a", &gone, &conf, &[], later),
            ["a", "b", "old"]
        );
        let expired = t0 + Duration::from_secs(61);
        assert_eq!(retained.update("a", &gone, &conf, &[], expired), ["a"]);
    }

    #[test]
    fn the_feedback_slot_on_the_primary_follows_cascades() {
        let c = cluster(vec![
            member("b", &json!({})),
            member("c", &json!({"replicatefrom": "b"})),
            member("x", &json!({"replicatefrom": "y"})),
            member("y", &json!({"replicatefrom": "x"})),
        ]);
        assert_eq!(
            slot_on_primary("b", &tags(json!({})), &c).as_deref(),
            Some("b")
        );
        assert_eq!(
            slot_on_primary("d", &tags(json!({"replicatefrom": "c"})), &c).as_deref(),
            Some("b"),
            "d <- c <- b <- primary"
        );
        assert_eq!(
            slot_on_primary("d", &tags(json!({"replicatefrom": "nobody"})), &c).as_deref(),
            Some("d"),
            "an unknown upstream: streams from the primary"
        );
        assert_eq!(
            slot_on_primary("d", &tags(json!({"nostream": true})), &c),
            None
        );
        assert_eq!(
            slot_on_primary("d", &tags(json!({"replicatefrom": "x"})), &c),
            None,
            "a loop"
        );
    }

    #[test]
    fn logical_copies_and_feedback_follow_patroni() {
        let logical = config(&json!({"slots": {
            "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}}}));
        let physical_only = config(&json!({"slots": {"arch": {"type": "physical"}}}));
        let c = cluster(vec![
            member("b", &json!({})),
            member(
                "cascade",
                &json!({"replicatefrom": "b", "nofailover": true}),
            ),
            member("leaf", &json!({"replicatefrom": "cascade"})),
        ]);
        let none = tags(json!({}));
        assert!(keeps_logical_copies("b", &none, &c, &logical));
        assert!(!keeps_logical_copies("b", &none, &c, &physical_only));
        let nofailover = tags(json!({"nofailover": true}));
        assert!(!keeps_logical_copies("cascade", &nofailover, &c, &logical));
        assert!(!keeps_logical_copies(
            "x",
            &tags(json!({"nostream": true})),
            &c,
            &logical
        ));
        // `cascade` keeps no copies itself, but `leaf` streams through it and does.
        let from_b = tags(json!({"replicatefrom": "b", "nofailover": true}));
        assert!(needs_hot_standby_feedback(
            "cascade", &from_b, &c, &logical, true
        ));
        assert!(!needs_hot_standby_feedback(
            "cascade", &from_b, &c, &logical, false
        ));
        assert!(!needs_hot_standby_feedback(
            "cascade",
            &from_b,
            &c,
            &physical_only,
            true
        ));
        let standby = config(&json!({"slots": {
            "cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}},
            "standby_cluster": {"host": "elsewhere"}}));
        assert!(!needs_hot_standby_feedback("b", &none, &c, &standby, true));
    }

    #[test]
    fn the_leader_publishes_slot_positions_and_its_own() {
        let existing = [
            slot("b", SlotKind::Physical, true, 300),
            ReplicationSlot {
                confirmed_flush_lsn: Some(Lsn(250)),
                ..slot(
                    "cdc",
                    SlotKind::Logical {
                        database: "app".into(),
                        plugin: "pgoutput".into(),
                    },
                    false,
                    200,
                )
            },
        ];
        let all = published_positions("a", &config(&json!({})), &existing, 400);
        assert_eq!(
            all,
            BTreeMap::from([("a".into(), 400), ("b".into(), 300), ("cdc".into(), 250)])
        );
        let permanent_only = config(
            &json!({"member_slots_ttl": 0, "slots": {"cdc": {"type": "logical", "database": "app", "plugin": "pgoutput"}}}),
        );
        assert_eq!(
            published_positions("a", &permanent_only, &existing, 400),
            BTreeMap::from([("cdc".into(), 250)])
        );
    }
}
