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
