//! One simulation run: a seeded workload over 1–4 simulated processes on one [`SimFs`],
//! with crashes and faults, checked by the oracle after every crash and at the end.
//!
//! A run is a pure function of its seed and [`RunConfig`]: the same inputs give the same
//! trace, the same trace hash and the same verdict on every machine.

use crate::model::{Change, Model};
use crate::oracle::{self, Depth, Rule, Verdict, Violation};
use crate::simfs::{CrashPoint, FaultConfig, FaultKind, Pid, SimFs};
use crate::trace::Trace;
use crate::workload::{Op, below, chance, next_op};
use mentedb_storage::{Error, MemoryNode, Options, RecordId, StorageEngine, SyncMode};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::path::Path;

mod concurrent;
mod crashes;
mod lifecycle;
mod ops;
mod space;

pub use concurrent::{GROUP_OPS_MAX, RECOVERY_CRASHES_MAX, SIM_LOCK_TIMEOUT};

/// The database directory inside the simulated disk.
const DIR: &str = "/db";
/// Crash images per captured point: every subset of the unsynced writes when there are at
/// most this many (else each prefix), then each torn variant, up to the image limit.
const EXPLORE_SUBSET_WRITES_MAX: usize = 4;
const EXPLORE_IMAGES_MAX: usize = 32;
/// Open attempts with faults on before the faults stop for one last try.
const OPEN_ATTEMPTS_FAULTY: usize = 3;

/// How to shape a run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// Operations to issue.
    pub ops: usize,
    /// Simulated processes; `None` draws 1–4 from the seed.
    pub processes: Option<usize>,
    /// Fault profile name (see [`FaultConfig::profile`]).
    pub faults: String,
    /// Whether to enumerate crash images at a few WAL syncs.
    pub explore: bool,
    /// Trace lines kept for a failure report.
    pub tail: usize,
    /// Check every process after every operation: slow, but a failure shows at the first
    /// step that breaks a rule (checks do not change what the run does).
    pub check_every_step: bool,
    /// Share of steps (parts per million) that run a group of operations at once;
    /// `None` draws it per seed (0 %, 10 %, 30 % or 60 %).
    pub concurrency_ppm: Option<u32>,
    /// Run only these steps (indices into the seed's drawn steps, ascending); `None`: all.
    /// The other steps are still drawn, so the kept ones are what they were, each with its
    /// own stream of decisions (`--shrink` removes steps this way).
    pub keep: Option<Vec<usize>>,
    /// Faults switched off on top of the profile (names of [`FaultConfig::SWITCHES`]).
    pub faults_off: Vec<String>,
    /// Fail on purpose ([`crate::oracle::Rule::Canary`]): a scan with three or more records
    /// live breaks the rule.
    pub canary: bool,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            ops: 2_000,
            processes: None,
            faults: "swarm".to_string(),
            explore: true,
            tail: 24,
            check_every_step: false,
            concurrency_ppm: None,
            keep: None,
            faults_off: Vec::new(),
            canary: false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// Injected corruption was detected (`Error::Corruption`); the run stopped there, as an
    /// operator would restore from a backup.
    CorruptionDetected(String),
    /// A rule broke.
    Failed(Failure),
}

