//! Concurrent steps: a group of operations by threads of one or several simulated processes
//! that run at once, interleaved by the run's [`Schedule`] at every filesystem call and
//! lock, and recovery by several processes at once.
//!
//! The operations of a sequential step run to completion before the next one starts, which
//! hides every bug that needs another actor between two steps of an operation (a checkpoint
//! between a commit's append and its `fdatasync` wrote pages of a commit that never became
//! durable; only real files under LazyFS showed it). A group puts them side by side:
//! - Writes of one group target distinct records (updates and deletes pick different live
//!   handles, loads pick handles no write of the group touches), so the model's outcome does
//!   not depend on their order; stores and batches get new handles from the engine.
//! - Each operation's result is checked once the group is over: an acknowledged write enters
//!   the model, a failed one is pending (it may or may not have happened); a load must
//!   return the model's node; a scan must show every node no write of the group touched,
//!   each touched one as before or after, and nothing unknown.
//! - A kill or power cut may be armed anywhere inside the group; crash images captured at
//!   syncs during it are checked with every write of the group in flight.
//! - In a quarter of the seeds a group may include a *stall*: a handle of one of the
//!   processes that takes the writer lock (the `flock` on `wal.log`) and keeps it for a
//!   stretch of simulated time, as a stopped process or a tool would. A short stall (at
//!   most a fifth of [`SIM_LOCK_TIMEOUT`]) must be waited for: an `Error::Locked` in its
//!   group, or in any group without a long one, breaks the liveness rule. A long one (two
//!   to three timeouts) may make the group's operations give up with `Error::Locked`,
//!   which must name the lock; a write that did is a refused write (it must never
//!   appear).

use super::*;
use crate::model::Part;
use crate::sched::ActorBody;
use crate::workload::PartDraw;
use std::collections::BTreeSet;
use std::time::Duration;

/// Operations in one concurrent group, at most.
pub const GROUP_OPS_MAX: usize = 4;
/// Power cuts in a row during a concurrent recovery, at most.
pub const RECOVERY_CRASHES_MAX: usize = 3;
/// The lock timeout of every simulated engine, in simulated time (the clock moves one
/// microsecond per scheduling point: a checkpoint is a few milliseconds of it).
pub const SIM_LOCK_TIMEOUT: Duration = Duration::from_secs(1);
/// Share of groups (in seeds with stalls) that include one.
const STALL_PPM: u32 = 250_000;
/// A stall sleeps in steps of this much simulated time, so waiters run in between.
const STALL_STEP: Duration = Duration::from_millis(5);

/// A group's operation with its target resolved.
#[derive(Debug, Clone)]
enum Act {
    Store(MemoryNode),
    Batch(Vec<MemoryNode>),
    Update(RecordId, MemoryNode),
    Delete(RecordId),
    DeleteMany(Vec<RecordId>),
    Apply(Vec<Part>),
    Load(RecordId, MemoryNode),
    StaleLoad(RecordId),
    Scan,
    Checkpoint,
    Compact,
    /// Holds the writer lock through a handle of its own for this long (no engine).
    Stall(Duration),
}

impl Act {
    fn describe(&self) -> String {
        match self {
            Act::Store(node) => format!("store {} ({} B)", node.id, node.content.len()),
            Act::Batch(nodes) => format!("batch of {}", nodes.len()),
            Act::Update(id, node) => format!("update {id:?} to {} B", node.content.len()),
            Act::Delete(id) => format!("delete {id:?}"),
            Act::DeleteMany(ids) => format!("delete a batch of {}", ids.len()),
            Act::Apply(parts) => format!("apply {} parts", parts.len()),
            Act::Compact => "compact".to_string(),
            Act::Load(id, _) => format!("load {id:?}"),
            Act::StaleLoad(id) => format!("stale load {id:?}"),
            Act::Scan => "scan".to_string(),
            Act::Checkpoint => "checkpoint".to_string(),
            Act::Stall(held) => format!("hold the writer lock for {held:?}"),
        }
    }

