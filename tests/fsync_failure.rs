//! A failed `fdatasync` poisons the engine instance (Linux may have dropped the unsynced
//! pages, so a retry that succeeds proves nothing): every later write is refused with
//! `Error::Poisoned`, and a reopen recovers and accepts writes again.

mod common;

use common::FaultFs;
use mentedb_storage::vfs::MemFs;
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, StorageEngine};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

fn node(label: &str) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Working,
        label.to_string(),
        vec![0.5; 16],
    )
}

#[test]
fn a_failed_wal_sync_poisons_the_instance_until_reopen() {
    let memfs = MemFs::new();
    let faulty = FaultFs::new(memfs.clone());
    let dir = Path::new("/fsync");
    let engine = StorageEngine::open_with(dir, Options::default().vfs(Arc::new(faulty.clone())))
        .expect("open");
    let kept = node("kept");
    let kept_id = engine.store_memory(&kept).expect("store");
    faulty.faults.fail_wal_sync.store(true, Ordering::SeqCst);
    assert!(
        engine.store_memory(&node("unlucky")).is_err(),
        "the failed sync is reported"
    );
    for attempt in 0..3 {
        match engine.store_memory(&node("later")) {
            Err(Error::Poisoned(_)) => {}
            other => panic!("write {attempt} after a failed sync gave {other:?}"),
        }
    }
    assert!(matches!(engine.checkpoint(), Err(Error::Poisoned(_))));
    assert!(matches!(
        engine.delete_memory(kept_id),
        Err(Error::Poisoned(_))
    ));
    drop(engine);
    let engine =
        StorageEngine::open_with(dir, Options::default().vfs(Arc::new(memfs))).expect("reopen");
    assert_eq!(
        engine.load_memory(kept_id).expect("acknowledged write"),
        kept
    );
    let again = node("after reopen");
    let id = engine
        .store_memory(&again)
        .expect("writes accepted after reopen");
    assert_eq!(engine.load_memory(id).expect("load"), again);
}

#[test]
fn a_failed_page_file_sync_during_checkpoint_poisons_the_instance() {
    let memfs = MemFs::new();
    let faulty = FaultFs::new(memfs.clone());
    let dir = Path::new("/fsync-pages");
    let engine = StorageEngine::open_with(dir, Options::default().vfs(Arc::new(faulty.clone())))
        .expect("open");
    let kept = node("kept");
    let kept_id = engine.store_memory(&kept).expect("store");
    faulty.faults.fail_pages_sync.store(true, Ordering::SeqCst);
    assert!(engine.checkpoint().is_err());
    assert!(matches!(
        engine.store_memory(&node("later")),
        Err(Error::Poisoned(_))
    ));
    drop(engine);
    let engine =
        StorageEngine::open_with(dir, Options::default().vfs(Arc::new(memfs))).expect("reopen");
    assert_eq!(
        engine.load_memory(kept_id).expect("acknowledged write"),
        kept
    );
    engine.checkpoint().expect("checkpoint after reopen");
}
