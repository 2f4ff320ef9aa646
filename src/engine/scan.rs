//! [`ScanIter`]: streams every live memory node with its handle.
//!
//! The scan walks the handle pages in page order and, in each, the live home slots in
//! order; each record is read like a load (its record page, its overflow chain). Pages that
//! miss the cache are read without being cached. An error is yielded once and the scan goes
//! on with the next record.
//!
//! A scan takes no lock and is not a snapshot: each handle page is read as it is when the
//! scan reaches it (one page is always one version), so a node stored or deleted by another
//! process during the scan may or may not appear. Every node yielded is whole and as of one
//! commit point (see `Inner::load_record`), every node live for the whole scan is yielded,
//! and each handle at most once (a record that moves during the scan is found through its
//! home slot, which does not move).

use super::Inner;
use crate::buffer::PageRef;
use crate::error::{Error, Result};
use crate::handle_page;
use crate::memory::{MemoryNode, decode_record};
use crate::page::{PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::record_id::{HOME_SLOTS_PER_PAGE, RecordId};

/// Iterator over `(handle, node)` of every live node. See [`crate::StorageEngine::scan_memories`].
#[derive(Debug)]
pub struct ScanIter<'a> {
    inner: &'a Inner,
    next_page: u64,
    page_count: u64,
    current: Option<(PageRef, u32)>,
    /// The shared counter read when the current handle page was read.
    published: u64,
    /// The record page the last record was read from, if the shared counter had not moved
    /// since the handle page was read (so the two copies are one commit point's).
    record_page: Option<PageRef>,
    started: bool,
}

impl<'a> ScanIter<'a> {
    pub(crate) fn new(inner: &'a Inner) -> ScanIter<'a> {
        ScanIter {
            inner,
            next_page: FIRST_DATA_PAGE.0,
            page_count: 0,
            current: None,
            published: 0,
            record_page: None,
            started: false,
        }
    }

    fn start(&mut self) -> Result<()> {
        self.started = true;
        self.inner.check_open()?;
        self.inner.refresh_if_changed()?;
        self.page_count = self.inner.read_view().alloc.page_count;
        Ok(())
    }

    /// Moves to the next handle page; `Ok(false)` at the end.
    fn next_handle_page(&mut self) -> Result<bool> {
        while self.next_page < self.page_count {
            let id = PageId(self.next_page);
            self.next_page += 1;
            if crate::space_map::is_map_page(id) {
                continue;
            }
            self.published = self.inner.refresh_if_changed()?;
            self.record_page = None;
            let page = self.inner.read_page(id, false)?;
            if page.page_type() == Some(PageType::Handles) {
                handle_page::check_handle_page(&page)
                    .map_err(|error| error.at(PAGE_FILE_NAME, id.offset()))?;
                self.current = Some((page, 0));
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next live record named by the current handle page, if any.
    fn next_in_page(&mut self) -> Option<Result<(RecordId, MemoryNode)>> {
        let inner = self.inner;
        let (database, lineage) = {
            let view = inner.read_view();
            (view.alloc.database_id, view.meta.lineage.clone())
        };
        let (page, slot_index) = self.current.as_mut()?;
        let page_id = page.id();
        while *slot_index < HOME_SLOTS_PER_PAGE {
            let index = *slot_index;
            *slot_index += 1;
            let home = match handle_page::read(page, index) {
                Ok(Some(home)) => home,
                Ok(None) => continue,
                Err(error) => return Some(Err(error.at(PAGE_FILE_NAME, page_id.offset()))),
            };
            let issuer = lineage.issuer(database, home.serial);
            let Some(id) = RecordId::new(issuer, page_id, index, home.serial) else {
                continue;
            };
            let decode = |bytes: &[u8]| {
                decode_record(bytes).map_err(|error| error.at(PAGE_FILE_NAME, page_id.offset()))
            };
            // Records stored together share a record page: read it once, and take its
            // records as long as the counter has not moved since the handle page was read
            // (both copies are then of one commit point).
            let reuse = self
                .record_page
                .as_ref()
                .is_some_and(|page| page.id() == home.record_page);
            if !reuse {
                self.record_page = match inner.read_page(home.record_page, false) {
                    Ok(page) if inner.counter_unmoved(self.published) => Some(page),
                    _ => None,
                };
            }
            if let Some(page) = &self.record_page
                && let Some(node) = inner.inline_record(id, home, page, &decode)
            {
                return Some(node.map(|node| (id, node)));
            }
            // Read as of one commit point, like a load. It may have been deleted since this
            // handle page was read; it is then no longer part of the scan.
            let node = match inner.load_record(id, false, self.published, &decode) {
                Err(Error::NotFound) => continue,
                other => other,
            };
            return Some(node.map(|node| (id, node)));
        }
        self.current = None;
        None
    }
}

impl Iterator for ScanIter<'_> {
    type Item = Result<(RecordId, MemoryNode)>;

    fn next(&mut self) -> Option<Self::Item> {
        if !self.started
            && let Err(error) = self.start()
        {
            self.next_page = u64::MAX;
            return Some(Err(error));
        }
        loop {
            if let Some(item) = self.next_in_page() {
                return Some(item);
            }
            match self.next_handle_page() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}
