//! [`StorageEngine`]: the facade that stores, loads, updates, deletes and scans memory
//! nodes, and owns recovery, checkpoints and the multi-process protocol.
//!
//! # Durability
//! A write runs as a transaction (module `txn`): its pages are logged to the WAL, one commit
//! frame ends it, and in [`SyncMode::Full`] the call returns only after an `fdatasync`
//! covering it (shared with concurrent committers). `pages.db` is written only by
//! checkpoints: changed pages live in the WAL until then (the view's index says where),
//! so eviction never writes, and recovery is simply reading the WAL: a crash at any point
//! leaves either the old or the new committed state, and "recovery" is the same scan any
//! process does to catch up — idempotent by construction, nothing is rewritten at open.
//!
//! # Several processes
//! Writers take an exclusive `flock` on `wal.log` for the duration of a transaction and,
//! under it, catch up with the WAL frames other processes committed. Reads take no lock:
//! they check the shared counter `wal.shm` and catch up if it moved, then read pages from
//! the cache, the WAL or `pages.db`. We chose readers-look-up-the-WAL (SQLite's idea) over
//! writing pages through at every commit because it keeps `pages.db` untouched between
//! checkpoints (no torn data pages outside checkpoints, no write amplification per commit)
//! and works the same in both sync modes. A read that meets a WAL reset or a page being
//! rewritten by another process's checkpoint retries a bounded number of times.
//!
//! # Failures
//! A failed `fdatasync` poisons the instance: every later write returns
//! [`Error::Poisoned`]; reopen to recover. A failed operation changes nothing.
//!
//! On Linux a failed `fdatasync` marks the lost pages clean, so the page cache keeps showing
//! bytes the disk never got and a later sync does not write them. A poisoned instance
//! therefore leaves a mark in `wal.shm`, and the next open (in any process) rewrites the
//! meta pages and the whole WAL and syncs them before it trusts them.

mod checkpoint;
mod commit;
use commit::{Commit, next_salt};
mod compact;
mod durability;
mod group;
mod inspect;
mod integrity;
mod locks;
use locks::WalLock;
mod open;
pub(crate) use open::new_database_id;
use open::{check_directory, initial_meta, name_directory};
mod options;
mod page_reads;
mod record_reads;
mod records;
mod scan;
mod seal;
mod shm;
mod snapshot;
mod space;
mod txn;
mod view;

pub use compact::{COMPACT_BATCH_RECORDS, CompactProgress, CompactReport};
pub use inspect::{DatabaseStats, WalFrames};
pub use integrity::{IntegrityProblem, IntegrityReport};
pub use options::{
    BUFFER_POOL_PAGES_DEFAULT, BUFFER_POOL_PAGES_MAX, BUFFER_POOL_PAGES_MIN,
    CHECKPOINT_WAL_BYTES_DEFAULT, LOCK_TIMEOUT_DEFAULT, NORMAL_SYNC_COMMITS_DEFAULT, Options,
    RECORD_MAP_POOL_PAGES_MIN, RECORD_MAP_SHARE, SyncMode,
};
pub use scan::ScanIter;
pub use seal::{SEAL_FILE_NAME, SEAL_RECORD_BYTES, SEAL_SLOT_STRIDE};
pub use shm::SHM_FILE_NAME;
pub use snapshot::Snapshot;

use crate::buffer::{BufferPool, BufferStats};
use crate::error::{Error, Result};
use crate::memory::{MemoryNode, decode_record, encode_record};
use crate::page::{Lsn, Page, PageId};
use crate::pager::{AllocState, Meta, PAGE_FILE_NAME, PageFile};
use crate::record_id::{DatabaseId, RecordId};
use crate::record_map::{RecordMapStats, RecordMaps};
use crate::wal::{FrameInfo, WAL_FILE_NAME, Wal, WalCursor};
use open::prepare_directory;
/// `SharedCounter` is also for salvage, which reads the durable-LSN record of `wal.shm`.
pub(crate) use shm::SharedCounter;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use txn::Txn;
use view::{CacheUpdate, View};

/// Most nodes in one batch.
pub const BATCH_NODES_MAX: usize = 100_000;
/// Most record bytes one write transaction carries (its pages are bounded by
/// `txn::TXN_PAGES_MAX`, 256 MiB; this leaves room for the pages that record them).
pub const TXN_RECORD_BYTES_MAX: u64 = 192 << 20;

