//! Checkpoint: moving the pages changed since the last checkpoint from the WAL into
//! `pages.db`, then emptying the WAL.
//!
//! A checkpoint first takes the checkpoint gate (see `snapshot`): it never rewrites
//! `pages.db` under an open snapshot.
//!
//! Order, each step durable before the next:
//! 0. make the WAL durable up to the last commit it covers (the write-ahead rule: a commit
//!    appends its frames and releases the writer lock before its own `fdatasync`, so a
//!    checkpoint by another thread or process may find frames nobody has synced yet;
//!    writing their pages first, then losing the power before the new meta page is
//!    durable, left `pages.db` holding a transaction the durable WAL does not, and lost
//!    acknowledged records: found under LazyFS, then by the simulator's concurrent groups);
//! 1. write every page the WAL index names (newest version: cached, or rebuilt from the
//!    WAL — never an older cached copy, since the view caught up under the lock first);
//!    [`crate::pager::PageFile::write_page`] asserts each is covered by step 0;
//! 2. `fdatasync` pages.db;
//! 3. write the other meta page (generation + 1, checkpoint LSN = last committed LSN) and
//!    `fdatasync`;
//! 4. reset the WAL with a new salt.
//!
//! A crash before 3 leaves the old meta page and the full WAL: the pages are rebuilt from
//! the WAL as before. A crash between 3 and 4 leaves a WAL whose frames are all at or below
//! the checkpoint LSN: it is ignored, and the next writer resets it. A writer in another
//! process that is still running knows of the crash from the checkpoint-in-progress mark in
//! `wal.shm` (set before 3, cleared after 4): it reloads its view from the meta page before
//! appending, rather than appending to a WAL the new meta page has already covered. A failed sync poisons
//! the instance: Linux may have dropped the unsynced pages, so a retry could not be trusted.

use super::Inner;
use super::view::View;
use super::{WalLock, next_salt};
use crate::error::{Error, Result};
use crate::failpoints;
use crate::page::{Lsn, PAGE_SIZE, Page};
use crate::pager::Meta;
use crate::pager::PAGE_FILE_NAME;
use crate::vfs::LockMode;

