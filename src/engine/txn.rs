//! Write transactions: private working copies of pages, allocation, and commit.
//!
//! A transaction copies each page it changes (copy-on-write: readers keep seeing the
//! committed version until commit installs the new one). Nothing is visible or logged
//! before [`Txn::commit`], so a transaction that fails changes nothing.
//!
//! Commit logs each changed page as one frame: a full image if the WAL holds no image of
//! the page yet (its first change since the checkpoint: that image is what repairs a torn
//! write of the page in `pages.db`) or if the delta would be large, else the changed byte
//! ranges. A commit frame carrying the new allocation state ends the transaction. All
//! frames go out in one write.

use super::Inner;
use super::space::SpaceCache;
use crate::buffer::PageRef;
use crate::error::{Error, Result};
use crate::page::{Lsn, PAGE_SIZE, Page, PageId, PageType, delta_len, encode_delta, page_diff};
use crate::pager::{AllocState, FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::wal::format::{FrameSpec, encode_frame, parse_frame};
use crate::wal::{FrameInfo, WalCursor, WalEntryType};
use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

/// Pages one transaction may change (a 64 MiB record needs about 1,030).
pub const TXN_PAGES_MAX: usize = 4096;
/// Frames (an image and its deltas) a page may have in the WAL before its next change is
/// logged as a new image: bounds the work of rebuilding a page from the WAL.
pub const DELTA_CHAIN_MAX: usize = 32;

/// A page the transaction changes: the committed version it started from and its copy.
#[derive(Debug)]
struct TxPage {
    base: Option<Arc<Page>>,
    page: Page,
}

/// A page read inside a transaction: its own copy if it changed it, else the shared one.
pub(crate) enum TxRead<'a> {
    Working(&'a Page),
    Shared(PageRef),
}

impl Deref for TxRead<'_> {
    type Target = Page;
    fn deref(&self) -> &Page {
        match self {
            TxRead::Working(page) => page,
            TxRead::Shared(page) => page,
        }
    }
}

/// One write transaction. Created under the writer lock by [`Inner::write`].
pub(crate) struct Txn<'a> {
    pub inner: &'a Inner,
    pub alloc: AllocState,
    /// The databases this one was restored from: which identity a serial's handle carries.
    pub lineage: crate::lineage::Lineage,
    pages: BTreeMap<PageId, TxPage>,
    /// The writer's index of the space map (see `space`).
    pub space: &'a mut SpaceCache,
    /// Set when the commit must be durable before it returns whatever the sync mode (it
    /// reserved serials).
    pub needs_sync: bool,
}

