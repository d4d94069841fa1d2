//! The health-check decision (patroni-compat.md §3.2): which status code a path
//! gets, from the facts of one status report.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// What the health checks look at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthFacts {
    /// PostgreSQL state is `running`.
    pub running: bool,
    /// The REST role: `primary`, `replica`, `standby_leader`, `demoted`, ...
    pub role: String,
    /// The daemon holds the leader lock ("I am leader").
    pub is_leader: bool,
    /// The cluster is paused.
    pub paused: bool,
    /// A recent DCS view exists.
    pub has_cluster_view: bool,
    /// This is a standby cluster.
    pub standby_cluster: bool,
    /// The leader's published optime.
    pub leader_optime: u64,
    /// This node's replayed position.
    pub replayed: u64,
    /// A replica's received (written) WAL position.
    pub received: u64,
    /// A replica's WAL receiver is streaming.
    pub streaming: bool,
    /// failsafe mode is active (the DCS is gone but the leader confirmed itself).
    pub failsafe_active: bool,
    /// `maximum_lag_on_failover`: `/readiness`'s default lag limit.
    pub maximum_lag_on_failover: u64,
    /// Tagged `noloadbalance`.
    pub noloadbalance: bool,
    /// Listed in `/sync`.
    pub sync_standby: bool,
    /// Listed as a quorum voter.
    pub quorum_standby: bool,
    /// The configured tags (for `tag_<name>=` filters).
    pub tags: Map<String, Value>,
}

/// Parse `?lag=`: bytes, or a size with a unit (`16MB`, `1GB`, `512kB`).
fn parse_lag(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1 << 10,
        "mb" => 1 << 20,
        "gb" => 1 << 30,
        "tb" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn tag_value(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string().to_lowercase(),
    }
}

/// `GET /readiness` (Patroni 4.1): the leader is ready; a replica is ready when
/// PostgreSQL runs, its WAL receiver streams, the DCS is reachable (or failsafe
/// is active) and it lags at most `?lag=` (default `maximum_lag_on_failover`),
/// measured on replayed WAL (`mode=apply`, the default) or received WAL (`mode=write`).
pub fn readiness_code(query: &BTreeMap<String, String>, f: &HealthFacts) -> u16 {
    if f.is_leader {
        return 200;
    }
    if !f.running || !f.streaming || !(f.has_cluster_view || f.failsafe_active) {
        return 503;
    }
    let limit = query
        .get("lag")
        .and_then(|l| parse_lag(l))
        .unwrap_or(f.maximum_lag_on_failover);
    let position = if query.get("mode").map(String::as_str) == Some("write") {
        f.received.max(f.replayed)
    } else {
        f.replayed
    };
    if f.leader_optime > 0 && f.leader_optime.saturating_sub(position) > limit {
        503
    } else {
        200
    }
}

