//! Reading records without a lock: a load that reads a handle page, a record page and
//! maybe an overflow chain while other processes commit and checkpoint, and trusts the
//! result only if nothing was published meanwhile (see [`Inner::load_record`]). Placing,
//! moving and freeing records is `records`.

use super::Inner;
use super::records::{corrupt, is_content_page, overflow_chain, owner_of};
use crate::error::{Error, Result};
use crate::handle_page::{self, HomeSlot};
use crate::page::{
    PAGE_DATA_SIZE, PAGE_HEADER_SIZE, PAGE_IDENTITY_SIZE, Page, PageId, PageType, page_identity,
};
use crate::pager::PAGE_FILE_NAME;
use crate::record_id::RecordId;
use crate::slotted::{self, SlotContent};
use std::sync::atomic::Ordering;

/// How often a lock-free load retries, when a commit was published while it read, before
/// it takes the writer locks (see [`Inner::load_record`]).
const RECORD_READ_ATTEMPTS_MAX: u32 = 8;

impl Inner {
    /// The bytes of the record a handle names, as of one commit point, although reads take
    /// no lock. `published` is the shared counter the view has caught up with
    /// ([`Inner::refresh_if_changed`]).
    ///
    /// A load reads at least two pages (the handle page, then the record page, and an
    /// overflow chain for a large record), and another process may commit or checkpoint
    /// between two of those reads (a checkpoint rewrites `pages.db` under lock-free
    /// readers), so the pages may come from different versions. The result is trusted only
    /// if the shared counter did not move while the load ran (no commit published, hence no
    /// checkpoint past the view either: both happen under the WAL lock); otherwise it
    /// catches up and reads again. After [`RECORD_READ_ATTEMPTS_MAX`] moved counters it
    /// reads under the writer locks, where nothing moves: bounded work, and never a mixed
    /// record or a false corruption report.
    ///
    /// `decode` turns the record's bytes into the caller's value; an inline record is
    /// decoded straight from the cached page, without a copy.
    pub(crate) fn load_record<T>(
        &self,
        id: RecordId,
        cache: bool,
        published: u64,
        decode: &dyn Fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let mut published = published;
        for _ in 0..RECORD_READ_ATTEMPTS_MAX {
            let changes = self.view_changes();
            let misses = self.pool.miss_count();
            let outcome = self.load_record_once(id, cache, decode);
            // Nothing changed the view meanwhile and every page came from the pool: the
            // pages are one version, the view's. A page read from `pages.db` could be newer
            // than the view, written by another process's checkpoint: that takes the
            // counter. A view changed by this process's own commit is not told by the
            // counter (a commit changes the view before it publishes): the load runs again
            // (a scan met a freed overflow page while a delete of its process committed,
            // and took that for corruption: `--faults corrupt`, seed 10, once page reads
            // began to check versions).
            let view_unchanged = changes.is_multiple_of(2) && self.view_changes() == changes;
            if view_unchanged && self.pool.miss_count() == misses {
                return outcome;
            }
            let now = self.shm.read()?;
            if view_unchanged && now == published {
                return outcome;
            }
            self.refresh_with(now)?;
            published = now;
        }
        let _writer = self.lock_writer();
        let _lock = super::WalLock::take(self, super::locks::Purpose::Load)?;
        self.refresh()?;
        self.load_record_once(id, cache, decode)
    }

    /// One attempt of [`Inner::load_record`].
    fn load_record_once<T>(
        &self,
        id: RecordId,
        cache: bool,
        decode: &dyn Fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let (alloc, named) = {
            let view = self.read_view();
            let named = view.meta.lineage.names(view.alloc.database_id, id);
            (view.alloc, named)
        };
        if !named || !is_content_page(id.page_id(), alloc.page_count) {
            return Err(Error::NotFound);
        }
        let home_page = self.read_page(id.page_id(), cache)?;
        if home_page.page_type() != Some(PageType::Handles) {
            return Err(Error::NotFound);
        }
        let home = handle_page::lookup(&home_page, id.slot(), id.serial())
            .map_err(|error| error.at(PAGE_FILE_NAME, id.page_id().offset()))?
            .ok_or(Error::NotFound)?;
        drop(home_page);
        if !is_content_page(home.record_page, alloc.page_count) {
            return Err(corrupt(
                id.page_id(),
                format!(
                    "the home slot of {id:?} points outside the file, to {}",
                    home.record_page
                ),
            ));
        }
        let page = match self.pool.get(home.record_page) {
            Some(page) => page,
            None => {
                if cache && let Some(value) = self.load_from_map(id, home, decode) {
                    return Ok(value);
                }
                self.read_missed_page(home.record_page, cache)?
            }
        };
        self.record_in_page(id, home, &page, cache, decode)
    }