/// A broken rule with where it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The operation index (the final phase is `ops`).
    pub step: usize,
    /// The rule and detail.
    pub violation: Violation,
    /// The last trace lines.
    pub tail: Vec<String>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// Simulated processes.
    pub processes: usize,
    /// Operations issued.
    pub ops: usize,
    /// Hash of the whole trace.
    pub trace_hash: u64,
    /// Verdict.
    pub outcome: Outcome,
    /// Faults injected, by kind.
    pub faults: BTreeMap<FaultKind, u64>,
    /// Oracle checks that passed.
    pub checks: u64,
    /// Crash images enumerated and checked.
    pub images: u64,
    /// Filesystem calls made.
    pub io_calls: u64,
    /// The last trace lines (all of them if [`RunConfig::tail`] is large enough).
    pub trace: Vec<String>,
    /// Injected faults other than the frequent lost writes and short I/O, in order.
    pub notable_faults: Vec<crate::simfs::FaultRecord>,
    /// Concurrent groups of operations run.
    pub groups: u64,
    /// Recoveries by every process at once.
    pub recoveries_together: u64,
    /// Times the schedule moved the turn to another simulated thread.
    pub switches: u64,
    /// Groups with a process holding the writer lock past the lock timeout, and the
    /// operations that gave up on it with `Error::Locked` (see `runner::concurrent`).
    pub long_stalls: u64,
    pub lock_timeouts: u64,
    /// Restores of a backup over the database, and loads across two databases.
    pub restores: u64,
    pub foreign_loads: u64,
    /// How often the run reached each of the engine's rare paths.
    pub rare_paths: Vec<(mentedb_storage::rare_paths::RarePath, u64)>,
    /// Steps the seed drew, and the index of the step a failure stopped in (`None` if the
    /// run passed or stopped outside the steps: at its start or in its final phase).
    pub steps_drawn: usize,
    pub failed_in_step: Option<usize>,
    /// The faults the run injected from (after `faults_off`).
    pub fault_config: FaultConfig,
}

/// Why a run stopped early.
enum Stop {
    Broken(Violation),
    Detected(String),
}

type Step = Result<(), Stop>;

/// Acknowledged changes and the model entries each replaced (`None`: the handle was new),
/// so crash images taken during them can be checked with the changes back in flight.
type Undo = Vec<(Change, Vec<(RecordId, Option<MemoryNode>)>)>;

fn broken(rule: Rule, detail: impl Into<String>) -> Stop {
    Stop::Broken(Violation {
        rule,
        detail: detail.into(),
    })
}

struct Sim {
    seed: u64,
    rng: Box<dyn RngCore>,
    fs: SimFs,
    engines: Vec<Option<StorageEngine>>,
    model: Model,
    trace: Trace,
    pool_pages: usize,
    checkpoint_bytes: u64,
    checks: u64,
    images: u64,
    /// Set for the final phase: faults never resume.
    faults_stopped: bool,
    /// Check every process after every operation (slow; for narrowing down a failure).
    check_every_step: bool,
    /// Commits are sealed (`SyncMode::Sealed`).
    sealed: bool,
    canary: bool,
    /// Interleaves the threads of concurrent groups and recoveries.
    schedule: crate::sched::Schedule,
    /// Concurrent groups run, and recoveries by every process at once.
    groups: u64,
    recoveries_together: u64,
    /// Writes that returned an error saying they did not commit (checked never to appear).
    refused_writes: u64,
    /// Whether groups may hold a process that keeps the writer lock (a quarter of the
    /// seeds), how many held it past the lock timeout, and the operations that timed out.
    stalls: bool,
    long_stalls: u64,
    lock_timeouts: u64,
    /// The model when the last backup was taken (see `runner::lifecycle`).
    backup: Option<Model>,
    /// Handles stored in another database, and the checks made across databases.
    foreign: Vec<(RecordId, MemoryNode)>,
    restores: u64,
    foreign_loads: u64,
}

/// Runs one seed.
pub fn run(seed: u64, config: &RunConfig) -> RunReport {
    run_with(seed, config, Box::new(ChaCha8Rng::seed_from_u64(seed)))
}

