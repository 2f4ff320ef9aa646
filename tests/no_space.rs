//! A full disk: an error from a write means it did not commit, and a write that committed
//! never reports an error.
//!
//! Found by a new user on a full disk: `store_memory` returned `Err(Io: No space left on
//! device)` although its frames were written (zeroing the space ahead of the log had
//! failed, not the commit); the memory was in every scan at once and after reopen, and a
//! caller that retried stored it twice. The simulator's oracle now demands that a write
//! that returned an error (other than `OutcomeUnknown`, or a process death) never appears;
//! with the bug put back, 70 of 300 `--faults io` seeds fail it (see
//! `sim/tests/errors_mean_not_committed.rs`).

use mentedb_storage::vfs::{LockMode, MemFs, OpenMode, SharedView, Vfs, VfsFile};
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, StorageEngine};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// What the wrapped disk refuses with `ENOSPC`.
#[derive(Debug, Default)]
struct Refusals {
    /// Runs of zeros written to `wal.log` (the space the log preallocates ahead).
    zeros: AtomicBool,
    /// Any write to `wal.log`.
    everything: AtomicBool,
}

#[derive(Debug)]
struct FullDisk {
    inner: MemFs,
    refusals: Arc<Refusals>,
}

#[derive(Debug)]
struct FullFile {
    inner: Box<dyn VfsFile>,
    wal: bool,
    refusals: Arc<Refusals>,
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "No space left on device (test)")
}

impl VfsFile for FullFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        if self.wal {
            let zeros = buf.len() >= 4096 && buf.iter().all(|byte| *byte == 0);
            if self.refusals.everything.load(Ordering::Acquire)
                || (zeros && self.refusals.zeros.load(Ordering::Acquire))
            {
                return Err(no_space());
            }
        }
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
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
    fn map_shared(&self, len: usize) -> io::Result<Option<Box<dyn SharedView>>> {
        self.inner.map_shared(len)
    }
}

impl Vfs for FullDisk {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(FullFile {
            inner: self.inner.open_file(path, mode)?,
            wal: path.file_name().is_some_and(|name| name == "wal.log"),
            refusals: Arc::clone(&self.refusals),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

/// About 2 KiB that LZ4 cannot shrink much, so the log grows as it would with real data.
fn node(index: usize) -> MemoryNode {
    let mut state = index as u64 * 0x9e37_79b9_7f4a_7c15 + 1;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let content: String = (0..600)
        .map(|_| (b'a' + (next() % 26) as u8) as char)
        .collect();
    let embedding = (0..384)
        .map(|_| (next() % 10_000) as f32 / 10_000.0)
        .collect();
    MemoryNode::new(AgentId::new(), MemoryType::Semantic, content, embedding)
}

fn open(disk: &Arc<FullDisk>) -> StorageEngine {
    StorageEngine::open_with(Path::new("/db"), Options::default().vfs(disk.clone())).expect("open")
}

#[test]
fn a_store_whose_preallocation_fails_on_a_full_disk_commits_and_says_so() {
    let disk = Arc::new(FullDisk {
        inner: MemFs::new(),
        refusals: Arc::new(Refusals::default()),
    });
    let engine = open(&disk);
    disk.refusals.zeros.store(true, Ordering::Release);
    // Enough stores to run past the preallocated megabyte: each append there tries to
    // zero the space ahead and is refused.
    let stored: Vec<_> = (0..700)
        .map(|index| {
            let node = node(index);
            (
                engine
                    .store_memory(&node)
                    .expect("a committed store returns Ok"),
                node,
            )
        })
        .collect();
    assert!(
        engine.wal_bytes() > 1 << 20,
        "the log ran past its first megabyte"
    );
    drop(engine);
    disk.refusals.zeros.store(false, Ordering::Release);
    let engine = open(&disk);
    for (id, node) in &stored {
        assert_eq!(&engine.load_memory(*id).expect("load"), node);
    }
    assert_eq!(engine.scan_memories().count(), stored.len());
}

#[test]
fn a_store_refused_by_a_full_disk_never_appears() {
    let disk = Arc::new(FullDisk {
        inner: MemFs::new(),
        refusals: Arc::new(Refusals::default()),
    });
    let engine = open(&disk);
    let kept = engine.store_memory(&node(1)).expect("store");
    disk.refusals.everything.store(true, Ordering::Release);
    for index in 0..20 {
        match engine.store_memory(&node(100 + index)) {
            Err(Error::Io { .. }) => {}
            other => panic!("a refused append gave {other:?}"),
        }
    }
    assert_eq!(
        engine.scan_memories().count(),
        1,
        "no refused store is visible"
    );
    disk.refusals.everything.store(false, Ordering::Release);
    let after = engine
        .store_memory(&node(2))
        .expect("store once there is room");
    drop(engine);
    let engine = open(&disk);
    let live: Vec<_> = engine
        .scan_memories()
        .map(|item| item.expect("scan").0)
        .collect();
    assert_eq!(live, vec![kept, after]);
}
