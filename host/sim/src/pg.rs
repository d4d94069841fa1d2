//! The simulated PostgreSQL of one node: data directory, postmaster, role,
//! WAL, upstream and `synchronous_standby_names`.

use keel_ha::PgRole;
use keel_ha::standby_names::{self, Method};

use crate::wal::Wal;

/// The postmaster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proc {
    Stopped { crashed: bool },
    Starting,
    Running,
}

/// A data directory holding a cluster.
#[derive(Debug, Clone)]
pub(crate) struct Data {
    pub(crate) sysid: String,
    pub(crate) wal: Wal,
}

/// One node's PostgreSQL.
#[derive(Debug, Clone)]
pub(crate) struct Pg {
    /// `None`: the data directory is empty.
    pub(crate) data: Option<Data>,
    pub(crate) proc: Proc,
    /// As pg_control would say (a stopped former primary is still `Primary`).
    pub(crate) role: PgRole,
    /// Configured `primary_conninfo` target.
    pub(crate) upstream: Option<String>,
    /// The running `synchronous_standby_names`.
    pub(crate) ssn: String,
    /// The last pg_rewind failed (sticky until the data directory is replaced).
    pub(crate) rewind_failed: bool,
}

impl Pg {
    pub(crate) fn empty() -> Self {
        Self {
            data: None,
            proc: Proc::Stopped { crashed: false },
            role: PgRole::Replica,
            upstream: None,
            ssn: String::new(),
            rewind_failed: false,
        }
    }

    pub(crate) fn running(&self) -> bool {
        self.proc == Proc::Running
    }

    pub(crate) fn is_primary(&self) -> bool {
        self.running() && self.role == PgRole::Primary
    }

    pub(crate) fn is_replica(&self) -> bool {
        self.running() && self.role == PgRole::Replica
    }

    pub(crate) fn wal(&self) -> Option<&Wal> {
        self.data.as_ref().map(|d| &d.wal)
    }

    pub(crate) fn wal_mut(&mut self) -> Option<&mut Wal> {
        self.data.as_mut().map(|d| &mut d.wal)
    }

    /// Stop the postmaster. A fast stop of a primary writes a shutdown checkpoint.
    pub(crate) fn stop(&mut self, fast: bool) {
        if fast
            && self.is_primary()
            && let Some(wal) = self.wal_mut()
        {
            wal.append(SHUTDOWN_CHECKPOINT);
        }
        self.proc = Proc::Stopped { crashed: false };
    }

    /// The postmaster died.
    pub(crate) fn crash(&mut self) {
        if self.proc != (Proc::Stopped { crashed: false }) {
            self.proc = Proc::Stopped { crashed: true };
        }
    }
}

/// Bytes of a shutdown checkpoint record.
pub(crate) const SHUTDOWN_CHECKPOINT: u64 = 104;
/// Bytes of the end-of-recovery record a promotion writes.
pub(crate) const END_OF_RECOVERY: u64 = 112;

/// `synchronous_standby_names` as PostgreSQL applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SyncRule {
    /// Empty: commits do not wait.
    Off,
    /// `*`: the first `n` connected standbys.
    Any(usize),
    /// `N (a,b)` or `a`: the first `n` connected standbys of the list, in its order.
    First(usize, Vec<String>),
    /// `ANY n (a,b)`: any `n` of the listed ones (`None`: `*`, any connected).
    Quorum(usize, Option<Vec<String>>),
}

impl SyncRule {
    /// Parse with keel-ha's parser; keel-ha only renders valid values, so an
    /// unparsable one reads as empty.
    pub(crate) fn parse(ssn: &str) -> Self {
        let Ok(p) = standby_names::parse(ssn) else {
            return Self::Off;
        };
        if p.num == 0 {
            return Self::Off;
        }
        let names: Vec<String> = p.names.iter().map(str::to_owned).collect();
        match (p.method, p.star) {
            (Method::Quorum, true) => Self::Quorum(p.num, None),
            (Method::Quorum, false) => Self::Quorum(p.num, Some(names)),
            (Method::Priority, true) => Self::Any(p.num),
            (Method::Priority, false) => Self::First(p.num, names),
        }
    }

    /// Commits wait for this many standbys.
    pub(crate) fn needed(&self) -> usize {
        match self {
            Self::Off => 0,
            Self::Any(n) | Self::First(n, _) | Self::Quorum(n, _) => *n,
        }
    }

    /// `sync_state` of each connected standby (in the given order), as
    /// `pg_stat_replication` shows it.
    pub(crate) fn states(&self, connected: &[&str]) -> Vec<&'static str> {
        match self {
            Self::Off => vec!["async"; connected.len()],
            Self::Any(n) => (0..connected.len())
                .map(|i| if i < *n { "sync" } else { "potential" })
                .collect(),
            Self::Quorum(_, None) => vec!["quorum"; connected.len()],
            Self::Quorum(_, Some(list)) => connected
                .iter()
                .map(|c| {
                    if list.iter().any(|l| l.eq_ignore_ascii_case(c)) {
                        "quorum"
                    } else {
                        "async"
                    }
                })
                .collect(),
            Self::First(n, list) => {
                let mut rank: Vec<(usize, usize)> = connected
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        list.iter()
                            .position(|l| l.eq_ignore_ascii_case(c))
                            .map(|p| (p, i))
                    })
                    .collect();
                rank.sort_unstable();
                let mut out = vec!["async"; connected.len()];
                for (k, (_, i)) in rank.into_iter().enumerate() {
                    out[i] = if k < *n { "sync" } else { "potential" };
                }
                out
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standby_names_as_postgres_applies_them() {
        assert_eq!(SyncRule::parse(""), SyncRule::Off);
        assert_eq!(
            SyncRule::parse("*").states(&["a", "b"]),
            ["sync", "potential"]
        );
        let one = SyncRule::parse("n1");
        assert_eq!(one.states(&["n0", "n1"]), ["async", "sync"]);
        let two = SyncRule::parse("2 (n2,\"N1\")");
        assert_eq!(two.needed(), 2);
        assert_eq!(two.states(&["N1", "n2", "n3"]), ["sync", "sync", "async"]);
        let first = SyncRule::First(1, vec!["b".into(), "a".into()]);
        assert_eq!(first.states(&["a", "b"]), ["potential", "sync"]);
        let any = SyncRule::parse("ANY 2 (n1,\"N2\",n3)");
        assert_eq!(any.needed(), 2);
        assert_eq!(
            any.states(&["n1", "N2", "n4"]),
            ["quorum", "quorum", "async"]
        );
        let star = SyncRule::parse("ANY 1 (*)");
        assert_eq!(star.states(&["n1", "n2"]), ["quorum", "quorum"]);
    }
}
