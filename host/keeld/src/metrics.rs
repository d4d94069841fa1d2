//! Per-plugin figures for `/metrics`, next to Patroni's own metrics: calls,
//! failures by kind, re-instantiations, memory high-water and a latency
//! histogram, one series per plugin instance.

use std::fmt::Write as _;
use std::sync::Arc;

use keel_api::escape_label;
use keel_runtime::{LATENCY_BUCKETS, PluginMetrics};

/// One plugin instance whose counters are exported.
#[derive(Clone)]
pub(crate) struct PluginSeries {
    /// The plugin's name (`etcd`, `citus`).
    pub(crate) plugin: String,
    /// Which instance (`loop`, `watch`, `api`, `mpp`).
    pub(crate) instance: &'static str,
    pub(crate) metrics: Arc<PluginMetrics>,
}

/// Reads one counter from a snapshot.
type Counter = fn(&keel_runtime::MetricsSnapshot) -> u64;

/// Prometheus text for every series.
pub(crate) fn render(series: &[PluginSeries], scope: &str, member: &str) -> String {
    let mut out = String::new();
    let counters: [(&str, &str, Counter); 7] = [
        ("keel_plugin_calls_total", "Calls into the plugin.", |s| {
            s.calls
        }),
        (
            "keel_plugin_failures_total",
            "Calls that failed (any reason).",
            |s| s.failures,
        ),
        ("keel_plugin_traps_total", "Calls that trapped.", |s| {
            s.traps
        }),
        (
            "keel_plugin_deadline_hits_total",
            "Calls stopped at their deadline.",
            |s| s.deadline_hits,
        ),
        (
            "keel_plugin_memory_limit_hits_total",
            "Calls stopped at the memory limit.",
            |s| s.memory_limit_hits,
        ),
        (
            "keel_plugin_bad_returns_total",
            "Calls that returned an invalid value.",
            |s| s.bad_returns,
        ),
        (
            "keel_plugin_instantiations_total",
            "Instances created (the first and after every fault).",
            |s| s.instantiations,
        ),
    ];
    let snapshots: Vec<_> = series
        .iter()
        .map(|s| {
            let labels = format!(
                "scope=\"{}\",name=\"{}\",plugin=\"{}\",instance=\"{}\"",
                escape_label(scope),
                escape_label(member),
                escape_label(&s.plugin),
                s.instance
            );
            (labels, s.metrics.snapshot())
        })
        .collect();
    for (name, help, value) in counters {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} counter");
        for (labels, snap) in &snapshots {
            let _ = writeln!(out, "{name}{{{labels}}} {}", value(snap));
        }
    }
    let name = "keel_plugin_memory_high_water_bytes";
    let _ = writeln!(
        out,
        "# HELP {name} Largest linear memory the plugin has used."
    );
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, snap) in &snapshots {
        let _ = writeln!(out, "{name}{{{labels}}} {}", snap.memory_high_water);
    }
    let name = "keel_plugin_call_duration_seconds";
    let _ = writeln!(out, "# HELP {name} Time spent in plugin calls.");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, snap) in &snapshots {
        for (bound, count) in LATENCY_BUCKETS.iter().zip(&snap.latency_buckets) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {count}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", snap.calls);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", snap.latency_sum_seconds);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", snap.calls);
    }
    out
}
