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
mod acts;
use acts::{Act, ActResult, STALL_PPM, describe_result, perform, stall};

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
        // A panic in any act is a violation, whatever the acts before it returned: read in
        // order, an earlier act's corruption error ended the group as detected corruption
        // and hid a later act's panic (1,000-seed swarm campaign, seed 974: a checkpoint
        // panicked writing a page that named page 0, and the run passed as "corruption
        // caught").
        if let Some(((process, act), Err(panic))) = acts
            .iter()
            .zip(&results)
            .find(|(_, result)| result.is_err())
        {
            return Err(broken(
                Rule::NoPanic,
                format!("p{process} {}: panic: {panic}", act.describe()),
            ));
        }
        let mut undo = Vec::new();
        let mut failed = BTreeSet::new();
        for ((process, act), result) in acts.iter().zip(results) {
            let Ok(result) = result else {
                unreachable!("panics were reported above");
            };
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
}
