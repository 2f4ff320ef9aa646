//! Loads that miss the buffer pool read one record through the record map of its evicted
//! page, and still never return anything but the bytes that were verified: damage on disk
//! after the map was made is reported as corruption, and a newer version of the page (an
//! update, a delete, then a checkpoint) is never answered from the old map.

use mentedb_storage::vfs::MemFs;
use mentedb_storage::{
    AgentId, Error, MemoryId, MemoryNode, MemoryType, Options, PAGE_SIZE, RecordId, StorageEngine,
    Timestamp,
};
use std::path::Path;
use std::sync::Arc;

/// About 2 KiB encoded, so a page holds ~30 and 600 of them fill ~20 pages.
fn node(index: usize, text: &str) -> MemoryNode {
    let mut node = MemoryNode::new(
        AgentId([3; 16]),
        MemoryType::Semantic,
        format!("{index:04} {text} ") + &"m".repeat(300),
        vec![index as f32; 384],
    );
    node.id = MemoryId([index as u8; 16]);
    node.created_at = Timestamp(1_800_000_000_000_000 + index as u64);
    node.accessed_at = node.created_at;
    node
}

const NODES: usize = 600;

/// A pool of 8 pages' budget: 7 pages cached, one page's worth of record maps.
fn open(vfs: &MemFs, dir: &str) -> StorageEngine {
    let options = Options::default()
        .vfs(Arc::new(vfs.clone()))
        .buffer_pool_pages(8);
    StorageEngine::open_with(Path::new(dir), options).expect("open")
}

/// Stores the nodes, checkpoints (pages now live in `pages.db`), reopens (empty pool),
/// and loads every node once in order, so most pages were cached and evicted since.
fn stored_and_evicted(vfs: &MemFs, dir: &str) -> (StorageEngine, Vec<RecordId>) {
    let engine = open(vfs, dir);
    let nodes: Vec<_> = (0..NODES).map(|index| node(index, "first")).collect();
    let ids = engine.store_memory_batch(&nodes).expect("store");
    engine.close().expect("close");
    let engine = open(vfs, dir);
    for (index, id) in ids.iter().enumerate() {
        assert_eq!(engine.load_memory(*id).expect("load"), nodes[index]);
    }
    assert!(
        engine.record_map_stats().maps > 0,
        "evicted pages have maps"
    );
    (engine, ids)
}

#[test]
fn loads_that_miss_the_pool_read_one_record_through_its_map_and_return_the_node() {
    let vfs = MemFs::new();
    let (engine, ids) = stored_and_evicted(&vfs, "/maps");
    let misses_before = engine.buffer_stats().misses;
    for (index, id) in ids.iter().enumerate().rev() {
        assert_eq!(engine.load_memory(*id).expect("load"), node(index, "first"));
    }
    let stats = engine.record_map_stats();
    assert!(stats.reads > 0, "some loads went through a map: {stats:?}");
    assert!(stats.bytes <= stats.budget_bytes && stats.budget_bytes == PAGE_SIZE);
    assert!(engine.buffer_stats().misses > misses_before);
    assert!(engine.check_integrity().expect("check").is_clean());
}

#[test]
fn a_record_damaged_on_disk_after_its_map_was_made_is_reported_not_returned() {
    let vfs = MemFs::new();
    let (engine, ids) = stored_and_evicted(&vfs, "/damage");
    // The first record stored lies first in the first record page (page 4: page 2 is the
    // space map, 3 the handle page), right after the 48-byte header; that page was evicted
    // long ago, so its map is what a load would use.
    let victim = ids[0];
    let path = Path::new("/damage/pages.db");
    let mut bytes = vfs.file_bytes(path).expect("page file");
    let at = 4 * 65_536 + 48 + 100;
    bytes[at] ^= 0x20;
    vfs.set_file_bytes(path, bytes);
    let reads_before = engine.record_map_stats().reads;
    match engine.load_memory(victim) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, "pages.db"),
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(engine.record_map_stats().reads, reads_before);
}

#[test]
fn a_newer_version_of_the_page_is_never_answered_from_the_old_map() {
    let vfs = MemFs::new();
    let (engine, ids) = stored_and_evicted(&vfs, "/newer");
    // Same-size updates and deletes on early pages (evicted, mapped), then a checkpoint:
    // `pages.db` holds the new versions, the old maps still describe the old ones.
    let updated: Vec<_> = ids.iter().step_by(7).take(20).copied().collect();
    let deleted: Vec<_> = ids.iter().skip(3).step_by(11).take(10).copied().collect();
    for id in &updated {
        let index = ids.iter().position(|other| other == id).expect("known");
        engine
            .update_memory(*id, &node(index, "other"))
            .expect("update");
    }
    for id in &deleted {
        engine.delete_memory(*id).expect("delete");
    }
    // New pages written by commits push the changed pages out of the pool; an eviction by
    // a commit makes no map, so the old maps of the changed pages are still kept.
    let more: Vec<_> = (NODES..NODES + 300)
        .map(|index| node(index, "more"))
        .collect();
    engine.store_memory_batch(&more).expect("store");
    engine.checkpoint().expect("checkpoint");
    for _ in 0..2 {
        for (index, id) in ids.iter().enumerate() {
            let loaded = engine.load_memory(*id);
            if deleted.contains(id) {
                assert!(
                    matches!(loaded, Err(Error::NotFound)),
                    "{index}: {loaded:?}"
                );
            } else if updated.contains(id) {
                assert_eq!(loaded.expect("load"), node(index, "other"));
            } else {
                assert_eq!(loaded.expect("load"), node(index, "first"));
            }
        }
    }
    assert!(engine.record_map_stats().reads > 0);
}

#[test]
fn small_pools_keep_no_maps_and_still_load_everything() {
    let vfs = MemFs::new();
    let options = Options::default()
        .vfs(Arc::new(vfs.clone()))
        .buffer_pool_pages(4);
    let engine = StorageEngine::open_with(Path::new("/small"), options).expect("open");
    let nodes: Vec<_> = (0..200).map(|index| node(index, "small")).collect();
    let ids = engine.store_memory_batch(&nodes).expect("store");
    engine.checkpoint().expect("checkpoint");
    for _ in 0..2 {
        for (index, id) in ids.iter().enumerate() {
            assert_eq!(engine.load_memory(*id).expect("load"), nodes[index]);
        }
    }
    let stats = engine.record_map_stats();
    assert_eq!((stats.budget_bytes, stats.maps, stats.reads), (0, 0, 0));
}

#[test]
fn another_instance_s_deletes_and_checkpoint_are_not_hidden_by_the_old_maps() {
    let vfs = MemFs::new();
    let (first, ids) = stored_and_evicted(&vfs, "/shared");
    // A second instance (another process) deletes records of pages `first` has evicted
    // and mapped, and checkpoints: `pages.db` now holds pages whose freed slots still hold
    // the old bytes, and `first`'s maps still describe the old versions.
    let second = open(&vfs, "/shared");
    // Pages of the first half change; those of the second half are still read through maps.
    let deleted: Vec<_> = ids[..NODES / 2].iter().step_by(5).copied().collect();
    for id in &deleted {
        second.delete_memory(*id).expect("delete");
    }
    second.checkpoint().expect("checkpoint");
    for (index, id) in ids.iter().enumerate() {
        let loaded = first.load_memory(*id);
        if deleted.contains(id) {
            assert!(
                matches!(loaded, Err(Error::NotFound)),
                "{index}: {loaded:?}"
            );
        } else {
            assert_eq!(loaded.expect("load"), node(index, "first"));
        }
    }
    assert!(first.record_map_stats().reads > 0);
}
