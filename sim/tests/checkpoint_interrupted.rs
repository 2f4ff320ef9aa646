//! A checkpoint interrupted between its meta page and its WAL reset, while other processes
//! keep committing: by a failed `fdatasync` of the meta page, or by the death of its
//! process. Either left a meta page newer than the WAL life the others went on appending
//! to, and the next open refused the database ("WAL ... straddles the checkpoint"). Both
//! need another process to commit between two steps of the checkpoint, which the sequential
//! simulator never produced (the dead or poisoned process was restarted before anything
//! else ran); its concurrent groups found them (`--seeds 0..300 --ops 500`, swarm, seed 254
//! for the failed sync; `--seeds 0..100 --faults crash --processes 3 --ops 500`, seed 21,
//! for the killed checkpoint, once the first was fixed). Each scenario fails on the engine
//! with its fix taken out (checked by putting the bug back).

use mentedb_sim::runner::{Outcome, RunConfig, run};
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

/// A checkpoint whose meta page sync failed in one process (the meta page then sits in the
/// page cache, maybe never on disk, and the WAL was not reset) while another process went
/// on committing into the same life of the WAL: the next open found a WAL that straddles the
/// checkpoint the meta page records and refused the database. Fixed by refusing writes in
/// every process while `wal.shm` holds the mark of a failed sync (the failing process sets
/// it before it releases the writer lock); the next open repairs and clears it.
#[test]
fn a_failed_checkpoint_sync_in_one_process_stops_the_writers_of_every_process() {
    let fs = SimFs::new(7, FaultConfig::none());
    let first = open(&fs, 0);
    let second = open(&fs, 1);
    let mut acknowledged: Vec<(RecordId, MemoryNode)> = Vec::new();
    for index in 0..6 {
        let node = node(index);
        acknowledged.push((first.store_memory(&node).expect("store"), node));
    }
    // The checkpoint's second sync of pages.db is the meta page's.
    fs.fail_sync_after("pages.db", 2);
    assert!(matches!(first.checkpoint(), Err(Error::Poisoned(_))));
    match second.store_memory(&node(50)) {
        Err(Error::Poisoned(reason)) => assert!(reason.contains("wal.shm"), "{reason}"),
        other => panic!("a write on top of a failed sync returned {other:?}"),
    }
    assert!(matches!(second.checkpoint(), Err(Error::Poisoned(_))));
    drop(first);
    drop(second);
    fs.kill_process(0);
    fs.kill_process(1);
    let engine = open(&fs, 0);
    let node = node(51);
    acknowledged.push((
        engine.store_memory(&node).expect("store after repair"),
        node,
    ));
    fs.power_loss();
    drop(engine);
    let engine = open(&fs, 1);
    for (id, node) in &acknowledged {
        assert_eq!(&engine.load_memory(*id).expect("load"), node);
    }
    assert!(engine.check_integrity().expect("integrity").is_clean());
}

/// A checkpoint killed at each of its filesystem calls while another process goes on
/// committing: the checkpoint may have written its meta page (into the page cache, maybe
/// synced) and not yet reset the WAL. The other process appended to that WAL, and the next
/// open found it straddling the new checkpoint. Fixed by a checkpoint-in-progress mark in
/// `wal.shm` (set before the meta page, cleared after the WAL reset): a writer that finds
/// it reloads its view from the meta page first, which resets a WAL the checkpoint covers.
#[test]
fn a_checkpoint_killed_before_its_wal_reset_is_finished_by_the_next_writer() {
    for kill_at in 1..40 {
        let fs = SimFs::new(kill_at, FaultConfig::none());
        let first = open(&fs, 0);
        let second = open(&fs, 1);
        let mut acknowledged: Vec<(RecordId, MemoryNode)> = Vec::new();
        for index in 0..6 {
            let node = node(index);
            acknowledged.push((first.store_memory(&node).expect("store"), node));
        }
        fs.kill_process_after(0, kill_at);
        let checkpoint = first.checkpoint();
        fs.disarm();
        if checkpoint.is_ok() && !fs.is_killed(0) {
            continue;
        }
        drop(first);
        for index in 10..13 {
            let node = node(index);
            let id = second
                .store_memory(&node)
                .unwrap_or_else(|error| panic!("kill at {kill_at}: store: {error}"));
            acknowledged.push((id, node));
        }
        let reopened = StorageEngine::open_with(
            Path::new("/db"),
            Options::default().vfs({
                fs.restart_process(0);
                fs.process(0)
            }),
        )
        .unwrap_or_else(|error| panic!("kill at {kill_at}: reopen: {error}"));
        for (id, node) in &acknowledged {
            assert_eq!(
                &reopened.load_memory(*id).expect("load"),
                node,
                "kill at {kill_at}"
            );
        }
        assert!(reopened.check_integrity().expect("integrity").is_clean());
        drop(reopened);
        drop(second);
        fs.power_loss();
        let engine = open(&fs, 0);
        for (id, node) in &acknowledged {
            assert_eq!(
                &engine.load_memory(*id).expect("load"),
                node,
                "kill at {kill_at}"
            );
        }
    }
}

/// Seeds that fail with interrupted checkpoints left unfinished, on this engine:
/// `--seeds 0..300 --ops 500` (swarm) seed 160 ("WAL from LSN 164 to 192 straddles the
/// checkpoint at LSN 190") and `--seeds 0..100 --faults crash --processes 3 --ops 500` seed
/// 80. (With writes allowed on top of a failed sync, seeds 75, 160 and 175 failed on an
/// earlier build; on this one no seed of 0..1100 reaches it, so the scenario above pins it.)
#[test]
fn the_seeds_that_found_an_unfinished_checkpoint_pass() {
    passes(&[160], "swarm", None);
    passes(&[80], "crash", Some(3));
}

fn passes(seeds: &[u64], faults: &str, processes: Option<usize>) {
    let config = RunConfig {
        ops: 500,
        faults: faults.to_string(),
        processes,
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
