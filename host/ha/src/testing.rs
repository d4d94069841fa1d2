//! Test fixtures: small observations built from raw DCS entries, so the rule
//! tests exercise the real model parsers.

use chrono::{DateTime, Utc};
use keel_config::DynamicConfig;
use keel_model::{Cluster, Entry, MemberData};

use crate::observation::{
    Answers, DataDir, Divergence, Me, Memory, Observation, PeerStatus, PgRole, Postgres, Process,
};

/// A view with `leader` holding the key and these members, all running.
pub(crate) fn cluster(leader: Option<&str>, members: &[&str]) -> Cluster {
    cluster_with(leader, members, &[])
}

/// [`cluster`] with more raw keys (`("sync", "{..}")`).
pub(crate) fn cluster_with(
    leader: Option<&str>,
    members: &[&str],
    keys: &[(&str, &str)],
) -> Cluster {
    let mut entries: Vec<Entry> = members
        .iter()
        .map(|name| Entry {
            key: format!("members/{name}"),
            value: MemberData {
                api_url: Some(format!("http://{name}:8008/patroni")),
                state: Some("running".to_owned()),
                ..MemberData::default()
            }
            .render(),
            version: "1".to_owned(),
            session: None,
        })
        .collect();
    entries.push(Entry {
        key: "initialize".to_owned(),
        value: "7000000000000000001".to_owned(),
        version: "1".to_owned(),
        session: None,
    });
    if let Some(leader) = leader {
        entries.push(Entry {
            key: "leader".to_owned(),
            value: leader.to_owned(),
            version: "2".to_owned(),
            session: None,
        });
    }
    for (key, value) in keys {
        entries.push(Entry {
            key: (*key).to_owned(),
            value: (*value).to_owned(),
            version: "3".to_owned(),
            session: None,
        });
    }
    Cluster::from_entries(&entries)
}

/// A peer's answer: reachable, running as a replica (or a primary), at LSN 1000.
pub(crate) fn peer(name: &str, primary: bool) -> PeerStatus {
    PeerStatus {
        name: name.to_owned(),
        reachable: true,
        running: true,
        in_recovery: !primary,
        wal_position: 1000,
        timeline: 2,
        ..PeerStatus::unreachable(name)
    }
}

/// A running replica of `upstream` on timeline 2.
pub(crate) fn replica(upstream: Option<&str>) -> Postgres {
    Postgres {
        data_dir: DataDir::Initialized {
            sysid: "7000000000000000001".to_owned(),
        },
        process: Process::Running,
        role: PgRole::Replica,
        timeline: 2,
        wal_position: 1000,
        upstream: upstream.map(crate::Source::member),
        ..Postgres::empty()
    }
}

/// `me` observing `cluster` with `postgres`, default settings, empty memory.
pub(crate) fn observation(me: &str, cluster: Cluster, postgres: Postgres) -> Observation {
    Observation {
        now: DateTime::<Utc>::UNIX_EPOCH,
        me: Me {
            name: me.to_owned(),
            can_bootstrap: true,
            use_pg_rewind: true,
            ..Me::default()
        },
        config: DynamicConfig::default(),
        cluster: Ok(cluster),
        postgres,
        memory: Memory::default(),
        running: None,
        answers: Answers::default(),
    }
}

/// The divergence field, for readability in tests.
pub(crate) fn with_divergence(mut pg: Postgres, divergence: Divergence) -> Postgres {
    pg.divergence = divergence;
    pg
}
