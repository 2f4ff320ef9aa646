//! Records: placing, reading, moving and freeing the encoded memory nodes.
//!
//! A handle names a *home slot* in a handle page (`crate::handle_page`); the home slot
//! names the record page and slot where the record lives (`crate::slotted`), and that
//! record slot names its owner back (home slot and serial). A record up to
//! [`INLINE_RECORD_MAX`] bytes lives inline in a record page; a larger one in a chain of
//! overflow pages its record slot points to.
//!
//! # Why records live apart from their home slots
//! Before format 2 a record lived in its home slot and moved out (leaving a forward) only
//! when it outgrew its page. A handle then pinned a whole 64 KiB page holding ~30 records:
//! after deleting most records at random, almost every page still held one live handle, so
//! no page could be freed and nothing could be compacted without breaking handles. Now a
//! handle pins only a 16-byte home slot in a page of 4,092 of them, and every record, small
//! or large, can move to any page at any time (an update that outgrows its page, a
//! compaction) by repointing its home slot. The cost is one more page per load (the handle
//! page, hot in the cache: a few hundred instructions).
//!
//! # Promise
//! A handle finds its record only through a home slot holding its serial, and the record
//! slot it reaches must name that home slot and serial back; anything else is `NotFound`
//! (stale handle) or corruption (the two disagree). Serials are never reused (see
//! `crate::record_id`), so a stale handle never reaches another record.