/// Refuses a batch whose records cannot fit one transaction, before anything is encoded:
/// the error gives the batch's size (at least the bytes of its embeddings and strings).
fn check_batch_size<'n>(nodes: impl Iterator<Item = &'n MemoryNode>) -> Result<()> {
    let size: u64 = nodes
        .map(|node| node.record_size_lower_bound() as u64)
        .sum();
    if size > TXN_RECORD_BYTES_MAX {
        return Err(Error::TooLarge {
            what: "transaction (the records of one batch: split it)",
            size,
            limit: TXN_RECORD_BYTES_MAX,
        });
    }
    Ok(())
}

/// State only writers touch, under the writer mutex.
#[derive(Debug, Default)]
pub(crate) struct WriterState {
    /// The writer's index of the space map.
    space: space::SpaceCache,
}

/// The shared innards of an open engine.
#[derive(Debug)]
pub(crate) struct Inner {
    dir: PathBuf,
    options: Options,
    pages: PageFile,
    wal: Wal,
    shm: SharedCounter,
    /// `wal.seal` (see `seal`): written in [`SyncMode::Sealed`], read by every open.
    seal: seal::SealFile,
    pool: BufferPool,
    /// Record maps of pages the pool evicted (a share of the pool's budget).
    maps: RecordMaps,
    /// Loads answered through a record map.
    map_reads: AtomicU64,
    /// The encoded frames of the last commit, kept for the next one (writers only).
    frame_buffer: Mutex<Vec<u8>>,
    view: RwLock<View>,
    /// Bumped when the view is taken for writing and again when it is released.
    view_changes: AtomicU64,
    writer: Mutex<WriterState>,
    /// Single stores of this process's threads waiting to be committed together.
    group: group::StoreGroup,
    shm_seen: AtomicU64,
    /// Threads of this process between starting a write and appending its commit.
    committers: AtomicUsize,
    commits_unsynced: AtomicU32,
    closed: AtomicBool,
    poison: Mutex<Option<String>>,
    /// Problems a read-only open met and went past (see `open`).
    notes: Mutex<Vec<IntegrityProblem>>,
    /// True while a read-only open reads the database (see `open`).
    salvaging: AtomicBool,
    /// A read-only open went past damage: the view stays as the open built it (the log
    /// cannot be followed past the damage), and refreshes leave it so.
    frozen: AtomicBool,
}

/// The view held for writing: bumps the view-change counter when taken and when dropped,
/// like a sequence lock, so a lock-free reader that saw the same even count before and after
/// its reads knows the view and the cached pages did not change under it.
pub(crate) struct ViewWrite<'a> {
    guard: RwLockWriteGuard<'a, View>,
    changes: &'a AtomicU64,
}

impl std::ops::Deref for ViewWrite<'_> {
    type Target = View;
    fn deref(&self) -> &View {
        &self.guard
    }
}

impl std::ops::DerefMut for ViewWrite<'_> {
    fn deref_mut(&mut self) -> &mut View {
        &mut self.guard
    }
}

impl Drop for ViewWrite<'_> {
    fn drop(&mut self) {
        self.changes.fetch_add(1, Ordering::AcqRel);
    }
}

impl Inner {
    fn read_view(&self) -> RwLockReadGuard<'_, View> {
        crate::sched::read(&self.view)
    }

    /// The view for changing it (and the cached pages with it). Counts as a change of the
    /// view from taking it to dropping it (see [`ViewWrite`]).
    fn write_view(&self) -> ViewWrite<'_> {
        let guard = crate::sched::write(&self.view);
        self.view_changes.fetch_add(1, Ordering::AcqRel);
        ViewWrite {
            guard,
            changes: &self.view_changes,
        }
    }

    /// The view-change counter now: odd while someone holds the view for writing. Two equal
    /// even readings bracket a time in which neither the view nor the pages cached for it
    /// changed in this process.
    pub(crate) fn view_changes(&self) -> u64 {
        self.view_changes.load(Ordering::Acquire)
    }

    fn lock_writer(&self) -> MutexGuard<'_, WriterState> {
        crate::sched::lock(&self.writer)
    }

    fn poison_reason(&self) -> Option<String> {
        let own = crate::sched::lock(&self.poison).clone();
        own.or_else(|| self.wal.poisoned())
    }

    /// Marks the instance unusable for writes after a failed sync.
    fn poison(&self, reason: String) -> Error {
        // Best effort: if even this write fails, the next open cannot know to rewrite.
        let _ = self.shm.mark_sync_failed();
        *crate::sched::lock(&self.poison) = Some(reason.clone());
        Error::Poisoned(reason)
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.options.is_read_only() {
            return Err(Error::InvalidArgument(format!(
                "{} was opened read-only: nothing is written",
                self.dir.display()
            )));
        }
        match self.poison_reason() {
            Some(reason) => Err(Error::Poisoned(reason)),
            None => Ok(()),
        }
    }
}

