//! The workload's operations applied to the engines and the model: stores, batches,
//! updates, deletes, loads and scans, and what a failed one means for the oracle.

use super::*;
use crate::model::Part;
use crate::workload::{DELETE_BATCH_MAX, PartDraw};
use mentedb_storage::WriteOp;

/// The engine operations of resolved apply parts.
pub(super) fn write_ops(parts: &[Part]) -> Vec<WriteOp> {
    parts
        .iter()
        .map(|part| match part {
            Part::Store(node) => WriteOp::Store(node.clone()),
            Part::Update(id, node) => WriteOp::Update(*id, node.clone()),
            Part::Delete(id) => WriteOp::Delete(*id),
        })
        .collect()
}

impl Sim {
    /// Runs one operation; returns what the model looked like before an acknowledged
    /// change (for crash images taken during it).
    pub(super) fn apply(&mut self, op: Op) -> Result<Undo, Stop> {
        match op {
            Op::Store { process, node } => {
                let result = self.engine(process)?.store_memory(&node);
                match result {
                    Ok(id) => {
                        self.trace.push(format!("  -> {id:?}"));
                        self.model
                            .stored(id, node.clone())
                            .map_err(|detail| broken(Rule::Durability, detail))?;
                        Ok(vec![(Change::Store(node), vec![(id, None)])])
                    }
                    Err(error) => self.write_failed(process, Change::Store(node), error),
                }
            }
            Op::Batch { process, nodes } => {
                let result = self.engine(process)?.store_memory_batch(&nodes);
                match result {
                    Ok(ids) => {
                        self.trace
                            .push(format!("  -> {} handles: {ids:?}", ids.len()));
                        if ids.len() != nodes.len() {
                            return Err(broken(
                                Rule::Atomicity,
                                "batch returned a wrong number of handles",
                            ));
                        }
                        let mut before = Vec::new();
                        for (id, node) in ids.iter().zip(&nodes) {
                            self.model
                                .stored(*id, node.clone())
                                .map_err(|detail| broken(Rule::Durability, detail))?;
                            before.push((*id, None));
                        }
                        Ok(vec![(Change::Batch(nodes), before)])
                    }
                    Err(error) => self.write_failed(process, Change::Batch(nodes), error),
                }
            }
            Op::Update {
                process,
                pick,
                node,
            } => {
                let Some((id, old)) = self.pick_live(pick) else {
                    return Ok(Vec::new());
                };
                let result = self.engine(process)?.update_memory(id, &node);
                match result {
                    Ok(()) => {
                        self.model.updated(id, node.clone());
                        Ok(vec![(Change::Update(id, node), vec![(id, Some(old))])])
                    }
                    Err(Error::NotFound) => Err(broken(
                        Rule::Durability,
                        format!("update of live {id:?}: not found"),
                    )),
                    Err(error) => self.write_failed(process, Change::Update(id, node), error),
                }
            }
            Op::Delete { process, pick } => {
                let Some((id, old)) = self.pick_live(pick) else {
                    return Ok(Vec::new());
                };
                let result = self.engine(process)?.delete_memory(id);
                match result {
                    Ok(()) => {
                        self.model.deleted_ack(id);
                        Ok(vec![(Change::Delete(id), vec![(id, Some(old))])])
                    }
                    Err(Error::NotFound) => Err(broken(
                        Rule::Durability,
                        format!("delete of live {id:?}: not found"),
                    )),
                    Err(error) => self.write_failed(process, Change::Delete(id), error),
                }
            }
            Op::DeleteMany {
                process,
                picks,
                all,
            } => {
                let ids = self.resolve_deletes(&picks, all);
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let parts: Vec<Part> = ids.iter().map(|id| Part::Delete(*id)).collect();
                let before: Vec<(RecordId, Option<MemoryNode>)> = ids
                    .iter()
                    .map(|id| (*id, self.model.live().get(id).cloned()))
                    .collect();
                match self.engine(process)?.delete_memory_batch(&ids) {
                    Ok(()) => {
                        for id in &ids {
                            self.model.deleted_ack(*id);
                        }
                        Ok(vec![(Change::Apply(parts), before)])
                    }
                    Err(Error::NotFound) => Err(broken(
                        Rule::Durability,
                        format!("p{process} delete batch of live handles: not found"),
                    )),
                    Err(error) => self.write_failed(process, Change::Apply(parts), error),
                }
            }
            Op::Apply { process, parts } => {
                let parts = self.resolve_parts(parts);
                if parts.is_empty() {
                    return Ok(Vec::new());
                }
                let ops = write_ops(&parts);
                match self.engine(process)?.apply(&ops) {
                    Ok(results) => {
                        let before = self.applied(&parts, &results)?;
                        Ok(vec![(Change::Apply(parts), before)])
                    }
                    Err(Error::NotFound) => Err(broken(
                        Rule::Durability,
                        format!("p{process} apply on live handles: not found"),
                    )),
                    Err(error) => self.write_failed(process, Change::Apply(parts), error),
                }
            }
            Op::Compact { process } => {
                if let Err(error) = self.engine(process)?.compact() {
                    self.trace.push(format!("  compact failed: {error}"));
                    self.classify_error(&error)?;
                    if !self.fs.power_cut_fired() {
                        self.fs.disarm();
                        self.fs.take_captured();
                        self.restart(process, Depth::Contents)?;
                    }
                }
                Ok(Vec::new())
            }
            Op::Load { process, pick } => {
                let Some((id, expected)) = self.pick_live(pick) else {
                    return Ok(Vec::new());
                };
                match self.engine(process)?.load_memory(id) {
                    Ok(node) if node == expected => Ok(Vec::new()),
                    Ok(node) => Err(broken(
                        Rule::Durability,
                        format!(
                            "p{process} load of {id:?} returned {}",
                            oracle::short(&node)
                        ),
                    )),
                    Err(Error::NotFound) => Err(broken(
                        Rule::Durability,
                        format!("p{process} load of live {id:?}: not found"),
                    )),
                    Err(error) => self.read_failed(error),
                }
            }
            Op::StaleLoad { process, pick } => {
                let Some(id) = self.pick_deleted(pick) else {
                    return Ok(Vec::new());
                };
                match self.engine(process)?.load_memory(id) {
                    Err(Error::NotFound) => Ok(Vec::new()),
                    Ok(node) => Err(broken(
                        Rule::NoResurrection,
                        format!(
                            "p{process} deleted {id:?} loads as {}",
                            oracle::short(&node)
                        ),
                    )),
                    Err(error) => self.read_failed(error),
                }
            }
            Op::Scan { process } => {
                self.scan(process)?;
                Ok(Vec::new())
            }
            Op::Checkpoint { process } => {
                if let Err(error) = self.engine(process)?.checkpoint() {
                    self.trace.push(format!("  checkpoint failed: {error}"));
                    self.classify_error(&error)?;
                    if !self.fs.power_cut_fired() {
                        self.fs.disarm();
                        self.fs.take_captured();
                        self.restart(process, Depth::Contents)?;
                    }
                }
                Ok(Vec::new())
            }
            Op::Reopen { process } => {
                let engine = self.engines[process].take();
                if let Some(engine) = engine
                    && let Err(error) = engine.close()
                {
                    self.trace.push(format!("  close failed: {error}"));
                    self.classify_error(&error)?;
                }
                self.restart(process, Depth::Contents)?;
                Ok(Vec::new())
            }
            Op::ProcessCrash { process } => {
                self.fs.kill_process(process);
                self.restart(process, Depth::Contents)?;
                Ok(Vec::new())
            }
            Op::PowerLoss => {
                self.power_loss()?;
                Ok(Vec::new())
            }
            Op::Backup { process } => {
                self.backup(process)?;
                Ok(Vec::new())
            }
            Op::Restore => {
                self.restore()?;
                Ok(Vec::new())
            }
            Op::ForeignLoad { process, pick } => {
                self.foreign_load(process, pick)?;
                Ok(Vec::new())
            }
            Op::CutLog => {
                self.cut_log()?;
                Ok(Vec::new())
            }
        }
    }