    /// The change a write makes, for the model.
    fn change(&self) -> Option<Change> {
        match self {
            Act::Store(node) => Some(Change::Store(node.clone())),
            Act::Batch(nodes) => Some(Change::Batch(nodes.clone())),
            Act::Update(id, node) => Some(Change::Update(*id, node.clone())),
            Act::Delete(id) => Some(Change::Delete(*id)),
            Act::DeleteMany(ids) => Some(Change::Apply(
                ids.iter().map(|id| Part::Delete(*id)).collect(),
            )),
            Act::Apply(parts) => Some(Change::Apply(parts.clone())),
            _ => None,
        }
    }
}

/// What one operation of a group returned.
#[derive(Debug)]
enum ActResult {
    Stored(Result<RecordId, Error>),
    Batch(Result<Vec<RecordId>, Error>),
    Applied(Result<Vec<Option<RecordId>>, Error>),
    Written(Result<(), Error>),
    Loaded(Result<MemoryNode, Error>),
    Scanned(Result<BTreeMap<RecordId, MemoryNode>, String>),
    /// A stall ended (whether it got the lock: a kill or power cut may stop it).
    Stalled(bool),
}

impl ActResult {
    fn error(&self) -> Option<&Error> {
        match self {
            ActResult::Stored(Err(error))
            | ActResult::Batch(Err(error))
            | ActResult::Applied(Err(error))
            | ActResult::Written(Err(error))
            | ActResult::Loaded(Err(error)) => Some(error),
            _ => None,
        }
    }
}

/// Takes the writer lock through a handle of `vfs` and keeps it for `held` of simulated
/// time (see the module docs).
fn stall(vfs: &dyn mentedb_storage::vfs::Vfs, held: Duration) -> ActResult {
    use mentedb_storage::vfs::{LockMode, OpenMode};
    let path = Path::new(DIR).join("wal.log");
    let Ok(file) = vfs.open_file(&path, OpenMode::Existing) else {
        return ActResult::Stalled(false);
    };
    if file.lock(LockMode::Exclusive).is_err() {
        return ActResult::Stalled(false);
    }
    let start = mentedb_storage::sched::now();
    while mentedb_storage::sched::now().saturating_sub(start) < held {
        mentedb_storage::sched::sleep(STALL_STEP);
    }
    let _ = file.unlock();
    ActResult::Stalled(true)
}

fn describe_result(result: &Result<ActResult, String>) -> String {
    match result {
        Err(panic) => format!("PANIC {panic}"),
        Ok(ActResult::Stored(Ok(id))) => format!("-> {id:?}"),
        Ok(ActResult::Batch(Ok(ids))) => format!("-> {} handles: {ids:?}", ids.len()),
        Ok(ActResult::Applied(Ok(results))) => format!("-> {results:?}"),
        Ok(ActResult::Applied(Err(error))) => format!("failed: {error}"),
        Ok(ActResult::Written(Ok(()))) => "ok".to_string(),
        Ok(ActResult::Loaded(Ok(node))) => format!("ok {}", oracle::short(node)),
        Ok(ActResult::Scanned(Ok(seen))) => format!("ok, {} nodes", seen.len()),
        Ok(ActResult::Stored(Err(error)))
        | Ok(ActResult::Batch(Err(error)))
        | Ok(ActResult::Written(Err(error)))
        | Ok(ActResult::Loaded(Err(error))) => format!("failed: {error}"),
        Ok(ActResult::Scanned(Err(error))) => format!("failed: {error}"),
        Ok(ActResult::Stalled(true)) => "held and released".to_string(),
        Ok(ActResult::Stalled(false)) => "never got it (stopped)".to_string(),
    }
}

/// Runs one operation of a group on `engine`.
fn perform(engine: &StorageEngine, act: &Act) -> ActResult {
    match act {
        Act::Store(node) => ActResult::Stored(engine.store_memory(node)),
        Act::Batch(nodes) => ActResult::Batch(engine.store_memory_batch(nodes)),
        Act::Update(id, node) => ActResult::Written(engine.update_memory(*id, node)),
        Act::Delete(id) => ActResult::Written(engine.delete_memory(*id)),
        Act::Load(id, _) | Act::StaleLoad(id) => ActResult::Loaded(engine.load_memory(*id)),
        Act::Checkpoint => ActResult::Written(engine.checkpoint()),
        Act::Compact => ActResult::Written(engine.compact().map(drop)),
        Act::DeleteMany(ids) => ActResult::Written(engine.delete_memory_batch(ids)),
        Act::Apply(parts) => ActResult::Applied(engine.apply(&super::ops::write_ops(parts))),
        // Run by `stall`, without an engine (see `execute_group`).
        Act::Stall(_) => ActResult::Stalled(false),
        Act::Scan => {
            let mut seen = BTreeMap::new();
            for item in engine.scan_memories() {
                match item {
                    Ok((id, node)) => {
                        if seen.insert(id, node).is_some() {
                            return ActResult::Scanned(Err(format!("scan yields {id:?} twice")));
                        }
                    }
                    Err(error) => return ActResult::Loaded(Err(error)),
                }
            }
            ActResult::Scanned(Ok(seen))
        }
    }
}

