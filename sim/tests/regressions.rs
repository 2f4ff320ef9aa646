//! Engine bugs the simulator found, each pinned as a scenario on `SimFs` (robust to changes
//! in the workload) and by the seed that found it.

use mentedb_sim::runner::{Outcome, RunConfig, run};
use mentedb_sim::simfs::{FaultConfig, SimFs};
use mentedb_storage::{AgentId, MemoryNode, MemoryType, Options, RecordId, StorageEngine};
use std::path::Path;

fn node(index: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("memory number {index} {}", "x".repeat(index % 700)),
        vec![index as f32; 64],
    )
}

fn open(fs: &SimFs) -> StorageEngine {
    fs.restart_process(0);
    StorageEngine::open_with(Path::new("/db"), Options::default().vfs(fs.process(0))).expect("open")
}

/// A checkpoint killed after writing the new meta page but before syncing it left the meta
/// only in the page cache. The next open trusted it and reset the WAL; a power loss then
/// paired the old meta page with a WAL starting after it, and open reported corruption
/// (the WAL frames between the two checkpoints were gone). Found by `--faults crash`, seed
/// 18. Fixed by syncing the page file before any WAL reset.
#[test]
fn a_checkpoint_killed_at_any_call_survives_reopen_and_power_loss() {
    for kill_at in 1..40 {
        let losing_every_unsynced_write = FaultConfig {
            survive_ppm: 0,
            ..FaultConfig::none()
        };
        let fs = SimFs::new(kill_at, losing_every_unsynced_write);
        let engine = open(&fs);
        let mut acknowledged: Vec<(RecordId, MemoryNode)> = Vec::new();
        for index in 0..20 {
            let node = node(index);
            acknowledged.push((engine.store_memory(&node).expect("store"), node));
        }
        engine.checkpoint().expect("first checkpoint");
        for index in 20..40 {
            let node = node(index);
            acknowledged.push((engine.store_memory(&node).expect("store"), node));
        }
        fs.kill_process_after(0, kill_at);
        let checkpoint = engine.checkpoint();
        fs.disarm();
        drop(engine);
        if checkpoint.is_ok() && !fs.is_killed(0) {
            continue;
        }
        fs.kill_process(0);
        let engine = open(&fs);
        let node = node(99);
        acknowledged.push((
            engine.store_memory(&node).expect("store after restart"),
            node,
        ));
        fs.power_loss();
        drop(engine);
        let engine = open(&fs);
        for (id, node) in &acknowledged {
            assert_eq!(
                &engine.load_memory(*id).expect("load"),
                node,
                "kill at call {kill_at}"
            );
        }
        assert!(engine.check_integrity().expect("integrity").is_clean());
    }
}

#[test]
fn the_seed_that_found_the_unsynced_meta_page_passes() {
    let config = RunConfig {
        ops: 500,
        faults: "crash".to_string(),
        ..RunConfig::default()
    };
    let report = run(18, &config);
    assert_eq!(report.outcome, Outcome::Passed, "{:?}", report.trace);
}
