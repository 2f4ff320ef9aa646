use mentedb_sim::simfs::{FaultConfig, SimFs};
use mentedb_storage::{AgentId, MemoryNode, MemoryType, Options, StorageEngine};
use std::path::Path;
fn main() {
    let fs = SimFs::new(1, FaultConfig::none());
    let engine = StorageEngine::open_with(
        Path::new("/db"),
        Options::default().vfs(fs.process(0)).buffer_pool_pages(16),
    )
    .unwrap();
    let mut ids = Vec::new();
    for round in 0..5 {
        let before = fs.io_calls();
        for i in 0..100 {
            let node = MemoryNode::new(
                AgentId::new(),
                MemoryType::Semantic,
                format!("n {i} {}", "x".repeat(500)),
                vec![0.5; 384],
            );
            ids.push(engine.store_memory(&node).unwrap());
        }
        let after = fs.io_calls();
        let l0 = fs.io_calls();
        for id in &ids {
            engine.load_memory(*id).unwrap();
        }
        let l1 = fs.io_calls();
        println!(
            "round {round}: {} io per store, {} io per load ({} ids), pages {}",
            (after - before) / 100,
            (l1 - l0) as f64 / ids.len() as f64,
            ids.len(),
            engine.page_count()
        );
    }
}
