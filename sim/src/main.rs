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
    /// With --seed: remove steps and switch faults off while the run still fails with the
    /// same rule, then print the smallest failing run and the command that replays it.
    #[arg(long, requires = "seed")]
    shrink: bool,
    /// Run only these of the seed's steps (indices and ranges: 3,17,40-52), as --shrink
    /// prints them.
    #[arg(long, value_parser = parse_steps)]
    keep: Option<Steps>,
    /// Faults to switch off on top of the profile, comma-separated (see --shrink's output).
    #[arg(long, value_delimiter = ',')]
    faults_off: Vec<String>,
    /// Fail on purpose: a scan while three or more records are live breaks rule Canary
    /// (to show that a pipeline, or --shrink, notices failures).
    #[arg(long)]
    canary: bool,
}

/// The step indices of `--keep`, one value: clap takes an `Option<Vec<_>>` field for a
/// list of values and failed at run time ("mismatch between definition and access") on
/// every `--keep`, so the replay command `--shrink` prints did not run.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Steps(Vec<usize>);

fn parse_steps(text: &str) -> Result<Steps, String> {
    mentedb_sim::shrink::parse_keep(text).map(Steps)
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
    if let Some(unknown) = args
        .faults_off
        .iter()
        .find(|name| !FaultConfig::SWITCHES.contains(&name.as_str()))
    {
        eprintln!(
            "error: unknown fault '{unknown}' in --faults-off; use some of {}",
            FaultConfig::SWITCHES.join(", ")
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
        keep: args.keep.clone().map(|steps| steps.0),
        faults_off: args.faults_off.clone(),
        canary: args.canary,
    };
    if args.shrink {
        return shrink(args.seed.unwrap_or_default(), config);
    }
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

/// `--seed N --shrink`: see `mentedb_sim::shrink`.
fn shrink(seed: u64, config: RunConfig) -> ExitCode {
    let started = std::time::Instant::now();
    let shrunk = mentedb_sim::shrink::shrink(seed, &config, |runs, kept| {
        if runs % 20 == 0 {
            eprintln!(
                "  {runs} runs, {kept} steps kept, {:.0}s",
                started.elapsed().as_secs_f64()
            );
        }
    });
    match shrunk {
        Err(reason) => {
            eprintln!("{reason}");
            ExitCode::from(2)
        }
        Ok(shrunk) => {
            let campaign = Campaign::new(shrunk.config.clone());
            println!("{}", campaign.describe_run(&shrunk.report, true));
            println!(
                "shrunk seed {seed}: {} of {} steps kept, faults off: {}; {} runs in {:.0}s",
                shrunk.steps_kept,
                shrunk.steps_drawn,
                if shrunk.config.faults_off.is_empty() {
                    "none".to_string()
                } else {
                    shrunk.config.faults_off.join(", ")
                },
                shrunk.runs,
                started.elapsed().as_secs_f64()
            );
            println!("replay: {}", campaign.replay_command(seed));
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replay_command_shrink_prints_parses() {
        let args = Args::try_parse_from([
            "mentedb-sim",
            "--seed",
            "655",
            "--keep",
            "0-2,4-7",
            "--faults-off",
            "unsynced_survive",
        ])
        .expect("parses");
        assert_eq!(args.keep, Some(Steps(vec![0, 1, 2, 4, 5, 6, 7])));
        assert_eq!(args.faults_off, vec!["unsynced_survive".to_string()]);
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Args::command().debug_assert();
    }
}