/// Runs with the workload drawn from `rng` (the disk's faults still come from `seed`): the
/// fuzz target `engine_ops` passes its input bytes here.
pub fn run_with(seed: u64, config: &RunConfig, mut rng: Box<dyn RngCore>) -> RunReport {
    let recorder = mentedb_storage::rare_paths::Recorder::new();
    let _installed = recorder.install();
    let processes = config
        .processes
        .unwrap_or_else(|| 1 + below(&mut *rng, 4) as usize)
        .clamp(1, 8);
    let mut faults =
        FaultConfig::profile(&config.faults, &mut *rng).unwrap_or_else(FaultConfig::none);
    // Seeds that damage stored bytes also lose a synced log tail now and then (decided
    // before faults are switched off, so the drawn steps stay what they were).
    let corrupting = faults.bit_flip_ppm > 0;
    // A third of the seeds seal their commits (`SyncMode::Sealed`), from the seed alone so
    // every other draw stays as it was; SimFs then flips any synced WAL byte.
    let sealed = seed.is_multiple_of(3);
    faults.sealed_commits = sealed;
    for name in &config.faults_off {
        faults.switch_off(name);
    }
    let fs = SimFs::new(seed, faults.clone());
    if config.explore {
        fs.capture_at_syncs("wal.log", 3_000, 2);
        // Checkpoints crashed with any subset of their page writes on disk.
        fs.capture_at_syncs("pages.db", 20_000, 2);
    }
    let concurrency_ppm = config
        .concurrency_ppm
        .unwrap_or_else(|| [0, 100_000, 300_000, 600_000][below(&mut *rng, 4) as usize]);
    let switch_ppm = [500_000, 125_000, 15_000, 2_000][below(&mut *rng, 4) as usize];
    let churn = below(&mut *rng, 3) == 0;
    let pool_pages = 4 + below(&mut *rng, 60) as usize;
    let checkpoint_bytes = (64 * 1024) << below(&mut *rng, 6);
    // Every step is drawn before the run, each with the seed of its own decisions (crash
    // points, picks), so a run of some of them (`keep`) runs those exactly as drawn.
    let steps = draw_steps(
        &mut *rng,
        config.ops,
        processes,
        churn,
        corrupting,
        concurrency_ppm,
    );
    let final_seed = rng.next_u64();
    let mut sim = Sim {
        seed,
        schedule: crate::sched::Schedule::new(seed, switch_ppm),
        groups: 0,
        recoveries_together: 0,
        refused_writes: 0,
        // From the seed alone, so that the other draws of every seed stay as they were.
        stalls: seed % 4 == 1,
        long_stalls: 0,
        lock_timeouts: 0,
        backup: None,
        foreign: Vec::new(),
        restores: 0,
        foreign_loads: 0,
        pool_pages,
        checkpoint_bytes,
        rng,
        fs,
        engines: (0..processes).map(|_| None).collect(),
        model: Model::new(),
        trace: Trace::new(config.tail),
        checks: 0,
        images: 0,
        faults_stopped: false,
        check_every_step: config.check_every_step,
        sealed,
        canary: config.canary,
    };
    sim.trace.push(format!(
        "seed {seed}: {processes} processes, pool {} pages, checkpoint at {} KiB, \
         concurrent steps {concurrency_ppm} ppm, switches {switch_ppm} ppm, churn {churn}, \
         lock stalls {}, sealed commits {sealed}, faults {faults:?}",
        sim.pool_pages,
        sim.checkpoint_bytes / 1024,
        sim.stalls
    ));
    let mut step = 0;
    let mut in_step = None;
    let result = sim.start().and_then(|()| {
        for (index, drawn) in steps.iter().enumerate() {
            if let Some(keep) = &config.keep
                && keep.binary_search(&index).is_err()
            {
                continue;
            }
            in_step = Some(index);
            sim.rng = Box::new(ChaCha8Rng::seed_from_u64(drawn.seed));
            if drawn.group {
                sim.execute_group(step, drawn.ops.clone())?;
            } else {
                sim.execute(step, drawn.ops[0].clone())?;
            }
            step += drawn.ops.len();
        }
        in_step = None;
        sim.rng = Box::new(ChaCha8Rng::seed_from_u64(final_seed));
        sim.final_phase()
    });
    let outcome = match result {
        Ok(()) => Outcome::Passed,
        Err(Stop::Detected(detail)) => Outcome::CorruptionDetected(detail),
        Err(Stop::Broken(violation)) => {
            sim.trace.push(format!("VIOLATION {violation}"));
            Outcome::Failed(Failure {
                step,
                violation,
                tail: sim.trace.tail(),
            })
        }
    };
    sim.trace.push(format!("outcome {outcome:?}"));
    let schedule = sim.schedule.stats();
    RunReport {
        groups: sim.groups,
        recoveries_together: sim.recoveries_together,
        switches: schedule.switches,
        long_stalls: sim.long_stalls,
        lock_timeouts: sim.lock_timeouts,
        restores: sim.restores,
        foreign_loads: sim.foreign_loads,
        rare_paths: recorder.counts(),
        steps_drawn: steps.len(),
        fault_config: faults.clone(),
        failed_in_step: if matches!(outcome, Outcome::Failed(_)) {
            in_step
        } else {
            None
        },
        seed,
        processes,
        ops: step,
        trace_hash: sim.trace.hash(),
        outcome,
        faults: sim.fs.fault_counts(),
        checks: sim.checks,
        images: sim.images,
        io_calls: sim.fs.io_calls(),
        trace: sim.trace.tail(),
        notable_faults: sim
            .fs
            .faults()
            .into_iter()
            .filter(|record| !matches!(record.kind, FaultKind::LostWrite | FaultKind::ShortIo))
            .collect(),
    }
}

