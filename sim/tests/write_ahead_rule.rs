//! The write-ahead rule across threads and processes: no page reaches `pages.db` before the
//! WAL is durable up to that page's LSN.
//!
//! The bug pinned here needs another actor between two steps of one operation (a commit's
//! append and its `fdatasync`), which the simulator could not produce while each simulated
//! process had one thread and every operation ran to completion before the next began:
//! 1,000 seeds passed over it. It was found on real files under LazyFS (acknowledged
//! records lost after a power loss); the simulator found it once its concurrent groups
//! interleaved operations at every filesystem call and lock (`--seeds 0..300 --ops 500`,
//! swarm: seeds 55 and 212 on the engine before the fix). The scenario fails on the engine
//! with the fix taken out (checked by putting the bug back).

use mentedb_sim::runner::{Outcome, RunConfig, run};
use mentedb_sim::sched::{ActorBody, Schedule};
use mentedb_sim::simfs::{FaultConfig, SimFs};
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, RecordId, StorageEngine};
use std::path::Path;

fn node(index: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("memory number {index} {}", "x".repeat(index % 700)),
        vec![index as f32; 64],
    )
}

fn open(fs: &SimFs, pid: usize) -> StorageEngine {
    fs.restart_process(pid);
    StorageEngine::open_with(
        Path::new("/db"),
        Options::default()
            .vfs(fs.process(pid))
            .checkpoint_wal_bytes(0),
    )
    .expect("open")
}

/// Every unsynced write is lost at a power cut: what survives is exactly what was synced.
fn losing_every_unsynced_write() -> FaultConfig {
    FaultConfig {
        survive_ppm: 0,
        ..FaultConfig::none()
    }
}

/// A commit appends its frames and releases the writer lock before its `fdatasync`. A
/// checkpoint by another thread (or process) in between wrote the pages of that commit into
/// `pages.db` and synced them; a power cut before the new meta page was durable then left
/// the old meta page, a WAL without the commit, and pages holding it: the page file mixed
/// a transaction that never became durable with the durable state (a deleted record's
/// overflow pages marked free while acknowledged chains still ran through them, on real
/// files). Fixed by making the WAL durable up to the last commit before a checkpoint writes
/// any page, asserted at the page write; the integrity check now reports any page newer
/// than the last commit.
#[test]
fn a_checkpoint_racing_a_commit_never_writes_pages_the_wal_has_not_made_durable() {
    let mut raced = 0;
    for other_process in [false, true] {
        for schedule_seed in 0..24u64 {
            for cut_at in 1..48 {
                raced += race_store_and_checkpoint(other_process, schedule_seed, cut_at);
            }
        }
    }
    assert!(
        raced > 0,
        "no store was acknowledged across a racing checkpoint"
    );
}

/// One race: a store in process 0 and a checkpoint (in process 0's other thread or in
/// process 1), the power cut at the `cut_at`-th filesystem call. Returns 1 if the store was
/// acknowledged and the checkpoint finished with it (the interleaving the bug needs happened
/// or could have).
fn race_store_and_checkpoint(other_process: bool, schedule_seed: u64, cut_at: u64) -> u32 {
    let context =
        format!("other process {other_process}, schedule {schedule_seed}, cut at {cut_at}");
    let fs = SimFs::new(schedule_seed, losing_every_unsynced_write());
    let engine = open(&fs, 0);
    let second = other_process.then(|| open(&fs, 1));
    let mut acknowledged: Vec<(RecordId, MemoryNode)> = (0..8)
        .map(|index| {
            let node = node(index);
            (engine.store_memory(&node).expect("store"), node)
        })
        .collect();
    engine.checkpoint().expect("checkpoint");
    let racing = node(100);
    let schedule = Schedule::new(schedule_seed, 500_000);
    fs.cut_power_after(cut_at);
    let checkpointer = second.as_ref().unwrap_or(&engine);
    let results = schedule.run(vec![
        Box::new(|| engine.store_memory(&racing)) as ActorBody<'_, Result<RecordId, Error>>,
        Box::new(|| checkpointer.checkpoint().map(|()| RecordId::from_u128(0))),
    ]);
    fs.disarm();
    let stored = match &results[0] {
        Ok(Ok(id)) => Some(*id),
        Ok(Err(_)) => None,
        Err(panic) => panic!("{context}: store panicked: {panic}"),
    };
    let checkpointed = matches!(&results[1], Ok(Ok(_)));
    if let Err(panic) = &results[1] {
        panic!("{context}: checkpoint panicked: {panic}");
    }
    drop(second);
    drop(engine);
    fs.power_loss();
    let engine = open(&fs, 0);
    let report = engine.check_integrity().expect("integrity check");
    assert!(report.is_clean(), "{context}: {:?}", report.problems);
    if let Some(id) = stored {
        acknowledged.push((id, racing));
    }
    for (id, node) in &acknowledged {
        assert_eq!(&engine.load_memory(*id).expect("load"), node, "{context}");
    }
    u32::from(stored.is_some() && checkpointed)
}

/// Seeds of `--seeds 0..300 --ops 500` (swarm) that fail on this engine with the
/// checkpoint's sync taken out: 16, 119, 159, 201, 205, 239 and 282 (the first at seed 16,
/// 17 seeds in; "page 14 has LSN 659 above the last committed LSN 658", "page 18 is not the
/// overflow page its chain expects" as on real files, "forwards to a missing RecordId"). All
/// of them run concurrent groups; with `--concurrency 0` none of the 300 seeds failed (on
/// an earlier build of the fix). Seeds follow the engine's I/O pattern, so a later change
/// may move the bug to other seeds; the scenario above is what pins it.
#[test]
fn the_seeds_that_found_a_checkpoint_writing_unsynced_pages_pass() {
    passes(&[16, 119, 159, 201, 205, 239, 282]);
}

fn passes(seeds: &[u64]) {
    let config = RunConfig {
        ops: 500,
        ..RunConfig::default()
    };
    for seed in seeds {
        let report = run(*seed, &config);
        assert!(
            !matches!(report.outcome, Outcome::Failed(_)),
            "seed {seed}: {:?}",
            report.outcome
        );
    }
}