impl Inner {
    /// Runs a checkpoint under the checkpoint gate and the writer locks. With `wait` false
    /// it skips (returns `Ok(false)`) while a snapshot holds the gate; with `wait` true it
    /// waits for the snapshots to end.
    pub(crate) fn checkpoint(&self, wait: bool) -> Result<bool> {
        self.check_writable()?;
        let Some(_gate) = self.checkpoint_gate(LockMode::Exclusive, wait)? else {
            return Ok(false);
        };
        let mut writer = self.lock_writer();
        let _lock = WalLock::take(self, super::locks::Purpose::Checkpoint)?;
        self.check_writer_marks()?;
        self.refresh()?;
        let file_pages_before = self.read_view().alloc.page_count;
        if self.read_view().alloc.free_pages > 0 {
            // Trailing free pages go back to the file system: the page count drops in a
            // commit of its own, and the file is cut after the new meta page is durable.
            self.commit_locked(&mut writer, |txn| txn.shrink())?;
        }
        let versions: Vec<(crate::page::PageId, crate::page::Lsn)> = {
            let view = self.read_view();
            let nothing_logged =
                view.index.is_empty() && view.cursor.last_lsn <= view.meta.checkpoint_lsn;
            if nothing_logged && view.wal_ready {
                return Ok(true);
            }
            view.index
                .iter()
                .filter(|(id, _)| {
                    id.0 < view.alloc.page_count && !crate::space_map::is_map_page(**id)
                })
                .filter_map(|(id, frames)| frames.last().map(|frame| (*id, frame.lsn)))
                .collect()
        };
        if !versions.is_empty() {
            // The versions the pages are about to be written at, logged first: a page read
            // from `pages.db` later must carry its version (see `space_map`).
            self.commit_locked(&mut writer, |txn| {
                for (id, lsn) in versions {
                    txn.set_version(id, lsn)?;
                }
                Ok(())
            })?;
        }
        let (salt, last_lsn) = {
            let view = self.read_view();
            (view.cursor.salt, view.last_lsn())
        };
        // Before the view is locked for writing: the sync reads it. The writer locks keep
        // it from moving meanwhile.
        let wal_durable = self.make_durable_for_checkpoint(salt, last_lsn)?;
        let mut view = self.write_view();
        assert_eq!(
            (view.cursor.salt, view.last_lsn()),
            (salt, last_lsn),
            "the view moved under the writer locks"
        );
        // Pages at or past the page count (freed at the end of the file) are not written.
        let page_count = view.alloc.page_count;
        let mut ids: Vec<_> = view
            .index
            .keys()
            .copied()
            .filter(|id| id.0 < page_count)
            .collect();
        ids.sort_unstable();
        let mut map_versions = view.meta.map_versions.clone();
        map_versions.resize(crate::space_map::map_pages(page_count).count(), Lsn(0));
        for id in &ids {
            let mut page = match self.pool.get(*id) {
                Some(cached) => Page::clone(&cached),
                None => self.rebuild_page(*id, &view.index[id], view.cursor.salt)?,
            };
            if crate::space_map::is_map_page(*id) {
                map_versions[crate::space_map::span_of(*id)] = page.lsn();
            }
            self.pages.write_page(&mut page, wal_durable)?;
        }
        failpoints::check("checkpoint.pages_written").map_err(page_io)?;
        self.pages
            .sync()
            .map_err(|error| self.poison(error.to_string()))?;
        failpoints::check("checkpoint.pages_synced").map_err(page_io)?;
        let meta = Meta {
            generation: view.meta.generation + 1,
            checkpoint_lsn: view.last_lsn(),
            alloc: view.alloc,
            lineage: view.meta.lineage.clone(),
            map_versions,
        };
        // From the meta page to the WAL reset, a writer that finds the lock free finishes
        // this checkpoint (this process died in between).
        self.shm.mark_checkpoint(salt)?;
        self.pages
            .write_meta(&meta)
            .map_err(|error| self.poison(error.to_string()))?;
        failpoints::check("checkpoint.meta_synced").map_err(page_io)?;
        let salt = next_salt(view.cursor.salt, &meta);
        let header = self.wal_sync_marked(|wal| wal.reset(salt, meta.checkpoint_lsn))?;
        *view = View::checkpointed(meta, Some(header));
        for id in ids {
            self.pool.mark_clean(id);
        }
        self.shm.clear_checkpoint_mark()?;
        drop(view);
        self.truncate_page_file(page_count, file_pages_before)?;
        Ok(true)
    }

    /// Cuts `pages.db` to `page_count` pages once the meta page that counts them is
    /// durable (a crash before the cut leaves a longer file, which is harmless: pages past
    /// the count are never read; the next checkpoint cuts it). Skipped when the file is no
    /// longer than that. A failed cut leaves the file long and is not an error; a failed
    /// sync of it poisons the instance, as every failed sync does.
    fn truncate_page_file(&self, page_count: u64, pages_before: u64) -> Result<()> {
        let wanted = page_count * PAGE_SIZE as u64;
        if self.pages.len()? <= wanted {
            return Ok(());
        }
        for id in page_count..pages_before {
            self.pool.invalidate(crate::page::PageId(id));
            self.maps.forget(crate::page::PageId(id));
        }
        if self.pages.set_len(wanted).is_err() {
            return Ok(());
        }
        crate::rare_paths::hit(crate::rare_paths::RarePath::PageFileCut);
        failpoints::check("checkpoint.truncated").map_err(page_io)?;
        self.pages
            .sync()
            .map_err(|error| self.poison(error.to_string()))
    }
}

fn page_io(source: std::io::Error) -> Error {
    Error::io("write", PAGE_FILE_NAME, source)
}

impl Inner {
    /// Checkpoints when the WAL has grown past the configured threshold, after a commit
    /// that is already durable: a failure is not the commit's (a failed sync in it
    /// poisons the instance, and the next write reports that; any other failure leaves the
    /// WAL as it was, and a later commit tries again).
    pub(super) fn checkpoint_after_commit(&self) {
        let threshold = self.options.checkpoint_wal_bytes;
        if threshold > 0 && self.read_view().wal_bytes() > threshold {
            // Skipped while a snapshot (backup) is open; a later commit tries again.
            let _ = self.checkpoint(false);
        }
    }
}
