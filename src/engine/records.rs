//! Records on pages: placing, reading, moving and freeing the encoded memory nodes.
//!
//! A record up to `INLINE_RECORD_MAX` bytes lives in a slot of a data page; a larger one in
//! a chain of overflow pages that its slot points to. A handle's home slot never moves:
//! when an update no longer fits in the home page, the record moves to another page (a
//! `moved_in` slot) and the home slot forwards to it. Forwards are one hop at most: a
//! record that moves again updates the home slot's forward and frees the old place.
//!
//! Data pages are never freed, even when empty: a stale handle therefore always lands on a
//! data page whose slot generations only grow, and can never name another record. Their
//! space is reused by later records (the free-space hints remember where room is).

use super::Inner;
use super::txn::Txn;
use crate::error::{Error, Result};
use crate::page::{
    PAGE_DATA_SIZE, PAGE_HEADER_SIZE, PAGE_IDENTITY_SIZE, Page, PageId, PageType, page_identity,
};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::record_id::RecordId;
use crate::slotted::{
    self, INLINE_RECORD_MAX, Slot, SlotContent, SlotPayload, free_space, space_needed,
};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::Ordering;

/// How often a lock-free read of a record spanning pages retries before it takes the
/// writer locks (see [`Inner::load_record`]).
const RECORD_READ_ATTEMPTS_MAX: u32 = 8;

/// Whether reading a record touched only its home page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PagesRead {
    One,
    Several,
}

/// Free-space hints kept by a writer; pages with less room than this are forgotten.
const HINT_FREE_BYTES_MIN: usize = 512;
/// Most pages remembered in the free-space hints.
const HINT_PAGES_MAX: usize = 1024;

/// Where a writer looks first for room: data pages with known free bytes, also ordered by
/// those bytes, so finding room is a range lookup (a walk over every page with a few
/// hundred bytes left was 9 % of a batch of stores).
#[derive(Debug, Default)]
pub(crate) struct FreeSpaceHints {
    pages: BTreeMap<PageId, usize>,
    by_free: BTreeSet<(usize, PageId)>,
}

impl FreeSpaceHints {
    /// The page with the least free space that still holds `needed` bytes (best fit).
    fn find(&self, needed: usize, avoid: Option<PageId>) -> Option<PageId> {
        self.by_free
            .range((needed, PageId(0))..)
            .map(|&(_, page)| page)
            .find(|page| Some(*page) != avoid)
    }

    /// Records the free space of a data page after a commit.
    pub fn note(&mut self, page: PageId, free: usize) {
        if let Some(old) = self.pages.remove(&page) {
            self.by_free.remove(&(old, page));
        }
        if free >= HINT_FREE_BYTES_MIN && self.pages.len() < HINT_PAGES_MAX {
            self.pages.insert(page, free);
            self.by_free.insert((free, page));
        }
        debug_assert_eq!(self.pages.len(), self.by_free.len());
    }
}

/// A record's new bytes, once placed: inline bytes or an overflow chain already written.
#[derive(Debug, Clone, Copy)]
enum Placed<'b> {
    Inline(&'b [u8]),
    Overflow { first: PageId, len: u32 },
}

impl<'b> Placed<'b> {
    fn payload(self) -> SlotPayload<'b> {
        match self {
            Placed::Inline(bytes) => SlotPayload::Inline(bytes),
            Placed::Overflow { first, len } => SlotPayload::Overflow { first, len },
        }
    }
}

fn bad_slot(page: PageId, detail: impl Into<String>) -> Error {
    Error::corruption(PAGE_FILE_NAME, page.offset(), detail)
}