/// The pre-group state a concurrent scan is judged against.
struct ScanExpectation<'a> {
    before: &'a Model,
    /// Handles a write of the group targets, with the node an update writes.
    touched: BTreeMap<RecordId, Option<&'a MemoryNode>>,
    /// Nodes the group's stores and batches write, by memory id.
    new_nodes: BTreeMap<mentedb_storage::MemoryId, &'a MemoryNode>,
}

impl ScanExpectation<'_> {
    fn check(&self, process: Pid, seen: &BTreeMap<RecordId, MemoryNode>) -> Result<(), Stop> {
        for (id, node) in self.before.live() {
            let found = seen.get(id);
            let accepted = match self.touched.get(id) {
                None => found == Some(node),
                Some(Some(new)) => found == Some(node) || found == Some(*new),
                Some(None) => found.is_none() || found == Some(node),
            };
            if !accepted {
                return Err(broken(
                    Rule::Agreement,
                    format!(
                        "p{process} concurrent scan shows {id:?} as {:?}, expected {}",
                        found.map(oracle::short),
                        oracle::short(node)
                    ),
                ));
            }
        }
        for (id, node) in seen {
            if self.before.live().contains_key(id) {
                continue;
            }
            if self.before.deleted().contains(id) {
                return Err(broken(
                    Rule::NoResurrection,
                    format!("p{process} concurrent scan shows deleted {id:?}"),
                ));
            }
            if self.new_nodes.get(&node.id) != Some(&node) {
                return Err(broken(
                    Rule::Prefix,
                    format!(
                        "p{process} concurrent scan shows {id:?} as {}, which no operation wrote",
                        oracle::short(node)
                    ),
                ));
            }
        }
        Ok(())
    }
}

