//! Bounded lock waits on simulated time: the same schedule gives the same outcome on every
//! machine, however slow.
//!
//! A writer waited on the `flock` of `wal.log` for ever behind a stopped process, and a
//! checkpoint hung silently while a backup held its snapshot; the simulator never held a
//! lock longer than one operation, so nothing could notice. Here a handle holds the lock
//! (or a snapshot is held open) for a stretch of simulated time, longer or shorter than the
//! engine's timeout, while an engine of another process writes or checkpoints. The
//! campaigns do the same at random (`runner::concurrent`, "stalls").

use mentedb_sim::sched::{ActorBody, Schedule};
use mentedb_sim::simfs::{FaultConfig, SimFs};
use mentedb_storage::vfs::{LockMode, OpenMode};
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, StorageEngine};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_millis(200);

fn node(index: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("memory {index}"),
        vec![index as f32; 8],
    )
}

fn open(fs: &SimFs, pid: usize) -> StorageEngine {
    fs.restart_process(pid);
    StorageEngine::open_with(
        Path::new("/db"),
        Options::default()
            .vfs(fs.process(pid))
            .checkpoint_wal_bytes(0)
            .lock_timeout(TIMEOUT),
    )
    .expect("open")
}

/// Holds the writer lock through a handle of process 1 for `held` of simulated time
/// (`holding` is set while it does).
fn hold_writer_lock(fs: &SimFs, held: Duration, holding: &AtomicBool) {
    let file = fs
        .process(1)
        .open_file(Path::new("/db/wal.log"), OpenMode::Existing)
        .expect("open wal.log");
    file.lock(LockMode::Exclusive).expect("lock");
    holding.store(true, Ordering::Release);
    let start = mentedb_storage::sched::now();
    while mentedb_storage::sched::now() - start < held {
        mentedb_storage::sched::sleep(Duration::from_millis(1));
    }
    file.unlock().expect("unlock");
}

type Outcome = Result<Duration, Error>;

/// Runs `body` (timed on the simulated clock) beside a holder of the writer lock.
fn beside_a_holder(
    seed: u64,
    held: Duration,
    body: impl FnOnce(&StorageEngine) -> Result<(), Error> + Send,
) -> (Outcome, SimFs) {
    let fs = SimFs::new(seed, FaultConfig::none());
    let engine = open(&fs, 0);
    engine.store_memory(&node(0)).expect("store");
    let schedule = Schedule::new(seed, 100_000);
    let holding = AtomicBool::new(false);
    let mut results = schedule.run(vec![
        Box::new(|| {
            hold_writer_lock(&fs, held, &holding);
            Ok(Duration::ZERO)
        }) as ActorBody<'_, Outcome>,
        Box::new(|| {
            // The holder takes the lock first.
            while !holding.load(Ordering::Acquire) {
                mentedb_storage::sched::sleep(Duration::from_micros(10));
            }
            let start = mentedb_storage::sched::now();
            body(&engine)?;
            Ok(mentedb_storage::sched::now() - start)
        }),
    ]);
    let outcome = results.pop().expect("two actors").expect("no panic");
    drop(engine);
    (outcome, fs)
}

#[test]
fn a_write_behind_a_lock_held_past_the_timeout_gives_up_at_the_timeout_and_is_not_committed() {
    for seed in 0..20 {
        let (outcome, fs) = beside_a_holder(seed, TIMEOUT * 3, |engine| {
            engine.store_memory(&node(1)).map(drop)
        });
        match outcome {
            Err(Error::Locked(message)) => {
                assert!(message.contains("writer lock"), "{message}");
                assert!(
                    message.contains("process 0 holds it for a write"),
                    "{message}"
                );
            }
            other => panic!("seed {seed}: {other:?}"),
        }
        let engine = open(&fs, 2);
        assert_eq!(
            engine.scan_memories().count(),
            1,
            "seed {seed}: the refused store is there"
        );
    }
}

#[test]
fn a_write_behind_a_lock_held_shorter_than_the_timeout_waits_for_it() {
    for seed in 0..20 {
        let (outcome, fs) = beside_a_holder(seed, TIMEOUT / 4, |engine| {
            engine.store_memory(&node(1)).map(drop)
        });
        let waited = outcome.unwrap_or_else(|error| panic!("seed {seed}: {error}"));
        assert!(waited < TIMEOUT, "seed {seed}: waited {waited:?}");
        let engine = open(&fs, 2);
        assert_eq!(engine.scan_memories().count(), 2);
    }
}

#[test]
fn a_checkpoint_behind_a_snapshot_held_past_the_timeout_gives_up_and_one_after_it_runs() {
    let fs = SimFs::new(7, FaultConfig::none());
    let backup = open(&fs, 0);
    let writer = open(&fs, 1);
    writer.store_memory(&node(0)).expect("store");
    let schedule = Schedule::new(7, 100_000);
    let results = schedule.run(vec![
        Box::new(|| {
            let snapshot = backup.snapshot()?;
            let start = mentedb_storage::sched::now();
            while mentedb_storage::sched::now() - start < TIMEOUT * 3 {
                mentedb_storage::sched::sleep(Duration::from_millis(1));
            }
            drop(snapshot);
            Ok(())
        }) as ActorBody<'_, Result<(), Error>>,
        Box::new(|| {
            mentedb_storage::sched::sleep(Duration::from_millis(1));
            writer.checkpoint()
        }),
    ]);
    assert!(matches!(results[0], Ok(Ok(()))), "{:?}", results[0]);
    match &results[1] {
        Ok(Err(Error::Locked(message))) => {
            assert!(message.contains("snapshots (backups)"), "{message}")
        }
        other => panic!("checkpoint beside a long snapshot: {other:?}"),
    }
    writer
        .checkpoint()
        .expect("checkpoint once the snapshot ended");
}
