//! `mentedb-sim`: runs one seed (`--seed N`, printing its trace hash) or a campaign over a
//! range of seeds (`--seeds A..B`, printing a summary table). Exit code 0 when every run
//! passed, 1 when any failed, 2 on bad arguments.

use clap::Parser;
use mentedb_sim::campaign::{Campaign, parse_range};
use mentedb_sim::runner::{Outcome, RunConfig};
use mentedb_sim::simfs::FaultConfig;
use std::process::ExitCode;

/// Deterministic crash and fault simulation of mentedb-storage.
#[derive(Debug, Parser)]
#[command(name = "mentedb-sim", version)]
struct Args {
    /// Replay one seed and print its trace hash.
    #[arg(long, conflicts_with = "seeds")]
    seed: Option<u64>,
    /// Run a campaign over seeds A..B (B exclusive).
    #[arg(long, value_parser = parse_range, default_value = "0..100")]
    seeds: (u64, u64),
    /// Operations per run.
    #[arg(long, default_value_t = 2_000)]
    ops: usize,
    /// Fault profile: none, crash, swarm, io, corrupt.
    #[arg(long, default_value = "swarm")]
    faults: String,
    /// Simulated processes (default: 1-4 drawn per seed).
    #[arg(long)]
    processes: Option<usize>,
    /// Do not enumerate crash images at WAL syncs.
    #[arg(long)]
    no_explore: bool,
    /// Worker threads for a campaign (each run stays single-threaded and deterministic).
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// With --seed: print the whole trace.
    #[arg(long)]
    trace: bool,
    /// Check every process after every operation (slow; finds the first bad step).
    #[arg(long)]
    check_every_step: bool,
    /// Share of steps, in parts per million, that run 2-4 operations at once (threads of one
    /// or several processes, interleaved at every I/O call and lock); default: drawn per
    /// seed (0, 100000, 300000 or 600000).
    #[arg(long)]
    concurrency: Option<u32>,
    /// Run every seed twice and fail it if the two trace hashes or outcomes differ.
    #[arg(long)]
    doublecheck: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !FaultConfig::PROFILES.contains(&args.faults.as_str()) {
        eprintln!(
            "error: unknown fault profile '{}'; use one of {}",
            args.faults,
            FaultConfig::PROFILES.join(", ")
        );
        return ExitCode::from(2);
    }
    let config = RunConfig {
        ops: args.ops,
        processes: args.processes,
        faults: args.faults.clone(),
        explore: !args.no_explore,
        tail: if args.trace { usize::MAX } else { 24 },
        check_every_step: args.check_every_step,
        concurrency_ppm: args.concurrency.map(|ppm| ppm.min(1_000_000)),
    };
    let mut campaign = Campaign::new(config);
    campaign.doublecheck = args.doublecheck;
    match args.seed {
        Some(seed) => {
            let report = campaign.run_checked(seed);
            println!("{}", campaign.describe_run(&report, args.trace));
            if matches!(report.outcome, Outcome::Failed(_)) {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        None => {
            let summary = campaign.run_range(args.seeds.0..args.seeds.1, args.jobs.max(1));
            println!("{}", summary.table(&campaign));
            if summary.failures.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
    }
}
