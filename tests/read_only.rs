//! `Options::read_only()`: an open that creates, changes, recovers and syncs nothing on
//! disk, works on read-only files and mounts, and shows what is readable of a damaged
//! database, noting what it went past.
//!
//! Found by a new user: `verify` and `stats` on a directory holding only `pages.db` created
//! `wal.log` and `wal.shm`; on a zero-length `pages.db` `verify` turned it into a fresh empty
//! database and said clean; on a read-only mount every command failed; `dump` could not
//! show a database that fails to open. No test looked at what a read-only tool did to the
//! files: these compare every byte and name before and after, and run through a file system
//! that refuses (and counts) every change.

use mentedb_storage::backup::verify_database;
use mentedb_storage::vfs::{LockMode, OpenMode, RealFs, SharedView, Vfs, VfsFile};
use mentedb_storage::{
    AgentId, Error, MemoryNode, MemoryType, Options, RecordId, StorageEngine, WriteOp,
};
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mentedb-read-only-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn node(index: usize) -> MemoryNode {
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("memory {index} {}", "y".repeat(index * 37 % 900)),
        vec![index as f32; 32],
    )
}

/// Every file of `dir` by name, with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            let entry = entry.expect("entry");
            (
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path()).expect("read"),
            )
        })
        .collect()
}

/// `files` with the writer lock's holder record in `wal.shm` zeroed.
fn without_holder_record(mut files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    if let Some(shm) = files.get_mut("wal.shm") {
        for byte in shm.iter_mut().skip(64).take(13) {
            *byte = 0;
        }
    }
    files
}

/// A copy of `from`'s files as they are now (what a power loss with everything synced, or
/// a `cp` of a running database, leaves).
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::remove_dir_all(to);
    std::fs::create_dir_all(to).expect("create copy");
    for (name, bytes) in files(from) {
        std::fs::write(to.join(name), bytes).expect("copy");
    }
}

/// Real files through a file system that refuses every change (as a read-only mount does)
/// and counts what was tried.
#[derive(Debug, Default)]
struct RefusingFs {
    changes_tried: Arc<AtomicUsize>,
}

#[derive(Debug)]
struct RefusingFile {
    inner: Box<dyn VfsFile>,
    changes_tried: Arc<AtomicUsize>,
}

fn refused(counter: &AtomicUsize) -> io::Error {
    counter.fetch_add(1, Ordering::AcqRel);
    io::Error::new(
        io::ErrorKind::ReadOnlyFilesystem,
        "read-only file system (test)",
    )
}

impl Vfs for RefusingFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        if mode != OpenMode::ReadOnly {
            return Err(refused(&self.changes_tried));
        }
        Ok(Box::new(RefusingFile {
            inner: RealFs::new().open_file(path, mode)?,
            changes_tried: self.changes_tried.clone(),
        }))
    }
    fn create_dir_all(&self, _path: &Path) -> io::Result<()> {
        Err(refused(&self.changes_tried))
    }
    fn remove_file(&self, _path: &Path) -> io::Result<()> {
        Err(refused(&self.changes_tried))
    }
    fn rename(&self, _from: &Path, _to: &Path) -> io::Result<()> {
        Err(refused(&self.changes_tried))
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs::new().list_dir(path)
    }
    fn sync_dir(&self, _path: &Path) -> io::Result<()> {
        Err(refused(&self.changes_tried))
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        RealFs::new().exists(path)
    }
}

impl VfsFile for RefusingFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, _buf: &[u8], _offset: u64) -> io::Result<usize> {
        Err(refused(&self.changes_tried))
    }
    fn sync_data(&self) -> io::Result<()> {
        Err(refused(&self.changes_tried))
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, _len: u64) -> io::Result<()> {
        Err(refused(&self.changes_tried))
    }
    fn lock(&self, mode: LockMode) -> io::Result<()> {
        self.inner.lock(mode)
    }
    fn try_lock(&self, mode: LockMode) -> io::Result<bool> {
        self.inner.try_lock(mode)
    }
    fn unlock(&self) -> io::Result<()> {
        self.inner.unlock()
    }
    fn map_shared(&self, _len: usize) -> io::Result<Option<Box<dyn SharedView>>> {
        // A shared mapping could be written through; a read-only open reads the file.
        Ok(None)
    }
}

