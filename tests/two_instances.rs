//! Two engine instances on one directory (as two processes would be): each sees the other's
//! acknowledged writes, deletes and checkpoints, and neither serves a stale cached page.

use mentedb_storage::vfs::MemFs;
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, RecordId, StorageEngine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn node(label: String) -> MemoryNode {
    MemoryNode::new(AgentId::new(), MemoryType::Episodic, label, vec![0.25; 64])
}

fn open(vfs: &MemFs) -> StorageEngine {
    StorageEngine::open_with(
        Path::new("/shared"),
        Options::default()
            .vfs(Arc::new(vfs.clone()))
            .buffer_pool_pages(16),
    )
    .expect("open")
}

#[test]
fn each_instance_sees_the_others_writes_deletes_and_checkpoints() {
    let vfs = MemFs::new();
    let first = open(&vfs);
    let second = open(&vfs);
    let stored = node("from first".into());
    let id = first.store_memory(&stored).expect("store");
    assert_eq!(second.load_memory(id).expect("second sees it"), stored);
    let updated = node("updated by second".into());
    second.update_memory(id, &updated).expect("update");
    assert_eq!(
        first.load_memory(id).expect("first sees the update"),
        updated
    );
    first.checkpoint().expect("checkpoint by first");
    assert_eq!(
        second
            .load_memory(id)
            .expect("after the other's checkpoint"),
        updated
    );
    let more = node("second after checkpoint".into());
    let more_id = second
        .store_memory(&more)
        .expect("store after the other's checkpoint");
    assert_eq!(first.load_memory(more_id).expect("load"), more);
    first.delete_memory(id).expect("delete");
    assert!(matches!(second.load_memory(id), Err(Error::NotFound)));
}

#[test]
fn alternating_writers_agree_and_a_reopen_sees_everything() {
    let vfs = MemFs::new();
    let engines = [open(&vfs), open(&vfs)];
    let mut expected: BTreeMap<RecordId, MemoryNode> = BTreeMap::new();
    for step in 0..1_000 {
        let engine = &engines[step % 2];
        let node = node(format!("step {step} ") + &"a".repeat(step % 700));
        match step % 10 {
            7 => {
                let victim = *expected.keys().nth(step % expected.len()).expect("a node");
                engine.delete_memory(victim).expect("delete");
                expected.remove(&victim);
            }
            8 => {
                let target = *expected.keys().nth(step % expected.len()).expect("a node");
                engine.update_memory(target, &node).expect("update");
                expected.insert(target, node);
            }
            9 if step % 100 == 9 => engines[(step + 1) % 2].checkpoint().expect("checkpoint"),
            _ => {
                expected.insert(engine.store_memory(&node).expect("store"), node);
            }
        }
    }
    for engine in &engines {
        let scanned: BTreeMap<RecordId, MemoryNode> = engine
            .scan_memories()
            .collect::<Result<_, _>>()
            .expect("scan");
        assert_eq!(scanned, expected);
        assert!(engine.check_integrity().expect("check").is_clean());
    }
    drop(engines);
    let reopened = open(&vfs);
    let scanned: BTreeMap<RecordId, MemoryNode> = reopened
        .scan_memories()
        .collect::<Result<_, _>>()
        .expect("scan");
    assert_eq!(scanned, expected);
}

