//! The full integrity check: clean after a mixed workload (overflow chains, moved records,
//! freed pages, checkpoints), and it reports a damaged page with its file and offset.

use mentedb_storage::vfs::MemFs;
use mentedb_storage::{AgentId, MemoryNode, MemoryType, Options, PAGE_SIZE, StorageEngine};
use std::path::Path;
use std::sync::Arc;

fn node(index: usize, content_len: usize) -> MemoryNode {
    let content = format!("{index}:") + &"m".repeat(content_len);
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        content,
        vec![index as f32; 96],
    )
}

fn mixed_workload(engine: &StorageEngine) {
    let mut ids = Vec::new();
    for index in 0..300 {
        ids.push(
            engine
                .store_memory(&node(index, 200 + index * 7))
                .expect("store"),
        );
    }
    let big = engine.store_memory(&node(1000, 300_000)).expect("big");
    for (index, id) in ids.iter().enumerate().step_by(5) {
        engine
            .update_memory(*id, &node(index, 12_000))
            .expect("grow and move");
    }
    for id in ids.iter().skip(1).step_by(7) {
        engine.delete_memory(*id).expect("delete");
    }
    engine
        .update_memory(big, &node(1001, 10))
        .expect("shrink frees the chain");
    engine.checkpoint().expect("checkpoint");
    engine
        .store_memory(&node(1002, 200_000))
        .expect("reuses freed pages");
}

#[test]
fn integrity_check_is_clean_after_a_mixed_workload_and_reopen() {
    let vfs = Arc::new(MemFs::new());
    let dir = Path::new("/integrity");
    let engine = StorageEngine::open_with(dir, Options::default().vfs(vfs.clone())).expect("open");
    mixed_workload(&engine);
    let report = engine.check_integrity().expect("check");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.overflow_pages > 0 && report.handle_pages > 0 && report.data_pages > 0);
    let scanned = engine.scan_memories().count() as u64;
    assert_eq!(report.live_records, scanned);
    drop(engine);
    let engine = StorageEngine::open_with(dir, Options::default().vfs(vfs)).expect("reopen");
    let again = engine.check_integrity().expect("check");
    assert!(again.is_clean(), "{:?}", again.problems);
    assert_eq!(again, report);
}

#[test]
fn integrity_check_reports_a_damaged_page_with_file_and_offset() {
    let vfs = MemFs::new();
    let dir = Path::new("/damaged");
    let engine =
        StorageEngine::open_with(dir, Options::default().vfs(Arc::new(vfs.clone()))).expect("open");
    mixed_workload(&engine);
    engine.close().expect("close");
    let path = dir.join("pages.db");
    let mut bytes = vfs.file_bytes(&path).expect("page file");
    let damaged_page = 3u64;
    bytes[damaged_page as usize * PAGE_SIZE + 5000] ^= 0x04;
    vfs.set_file_bytes(&path, bytes);
    let engine =
        StorageEngine::open_with(dir, Options::default().vfs(Arc::new(vfs))).expect("reopen");
    let report = engine.check_integrity().expect("check");
    let problem = report
        .problems
        .iter()
        .find(|problem| problem.offset == damaged_page * PAGE_SIZE as u64)
        .unwrap_or_else(|| panic!("damage not reported: {:?}", report.problems));
    assert_eq!(problem.file, "pages.db");
}
