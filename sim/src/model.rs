//! The model: what the database must contain, given every operation issued so far.
//!
//! It keeps the acknowledged state (handle → node), the handles whose deletion was
//! acknowledged, and the operations that were issued but not acknowledged (they failed, or a
//! crash interrupted them). An unacknowledged operation may or may not have taken effect;
//! the oracle accepts either, whole, and the model then adopts what it observed.

use mentedb_storage::{MemoryId, MemoryNode, RecordId};
use std::collections::{BTreeMap, BTreeSet};

/// An operation that changed, or may have changed, the database.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// A node stored under a handle the engine chose.
    Store(MemoryNode),
    /// Nodes stored atomically.
    Batch(Vec<MemoryNode>),
    /// A node replaced.
    Update(RecordId, MemoryNode),
    /// A node deleted.
    Delete(RecordId),
    /// Stores, updates and deletes committed together (`apply`, `delete_memory_batch`):
    /// all of them or none.
    Apply(Vec<Part>),
}

/// One part of a [`Change::Apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// A new node.
    Store(MemoryNode),
    /// A node replaced.
    Update(RecordId, MemoryNode),
    /// A node deleted.
    Delete(RecordId),
}

/// The expected contents of the database.
#[derive(Debug, Clone, Default)]
pub struct Model {
    live: BTreeMap<RecordId, MemoryNode>,
    deleted: BTreeSet<RecordId>,
    pending: Vec<Change>,
}

impl Model {
    /// An empty model.
    pub fn new() -> Model {
        Model::default()
    }

    /// Acknowledged live nodes.
    pub fn live(&self) -> &BTreeMap<RecordId, MemoryNode> {
        &self.live
    }

    /// Handles whose deletion was acknowledged.
    pub fn deleted(&self) -> &BTreeSet<RecordId> {
        &self.deleted
    }

    /// Operations not acknowledged yet.
    pub fn pending(&self) -> &[Change] {
        &self.pending
    }

    /// Records an acknowledged store; `Err` if the engine handed out a handle that is live
    /// or was deleted (an engine bug the oracle reports).
    pub fn stored(&mut self, id: RecordId, node: MemoryNode) -> Result<(), String> {
        if self.live.contains_key(&id) {
            return Err(format!("the engine reissued live handle {id:?}"));
        }
        if self.deleted.contains(&id) {
            return Err(format!("the engine reissued deleted handle {id:?}"));
        }
        self.live.insert(id, node);
        Ok(())
    }

    /// Records an acknowledged update.
    pub fn updated(&mut self, id: RecordId, node: MemoryNode) {
        assert!(
            self.live.contains_key(&id),
            "the runner updates only handles the model holds"
        );
        self.live.insert(id, node);
    }

    /// Puts an acknowledged change back in flight: the state as it was just before the
    /// change, with the change pending (for checking crash images taken during it).
    pub fn reopen_change(&mut self, change: Change, before: &[(RecordId, Option<MemoryNode>)]) {
        for (id, node) in before {
            match node {
                Some(node) => {
                    self.live.insert(*id, node.clone());
                    self.deleted.remove(id);
                }
                None => {
                    self.live.remove(id);
                    self.deleted.remove(id);
                }
            }
        }
        self.pending.push(change);
    }

    /// The database was restored from a backup taken when the model was `backup`: its
    /// contents are the backup's again, and every handle known now that the backup did not
    /// hold live is deleted for ever (a record stored after the backup is gone, and its
    /// handle must never name another record).
    pub fn restored(&mut self, backup: &Model) {
        let mut deleted = backup.deleted.clone();
        deleted.extend(
            self.live
                .keys()
                .chain(self.deleted.iter())
                .filter(|id| !backup.live.contains_key(id))
                .copied(),
        );
        self.live = backup.live.clone();
        self.deleted = deleted;
        self.pending.clear();
    }

    /// Records an acknowledged delete.
    pub fn deleted_ack(&mut self, id: RecordId) {
        self.live.remove(&id);
        self.deleted.insert(id);
    }

    /// Records an operation that was issued but not acknowledged.
    pub fn unacknowledged(&mut self, change: Change) {
        self.pending.push(change);
    }

    /// The values a load of `id` may return now: `Some(node)` candidates, and whether
    /// "not found" is acceptable.
    pub fn expectations(&self, id: RecordId) -> Expectation<'_> {
        let mut nodes: Vec<&MemoryNode> = self.live.get(&id).into_iter().collect();
        let mut may_be_absent = !self.live.contains_key(&id);
        for change in &self.pending {
            match change {
                Change::Update(target, node) if *target == id => nodes.push(node),
                Change::Delete(target) if *target == id => may_be_absent = true,
                Change::Apply(parts) => {
                    for part in parts {
                        match part {
                            Part::Update(target, node) if *target == id => nodes.push(node),
                            Part::Delete(target) if *target == id => may_be_absent = true,
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
        Expectation {
            nodes,
            may_be_absent,
        }
    }

    /// Nodes of pending stores and batches, by memory id, with the index of their change.
    pub fn pending_new_nodes(&self) -> BTreeMap<MemoryId, (usize, &MemoryNode)> {
        let mut nodes = BTreeMap::new();
        for (index, change) in self.pending.iter().enumerate() {
            match change {
                Change::Store(node) => {
                    nodes.insert(node.id, (index, node));
                }
                Change::Batch(batch) => {
                    for node in batch {
                        nodes.insert(node.id, (index, node));
                    }
                }
                Change::Apply(parts) => {
                    for part in parts {
                        if let Part::Store(node) = part {
                            nodes.insert(node.id, (index, node));
                        }
                    }
                }
                _ => {}
            }
        }
        nodes
    }

    /// Replaces the model by an observed state the oracle accepted: every pending operation
    /// is resolved (it took effect or it did not).
    pub fn adopt(&mut self, observed: BTreeMap<RecordId, MemoryNode>) {
        for id in self.live.keys() {
            if !observed.contains_key(id) {
                self.deleted.insert(*id);
            }
        }
        for change in &self.pending {
            let deletes: Vec<RecordId> = match change {
                Change::Delete(id) => vec![*id],
                Change::Apply(parts) => parts
                    .iter()
                    .filter_map(|part| match part {
                        Part::Delete(id) => Some(*id),
                        _ => None,
                    })
                    .collect(),
                _ => Vec::new(),
            };
            for id in deletes {
                if !observed.contains_key(&id) {
                    self.deleted.insert(id);
                }
            }
        }
        self.live = observed;
        self.pending.clear();
    }
}

/// What a load of one handle may return.
#[derive(Debug)]
pub struct Expectation<'a> {
    /// Acceptable nodes.
    pub nodes: Vec<&'a MemoryNode>,
    /// Whether `NotFound` is acceptable.
    pub may_be_absent: bool,
}

impl Expectation<'_> {
    /// True if `found` (None = not found) is acceptable.
    pub fn accepts(&self, found: Option<&MemoryNode>) -> bool {
        match found {
            None => self.may_be_absent,
            Some(node) => self.nodes.contains(&node),
        }
    }
}