#[test]
fn concurrent_writers_on_two_instances_lose_nothing() {
    let vfs = MemFs::new();
    let engines = [open(&vfs), open(&vfs)];
    let stored: Vec<(RecordId, MemoryNode)> = std::thread::scope(|scope| {
        let workers: Vec<_> = engines
            .iter()
            .enumerate()
            .map(|(index, engine)| {
                scope.spawn(move || {
                    (0..200)
                        .map(|step| {
                            let node = node(format!("writer {index} step {step}"));
                            (engine.store_memory(&node).expect("store"), node)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("worker"))
            .collect()
    });
    assert_eq!(stored.len(), 400);
    for engine in &engines {
        for (id, node) in &stored {
            assert_eq!(&engine.load_memory(*id).expect("load"), node);
        }
    }
}

/// A lock-free scan in one instance while the other, between the items it yields, moves
/// records to other pages (forwards), grows them past a page (overflow chains), shrinks
/// them back, deletes some and checkpoints (which rewrites `pages.db` under the reader and
/// resets the WAL). Every item must be a whole version the record had, every record left
/// alone must be yielded, and nothing may be reported as corruption: before reads of a
/// record spanning pages were checked against the shared counter, the scan met a home page
/// of one version forwarding to a slot the newer version had freed.
#[test]
fn scan_meets_records_moved_grown_deleted_and_checkpointed_by_the_other_instance() {
    let vfs = MemFs::new();
    let writer = open(&vfs);
    let scanner = open(&vfs);
    let mut history: BTreeMap<RecordId, Vec<MemoryNode>> = BTreeMap::new();
    let mut ids = Vec::new();
    for index in 0..240 {
        let node = node(format!("record {index} ") + &"s".repeat(100 + index % 300));
        let id = writer.store_memory(&node).expect("store");
        history.insert(id, vec![node]);
        ids.push(id);
    }
    writer.checkpoint().expect("checkpoint");
    // Every third record is left alone; the others change while the scan runs.
    let changing: Vec<RecordId> = ids
        .iter()
        .enumerate()
        .filter(|(index, _)| index % 3 != 0)
        .map(|(_, id)| *id)
        .collect();
    let mut deleted = Vec::new();
    let mut yielded = BTreeMap::new();
    for (step, item) in scanner.scan_memories().enumerate() {
        let (id, seen) = item.expect("a scan item, never a false corruption report");
        assert!(
            history
                .get(&id)
                .is_some_and(|versions| versions.contains(&seen)),
            "step {step}: {id:?} yielded a version it never had"
        );
        assert!(yielded.insert(id, seen).is_none(), "{id:?} yielded twice");
        for change in 0..3 {
            let round = step * 3 + change;
            let target = changing[(round * 7) % changing.len()];
            if deleted.contains(&target) {
                continue;
            }
            let size = match round % 4 {
                0 => 6_000,
                1 => 40_000,
                2 => 50,
                _ => 20_000,
            };
            let node = node(format!("record {target:?} round {round} ") + &"g".repeat(size));
            if round % 29 == 28 {
                writer.delete_memory(target).expect("delete");
                deleted.push(target);
            } else {
                writer.update_memory(target, &node).expect("update");
                history.get_mut(&target).expect("known").push(node);
            }
        }
        if step % 5 == 4 {
            writer.checkpoint().expect("checkpoint");
        }
    }
    for (index, id) in ids.iter().enumerate() {
        if index % 3 == 0 {
            assert_eq!(
                yielded.get(id),
                history[id].first(),
                "a record left alone must be yielded as stored"
            );
        }
    }
}

/// Loads and scans in one instance, on threads running at the same time as the other
/// instance moves records between pages, grows them into overflow chains and back, and
/// checkpoints: the page reads of one record can straddle a change, and the reader must
/// notice and read again rather than return a mixed record or report corruption.
#[test]
fn loads_racing_the_other_instance_moving_records_are_whole_versions() {
    let vfs = MemFs::new();
    let writer = open(&vfs);
    let reader = open(&vfs);
    let ids: Vec<RecordId> = (0..24)
        .map(|index| {
            writer
                .store_memory(&node(format!("record {index} version 0")))
                .expect("store")
        })
        .collect();
    let rounds = 600;
    let sizes = [9_000, 30_000, 10, 17_000];
    std::thread::scope(|scope| {
        scope.spawn(|| {
            for round in 1..=rounds {
                let id = ids[round % ids.len()];
                let size = sizes[round % 4];
                let text = format!("record {} version {round} ", round % ids.len());
                writer
                    .update_memory(id, &node(text + &"v".repeat(size)))
                    .expect("update");
                if round % 25 == 0 {
                    writer.checkpoint().expect("checkpoint");
                }
            }
        });
        for pass in 0..rounds {
            let id = ids[pass % ids.len()];
            let loaded = reader
                .load_memory(id)
                .expect("a load, never a false corruption report");
            let label = format!("record {} version ", pass % ids.len());
            assert!(loaded.content.starts_with(&label), "a mixed record");
            let tail = &loaded.content[label.len()..];
            let (version, filler) = tail.split_once(' ').unwrap_or((tail, ""));
            let version: usize = version.parse().expect("a version number");
            let expected = if version == 0 { 0 } else { sizes[version % 4] };
            assert!(
                filler.len() == expected && filler.bytes().all(|byte| byte == b'v'),
                "a mixed record body"
            );
            if pass % 50 == 0 {
                for item in reader.scan_memories() {
                    item.expect("a scan item, never a false corruption report");
                }
            }
        }
    });
}
