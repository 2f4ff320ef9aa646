//! The oracle: checks a (recovered) engine against the [`Model`], per DESIGN.md §8.
//!
//! Rules checked by [`check_recovered`]:
//! - **Durability**: every acknowledged node is present and byte-equal (or replaced by a
//!   pending update, or gone by a pending delete).
//! - **No resurrection**: no acknowledged delete comes back.
//! - **Prefix**: nothing appears that no operation wrote (every unknown node is the node of
//!   a pending store or batch).
//! - **Atomicity**: a pending batch is all there or not at all.
//! - **Agreement**: a load by handle returns what the scan returned (a spread sample of
//!   handles per check).
//! - **Structure**: the full integrity check passes.
//! - **Detection**: corruption is reported only if some was injected.

use crate::model::{Change, Model, Part};
use mentedb_storage::{Error, MemoryNode, RecordId, StorageEngine};
use std::collections::BTreeMap;
use std::fmt;

/// Which rule a run broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// An acknowledged write is missing or different.
    Durability,
    /// A batch is partly there.
    Atomicity,
    /// An acknowledged delete came back.
    NoResurrection,
    /// Something appeared that no operation wrote.
    Prefix,
    /// A load disagrees with the scan.
    Agreement,
    /// The integrity check failed.
    Structure,
    /// Corruption reported with none injected, or an error where none may happen.
    Detection,
    /// The engine did not come back after faults stopped.
    Liveness,
    /// Recovering twice gave different states.
    Recovery,
    /// Free space was not found again, or the file is larger than its live data allows.
    Space,
    /// The engine panicked.
    NoPanic,
    /// A handle named a record it was not given for: one of another database, or one
    /// stored after the backup a database was restored from.
    Identity,
    /// The same seed ran twice differently (`--doublecheck`).
    Determinism,
    /// A failure on purpose (`RunConfig::canary`): a scan while three or more records are
    /// live, so a pipeline or a shrink can be shown to notice failures.
    Canary,
}

/// A broken rule, with what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The rule.
    pub rule: Rule,
    /// What was expected and found.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:?}: {}", self.rule, self.detail)
    }
}

fn violation(rule: Rule, detail: impl Into<String>) -> Violation {
    Violation {
        rule,
        detail: detail.into(),
    }
}

/// How much a check covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Contents and the full integrity check of every page: after a power loss (the disk
    /// changed under the engine) and at the end of a run.
    Full,
    /// Contents only: after a process crash or restart, which leaves the disk and page
    /// cache as the engine wrote them (the next full check covers their structure). With no
    /// operation in flight to resolve, a spread sample of loads (live and deleted handles)
    /// instead of a whole scan.
    Contents,
}

/// What a check concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every rule holds; the model adopted the observed state.
    Clean,
    /// The engine reported corruption that was injected (detected, as it must be); the
    /// model is unchanged.
    CorruptionDetected(String),
}

/// Checks `engine` against `model`. On success the model adopts the observed state.
/// `corruption_injected` says whether the disk was corrupted on purpose.
pub fn check_recovered(
    engine: &StorageEngine,
    model: &mut Model,
    corruption_injected: bool,
    depth: Depth,
) -> Result<Verdict, Violation> {
    if depth == Depth::Contents && model.pending().is_empty() {
        // Nothing to resolve: sampled loads show whether this process sees the state.
        let model: &Model = model;
        if let Err(error) = check_loads(engine, model, model.live()) {
            return corruption_or_violation(error, corruption_injected);
        }
        return Ok(Verdict::Clean);
    }
    let observed = match scan(engine) {
        Ok(observed) => observed,
        Err(error) => return corruption_or_violation(error, corruption_injected),
    };
    check_acknowledged(model, &observed)?;
    check_unknown(model, &observed)?;
    if let Err(error) = check_loads(engine, model, &observed) {
        return corruption_or_violation(error, corruption_injected);
    }
    if depth == Depth::Contents {
        model.adopt(observed);
        return Ok(Verdict::Clean);
    }
    match engine.check_integrity() {
        Ok(report) if report.is_clean() => {}
        Ok(report) if corruption_injected => {
            return Ok(Verdict::CorruptionDetected(format!(
                "{:?}",
                report.problems
            )));
        }
        Ok(report) => return Err(violation(Rule::Structure, format!("{:?}", report.problems))),
        Err(error) => {
            return corruption_or_violation(CheckError::Engine(error), corruption_injected);
        }
    }
    model.adopt(observed);
    Ok(Verdict::Clean)
}

fn corruption_or_violation(
    error: CheckError,
    corruption_injected: bool,
) -> Result<Verdict, Violation> {
    match error {
        CheckError::Engine(error) if error.is_corruption() && corruption_injected => {
            Ok(Verdict::CorruptionDetected(error.to_string()))
        }
        CheckError::Engine(error) if error.is_corruption() => Err(violation(
            Rule::Detection,
            format!("corruption reported but none was injected: {error}"),
        )),
        CheckError::Engine(error) => {
            Err(violation(Rule::Liveness, format!("engine error: {error}")))
        }
        CheckError::Broken(violation) => Err(violation),
    }
}

/// Why a step of the check stopped.
#[derive(Debug)]
enum CheckError {
    Engine(Error),
    Broken(Violation),
}

impl From<Error> for CheckError {
    fn from(error: Error) -> Self {
        CheckError::Engine(error)
    }
}

fn scan(engine: &StorageEngine) -> Result<BTreeMap<RecordId, MemoryNode>, CheckError> {
    let mut observed = BTreeMap::new();
    for item in engine.scan_memories() {
        let (id, node) = item?;
        if observed.insert(id, node).is_some() {
            return Err(CheckError::Broken(violation(
                Rule::Structure,
                format!("scan yields {id:?} twice"),
            )));
        }
    }
    Ok(observed)
}

