//! Bounded waits: a call that cannot take a lock within `Options::lock_timeout` fails with
//! `Error::Locked`, naming the lock and its holder, and writes nothing.
//!
//! Found by a new user: a writer waited on the `flock` of `wal.log` for ever behind a
//! stopped process, and `checkpoint` hung without a word while a backup held its snapshot.
//! No test ever held a lock longer than a commit. These hold them by hand, as a stopped
//! process would (a raw `flock` on the same file from another handle). The simulated
//! counterpart, on simulated time, is `sim/tests/lock_timeout.rs`.

use fs2::FileExt;
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, StorageEngine};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mentedb-lock-timeout-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn node(index: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("memory {index}"),
        vec![index as f32; 8],
    )
}

fn open(dir: &Path, timeout: Duration) -> StorageEngine {
    StorageEngine::open_with(dir, Options::default().lock_timeout(timeout)).expect("open")
}

/// Holds `file`'s lock (exclusive or shared) from another handle until dropped.
struct HeldByHand(std::fs::File);

impl HeldByHand {
    fn exclusive(path: &Path) -> HeldByHand {
        let file = std::fs::File::open(path).expect("open by hand");
        file.lock_exclusive().expect("lock by hand");
        HeldByHand(file)
    }

    fn shared(path: &Path) -> HeldByHand {
        let file = std::fs::File::open(path).expect("open by hand");
        file.lock_shared().expect("lock by hand");
        HeldByHand(file)
    }
}

impl Drop for HeldByHand {
    fn drop(&mut self) {
        let _ = FileExt::unlock(&self.0);
    }
}

fn locked_message(result: Result<impl std::fmt::Debug, Error>, what: &str) -> String {
    match result {
        Err(Error::Locked(message)) => message,
        other => panic!("{what}: expected Locked, got {other:?}"),
    }
}

#[test]
fn a_write_behind_a_held_writer_lock_fails_after_the_timeout_names_the_holder_and_writes_nothing() {
    let dir = temp_dir("writer");
    let engine = open(&dir, Duration::from_millis(50));
    let first = engine.store_memory(&node(0)).expect("store");
    let wal_before = std::fs::read(dir.join("wal.log")).expect("read wal");
    let held = HeldByHand::exclusive(&dir.join("wal.log"));
    let started = Instant::now();
    let message = locked_message(engine.store_memory(&node(1)), "store");
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "gave up early"
    );
    assert!(
        message.contains("wal.log") && message.contains("50ms"),
        "{message}"
    );
    assert!(message.contains(&dir.display().to_string()), "{message}");
    // The last holder recorded is this process, for its store.
    assert!(
        message.contains(&format!(
            "process {} holds it for a write",
            std::process::id()
        )),
        "{message}"
    );
    for (what, result) in [
        ("update", engine.update_memory(first, &node(2))),
        ("delete", engine.delete_memory(first)),
        ("checkpoint", engine.checkpoint()),
    ] {
        locked_message(result, what);
    }
    assert_eq!(
        std::fs::read(dir.join("wal.log")).expect("read wal"),
        wal_before,
        "a write that timed out wrote to the log"
    );
    drop(held);
    assert_eq!(engine.scan_memories().count(), 1);
    engine.store_memory(&node(3)).expect("store after release");
    assert_eq!(engine.scan_memories().count(), 2);
}

#[test]
fn a_zero_timeout_fails_at_once_and_the_longest_waits_for_the_release() {
    let dir = temp_dir("zero-and-max");
    let impatient = open(&dir, Duration::ZERO);
    impatient.store_memory(&node(0)).expect("store");
    let held = HeldByHand::exclusive(&dir.join("wal.log"));
    locked_message(impatient.store_memory(&node(1)), "store");
    let patient = open_after_release_in(&dir, Duration::MAX, held, Duration::from_millis(100));
    patient.store_memory(&node(2)).expect("store waits");
    assert_eq!(patient.scan_memories().count(), 2);
}

/// Opens a second instance (which itself waits for the lock) while another thread releases
/// `held` after `after`.
fn open_after_release_in(
    dir: &Path,
    timeout: Duration,
    held: HeldByHand,
    after: Duration,
) -> StorageEngine {
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(after);
        drop(held);
    });
    let engine = open(dir, timeout);
    releaser.join().expect("release");
    engine
}

#[test]
fn opening_behind_a_held_writer_lock_fails_after_the_timeout() {
    let dir = temp_dir("open");
    drop(open(&dir, Duration::from_secs(1)));
    let _held = HeldByHand::exclusive(&dir.join("wal.log"));
    let message = locked_message(
        StorageEngine::open_with(
            &dir,
            Options::default().lock_timeout(Duration::from_millis(20)),
        )
        .map(drop),
        "open",
    );
    assert!(message.contains("writer lock"), "{message}");
}

#[test]
fn a_checkpoint_behind_an_open_snapshot_fails_after_the_timeout_and_runs_once_it_ends() {
    let dir = temp_dir("checkpoint-gate");
    let engine = open(&dir, Duration::from_millis(50));
    engine.store_memory(&node(0)).expect("store");
    {
        let snapshot = engine.snapshot().expect("snapshot");
        let message = locked_message(engine.checkpoint(), "checkpoint");
        assert!(message.contains("snapshots (backups)"), "{message}");
        assert!(message.contains("pages.db"), "{message}");
        drop(snapshot);
    }
    engine.checkpoint().expect("checkpoint after the snapshot");
    // A snapshot waits for a checkpoint the same way (another process's, held by hand).
    let held = HeldByHand::exclusive(&dir.join("pages.db"));
    let message = locked_message(engine.snapshot().map(drop), "snapshot");
    assert!(message.contains("checkpoint running"), "{message}");
    drop(held);
    let _shared = HeldByHand::shared(&dir.join("pages.db"));
    locked_message(engine.checkpoint(), "checkpoint behind a shared holder");
}
