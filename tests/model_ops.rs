//! Model-based property tests: random operation sequences (with crashes and reopens) run
//! against the engine on `MemFs` and against a `BTreeMap` model; proptest shrinks a failing
//! sequence to a minimal one. Cases: 64 by default, `PROPTEST_CASES` overrides.

use mentedb_storage::vfs::MemFs;
use mentedb_storage::{
    AgentId, Error, MemoryNode, MemoryType, Options, RecordId, StorageEngine, WriteOp,
};
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

/// How large a generated node is (its record): small, typical, large (forces moves), or
/// larger than a page (overflow chain).
#[derive(Debug, Clone, Copy)]
enum Size {
    Small,
    Typical,
    Large,
    Overflow,
}

#[derive(Debug, Clone)]
enum Op {
    Store(Size, u8),
    Batch(Vec<(Size, u8)>),
    Update(usize, Size, u8),
    Delete(usize),
    /// Delete several picked nodes in one batch (`true`: every live node).
    DeleteBatch(Vec<usize>, bool),
    /// One atomic apply of stores, updates and deletes.
    Apply(Vec<ApplyPart>),
    Compact,
    Load(usize),
    LoadDeleted(usize),
    Scan,
    Checkpoint,
    CloseReopen,
    CrashReopen,
}

#[derive(Debug, Clone)]
enum ApplyPart {
    Store(Size, u8),
    Update(usize, Size, u8),
    Delete(usize),
}

fn apply_part() -> impl Strategy<Value = ApplyPart> {
    prop_oneof![
        (size(), any::<u8>()).prop_map(|(size, tag)| ApplyPart::Store(size, tag)),
        (any::<usize>(), size(), any::<u8>())
            .prop_map(|(pick, size, tag)| ApplyPart::Update(pick, size, tag)),
        any::<usize>().prop_map(ApplyPart::Delete),
    ]
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        4 => Just(Size::Small),
        4 => Just(Size::Typical),
        2 => Just(Size::Large),
        1 => Just(Size::Overflow),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (size(), any::<u8>()).prop_map(|(size, tag)| Op::Store(size, tag)),
        2 => prop::collection::vec((size(), any::<u8>()), 1..6).prop_map(Op::Batch),
        4 => (any::<usize>(), size(), any::<u8>()).prop_map(|(pick, size, tag)| Op::Update(pick, size, tag)),
        3 => any::<usize>().prop_map(Op::Delete),
        2 => (prop::collection::vec(any::<usize>(), 1..8), prop::bool::weighted(0.2))
            .prop_map(|(picks, all)| Op::DeleteBatch(picks, all)),
        2 => prop::collection::vec(apply_part(), 1..6).prop_map(Op::Apply),
        1 => Just(Op::Compact),
        3 => any::<usize>().prop_map(Op::Load),
        1 => any::<usize>().prop_map(Op::LoadDeleted),
        1 => Just(Op::Scan),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::CloseReopen),
        1 => Just(Op::CrashReopen),
    ]
}

fn node(size: Size, tag: u8) -> MemoryNode {
    let (content_len, dimensions) = match size {
        Size::Small => (40 + usize::from(tag), 8),
        Size::Typical => (150 + usize::from(tag), 384),
        Size::Large => (9_000 + 20 * usize::from(tag), 384),
        Size::Overflow => (70_000 + 100 * usize::from(tag), 384),
    };
    let content: String = (0..content_len)
        .map(|index| (b'a' + ((index + usize::from(tag)) % 26) as u8) as char)
        .collect();
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        content,
        vec![f32::from(tag); dimensions],
    )
}

/// 64 cases, or `PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(64)
}

struct Harness {
    fs: MemFs,
    engine: Option<StorageEngine>,
    live: BTreeMap<RecordId, MemoryNode>,
    deleted: BTreeSet<RecordId>,
}

impl Harness {
    fn new() -> Harness {
        let fs = MemFs::new();
        let mut harness = Harness {
            fs,
            engine: None,
            live: BTreeMap::new(),
            deleted: BTreeSet::new(),
        };
        harness.reopen();
        harness
    }

    fn reopen(&mut self) {
        self.engine = None;
        let options = Options::default()
            .vfs(Arc::new(self.fs.clone()))
            .buffer_pool_pages(8);
        self.engine = Some(StorageEngine::open_with(Path::new("/db"), options).expect("open"));
    }

    fn engine(&self) -> &StorageEngine {
        self.engine.as_ref().expect("open engine")
    }