fn refusing() -> (Options, Arc<AtomicUsize>) {
    let fs = RefusingFs::default();
    let counter = fs.changes_tried.clone();
    (Options::default().read_only().vfs(Arc::new(fs)), counter)
}

/// A database of `count` stores, with its log as a running writer leaves it (nothing
/// checkpointed since the first `checkpoint_after` stores).
fn database_with_log(
    name: &str,
    count: usize,
    checkpoint_after: usize,
) -> (PathBuf, Vec<(RecordId, MemoryNode)>) {
    let live = temp_dir(&format!("{name}-live"));
    let copy = temp_dir(name);
    let engine =
        StorageEngine::open_with(&live, Options::default().checkpoint_wal_bytes(0)).expect("open");
    let mut stored = Vec::new();
    for index in 0..count {
        let memory = node(index);
        stored.push((engine.store_memory(&memory).expect("store"), memory));
        if index + 1 == checkpoint_after {
            engine.checkpoint().expect("checkpoint");
        }
    }
    copy_dir(&live, &copy);
    drop(engine);
    let _ = std::fs::remove_dir_all(&live);
    (copy, stored)
}

#[test]
fn a_read_only_open_of_a_directory_with_only_its_page_file_creates_nothing() {
    let dir = temp_dir("page-file-only");
    let stored: Vec<_> = {
        let engine = StorageEngine::open(&dir).expect("open");
        let stored: Vec<_> = (0..40)
            .map(|index| {
                (
                    engine.store_memory(&node(index)).expect("store"),
                    node(index),
                )
            })
            .collect();
        engine.checkpoint().expect("checkpoint");
        stored
    };
    std::fs::remove_file(dir.join("wal.log")).expect("remove wal.log");
    std::fs::remove_file(dir.join("wal.shm")).expect("remove wal.shm");
    let before = files(&dir);
    assert_eq!(before.keys().collect::<Vec<_>>(), ["pages.db"]);
    let (options, changes_tried) = refusing();
    let engine = StorageEngine::open_with(&dir, options).expect("read-only open");
    for (id, memory) in &stored {
        assert_eq!(
            engine.load_memory(*id).expect("load").content,
            memory.content
        );
    }
    assert_eq!(engine.scan_memories().count(), stored.len());
    assert!(engine.check_integrity().expect("check").is_clean());
    assert!(engine.open_notes().is_empty());
    drop(engine);
    let report = verify_database(&dir, Options::default()).expect("verify");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        changes_tried.load(Ordering::Acquire),
        0,
        "a change was tried"
    );
    assert_eq!(files(&dir), before, "a file was created or changed");
}

#[test]
fn a_read_only_open_reads_the_log_and_changes_no_byte() {
    let (dir, stored) = database_with_log("with-log", 60, 20);
    let before = files(&dir);
    let (options, changes_tried) = refusing();
    let engine = StorageEngine::open_with(&dir, options).expect("read-only open");
    assert!(
        engine.last_lsn() > engine.checkpoint_lsn(),
        "the log was not read"
    );
    for (id, memory) in &stored {
        assert_eq!(engine.load_memory(*id).expect("load"), *memory);
    }
    assert_eq!(engine.scan_memories().count(), stored.len());
    assert!(engine.check_integrity().expect("check").is_clean());
    drop(engine);
    let report = verify_database(&dir, Options::default()).expect("verify");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(
        changes_tried.load(Ordering::Acquire),
        0,
        "a change was tried"
    );
    assert_eq!(files(&dir), before, "recovery wrote to the files");
}

