//! The operations of a concurrent group, resolved, and what each returned; the stall that
//! holds the writer lock (see the parent module's docs).

use super::super::*;
use crate::model::Part;
use std::time::Duration;

/// Share of groups (in seeds with stalls) that include one.
pub(super) const STALL_PPM: u32 = 250_000;
/// A stall sleeps in steps of this much simulated time, so waiters run in between.
const STALL_STEP: Duration = Duration::from_millis(5);

/// A group's operation with its target resolved.
#[derive(Debug, Clone)]
pub(super) enum Act {
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
    pub(super) fn describe(&self) -> String {
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
    pub(super) fn change(&self) -> Option<Change> {
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
pub(super) enum ActResult {
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
    pub(super) fn error(&self) -> Option<&Error> {
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
pub(super) fn stall(vfs: &dyn mentedb_storage::vfs::Vfs, held: Duration) -> ActResult {
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

pub(super) fn describe_result(result: &Result<ActResult, String>) -> String {
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
pub(super) fn perform(engine: &StorageEngine, act: &Act) -> ActResult {
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
