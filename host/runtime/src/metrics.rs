//! Per-plugin counters for `/metrics`: calls, latency, faults, memory.
//!
//! Lock-free atomics: updated on every call, read rarely.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, seconds (Prometheus style).
pub const LATENCY_BUCKETS: [f64; 10] = [
    0.000_01, 0.000_1, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// Live counters of one plugin.
#[derive(Debug, Default)]
pub struct PluginMetrics {
    calls: AtomicU64,
    failures: AtomicU64,
    traps: AtomicU64,
    deadline_hits: AtomicU64,
    memory_limit_hits: AtomicU64,
    bad_returns: AtomicU64,
    instantiations: AtomicU64,
    memory_high_water: AtomicU64,
    latency_sum_nanos: AtomicU64,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricsSnapshot {
    /// Calls made.
    pub calls: u64,
    /// Calls that failed with a [`crate::PluginError`].
    pub failures: u64,
    /// Traps.
    pub traps: u64,
    /// Deadline hits.
    pub deadline_hits: u64,
    /// Memory-limit hits.
    pub memory_limit_hits: u64,
    /// Contract-breaking return values.
    pub bad_returns: u64,
    /// Instances created (the first one included).
    pub instantiations: u64,
    /// Largest linear memory any instance grew to, bytes.
    pub memory_high_water: u64,
    /// Sum of call latencies, seconds.
    pub latency_sum_seconds: f64,
    /// Cumulative counts per [`LATENCY_BUCKETS`] bound.
    pub latency_buckets: Vec<u64>,
}

impl PluginMetrics {
    pub(crate) fn record_call(&self, elapsed: Duration) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos
            .fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    pub(crate) fn record_failure(&self, error: &crate::PluginError) {
        use crate::PluginError as E;
        self.failures.fetch_add(1, Ordering::Relaxed);
        let counter = match error {
            E::Trap { .. } => &self.traps,
            E::Deadline { .. } => &self.deadline_hits,
            E::MemoryLimit { .. } => &self.memory_limit_hits,
            E::BadReturn { .. } => &self.bad_returns,
            E::Instantiate { .. } => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_instantiation(&self) {
        self.instantiations.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_memory(&self, bytes: usize) {
        self.memory_high_water
            .fetch_max(bytes as u64, Ordering::Relaxed);
    }

    /// Read every counter.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        MetricsSnapshot {
            calls: get(&self.calls),
            failures: get(&self.failures),
            traps: get(&self.traps),
            deadline_hits: get(&self.deadline_hits),
            memory_limit_hits: get(&self.memory_limit_hits),
            bad_returns: get(&self.bad_returns),
            instantiations: get(&self.instantiations),
            memory_high_water: get(&self.memory_high_water),
            latency_sum_seconds: get(&self.latency_sum_nanos) as f64 / 1e9,
            latency_buckets: self.latency_buckets.iter().map(get).collect(),
        }
    }
}
