use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::Duration;

use super::*;

/// A fresh directory under the system temp dir, removed again on drop.
struct TestDir {
    path: PathBuf,
}

impl TestDir {
    fn new() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("mentedb-vfs-real-{}-{count}", std::process::id());
        let path = std::env::temp_dir().join(name);
        // A directory left behind by an earlier process with the same id is stale.
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).expect("create test directory");
        TestDir { path }
    }

    fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

fn create(dir: &TestDir, name: &str) -> Box<dyn VfsFile> {
    RealFs::new()
        .open_file(&dir.join(name), OpenMode::CreateOrOpen)
        .expect("create file")
}

#[test]
fn write_then_read_returns_the_same_bytes() {
    let dir = TestDir::new();
    let file = create(&dir, "data");
    file.write_all_at(b"hello world", 3).unwrap();
    let mut buf = [0u8; 11];
    file.read_exact_at(&mut buf, 3).unwrap();
    assert_eq!(&buf, b"hello world");
    assert_eq!(file.len().unwrap(), 14);
    let mut head = [0xFFu8; 3];
    file.read_exact_at(&mut head, 0).unwrap();
    assert_eq!(
        head,
        [0, 0, 0],
        "the gap before the first write reads as zeros"
    );
}

#[test]
fn read_at_end_is_short_and_past_end_is_zero() {
    let dir = TestDir::new();
    let file = create(&dir, "data");
    file.write_all_at(b"abcdef", 0).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(file.read_at(&mut buf, 4).unwrap(), 2);
    assert_eq!(&buf[..2], b"ef");
    assert_eq!(file.read_at(&mut buf, 6).unwrap(), 0);
    assert_eq!(file.read_at(&mut buf, 100).unwrap(), 0);
}

#[test]
fn read_exact_past_end_is_unexpected_eof() {
    let dir = TestDir::new();
    let file = create(&dir, "data");
    file.write_all_at(b"abc", 0).unwrap();
    let mut buf = [0u8; 4];
    let error = file.read_exact_at(&mut buf, 0).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn set_len_truncates_and_extends_with_zeros() {
    let dir = TestDir::new();
    let file = create(&dir, "data");
    file.write_all_at(b"abcdef", 0).unwrap();
    file.set_len(2).unwrap();
    assert_eq!(file.len().unwrap(), 2);
    file.set_len(5).unwrap();
    let mut buf = [0xFFu8; 5];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"ab\0\0\0");
}

#[test]
fn open_existing_fails_when_the_file_is_missing() {
    let dir = TestDir::new();
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let error = RealFs::new()
            .open_file(&dir.join("missing"), mode)
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{mode:?}");
    }
}

#[test]
fn read_only_handle_refuses_writes() {
    let dir = TestDir::new();
    create(&dir, "data").write_all_at(b"abc", 0).unwrap();
    let file = RealFs::new()
        .open_file(&dir.join("data"), OpenMode::ReadOnly)
        .unwrap();
    assert!(file.write_at(b"x", 0).is_err());
    let mut buf = [0u8; 3];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"abc");
}

#[test]
fn two_handles_see_each_others_writes_before_sync() {
    let dir = TestDir::new();
    let writer = create(&dir, "data");
    let reader = create(&dir, "data");
    writer.write_all_at(b"shared", 0).unwrap();
    let mut buf = [0u8; 6];
    reader.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"shared");
}

#[test]
fn rename_replaces_the_target() {
    let dir = TestDir::new();
    let fs = RealFs::new();
    create(&dir, "new").write_all_at(b"new", 0).unwrap();
    create(&dir, "old").write_all_at(b"old", 0).unwrap();
    fs.rename(&dir.join("new"), &dir.join("old")).unwrap();
    fs.sync_dir(&dir.path).unwrap();
    assert!(!fs.exists(&dir.join("new")).unwrap());
    let file = fs.open_file(&dir.join("old"), OpenMode::ReadOnly).unwrap();
    let mut buf = [0u8; 3];
    file.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"new");
}

#[test]
fn list_dir_returns_full_paths_sorted() {
    let dir = TestDir::new();
    let fs = RealFs::new();
    for name in ["c", "a", "b"] {
        create(&dir, name);
    }
    fs.create_dir_all(&dir.join("d/e")).unwrap();
    let expected: Vec<PathBuf> = ["a", "b", "c", "d"].map(|n| dir.join(n)).into();
    assert_eq!(fs.list_dir(&dir.path).unwrap(), expected);
}

#[test]
fn remove_file_removes_the_name() {
    let dir = TestDir::new();
    let fs = RealFs::new();
    create(&dir, "data");
    assert!(fs.exists(&dir.join("data")).unwrap());
    fs.remove_file(&dir.join("data")).unwrap();
    assert!(!fs.exists(&dir.join("data")).unwrap());
    let error = fs.remove_file(&dir.join("data")).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
}

