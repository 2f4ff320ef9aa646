//! Campaigns: many seeds, a progress bar, and the summary table with per-fault counters
//! and the seeds of failed runs (each with the command that replays it).

use crate::oracle::{Rule, Violation};
use crate::runner::{Failure, Outcome, RunConfig, RunReport, run};
use crate::simfs::FaultKind;
use mentedb_storage::rare_paths::RarePath;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write as _};
use std::ops::Range;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Parses `A..B` (B exclusive) or a single seed `A`.
pub fn parse_range(text: &str) -> Result<(u64, u64), String> {
    let parse = |part: &str| {
        part.trim()
            .parse::<u64>()
            .map_err(|error| format!("'{part}' is not a seed: {error}"))
    };
    match text.split_once("..") {
        Some((start, end)) => {
            let (start, end) = (parse(start)?, parse(end)?);
            if start >= end {
                return Err(format!("empty seed range {start}..{end}"));
            }
            Ok((start, end))
        }
        None => {
            let seed = parse(text)?;
            Ok((seed, seed.saturating_add(1)))
        }
    }
}

/// A campaign's fixed shape.
#[derive(Debug, Clone)]
pub struct Campaign {
    /// The configuration every run uses.
    pub config: RunConfig,
    /// Run every seed twice and fail it if the two traces differ (`--doublecheck`).
    pub doublecheck: bool,
}

/// What a campaign found.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Runs finished.
    pub runs: u64,
    /// Runs where every check passed.
    pub passed: u64,
    /// Runs stopped by detected corruption.
    pub detected: u64,
    /// Operations issued.
    pub ops: u64,
    /// Oracle checks passed.
    pub checks: u64,
    /// Crash images checked.
    pub images: u64,
    /// Filesystem calls.
    pub io_calls: u64,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Runs with at least one fault of the kind.
    pub runs_with_fault: BTreeMap<FaultKind, u64>,
    /// Bit flips by file they damaged: total, and runs with any (a flip in `wal.log` or
    /// `wal.seal` tests other promises than one in `pages.db`).
    pub bit_flips_by_file: BTreeMap<String, (u64, u64)>,
    /// Per rare path of the engine: times reached, and runs that reached it.
    pub rare_paths: BTreeMap<RarePath, (u64, u64)>,
    /// Failed runs: seed and failure.
    pub failures: Vec<(u64, Failure)>,
    /// Concurrent groups of operations, runs with any, and recoveries by every process at
    /// once.
    pub groups: u64,
    pub runs_with_groups: u64,
    pub recoveries_together: u64,
    /// Times a simulated thread handed the turn to another.
    pub switches: u64,
    /// Groups with the writer lock held past the timeout, and operations that timed out.
    pub long_stalls: u64,
    pub lock_timeouts: u64,
    /// Backups restored over the database mid-run, and loads across two databases.
    pub restores: u64,
    pub foreign_loads: u64,
    /// Wall time.
    pub elapsed: Duration,
}

impl Campaign {
    /// A campaign running every seed with `config`.
    pub fn new(config: RunConfig) -> Campaign {
        Campaign {
            config,
            doublecheck: false,
        }
    }

    /// Runs one seed (twice with [`Campaign::doublecheck`]: a second run whose trace hash
    /// or outcome differs fails the seed with [`Rule::Determinism`]: same seed, same run).
    pub fn run_checked(&self, seed: u64) -> RunReport {
        let first = self.run_one(seed);
        if !self.doublecheck || matches!(first.outcome, Outcome::Failed(_)) {
            return first;
        }
        let second = self.run_one(seed);
        let same_outcome =
            std::mem::discriminant(&first.outcome) == std::mem::discriminant(&second.outcome);
        if first.trace_hash == second.trace_hash && same_outcome {
            return first;
        }
        RunReport {
            outcome: Outcome::Failed(Failure {
                step: second.ops,
                violation: Violation {
                    rule: Rule::Determinism,
                    detail: format!(
                        "the same seed ran twice differently: trace hash {:016x} then {:016x}, \
                         {:?} then {:?}",
                        first.trace_hash, second.trace_hash, first.outcome, second.outcome
                    ),
                },
                tail: second.trace.clone(),
            }),
            ..second
        }
    }

    /// The command that replays `seed` exactly.
    pub fn replay_command(&self, seed: u64) -> String {
        let mut command = format!(
            "cargo run --release -p mentedb-sim -- --seed {seed} --ops {} --faults {}",
            self.config.ops, self.config.faults
        );
        if let Some(processes) = self.config.processes {
            let _ = write!(command, " --processes {processes}");
        }
        if !self.config.explore {
            command.push_str(" --no-explore");
        }
        if self.config.check_every_step {
            command.push_str(" --check-every-step");
        }
        if let Some(ppm) = self.config.concurrency_ppm {
            let _ = write!(command, " --concurrency {ppm}");
        }
        if let Some(keep) = &self.config.keep {
            let _ = write!(command, " --keep {}", crate::shrink::format_keep(keep));
        }
        if self.config.canary {
            command.push_str(" --canary");
        }
        if !self.config.faults_off.is_empty() {
            let _ = write!(
                command,
                " --faults-off {}",
                self.config.faults_off.join(",")
            );
        }
        command
    }