    /// A write failed: it may or may not have taken effect. The process restarts (a
    /// failed sync poisons the engine; an operator restarts it) and the oracle resolves it.
    pub(super) fn write_failed(
        &mut self,
        process: Pid,
        change: Change,
        error: Error,
    ) -> Result<Undo, Stop> {
        self.trace.push(format!("  failed: {error}"));
        self.classify_error(&error)?;
        self.note_failed_write(process, change, &error);
        if self.fs.power_cut_fired() {
            return Ok(Vec::new());
        }
        // The operation is over: a crash armed for it must not hit the restart. Crash
        // images captured during it would be checked against a model the restart's check
        // resolves (the failed change adopted or dropped), so they are dropped.
        self.fs.disarm();
        self.fs.take_captured();
        self.restart(process, Depth::Contents)?;
        Ok(Vec::new())
    }

    /// A write returned an error. Its outcome is unknown only if the engine says so
    /// ([`Error::OutcomeUnknown`]) or the process died under it (the caller never saw a
    /// result: a kill, a power cut). Any other error means it did not commit, and it must
    /// never be seen: it is not added to the pending changes, so a store of it that shows
    /// up breaks the prefix rule and an update or delete of it the durability rule.
    pub(super) fn note_failed_write(&mut self, process: Pid, change: Change, error: &Error) {
        let unknown = matches!(error, Error::OutcomeUnknown(_))
            || self.fs.is_killed(process)
            || self.fs.power_cut_fired();
        if unknown {
            self.model.unacknowledged(change);
        } else {
            self.refused_writes += 1;
            self.trace
                .push("  (not committed: it must never appear)".to_string());
        }
    }