/// The status code for `path` with `query` parameters.
pub fn health_code(path: &str, query: &BTreeMap<String, String>, f: &HealthFacts) -> u16 {
    let ok = |b: bool| if b { 200 } else { 503 };
    let lag = query.get("lag").and_then(|l| parse_lag(l));
    let lagging = lag
        .is_some_and(|lag| f.leader_optime > 0 && f.leader_optime > f.replayed.saturating_add(lag));
    let replica_code = ok(!f.noloadbalance && !lagging && f.role == "replica" && f.running);
    let primary_role = f.role == "primary" || f.role == "master";
    let (leader_code, primary_code, standby_leader_code) = if !f.has_cluster_view && f.paused {
        (
            ok(primary_role || f.role == "standby_leader"),
            ok(primary_role),
            ok(f.role == "standby_leader"),
        )
    } else if f.is_leader {
        if f.standby_cluster {
            (
                200,
                503,
                ok(f.role == "replica" || f.role == "standby_leader"),
            )
        } else {
            // Stricter than Patroni, which answers 200 from the moment the lock is held: a
            // load balancer gets writes here only once PostgreSQL runs as a primary (not
            // while it is still promoting, nor after it crashed).
            (200, ok(primary_role && f.running), 503)
        }
    } else {
        (503, 503, 503)
    };
    let replica_code = if f.is_leader && f.standby_cluster {
        503
    } else {
        replica_code
    };
    let path = if path == "/" || path.is_empty() {
        "/primary"
    } else {
        path
    };
    let (code, filtered) = if path.contains("standby_leader") || path.contains("standby-leader") {
        (standby_leader_code, false)
    } else if path.contains("leader") {
        (leader_code, false)
    } else if path.contains("master") || path.contains("primary") || path.contains("read-write") {
        (primary_code, false)
    } else if path.contains("replica") {
        (replica_code, true)
    } else if path.contains("read-only") && !path.contains("sync") && !path.contains("quorum") {
        let leaderish = primary_code == 200 || standby_leader_code == 200;
        (if leaderish { 200 } else { replica_code }, true)
    } else if path.contains("health") {
        (ok(f.running), true)
    } else if !f.has_cluster_view {
        (503, true)
    } else {
        let leaderish = primary_code == 200 || standby_leader_code == 200;
        let code = match path {
            "/sync" | "/synchronous" if f.sync_standby => replica_code,
            "/quorum" if f.quorum_standby => replica_code,
            "/async" | "/asynchronous" => {
                if f.sync_standby || f.quorum_standby {
                    503
                } else {
                    replica_code
                }
            }
            "/read-only-sync" | "/read-only-synchronous" => {
                if leaderish {
                    200
                } else if f.sync_standby {
                    replica_code
                } else {
                    503
                }
            }
            "/read-only-quorum" => {
                if leaderish {
                    200
                } else if f.quorum_standby {
                    replica_code
                } else {
                    503
                }
            }
            _ => 503,
        };
        (code, true)
    };
    if code != 200 || !filtered {
        return code;
    }
    for (key, wanted) in query {
        if let Some(tag) = key.strip_prefix("tag_") {
            match f.tags.get(tag) {
                Some(value) if tag_value(value) == *wanted => {}
                _ => return 503,
            }
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn primary() -> HealthFacts {
        HealthFacts {
            running: true,
            role: "primary".into(),
            is_leader: true,
            has_cluster_view: true,
            ..HealthFacts::default()
        }
    }

    fn replica() -> HealthFacts {
        HealthFacts {
            running: true,
            role: "replica".into(),
            has_cluster_view: true,
            leader_optime: 100 << 20,
            replayed: 80 << 20,
            ..HealthFacts::default()
        }
    }

    #[test]
    fn the_table_of_patroni_compat() {
        let none = q(&[]);
        for (path, p, r) in [
            ("/", 200, 503),
            ("/primary", 200, 503),
            ("/master", 200, 503),
            ("/read-write", 200, 503),
            ("/leader", 200, 503),
            ("/replica", 503, 200),
            ("/read-only", 200, 200),
            ("/health", 200, 200),
            ("/standby-leader", 503, 503),
            ("/sync", 503, 503),
            ("/async", 503, 200),
            ("/nonsense", 503, 503),
        ] {
            assert_eq!(health_code(path, &none, &primary()), p, "primary {path}");
            assert_eq!(health_code(path, &none, &replica()), r, "replica {path}");
        }
    }

    #[test]
    fn readiness_wants_a_streaming_replica_within_the_lag_limit() {
        let mut f = HealthFacts {
            running: true,
            streaming: true,
            has_cluster_view: true,
            leader_optime: 1000,
            replayed: 100,
            received: 990,
            maximum_lag_on_failover: 500,
            ..HealthFacts::default()
        };
        let q = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(readiness_code(&q(&[]), &f), 503);
        assert_eq!(readiness_code(&q(&[("mode", "write")]), &f), 200);
        assert_eq!(readiness_code(&q(&[("lag", "1kB")]), &f), 200);
        f.streaming = false;
        assert_eq!(readiness_code(&q(&[("lag", "1kB")]), &f), 503);
        f.is_leader = true;
        assert_eq!(readiness_code(&q(&[]), &f), 200);
    }

    #[test]
    fn lag_and_tags_filter_replicas() {
        assert_eq!(
            health_code("/replica", &q(&[("lag", "10MB")]), &replica()),
            503
        );
        assert_eq!(
            health_code("/replica", &q(&[("lag", "30MB")]), &replica()),
            200
        );
        assert_eq!(
            health_code("/replica", &q(&[("lag", "junk")]), &replica()),
            200
        );
        let mut tagged = replica();
        tagged.tags.insert("zone".into(), Value::String("b".into()));
        tagged.tags.insert("backup".into(), Value::Bool(true));
        assert_eq!(
            health_code("/replica", &q(&[("tag_zone", "a")]), &tagged),
            503
        );
        assert_eq!(
            health_code("/replica", &q(&[("tag_zone", "b")]), &tagged),
            200
        );
        assert_eq!(
            health_code("/replica", &q(&[("tag_backup", "true")]), &tagged),
            200
        );
        assert_eq!(
            health_code("/replica", &q(&[("tag_rack", "1")]), &tagged),
            503
        );
        let mut nolb = replica();
        nolb.noloadbalance = true;
        assert_eq!(health_code("/replica", &q(&[]), &nolb), 503);
    }

    #[test]
    fn the_lock_holder_is_primary_only_once_postgresql_runs_as_one() {
        let mut f = primary();
        assert_eq!(health_code("/primary", &q(&[]), &f), 200);
        // Still promoting: the lock is held, writes would fail.
        f.role = "replica".into();
        assert_eq!(health_code("/primary", &q(&[]), &f), 503);
        assert_eq!(health_code("/leader", &q(&[]), &f), 200);
        // PostgreSQL is down under a lock holder.
        let mut crashed = primary();
        crashed.running = false;
        assert_eq!(health_code("/primary", &q(&[]), &crashed), 503);
        assert_eq!(health_code("/leader", &q(&[]), &crashed), 200);
    }

    #[test]
    fn a_primary_without_the_lock_is_not_primary() {
        let mut f = primary();
        f.is_leader = false;
        assert_eq!(health_code("/primary", &q(&[]), &f), 503);
        f.paused = true;
        f.has_cluster_view = false;
        assert_eq!(health_code("/primary", &q(&[]), &f), 200);
    }
}
