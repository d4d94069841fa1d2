//! `keel-sim`: run many seeds (soak) or replay one with its trace.
//!
//! ```text
//! keel-sim --seeds 1000 --steps 100000           # every mode, seeds 0..1000
//! keel-sim --seed 42 --mode strict               # replay one run, print its trace
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Instant;

use keel_sim::{Mode, SimConfig, Simulation};

struct Args {
    seeds: u64,
    first_seed: u64,
    seed: Option<u64>,
    steps: u64,
    nodes: Option<usize>,
    modes: Vec<Mode>,
    watchdog: bool,
    archive: bool,
    verbose: bool,
}

const USAGE: &str = "usage: keel-sim [--seeds N] [--first-seed N] [--seed N] [--steps N] \
                     [--nodes N] [--mode async|sync|strict|quorum|quorum-strict|failsafe|pause] [--no-watchdog] [--no-archive] [--verbose]";

fn parse() -> Result<Args, String> {
    let mut args = Args {
        seeds: 100,
        first_seed: 0,
        seed: None,
        steps: 100_000,
        nodes: None,
        modes: Vec::new(),
        watchdog: true,
        archive: true,
        verbose: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "--seeds" => args.seeds = number(value()?)?,
            "--first-seed" => args.first_seed = number(value()?)?,
            "--seed" => args.seed = Some(number(value()?)?),
            "--steps" => args.steps = number(value()?)?,
            "--nodes" => args.nodes = Some(number(value()?)? as usize),
            "--mode" => {
                let v = value()?;
                args.modes
                    .push(Mode::from_name(&v).ok_or_else(|| format!("unknown mode {v}"))?);
            }
            "--no-watchdog" => args.watchdog = false,
            "--no-archive" => args.archive = false,
            "--verbose" => args.verbose = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if args.modes.is_empty() {
        args.modes = Mode::ALL.to_vec();
    }
    Ok(args)
}

/// Cluster size for a seed when none is given: 2 to 5 nodes.
fn nodes_for(seed: u64) -> usize {
    2 + (seed % 4) as usize
}

fn config(args: &Args, seed: u64, mode: Mode) -> SimConfig {
    let mut c = SimConfig::new(seed, mode)
        .steps(args.steps)
        .nodes(args.nodes.unwrap_or_else(|| nodes_for(seed)));
    c.watchdog = args.watchdog;
    c.archive = args.archive;
    c
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout().lock();
    if let Some(seed) = args.seed {
        let mut failed = false;
        for mode in &args.modes {
            let mut c = config(&args, seed, *mode);
            c.trace_all = true;
            match Simulation::new(c).run() {
                Ok(report) => {
                    for line in &report.trace {
                        let _ = writeln!(out, "{line}");
                    }
                    let _ = writeln!(out, "seed {seed} mode {}: ok {report:?}", mode.name());
                }
                Err(v) => {
                    let _ = writeln!(out, "{v}");
                    failed = true;
                }
            }
        }
        return if failed {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        };
    }
    let started = Instant::now();
    let (mut runs, mut failures, mut steps) = (0u64, 0u64, 0u64);
    let (mut max_leader, mut max_convergence) = (0, 0);
    // The largest share of its bound a run needed (leader, everyone following).
    let (mut leader_share, mut follow_share) = (0f64, 0f64);
    for seed in args.first_seed..args.first_seed + args.seeds {
        for mode in &args.modes {
            runs += 1;
            match Simulation::new(config(&args, seed, *mode)).run() {
                Ok(report) => {
                    steps += report.steps;
                    if args.verbose {
                        let b = report.bounds;
                        let _ = writeln!(
                            out,
                            "seed {seed} {}: ok, {} promotions, {} faults; leader after {:.1}s \
                             (bound {:.1}s), everyone following after {:.1}s (bound {:.1}s)",
                            mode.name(),
                            report.promotions,
                            report.faults,
                            report.max_leader_ms as f64 / 1000.0,
                            b.leader_ms as f64 / 1000.0,
                            report.max_convergence_ms as f64 / 1000.0,
                            b.follow_ms as f64 / 1000.0,
                        );
                    }
                    max_leader = max_leader.max(report.max_leader_ms);
                    let b = report.bounds;
                    leader_share =
                        leader_share.max(report.max_leader_ms as f64 / b.leader_ms as f64);
                    follow_share =
                        follow_share.max(report.max_convergence_ms as f64 / b.follow_ms as f64);
                    max_convergence = max_convergence.max(report.max_convergence_ms);
                }
                Err(v) => {
                    failures += 1;
                    steps += v.step;
                    let _ = writeln!(out, "{v}");
                }
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = writeln!(
        out,
        "{runs} runs, {failures} failed, {steps} steps in {secs:.1}s ({:.0} steps/s); \
         after the faults: a leader within {:.1}s ({:.0}% of its bound at most), everyone \
         following within {:.1}s ({:.0}%)",
        steps as f64 / secs.max(1e-9),
        max_leader as f64 / 1000.0,
        leader_share * 100.0,
        max_convergence as f64 / 1000.0,
        follow_share * 100.0
    );
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
