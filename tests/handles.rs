//! Handles: stable while a node grows past its page and back, and a stale handle (deleted,
//! or its slot reused) gives `NotFound`, never another node.

use mentedb_storage::vfs::MemFs;
use mentedb_storage::{
    AgentId, Error, MemoryNode, MemoryType, Options, PageId, RecordId, Serial, StorageEngine,
};
use std::path::Path;
use std::sync::Arc;

fn node(label: &str, content_len: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Procedural,
        format!("{label}:") + &"h".repeat(content_len),
        vec![1.5; 384],
    )
}

fn open(vfs: &Arc<MemFs>, dir: &str) -> StorageEngine {
    StorageEngine::open_with(Path::new(dir), Options::default().vfs(vfs.clone())).expect("open")
}

#[test]
fn handle_stays_valid_as_a_node_grows_past_its_page_and_back() {
    let vfs = Arc::new(MemFs::new());
    let engine = open(&vfs, "/grow");
    let neighbours: Vec<(RecordId, MemoryNode)> = (0..25)
        .map(|index| {
            let node = node(&format!("neighbour {index}"), 1_500);
            (engine.store_memory(&node).expect("store"), node)
        })
        .collect();
    let id = neighbours[10].0;
    let mut current = neighbours[10].1.clone();
    for content_len in [12_000, 40_000, 200_000, 1_000, 15_000, 10] {
        current = node("grown", content_len);
        engine.update_memory(id, &current).expect("update");
        assert_eq!(
            engine.load_memory(id).expect("load"),
            current,
            "after growing to {content_len}"
        );
    }
    for (neighbour, expected) in neighbours.iter().filter(|(other, _)| *other != id) {
        assert_eq!(
            &engine.load_memory(*neighbour).expect("neighbour"),
            expected
        );
    }
    drop(engine);
    let engine = open(&vfs, "/grow");
    assert_eq!(engine.load_memory(id).expect("load after reopen"), current);
    let scanned: Vec<RecordId> = engine
        .scan_memories()
        .map(|item| item.expect("scan").0)
        .collect();
    assert_eq!(
        scanned.iter().filter(|other| **other == id).count(),
        1,
        "the moved node is scanned once"
    );
    assert_eq!(scanned.len(), 25);
    assert!(engine.check_integrity().expect("check").is_clean());
}

#[test]
fn a_record_moved_again_and_again_keeps_its_handle_and_a_clean_database() {
    let vfs = Arc::new(MemFs::new());
    let engine = open(&vfs, "/twice");
    let ids: Vec<RecordId> = (0..30)
        .map(|index| {
            engine
                .store_memory(&node(&index.to_string(), 1_800))
                .expect("store")
        })
        .collect();
    let target = ids[3];
    for round in 0..6 {
        let grown = node(&format!("round {round}"), 9_000 + round * 1_000);
        engine.update_memory(target, &grown).expect("update");
        assert_eq!(engine.load_memory(target).expect("load"), grown);
        let report = engine.check_integrity().expect("check");
        assert!(report.is_clean(), "{:?}", report.problems);
        assert_eq!(report.live_records, 30);
    }
}

#[test]
fn deleted_and_reused_handles_are_not_found() {
    let vfs = Arc::new(MemFs::new());
    let engine = open(&vfs, "/stale");
    let first = node("first", 100);
    let old = engine.store_memory(&first).expect("store");
    engine.delete_memory(old).expect("delete");
    assert!(matches!(engine.load_memory(old), Err(Error::NotFound)));
    let second = node("second", 100);
    let new = engine.store_memory(&second).expect("store reuses the slot");
    assert_eq!(
        (new.page_id(), new.slot()),
        (old.page_id(), old.slot()),
        "the slot is reused"
    );
    assert_ne!(new, old);
    assert!(
        matches!(engine.load_memory(old), Err(Error::NotFound)),
        "stale handle after reuse"
    );
    assert!(matches!(
        engine.update_memory(old, &first),
        Err(Error::NotFound)
    ));
    assert!(matches!(engine.delete_memory(old), Err(Error::NotFound)));
    assert_eq!(engine.load_memory(new).expect("load"), second);
    drop(engine);
    let engine = open(&vfs, "/stale");
    assert!(matches!(engine.load_memory(old), Err(Error::NotFound)));
    assert_eq!(engine.load_memory(new).expect("load"), second);
}

#[test]
fn garbage_handles_never_return_a_node() {
    let vfs = Arc::new(MemFs::new());
    let engine = open(&vfs, "/garbage");
    let kept = engine.store_memory(&node("kept", 100)).expect("store");
    let raw = kept.to_u128();
    let mut probes = vec![
        0u128,
        1,
        u128::MAX,
        raw ^ 1,
        raw + (1 << 48),
        raw ^ (1 << 100),
        raw & !(u128::from(u32::MAX) << 96),
    ];
    probes.extend((0..6u128).flat_map(move |page| {
        (0..3u128).map(move |slot| (raw >> 96 << 96) | (page << 64) | (slot << 48) | 1)
    }));
    probes.push(
        RecordId::new(kept.database(), PageId(1_000_000), 0, Serial(1))
            .expect("id")
            .to_u128(),
    );
    for raw in probes {
        let id = RecordId::from_u128(raw);
        if id == kept {
            continue;
        }
        match engine.load_memory(id) {
            Err(Error::NotFound) => {}
            other => panic!("garbage handle {id:?} gave {other:?}"),
        }
    }
}

/// Found from outside: commits acknowledged in `SyncMode::Normal` and lost in a power cut
/// had handed out handles; the database handed the same slots and serials to the next
/// stores, and the lost records' handles (kept by the application) named the new ones.
/// Serials come from a range reserved durably before use, and every open starts past it.
/// (The simulator writes in `Full` mode only, so it cannot see this: this test is the
/// check.)
#[test]
fn handles_of_commits_lost_in_normal_mode_never_name_a_later_record() {
    use mentedb_sim::simfs::{FaultConfig, SimFs};
    let losing_every_unsynced_write = FaultConfig {
        survive_ppm: 0,
        ..FaultConfig::none()
    };
    let fs = SimFs::new(3, losing_every_unsynced_write);
    let open = |fs: &SimFs| {
        fs.restart_process(0);
        StorageEngine::open_with(
            Path::new("/db"),
            Options::default()
                .vfs(fs.process(0))
                .sync_mode(mentedb_storage::SyncMode::Normal)
                .checkpoint_wal_bytes(0),
        )
        .expect("open")
    };
    let engine = open(&fs);
    let kept = engine.store_memory(&node("kept", 100)).expect("store");
    engine.checkpoint().expect("checkpoint");
    let lost: Vec<RecordId> = (0..20)
        .map(|index| {
            engine
                .store_memory(&node(&format!("lost {index}"), 100))
                .expect("store")
        })
        .collect();
    drop(engine);
    fs.power_loss();
    let engine = open(&fs);
    assert!(engine.load_memory(kept).is_ok());
    let gone = lost
        .iter()
        .filter(|id| matches!(engine.load_memory(**id), Err(Error::NotFound)))
        .count();
    assert!(
        gone > 0,
        "the power cut lost nothing: the test proves nothing"
    );
    let new: Vec<RecordId> = (0..40)
        .map(|index| {
            engine
                .store_memory(&node(&format!("new {index}"), 100))
                .expect("store")
        })
        .collect();
    for id in &lost {
        assert!(!new.contains(id), "{id} handed out again");
        if let Ok(found) = engine.load_memory(*id) {
            assert!(
                found.content.starts_with("lost "),
                "{id} of a lost commit names {}",
                &found.content[..12]
            );
        }
    }
}