/// One drawn step of a run: an operation, or a group run at once, and the seed of the
/// decisions made while it runs.
#[derive(Debug, Clone)]
struct DrawnStep {
    seed: u64,
    group: bool,
    ops: Vec<Op>,
}

/// Draws the steps of a run: `ops` operations, a share `concurrency_ppm` of the steps
/// groups of 2 to [`GROUP_OPS_MAX`].
fn draw_steps(
    rng: &mut dyn RngCore,
    ops: usize,
    processes: usize,
    churn: bool,
    corrupting: bool,
    concurrency_ppm: u32,
) -> Vec<DrawnStep> {
    let mut steps = Vec::new();
    let mut drawn = 0;
    while drawn < ops {
        let seed = rng.next_u64();
        let group = chance(rng, concurrency_ppm);
        let count = if group {
            2 + below(rng, GROUP_OPS_MAX as u64 - 1) as usize
        } else {
            1
        };
        let ops = (0..count)
            .map(|_| next_op(rng, processes, churn, corrupting))
            .collect();
        steps.push(DrawnStep { seed, group, ops });
        drawn += count;
    }
    steps
}

impl Sim {
    fn options(&self, fs: &SimFs, pid: Pid) -> Options {
        Options::default()
            .vfs(fs.process(pid))
            .buffer_pool_pages(self.pool_pages)
            .checkpoint_wal_bytes(self.checkpoint_bytes)
            .lock_timeout(SIM_LOCK_TIMEOUT)
            .sync_mode(if self.sealed {
                SyncMode::Sealed
            } else {
                SyncMode::Full
            })
    }

    fn start(&mut self) -> Step {
        for pid in 0..self.engines.len() {
            self.open(pid)?;
        }
        Ok(())
    }

    /// Opens `pid`'s engine (recovery), retrying while injected faults make it fail and
    /// sometimes crashing it in the middle of recovery; the last try runs without faults
    /// and must succeed.
    fn open(&mut self, pid: Pid) -> Step {
        // Crash images are checked against the model of the operation in flight; a
        // restart inside an operation resolves that model, so its syncs are not captured.
        self.fs.set_capture_paused(true);
        let result = self.open_attempts(pid);
        self.fs.set_capture_paused(false);
        result
    }

    fn open_attempts(&mut self, pid: Pid) -> Step {
        for attempt in 0..=OPEN_ATTEMPTS_FAULTY {
            let last = attempt == OPEN_ATTEMPTS_FAULTY;
            if self.fs.power_cut_fired() {
                // Every process died with the power; the others recover after this step.
                self.trace.push("power cut fired".to_string());
                for engine in &mut self.engines {
                    *engine = None;
                }
                self.fs.power_loss();
            }
            if last {
                self.fs.set_faults_active(false);
            } else if chance(&mut *self.rng, 100_000) {
                let calls = 1 + below(&mut *self.rng, 40);
                self.fs.kill_process_after(pid, calls);
            }
            self.fs.restart_process(pid);
            let result = StorageEngine::open_with(Path::new(DIR), self.options(&self.fs, pid));
            self.fs.disarm();
            if last {
                self.fs.set_faults_active(!self.faults_stopped);
            }
            match result {
                // Killed at a call whose error the engine ignores (the unlock on the way
                // out): the process is dead whatever open returned.
                Ok(_) if self.fs.is_killed(pid) => {
                    self.trace.push(format!("p{pid} killed at the end of open"));
                }
                Ok(engine) => {
                    self.trace
                        .push(format!("p{pid} open ok (attempt {attempt})"));
                    self.engines[pid] = Some(engine);
                    return Ok(());
                }
                Err(error) => {
                    self.trace.push(format!("p{pid} open failed: {error}"));
                    self.classify_error(&error)?;
                    self.fs.kill_process(pid);
                }
            }
        }
        Err(broken(
            Rule::Liveness,
            format!("p{pid} cannot open once faults stopped"),
        ))
    }