fn check_acknowledged(
    model: &Model,
    observed: &BTreeMap<RecordId, MemoryNode>,
) -> Result<(), Violation> {
    for id in model.live().keys() {
        let expectation = model.expectations(*id);
        let found = observed.get(id);
        if !expectation.accepts(found) {
            let detail = match found {
                None => format!("acknowledged {id:?} is missing"),
                Some(node) => format!(
                    "{id:?} holds {:?}, expected one of {:?}",
                    short(node),
                    expectation
                        .nodes
                        .iter()
                        .map(|node| short(node))
                        .collect::<Vec<_>>()
                ),
            };
            return Err(violation(Rule::Durability, detail));
        }
    }
    Ok(())
}

fn check_unknown(
    model: &Model,
    observed: &BTreeMap<RecordId, MemoryNode>,
) -> Result<(), Violation> {
    let pending_new = model.pending_new_nodes();
    let mut seen_per_change: BTreeMap<usize, usize> = BTreeMap::new();
    for (id, node) in observed {
        if model.live().contains_key(id) {
            continue;
        }
        if model.deleted().contains(id) {
            return Err(violation(
                Rule::NoResurrection,
                format!("deleted {id:?} came back as {:?}", short(node)),
            ));
        }
        match pending_new.get(&node.id) {
            Some((change, expected)) if *expected == node => {
                *seen_per_change.entry(*change).or_default() += 1;
            }
            _ => {
                return Err(violation(
                    Rule::Prefix,
                    format!("{id:?} holds {:?}, which no operation wrote", short(node)),
                ));
            }
        }
    }
    for (index, change) in model.pending().iter().enumerate() {
        let seen = seen_per_change.get(&index).copied().unwrap_or(0);
        match change {
            Change::Batch(nodes) if seen != 0 && seen != nodes.len() => {
                return Err(violation(
                    Rule::Atomicity,
                    format!("batch of {} nodes is {seen} nodes present", nodes.len()),
                ));
            }
            Change::Apply(parts) => check_apply_atomic(model, observed, parts, seen)?,
            _ => {}
        }
    }
    Ok(())
}

/// A pending `apply` (or delete batch) is all there or not at all: each part that shows
/// unambiguously whether it happened must agree with the others.
fn check_apply_atomic(
    model: &Model,
    observed: &BTreeMap<RecordId, MemoryNode>,
    parts: &[Part],
    stores_seen: usize,
) -> Result<(), Violation> {
    let stores = parts
        .iter()
        .filter(|part| matches!(part, Part::Store(_)))
        .count();
    let mut happened = Vec::new();
    if stores > 0 {
        if stores_seen != 0 && stores_seen != stores {
            return Err(violation(
                Rule::Atomicity,
                format!("an apply of {stores} stores has {stores_seen} of them present"),
            ));
        }
        happened.push(stores_seen != 0);
    }
    for part in parts {
        match part {
            Part::Store(_) => {}
            Part::Update(id, node) => {
                let before = model.live().get(id);
                match observed.get(id) {
                    Some(found) if found == node && before != Some(node) => happened.push(true),
                    Some(found) if Some(found) == before && before != Some(node) => {
                        happened.push(false)
                    }
                    _ => {}
                }
            }
            Part::Delete(id) => {
                if model.live().contains_key(id) {
                    happened.push(!observed.contains_key(id));
                }
            }
        }
    }
    if happened.iter().any(|part| *part) && happened.iter().any(|part| !*part) {
        return Err(violation(
            Rule::Atomicity,
            format!(
                "an apply of {} parts is partly there: {} of {} decided parts happened",
                parts.len(),
                happened.iter().filter(|part| **part).count(),
                happened.len()
            ),
        ));
    }
    Ok(())
}

/// Handles loaded one by one per check, at most (evenly spread over the set): the scan
/// already compares every node with the model; loads check that lookups by handle agree,
/// and checking all of them made the oracle most of a campaign's time.
const LOADS_CHECKED_MAX: usize = 24;

/// Every item if there are few, else about [`LOADS_CHECKED_MAX`] evenly spread ones
/// (always the first and the last).
fn spread<T>(items: impl Iterator<Item = T>, count: usize) -> impl Iterator<Item = T> {
    let step = count.div_ceil(LOADS_CHECKED_MAX).max(1);
    items
        .enumerate()
        .filter(move |(index, _)| index % step == 0 || index + 1 == count)
        .map(|(_, item)| item)
}

fn check_loads(
    engine: &StorageEngine,
    model: &Model,
    observed: &BTreeMap<RecordId, MemoryNode>,
) -> Result<(), CheckError> {
    for (id, node) in spread(observed.iter(), observed.len()) {
        let loaded = engine.load_memory(*id)?;
        if &loaded != node {
            return Err(CheckError::Broken(violation(
                Rule::Agreement,
                format!("load of {id:?} differs from the scan"),
            )));
        }
    }
    for id in spread(model.deleted().iter(), model.deleted().len()) {
        match engine.load_memory(*id) {
            Err(Error::NotFound) => {}
            Ok(node) => {
                return Err(CheckError::Broken(violation(
                    Rule::NoResurrection,
                    format!("deleted {id:?} loads as {:?}", short(&node)),
                )));
            }
            Err(error) => return Err(CheckError::Engine(error)),
        }
    }
    Ok(())
}

/// A short description of a node for reports.
pub fn short(node: &MemoryNode) -> String {
    let content: String = node.content.chars().take(24).collect();
    format!("{} '{}' ({} bytes)", node.id, content, node.content.len())
}
