//! Damage to synced WAL frames is told from a torn tail (issue 16, item 3).
//!
//! The campaigns flipped WAL bits only in single-process runs, and only in bytes "followed by
//! one more sync". Enabling them in multi-process runs (`--faults corrupt`, seeds 300..1000)
//! found what that rule hid:
//! - a commit's frames claimed durable only what their own process had synced, so another
//!   process's synced commit was proven by no later frame, and a flip in it passed for a
//!   torn tail: acknowledged commits vanished after a power loss (seeds 655, 868);
//! - a writer that met the damage while catching up under the writer lock waited 2 s for a
//!   WAL reset that could not be in progress, holding the lock past every other process's
//!   timeout (seeds 305, 339);
//! - the last synced commits before a power loss are proven by nothing on disk, whoever
//!   wrote them: `SyncMode::Sealed` adds the proof (`wal.seal`), at a second `fdatasync`.
//!
//! SimFs now flips exactly where the engine promises detection (`simfs::wal_proof`): any
//! synced byte in sealed runs (a third of the seeds), else the frames a later durable frame
//! claims. Each test below fails with its fix taken out.

mod common;

use mentedb_sim::simfs::{FaultConfig, SimFs};
use mentedb_storage::rare_paths::{RarePath, Recorder};
use mentedb_storage::wal::format::{ScanStart, decode_header, scan_frames};
use mentedb_storage::{
    AgentId, Error, MemoryNode, MemoryType, Options, RecordId, StorageEngine, SyncMode,
};
use std::path::Path;

const WAL: &str = "/db/wal.log";

fn node(index: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("memory number {index} {}", "z".repeat(100 + index)),
        vec![index as f32; 16],
    )
}

fn open(fs: &SimFs, pid: usize, mode: SyncMode) -> Result<StorageEngine, Error> {
    fs.restart_process(pid);
    StorageEngine::open_with(
        Path::new("/db"),
        Options::default().vfs(fs.process(pid)).sync_mode(mode),
    )
}

/// Offsets of the commit frames now in the log, oldest first.
fn commit_frames(fs: &SimFs) -> Vec<u64> {
    commit_frame_infos(fs)
        .iter()
        .map(|frame| frame.offset)
        .collect()
}

fn commit_frame_infos(fs: &SimFs) -> Vec<mentedb_storage::wal::FrameInfo> {
    let bytes = fs.file_bytes(Path::new(WAL)).expect("a log");
    let header = decode_header(&bytes).expect("a header");
    let start = ScanStart {
        offset: mentedb_storage::wal::format::WAL_HEADER_SIZE as u64,
        prev_crc: header.crc,
        lsn: header.base_lsn,
    };
    let scan = scan_frames(&bytes[start.offset as usize..], header.salt, start);
    scan.frames[..scan.committed_frames]
        .iter()
        .filter(|frame| frame.kind == mentedb_storage::wal::WalEntryType::Commit)
        .copied()
        .collect()
}

/// Flips a bit of the `durable_lsn` field of the frame at `offset` (any bit its CRC covers
/// would do).
fn flip_frame(fs: &SimFs, offset: u64) {
    fs.flip_stored_bit(Path::new(WAL), offset + 18, 2)
        .expect("the byte is on disk");
}

fn power_loss(fs: &SimFs, engines: Vec<StorageEngine>) {
    fs.power_loss();
    drop(engines);
}

#[test]
fn a_flip_in_the_last_sealed_commit_is_reported_after_a_power_loss() {
    let fs = SimFs::new(1, FaultConfig::none());
    let engine = open(&fs, 0, SyncMode::Sealed).expect("open");
    for index in 0..3 {
        engine.store_memory(&node(index)).expect("store");
    }
    let last = *commit_frames(&fs).last().expect("a commit");
    flip_frame(&fs, last);
    power_loss(&fs, vec![engine]);
    match open(&fs, 0, SyncMode::Sealed) {
        Err(Error::Corruption { detail, .. }) => {
            assert!(detail.contains("wal.seal"), "{detail}")
        }
        other => panic!(
            "expected the seal to prove the damage, got {:?}",
            other.err()
        ),
    }
}