    /// A corruption error ends the run (detected, if injected); other errors are allowed.
    fn classify_error(&self, error: &Error) -> Step {
        if !error.is_corruption() {
            return Ok(());
        }
        if self.fs.corruption_injected() {
            return Err(Stop::Detected(error.to_string()));
        }
        Err(broken(
            Rule::Detection,
            format!("corruption reported but none was injected: {error}"),
        ))
    }

    /// Drops `pid`'s engine as a crashed process would (no close) and recovers it.
    fn restart(&mut self, pid: Pid, depth: Depth) -> Step {
        self.engines[pid] = None;
        self.fs.kill_process(pid);
        self.open(pid)?;
        self.check(pid, depth)
    }

    fn check(&mut self, pid: Pid, depth: Depth) -> Step {
        let Some(engine) = self.engines[pid].as_ref() else {
            return Ok(());
        };
        self.fs.pause_faults(true);
        let verdict = oracle::check_recovered(
            engine,
            &mut self.model,
            self.fs.corruption_injected(),
            depth,
        );
        self.fs.pause_faults(false);
        self.checks += 1;
        match verdict {
            Ok(Verdict::Clean) => {
                self.trace
                    .push(format!("p{pid} check ok: {} live", self.model.live().len()));
                Ok(())
            }
            Ok(Verdict::CorruptionDetected(detail)) => Err(Stop::Detected(detail)),
            Err(violation) => Err(Stop::Broken(violation)),
        }
    }

    fn pick_live(&self, pick: u64) -> Option<(RecordId, MemoryNode)> {
        let live = self.model.live();
        if live.is_empty() {
            return None;
        }
        live.iter()
            .nth((pick % live.len() as u64) as usize)
            .map(|(id, node)| (*id, node.clone()))
    }

    fn pick_deleted(&self, pick: u64) -> Option<RecordId> {
        let deleted = self.model.deleted();
        if deleted.is_empty() {
            return None;
        }
        deleted
            .iter()
            .nth((pick % deleted.len() as u64) as usize)
            .copied()
    }

    fn execute(&mut self, step: usize, op: Op) -> Step {
        self.trace.push(format!(
            "#{step} {} (io#{})",
            op.describe(),
            self.fs.io_calls()
        ));
        self.fs.take_captured();
        if self.canary && matches!(op, Op::Scan { .. }) && self.model.live().len() >= 3 {
            return Err(Stop::Broken(Violation {
                rule: crate::oracle::Rule::Canary,
                detail: format!(
                    "a scan with {} records live (the canary fails on purpose)",
                    self.model.live().len()
                ),
            }));
        }
        self.arm_crash(&op);
        let undo = self.apply(op)?;
        self.fs.disarm();
        let captured = self.fs.take_captured();
        if !captured.is_empty() {
            self.explore(captured, undo)?;
        }
        self.recover_from_crashes()?;
        if self.check_every_step {
            for pid in 0..self.engines.len() {
                self.check(pid, Depth::Contents)?;
            }
        }
        Ok(())
    }

    fn engine(&mut self, pid: Pid) -> Result<&StorageEngine, Stop> {
        if self.engines[pid].is_none() {
            self.open(pid)?;
        }
        self.engines[pid]
            .as_ref()
            .ok_or_else(|| broken(Rule::Liveness, format!("p{pid} has no engine")))
    }
}