    /// Runs one seed, turning a panic into a failure.
    pub fn run_one(&self, seed: u64) -> RunReport {
        match catch_unwind(AssertUnwindSafe(|| run(seed, &self.config))) {
            Ok(report) => report,
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "non-text panic".to_string());
                RunReport {
                    seed,
                    processes: 0,
                    ops: 0,
                    trace_hash: 0,
                    outcome: Outcome::Failed(Failure {
                        step: 0,
                        violation: Violation {
                            rule: Rule::NoPanic,
                            detail: format!("panic: {message}"),
                        },
                        tail: Vec::new(),
                    }),
                    faults: BTreeMap::new(),
                    rare_paths: Vec::new(),
                    steps_drawn: 0,
                    fault_config: crate::simfs::FaultConfig::none(),
                    failed_in_step: None,
                    checks: 0,
                    images: 0,
                    io_calls: 0,
                    trace: Vec::new(),
                    notable_faults: Vec::new(),
                    groups: 0,
                    recoveries_together: 0,
                    switches: 0,
                    long_stalls: 0,
                    lock_timeouts: 0,
                    restores: 0,
                    foreign_loads: 0,
                }
            }
        }
    }

    /// Runs every seed of `seeds` on `jobs` threads; the summary does not depend on `jobs`.
    pub fn run_range(&self, seeds: Range<u64>, jobs: usize) -> Summary {
        let started = Instant::now();
        let next = AtomicU64::new(seeds.start);
        let reports = Mutex::new(Vec::new());
        let total = seeds.end - seeds.start;
        let progress = std::io::stderr().is_terminal();
        std::thread::scope(|scope| {
            for _ in 0..jobs {
                scope.spawn(|| {
                    loop {
                        let seed = next.fetch_add(1, Ordering::Relaxed);
                        if seed >= seeds.end {
                            break;
                        }
                        let report = self.run_checked(seed);
                        let mut reports = reports
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        reports.push(report);
                        if progress {
                            draw_progress(&reports, total, started.elapsed());
                        }
                    }
                });
            }
        });
        if progress {
            eprintln!();
        }
        let mut reports = reports
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        reports.sort_by_key(|report| report.seed);
        let mut summary = Summary::default();
        for report in reports {
            summary.add(report);
        }
        summary.elapsed = started.elapsed();
        summary
    }

    /// A one-run report: outcome, trace hash, faults and (on failure) the last trace lines
    /// and the replay command.
    pub fn describe_run(&self, report: &RunReport, full_trace: bool) -> String {
        let mut text = String::new();
        if full_trace {
            for line in &report.trace {
                let _ = writeln!(text, "{line}");
            }
        }
        let _ = writeln!(
            text,
            "seed {}: {} processes, {} ops, {} checks, {} crash images, {} fs calls",
            report.seed,
            report.processes,
            report.ops,
            report.checks,
            report.images,
            report.io_calls
        );
        let faults: Vec<String> = report
            .faults
            .iter()
            .map(|(kind, count)| format!("{kind:?} {count}"))
            .collect();
        let _ = writeln!(
            text,
            "faults: {}",
            if faults.is_empty() {
                "none".to_string()
            } else {
                faults.join(", ")
            }
        );
        let reached: Vec<String> = report
            .rare_paths
            .iter()
            .filter(|(_, count)| *count > 0)
            .map(|(path, count)| format!("{path:?} {count}"))
            .collect();
        let _ = writeln!(
            text,
            "rare paths: {}",
            if reached.is_empty() {
                "none".to_string()
            } else {
                reached.join(", ")
            }
        );
        match &report.outcome {
            Outcome::Failed(failure) => {
                let _ = writeln!(
                    text,
                    "injected faults (without lost writes and short I/O), last 16:"
                );
                let skip = report.notable_faults.len().saturating_sub(16);
                for record in &report.notable_faults[skip..] {
                    let _ = writeln!(text, "    {record}");
                }
                let _ = write!(text, "{}", self.describe_failure(report.seed, failure));
            }
            outcome => {
                let _ = writeln!(text, "outcome: {outcome:?}");
            }
        }
        let _ = write!(text, "trace hash: {:016x}", report.trace_hash);
        text
    }

    fn describe_failure(&self, seed: u64, failure: &Failure) -> String {
        let mut text = String::new();
        let _ = writeln!(
            text,
            "FAILED seed {seed} at step {}: {}",
            failure.step, failure.violation
        );
        if !failure.tail.is_empty() {
            let _ = writeln!(text, "last operations:");
            for line in &failure.tail {
                let _ = writeln!(text, "    {line}");
            }
        }
        let _ = writeln!(text, "replay: {}", self.replay_command(seed));
        text
    }
}