    /// True if the shared counter still reads `published` (nothing was committed since).
    pub(crate) fn counter_unmoved(&self, published: u64) -> bool {
        self.shm.read().is_ok_and(|now| now == published)
    }

    /// The record of `id` if it lies inline in `page` (a copy of its record page of the
    /// same commit point as `home`); `None` for anything else (an overflow record, a slot
    /// that is not its record), which the caller reads the long way.
    pub(crate) fn inline_record<T>(
        &self,
        id: RecordId,
        home: HomeSlot,
        page: &Page,
        decode: &dyn Fn(&[u8]) -> Result<T>,
    ) -> Option<Result<T>> {
        if page.page_type() != Some(PageType::Data) {
            return None;
        }
        let slot = slotted::lookup(page, home.record_slot, owner_of(id)).ok()??;
        match slot.content {
            SlotContent::Inline { offset, len } => {
                Some(decode(slotted::inline_bytes(page, offset, len)))
            }
            _ => None,
        }
    }

    /// The record of `id` in its record page (read as `page`).
    fn record_in_page<T>(
        &self,
        id: RecordId,
        home: HomeSlot,
        page: &Page,
        cache: bool,
        decode: &dyn Fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let at =
            |error: crate::error::DecodeError| error.at(PAGE_FILE_NAME, home.record_page.offset());
        let not_its_record = || {
            corrupt(
                home.record_page,
                format!(
                    "the home slot of {id:?} points to slot {} of {}, which does not hold its record",
                    home.record_slot, home.record_page
                ),
            )
        };
        if page.page_type() != Some(PageType::Data) {
            return Err(not_its_record());
        }
        let slot = slotted::lookup(page, home.record_slot, owner_of(id))
            .map_err(at)?
            .ok_or_else(not_its_record)?;
        match slot.content {
            SlotContent::Inline { offset, len } => decode(slotted::inline_bytes(page, offset, len)),
            SlotContent::Overflow { first, len } => decode(&self.read_overflow(first, len, cache)?),
            SlotContent::Free => Err(not_its_record()),
        }
    }

    /// A load whose record page missed the pool, answered by reading just the record
    /// through the page's record map (see [`crate::record_map`]): the page's identity
    /// prefix, whose LSN must be the map's, and the record's bytes, whose CRC32 must be the
    /// map's. `None` for anything else (no map, a page the WAL holds a newer version of, a
    /// mismatch, an I/O error, bytes that do not decode): the caller then reads and verifies
    /// the whole page, which reports what is wrong.
    fn load_from_map<T>(
        &self,
        id: RecordId,
        home: HomeSlot,
        decode: &dyn Fn(&[u8]) -> Result<T>,
    ) -> Option<T> {
        let page_id = home.record_page;
        let location = self.maps.locate(page_id, home.record_slot, id.serial())?;
        // Held while reading, as the whole-page path does: the view names `pages.db` as the
        // home of the page's newest version.
        let view = self.read_view();
        if view.index.contains_key(&page_id) {
            return None;
        }
        let mut prefix = [0u8; PAGE_IDENTITY_SIZE];
        self.pages.read_within(page_id, 0, &mut prefix).ok()?;
        let (page_type, stored_id, lsn) = page_identity(&prefix)?;
        if page_type != PageType::Data || stored_id != page_id || lsn != location.lsn {
            return None;
        }
        let mut bytes = vec![0u8; location.len as usize];
        self.pages
            .read_within(page_id, location.offset, &mut bytes)
            .ok()?;
        drop(view);
        if crc32fast::hash(&bytes) != location.crc {
            return None;
        }
        let node = decode(&bytes).ok()?;
        self.map_reads.fetch_add(1, Ordering::Relaxed);
        Some(node)
    }

    fn read_overflow(&self, first: PageId, len: u32, cache: bool) -> Result<Vec<u8>> {
        let page_count = self.read_view().alloc.page_count;
        let mut bytes = Vec::with_capacity(len as usize);
        let mut remaining = len as usize;
        overflow_chain(first, len, |id| {
            if !is_content_page(id, page_count) {
                return Err(corrupt(
                    first,
                    format!("overflow chain leaves the file at {id}"),
                ));
            }
            let page = self.read_page(id, cache)?;
            let used = page.count() as usize;
            let expected = remaining.min(PAGE_DATA_SIZE);
            if page.page_type() != Some(PageType::Overflow) || used != expected {
                return Err(corrupt(
                    id,
                    format!("{id} is not the overflow page its chain expects"),
                ));
            }
            bytes.extend_from_slice(&page.bytes()[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + used]);
            remaining -= used;
            Ok(page.next())
        })?;
        Ok(bytes)
    }
}