impl Txn<'_> {
    /// Stores a new record and returns its handle.
    pub fn insert_record(&mut self, bytes: &[u8], hints: &mut FreeSpaceHints) -> Result<RecordId> {
        let placed = self.place_bytes(bytes)?;
        self.place_slot(placed.payload(), false, None, hints)
    }

    fn place_bytes<'b>(&mut self, bytes: &'b [u8]) -> Result<Placed<'b>> {
        if bytes.len() <= INLINE_RECORD_MAX {
            return Ok(Placed::Inline(bytes));
        }
        let first = self.write_overflow(bytes)?;
        Ok(Placed::Overflow {
            first,
            len: bytes.len() as u32,
        })
    }

    /// Puts a slot payload into some data page (not `avoid`), allocating one if needed.
    fn place_slot(
        &mut self,
        payload: SlotPayload<'_>,
        moved_in: bool,
        avoid: Option<PageId>,
        hints: &mut FreeSpaceHints,
    ) -> Result<RecordId> {
        let needed = space_needed(match payload {
            SlotPayload::Inline(bytes) => bytes.len(),
            _ => 0,
        });
        let hinted = hints.find(needed, avoid);
        let insert_hint =
            Some(self.alloc.insert_hint).filter(|page| page.0 != 0 && Some(*page) != avoid);
        for candidate in [hinted, insert_hint].into_iter().flatten() {
            if let Some(id) = self.try_insert(candidate, payload, moved_in)? {
                return Ok(id);
            }
            hints.note(candidate, 0);
        }
        let page_id = self.allocate(PageType::Data)?;
        self.alloc.insert_hint = page_id;
        match self.try_insert(page_id, payload, moved_in)? {
            Some(id) => Ok(id),
            None => unreachable!("a payload of at most INLINE_RECORD_MAX fits an empty page"),
        }
    }

    fn try_insert(
        &mut self,
        page_id: PageId,
        payload: SlotPayload<'_>,
        moved_in: bool,
    ) -> Result<Option<RecordId>> {
        let page = self.page_mut(page_id)?;
        slotted::check_data_page(page)
            .map_err(|error| error.at(PAGE_FILE_NAME, page_id.offset()))?;
        Ok(slotted::insert(page, payload, moved_in)
            .and_then(|(slot, generation)| RecordId::new(page_id, slot, generation)))
    }

    fn write_overflow(&mut self, bytes: &[u8]) -> Result<PageId> {
        let chunks: Vec<&[u8]> = bytes.chunks(PAGE_DATA_SIZE).collect();
        let mut ids = Vec::with_capacity(chunks.len());
        for _ in &chunks {
            ids.push(self.allocate(PageType::Overflow)?);
        }
        for (index, chunk) in chunks.iter().enumerate() {
            let next = ids.get(index + 1).copied().unwrap_or(PageId(0));
            let page = self.page_mut(ids[index])?;
            write_overflow_page(page, chunk, next);
        }
        Ok(ids[0])
    }

    fn free_overflow(&mut self, first: PageId, len: u32) -> Result<()> {
        for id in overflow_chain(first, len, |id| Ok(self.read(id)?.next()))? {
            self.free(id)?;
        }
        Ok(())
    }

    /// The live slot a user handle names.
    fn home_slot(&self, id: RecordId) -> Result<Slot> {
        if id.page_id() < FIRST_DATA_PAGE || id.page_id().0 >= self.alloc.page_count {
            return Err(Error::NotFound);
        }
        let page = self.read(id.page_id())?;
        if page.page_type() != Some(PageType::Data) {
            return Err(Error::NotFound);
        }
        slotted::lookup(&page, id, false)
            .map_err(|error| error.at(PAGE_FILE_NAME, id.page_id().offset()))?
            .ok_or(Error::NotFound)
    }

    /// The moved-in slot a forward names.
    fn forward_target(&self, home: RecordId, target: RecordId) -> Result<Slot> {
        let bad = || {
            bad_slot(
                home.page_id(),
                format!("{home:?} forwards to a missing {target:?}"),
            )
        };
        if target.page_id() < FIRST_DATA_PAGE || target.page_id().0 >= self.alloc.page_count {
            return Err(bad());
        }
        let page = self.read(target.page_id())?;
        let slot = slotted::lookup(&page, target, true)
            .map_err(|error| error.at(PAGE_FILE_NAME, target.page_id().offset()))?
            .ok_or_else(bad)?;
        if !slot.moved_in || matches!(slot.content, SlotContent::Forward(_)) {
            return Err(bad());
        }
        Ok(slot)
    }

    /// Frees what a slot's content owns outside the slot: an overflow chain, or a forward
    /// target (with its own chain).
    fn release(&mut self, home: RecordId, content: SlotContent) -> Result<()> {
        match content {
            SlotContent::Overflow { first, len } => self.free_overflow(first, len),
            SlotContent::Forward(target) => {
                let slot = self.forward_target(home, target)?;
                let page = self.page_mut(target.page_id())?;
                slotted::remove(page, target.slot())
                    .map_err(|error| error.at(PAGE_FILE_NAME, target.page_id().offset()))?;
                self.release(home, slot.content)
            }
            _ => Ok(()),
        }
    }

    /// Deletes a record.
    pub fn delete_record(&mut self, id: RecordId) -> Result<()> {
        let slot = self.home_slot(id)?;
        self.release(id, slot.content)?;
        let page = self.page_mut(id.page_id())?;
        slotted::remove(page, id.slot())
            .map_err(|error| error.at(PAGE_FILE_NAME, id.page_id().offset()))?;
        Ok(())
    }

    /// Replaces a record's bytes; the handle stays valid wherever the bytes end up.
    pub fn update_record(
        &mut self,
        id: RecordId,
        bytes: &[u8],
        hints: &mut FreeSpaceHints,
    ) -> Result<()> {
        let old = self.home_slot(id)?.content;
        let placed = self.place_bytes(bytes)?;
        let at_home =
            |error: crate::error::DecodeError| error.at(PAGE_FILE_NAME, id.page_id().offset());
        let home_page = self.page_mut(id.page_id())?;
        if slotted::replace(home_page, id.slot(), placed.payload()).map_err(at_home)? {
            return self.release(id, old);
        }
        if let SlotContent::Forward(target) = old {
            let target_slot = self.forward_target(id, target)?;
            let at_target = |error: crate::error::DecodeError| {
                error.at(PAGE_FILE_NAME, target.page_id().offset())
            };
            let target_page = self.page_mut(target.page_id())?;
            if slotted::replace(target_page, target.slot(), placed.payload()).map_err(at_target)? {
                return self.release(id, target_slot.content);
            }
        }
        let moved = self.place_slot(placed.payload(), true, Some(id.page_id()), hints)?;
        let home_page = self.page_mut(id.page_id())?;
        let forwarded =
            slotted::replace(home_page, id.slot(), SlotPayload::Forward(moved)).map_err(at_home)?;
        assert!(forwarded, "a forward always fits where a record was");
        match old {
            SlotContent::Inline { .. } => Ok(()),
            other => self.release(id, other),
        }
    }
}

