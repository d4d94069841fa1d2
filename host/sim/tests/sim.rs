//! The simulation suite: every mode across seeds and cluster sizes, replay,
//! and proof that the checker catches what it claims to catch.
//!
//! `keel-sim --seeds 1000 --steps 100000` (release) is the long soak.

use keel_sim::{Mode, SimConfig, Simulation, Violation};

/// Seeds per mode in the CI run.
const SEEDS: u64 = 8;
/// Steps per run: bootstrap, two fault phases and their liveness checks.
const STEPS: u64 = 10_000;

fn run(config: SimConfig) -> Result<keel_sim::Report, Box<Violation>> {
    Simulation::new(config).run().map_err(Box::new)
}

/// Every mode holds every invariant over 7 × 8 × 10 000 = 560 000 steps.
#[test]
fn every_mode_holds_the_invariants() {
    let mut steps = 0;
    let mut failures = Vec::new();
    for mode in Mode::ALL {
        for seed in 0..SEEDS {
            let config = SimConfig::new(seed, mode)
                .steps(STEPS)
                .nodes(2 + (seed % 4) as usize);
            match run(config) {
                Ok(report) => {
                    steps += report.steps;
                    assert!(report.converged >= 2, "{mode:?} seed {seed}: {report:?}");
                    assert!(report.faults > 0, "{mode:?} seed {seed}: no faults");
                }
                Err(v) => failures.push(v.to_string()),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(steps >= 100_000, "only {steps} steps");
}

/// A seed gives the same run, event for event.
#[test]
fn a_seed_replays_identically() {
    let config = || {
        let mut c = SimConfig::new(42, Mode::SyncStrict).steps(4_000).nodes(3);
        c.trace_all = true;
        c
    };
    let (a, b) = (run(config()), run(config()));
    let (a, b) = (a.expect("seed 42 holds"), b.expect("seed 42 holds"));
    assert!(a.trace.len() > 100);
    assert_eq!(a.trace, b.trace);
    assert_eq!(
        (a.cycles, a.promotions, a.acked),
        (b.cycles, b.promotions, b.acked)
    );
}

/// Without faults the cluster bootstraps once, converges and stays put.
#[test]
fn a_quiet_cluster_converges_and_stays_put() {
    for mode in Mode::ALL {
        let mut config = SimConfig::new(7, mode).steps(3_000).nodes(4);
        config.faults = false;
        let report = run(config).expect("no faults, no violation");
        assert_eq!(report.converged, 1, "{mode:?}: {report:?}");
        assert_eq!(report.promotions, 0, "{mode:?}: {report:?}");
        assert!(report.acked > 2_000, "{mode:?}: {report:?}");
        assert!(report.max_convergence_ms < 30_000, "{mode:?}: {report:?}");
    }
}

/// The first seed (of `tries`) whose run fails with a violation mentioning `what`.
fn find(tries: u64, what: &str, config: impl Fn(u64) -> SimConfig) -> Option<Box<Violation>> {
    (0..tries).find_map(|seed| run(config(seed)).err().filter(|v| v.what.contains(what)))
}

/// Without a watchdog a frozen primary outlives its lease, as in Patroni: the
/// checker must see the two primaries (and print a replayable seed).
#[test]
fn the_checker_catches_split_brain_without_a_watchdog() {
    let violation = find(40, "split brain", |seed| {
        let mut c = SimConfig::new(seed, Mode::Async).steps(8_000).nodes(3);
        c.watchdog = false;
        c
    })
    .expect("a frozen primary without a watchdog makes two primaries");
    let text = violation.to_string();
    assert!(text.contains("--no-watchdog"), "{text}");
    assert!(text.contains("--seed"), "{text}");
    assert!(violation.trace.len() > 10, "{text}");
}

/// Without a WAL archive two promotions can pick the same timeline number:
/// the checker must see the replica that then streams a foreign history.
#[test]
fn the_checker_catches_timeline_collisions_without_an_archive() {
    find(60, "WAL differs", |seed| {
        let mut c = SimConfig::new(seed, Mode::Async).steps(8_000).nodes(2);
        c.archive = false;
        c
    })
    .expect("two promotions from one timeline collide without an archive");
}

/// A PostgreSQL that acknowledges commits before its synchronous standbys have
/// them loses acknowledged commits on failover: the strict-mode and quorum
/// checks must see it.
#[test]
fn the_checker_catches_lost_commits_in_strict_and_quorum_mode() {
    for mode in [Mode::SyncStrict, Mode::Quorum] {
        find(40, "acknowledged commit lost", |seed| {
            let mut c = SimConfig::new(seed, mode).steps(8_000).nodes(3);
            c.ack_without_standbys = true;
            c
        })
        .unwrap_or_else(|| panic!("{mode:?}: acknowledging early loses commits"));
    }
}

/// Runs in which quorum commit once lost acknowledged commits, each from a
/// rule Keel tightened over Patroni's: a switchover candidate taking over after
/// its leader died without the votes a failover needs (seed 22), and a new
/// primary cut off from the DCS before it had taken `/sync` over, so that the
/// old leader could win a race without votes (seed 61).
#[test]
fn quorum_commit_keeps_the_commits_it_once_lost() {
    for (seed, nodes, steps) in [(22, 4, 20_000), (61, 3, 100_000)] {
        let config = SimConfig::new(seed, Mode::Quorum).steps(steps).nodes(nodes);
        if let Err(v) = run(config) {
            panic!("seed {seed}: {v}");
        }
    }
}
