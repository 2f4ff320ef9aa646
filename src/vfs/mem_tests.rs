use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use super::*;

/// A filesystem with the directory `/db`.
fn fs_with_db_dir() -> MemFs {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/db")).unwrap();
    fs
}

fn create(fs: &MemFs, path: &str) -> Box<dyn VfsFile> {
    fs.open_file(Path::new(path), OpenMode::CreateOrOpen)
        .unwrap()
}

fn read_all(file: &dyn VfsFile) -> Vec<u8> {
    let mut buf = vec![0u8; usize::try_from(file.len().unwrap()).unwrap()];
    file.read_exact_at(&mut buf, 0).unwrap();
    buf
}

#[test]
fn write_then_read_returns_the_same_bytes() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/data");
    file.write_all_at(b"hello world", 3).unwrap();
    let mut buf = [0u8; 11];
    file.read_exact_at(&mut buf, 3).unwrap();
    assert_eq!(&buf, b"hello world");
    assert_eq!(file.len().unwrap(), 14);
    assert_eq!(&read_all(&*file)[..3], [0, 0, 0], "the gap reads as zeros");
}

#[test]
fn read_at_end_is_short_and_past_end_is_zero() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/data");
    file.write_all_at(b"abcdef", 0).unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(file.read_at(&mut buf, 4).unwrap(), 2);
    assert_eq!(&buf[..2], b"ef");
    assert_eq!(file.read_at(&mut buf, 6).unwrap(), 0);
    assert_eq!(file.read_at(&mut buf, u64::MAX).unwrap(), 0);
}

#[test]
fn read_exact_past_end_is_unexpected_eof() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/data");
    file.write_all_at(b"abc", 0).unwrap();
    let mut buf = [0u8; 4];
    let error = file.read_exact_at(&mut buf, 0).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn set_len_truncates_and_extends_with_zeros() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/data");
    file.write_all_at(b"abcdef", 0).unwrap();
    file.set_len(2).unwrap();
    assert_eq!(file.len().unwrap(), 2);
    file.set_len(5).unwrap();
    assert_eq!(read_all(&*file), b"ab\0\0\0");
}

#[test]
fn growing_past_the_size_limit_fails_without_allocating() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/data");
    let error = file.write_at(b"x", FILE_BYTES_MAX).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
    let error = file.write_at(b"x", u64::MAX).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
    let error = file.set_len(FILE_BYTES_MAX + 1).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::FileTooLarge);
    assert_eq!(file.len().unwrap(), 0);
}

#[test]
fn open_fails_when_the_file_or_its_directory_is_missing() {
    let fs = fs_with_db_dir();
    for mode in [OpenMode::Existing, OpenMode::ReadOnly] {
        let error = fs.open_file(Path::new("/db/missing"), mode).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound, "{mode:?}");
    }
    let error = fs
        .open_file(Path::new("/nodir/data"), OpenMode::CreateOrOpen)
        .unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
    assert!(!fs.exists(Path::new("/nodir/data")).unwrap());
}

#[test]
fn read_only_handle_refuses_writes_and_set_len() {
    let fs = fs_with_db_dir();
    create(&fs, "/db/data").write_all_at(b"abc", 0).unwrap();
    let file = fs
        .open_file(Path::new("/db/data"), OpenMode::ReadOnly)
        .unwrap();
    let error = file.write_at(b"x", 0).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    let error = file.set_len(0).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(read_all(&*file), b"abc");
}

#[test]
fn two_handles_see_each_others_writes() {
    let fs = fs_with_db_dir();
    let writer = create(&fs, "/db/data");
    let reader = create(&fs, "/db/./data");
    writer.write_all_at(b"shared", 0).unwrap();
    assert_eq!(read_all(&*reader), b"shared");
}

#[test]
fn clones_share_the_same_files() {
    let fs = fs_with_db_dir();
    let clone = fs.clone();
    create(&clone, "/db/data").write_all_at(b"abc", 0).unwrap();
    assert_eq!(fs.file_bytes(Path::new("/db/data")).unwrap(), b"abc");
}

#[test]
fn set_file_bytes_is_seen_by_open_handles() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/data");
    file.write_all_at(b"good", 0).unwrap();
    fs.set_file_bytes(Path::new("/db/data"), b"bad".to_vec());
    assert_eq!(read_all(&*file), b"bad");
    fs.set_file_bytes(Path::new("/other/new"), b"x".to_vec());
    assert!(fs.exists(Path::new("/other")).unwrap());
    assert_eq!(fs.file_bytes(Path::new("/other/new")).unwrap(), b"x");
    assert_eq!(fs.file_bytes(Path::new("/db/missing")), None);
}

#[test]
fn rename_replaces_the_target() {
    let fs = fs_with_db_dir();
    create(&fs, "/db/new").write_all_at(b"new", 0).unwrap();
    let old = create(&fs, "/db/old");
    old.write_all_at(b"old", 0).unwrap();
    fs.rename(Path::new("/db/new"), Path::new("/db/old"))
        .unwrap();
    fs.sync_dir(Path::new("/db")).unwrap();
    assert!(!fs.exists(Path::new("/db/new")).unwrap());
    assert_eq!(fs.file_bytes(Path::new("/db/old")).unwrap(), b"new");
    assert_eq!(
        read_all(&*old),
        b"old",
        "an open handle keeps the replaced file"
    );
}