impl Sim {
    /// Resolves a group's drawn operations to targets: distinct live handles for updates and
    /// deletes, untouched handles for loads; operations that need a process restart become
    /// checkpoints.
    fn resolve_group(&self, ops: Vec<Op>) -> Vec<(Pid, Act)> {
        let live: Vec<(RecordId, MemoryNode)> = self
            .model
            .live()
            .iter()
            .map(|(id, node)| (*id, node.clone()))
            .collect();
        let deleted: Vec<RecordId> = self.model.deleted().iter().copied().collect();
        let mut taken = BTreeSet::new();
        let take_live = |pick: u64, taken: &mut BTreeSet<RecordId>| {
            if live.is_empty() {
                return None;
            }
            let start = (pick % live.len() as u64) as usize;
            (0..live.len())
                .map(|offset| &live[(start + offset) % live.len()])
                .find(|(id, _)| !taken.contains(id))
                .cloned()
        };
        let mut acts = Vec::new();
        let mut loads = Vec::new();
        for op in ops {
            match op {
                Op::Store { process, node } => acts.push((process, Act::Store(node))),
                Op::Batch { process, nodes } => acts.push((process, Act::Batch(nodes))),
                Op::Update {
                    process,
                    pick,
                    node,
                } => {
                    if let Some((id, _)) = take_live(pick, &mut taken) {
                        taken.insert(id);
                        acts.push((process, Act::Update(id, node)));
                    }
                }
                Op::Delete { process, pick } => {
                    if let Some((id, _)) = take_live(pick, &mut taken) {
                        taken.insert(id);
                        acts.push((process, Act::Delete(id)));
                    }
                }
                Op::DeleteMany {
                    process,
                    picks,
                    all,
                } => {
                    let count = if all {
                        live.len().min(crate::workload::DELETE_BATCH_MAX)
                    } else {
                        picks.len()
                    };
                    let ids: Vec<RecordId> = (0..count)
                        .filter_map(|index| {
                            let pick = picks.get(index).copied().unwrap_or(index as u64);
                            let (id, _) = take_live(pick, &mut taken)?;
                            taken.insert(id);
                            Some(id)
                        })
                        .collect();
                    if !ids.is_empty() {
                        acts.push((process, Act::DeleteMany(ids)));
                    }
                }
                Op::Apply { process, parts } => {
                    let mut resolved = Vec::new();
                    for part in parts {
                        match part {
                            PartDraw::Store(node) => resolved.push(Part::Store(node)),
                            PartDraw::Update(pick, node) => {
                                if let Some((id, _)) = take_live(pick, &mut taken) {
                                    taken.insert(id);
                                    resolved.push(Part::Update(id, node));
                                }
                            }
                            PartDraw::Delete(pick) => {
                                if let Some((id, _)) = take_live(pick, &mut taken) {
                                    taken.insert(id);
                                    resolved.push(Part::Delete(id));
                                }
                            }
                        }
                    }
                    if !resolved.is_empty() {
                        acts.push((process, Act::Apply(resolved)));
                    }
                }
                Op::Compact { process } => acts.push((process, Act::Compact)),
                Op::Load { process, pick } => loads.push((process, pick, false)),
                Op::StaleLoad { process, pick } => loads.push((process, pick, true)),
                Op::Scan { process } => acts.push((process, Act::Scan)),
                Op::Checkpoint { process }
                | Op::Reopen { process }
                | Op::Backup { process }
                | Op::ForeignLoad { process, .. }
                | Op::ProcessCrash { process } => acts.push((process, Act::Checkpoint)),
                Op::PowerLoss | Op::Restore | Op::CutLog => acts.push((0, Act::Checkpoint)),
            }
        }
        for (process, pick, stale) in loads {
            if stale && !deleted.is_empty() {
                let id = deleted[(pick % deleted.len() as u64) as usize];
                acts.push((process, Act::StaleLoad(id)));
            } else if let Some((id, node)) = take_live(pick, &mut taken) {
                // A loaded handle is not written by the group (but two loads may share it).
                acts.push((process, Act::Load(id, node)));
            }
        }
        acts.retain(|(process, _)| *process < self.engines.len());
        acts
    }

    /// Runs a group of operations at once (see the module docs).
    pub(super) fn execute_group(&mut self, step: usize, ops: Vec<Op>) -> Step {
        let mut acts = self.resolve_group(ops);
        if acts.is_empty() {
            return Ok(());
        }
        if self.stalls && chance(&mut *self.rng, STALL_PPM) {
            let process = below(&mut *self.rng, self.engines.len() as u64) as usize;
            let timeout = SIM_LOCK_TIMEOUT.as_micros() as u64;
            let micros = if chance(&mut *self.rng, 500_000) {
                2 * timeout + below(&mut *self.rng, timeout)
            } else {
                1 + below(&mut *self.rng, timeout / 5)
            };
            acts.push((process, Act::Stall(Duration::from_micros(micros))));
        }
        self.groups += 1;
        let description: Vec<String> = acts
            .iter()
            .map(|(process, act)| format!("p{process} {}", act.describe()))
            .collect();
        self.trace.push(format!(
            "#{step} together: {} (io#{})",
            description.join(" | "),
            self.fs.io_calls()
        ));
        for (process, _) in &acts {
            self.engine(*process)?;
        }
        self.fs.take_captured();
        self.arm_group_crash(&acts);
        let stats_before = self.schedule.stats();
        let results = {
            let engines = &self.engines;
            let fs = &self.fs;
            let bodies: Vec<ActorBody<'_, ActResult>> = acts
                .iter()
                .map(|(process, act)| {
                    if let Act::Stall(held) = act {
                        let vfs = fs.process(*process);
                        let held = *held;
                        return Box::new(move || stall(&*vfs, held)) as ActorBody<'_, ActResult>;
                    }
                    let engine = engines[*process].as_ref();
                    Box::new(move || match engine {
                        Some(engine) => perform(engine, act),
                        None => ActResult::Written(Err(Error::Closed)),
                    }) as ActorBody<'_, ActResult>
                })
                .collect();
            self.schedule.run(bodies)
        };
        self.fs.disarm();
        let stats = self.schedule.stats();
        self.trace.push(format!(
            "  schedule: {} points, {} switches, {} blocked",
            stats.points - stats_before.points,
            stats.switches - stats_before.switches,
            stats.blocked - stats_before.blocked
        ));
        self.settle_group(acts, results)
    }

