//! Group commit: concurrent durable committers share one `fdatasync` of the WAL instead of
//! issuing one each, and every one of them is still durable on return.

use mentedb_storage::vfs::{LockMode, MemFs, OpenMode, Vfs, VfsFile};
use mentedb_storage::{
    AgentId, Error, MemoryNode, MemoryType, Options, RecordId, StorageEngine, WalEntryType,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A MemFs whose WAL syncs take a millisecond and are counted.
#[derive(Debug)]
struct SlowSyncFs {
    inner: MemFs,
    wal_syncs: Arc<AtomicU64>,
}

#[derive(Debug)]
struct SlowSyncFile {
    inner: Box<dyn VfsFile>,
    counter: Option<Arc<AtomicU64>>,
}

impl Vfs for SlowSyncFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let is_wal = path.file_name().is_some_and(|name| name == "wal.log");
        Ok(Box::new(SlowSyncFile {
            inner: self.inner.open_file(path, mode)?,
            counter: is_wal.then(|| Arc::clone(&self.wal_syncs)),
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

impl VfsFile for SlowSyncFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        if let Some(counter) = &self.counter {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        }
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
}

#[test]
fn concurrent_durable_stores_share_fdatasyncs_and_all_survive_a_crash() {
    const THREADS: usize = 8;
    const STORES_PER_THREAD: usize = 50;
    let memfs = MemFs::new();
    let wal_syncs = Arc::new(AtomicU64::new(0));
    let vfs = Arc::new(SlowSyncFs {
        inner: memfs.clone(),
        wal_syncs: Arc::clone(&wal_syncs),
    });
    let dir = Path::new("/group-commit");
    let engine = StorageEngine::open_with(dir, Options::default().vfs(vfs)).expect("open");
    let syncs_at_start = wal_syncs.load(Ordering::SeqCst);
    let stored = store_from_threads(&engine, THREADS, STORES_PER_THREAD);
    let commits = (THREADS * STORES_PER_THREAD) as u64;
    let syncs = wal_syncs.load(Ordering::SeqCst) - syncs_at_start;
    assert!(syncs >= 1);
    assert!(
        syncs <= commits / 2,
        "{syncs} WAL syncs for {commits} concurrent commits: committers did not share syncs"
    );
    drop(engine);
    let reopened =
        StorageEngine::open_with(dir, Options::default().vfs(Arc::new(memfs))).expect("reopen");
    for (id, node) in stored {
        assert_eq!(reopened.load_memory(id).expect("load"), node);
    }
}

#[test]
fn normal_sync_mode_syncs_the_wal_once_per_configured_number_of_commits() {
    let wal_syncs = Arc::new(AtomicU64::new(0));
    let vfs = Arc::new(SlowSyncFs {
        inner: MemFs::new(),
        wal_syncs: Arc::clone(&wal_syncs),
    });
    let options = Options::default()
        .vfs(vfs)
        .sync_mode(mentedb_storage::SyncMode::Normal)
        .normal_sync_commits(10);
    let engine = StorageEngine::open_with(Path::new("/normal"), options).expect("open");
    let syncs_at_start = wal_syncs.load(Ordering::SeqCst);
    for index in 0..100 {
        let node = MemoryNode::new(
            AgentId::new(),
            MemoryType::Working,
            format!("n{index}"),
            vec![],
        );
        engine.store_memory(&node).expect("store");
    }
    assert_eq!(wal_syncs.load(Ordering::SeqCst) - syncs_at_start, 10);
}

fn slow_engine(memfs: &MemFs, dir: &Path) -> StorageEngine {
    let vfs = Arc::new(SlowSyncFs {
        inner: memfs.clone(),
        wal_syncs: Arc::new(AtomicU64::new(0)),
    });
    StorageEngine::open_with(dir, Options::default().vfs(vfs)).expect("open")
}

fn working(text: String) -> MemoryNode {
    MemoryNode::new(AgentId::new(), MemoryType::Working, text, vec![0.5; 32])
}

/// Durable single stores from `threads` threads at once; every handle with its node.
fn store_from_threads(
    engine: &StorageEngine,
    threads: usize,
    per_thread: usize,
) -> Vec<(RecordId, MemoryNode)> {
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|thread| {
                scope.spawn(move || {
                    (0..per_thread)
                        .map(|index| {
                            let node = working(format!("thread {thread} store {index}"));
                            (engine.store_memory(&node).expect("store"), node)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().expect("worker"))
            .collect()
    })
}

/// Single stores from concurrent threads are batched: one leader commits the stores queued
/// while the previous sync ran as one transaction, so the WAL holds far fewer commits than
/// stores, and each store still comes back alone, durable and intact.
#[test]
fn concurrent_single_stores_share_transactions() {
    const THREADS: usize = 8;
    const STORES_PER_THREAD: usize = 25;
    let memfs = MemFs::new();
    let dir = Path::new("/batched");
    let engine = slow_engine(&memfs, dir);
    let stored = store_from_threads(&engine, THREADS, STORES_PER_THREAD);
    let frames = engine.wal_frames().expect("wal frames");
    let commits = frames.frames[..frames.committed]
        .iter()
        .filter(|frame| frame.kind == WalEntryType::Commit)
        .count();
    let stores = THREADS * STORES_PER_THREAD;
    assert!(
        commits <= stores / 2,
        "{commits} commits for {stores} concurrent stores: the stores were not batched"
    );
    let mut ids: Vec<_> = stored.iter().map(|(id, _)| *id).collect();
    ids.sort_unstable_by_key(|id| id.to_u128());
    ids.dedup();
    assert_eq!(ids.len(), stores, "every store has its own handle");
    drop(engine);
    let reopened = slow_engine(&memfs, dir);
    for (id, node) in stored {
        assert_eq!(reopened.load_memory(id).expect("load"), node);
    }
}

/// Batched stores run beside updates and deletes from other threads; every result is what
/// it would be alone.
#[test]
fn batched_stores_mix_with_concurrent_updates_and_deletes() {
    let memfs = MemFs::new();
    let dir = Path::new("/mixed");
    let engine = slow_engine(&memfs, dir);
    let seeded: Vec<_> = (0..20)
        .map(|index| {
            let node = working(format!("seed {index}"));
            (engine.store_memory(&node).expect("store"), node)
        })
        .collect();
    let (stored, updated) = std::thread::scope(|scope| {
        let storers: Vec<_> = (0..4)
            .map(|thread| {
                let engine = &engine;
                scope.spawn(move || {
                    (0..20)
                        .map(|index| {
                            let node = working(format!("t{thread} n{index}"));
                            (engine.store_memory(&node).expect("store"), node)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let engine = &engine;
        let seeded = &seeded;
        let changer = scope.spawn(move || {
            let mut updated = Vec::new();
            for (index, (id, _)) in seeded.iter().enumerate() {
                if index % 2 == 0 {
                    engine.delete_memory(*id).expect("delete");
                } else {
                    let node = working(format!("updated {index} {}", "u".repeat(index * 40)));
                    engine.update_memory(*id, &node).expect("update");
                    updated.push((*id, node));
                }
            }
            updated
        });
        let stored: Vec<_> = storers
            .into_iter()
            .flat_map(|storer| storer.join().expect("storer"))
            .collect();
        (stored, changer.join().expect("changer"))
    });
    drop(engine);
    let reopened = slow_engine(&memfs, dir);
    for (id, node) in stored.iter().chain(updated.iter()) {
        assert_eq!(&reopened.load_memory(*id).expect("load"), node);
    }
    for (id, _) in seeded.iter().step_by(2) {
        assert!(matches!(reopened.load_memory(*id), Err(Error::NotFound)));
    }
    assert!(reopened.check_integrity().expect("integrity").is_clean());
}