#[test]
fn remove_file_keeps_the_data_of_open_handles() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/data");
    file.write_all_at(b"abc", 0).unwrap();
    fs.remove_file(Path::new("/db/data")).unwrap();
    assert!(!fs.exists(Path::new("/db/data")).unwrap());
    assert_eq!(read_all(&*file), b"abc");
    let error = fs.remove_file(Path::new("/db/data")).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
}

#[test]
fn list_dir_returns_full_paths_sorted() {
    let fs = fs_with_db_dir();
    for name in ["/db/c", "/db/a", "/db/b"] {
        create(&fs, name);
    }
    fs.create_dir_all(Path::new("/db/d/e")).unwrap();
    create(&fs, "/db/d/e/nested");
    let expected: Vec<PathBuf> = ["/db/a", "/db/b", "/db/c", "/db/d"]
        .map(PathBuf::from)
        .into();
    assert_eq!(fs.list_dir(Path::new("/db")).unwrap(), expected);
    let error = fs.list_dir(Path::new("/db/missing")).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
}

#[test]
fn create_dir_all_creates_every_ancestor() {
    let fs = MemFs::new();
    fs.create_dir_all(Path::new("/a/b/c")).unwrap();
    for path in ["/", "/a", "/a/b", "/a/b/c"] {
        assert!(fs.exists(Path::new(path)).unwrap(), "{path}");
        fs.sync_dir(Path::new(path)).unwrap();
    }
    let error = fs.sync_dir(Path::new("/missing")).unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::NotFound);
}

#[test]
fn paths_are_normalized_lexically() {
    assert_eq!(normalize(Path::new("/a/./b/../c/")), Path::new("/a/c"));
    assert_eq!(normalize(Path::new("/../a")), Path::new("/a"));
    assert_eq!(normalize(Path::new("../../a")), Path::new("../../a"));
}

#[test]
fn exclusive_lock_makes_try_lock_on_another_handle_fail() {
    let fs = fs_with_db_dir();
    let holder = create(&fs, "/db/lock");
    let other = create(&fs, "/db/lock");
    holder.lock(LockMode::Exclusive).unwrap();
    assert!(!other.try_lock(LockMode::Exclusive).unwrap());
    assert!(!other.try_lock(LockMode::Shared).unwrap());
    holder.unlock().unwrap();
    assert!(other.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn shared_locks_on_two_handles_are_compatible() {
    let fs = fs_with_db_dir();
    let first = create(&fs, "/db/lock");
    let second = create(&fs, "/db/lock");
    first.lock(LockMode::Shared).unwrap();
    assert!(second.try_lock(LockMode::Shared).unwrap());
    assert!(!first.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn relocking_a_handle_does_not_conflict_with_itself() {
    let fs = fs_with_db_dir();
    let file = create(&fs, "/db/lock");
    file.lock(LockMode::Exclusive).unwrap();
    assert!(file.try_lock(LockMode::Exclusive).unwrap());
    file.lock(LockMode::Exclusive).unwrap();
    assert!(file.try_lock(LockMode::Shared).unwrap(), "downgrade");
    assert!(file.try_lock(LockMode::Exclusive).unwrap(), "upgrade");
}

/// Linux `flock` drops the old lock before trying the new one; the model does the same.
#[test]
fn failed_try_lock_upgrade_leaves_the_handle_unlocked() {
    let fs = fs_with_db_dir();
    let first = create(&fs, "/db/lock");
    let second = create(&fs, "/db/lock");
    first.lock(LockMode::Shared).unwrap();
    second.lock(LockMode::Shared).unwrap();
    assert!(!first.try_lock(LockMode::Exclusive).unwrap());
    assert!(second.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn dropping_a_handle_releases_its_lock() {
    let fs = fs_with_db_dir();
    let holder = create(&fs, "/db/lock");
    let other = create(&fs, "/db/lock");
    holder.lock(LockMode::Exclusive).unwrap();
    drop(holder);
    assert!(other.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn locks_of_different_files_are_independent() {
    let fs = fs_with_db_dir();
    let first = create(&fs, "/db/one");
    let second = create(&fs, "/db/two");
    first.lock(LockMode::Exclusive).unwrap();
    assert!(second.try_lock(LockMode::Exclusive).unwrap());
}

#[test]
fn blocking_lock_waits_until_the_holder_unlocks() {
    let fs = fs_with_db_dir();
    let holder = create(&fs, "/db/lock");
    let waiter = create(&fs, "/db/lock");
    holder.lock(LockMode::Shared).unwrap();
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
fn two_shared_holders_upgrading_at_once_do_not_deadlock() {
    let fs = fs_with_db_dir();
    let first = create(&fs, "/db/lock");
    let second = create(&fs, "/db/lock");
    first.lock(LockMode::Shared).unwrap();
    second.lock(LockMode::Shared).unwrap();
    let thread = thread::spawn(move || {
        second.lock(LockMode::Exclusive).unwrap();
        second.unlock().unwrap();
    });
    first.lock(LockMode::Exclusive).unwrap();
    first.unlock().unwrap();
    thread.join().unwrap();
}
