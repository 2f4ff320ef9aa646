//! Reading a page as of the view: from the buffer pool, else rebuilt from its WAL frames,
//! else from `pages.db`, where it must be the page the file promises.
//!
//! # What a page read from `pages.db` must be
//! - **Written**: an all-zero page verifies (and names page 0), but every page of the file
//!   was written by the checkpoint after the commit that made it (a freed page is written
//!   as `Free`), so one read as zeros inside the file lost its write. Read as "not a handle
//!   page", it made loads of its records answer `NotFound` without a word, and a
//!   transaction that changed it logged a page naming the meta page (1,000-seed swarm
//!   campaign, seed 974). Past the end of the view's file it is a page a shrink cut off
//!   (the caller's view is stale), and reads as zeros.
//! - **Of its version**: the LSN the space map (for a map page, the meta page) keeps for it
//!   (see `space_map`). An older one lost its last write, or that write landed on another
//!   page: the checksum inside a stale page is valid, so nothing else can tell.
//!
//! A view another process's checkpoint made stale can expect an older version, or a page
//! count that changed: such a read is refreshed and read again before it counts as damage,
//! as is one that met another process's WAL reset.

use super::Inner;
use crate::buffer::{FillTicket, PageRef};
use crate::error::{Error, Result};
use crate::page::{Lsn, Page, PageId};
use crate::pager::{Meta, PAGE_FILE_NAME};
use crate::record_map::RecordMap;
use crate::wal::WAL_FILE_NAME;
use std::sync::Arc;

/// How often a read refreshes the view and tries again (another process's WAL reset or
/// checkpoint met) before its error stands.
const READ_ATTEMPTS_MAX: u32 = 16;

impl Inner {
    /// Reads a page: from the cache, else its WAL frames, else `pages.db`. With `cache`
    /// false a missed page is not added to the cache (scans use this).
    pub(crate) fn read_page(&self, id: PageId, cache: bool) -> Result<PageRef> {
        if let Some(page) = self.pool.get(id) {
            return Ok(page);
        }
        self.read_missed_page(id, cache)
    }

    /// [`Inner::read_page`] after the pool missed (or bypassing it: the integrity check
    /// reads what a reopen would).
    pub(crate) fn read_missed_page(&self, id: PageId, cache: bool) -> Result<PageRef> {
        let mut attempt = 0;
        loop {
            let ticket = self.pool.ticket();
            let (result, promised) = {
                let view = self.read_view();
                match view.index.get(&id) {
                    Some(frames) => (
                        self.rebuild_page(id, frames, view.cursor.salt),
                        Promise::None,
                    ),
                    None => (
                        self.pages.read_verified_into(id, self.pool.spare_page()),
                        Promise::of(id, view.alloc.page_count, &view.meta),
                    ),
                }
            };
            let broken = match &result {
                Ok(page) => self.check_promise(id, page, promised).err(),
                Err(_) => None,
            };
            if let Some(error) = broken {
                if attempt < READ_ATTEMPTS_MAX {
                    attempt += 1;
                    self.refresh_unlocked()?;
                    continue;
                }
                return Err(error);
            }
            match result {
                Ok(page) if cache => return Ok(self.fill(id, page, ticket)),
                Ok(page) => return Ok(PageRef::uncached(Arc::new(page))),
                Err(error) if attempt < READ_ATTEMPTS_MAX && touches_wal(&error) => {
                    attempt += 1;
                    self.refresh_unlocked()?;
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Caches a page read after a miss; keeps the record map of the page it evicted.
    fn fill(&self, id: PageId, page: Page, ticket: FillTicket) -> PageRef {
        let (guard, evicted) = self.pool.fill_evicting(id, page, ticket);
        if let Some(evicted) = evicted {
            if self.maps.is_enabled()
                && let Some(map) = RecordMap::of(&evicted.page)
            {
                self.maps.remember(evicted.id, map);
            }
            self.pool.recycle(evicted.page);
        }
        guard
    }

    /// Corruption unless `page`, read at `id`, is what `promised` says (see the module
    /// docs).
    fn check_promise(&self, id: PageId, page: &Page, promised: Promise) -> Result<()> {
        let (version, keeper) = match promised {
            Promise::None => return Ok(()),
            Promise::Written(_) | Promise::FromMap if page.id() != id => {
                return Err(never_written(id, page));
            }
            Promise::Written(version) => (version, "the meta page".to_string()),
            Promise::FromMap => {
                let (map_page, _) = crate::space_map::locate_version(id);
                let map = self.read_page(map_page, true)?;
                (
                    Some(crate::space_map::version(&map, id)),
                    map_page.to_string(),
                )
            }
        };
        if version == Some(page.lsn()) {
            return Ok(());
        }
        crate::rare_paths::hit(crate::rare_paths::RarePath::StalePageRefused);
        Err(Error::corruption(
            PAGE_FILE_NAME,
            id.offset(),
            format!(
                "{id} holds LSN {}, but {keeper} says the last checkpoint wrote it at {}: \
                 its last write was lost or went to another page",
                page.lsn().0,
                version.map_or("no LSN".to_string(), |lsn| format!("LSN {}", lsn.0))
            ),
        ))
    }
}

/// What a page read for the view must be.
#[derive(Debug, Clone, Copy)]
enum Promise {
    /// Nothing more than it verifies: rebuilt from the WAL (checked frame by frame), or
    /// past the end of the view's file.
    None,
    /// A map page: written, at the version the meta page keeps (`None`: it keeps none).
    Written(Option<Lsn>),
    /// Another page: written, at the version its map page keeps.
    FromMap,
}

impl Promise {
    /// The promise for page `id` read from `pages.db`, as of a view of `page_count` pages.
    fn of(id: PageId, page_count: u64, meta: &Meta) -> Promise {
        if id.0 >= page_count {
            Promise::None
        } else if crate::space_map::is_map_page(id) {
            let span = crate::space_map::span_of(id);
            Promise::Written(meta.map_versions.get(span).copied())
        } else {
            Promise::FromMap
        }
    }
}

/// The corruption of a page of the file that reads as another (all zeros: page 0).
fn never_written(id: PageId, page: &Page) -> Error {
    Error::corruption(
        PAGE_FILE_NAME,
        id.offset(),
        format!(
            "{id} reads as {} ({:?}): never written, or its write was lost",
            page.id(),
            page.page_type()
        ),
    )
}

/// True for errors a concurrent WAL reset by another process can cause.
pub(super) fn touches_wal(error: &Error) -> bool {
    match error {
        Error::Corruption { file, .. } | Error::Io { file, .. } => file == WAL_FILE_NAME,
        _ => false,
    }
}
