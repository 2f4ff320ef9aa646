//! The buffer pool: bounded, CLOCK-evicting, and a full scan does not flush the working set.

use mentedb_storage::vfs::MemFs;
use mentedb_storage::{AgentId, MemoryNode, MemoryType, Options, RecordId, StorageEngine};
use std::path::Path;
use std::sync::Arc;

#[test]
fn pool_stays_within_capacity_and_a_scan_keeps_the_hot_set_cached() {
    let vfs = Arc::new(MemFs::new());
    let dir = Path::new("/pool");
    let options = || Options::default().vfs(vfs.clone()).buffer_pool_pages(8);
    let engine = StorageEngine::open_with(dir, options()).expect("open");
    let nodes: Vec<MemoryNode> = (0..3_000)
        .map(|index| {
            MemoryNode::new(
                AgentId::new(),
                MemoryType::Semantic,
                format!("{index} ") + &"p".repeat(1_500),
                vec![1.0; 64],
            )
        })
        .collect();
    let ids: Vec<RecordId> = nodes
        .chunks(500)
        .flat_map(|chunk| engine.store_memory_batch(chunk).expect("batch"))
        .collect();
    engine.close().expect("close");
    let engine = StorageEngine::open_with(dir, options()).expect("reopen");
    assert!(
        engine.page_count() > 40,
        "the database must be larger than the pool"
    );
    for id in &ids {
        engine.load_memory(*id).expect("load");
    }
    let stats = engine.buffer_stats();
    assert!(stats.resident <= 8 && stats.evictions > 0, "{stats:?}");
    // The first records stored share the first record page (and every handle is in one
    // handle page): two hot pages.
    let hot: Vec<RecordId> = ids.iter().copied().take(10).collect();
    for id in &hot {
        engine.load_memory(*id).expect("warm");
    }
    let before_scan = engine.buffer_stats();
    assert_eq!(engine.scan_memories().count(), 3_000);
    let after_scan = engine.buffer_stats();
    for id in &hot {
        engine.load_memory(*id).expect("hot load");
    }
    let after_hot = engine.buffer_stats();
    assert_eq!(
        after_hot.misses, after_scan.misses,
        "the scan evicted the hot page"
    );
    // A load is a hit on the handle page and one on the record page.
    assert_eq!(after_hot.hits - after_scan.hits, 2 * hot.len() as u64);
    assert!(after_scan.resident <= 8 && before_scan.resident <= 8);
}