use super::txn::Txn;
use crate::error::{Error, Result};
use crate::handle_page::{self, HomeSlot};
use crate::page::{PAGE_DATA_SIZE, PAGE_HEADER_SIZE, Page, PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::record_id::RecordId;
use crate::slotted::{
    self, INLINE_RECORD_MAX, Owner, Slot, SlotContent, SlotPayload, space_needed,
};
use crate::space_map;

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

pub(super) fn corrupt(page: PageId, detail: impl Into<String>) -> Error {
    Error::corruption(PAGE_FILE_NAME, page.offset(), detail)
}

pub(super) fn owner_of(id: RecordId) -> Owner {
    Owner {
        home_page: id.page_id(),
        home_slot: id.slot(),
        serial: id.serial(),
    }
}

/// True if `page` may hold records or handles (inside the file, not a meta or map page).
pub(super) fn is_content_page(page: PageId, page_count: u64) -> bool {
    page >= FIRST_DATA_PAGE && page.0 < page_count && !space_map::is_map_page(page)
}

impl Txn<'_> {
    /// Stores a new record and returns its handle.
    pub fn insert_record(&mut self, bytes: &[u8]) -> Result<RecordId> {
        let serial = self.next_serial()?;
        let home_page = self.page_with_free_handle()?;
        let home_slot = handle_page::find_free(&*self.read(home_page)?).ok_or_else(|| {
            corrupt(
                home_page,
                format!("{home_page} was chosen for a free handle and has none"),
            )
        })?;
        let owner = Owner {
            home_page,
            home_slot,
            serial,
        };
        let placed = self.place_bytes(bytes)?;
        let (record_page, record_slot) = self.place_record(placed.payload(), owner, None)?;
        let page = self.page_mut(home_page)?;
        handle_page::occupy(
            page,
            home_slot,
            HomeSlot {
                serial,
                record_page,
                record_slot,
            },
        );
        self.note_room(home_page)?;
        RecordId::new(self.alloc.database_id, home_page, home_slot, serial)
            .ok_or_else(|| corrupt(home_page, "a handle out of range was about to be issued"))
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

    /// Puts a record slot of `owner` into some record page (not `avoid`).
    fn place_record(
        &mut self,
        payload: SlotPayload<'_>,
        owner: Owner,
        avoid: Option<PageId>,
    ) -> Result<(PageId, u32)> {
        let needed = space_needed(match payload {
            SlotPayload::Inline(bytes) => bytes.len(),
            SlotPayload::Overflow { .. } => 0,
        });
        let page_id = self.page_with_room(needed, avoid)?;
        let page = self.page_mut(page_id)?;
        slotted::check_data_page(page)
            .map_err(|error| error.at(PAGE_FILE_NAME, page_id.offset()))?;
        let slot = slotted::insert(page, payload, owner);
        self.note_room(page_id)?;
        match slot {
            Some(slot) => Ok((page_id, slot)),
            None => Err(corrupt(
                page_id,
                format!("{page_id} was chosen for {needed} bytes and does not hold them"),
            )),
        }
    }

    /// Tells the space cache how much room a page changed by this transaction has now
    /// (its map entry is settled at commit).
    fn note_room(&mut self, id: PageId) -> Result<()> {
        let page = self.read(id)?;
        let entry = match page.page_type() {
            Some(PageType::Data) => space_map::record_entry(slotted::free_space(&page)),
            Some(PageType::Handles) if handle_page::has_room(&page) => space_map::HANDLES_WITH_ROOM,
            _ => space_map::IN_USE,
        };
        drop(page);
        self.space.set(id, entry);
        Ok(())
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

    /// Frees what a record slot's content owns outside its page (an overflow chain).
    fn release(&mut self, content: SlotContent) -> Result<()> {
        if let SlotContent::Overflow { first, len } = content {
            let chain = self.checked_chain(first, len)?;
            for id in chain {
                self.free(id)?;
            }
        }
        Ok(())
    }

    /// The pages of the overflow chain from `first` holding `len` bytes, each checked to
    /// be an overflow page in the file (a chain that reaches another kind of page is
    /// corruption: freeing or moving it would destroy that page).
    fn checked_chain(&self, first: PageId, len: u32) -> Result<Vec<PageId>> {
        let page_count = self.alloc.page_count;
        overflow_chain(first, len, |id| {
            if !is_content_page(id, page_count) {
                return Err(corrupt(
                    first,
                    format!("overflow chain from {first} leaves the file at {id}"),
                ));
            }
            let page = self.read(id)?;
            if page.page_type() != Some(PageType::Overflow) {
                return Err(corrupt(
                    id,
                    format!("{id} is not the overflow page its chain expects"),
                ));
            }
            Ok(page.next())
        })
    }

    /// The live home slot a handle names.
    fn home_slot(&self, id: RecordId) -> Result<HomeSlot> {
        if !self.lineage.names(self.alloc.database_id, id)
            || !is_content_page(id.page_id(), self.alloc.page_count)
        {
            return Err(Error::NotFound);
        }
        let page = self.read(id.page_id())?;
        if page.page_type() != Some(PageType::Handles) {
            return Err(Error::NotFound);
        }
        handle_page::lookup(&page, id.slot(), id.serial())
            .map_err(|error| error.at(PAGE_FILE_NAME, id.page_id().offset()))?
            .ok_or(Error::NotFound)
    }

    /// The record slot a live home slot points to; corruption if it is not that record's.
    fn record_slot(&self, id: RecordId, home: HomeSlot) -> Result<Slot> {
        let bad = || {
            corrupt(
                id.page_id(),
                format!(
                    "the home slot of {id:?} points to {} slot {}, which does not hold its record",
                    home.record_page, home.record_slot
                ),
            )
        };
        if !is_content_page(home.record_page, self.alloc.page_count) {
            return Err(bad());
        }
        let page = self.read(home.record_page)?;
        if page.page_type() != Some(PageType::Data) {
            return Err(bad());
        }
        slotted::lookup(&page, home.record_slot, owner_of(id))
            .map_err(|error| error.at(PAGE_FILE_NAME, home.record_page.offset()))?
            .ok_or_else(bad)
    }

    /// Deletes a record.
    pub fn delete_record(&mut self, id: RecordId) -> Result<()> {
        let home = self.home_slot(id)?;
        self.record_slot(id, home)?;
        let page = self.page_mut(home.record_page)?;
        let content = slotted::remove(page, home.record_slot)
            .map_err(|error| error.at(PAGE_FILE_NAME, home.record_page.offset()))?;
        self.note_room(home.record_page)?;
        self.release(content)?;
        handle_page::vacate(self.page_mut(id.page_id())?, id.slot());
        self.note_room(id.page_id())
    }

    /// Replaces a record's bytes; the handle stays valid wherever the bytes end up.
    pub fn update_record(&mut self, id: RecordId, bytes: &[u8]) -> Result<()> {
        let home = self.home_slot(id)?;
        let old = self.record_slot(id, home)?.content;
        let placed = self.place_bytes(bytes)?;
        let at_record =
            |error: crate::error::DecodeError| error.at(PAGE_FILE_NAME, home.record_page.offset());
        let page = self.page_mut(home.record_page)?;
        if slotted::replace(page, home.record_slot, placed.payload()).map_err(at_record)? {
            self.note_room(home.record_page)?;
            return self.release(old);
        }
        self.relocate(id, home, placed.payload(), Some(home.record_page))?;
        self.release(old)
    }

    /// Moves a record to a slot in another record page (not `avoid`) with `payload` as its
    /// bytes, frees its old slot and repoints its home slot. Returns the new place.
    fn relocate(
        &mut self,
        id: RecordId,
        home: HomeSlot,
        payload: SlotPayload<'_>,
        avoid: Option<PageId>,
    ) -> Result<(PageId, u32)> {
        crate::rare_paths::hit(crate::rare_paths::RarePath::RecordRelocated);
        let (record_page, record_slot) = self.place_record(payload, owner_of(id), avoid)?;
        let page = self.page_mut(home.record_page)?;
        slotted::remove(page, home.record_slot)
            .map_err(|error| error.at(PAGE_FILE_NAME, home.record_page.offset()))?;
        self.note_room(home.record_page)?;
        handle_page::repoint(
            self.page_mut(id.page_id())?,
            id.slot(),
            record_page,
            record_slot,
        );
        Ok((record_page, record_slot))
    }

    /// Moves every record of record page `page` to other record pages (the page is then
    /// empty; the caller reuses it).
    pub fn empty_record_page(&mut self, page: PageId) -> Result<()> {
        if self.alloc.record_hint == page {
            self.alloc.record_hint = PageId(0);
        }
        let owners: Vec<(u32, Owner)> = {
            let copy = self.read(page)?;
            let mut owners = Vec::new();
            for index in 0..slotted::slot_count(&copy) {
                let slot = slotted::read_slot(&copy, index)
                    .map_err(|error| error.at(PAGE_FILE_NAME, page.offset()))?;
                if slot.content != SlotContent::Free {
                    owners.push((index, slot.owner));
                }
            }
            owners
        };
        for (index, owner) in owners {
            let id = RecordId::new(
                self.lineage.issuer(self.alloc.database_id, owner.serial),
                owner.home_page,
                owner.home_slot,
                owner.serial,
            )
            .ok_or_else(|| corrupt(page, format!("slot {index} of {page} names no valid home")))?;
            let home = self.home_slot(id).map_err(|error| match error {
                Error::NotFound => corrupt(
                    page,
                    format!("slot {index} of {page} holds a record no home slot reaches"),
                ),
                other => other,
            })?;
            if (home.record_page, home.record_slot) != (page, index) {
                return Err(corrupt(
                    page,
                    format!("the home slot of {id:?} does not point to slot {index} of {page}"),
                ));
            }
            let copy = self.read(page)?;
            let slot = slotted::read_slot(&copy, index)
                .map_err(|error| error.at(PAGE_FILE_NAME, page.offset()))?;
            let bytes: Vec<u8>;
            let payload = match slot.content {
                SlotContent::Inline { offset, len } => {
                    bytes = slotted::inline_bytes(&copy, offset, len).to_vec();
                    SlotPayload::Inline(&bytes)
                }
                SlotContent::Overflow { first, len } => SlotPayload::Overflow { first, len },
                SlotContent::Free => continue,
            };
            drop(copy);
            self.relocate(id, home, payload, Some(page))?;
        }
        Ok(())
    }

    /// Moves the record `id` (which lives in record page `from`) to the lowest record page
    /// with room below `from`, if there is one; its overflow chain, if any, stays. Returns
    /// true if it moved. For compaction.
    pub fn move_record_down(&mut self, id: RecordId, from: PageId) -> Result<bool> {
        let home = self.home_slot(id)?;
        if home.record_page != from {
            return Ok(false);
        }
        let slot = self.record_slot(id, home)?;
        let page = self.read(from)?;
        let bytes: Vec<u8>;
        let payload = match slot.content {
            SlotContent::Inline { offset, len } => {
                bytes = slotted::inline_bytes(&page, offset, len).to_vec();
                SlotPayload::Inline(&bytes)
            }
            SlotContent::Overflow { first, len } => SlotPayload::Overflow { first, len },
            SlotContent::Free => return Ok(false),
        };
        drop(page);
        let needed = space_needed(match payload {
            SlotPayload::Inline(bytes) => bytes.len(),
            SlotPayload::Overflow { .. } => 0,
        });
        let Some(target) = self.lower_page_with_room(needed, from)? else {
            return Ok(false);
        };
        self.alloc.record_hint = target;
        self.relocate(id, home, payload, Some(from))?;
        Ok(true)
    }

    /// Copies the overflow chain of record `id` into free pages below the lowest page of
    /// the chain that lies at or past `bound`, if it has any; returns true if it moved.
    pub fn move_chain_down(&mut self, id: RecordId, bound: u64) -> Result<bool> {
        let home = self.home_slot(id)?;
        let slot = self.record_slot(id, home)?;
        let SlotContent::Overflow { first, len } = slot.content else {
            return Ok(false);
        };
        // Checked as a delete checks it: compaction moved a chain that ran into a record
        // page and freed that page (found by the salvage work with a hand-made link).
        let chain = self.checked_chain(first, len)?;
        if chain.iter().all(|page| page.0 < bound) {
            return Ok(false);
        }
        let mut bytes = Vec::with_capacity(len as usize);
        for page in &chain {
            let page = self.read(*page)?;
            let used = (page.count() as usize).min(PAGE_DATA_SIZE);
            bytes.extend_from_slice(&page.bytes()[PAGE_HEADER_SIZE..PAGE_HEADER_SIZE + used]);
        }
        if bytes.len() != len as usize {
            return Err(corrupt(
                first,
                format!(
                    "the overflow chain from {first} holds {} bytes, its record {len}",
                    bytes.len()
                ),
            ));
        }
        for page in &chain {
            self.free(*page)?;
        }
        let new_first = self.write_overflow(&bytes)?;
        let record = self.page_mut(home.record_page)?;
        let replaced = slotted::replace(
            record,
            home.record_slot,
            SlotPayload::Overflow {
                first: new_first,
                len,
            },
        )
        .map_err(|error| error.at(PAGE_FILE_NAME, home.record_page.offset()))?;
        assert!(
            replaced,
            "an overflow pointer replaces an overflow pointer in place"
        );
        Ok(true)
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
pub(crate) fn overflow_chain(
    first: PageId,
    len: u32,
    mut next_of: impl FnMut(PageId) -> Result<PageId>,
) -> Result<Vec<PageId>> {
    let expected = (len as usize).div_ceil(PAGE_DATA_SIZE);
    let mut ids = Vec::with_capacity(expected);
    let mut current = first;
    while ids.len() < expected {
        if current < FIRST_DATA_PAGE {
            return Err(corrupt(
                first,
                format!("overflow chain from {first} ends early"),
            ));
        }
        ids.push(current);
        current = next_of(current)?;
    }
    if current.0 != 0 {
        return Err(corrupt(
            first,
            format!("overflow chain from {first} is too long"),
        ));
    }
    Ok(ids)
}