/// The limit `SyncMode::Sealed` exists for, pinned so that it stays documented: nothing
/// on disk proves the last synced commit after a power loss.
#[test]
fn without_a_seal_the_same_flip_passes_for_a_torn_tail() {
    let fs = SimFs::new(1, FaultConfig::none());
    let engine = open(&fs, 0, SyncMode::Full).expect("open");
    let ids: Vec<RecordId> = (0..3)
        .map(|index| engine.store_memory(&node(index)).expect("store"))
        .collect();
    let last = *commit_frames(&fs).last().expect("a commit");
    flip_frame(&fs, last);
    power_loss(&fs, vec![engine]);
    let engine = open(&fs, 0, SyncMode::Full).expect("a torn tail opens");
    assert!(engine.load_memory(ids[1]).is_ok());
    assert!(matches!(engine.load_memory(ids[2]), Err(Error::NotFound)));
}

#[test]
fn a_commit_claims_durable_what_another_process_synced() {
    let fs = SimFs::new(2, FaultConfig::none());
    let first = open(&fs, 0, SyncMode::Full).expect("open p0");
    let second = open(&fs, 1, SyncMode::Full).expect("open p1");
    first.store_memory(&node(0)).expect("p0 stores");
    let synced_by_p0 = *commit_frames(&fs).last().expect("p0's commit");
    second
        .store_memory(&node(1))
        .expect("p1 stores, claiming p0's commit");
    flip_frame(&fs, synced_by_p0);
    power_loss(&fs, vec![first, second]);
    match open(&fs, 0, SyncMode::Full) {
        Err(Error::Corruption { detail, .. }) => {
            assert!(detail.contains("was durable"), "{detail}")
        }
        other => panic!(
            "expected p1's frame to prove p0's commit, got {:?}",
            other.err()
        ),
    }
}

#[test]
fn a_writer_that_meets_wal_damage_reports_it_without_waiting_under_the_lock() {
    let fs = SimFs::new(3, FaultConfig::none());
    let first = open(&fs, 0, SyncMode::Full).expect("open p0");
    let second = open(&fs, 1, SyncMode::Full).expect("open p1");
    first.store_memory(&node(0)).expect("store");
    first
        .store_memory(&node(1))
        .expect("store, claiming the first");
    let damaged = commit_frames(&fs)[0];
    flip_frame(&fs, damaged);
    let recorder = Recorder::new();
    let installed = recorder.install();
    let store = second.store_memory(&node(2));
    drop(installed);
    assert!(
        matches!(store, Err(Error::Corruption { .. })),
        "{:?}",
        store.err()
    );
    let attempts = recorder
        .counts()
        .into_iter()
        .find(|(path, _)| *path == RarePath::DamagedFrameProven)
        .map_or(0, |(_, hits)| hits);
    // The quick attempts (16) and the one that reports; waiting out a reset under the lock
    // took thousands.
    assert!(
        (1..=17).contains(&attempts),
        "{attempts} scans met the damage"
    );
}

/// SimFs's rule for runs without seals: a flip may land in a frame only if a later frame
/// on disk claims it durable, so never in the last synced commit.
#[test]
fn simfs_flips_unsealed_logs_only_where_a_later_frame_claims_durability() {
    let fs = SimFs::new(4, FaultConfig::none());
    let engine = open(&fs, 0, SyncMode::Full).expect("open");
    for index in 0..3 {
        engine.store_memory(&node(index)).expect("store");
    }
    let commits = commit_frame_infos(&fs);
    assert_eq!(commits.len(), 3);
    let bytes = fs.file_bytes(Path::new(WAL)).expect("a log");
    let second = commits[1];
    assert_eq!(
        mentedb_sim::simfs::wal_proof::proven_end(&bytes),
        second.offset + u64::from(second.total_len),
        "the third commit claims the second; nothing claims the third"
    );
    drop(engine);
}