    /// Arms a kill of one of the group's processes or a power cut somewhere inside it.
    fn arm_group_crash(&mut self, acts: &[(Pid, Act)]) {
        match below(&mut *self.rng, 1000) {
            0..=39 => {
                let (process, _) = &acts[below(&mut *self.rng, acts.len() as u64) as usize];
                let calls = 1 + below(&mut *self.rng, 24 * acts.len() as u64);
                self.fs.kill_process_after(*process, calls);
            }
            40..=79 => {
                let calls = 1 + below(&mut *self.rng, 24 * acts.len() as u64);
                self.fs.cut_power_after(calls);
            }
            _ => {}
        }
    }

    /// Checks each result of a group, updates the model, explores crash images captured
    /// during it, and restarts the processes whose writes failed.
    fn settle_group(
        &mut self,
        acts: Vec<(Pid, Act)>,
        results: Vec<Result<ActResult, String>>,
    ) -> Step {
        let before = self.model.clone();
        for ((process, act), result) in acts.iter().zip(&results) {
            self.trace.push(format!(
                "  p{process} {}: {}",
                act.describe(),
                describe_result(result)
            ));
        }
        let expectation = ScanExpectation {
            before: &before,
            touched: acts
                .iter()
                .flat_map(|(_, act)| -> Vec<(RecordId, Option<&MemoryNode>)> {
                    match act {
                        Act::Update(id, node) => vec![(*id, Some(node))],
                        Act::Delete(id) => vec![(*id, None)],
                        Act::DeleteMany(ids) => ids.iter().map(|id| (*id, None)).collect(),
                        Act::Apply(parts) => parts
                            .iter()
                            .filter_map(|part| match part {
                                Part::Update(id, node) => Some((*id, Some(node))),
                                Part::Delete(id) => Some((*id, None)),
                                Part::Store(_) => None,
                            })
                            .collect(),
                        _ => Vec::new(),
                    }
                })
                .collect(),
            new_nodes: acts
                .iter()
                .flat_map(|(_, act)| -> Vec<&MemoryNode> {
                    match act {
                        Act::Store(node) => vec![node],
                        Act::Batch(nodes) => nodes.iter().collect(),
                        Act::Apply(parts) => parts
                            .iter()
                            .filter_map(|part| match part {
                                Part::Store(node) => Some(node),
                                _ => None,
                            })
                            .collect(),
                        _ => Vec::new(),
                    }
                })
                .map(|node| (node.id, node))
                .collect(),
        };
        let long_stall = acts.iter().any(|(_, act)| match act {
            Act::Stall(held) => *held > SIM_LOCK_TIMEOUT,
            _ => false,
        });
        self.long_stalls += u64::from(long_stall);
        let mut undo = Vec::new();
        let mut failed = BTreeSet::new();
        for ((process, act), result) in acts.iter().zip(results) {
            let result = result.map_err(|panic| {
                broken(
                    Rule::NoPanic,
                    format!("p{process} {}: panic: {panic}", act.describe()),
                )
            })?;
            if let Some(Error::Locked(message)) = result.error() {
                if !long_stall {
                    return Err(broken(
                        Rule::Liveness,
                        format!(
                            "p{process} {} gave up on a lock nobody held past the timeout: \
                             {message}",
                            act.describe()
                        ),
                    ));
                }
                if !message.contains("writer lock") && !message.contains("checkpoint gate") {
                    return Err(broken(
                        Rule::Liveness,
                        format!("p{process} Locked without naming the lock: {message}"),
                    ));
                }
                self.lock_timeouts += 1;
            }
            self.settle_one(*process, act, result, &expectation, &mut undo, &mut failed)?;
        }
        let captured = self.fs.take_captured();
        if self.fs.power_cut_fired() {
            return self.recover_from_crashes();
        }
        if failed.is_empty() && !captured.is_empty() {
            self.explore(captured, undo)?;
        }
        for process in failed {
            if !self.fs.is_killed(process) {
                self.restart(process, Depth::Contents)?;
            }
        }
        self.recover_from_crashes()
    }

