//! [`ScanIter`]: streams every live memory node with its handle.
//!
//! The scan walks data pages in page order and, in each, the slots in order. It yields each
//! record under its home handle: a forwarded record is read through its forward, and the
//! moved-in copy it points to is skipped where it lies. Pages that miss the cache are read
//! without being cached. An error is yielded once and the scan goes on with the next page.
//!
//! A scan takes no lock and is not a snapshot: each page is read as it is when the scan
//! reaches it (one page is always one version), so a node stored or deleted by another
//! process during the scan may or may not appear. Every node yielded is whole and as of one
//! commit point (a node spanning pages is read like a load, see `Inner::load_record`), and
//! every node live for the whole scan is yielded.

use super::Inner;
use crate::buffer::PageRef;
use crate::error::{Error, Result};
use crate::memory::{MemoryNode, decode_record};
use crate::page::{PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::record_id::RecordId;
use crate::slotted::{self, SlotContent};

/// Iterator over `(handle, node)` of every live node. See [`crate::StorageEngine::scan_memories`].
#[derive(Debug)]
pub struct ScanIter<'a> {
    inner: &'a Inner,
    next_page: u64,
    page_count: u64,
    current: Option<(PageRef, u32)>,
    started: bool,
}

impl<'a> ScanIter<'a> {
    pub(crate) fn new(inner: &'a Inner) -> ScanIter<'a> {
        ScanIter {
            inner,
            next_page: FIRST_DATA_PAGE.0,
            page_count: 0,
            current: None,
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

    /// Moves to the next data page; `Ok(false)` at the end.
    fn next_data_page(&mut self) -> Result<bool> {
        while self.next_page < self.page_count {
            let id = PageId(self.next_page);
            self.next_page += 1;
            let page = self.inner.read_page(id, false)?;
            if page.page_type() == Some(PageType::Data) {
                slotted::check_data_page(&page)
                    .map_err(|error| error.at(PAGE_FILE_NAME, id.offset()))?;
                self.current = Some((page, 0));
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// The next live record of the current page, if any.
    fn next_in_page(&mut self) -> Option<Result<(RecordId, MemoryNode)>> {
        let inner = self.inner;
        let (page, slot_index) = self.current.as_mut()?;
        let page_id = page.id();
        while *slot_index < slotted::slot_count(page) {
            let index = *slot_index;
            *slot_index += 1;
            let slot = match slotted::read_slot(page, index) {
                Ok(slot) => slot,
                Err(error) => return Some(Err(error.at(PAGE_FILE_NAME, page_id.offset()))),
            };
            if slot.moved_in || matches!(slot.content, SlotContent::Free | SlotContent::Retired) {
                continue;
            }
            let Some(id) = RecordId::new(page_id, index, slot.generation) else {
                continue;
            };
            let decode = |bytes: &[u8]| {
                decode_record(bytes).map_err(|error| error.at(PAGE_FILE_NAME, page_id.offset()))
            };
            let node = match slot.content {
                SlotContent::Inline { offset, len } => {
                    decode(slotted::inline_bytes(page, offset, len))
                }
                // Spans pages: read it as of one commit point, like a load. It may have been
                // deleted since this page was read; it is then no longer part of the scan.
                _ => match inner
                    .refresh_if_changed()
                    .and_then(|published| inner.load_record(id, false, published, &decode))
                {
                    Err(Error::NotFound) => continue,
                    other => other,
                },
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
            match self.next_data_page() {
                Ok(true) => continue,
                Ok(false) => return None,
                Err(error) => return Some(Err(error)),
            }
        }
    }
}