/// Fills an overflow page with a chunk of a record.
fn write_overflow_page(page: &mut Page, chunk: &[u8], next: PageId) {
    assert!(
        chunk.len() <= PAGE_DATA_SIZE,
        "overflow chunk larger than a page"
    );
    page.set_next(next);
    page.set_count(chunk.len() as u32);
    page.bytes_mut()[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + chunk.len()].copy_from_slice(chunk);
}

/// The pages of an overflow chain of `len` bytes, following `next` links; fails on a chain
/// of the wrong length or a cycle (the length bounds the walk).
fn overflow_chain(
    first: PageId,
    len: u32,
    mut next_of: impl FnMut(PageId) -> Result<PageId>,
) -> Result<Vec<PageId>> {
    let expected = (len as usize).div_ceil(PAGE_DATA_SIZE);
    let mut ids = Vec::with_capacity(expected);
    let mut current = first;
    while ids.len() < expected {
        if current < FIRST_DATA_PAGE {
            return Err(bad_slot(
                first,
                format!("overflow chain from {first} ends early"),
            ));
        }
        ids.push(current);
        current = next_of(current)?;
    }
    if current.0 != 0 {
        return Err(bad_slot(
            first,
            format!("overflow chain from {first} is too long"),
        ));
    }
    Ok(ids)
}

impl Inner {
    /// The bytes of the record a user handle names, as of one commit point, although reads
    /// take no lock. `published` is the shared counter the view has caught up with
    /// ([`Inner::refresh_if_changed`]).
    ///
    /// A record in its home slot is read from one page, which is always one version. A
    /// forwarded or overflowing record spans pages, and another process may commit or
    /// checkpoint between two of those page reads (a checkpoint rewrites `pages.db` under
    /// lock-free readers), so the pages may come from different versions: a forward to a
    /// slot since freed, an overflow chain since reused by another record. Such a read is
    /// trusted only if the shared counter did not move while it ran (no commit published,
    /// hence no checkpoint past the view either, since both happen under the WAL lock);
    /// otherwise it catches up and reads again. After [`RECORD_READ_ATTEMPTS_MAX`] moved
    /// counters it reads under the writer locks, where nothing moves: bounded work, and
    /// never a mixed record or a false corruption report.
    ///
    /// `decode` turns the record's bytes into the caller's value; a record in its home slot
    /// is decoded straight from the cached page, without a copy.
    pub(crate) fn load_record<T>(
        &self,
        id: RecordId,
        cache: bool,
        published: u64,
        decode: &dyn Fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        let mut published = published;
        for _ in 0..RECORD_READ_ATTEMPTS_MAX {
            let (outcome, pages) = self.load_record_once(id, cache, decode);
            if pages == PagesRead::One {
                return outcome;
            }
            let now = self.shm.read()?;
            if now == published {
                return outcome;
            }
            self.refresh_with(now)?;
            published = now;
        }
        let _writer = self.lock_writer();
        let _lock = super::WalLock::take(&self.wal)?;
        self.refresh()?;
        self.load_record_once(id, cache, decode).0
    }

