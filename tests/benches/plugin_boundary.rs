//! Benchmark of the plugin boundary: what a call into a plugin costs.
//!
//! Run: `cargo bench -p keel-tests --bench plugin_boundary` (add `-- --quick` for
//! fewer samples). Prints p50/p99 per measurement; figures are for this machine
//! and this run only, so compare the rows with each other, not with other runs.
//!
//! * host→guest: a call that does nothing inside the plugin;
//! * guest→host: one import call (a log record below the active level), measured
//!   as the cost of a call making 1000 imports minus the empty call, per import;
//! * cold load (compile) vs cached load of the etcd plugin;
//! * the first call after a trap (a fresh instance, configuration replayed) vs a
//!   call on a live instance.

#![allow(
    clippy::print_stdout,
    reason = "a benchmark reports on standard output"
)]

use std::time::{Duration, Instant};

use keel_dcs::{DcsBackend, Settings};
use keel_runtime::{Grants, GroupView, LoadedPlugin, PluginLimits, Runtime, RuntimeOptions};
use keel_tests::{PluginDir, components as c};

struct Samples(Vec<Duration>);

impl Samples {
    fn percentile(&mut self, p: f64) -> Duration {
        self.0.sort();
        let index = ((self.0.len() as f64 - 1.0) * p).round() as usize;
        self.0[index]
    }

    fn report(mut self, name: &str) -> (Duration, Duration) {
        let (p50, p99) = (self.percentile(0.50), self.percentile(0.99));
        println!(
            "{name:<48} n={:<6} p50={:>10.2?} p99={:>10.2?}",
            self.0.len(),
            p50,
            p99
        );
        (p50, p99)
    }
}

async fn time<F: AsyncFnMut()>(n: usize, mut f: F) -> Samples {
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        f().await;
        samples.push(started.elapsed());
    }
    Samples(samples)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let scale = if quick { 10 } else { 1 };
    let dir = PluginDir::with(&[c::FIXTURE_DCS, c::ETCD, c::HOSTILE_PANIC])?;
    let runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.cache()),
    })?;
    let fixture = LoadedPlugin::load(&runtime, &dir.path().join("fixture_dcs.wasm")).await?;
    let dcs = fixture.dcs(Grants::default(), PluginLimits::default())?;
    dcs.configure(Settings::new("bench", "m1")).await?;

    println!("plugin boundary benchmark (keel-runtime, wasmtime 48)");
    let (noop, _) = time(20_000 / scale, async || {
        dcs.probe_noop().await.expect("noop");
    })
    .await
    .report("host->guest call, empty");

    let imports = 1000;
    let mut with_imports = time(2_000 / scale, async || {
        dcs.set_retry_timeout(imports).await.expect("imports");
    })
    .await;
    let per_import = |d: Duration| d.saturating_sub(noop) / imports;
    let (p50, p99) = (with_imports.percentile(0.5), with_imports.percentile(0.99));
    println!(
        "{:<48} n={:<6} p50={:>10.2?} p99={:>10.2?}",
        "guest->host import (log), per call",
        with_imports.0.len(),
        per_import(p50),
        per_import(p99)
    );

    let etcd = dir.path().join("etcd.wasm");
    let cold = time(20 / scale.min(2), async || {
        let fresh = Runtime::new(RuntimeOptions::default()).expect("runtime");
        LoadedPlugin::load(&fresh, &etcd).await.expect("load");
    })
    .await
    .report("load etcd plugin, compiling (no cache)");
    let cached_runtime = Runtime::new(RuntimeOptions {
        cache_dir: Some(dir.cache()),
    })?;
    LoadedPlugin::load(&cached_runtime, &etcd).await?;
    let cached = time(200 / scale, async || {
        let plugin = LoadedPlugin::load(&cached_runtime, &etcd)
            .await
            .expect("load");
        assert!(plugin.from_cache());
    })
    .await
    .report("load etcd plugin, cached code");
    println!(
        "{:<48} {:.1}x faster",
        "  cached vs compiled (p50)",
        cold.0.as_secs_f64() / cached.0.as_secs_f64()
    );

    let hostile = LoadedPlugin::load(&runtime, &dir.path().join("hostile_panic.wasm")).await?;
    let mpp = hostile.mpp(Grants::default(), PluginLimits::default())?;
    mpp.validate_config("{}").await?;
    let live = time(2_000 / scale, async || {
        mpp.group().await.expect("group");
    })
    .await
    .report("mpp call on a live instance");
    let formation: Vec<GroupView> = Vec::new();
    let mut after_trap = Vec::new();
    for _ in 0..(500 / scale) {
        assert!(mpp.sync_meta_data(&formation).await.is_err());
        let started = Instant::now();
        mpp.group().await?;
        after_trap.push(started.elapsed());
    }
    let fresh = Samples(after_trap).report("mpp call after a trap (re-instantiate+replay)");
    println!(
        "{:<48} {:.1}x a live call (p50)",
        "  first call after a trap",
        fresh.0.as_secs_f64() / live.0.as_secs_f64()
    );
    Ok(())
}