impl<'a> Txn<'a> {
    pub fn new(
        inner: &'a Inner,
        alloc: AllocState,
        lineage: crate::lineage::Lineage,
        space: &'a mut SpaceCache,
    ) -> Txn<'a> {
        Txn {
            inner,
            alloc,
            lineage,
            pages: BTreeMap::new(),
            space,
            needs_sync: false,
        }
    }

    /// Reads a page as this transaction sees it.
    pub fn read(&self, id: PageId) -> Result<TxRead<'_>> {
        if let Some(tx_page) = self.pages.get(&id) {
            return Ok(TxRead::Working(&tx_page.page));
        }
        self.check_in_file(id)?;
        Ok(TxRead::Shared(self.inner.read_page(id, true)?))
    }

    /// The transaction's own copy of a page, made on first use.
    pub fn page_mut(&mut self, id: PageId) -> Result<&mut Page> {
        if !self.pages.contains_key(&id) {
            self.check_in_file(id)?;
            self.check_page_budget()?;
            let base = self.inner.read_page(id, true)?;
            let page = Page::clone(&base);
            self.pages.insert(
                id,
                TxPage {
                    base: Some(Arc::clone(base.arc())),
                    page,
                },
            );
        }
        match self.pages.get_mut(&id) {
            Some(tx_page) => Ok(&mut tx_page.page),
            None => unreachable!("inserted above"),
        }
    }

    fn check_in_file(&self, id: PageId) -> Result<()> {
        if id < FIRST_DATA_PAGE || id.0 >= self.alloc.page_count {
            return Err(Error::corruption(
                PAGE_FILE_NAME,
                id.offset(),
                format!(
                    "{id} is outside the {} pages of the file",
                    self.alloc.page_count
                ),
            ));
        }
        Ok(())
    }

    pub fn check_page_budget(&self) -> Result<()> {
        if self.pages.len() >= TXN_PAGES_MAX {
            return Err(Error::TooLarge {
                what: "transaction",
                size: (self.pages.len() * PAGE_SIZE) as u64,
                limit: (TXN_PAGES_MAX * PAGE_SIZE) as u64,
            });
        }
        Ok(())
    }

    /// Puts a fresh page of `page_type` at `id` into the transaction (allocation), keeping
    /// the committed version it replaces as the base its frame is logged against.
    pub fn put_new_page(&mut self, id: PageId, page_type: PageType) {
        let base = self.pages.remove(&id).and_then(|tx_page| tx_page.base);
        let page = Page::new(id, page_type);
        self.pages.insert(id, TxPage { base, page });
    }

    /// Ids of the pages this transaction changed, in order.
    pub fn changed_ids(&self) -> Vec<PageId> {
        self.pages.keys().copied().collect()
    }

    /// Forgets the changes to pages at or past `page_count` (the file shrank past them).
    pub fn drop_pages_from(&mut self, page_count: u64) {
        self.pages.retain(|id, _| id.0 < page_count);
    }

    /// Logs the transaction, makes it visible in this process and publishes it to the
    /// others. Returns the commit LSN (durable only after `Wal::sync_through`). The caller
    /// holds the writer lock, so the view's cursor cannot move underneath.
    pub fn commit(mut self) -> Result<Lsn> {
        self.settle_space()?;
        let (cursor, logged): (WalCursor, Vec<bool>) = {
            let view = self.inner.read_view();
            // A page with a long chain of deltas gets a fresh image: rebuilding a page that
            // left the cache reads its image and every delta after it, and the pages every
            // commit touches (the space map, the page records go into) would otherwise pile
            // up a delta per commit until the checkpoint.
            let logged = self
                .pages
                .keys()
                .map(|id| {
                    view.index
                        .get(id)
                        .is_some_and(|frames| frames.len() < DELTA_CHAIN_MAX)
                })
                .collect();
            (view.cursor, logged)
        };
        let durable_lsn = self.inner.durable_claim(&cursor)?;
        let buffer = self.inner.take_frame_buffer();
        let mut encoder = FrameEncoder::new(cursor, durable_lsn, buffer);
        for ((id, tx_page), logged) in self.pages.iter_mut().zip(logged) {
            encoder.add_page(*id, tx_page, logged);
        }
        let alloc = self.alloc.encode();
        encoder.add(WalEntryType::Commit, PageId(0), &alloc);
        let (bytes, frames, new_cursor) = encoder.finish();
        let appended = self
            .inner
            .wal
            .append(cursor.end, &bytes, new_cursor.last_lsn);
        self.inner.return_frame_buffer(bytes);
        if let Err(error) = appended {
            if let Error::OutcomeUnknown(reason) = &error {
                // The log may hold this commit: nothing more may be written on top of it
                // before an open looked.
                self.inner.poison(reason.clone());
            }
            return Err(error);
        }
        let installed: Vec<(PageId, Page)> = self
            .pages
            .into_iter()
            .filter(|(_, tx_page)| tx_page.page.lsn() > cursor.last_lsn)
            .map(|(id, tx_page)| (id, tx_page.page))
            .collect();
        self.inner
            .publish_commit(&frames, new_cursor, self.alloc, installed)?;
        Ok(new_cursor.last_lsn)
    }
}

/// Largest commit buffer kept for the next commit; a larger one is dropped after use.
const FRAME_BUFFER_KEPT_BYTES_MAX: usize = 4 << 20;
/// Capacity a fresh commit buffer starts with.
const FRAME_BUFFER_INITIAL_BYTES: usize = 16 << 10;