fn draw_progress(reports: &[RunReport], total: u64, elapsed: Duration) {
    let done = reports.len() as u64;
    let failed = reports
        .iter()
        .filter(|report| matches!(report.outcome, Outcome::Failed(_)))
        .count();
    let width = 30;
    let filled = (done * width / total.max(1)) as usize;
    let bar: String = "=".repeat(filled) + &" ".repeat(width as usize - filled);
    let mut stderr = std::io::stderr();
    let _ = write!(
        stderr,
        "\r[{bar}] {done}/{total} seeds, {failed} failed, {:.0}s",
        elapsed.as_secs_f64()
    );
    let _ = stderr.flush();
}

impl Summary {
    fn add(&mut self, report: RunReport) {
        self.runs += 1;
        self.ops += report.ops as u64;
        self.checks += report.checks;
        self.images += report.images;
        self.io_calls += report.io_calls;
        self.groups += report.groups;
        self.runs_with_groups += u64::from(report.groups > 0);
        self.recoveries_together += report.recoveries_together;
        self.switches += report.switches;
        self.long_stalls += report.long_stalls;
        self.lock_timeouts += report.lock_timeouts;
        self.restores += report.restores;
        self.foreign_loads += report.foreign_loads;
        for (path, count) in &report.rare_paths {
            let (total, runs) = self.rare_paths.entry(*path).or_insert((0, 0));
            *total += count;
            *runs += u64::from(*count > 0);
        }
        for (kind, count) in &report.faults {
            *self.faults.entry(*kind).or_insert(0) += count;
            *self.runs_with_fault.entry(*kind).or_insert(0) += 1;
        }
        let mut flips: BTreeMap<&str, u64> = BTreeMap::new();
        for record in &report.notable_faults {
            if record.kind == FaultKind::BitFlip {
                *flips.entry(record.file.as_str()).or_insert(0) += 1;
            }
        }
        for (file, count) in flips {
            let (total, runs) = self
                .bit_flips_by_file
                .entry(file.to_string())
                .or_insert((0, 0));
            *total += count;
            *runs += 1;
        }
        match report.outcome {
            Outcome::Passed => self.passed += 1,
            Outcome::CorruptionDetected(_) => self.detected += 1,
            Outcome::Failed(failure) => self.failures.push((report.seed, failure)),
        }
    }

    /// The summary table.
    pub fn table(&self, campaign: &Campaign) -> String {
        let mut text = String::new();
        let seconds = self.elapsed.as_secs_f64().max(1e-9);
        let _ = writeln!(text, "runs                 {:>10}", self.runs);
        let _ = writeln!(text, "  passed             {:>10}", self.passed);
        let _ = writeln!(text, "  corruption caught  {:>10}", self.detected);
        let _ = writeln!(text, "  FAILED             {:>10}", self.failures.len());
        let _ = writeln!(
            text,
            "operations           {:>10}  ({:.0} simulated ops/s)",
            self.ops,
            self.ops as f64 / seconds
        );
        let _ = writeln!(
            text,
            "concurrent groups    {:>10}  (in {} runs; {} thread switches)",
            self.groups, self.runs_with_groups, self.switches
        );
        let _ = writeln!(
            text,
            "recoveries together  {:>10}  (every process opening at once after a power loss)",
            self.recoveries_together
        );
        let _ = writeln!(
            text,
            "lock held too long   {:>10}  ({} operations gave up with Error::Locked)",
            self.long_stalls, self.lock_timeouts
        );
        let _ = writeln!(
            text,
            "restores mid-run     {:>10}  (old handles checked; {} loads across databases)",
            self.restores, self.foreign_loads
        );
        let _ = writeln!(text, "oracle checks        {:>10}", self.checks);
        let _ = writeln!(text, "crash images checked {:>10}", self.images);
        let _ = writeln!(text, "filesystem calls     {:>10}", self.io_calls);
        let _ = writeln!(text, "elapsed              {:>9.1}s", seconds);
        let _ = writeln!(text, "faults injected          total   in runs");
        for kind in FaultKind::ALL {
            let total = self.faults.get(&kind).copied().unwrap_or(0);
            let runs = self.runs_with_fault.get(&kind).copied().unwrap_or(0);
            let _ = writeln!(
                text,
                "  {:<18} {:>10} {:>9}",
                format!("{kind:?}"),
                total,
                runs
            );
        }
        for (file, (total, runs)) in &self.bit_flips_by_file {
            let _ = writeln!(text, "    BitFlip in {:<7} {:>10} {:>9}", file, total, runs);
        }
        let _ = writeln!(text, "rare paths reached       total   in runs");
        let mut never = Vec::new();
        for path in RarePath::ALL {
            let (total, runs) = self.rare_paths.get(&path).copied().unwrap_or((0, 0));
            if total == 0 {
                never.push(format!("{path:?}"));
            }
            let _ = writeln!(
                text,
                "  {:<30} {:>8} {:>9}",
                format!("{path:?}"),
                total,
                runs
            );
        }
        if !never.is_empty() {
            let _ = writeln!(
                text,
                "  never reached: {} (a gap in the workload or the fault mix)",
                never.join(", ")
            );
        }
        for (seed, failure) in &self.failures {
            let _ = write!(text, "\n{}", campaign.describe_failure(*seed, failure));
        }
        text
    }
}
