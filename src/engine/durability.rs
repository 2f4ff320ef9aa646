//! Durability of commits: the `fdatasync` that makes a commit durable, shared between the
//! threads of a process (the WAL's leader/follower group commit) and between processes
//! (the sync gate and the durable-LSN record in `wal.shm`), and what a failed sync leaves
//! for the next open.

use super::{Inner, SyncMode};
use crate::error::{Error, Result};
use crate::page::Lsn;
use std::sync::atomic::Ordering;

/// Longest a sync leader waits for this process's other committers to append.
const GROUP_COMMIT_WAIT_MAX: std::time::Duration = std::time::Duration::from_micros(200);

impl Inner {
    /// Makes the commit at `lsn` durable as the sync mode says.
    pub(super) fn make_durable(&self, lsn: Lsn) -> Result<()> {
        let sync_now = match self.options.sync_mode {
            SyncMode::Full => true,
            SyncMode::Normal => {
                let commits = self.commits_unsynced.fetch_add(1, Ordering::AcqRel) + 1;
                commits >= self.options.normal_sync_commits
            }
        };
        if sync_now {
            self.commits_unsynced.store(0, Ordering::Release);
            self.sync_shared(lsn)
                .map_err(|error| self.wal_sync_failed(error))?;
        }
        Ok(())
    }

    /// Makes `lsn` durable, sharing syncs between threads (the WAL's leader/follower group
    /// commit) and between processes: the leader passes a `flock` gate in `wal.shm`; if a
    /// process that synced meanwhile recorded that it covered the target, no `fdatasync`
    /// is needed; otherwise it syncs everything published so far and records that, so the
    /// processes queued behind it at the gate usually find their commits covered.
    pub(super) fn sync_shared(&self, lsn: Lsn) -> Result<()> {
        let salt = self.read_view().cursor.salt;
        self.wal.sync_through_with(lsn, |wal, target| {
            self.wait_for_committers();
            let _gate = self.shm.take_sync_gate().map_err(std::io::Error::other)?;
            let recorded = self.shm.read_durable(salt).map_err(std::io::Error::other)?;
            if recorded >= target {
                return Ok(recorded);
            }
            // Every commit published so far was appended before this sync starts, so the
            // sync covers it (a torn or missing counter covers only the target).
            let published = Lsn(self.shm.read().map_err(std::io::Error::other)?);
            let covered = if published.is_valid() {
                published.max(target)
            } else {
                target
            };
            wal.sync_file()?;
            self.shm
                .write_durable(salt, covered)
                .map_err(std::io::Error::other)?;
            Ok(covered)
        })
    }

    /// Before a leader syncs, lets the threads of this process that are committing right
    /// now append first (bounded by [`GROUP_COMMIT_WAIT_MAX`]), so one `fdatasync` covers
    /// them too: without it, the first of them to append synced alone while the others were
    /// still building their transactions. A lone writer never waits.
    pub(super) fn wait_for_committers(&self) {
        let deadline = std::time::Instant::now() + GROUP_COMMIT_WAIT_MAX;
        while self.committers.load(Ordering::Acquire) > 0 && std::time::Instant::now() < deadline {
            std::thread::yield_now();
        }
    }

    /// Notes a failed WAL sync (or reset) for the next open, and passes the error on.
    pub(super) fn wal_sync_failed(&self, error: Error) -> Error {
        let _ = self.shm.mark_sync_failed();
        error
    }

    /// After a failed sync anywhere, the page cache may show WAL and meta bytes that never
    /// reached the disk, and Linux reports them clean, so later syncs would not write
    /// them. Rewriting them before this open relies on them makes the next sync real
    /// (DESIGN.md §7 item 5; found by the simulator's fsync-failure fault).
    pub(super) fn resync_after_failed_sync(&self) -> Result<()> {
        if !self.shm.sync_failed()? {
            return Ok(());
        }
        self.pages.rewrite_meta()?;
        self.wal.rewrite_all()?;
        self.shm.clear_sync_failed()
    }
}