    /// One attempt of [`Inner::load_record`], and whether it read beyond the home page.
    fn load_record_once<T>(
        &self,
        id: RecordId,
        cache: bool,
        decode: &dyn Fn(&[u8]) -> Result<T>,
    ) -> (Result<T>, PagesRead) {
        let page_count = self.read_view().alloc.page_count;
        if id.page_id() < FIRST_DATA_PAGE || id.page_id().0 >= page_count {
            return (Err(Error::NotFound), PagesRead::One);
        }
        let page = match self.pool.get(id.page_id()) {
            Some(page) => page,
            None => {
                if cache && let Some(node) = self.load_from_map(id, decode) {
                    return (Ok(node), PagesRead::One);
                }
                match self.read_missed_page(id.page_id(), cache) {
                    Ok(page) => page,
                    Err(error) => return (Err(error), PagesRead::One),
                }
            }
        };
        if page.page_type() != Some(PageType::Data) {
            return (Err(Error::NotFound), PagesRead::One);
        }
        let at = |error: crate::error::DecodeError| error.at(PAGE_FILE_NAME, id.page_id().offset());
        let slot = match slotted::lookup(&page, id, false) {
            Ok(Some(slot)) => slot,
            Ok(None) => return (Err(Error::NotFound), PagesRead::One),
            Err(error) => return (Err(at(error)), PagesRead::One),
        };
        match slot.content {
            SlotContent::Forward(target) => (
                self.load_moved(id, target, page_count, cache)
                    .and_then(|bytes| decode(&bytes)),
                PagesRead::Several,
            ),
            content @ SlotContent::Overflow { .. } => (
                self.slot_bytes(&page, id.page_id(), content, cache)
                    .and_then(|bytes| decode(&bytes)),
                PagesRead::Several,
            ),
            SlotContent::Inline { offset, len } => (
                decode(slotted::inline_bytes(&page, offset, len)),
                PagesRead::One,
            ),
            content => (
                self.slot_bytes(&page, id.page_id(), content, cache)
                    .and_then(|bytes| decode(&bytes)),
                PagesRead::One,
            ),
        }
    }

    /// A load that missed the pool, answered by reading just the record through its page's
    /// record map (see [`crate::record_map`]): the page's identity prefix, whose LSN must
    /// be the map's, and the record's bytes, whose CRC32 must be the map's. `None` for
    /// anything else (no map, a page the WAL holds a newer version of, a mismatch, an I/O
    /// error, bytes that do not decode): the caller then reads and verifies the whole page,
    /// which reports what is wrong.
    fn load_from_map<T>(&self, id: RecordId, decode: &dyn Fn(&[u8]) -> Result<T>) -> Option<T> {
        let location = self.maps.locate(id)?;
        let page_id = id.page_id();
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

    fn load_moved(
        &self,
        home: RecordId,
        target: RecordId,
        page_count: u64,
        cache: bool,
    ) -> Result<Vec<u8>> {
        let bad = || {
            bad_slot(
                home.page_id(),
                format!("{home:?} forwards to a missing {target:?}"),
            )
        };
        if target.page_id() < FIRST_DATA_PAGE || target.page_id().0 >= page_count {
            return Err(bad());
        }
        let page = self.read_page(target.page_id(), cache)?;
        let at =
            |error: crate::error::DecodeError| error.at(PAGE_FILE_NAME, target.page_id().offset());
        let slot = slotted::lookup(&page, target, true)
            .map_err(at)?
            .ok_or_else(bad)?;
        if !slot.moved_in || matches!(slot.content, SlotContent::Forward(_)) {
            return Err(bad());
        }
        self.slot_bytes(&page, target.page_id(), slot.content, cache)
    }

    /// The bytes behind a slot's content (inline or an overflow chain).
    pub(crate) fn slot_bytes(
        &self,
        page: &Page,
        page_id: PageId,
        content: SlotContent,
        cache: bool,
    ) -> Result<Vec<u8>> {
        match content {
            SlotContent::Inline { offset, len } => {
                Ok(slotted::inline_bytes(page, offset, len).to_vec())
            }
            SlotContent::Overflow { first, len } => self.read_overflow(first, len, cache),
            other => Err(bad_slot(
                page_id,
                format!("slot content {other:?} holds no record"),
            )),
        }
    }

    fn read_overflow(&self, first: PageId, len: u32, cache: bool) -> Result<Vec<u8>> {
        let page_count = self.read_view().alloc.page_count;
        let mut bytes = Vec::with_capacity(len as usize);
        let mut remaining = len as usize;
        overflow_chain(first, len, |id| {
            if id.0 >= page_count {
                return Err(bad_slot(
                    first,
                    format!("overflow chain leaves the file at {id}"),
                ));
            }
            let page = self.read_page(id, cache)?;
            let used = page.count() as usize;
            let expected = remaining.min(PAGE_DATA_SIZE);
            if page.page_type() != Some(PageType::Overflow) || used != expected {
                return Err(bad_slot(
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

    /// Updates the free-space hints after a commit that changed `pages`.
    pub(crate) fn note_free_space<'p>(
        hints: &mut FreeSpaceHints,
        pages: impl Iterator<Item = (&'p PageId, &'p Page)>,
    ) {
        for (id, page) in pages {
            if page.page_type() == Some(PageType::Data) {
                hints.note(*id, free_space(page));
            }
        }
    }
}
