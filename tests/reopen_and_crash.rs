//! Store/load/update/delete round trips across close + reopen on real files, and a
//! "process crash" (dropping the engine without `close()`) keeping every acknowledged write.

use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, RecordId, StorageEngine};
use std::collections::BTreeMap;
use std::path::PathBuf;

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("mentedb-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn node(index: usize, content_len: usize) -> MemoryNode {
    let content = format!("{index}:") + &"r".repeat(content_len);
    let mut node = MemoryNode::new(
        AgentId::new(),
        MemoryType::Episodic,
        content,
        vec![index as f32 / 7.0; 384],
    );
    node.tags = vec![format!("tag{}", index % 3)];
    node.attributes.insert("index".into(), index.to_string());
    node
}

/// Applies a fixed mix of operations; returns the expected state and the deleted handles.
fn workload(engine: &StorageEngine) -> (BTreeMap<RecordId, MemoryNode>, Vec<RecordId>) {
    let mut expected = BTreeMap::new();
    for index in 0..200 {
        let node = node(index, 300);
        expected.insert(engine.store_memory(&node).expect("store"), node);
    }
    let batch: Vec<MemoryNode> = (200..260).map(|index| node(index, 900)).collect();
    for (id, node) in engine
        .store_memory_batch(&batch)
        .expect("batch")
        .into_iter()
        .zip(batch)
    {
        expected.insert(id, node);
    }
    let ids: Vec<RecordId> = expected.keys().copied().collect();
    for (step, id) in ids.iter().enumerate().step_by(9) {
        let replacement = node(10_000 + step, if step % 2 == 0 { 20 } else { 6_000 });
        engine.update_memory(*id, &replacement).expect("update");
        expected.insert(*id, replacement);
    }
    let mut deleted = Vec::new();
    for id in ids.iter().skip(4).step_by(11) {
        engine.delete_memory(*id).expect("delete");
        expected.remove(id);
        deleted.push(*id);
    }
    (expected, deleted)
}

fn assert_state(
    engine: &StorageEngine,
    expected: &BTreeMap<RecordId, MemoryNode>,
    deleted: &[RecordId],
) {
    for (id, node) in expected {
        assert_eq!(&engine.load_memory(*id).expect("load"), node, "{id:?}");
    }
    for id in deleted {
        assert!(
            matches!(engine.load_memory(*id), Err(Error::NotFound)),
            "{id:?} came back"
        );
    }
    let scanned: BTreeMap<RecordId, MemoryNode> = engine
        .scan_memories()
        .collect::<Result<_, _>>()
        .expect("scan");
    assert_eq!(&scanned, expected);
    let report = engine.check_integrity().expect("integrity");
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn round_trips_survive_close_and_reopen() {
    let dir = TempDir::new("round-trip");
    let engine = StorageEngine::open(&dir.0).expect("open");
    let (expected, deleted) = workload(&engine);
    assert_state(&engine, &expected, &deleted);
    engine.close().expect("close");
    let engine = StorageEngine::open(&dir.0).expect("reopen");
    assert_state(&engine, &expected, &deleted);
    engine.close().expect("close");
}

#[test]
fn dropping_without_close_keeps_every_acknowledged_write() {
    let dir = TempDir::new("crash");
    let engine = StorageEngine::open(&dir.0).expect("open");
    let (expected, deleted) = workload(&engine);
    drop(engine);
    let engine = StorageEngine::open(&dir.0).expect("reopen after crash");
    assert_state(&engine, &expected, &deleted);
    drop(engine);
    let engine = StorageEngine::open(&dir.0).expect("recovery is idempotent");
    assert_state(&engine, &expected, &deleted);
    let extra = node(99_999, 100);
    let id = engine
        .store_memory(&extra)
        .expect("accepts writes after recovery");
    assert_eq!(engine.load_memory(id).expect("load"), extra);
}

#[test]
fn record_handles_round_trip_through_u128_bytes_and_text() {
    let dir = TempDir::new("handles");
    let engine = StorageEngine::open(&dir.0).expect("open");
    let stored = node(1, 50);
    let id = engine.store_memory(&stored).expect("store");
    assert_eq!(
        engine
            .load_memory(RecordId::from_u128(id.to_u128()))
            .expect("load"),
        stored
    );
    assert_eq!(
        engine
            .load_memory(RecordId::from_bytes(id.to_bytes()))
            .expect("load"),
        stored
    );
    assert_eq!(id.page_id(), RecordId::from_u128(u128::from(id)).page_id());
    let text = id.to_string();
    assert_eq!(text.parse::<RecordId>().expect("parses"), id);
    assert_eq!(
        engine
            .load_memory(text.parse().expect("parses"))
            .expect("load"),
        stored
    );
}