    /// Distinct live handles for a delete batch: every pick's, or (`all`) every live
    /// handle, at most [`DELETE_BATCH_MAX`].
    pub(super) fn resolve_deletes(&self, picks: &[u64], all: bool) -> Vec<RecordId> {
        let live: Vec<RecordId> = self.model.live().keys().copied().collect();
        if live.is_empty() {
            return Vec::new();
        }
        if all {
            return live.into_iter().take(DELETE_BATCH_MAX).collect();
        }
        let mut ids: Vec<RecordId> = picks
            .iter()
            .map(|pick| live[(pick % live.len() as u64) as usize])
            .collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// The parts of a drawn apply with their handles: distinct live handles for updates
    /// and deletes (a part without one is dropped).
    pub(super) fn resolve_parts(&self, draws: Vec<PartDraw>) -> Vec<Part> {
        let live: Vec<RecordId> = self.model.live().keys().copied().collect();
        let mut taken = std::collections::BTreeSet::new();
        let mut parts = Vec::new();
        for draw in draws {
            let mut target = |pick: u64| {
                if live.is_empty() {
                    return None;
                }
                let start = (pick % live.len() as u64) as usize;
                let found = (0..live.len())
                    .map(|offset| live[(start + offset) % live.len()])
                    .find(|id| !taken.contains(id))?;
                taken.insert(found);
                Some(found)
            };
            match draw {
                PartDraw::Store(node) => parts.push(Part::Store(node)),
                PartDraw::Update(pick, node) => {
                    if let Some(id) = target(pick) {
                        parts.push(Part::Update(id, node));
                    }
                }
                PartDraw::Delete(pick) => {
                    if let Some(id) = target(pick) {
                        parts.push(Part::Delete(id));
                    }
                }
            }
        }
        parts
    }

    /// Records an acknowledged apply in the model; returns what it replaced.
    pub(super) fn applied(
        &mut self,
        parts: &[Part],
        results: &[Option<RecordId>],
    ) -> Result<Vec<(RecordId, Option<MemoryNode>)>, Stop> {
        if results.len() != parts.len() {
            return Err(broken(
                Rule::Atomicity,
                "apply returned a wrong number of results",
            ));
        }
        let mut before = Vec::new();
        for (part, result) in parts.iter().zip(results) {
            match (part, result) {
                (Part::Store(node), Some(id)) => {
                    self.model
                        .stored(*id, node.clone())
                        .map_err(|detail| broken(Rule::Durability, detail))?;
                    before.push((*id, None));
                }
                (Part::Update(id, node), None) => {
                    before.push((*id, self.model.live().get(id).cloned()));
                    self.model.updated(*id, node.clone());
                }
                (Part::Delete(id), None) => {
                    before.push((*id, self.model.live().get(id).cloned()));
                    self.model.deleted_ack(*id);
                }
                _ => {
                    return Err(broken(
                        Rule::Atomicity,
                        "apply returned a handle for an update or delete, or none for a store",
                    ));
                }
            }
        }
        Ok(before)
    }

    pub(super) fn read_failed(&mut self, error: Error) -> Result<Undo, Stop> {
        self.trace.push(format!("  read failed: {error}"));
        self.classify_error(&error)?;
        Ok(Vec::new())
    }

    pub(super) fn scan(&mut self, process: Pid) -> Step {
        let mut seen = BTreeMap::new();
        let engine = self.engine(process)?;
        let mut failure = None;
        for item in engine.scan_memories() {
            match item {
                Ok((id, node)) => {
                    seen.insert(id, node);
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if let Some(error) = failure {
            self.read_failed(error)?;
            return Ok(());
        }
        if &seen != self.model.live() {
            let missing = self
                .model
                .live()
                .keys()
                .filter(|id| !seen.contains_key(id))
                .count();
            let extra = seen
                .keys()
                .filter(|id| !self.model.live().contains_key(id))
                .count();
            return Err(broken(
                Rule::Agreement,
                format!(
                    "p{process} scan differs from the model: {missing} missing, {extra} extra, of {}",
                    seen.len()
                ),
            ));
        }
        Ok(())
    }
}