#[test]
fn every_write_to_a_read_only_database_is_refused_and_changes_nothing() {
    let (dir, stored) = database_with_log("writes", 10, 5);
    let before = files(&dir);
    let (options, changes_tried) = refusing();
    let engine = StorageEngine::open_with(&dir, options).expect("read-only open");
    let id = stored[0].0;
    let results: Vec<(&str, Result<(), Error>)> = vec![
        ("store", engine.store_memory(&node(99)).map(drop)),
        ("batch", engine.store_memory_batch(&[node(98)]).map(drop)),
        ("update", engine.update_memory(id, &node(97))),
        ("delete", engine.delete_memory(id)),
        ("delete batch", engine.delete_memory_batch(&[id])),
        ("apply", engine.apply(&[WriteOp::Delete(id)]).map(drop)),
        ("checkpoint", engine.checkpoint()),
        ("compact", engine.compact().map(drop)),
    ];
    for (what, result) in results {
        match result {
            Err(Error::InvalidArgument(message)) => {
                assert!(message.contains("read-only"), "{what}: {message}")
            }
            other => panic!("{what} on a read-only database: {other:?}"),
        }
    }
    assert_eq!(engine.load_memory(id).expect("load"), stored[0].1);
    drop(engine);
    assert_eq!(
        changes_tried.load(Ordering::Acquire),
        0,
        "a change was tried"
    );
    assert_eq!(files(&dir), before);
}

#[test]
fn a_zero_length_page_file_is_refused_read_only_and_left_as_it_was() {
    let dir = temp_dir("zero-length");
    std::fs::write(dir.join("pages.db"), b"").expect("create");
    let (options, changes_tried) = refusing();
    match StorageEngine::open_with(&dir, options) {
        Err(Error::InvalidArgument(message)) => {
            assert!(message.contains("no meta page"), "{message}")
        }
        other => panic!("opened a zero-length page file: {:?}", other.map(|_| ())),
    }
    match verify_database(&dir, Options::default()) {
        Ok(report) => assert!(!report.is_clean(), "verify said clean"),
        Err(error) => assert!(error.to_string().contains("pages.db"), "{error}"),
    }
    assert_eq!(changes_tried.load(Ordering::Acquire), 0);
    let after = files(&dir);
    assert_eq!(after.keys().collect::<Vec<_>>(), ["pages.db"]);
    assert!(after["pages.db"].is_empty());
}

#[test]
fn a_read_only_open_of_a_damaged_log_shows_the_commits_before_the_damage_and_notes_it() {
    let (dir, stored) = database_with_log("damaged-log", 60, 10);
    // Damage the log about two thirds of the way in: inside a frame of a later store.
    let wal = dir.join("wal.log");
    let mut bytes = std::fs::read(&wal).expect("read log");
    let used = bytes
        .iter()
        .rposition(|byte| *byte != 0)
        .expect("log holds frames");
    let at = used * 2 / 3;
    bytes[at] ^= 0x5a;
    std::fs::write(&wal, &bytes).expect("damage log");
    let before = files(&dir);
    // A read-write open refuses: the damage is before what was made durable.
    assert!(
        StorageEngine::open(&dir).is_err(),
        "read-write open went past damage"
    );
    // (A read-write open records itself as the writer lock's holder in wal.shm, bytes
    // 64..77: a hint for waiters' errors, not evidence; everything else stays.)
    assert_eq!(
        without_holder_record(files(&dir)),
        without_holder_record(before),
        "the refused open changed a file"
    );
    let before = files(&dir);
    let (options, changes_tried) = refusing();
    let engine = StorageEngine::open_with(&dir, options).expect("read-only open");
    let notes = engine.open_notes();
    assert!(
        notes.iter().any(|note| note.file == "wal.log"),
        "no note about the damage: {notes:?}"
    );
    // The first stores were checkpointed and the ones before the damage are in the log.
    let readable = stored
        .iter()
        .filter(|(id, memory)| {
            engine
                .load_memory(*id)
                .is_ok_and(|loaded| loaded == *memory)
        })
        .count();
    assert!(readable >= 10, "only {readable} readable");
    assert!(readable < stored.len(), "the damage hid nothing");
    assert_eq!(
        engine.scan_memories().filter(Result::is_ok).count(),
        readable
    );
    drop(engine);
    // The tool shows it too (it could not open a database that fails to open).
    let tool = env!("CARGO_BIN_EXE_mentedb-storage");
    for args in [&["dump", "--wal"][..], &["stats"]] {
        let output = std::process::Command::new(tool)
            .args(args)
            .arg(&dir)
            .output()
            .expect("run tool");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {stderr}");
        assert!(stderr.contains("warning: wal.log"), "{args:?}: {stderr}");
    }
    let report = verify_database(&dir, Options::default()).expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.file == "wal.log"),
        "{:?}",
        report.problems
    );
    assert_eq!(changes_tried.load(Ordering::Acquire), 0);
    assert_eq!(files(&dir), before);
}