    fn settle_one(
        &mut self,
        process: Pid,
        act: &Act,
        result: ActResult,
        expectation: &ScanExpectation<'_>,
        undo: &mut Undo,
        failed: &mut BTreeSet<Pid>,
    ) -> Step {
        let before = expectation.before;
        match (act, result) {
            (Act::Store(node), ActResult::Stored(Ok(id))) => {
                self.model
                    .stored(id, node.clone())
                    .map_err(|detail| broken(Rule::Durability, detail))?;
                undo.push((Change::Store(node.clone()), vec![(id, None)]));
            }
            (Act::Batch(nodes), ActResult::Batch(Ok(ids))) => {
                if ids.len() != nodes.len() {
                    return Err(broken(
                        Rule::Atomicity,
                        "batch returned a wrong number of handles",
                    ));
                }
                for (id, node) in ids.iter().zip(nodes) {
                    self.model
                        .stored(*id, node.clone())
                        .map_err(|detail| broken(Rule::Durability, detail))?;
                }
                undo.push((
                    Change::Batch(nodes.clone()),
                    ids.iter().map(|id| (*id, None)).collect(),
                ));
            }
            (Act::Update(id, node), ActResult::Written(Ok(()))) => {
                self.model.updated(*id, node.clone());
                undo.push((
                    Change::Update(*id, node.clone()),
                    vec![(*id, before.live().get(id).cloned())],
                ));
            }
            (Act::Delete(id), ActResult::Written(Ok(()))) => {
                self.model.deleted_ack(*id);
                undo.push((
                    Change::Delete(*id),
                    vec![(*id, before.live().get(id).cloned())],
                ));
            }
            (Act::Update(id, _) | Act::Delete(id), ActResult::Written(Err(Error::NotFound))) => {
                return Err(broken(
                    Rule::Durability,
                    format!("p{process} write of live {id:?}: not found"),
                ));
            }
            (Act::DeleteMany(ids), ActResult::Written(Ok(()))) => {
                let befores = ids
                    .iter()
                    .map(|id| (*id, before.live().get(id).cloned()))
                    .collect();
                for id in ids {
                    self.model.deleted_ack(*id);
                }
                undo.push((
                    Change::Apply(ids.iter().map(|id| Part::Delete(*id)).collect()),
                    befores,
                ));
            }
            (Act::Apply(parts), ActResult::Applied(Ok(results))) => {
                let befores = self.applied(parts, &results)?;
                undo.push((Change::Apply(parts.clone()), befores));
            }
            (
                Act::DeleteMany(_) | Act::Apply(_),
                ActResult::Written(Err(Error::NotFound)) | ActResult::Applied(Err(Error::NotFound)),
            ) => {
                return Err(broken(
                    Rule::Durability,
                    format!("p{process} {} on live handles: not found", act.describe()),
                ));
            }
            (
                Act::DeleteMany(_) | Act::Apply(_),
                ActResult::Written(Err(error)) | ActResult::Applied(Err(error)),
            ) => {
                self.classify_error(&error)?;
                if let Some(change) = act.change() {
                    self.note_failed_write(process, change, &error);
                }
                failed.insert(process);
            }
            (Act::Compact, ActResult::Written(Ok(()))) => {}
            (Act::Compact, ActResult::Written(Err(error))) => {
                self.classify_error(&error)?;
                failed.insert(process);
            }
            (Act::Checkpoint, ActResult::Written(Err(error))) => {
                self.classify_error(&error)?;
                failed.insert(process);
            }
            (Act::Checkpoint, ActResult::Written(Ok(()))) => {}
            (
                Act::Store(_) | Act::Batch(_) | Act::Update(..) | Act::Delete(_),
                ActResult::Stored(Err(error))
                | ActResult::Batch(Err(error))
                | ActResult::Written(Err(error)),
            ) => {
                self.classify_error(&error)?;
                if let Some(change) = act.change() {
                    self.note_failed_write(process, change, &error);
                }
                failed.insert(process);
            }
            (Act::Load(id, expected), ActResult::Loaded(result)) => match result {
                Ok(node) if node == *expected => {}
                Ok(node) => {
                    return Err(broken(
                        Rule::Durability,
                        format!(
                            "p{process} load of {id:?} returned {}",
                            oracle::short(&node)
                        ),
                    ));
                }
                Err(Error::NotFound) => {
                    return Err(broken(
                        Rule::Durability,
                        format!("p{process} load of live {id:?}: not found"),
                    ));
                }
                Err(error) => self.classify_error(&error)?,
            },
            (Act::StaleLoad(id), ActResult::Loaded(result)) => match result {
                Err(Error::NotFound) => {}
                Ok(node) => {
                    return Err(broken(
                        Rule::NoResurrection,
                        format!(
                            "p{process} deleted {id:?} loads as {}",
                            oracle::short(&node)
                        ),
                    ));
                }
                Err(error) => self.classify_error(&error)?,
            },
            (Act::Scan, ActResult::Scanned(Ok(seen))) => expectation.check(process, &seen)?,
            (Act::Scan, ActResult::Scanned(Err(detail))) => {
                return Err(broken(Rule::Structure, format!("p{process} {detail}")));
            }
            (Act::Scan, ActResult::Loaded(Err(error))) => self.classify_error(&error)?,
            (Act::Stall(_), ActResult::Stalled(_)) => {}
            (act, result) => {
                return Err(broken(
                    Rule::Liveness,
                    format!(
                        "p{process} {}: unexpected result {result:?}",
                        act.describe()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Opens every process at once after a power loss, sometimes cutting the power again in
    /// the middle of their recoveries (up to [`RECOVERY_CRASHES_MAX`] times in a row), or
    /// killing one of them. Processes whose concurrent open failed open alone afterwards.
    pub(super) fn recover_together(&mut self) -> Step {
        for crash in 0..=RECOVERY_CRASHES_MAX {
            self.fs.set_capture_paused(true);
            for pid in 0..self.engines.len() {
                self.fs.restart_process(pid);
            }
            let cut = crash < RECOVERY_CRASHES_MAX && chance(&mut *self.rng, 200_000);
            if cut {
                let calls = 1 + below(&mut *self.rng, 30 * self.engines.len() as u64);
                self.fs.cut_power_after(calls);
            } else if chance(&mut *self.rng, 100_000) {
                let pid = below(&mut *self.rng, self.engines.len() as u64) as usize;
                let calls = 1 + below(&mut *self.rng, 40);
                self.fs.kill_process_after(pid, calls);
            }
            self.recoveries_together += 1;
            let results = {
                let bodies: Vec<ActorBody<'_, Result<StorageEngine, Error>>> =
                    (0..self.engines.len())
                        .map(|pid| {
                            let options = self.options(&self.fs, pid);
                            Box::new(move || StorageEngine::open_with(Path::new(DIR), options))
                                as ActorBody<'_, Result<StorageEngine, Error>>
                        })
                        .collect();
                self.schedule.run(bodies)
            };
            self.fs.disarm();
            self.fs.set_capture_paused(false);
            for (pid, result) in results.into_iter().enumerate() {
                match result {
                    Err(panic) => {
                        return Err(broken(
                            Rule::NoPanic,
                            format!("p{pid} open during a concurrent recovery: panic: {panic}"),
                        ));
                    }
                    Ok(Ok(engine)) if !self.fs.is_killed(pid) => {
                        self.trace.push(format!("p{pid} recovered (together)"));
                        self.engines[pid] = Some(engine);
                    }
                    Ok(Ok(_)) => self.trace.push(format!("p{pid} killed at the end of open")),
                    Ok(Err(error)) => {
                        self.trace
                            .push(format!("p{pid} open (together) failed: {error}"));
                        self.classify_error(&error)?;
                    }
                }
            }
            if !self.fs.power_cut_fired() {
                break;
            }
            self.trace
                .push("power cut during the recovery of every process".to_string());
            for engine in &mut self.engines {
                *engine = None;
            }
            self.fs.power_loss();
        }
        for pid in 0..self.engines.len() {
            if self.engines[pid].is_none() || self.fs.is_killed(pid) {
                self.engines[pid] = None;
                self.open(pid)?;
            }
        }
        Ok(())
    }
}