impl Inner {
    /// The LSN this commit's frames claim durable (see `wal::format`): the highest this
    /// process synced or any process recorded in `wal.shm` for this life of the log, never
    /// past the log's end. Claiming only this process's own syncs left another process's
    /// synced frames unproven by every later frame, so a bit flip in them passed for a
    /// torn tail and acknowledged commits vanished after a power loss (found once the
    /// simulator flipped WAL bits in multi-process runs: seeds 655 and 868 of `--faults
    /// corrupt`). Caller holds the writer lock.
    fn durable_claim(&self, cursor: &WalCursor) -> Result<Lsn> {
        let own = self.wal.durable_lsn();
        let shared = self.shm.read_durable(cursor.salt)?;
        Ok(own.max(shared).min(cursor.last_lsn))
    }

    /// A buffer for a commit's frames: the one the last commit used, or a new one.
    fn take_frame_buffer(&self) -> Vec<u8> {
        let mut kept = crate::sched::lock(&self.frame_buffer);
        let buffer = std::mem::take(&mut *kept);
        if buffer.capacity() == 0 {
            return Vec::with_capacity(FRAME_BUFFER_INITIAL_BYTES);
        }
        buffer
    }

    /// Keeps a commit's buffer for the next commit, unless it grew past the limit.
    fn return_frame_buffer(&self, buffer: Vec<u8>) {
        if buffer.capacity() <= FRAME_BUFFER_KEPT_BYTES_MAX {
            *crate::sched::lock(&self.frame_buffer) = buffer;
        }
    }
}

/// Builds the frames of one commit.
struct FrameEncoder {
    cursor: WalCursor,
    durable_lsn: Lsn,
    bytes: Vec<u8>,
    frames: Vec<FrameInfo>,
}

impl FrameEncoder {
    /// An encoder appending to `bytes` (emptied first: a buffer kept from an earlier
    /// commit, so a large batch does not fault in fresh memory every time).
    fn new(cursor: WalCursor, durable_lsn: Lsn, mut bytes: Vec<u8>) -> FrameEncoder {
        bytes.clear();
        FrameEncoder {
            cursor,
            durable_lsn,
            bytes,
            frames: Vec::new(),
        }
    }

    /// Adds the frame for a changed page (nothing if the page did not change).
    fn add_page(&mut self, id: PageId, tx_page: &mut TxPage, logged_since_checkpoint: bool) {
        let ranges = match &tx_page.base {
            Some(base) if logged_since_checkpoint => {
                let ranges = page_diff(base, &tx_page.page);
                if ranges.is_empty() {
                    return;
                }
                Some(ranges).filter(|ranges| delta_len(ranges) < PAGE_SIZE / 2)
            }
            _ => None,
        };
        let lsn = self.cursor.last_lsn.next();
        tx_page.page.set_lsn(lsn);
        match ranges {
            Some(ranges) => {
                let payload = encode_delta(&tx_page.page, &ranges);
                self.add(WalEntryType::PageDelta, id, &payload);
            }
            None => self.add(WalEntryType::PageImage, id, &tx_page.page.bytes()[..]),
        }
    }

    fn add(&mut self, kind: WalEntryType, page: PageId, payload: &[u8]) {
        let lsn = self.cursor.last_lsn.next();
        let start = self.bytes.len();
        let spec = FrameSpec {
            lsn,
            durable_lsn: self.durable_lsn,
            kind,
            page,
            payload,
        };
        let crc = encode_frame(
            &mut self.bytes,
            self.cursor.salt,
            self.cursor.prev_crc,
            spec,
        );
        let offset = self.cursor.end;
        let frame = match parse_frame(&self.bytes[start..], offset, self.cursor.salt) {
            Ok(frame) => frame,
            Err(error) => panic!("a frame just encoded does not parse: {error}"),
        };
        assert_eq!((frame.crc, frame.lsn, frame.page), (crc, lsn, page));
        self.frames.push(frame);
        self.cursor.end += frame.total_len as u64;
        self.cursor.prev_crc = crc;
        self.cursor.last_lsn = lsn;
    }

    fn finish(self) -> (Vec<u8>, Vec<FrameInfo>, WalCursor) {
        (self.bytes, self.frames, self.cursor)
    }
}