#[test]
fn verify_reports_a_lost_synced_tail_and_still_checks_the_rest() {
    let (dir, stored) = database_with_log("lost-tail", 60, 10);
    // Cut the log in the middle: commits acknowledged and recorded durable in wal.shm are
    // gone.
    let wal = dir.join("wal.log");
    let bytes = std::fs::read(&wal).expect("read log");
    let used = bytes
        .iter()
        .rposition(|byte| *byte != 0)
        .expect("log holds frames");
    std::fs::write(&wal, &bytes[..used / 2]).expect("cut log");
    let before = files(&dir);
    let report = verify_database(&dir, Options::default()).expect("verify");
    assert!(
        report
            .problems
            .iter()
            .any(|problem| problem.file == "wal.log" && problem.detail.contains("lost")),
        "verify missed the lost tail: {:?}",
        report.problems
    );
    assert!(
        report.live_records > 0 && report.live_records < stored.len() as u64,
        "{report:?}"
    );
    assert_eq!(files(&dir), before, "verify changed the evidence");
}

/// The same on a real read-only mount (a bind mount remounted read-only; needs root, as
/// this project's CI and development machines run; elsewhere it says it was skipped).
#[test]
fn verify_stats_and_dump_work_on_a_read_only_mount() {
    let (dir, stored) = database_with_log("mount-source", 30, 10);
    let mount = temp_dir("mount");
    let bind = std::process::Command::new("mount")
        .args(["--bind"])
        .arg(&dir)
        .arg(&mount)
        .status();
    if !bind.is_ok_and(|status| status.success()) {
        eprintln!("skipped: cannot bind-mount (not root?)");
        return;
    }
    let remount = std::process::Command::new("mount")
        .args(["-o", "remount,ro,bind"])
        .arg(&mount)
        .status();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        assert!(
            remount.is_ok_and(|status| status.success()),
            "remount read-only"
        );
        assert!(
            std::fs::write(mount.join("probe"), b"x").is_err(),
            "mount is writable"
        );
        let engine =
            StorageEngine::open_with(&mount, Options::default().read_only()).expect("open");
        for (id, memory) in &stored {
            assert_eq!(engine.load_memory(*id).expect("load"), *memory);
        }
        drop(engine);
        let report = verify_database(&mount, Options::default()).expect("verify");
        assert!(report.is_clean(), "{:?}", report.problems);
        let tool = env!("CARGO_BIN_EXE_mentedb-storage");
        for args in [&["verify"][..], &["stats"], &["dump"], &["dump", "--wal"]] {
            let output = std::process::Command::new(tool)
                .args(args)
                .arg(&mount)
                .output()
                .expect("run tool");
            assert!(
                output.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
    }));
    let _ = std::process::Command::new("umount").arg(&mount).status();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn a_read_only_instance_follows_the_commits_of_a_writer() {
    let dir = temp_dir("follows");
    let writer = StorageEngine::open(&dir).expect("open");
    let (one, two, three) = (node(1), node(2), node(3));
    let first = writer.store_memory(&one).expect("store");
    let reader =
        StorageEngine::open_with(&dir, Options::default().read_only()).expect("read-only open");
    assert_eq!(reader.load_memory(first).expect("load"), one);
    let second = writer.store_memory(&two).expect("store");
    writer.update_memory(first, &three).expect("update");
    assert_eq!(reader.load_memory(second).expect("load"), two);
    assert_eq!(reader.load_memory(first).expect("load"), three);
    writer.checkpoint().expect("checkpoint");
    writer.delete_memory(second).expect("delete");
    assert!(matches!(reader.load_memory(second), Err(Error::NotFound)));
    assert_eq!(reader.scan_memories().count(), 1);
}
