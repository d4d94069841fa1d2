//! `ttl`, `loop_wait` and `retry_timeout`: the three numbers that decide failover speed and
//! whether a member can keep its leader lease through a slow DCS.
//!
//! Patroni refuses `ttl < 20`, `loop_wait < 1` and `retry_timeout < 3`, and enforces
//! `loop_wait + 2·retry_timeout ≤ ttl` (a leader must be able to retry the DCS twice within
//! one lease). Keel keeps the invariant but, as an opt-in, allows a lower ttl for faster
//! failover; the caller picks the floor, since a cluster with Patroni members must keep
//! Patroni's. Adjustments are returned as sentences so the daemon can log them.

use crate::dynamic::DynamicConfig;

/// Minimum ttl Keel allows by default under [`TtlFloor::Keel`].
pub const KEEL_DEFAULT_MIN_TTL: u32 = 4;

/// Which lower bounds apply to the timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlFloor {
    /// Patroni's: ttl ≥ 20, loop_wait ≥ 1, retry_timeout ≥ 3.
    Patroni,
    /// Keel's: ttl ≥ `min_ttl` (at least 3), loop_wait ≥ 1, retry_timeout ≥ 1.
    Keel {
        /// The smallest ttl accepted.
        min_ttl: u32,
    },
}

impl TtlFloor {
    /// Keel's floor with the default minimum ttl.
    pub const fn keel() -> Self {
        Self::Keel {
            min_ttl: KEEL_DEFAULT_MIN_TTL,
        }
    }
}

/// Timeouts in seconds that satisfy the floor and `loop_wait + 2·retry_timeout ≤ ttl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// Leader lease in seconds.
    pub ttl: u32,
    /// Seconds between HA cycles.
    pub loop_wait: u32,
    /// Seconds a DCS or Postgres operation is retried.
    pub retry_timeout: u32,
}

impl DynamicConfig {
    /// Applies the floor and the invariant as Patroni's `_validate_and_adjust_timeouts`
    /// does: raise each value to its minimum; then if even `loop_wait = 1` breaks the rule,
    /// set `loop_wait = 1` and `retry_timeout = (ttl − 1) / 2`; otherwise lower `loop_wait`.
    pub fn validated_timeouts(&self, floor: TtlFloor) -> (Timeouts, Vec<String>) {
        let (min_ttl, min_retry) = match floor {
            TtlFloor::Patroni => (20, 3),
            TtlFloor::Keel { min_ttl } => (min_ttl.max(3), 1),
        };
        let mut warnings = Vec::new();
        let mut at_least = |name: &str, value: u32, min: u32| {
            if value < min {
                warnings.push(format!(
                    "{name}={value} can't be smaller than {min}, adjusting to {min}"
                ));
                min
            } else {
                value
            }
        };
        let mut loop_wait = at_least("loop_wait", self.loop_wait, 1);
        let mut retry = at_least("retry_timeout", self.retry_timeout, min_retry);
        let ttl = at_least("ttl", self.ttl, min_ttl);
        let budget = |lw: u32, rt: u32| u64::from(lw) + 2 * u64::from(rt);
        if budget(1, retry) > u64::from(ttl) {
            let new_retry = (ttl - 1) / 2;
            warnings.push(format!(
                "violated the rule \"loop_wait + 2*retry_timeout <= ttl\" with ttl={ttl}: \
                 adjusting loop_wait from {loop_wait} to 1 and retry_timeout from {retry} to {new_retry}"
            ));
            loop_wait = 1;
            retry = new_retry;
        } else if budget(loop_wait, retry) > u64::from(ttl) {
            let new_loop_wait = ttl - 2 * retry;
            warnings.push(format!(
                "violated the rule \"loop_wait + 2*retry_timeout <= ttl\" with ttl={ttl} and \
                 retry_timeout={retry}: adjusting loop_wait from {loop_wait} to {new_loop_wait}"
            ));
            loop_wait = new_loop_wait;
        }
        (
            Timeouts {
                ttl,
                loop_wait,
                retry_timeout: retry,
            },
            warnings,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        ttl: u32,
        loop_wait: u32,
        retry_timeout: u32,
        floor: TtlFloor,
    ) -> ((u32, u32, u32), usize) {
        let c = DynamicConfig {
            ttl,
            loop_wait,
            retry_timeout,
            ..DynamicConfig::default()
        };
        let (t, w) = c.validated_timeouts(floor);
        ((t.ttl, t.loop_wait, t.retry_timeout), w.len())
    }

    #[test]
    fn patroni_floor_table() {
        let p = TtlFloor::Patroni;
        assert_eq!(run(30, 10, 10, p), ((30, 10, 10), 0));
        // The feasibility run: asked 10/2/3, Patroni made it 20/2/3.
        assert_eq!(run(10, 2, 3, p), ((20, 2, 3), 1));
        assert_eq!(run(20, 0, 1, p), ((20, 1, 3), 2));
        assert_eq!(run(30, 10, 15, p), ((30, 1, 14), 1));
        assert_eq!(run(30, 15, 10, p), ((30, 10, 10), 1));
        assert_eq!(run(0, 0, 0, p), ((20, 1, 3), 3));
    }

    #[test]
    fn keel_floor_table() {
        let k = TtlFloor::keel();
        assert_eq!(run(10, 2, 3, k), ((10, 2, 3), 0));
        assert_eq!(run(4, 1, 1, k), ((4, 1, 1), 0));
        assert_eq!(run(2, 1, 1, k), ((4, 1, 1), 1));
        assert_eq!(run(6, 5, 2, k), ((6, 2, 2), 1));
        assert_eq!(run(5, 1, 3, k), ((5, 1, 2), 1));
        assert_eq!(run(8, 1, 0, TtlFloor::Keel { min_ttl: 8 }), ((8, 1, 1), 1));
        // min_ttl below 3 is raised to 3 so that retry_timeout can stay >= 1.
        assert_eq!(run(1, 1, 1, TtlFloor::Keel { min_ttl: 0 }), ((3, 1, 1), 1));
    }
}
