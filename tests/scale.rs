//! Scale: 100,000 small nodes share slotted pages; a 5 MiB node spills into an overflow
//! chain whose pages are reused after it shrinks.

use mentedb_storage::vfs::MemFs;
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, StorageEngine};
use std::path::Path;
use std::sync::Arc;

fn small(index: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Working,
        format!("small node {index}"),
        vec![index as f32; 4],
    )
}

#[test]
fn a_hundred_thousand_small_nodes_survive_reopen() {
    let vfs = Arc::new(MemFs::new());
    let dir = Path::new("/scale");
    let options = || Options::default().vfs(vfs.clone());
    let engine = StorageEngine::open_with(dir, options()).expect("open");
    let mut stored = Vec::with_capacity(100_000);
    let nodes: Vec<MemoryNode> = (0..98_000).map(small).collect();
    for chunk in nodes.chunks(1_000) {
        let ids = engine.store_memory_batch(chunk).expect("batch");
        stored.extend(ids.into_iter().zip(chunk.iter().cloned()));
    }
    for index in 98_000..100_000 {
        let node = small(index);
        stored.push((engine.store_memory(&node).expect("store"), node));
    }
    let pages = engine.page_count();
    assert!(
        pages < 1_000,
        "{pages} pages for 100,000 small nodes: pages are not shared"
    );
    drop(engine);
    let engine = StorageEngine::open_with(dir, options()).expect("reopen");
    for (id, node) in &stored {
        assert_eq!(&engine.load_memory(*id).expect("load"), node);
    }
    assert_eq!(engine.scan_memories().count(), 100_000);
}

#[test]
fn a_five_mebibyte_node_round_trips_and_its_pages_are_reused() {
    let vfs = Arc::new(MemFs::new());
    let dir = Path::new("/large");
    let options = || Options::default().vfs(vfs.clone());
    let engine = StorageEngine::open_with(dir, options()).expect("open");
    let content: String = (0..5 * 1024 * 1024)
        .map(|index| (b'a' + (index % 23) as u8) as char)
        .collect();
    let big = MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        content,
        vec![0.5; 384],
    );
    let id = engine.store_memory(&big).expect("store 5 MiB");
    assert_eq!(engine.load_memory(id).expect("load"), big);
    drop(engine);
    let engine = StorageEngine::open_with(dir, options()).expect("reopen after crash");
    assert_eq!(engine.load_memory(id).expect("load"), big);
    engine.close().expect("close");
    let engine = StorageEngine::open_with(dir, options()).expect("reopen after close");
    assert_eq!(engine.load_memory(id).expect("load"), big);
    let pages_with_big = engine.page_count();
    let shrunk = small(1);
    engine.update_memory(id, &shrunk).expect("shrink");
    assert_eq!(engine.load_memory(id).expect("load"), shrunk);
    let second = engine.store_memory(&big).expect("store again");
    assert!(
        engine.page_count() <= pages_with_big + 1,
        "freed overflow pages were not reused"
    );
    engine.delete_memory(second).expect("delete");
    assert!(matches!(engine.load_memory(second), Err(Error::NotFound)));
    assert!(engine.check_integrity().expect("check").is_clean());
}
