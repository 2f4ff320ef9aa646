//! Configuration of a [`crate::StorageEngine`], validated at open.

use crate::error::{Error, Result};
use crate::vfs::{RealFs, SharedVfs};
use std::sync::Arc;
use std::time::Duration;

/// When a commit is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every commit is durable when its call returns (one shared `fdatasync` per group of
    /// concurrent commits).
    #[default]
    Full,
    /// The WAL is synced every [`Options::normal_sync_commits`] commits, at checkpoints and at
    /// close. A crash may lose the last commits, never corrupt the database.
    Normal,
    /// As [`SyncMode::Full`], and after each sync the LSN it covered is written to
    /// `wal.seal` and synced too, before the commit returns: a second `fdatasync` per
    /// commit group. It buys one guarantee: damage to the last synced commits (a bit flip
    /// at rest) is reported after a power loss instead of being cut as a torn tail. In
    /// `Full`, synced frames are proven by later frames and, until a power loss, by
    /// `wal.shm`; the last ones before a power loss are proven by nothing on disk (README,
    /// "WAL damage").
    Sealed,
}

impl SyncMode {
    /// True if every commit is durable when its call returns.
    pub fn syncs_every_commit(self) -> bool {
        matches!(self, SyncMode::Full | SyncMode::Sealed)
    }
}

/// Default buffer pool size: 1024 pages of 64 KiB = 64 MiB.
pub const BUFFER_POOL_PAGES_DEFAULT: usize = 1024;
/// Default WAL size that triggers an automatic checkpoint.
pub const CHECKPOINT_WAL_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Default number of commits between WAL syncs in [`SyncMode::Normal`].
pub const NORMAL_SYNC_COMMITS_DEFAULT: u32 = 64;
/// Default of [`Options::lock_timeout`]: long enough for any commit or checkpoint step of a
/// working process, short enough that a stopped one is reported instead of waited for.
pub const LOCK_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// Smallest buffer pool accepted.
pub const BUFFER_POOL_PAGES_MIN: usize = 4;
/// Largest buffer pool accepted: 2^24 pages, 1 TiB of memory.
pub const BUFFER_POOL_PAGES_MAX: usize = 1 << 24;
/// The share of the buffer pool's memory that holds record maps of evicted pages (see
/// [`crate::record_map`]): 1 in this many pages' worth, at least one page's worth.
pub const RECORD_MAP_SHARE: usize = 32;
/// Smallest buffer pool that gives up a page's worth of memory to record maps.
pub const RECORD_MAP_POOL_PAGES_MIN: usize = 8;

/// Options for [`crate::StorageEngine::open_with`]. Build with the setters:
///
/// ```
/// use mentedb_storage::{Options, SyncMode};
/// let options = Options::default().buffer_pool_pages(256).sync_mode(SyncMode::Normal);
/// assert_eq!(options.sync_mode_value(), SyncMode::Normal);
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    pub(crate) buffer_pool_pages: usize,
    pub(crate) sync_mode: SyncMode,
    pub(crate) checkpoint_wal_bytes: u64,
    pub(crate) normal_sync_commits: u32,
    pub(crate) vfs: SharedVfs,
    pub(crate) access: crate::vfs::Access,
    pub(crate) lock_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            buffer_pool_pages: BUFFER_POOL_PAGES_DEFAULT,
            sync_mode: SyncMode::Full,
            checkpoint_wal_bytes: CHECKPOINT_WAL_BYTES_DEFAULT,
            normal_sync_commits: NORMAL_SYNC_COMMITS_DEFAULT,
            vfs: Arc::new(RealFs::new()),
            access: crate::vfs::Access::ReadWrite,
            lock_timeout: LOCK_TIMEOUT_DEFAULT,
        }
    }
}

impl Options {
    /// Buffer pool capacity in 64 KiB pages (at least [`BUFFER_POOL_PAGES_MIN`]): the
    /// memory budget of the page cache. From [`RECORD_MAP_POOL_PAGES_MIN`] pages on, 1/32
    /// of it (at least one page's worth) holds the record maps of evicted pages instead of
    /// pages, so that a load that misses the cache reads one record, not a whole page.
    pub fn buffer_pool_pages(mut self, pages: usize) -> Self {
        self.buffer_pool_pages = pages;
        self
    }

