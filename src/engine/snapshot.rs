//! Snapshots: the pages of the database at one commit point, read while other threads and
//! processes keep writing (for online backups), and the checkpoint gate that makes it
//! possible.
//!
//! Between checkpoints `pages.db` does not change (writers append to the WAL) and the WAL
//! below the committed end does not change either. So a snapshot takes the writer lock only
//! long enough to catch up and copy the view (the committed end of the WAL and, for each
//! page changed since the checkpoint, its frames); pages are then read without any lock:
//! from `pages.db`, or rebuilt from the frames the view names — never from the cache, which
//! keeps moving with later commits.
//!
//! What would break that is a checkpoint, which rewrites `pages.db` and resets the WAL. A
//! snapshot therefore holds the **checkpoint gate**: a shared `flock` on `pages.db` through
//! a handle of its own; a checkpoint takes it exclusively through another fresh handle
//! (locks belong to handles, so threads of one process exclude each other too). The gate is
//! always taken before the writer locks. Automatic checkpoints skip while a snapshot is
//! open (the WAL grows meanwhile); [`crate::StorageEngine::checkpoint`] waits for it.

use super::view::View;
use super::{Inner, WalLock};
use crate::error::{Error, Result};
use crate::page::{Lsn, Page, PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, Meta, PAGE_FILE_NAME, encode_meta_page, meta_page_id};
use crate::vfs::{LockMode, OpenMode, VfsFile};

/// The pages of the database at one commit point. Holds the checkpoint gate until dropped.
#[derive(Debug)]
pub struct Snapshot<'a> {
    inner: &'a Inner,
    view: View,
    _gate: CheckpointGate,
}

/// A held checkpoint gate (shared for snapshots, exclusive for checkpoints); released when
/// dropped (closing the handle releases its lock).
#[derive(Debug)]
pub(crate) struct CheckpointGate(Box<dyn VfsFile>);

impl Drop for CheckpointGate {
    fn drop(&mut self) {
        // Closing the handle right after releases the lock anyway.
        let _ = self.0.unlock();
    }
}

impl Inner {
    /// Takes the checkpoint gate: `Ok(None)` if `wait` is false and it is held elsewhere.
    pub(crate) fn checkpoint_gate(
        &self,
        mode: LockMode,
        wait: bool,
    ) -> Result<Option<CheckpointGate>> {
        let path = self.dir.join(PAGE_FILE_NAME);
        let file = self
            .options
            .vfs
            .open_file(&path, OpenMode::Existing)
            .map_err(|source| Error::io("open", PAGE_FILE_NAME, source))?;
        let lock_error = |source| Error::io("lock", PAGE_FILE_NAME, source);
        if wait {
            let timeout = self.options.lock_timeout;
            if !super::locks::lock_within(&*file, mode, timeout).map_err(lock_error)? {
                return Err(self.gate_timed_out(mode));
            }
        } else if !file.try_lock(mode).map_err(lock_error)? {
            return Ok(None);
        }
        Ok(Some(CheckpointGate(file)))
    }

    /// Opens a snapshot at the last commit.
    pub(crate) fn snapshot(&self) -> Result<Snapshot<'_>> {
        self.check_open()?;
        let gate = self
            .checkpoint_gate(LockMode::Shared, true)?
            .ok_or_else(|| Error::Locked("the checkpoint gate".into()))?;
        let _writer = self.lock_writer();
        let _lock = WalLock::take(self, super::locks::Purpose::Snapshot)?;
        self.refresh()?;
        let view = self.read_view().clone();
        Ok(Snapshot {
            inner: self,
            view,
            _gate: gate,
        })
    }
}

impl Snapshot<'_> {
    /// Pages in the snapshot (meta pages included).
    pub fn page_count(&self) -> u64 {
        self.view.alloc.page_count
    }

    /// The last commit the snapshot contains.
    pub fn last_lsn(&self) -> Lsn {
        self.view.last_lsn()
    }

    /// The meta page a copy of the snapshot carries: one generation past the database's,
    /// recording the snapshot's commit as checkpointed and its allocation state.
    pub fn meta(&self) -> Meta {
        Meta {
            generation: self.view.meta.generation + 1,
            checkpoint_lsn: self.view.last_lsn(),
            alloc: self.view.alloc,
            lineage: self.view.meta.lineage.clone(),
            map_versions: crate::space_map::map_pages(self.page_count())
                .map(|map_page| {
                    match self
                        .view
                        .index
                        .get(&map_page)
                        .and_then(|frames| frames.last())
                    {
                        Some(frame) => frame.lsn,
                        None => self
                            .view
                            .meta
                            .map_versions
                            .get(crate::space_map::span_of(map_page))
                            .copied()
                            .unwrap_or(Lsn(0)),
                    }
                })
                .collect(),
        }
    }

    /// Page `id` as of the snapshot, sealed, as a restored `pages.db` holds it: the meta
    /// slots hold [`Snapshot::meta`] and an unused page, data pages come from the WAL
    /// frames the snapshot names or else from `pages.db`.
    pub fn page(&self, id: PageId) -> Result<Page> {
        if id.0 >= self.page_count() {
            return Err(Error::InvalidArgument(format!(
                "{id} is past the snapshot's {} pages",
                self.page_count()
            )));
        }
        if id < FIRST_DATA_PAGE {
            let meta = self.meta();
            if meta_page_id(meta.generation) == id {
                return Ok(encode_meta_page(&meta));
            }
            let mut unused = Page::new(id, PageType::Unused);
            unused.seal();
            return Ok(unused);
        }
        let mut page = match self.view.index.get(&id) {
            Some(frames) => self.inner.rebuild_page(id, frames, self.view.cursor.salt)?,
            None => self.inner.pages.read_verified(id)?,
        };
        if crate::space_map::is_map_page(id) {
            // The copy holds the pages the WAL changed at their newest LSN: its map must
            // say so (a restored page file is read like any checkpointed one).
            let span = crate::space_map::span_pages(id, self.page_count());
            for (page_id, frames) in &self.view.index {
                if span.contains(&page_id.0)
                    && !crate::space_map::is_map_page(*page_id)
                    && let Some(frame) = frames.last()
                {
                    let (_, offset) = crate::space_map::locate_version(*page_id);
                    page.put_u64(offset, frame.lsn.0);
                }
            }
        }
        page.seal();
        Ok(page)
    }
}