/// The seeds that found these holes (`--faults corrupt`, each with WAL flips in a
/// multi-process run) end without a violation. Their draws moved since (a third of the
/// seeds now seal), so the scenarios above are the lasting pins. Seed 648 is the writer
/// that appended over a damaged last commit ("the engine reissued live handle"): the
/// scenario test found it first; the campaign found it too once half of a sealed log's
/// flips landed in its last synced 4 KiB (checked with the fix taken out).
#[test]
fn the_seeds_that_found_unproven_wal_damage_pass() {
    use mentedb_sim::runner::{Outcome, RunConfig, run};
    let config = RunConfig {
        ops: 500,
        faults: "corrupt".to_string(),
        ..RunConfig::default()
    };
    for seed in [305, 339, 648, 655, 868] {
        let report = run(seed, &config);
        assert!(
            !matches!(report.outcome, Outcome::Failed(_)),
            "seed {seed}: {:?}",
            report.outcome
        );
    }
}

#[test]
fn a_writer_never_appends_over_a_damaged_commit_another_process_published() {
    for mode in [SyncMode::Full, SyncMode::Sealed] {
        let fs = SimFs::new(5, FaultConfig::none());
        let first = open(&fs, 0, mode).expect("open p0");
        let second = open(&fs, 1, mode).expect("open p1");
        let a = first.store_memory(&node(0)).expect("store");
        let b = first.store_memory(&node(1)).expect("store");
        let last = *commit_frames(&fs).last().expect("b's commit");
        flip_frame(&fs, last);
        let store = second.store_memory(&node(2));
        assert!(
            matches!(store, Err(Error::Corruption { .. })),
            "{mode:?}: p1 appended over p0's damaged commit: {:?}",
            store
        );
        let _ = (a, b);
    }
}

/// A database made in `Full` mode and opened later in `Sealed`: that open creates
/// `wal.seal`, and the file's name must be durable before a seal in it proves anything
/// (mutation testing found no test for this: the directory sync could be dropped).
#[test]
fn a_seal_file_that_a_later_sealed_open_creates_survives_a_power_loss() {
    let fs = SimFs::new(6, FaultConfig::none());
    let engine = open(&fs, 0, SyncMode::Full).expect("open");
    engine.store_memory(&node(0)).expect("store");
    engine.close().expect("close");
    let engine = open(&fs, 0, SyncMode::Sealed).expect("reopen sealed");
    for index in 1..3 {
        engine.store_memory(&node(index)).expect("store");
    }
    let last = *commit_frames(&fs).last().expect("a commit");
    flip_frame(&fs, last);
    power_loss(&fs, vec![engine]);
    match open(&fs, 0, SyncMode::Sealed) {
        Err(Error::Corruption { detail, .. }) => {
            assert!(detail.contains("wal.seal"), "{detail}")
        }
        other => panic!(
            "expected the seal to survive and prove the damage, got {:?}",
            other.err()
        ),
    }
}

/// A seal that cannot be read is an error, never "no seal": treating it as missing would
/// let the open cut acknowledged commits that the seal proves (mutation testing: the
/// read's end-of-file case could swallow every read error).
#[test]
fn an_unreadable_seal_fails_the_open_instead_of_proving_nothing() {
    use std::sync::atomic::Ordering;
    let fs = common::FaultFs::new(mentedb_storage::vfs::MemFs::new());
    let options = || {
        Options::default()
            .vfs(std::sync::Arc::new(fs.clone()))
            .sync_mode(SyncMode::Sealed)
    };
    let engine = StorageEngine::open_with(Path::new("/db"), options()).expect("open");
    engine.store_memory(&node(0)).expect("store");
    drop(engine);
    fs.faults.fail_seal_reads.store(true, Ordering::SeqCst);
    match StorageEngine::open_with(Path::new("/db"), options()) {
        Err(Error::Io { .. }) => {}
        other => panic!("expected the read error, got {:?}", other.err()),
    }
}