    /// Longest a call waits for a lock another process (or another instance in this
    /// process) holds: the writer lock on `wal.log` (held for one commit, checkpoint,
    /// compaction step or recovery) and the checkpoint gate on `pages.db` (a checkpoint
    /// waits for open snapshots, that is backups, to end; a snapshot waits for a running
    /// checkpoint). Past it the call fails with [`crate::Error::Locked`], which names the
    /// lock and, for the writer lock, the process holding it and what for; nothing was
    /// written. Default [`LOCK_TIMEOUT_DEFAULT`]; `Duration::ZERO` fails at once when the
    /// lock is held, `Duration::MAX` waits for ever. Threads of one instance queue on an
    /// in-process lock first, which is not bounded by this (its holder is working, not
    /// stopped).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.lock_timeout = timeout;
        self
    }

    /// The lock timeout ([`Options::lock_timeout`]).
    pub fn lock_timeout_value(&self) -> Duration {
        self.lock_timeout
    }

    /// When commits are durable.
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.sync_mode = mode;
        self
    }

    /// WAL size in bytes after which a commit runs a checkpoint; 0 disables automatic
    /// checkpoints.
    pub fn checkpoint_wal_bytes(mut self, bytes: u64) -> Self {
        self.checkpoint_wal_bytes = bytes;
        self
    }

    /// Commits between WAL syncs in [`SyncMode::Normal`] (at least 1).
    pub fn normal_sync_commits(mut self, commits: u32) -> Self {
        self.normal_sync_commits = commits;
        self
    }

    /// The filesystem to use (default: [`RealFs`]).
    pub fn vfs(mut self, vfs: SharedVfs) -> Self {
        self.vfs = vfs;
        self
    }

    /// Opens the database read-only: creates, changes, recovers and syncs nothing on disk
    /// (the view of the last commit is rebuilt in memory from the meta page and the WAL),
    /// so it works on read-only files and mounts, and on a database a read-write open
    /// refuses: damage met while reading the WAL or a lost tail are noted
    /// ([`crate::StorageEngine::open_notes`]) and what is readable is shown. Writes,
    /// checkpoints and compactions fail with [`crate::Error::InvalidArgument`]. The
    /// `mentedb-storage` tool's `verify`, `stats` and `dump` open this way.
    pub fn read_only(mut self) -> Self {
        self.access = crate::vfs::Access::ReadOnly;
        self
    }

    /// True if [`Options::read_only`] was set.
    pub fn is_read_only(&self) -> bool {
        self.access == crate::vfs::Access::ReadOnly
    }

    /// The configured sync mode.
    pub fn sync_mode_value(&self) -> SyncMode {
        self.sync_mode
    }

    /// The configured buffer pool capacity in pages.
    pub fn buffer_pool_pages_value(&self) -> usize {
        self.buffer_pool_pages
    }

    /// The configured automatic checkpoint threshold in WAL bytes.
    pub fn checkpoint_wal_bytes_value(&self) -> u64 {
        self.checkpoint_wal_bytes
    }

    /// How the buffer pool budget is split: pages cached, and bytes of record maps.
    pub(crate) fn pool_split(&self) -> (usize, usize) {
        let pages = self.buffer_pool_pages;
        if pages < RECORD_MAP_POOL_PAGES_MIN {
            return (pages, 0);
        }
        let map_pages = (pages / RECORD_MAP_SHARE).max(1);
        debug_assert!(map_pages < pages);
        (pages - map_pages, map_pages * crate::page::PAGE_SIZE)
    }

    pub(crate) fn validate(&self) -> Result<()> {
        if self.buffer_pool_pages < BUFFER_POOL_PAGES_MIN {
            return Err(Error::InvalidArgument(format!(
                "buffer pool of {} pages is below the minimum of {BUFFER_POOL_PAGES_MIN}",
                self.buffer_pool_pages
            )));
        }
        if self.buffer_pool_pages > BUFFER_POOL_PAGES_MAX {
            return Err(Error::InvalidArgument(format!(
                "buffer pool of {} pages ({} bytes of 64 KiB pages) is over the maximum of \
                 {BUFFER_POOL_PAGES_MAX} pages (1 TiB)",
                self.buffer_pool_pages,
                (self.buffer_pool_pages as u128) * 65_536
            )));
        }
        if self.normal_sync_commits == 0 {
            return Err(Error::InvalidArgument(
                "normal_sync_commits must be at least 1".to_string(),
            ));
        }
        Ok(())
    }
}