/// One operation of [`StorageEngine::apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    /// Store a new node (its handle is returned).
    Store(MemoryNode),
    /// Replace the node a handle names.
    Update(RecordId, MemoryNode),
    /// Delete the node a handle names.
    Delete(RecordId),
}

/// A crash-safe store of memory nodes in one database directory.
///
/// Thread-safe: share it (`&StorageEngine` or `Arc`) between threads. Several processes may
/// open the same directory at once.
///
/// # Errors of writes
/// Every write ([`store_memory`](Self::store_memory),
/// [`store_memory_batch`](Self::store_memory_batch), [`update_memory`](Self::update_memory),
/// [`delete_memory`](Self::delete_memory), [`delete_memory_batch`](Self::delete_memory_batch),
/// [`apply`](Self::apply)) is one atomic commit, and its result says what happened:
/// - `Ok`: committed (and, in [`SyncMode::Full`], durable).
/// - [`Error::OutcomeUnknown`]: it may or may not have committed (its `fdatasync` failed,
///   or a failed append could not be undone); after a reopen it is wholly there or wholly
///   absent. Look before retrying. The instance then refuses writes.
/// - Any other error: it did not commit and never will be seen — [`Error::NotFound`],
///   [`Error::InvalidArgument`], [`Error::TooLarge`], [`Error::Io`] (a failed write is
///   undone before the error returns), [`Error::Corruption`], [`Error::Poisoned`] (an
///   earlier failure; reopen), [`Error::Closed`]. Retrying is safe.
#[derive(Debug)]
pub struct StorageEngine {
    inner: Inner,
}

impl StorageEngine {
    /// Opens (creating if needed) the database in directory `path` with default options.
    pub fn open(path: &Path) -> Result<StorageEngine> {
        StorageEngine::open_with(path, Options::default())
    }

    /// Opens (creating if needed) the database in directory `path`.
    ///
    /// Refuses, creating nothing: an empty path, a path that is not a directory, and a
    /// directory holding another engine's database (mentedb-storage 0.45's `records.db`).
    /// Errors about the database's files name the directory (`<dir>/wal.log`).
    pub fn open_with(path: &Path, options: Options) -> Result<StorageEngine> {
        options.validate()?;
        check_directory(&*options.vfs, path)?;
        StorageEngine::open_in(path, options).map_err(|error| name_directory(error, path))
    }

    fn open_in(path: &Path, options: Options) -> Result<StorageEngine> {
        let vfs = Arc::clone(&options.vfs);
        let access = options.access;
        prepare_directory(&*vfs, path, access)?;
        let inner = Inner {
            dir: path.to_path_buf(),
            pages: PageFile::open(&*vfs, &path.join(PAGE_FILE_NAME), access)?,
            wal: Wal::open(&*vfs, &path.join(WAL_FILE_NAME), access)?,
            shm: SharedCounter::open(&*vfs, &path.join(SHM_FILE_NAME), access)?,
            seal: seal::SealFile::open(
                &*vfs,
                &path.join(SEAL_FILE_NAME),
                access,
                options.sync_mode == SyncMode::Sealed,
            )?,
            pool: BufferPool::new(options.pool_split().0),
            maps: RecordMaps::new(options.pool_split().1),
            map_reads: AtomicU64::new(0),
            frame_buffer: Mutex::new(Vec::new()),
            // Replaced by the first refresh, which reads the meta page.
            view: RwLock::new(View::checkpointed(initial_meta(DatabaseId(1)), None)),
            view_changes: AtomicU64::new(0),
            writer: Mutex::new(WriterState::default()),
            group: group::StoreGroup::default(),
            shm_seen: AtomicU64::new(0),
            committers: AtomicUsize::new(0),
            commits_unsynced: AtomicU32::new(0),
            closed: AtomicBool::new(false),
            poison: Mutex::new(None),
            notes: Mutex::new(Vec::new()),
            salvaging: AtomicBool::new(false),
            frozen: AtomicBool::new(false),
            options,
        };
        match access {
            crate::vfs::Access::ReadWrite => inner.recover(&*vfs, path)?,
            crate::vfs::Access::ReadOnly => inner.open_read_only()?,
        }
        Ok(StorageEngine { inner })
    }