    fn pick(&self, pick: usize) -> Option<RecordId> {
        (!self.live.is_empty()).then(|| {
            *self
                .live
                .keys()
                .nth(pick % self.live.len())
                .expect("in range")
        })
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op {
            Op::Store(size, tag) => {
                let node = node(*size, *tag);
                let id = self.engine().store_memory(&node).expect("store");
                prop_assert!(
                    !self.live.contains_key(&id) && !self.deleted.contains(&id),
                    "handle {id:?} reissued"
                );
                self.live.insert(id, node);
            }
            Op::Batch(specs) => {
                let nodes: Vec<MemoryNode> =
                    specs.iter().map(|(size, tag)| node(*size, *tag)).collect();
                let ids = self.engine().store_memory_batch(&nodes).expect("batch");
                prop_assert_eq!(ids.len(), nodes.len());
                for (id, node) in ids.into_iter().zip(nodes) {
                    prop_assert!(
                        !self.live.contains_key(&id) && !self.deleted.contains(&id),
                        "handle {id:?} reissued"
                    );
                    self.live.insert(id, node);
                }
            }
            Op::Update(pick, size, tag) => {
                if let Some(id) = self.pick(*pick) {
                    let node = node(*size, *tag);
                    self.engine().update_memory(id, &node).expect("update");
                    self.live.insert(id, node);
                }
            }
            Op::Delete(pick) => {
                if let Some(id) = self.pick(*pick) {
                    self.engine().delete_memory(id).expect("delete");
                    self.live.remove(&id);
                    self.deleted.insert(id);
                }
            }
            Op::DeleteBatch(picks, all) => {
                let mut ids: Vec<RecordId> = if *all {
                    self.live.keys().copied().collect()
                } else {
                    picks.iter().filter_map(|pick| self.pick(*pick)).collect()
                };
                ids.sort_unstable();
                ids.dedup();
                self.engine()
                    .delete_memory_batch(&ids)
                    .expect("delete batch");
                for id in ids {
                    self.live.remove(&id);
                    self.deleted.insert(id);
                }
            }
            Op::Apply(parts) => self.apply_parts(parts)?,
            Op::Compact => {
                self.engine().compact().expect("compact");
                self.check_all()?;
            }
            Op::Load(pick) => {
                if let Some(id) = self.pick(*pick) {
                    prop_assert_eq!(
                        &self.engine().load_memory(id).expect("load"),
                        &self.live[&id]
                    );
                }
            }
            Op::LoadDeleted(pick) => {
                if !self.deleted.is_empty() {
                    let id = *self
                        .deleted
                        .iter()
                        .nth(pick % self.deleted.len())
                        .expect("in range");
                    prop_assert!(matches!(
                        self.engine().load_memory(id),
                        Err(Error::NotFound)
                    ));
                }
            }
            Op::Scan => self.check_scan()?,
            Op::Checkpoint => self.engine().checkpoint().expect("checkpoint"),
            Op::CloseReopen => {
                self.engine
                    .take()
                    .expect("open engine")
                    .close()
                    .expect("close");
                self.reopen();
                self.check_all()?;
            }
            Op::CrashReopen => {
                self.reopen();
                self.check_all()?;
            }
        }
        Ok(())
    }

    /// Resolves the parts to distinct live handles (a part without one is dropped), applies
    /// them in one call and records the outcome.
    fn apply_parts(&mut self, parts: &[ApplyPart]) -> Result<(), TestCaseError> {
        let mut taken = BTreeSet::new();
        let mut ops = Vec::new();
        for part in parts {
            let mut target = |pick: usize| {
                let id = self.pick(pick)?;
                taken.insert(id).then_some(id)
            };
            match part {
                ApplyPart::Store(size, tag) => ops.push(WriteOp::Store(node(*size, *tag))),
                ApplyPart::Update(pick, size, tag) => {
                    if let Some(id) = target(*pick) {
                        ops.push(WriteOp::Update(id, node(*size, *tag)));
                    }
                }
                ApplyPart::Delete(pick) => {
                    if let Some(id) = target(*pick) {
                        ops.push(WriteOp::Delete(id));
                    }
                }
            }
        }
        let results = self.engine().apply(&ops).expect("apply");
        prop_assert_eq!(results.len(), ops.len());
        for (op, result) in ops.into_iter().zip(results) {
            match (op, result) {
                (WriteOp::Store(node), Some(id)) => {
                    prop_assert!(
                        !self.live.contains_key(&id) && !self.deleted.contains(&id),
                        "handle {id:?} reissued"
                    );
                    self.live.insert(id, node);
                }
                (WriteOp::Update(id, node), None) => {
                    self.live.insert(id, node);
                }
                (WriteOp::Delete(id), None) => {
                    self.live.remove(&id);
                    self.deleted.insert(id);
                }
                (op, result) => prop_assert!(false, "{op:?} gave {result:?}"),
            }
        }
        Ok(())
    }

    fn check_scan(&self) -> Result<(), TestCaseError> {
        let mut seen = BTreeMap::new();
        for item in self.engine().scan_memories() {
            let (id, node) = item.expect("scan");
            prop_assert!(seen.insert(id, node).is_none(), "scan yields {id:?} twice");
        }
        prop_assert!(
            seen == self.live,
            "scan differs from the model: {} vs {} nodes",
            seen.len(),
            self.live.len()
        );
        Ok(())
    }

    fn check_all(&self) -> Result<(), TestCaseError> {
        self.check_scan()?;
        for (id, node) in &self.live {
            prop_assert_eq!(&self.engine().load_memory(*id).expect("load"), node);
        }
        for id in &self.deleted {
            prop_assert!(matches!(
                self.engine().load_memory(*id),
                Err(Error::NotFound)
            ));
        }
        let report = self.engine().check_integrity().expect("integrity");
        prop_assert!(report.is_clean(), "integrity: {:?}", report.problems);
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Every sequence of stores, batches, updates (growing past a page and shrinking back),
    /// deletes (one at a time, in batches, everything), atomic applies of stores, updates
    /// and deletes, compactions, loads, scans, checkpoints, clean reopens and crashes (drop
    /// without close) leaves the engine equal to the model, and its pages pass the
    /// integrity check.
    #[test]
    fn random_operation_sequences_match_the_model(ops in prop::collection::vec(op(), 1..60)) {
        let mut harness = Harness::new();
        for op in &ops {
            harness.apply(op)?;
        }
        harness.reopen();
        harness.check_all()?;
    }
}
