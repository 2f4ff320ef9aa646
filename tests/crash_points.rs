//! A process that dies at any point of a checkpoint, a batch, or a record move leaves a
//! database that reopens with every acknowledged write, and the interrupted operation
//! either whole or absent.

mod common;

use common::FaultFs;
use mentedb_storage::vfs::MemFs;
use mentedb_storage::{AgentId, MemoryNode, MemoryType, Options, RecordId, StorageEngine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

const DIR: &str = "/crash";

fn node(index: usize, content_len: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("{index}:") + &"c".repeat(content_len),
        vec![index as f32; 128],
    )
}

fn populate(vfs: &MemFs) -> BTreeMap<RecordId, MemoryNode> {
    let engine = StorageEngine::open_with(
        Path::new(DIR),
        Options::default().vfs(Arc::new(vfs.clone())),
    )
    .expect("open");
    let mut expected = BTreeMap::new();
    for index in 0..60 {
        let node = node(index, 1_000 + index * 50);
        expected.insert(engine.store_memory(&node).expect("store"), node);
    }
    let big = node(100, 150_000);
    expected.insert(engine.store_memory(&big).expect("store"), big);
    drop(engine);
    expected
}

fn reopen_and_check(
    vfs: &MemFs,
    expected: &BTreeMap<RecordId, MemoryNode>,
    maybe: &[(RecordId, MemoryNode)],
    extra_counts: &[usize],
) {
    for _ in 0..2 {
        let engine = StorageEngine::open_with(
            Path::new(DIR),
            Options::default().vfs(Arc::new(vfs.clone())),
        )
        .expect("reopen");
        let scanned: BTreeMap<RecordId, MemoryNode> = engine
            .scan_memories()
            .collect::<Result<_, _>>()
            .expect("scan");
        for (id, node) in expected {
            let found = scanned.get(id).expect("acknowledged node present");
            let alternative = maybe
                .iter()
                .find(|(other, _)| other == id)
                .map(|(_, node)| node);
            assert!(
                found == node || Some(found) == alternative,
                "{id:?} changed"
            );
        }
        let extra = scanned.len() - expected.len();
        assert!(
            extra_counts.contains(&extra),
            "{extra} new nodes, allowed {extra_counts:?}"
        );
        let report = engine.check_integrity().expect("check");
        assert!(report.is_clean(), "{:?}", report.problems);
        engine.checkpoint().expect("checkpoint after recovery");
    }
}

/// Runs `operation` on a fresh copy of the populated database, with the process dying at
/// its `crash_after`-th mutating call, for every such call until it completes undisturbed.
fn at_every_crash_point(
    extra_counts: &[usize],
    operation: impl Fn(&StorageEngine, &BTreeMap<RecordId, MemoryNode>) -> Vec<(RecordId, MemoryNode)>,
) {
    let mut crash_after = 0;
    loop {
        let memfs = MemFs::new();
        let expected = populate(&memfs);
        let faulty = FaultFs::new(memfs.clone());
        let engine = StorageEngine::open_with(
            Path::new(DIR),
            Options::default().vfs(Arc::new(faulty.clone())),
        )
        .expect("open");
        faulty.faults.mutations.store(0, Ordering::SeqCst);
        faulty
            .faults
            .crash_after
            .store(crash_after, Ordering::SeqCst);
        let maybe = operation(&engine, &expected);
        let completed = faulty.faults.mutations.load(Ordering::SeqCst) <= crash_after;
        drop(engine);
        reopen_and_check(&memfs, &expected, &maybe, extra_counts);
        if completed {
            assert!(
                crash_after > 2,
                "the operation made no writes: the test tests nothing"
            );
            return;
        }
        crash_after += 1;
    }
}

#[test]
fn a_crash_at_any_point_of_a_checkpoint_recovers() {
    at_every_crash_point(&[0], |engine, _| {
        let _ = engine.checkpoint();
        Vec::new()
    });
}

#[test]
fn a_crash_at_any_point_of_a_batch_leaves_it_whole_or_absent() {
    at_every_crash_point(&[0, 30], |engine, _| {
        let batch: Vec<MemoryNode> = (200..230).map(|index| node(index, 3_000)).collect();
        let _ = engine.store_memory_batch(&batch);
        Vec::new()
    });
}

#[test]
fn a_crash_at_any_point_of_a_record_move_keeps_old_or_new() {
    at_every_crash_point(&[0], |engine, expected| {
        let (id, _) = expected.iter().next().expect("a node");
        let grown = node(999, 14_000);
        let _ = engine.update_memory(*id, &grown);
        vec![(*id, grown)]
    });
}