    /// What a read-only open met and went past (WAL damage, a log that does not fit the
    /// meta page and was set aside, lost acknowledged commits, a writer's failed sync);
    /// empty for a read-write open, which repairs or refuses such a database.
    pub fn open_notes(&self) -> Vec<IntegrityProblem> {
        crate::sched::lock(&self.inner.notes).clone()
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// The filesystem the engine does its I/O through.
    pub(crate) fn vfs(&self) -> &dyn crate::vfs::Vfs {
        &*self.inner.options.vfs
    }

    /// Stores a node; returns its handle. Durable on return in [`SyncMode::Full`].
    ///
    /// Errors: see [Errors of writes](StorageEngine#errors-of-writes).
    pub fn store_memory(&self, node: &MemoryNode) -> Result<RecordId> {
        let mut record = Vec::new();
        encode_record(node, &mut record)?;
        self.inner.store_grouped(record)
    }

    /// Stores several nodes atomically (all or none) in one commit; returns their handles
    /// in order.
    ///
    /// Errors: see [Errors of writes](StorageEngine#errors-of-writes).
    pub fn store_memory_batch(&self, nodes: &[MemoryNode]) -> Result<Vec<RecordId>> {
        if nodes.len() > BATCH_NODES_MAX {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} nodes is over the limit of {BATCH_NODES_MAX}",
                nodes.len()
            )));
        }
        check_batch_size(nodes.iter())?;
        let mut records = Vec::with_capacity(nodes.len());
        for node in nodes {
            let mut record = Vec::new();
            encode_record(node, &mut record)?;
            records.push(record);
        }
        self.inner.write(|txn| {
            records
                .iter()
                .map(|record| txn.insert_record(record))
                .collect()
        })
    }

    /// Loads the node a handle names; [`Error::NotFound`] for a deleted or stale handle.
    ///
    /// A node whose page is cached is decoded from the cached page. Otherwise, if the page
    /// was cached before and its record map is kept ([`crate::record_map`]), only the node's
    /// bytes are read from `pages.db` and checked against the checksum taken when the page
    /// was verified; else the whole page is read, verified and cached.
    pub fn load_memory(&self, id: RecordId) -> Result<MemoryNode> {
        self.inner.check_open()?;
        let published = self.inner.refresh_if_changed()?;
        let decode = |bytes: &[u8]| {
            decode_record(bytes).map_err(|error| error.at(PAGE_FILE_NAME, id.page_id().offset()))
        };
        self.inner.load_record(id, true, published, &decode)
    }

    /// Replaces the node a handle names. The handle stays valid, even if the node grew past
    /// what its page can hold.
    ///
    /// Errors: see [Errors of writes](StorageEngine#errors-of-writes).
    pub fn update_memory(&self, id: RecordId, node: &MemoryNode) -> Result<()> {
        self.inner.check_writable()?;
        let mut record = Vec::new();
        encode_record(node, &mut record)?;
        self.inner.write(|txn| txn.update_record(id, &record))
    }

    /// Deletes the node a handle names; later loads of the handle give [`Error::NotFound`].
    ///
    /// Errors: see [Errors of writes](StorageEngine#errors-of-writes).
    pub fn delete_memory(&self, id: RecordId) -> Result<()> {
        self.inner.write(|txn| txn.delete_record(id))
    }

    /// Deletes several nodes atomically (all or none) in one commit. A handle that names
    /// no live node fails the whole batch with [`Error::NotFound`] (nothing is deleted);
    /// a handle given twice is [`Error::InvalidArgument`].
    ///
    /// Errors: see [Errors of writes](StorageEngine#errors-of-writes).
    pub fn delete_memory_batch(&self, ids: &[RecordId]) -> Result<()> {
        let ops: Vec<WriteOp> = ids.iter().map(|id| WriteOp::Delete(*id)).collect();
        self.apply(&ops).map(|_| ())
    }

    /// Applies stores, updates and deletes atomically (all or none) in one commit and one
    /// `fdatasync`; returns, for each operation in order, the handle a store got (`None`
    /// for updates and deletes). Fails as a whole, changing nothing, if an update or delete
    /// names no live node ([`Error::NotFound`]), a handle appears in two operations
    /// ([`Error::InvalidArgument`]: their order would matter), a node does not encode, or
    /// the batch is over [`BATCH_NODES_MAX`] operations.
    ///
    /// Errors: see [Errors of writes](StorageEngine#errors-of-writes).
    pub fn apply(&self, ops: &[WriteOp]) -> Result<Vec<Option<RecordId>>> {
        if ops.len() > BATCH_NODES_MAX {
            return Err(Error::InvalidArgument(format!(
                "a batch of {} operations is over the limit of {BATCH_NODES_MAX}",
                ops.len()
            )));
        }
        check_batch_size(ops.iter().filter_map(|op| match op {
            WriteOp::Store(node) | WriteOp::Update(_, node) => Some(node),
            WriteOp::Delete(_) => None,
        }))?;
        let mut targets = std::collections::BTreeSet::new();
        let mut encoded = Vec::with_capacity(ops.len());
        for op in ops {
            let record = match op {
                WriteOp::Store(node) | WriteOp::Update(_, node) => {
                    let mut record = Vec::new();
                    encode_record(node, &mut record)?;
                    record
                }
                WriteOp::Delete(_) => Vec::new(),
            };
            if let WriteOp::Update(id, _) | WriteOp::Delete(id) = op
                && !targets.insert(*id)
            {
                return Err(Error::InvalidArgument(format!(
                    "{id} appears in two operations of one batch"
                )));
            }
            encoded.push(record);
        }
        self.inner.write(|txn| {
            ops.iter()
                .zip(&encoded)
                .map(|(op, record)| match op {
                    WriteOp::Store(_) => txn.insert_record(record).map(Some),
                    WriteOp::Update(id, _) => txn.update_record(*id, record).map(|()| None),
                    WriteOp::Delete(id) => txn.delete_record(*id).map(|()| None),
                })
                .collect()
        })
    }

    /// Streams every live node with its handle, page by page. Pages not already cached are
    /// read without being cached, so a scan does not flush the working set.
    pub fn scan_memories(&self) -> ScanIter<'_> {
        ScanIter::new(&self.inner)
    }

    /// Writes every page changed since the last checkpoint into `pages.db`, makes it durable,
    /// and empties the WAL. Waits while a snapshot (a backup, in any process) is open.
    pub fn checkpoint(&self) -> Result<()> {
        self.inner.checkpoint(true).map(|_| ())
    }

    /// Moves records and overflow chains from the end of the file into room nearer its
    /// start and gives the freed tail back to the file system; handles stay valid. Runs
    /// in small transactions while other threads and processes read and write; see
    /// [`CompactReport`] for what it did. Handle pages do not move, so a handle page that
    /// still holds a live handle keeps its place.
    pub fn compact(&self) -> Result<CompactReport> {
        self.inner.compact(&mut |_| {})
    }

    /// [`StorageEngine::compact`], calling `progress` as it goes (for a progress bar).
    pub fn compact_with_progress(
        &self,
        progress: &mut dyn FnMut(CompactProgress),
    ) -> Result<CompactReport> {
        self.inner.compact(progress)
    }

    /// Opens a snapshot: the pages of the database at the last commit, readable while other
    /// threads and processes keep writing. Checkpoints wait (automatic ones skip) until it
    /// is dropped; see [`crate::backup`] for the use it is made for.
    pub fn snapshot(&self) -> Result<Snapshot<'_>> {
        self.inner.snapshot()
    }

    /// Checkpoints (unless a backup holds a snapshot) and closes. Dropping the engine
    /// without `close` is safe too: every acknowledged write is in the WAL and the next
    /// open finds it.
    pub fn close(self) -> Result<()> {
        if self.inner.options.is_read_only() {
            self.inner.closed.store(true, Ordering::Release);
            return Ok(());
        }
        self.inner.check_writable()?;
        let result = self.inner.checkpoint(false).map(|_| ());
        self.inner.closed.store(true, Ordering::Release);
        result
    }

    /// Verifies every page and that every page is accounted for exactly once (data, owned
    /// overflow, or on the free list). Corruption is reported in the result; `Err` only for
    /// I/O failures or a closed engine. Checks the state at the last commit, holding the
    /// writer locks meanwhile: writers in every process wait until it is done.
    pub fn check_integrity(&self) -> Result<IntegrityReport> {
        self.inner.check_integrity()
    }

    /// Buffer pool counters.
    pub fn buffer_stats(&self) -> BufferStats {
        self.inner.pool.stats()
    }

    /// What the record maps of evicted pages hold and how many loads they answered.
    pub fn record_map_stats(&self) -> RecordMapStats {
        let (maps, bytes) = self.inner.maps.usage();
        RecordMapStats {
            maps,
            bytes,
            budget_bytes: self.inner.options.pool_split().1,
            reads: self.inner.map_reads.load(Ordering::Relaxed),
        }
    }

    /// Pages in the database file (meta pages included), as of the last commit seen.
    pub fn page_count(&self) -> u64 {
        self.inner.read_view().alloc.page_count
    }

    /// Bytes of WAL in use.
    pub fn wal_bytes(&self) -> u64 {
        self.inner.read_view().wal_bytes()
    }

    /// LSN of the last commit this instance knows of.
    pub fn last_lsn(&self) -> Lsn {
        self.inner.read_view().last_lsn()
    }
}