#[test]
fn exclusive_lock_makes_try_lock_on_another_handle_fail() {
    let dir = TestDir::new();
    let holder = create(&dir, "lock");
    let other = create(&dir, "lock");
    holder.lock(LockMode::Exclusive).unwrap();
    assert!(!other.try_lock(LockMode::Exclusive).unwrap());
    assert!(!other.try_lock(LockMode::Shared).unwrap());
    holder.unlock().unwrap();
    assert!(other.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn shared_locks_on_two_handles_are_compatible() {
    let dir = TestDir::new();
    let first = create(&dir, "lock");
    let second = create(&dir, "lock");
    first.lock(LockMode::Shared).unwrap();
    assert!(second.try_lock(LockMode::Shared).unwrap());
    assert!(!first.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn relocking_a_handle_does_not_conflict_with_itself() {
    let dir = TestDir::new();
    let file = create(&dir, "lock");
    file.lock(LockMode::Exclusive).unwrap();
    assert!(file.try_lock(LockMode::Exclusive).unwrap());
    assert!(file.try_lock(LockMode::Shared).unwrap(), "downgrade");
    assert!(file.try_lock(LockMode::Exclusive).unwrap(), "upgrade");
}

/// Pins the `flock` conversion behaviour that `MemFs` models: the old lock is dropped
/// before the new one is tried.
#[test]
fn failed_try_lock_upgrade_leaves_the_handle_unlocked() {
    let dir = TestDir::new();
    let first = create(&dir, "lock");
    let second = create(&dir, "lock");
    first.lock(LockMode::Shared).unwrap();
    second.lock(LockMode::Shared).unwrap();
    assert!(!first.try_lock(LockMode::Exclusive).unwrap());
    assert!(second.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn dropping_a_handle_releases_its_lock() {
    let dir = TestDir::new();
    let holder = create(&dir, "lock");
    let other = create(&dir, "lock");
    holder.lock(LockMode::Exclusive).unwrap();
    drop(holder);
    assert!(other.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn blocking_lock_waits_until_the_holder_unlocks() {
    let dir = TestDir::new();
    let holder = create(&dir, "lock");
    let waiter = create(&dir, "lock");
    holder.lock(LockMode::Exclusive).unwrap();
    let acquired = Arc::new(AtomicBool::new(false));
    let (started_tx, started_rx) = mpsc::channel();
    let thread = thread::spawn({
        let acquired = Arc::clone(&acquired);
        move || {
            started_tx.send(()).unwrap();
            waiter.lock(LockMode::Exclusive).unwrap();
            acquired.store(true, Ordering::SeqCst);
        }
    });
    started_rx.recv().unwrap();
    // The pause only gives a wrong implementation the chance to be caught; a correct
    // one passes however the threads are scheduled.
    thread::sleep(Duration::from_millis(20));
    assert!(!acquired.load(Ordering::SeqCst));
    holder.unlock().unwrap();
    thread.join().unwrap();
    assert!(acquired.load(Ordering::SeqCst));
}

#[test]
fn a_mapped_file_shares_its_bytes_with_every_other_handle() {
    let dir = TestDir::new();
    let writer = create(&dir, "shm");
    writer.write_all_at(b"old", 0).expect("write");
    let reader = create(&dir, "shm");
    let map = reader
        .map_shared(4096)
        .expect("map")
        .expect("RealFs maps files");
    assert_eq!(map.len(), 4096);
    assert_eq!(
        writer.len().expect("len"),
        4096,
        "extended to the mapped size"
    );
    let mut bytes = [0u8; 3];
    assert!(map.read(0, &mut bytes));
    assert_eq!(&bytes, b"old");
    writer.write_all_at(b"new", 0).expect("write");
    assert!(map.read(0, &mut bytes));
    assert_eq!(&bytes, b"new");
    let mut tail = [1u8; 8];
    assert!(map.read(4088, &mut tail));
    assert_eq!(tail, [0u8; 8], "the extension reads as zeros");
    assert!(!map.read(4090, &mut tail), "past the mapping");
    assert!(!map.read(usize::MAX, &mut tail), "offset overflow");
    assert!(map.write(1, b"ap"));
    let mut read_back = [0u8; 3];
    writer.read_exact_at(&mut read_back, 0).expect("read");
    assert_eq!(
        &read_back, b"nap",
        "a write through the map is what pread returns"
    );
    assert!(!map.write(4095, b"xy"), "past the mapping");
    assert!(!map.write(usize::MAX, b"x"), "offset overflow");
}
