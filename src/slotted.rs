//! The slotted layout of record pages: many records share one page.
//!
//! Records live in record pages (page type `Data`); a handle names the record's *home slot*
//! in a handle page (`handle_page`), which points here. Every record slot carries its
//! owner, the home slot and serial it belongs to, so a reader that followed a home slot
//! can tell that what it found is still that record, and a scan or a compaction can find
//! the home slot of what it meets.
//!
//! # Byte layout of a record page's body
//!
//! ```text
//! 48 .. record_end                       record bytes, packed upwards (with holes)
//! record_end .. PAGE_SIZE - count*24     free space
//! PAGE_SIZE - (i+1)*24                   slot i (the directory grows downwards)
//! ```
//!
//! A slot is 24 bytes: `kind u8, reserved u8, home_slot u16, home_page u32, serial u64,
//! a u32, b u32`.
//!
//! | kind | meaning | a | b |
//! |---|---|---|---|
//! | 0 free | reusable | - | - |
//! | 1 inline | record bytes in this page | offset | length |
//! | 2 overflow | record bytes in an overflow chain | first page | length |
//!
//! Invariants kept by every mutation: `48 <= record_end <= PAGE_SIZE - count*24`; every
//! inline record lies inside `48..record_end`; `live_bytes` is the sum of inline lengths;
//! records never overlap; the last slot of the directory is never free (trailing free slots
//! are dropped). Readers do not trust them: every slot and range is bounds-checked when
//! read, so a damaged page gives a [`DecodeError`], never a panic.

use crate::error::DecodeError;
use crate::page::{PAGE_HEADER_SIZE, PAGE_SIZE, Page, PageId, PageType};
use crate::record_id::{HOME_SLOTS_PER_PAGE, Serial};

/// Size of one slot directory entry.
pub const SLOT_SIZE: usize = 24;
/// Records larger than this go to an overflow chain instead of a record page, so that
/// record pages keep packing many records.
pub const INLINE_RECORD_MAX: usize = 16 * 1024;
/// Most slots a record page holds.
pub const RECORD_SLOTS_PER_PAGE_MAX: u32 = 2048;

const _: () = assert!(INLINE_RECORD_MAX + SLOT_SIZE < PAGE_SIZE - PAGE_HEADER_SIZE);
const _: () = assert!(RECORD_SLOTS_PER_PAGE_MAX as usize * SLOT_SIZE <= PAGE_SIZE);

const KIND_FREE: u8 = 0;
const KIND_INLINE: u8 = 1;
const KIND_OVERFLOW: u8 = 2;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotContent {
    /// Reusable.
    Free,
    /// Record bytes at `offset..offset+len` in this page.
    Inline {
        /// Byte offset in the page.
        offset: u32,
        /// Record length.
        len: u32,
    },
    /// Record bytes in an overflow chain starting at `first`.
    Overflow {
        /// First page of the chain.
        first: PageId,
        /// Total record length.
        len: u32,
    },
}

/// The home slot (and serial) a record belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Owner {
    /// The handle page of its home slot.
    pub home_page: PageId,
    /// The home slot's index.
    pub home_slot: u32,
    /// The record's serial.
    pub serial: Serial,
}

/// A decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// What it holds.
    pub content: SlotContent,
    /// Whose record it is (meaningless for a free slot).
    pub owner: Owner,
}

/// What to put into a slot.
#[derive(Debug, Clone, Copy)]
pub enum SlotPayload<'a> {
    /// Record bytes stored in the page.
    Inline(&'a [u8]),
    /// A pointer to an overflow chain.
    Overflow {
        /// First page of the chain.
        first: PageId,
        /// Total record length.
        len: u32,
    },
}

impl SlotPayload<'_> {
    fn inline_len(&self) -> usize {
        match self {
            SlotPayload::Inline(bytes) => bytes.len(),
            SlotPayload::Overflow { .. } => 0,
        }
    }
}

fn slot_position(index: u32) -> usize {
    PAGE_SIZE - (index as usize + 1) * SLOT_SIZE
}

fn directory_start(page: &Page) -> usize {
    PAGE_SIZE - page.count() as usize * SLOT_SIZE
}

/// A new, empty record page.
pub fn new_data_page(page_id: PageId) -> Page {
    Page::new(page_id, PageType::Data)
}

/// Checks the page-level fields of a record page.
pub fn check_data_page(page: &Page) -> Result<(), DecodeError> {
    if page.page_type() != Some(PageType::Data) {
        return Err(DecodeError::new(format!(
            "expected a record page, found type {:?}",
            page.page_type()
        )));
    }
    let count = page.count();
    if count > RECORD_SLOTS_PER_PAGE_MAX {
        return Err(DecodeError::new(format!(
            "slot count {count} over the limit"
        )));
    }
    let record_end = page.record_end() as usize;
    if record_end < PAGE_HEADER_SIZE || record_end > directory_start(page) {
        return Err(DecodeError::new(format!(
            "record area end {record_end} outside {PAGE_HEADER_SIZE}..={}",
            directory_start(page)
        )));
    }
    if page.live_bytes() as usize > record_end - PAGE_HEADER_SIZE {
        return Err(DecodeError::new("live byte count exceeds the record area"));
    }
    Ok(())
}

/// Number of slots in the directory.
pub fn slot_count(page: &Page) -> u32 {
    page.count()
}

/// Reads slot `index`, checking it against the page's bounds.
pub fn read_slot(page: &Page, index: u32) -> Result<Slot, DecodeError> {
    check_data_page(page)?;
    if index >= page.count() {
        return Err(DecodeError::new(format!("slot {index} past the directory")));
    }
    let position = slot_position(index);
    let kind = page.bytes()[position];
    let home_slot = u32::from(page.get_u16(position + 2));
    let home_page = PageId(u64::from(page.get_u32(position + 4)));
    let serial = Serial(page.get_u64(position + 8));
    let field_a = page.get_u32(position + 16);
    let field_b = page.get_u32(position + 20);
    let content = match kind {
        KIND_FREE => SlotContent::Free,
        KIND_INLINE => {
            let end = u64::from(field_a) + u64::from(field_b);
            if (field_a as usize) < PAGE_HEADER_SIZE || end > u64::from(page.record_end()) {
                return Err(DecodeError::new(format!(
                    "slot {index} record {field_a}+{field_b} outside the record area"
                )));
            }
            SlotContent::Inline {
                offset: field_a,
                len: field_b,
            }
        }
        KIND_OVERFLOW => SlotContent::Overflow {
            first: PageId(u64::from(field_a)),
            len: field_b,
        },
        kind => {
            return Err(DecodeError::new(format!(
                "slot {index} has unknown kind {kind}"
            )));
        }
    };
    if content != SlotContent::Free && (!serial.is_valid() || home_slot >= HOME_SLOTS_PER_PAGE) {
        return Err(DecodeError::new(format!(
            "slot {index} names home slot {home_slot} and serial {}, which no record has",
            serial.0
        )));
    }
    Ok(Slot {
        content,
        owner: Owner {
            home_page,
            home_slot,
            serial,
        },
    })
}

fn write_slot(page: &mut Page, index: u32, slot: Slot) {
    let (kind, field_a, field_b) = match slot.content {
        SlotContent::Free => (KIND_FREE, 0, 0),
        SlotContent::Inline { offset, len } => (KIND_INLINE, offset, len),
        SlotContent::Overflow { first, len } => (KIND_OVERFLOW, first.0 as u32, len),
    };
    let owner = match slot.content {
        SlotContent::Free => Owner {
            home_page: PageId(0),
            home_slot: 0,
            serial: Serial(0),
        },
        _ => slot.owner,
    };
    let position = slot_position(index);
    let bytes = page.bytes_mut();
    bytes[position] = kind;
    bytes[position + 1] = 0;
    page.put_u16(position + 2, owner.home_slot as u16);
    page.put_u32(position + 4, owner.home_page.0 as u32);
    page.put_u64(position + 8, owner.serial.0);
    page.put_u32(position + 16, field_a);
    page.put_u32(position + 20, field_b);
}

/// The bytes of an inline record.
pub fn inline_bytes(page: &Page, offset: u32, len: u32) -> &[u8] {
    &page.bytes()[offset as usize..offset as usize + len as usize]
}

/// The slot `index` if it holds the record of `owner` (the check a reader makes after it
/// followed a home slot here); `None` if it holds nothing or another record.
pub fn lookup(page: &Page, index: u32, owner: Owner) -> Result<Option<Slot>, DecodeError> {
    check_data_page(page)?;
    if index >= page.count() {
        return Ok(None);
    }
    let slot = read_slot(page, index)?;
    Ok((slot.content != SlotContent::Free && slot.owner == owner).then_some(slot))
}

/// Bytes a record of `len` inline bytes costs in a page, counting a new slot.
pub fn space_needed(inline_len: usize) -> usize {
    inline_len + SLOT_SIZE
}

/// Bytes free in the page for records and slots, counting holes left by deletions.
pub fn free_space(page: &Page) -> usize {
    let used = PAGE_HEADER_SIZE + page.count() as usize * SLOT_SIZE + page.live_bytes() as usize;
    PAGE_SIZE.saturating_sub(used)
}

/// True if the page holds no record (every slot free; the directory is then empty).
pub fn is_empty(page: &Page) -> bool {
    page.count() == 0
}

/// Puts a new record of `owner` into the page; returns its slot, or `None` if it does not
/// fit (the page is then unchanged).
pub fn insert(page: &mut Page, payload: SlotPayload<'_>, owner: Owner) -> Option<u32> {
    assert!(owner.serial.is_valid(), "a record has a serial");
    let reusable = (0..page.count()).find(|index| {
        matches!(
            read_slot(page, *index),
            Ok(Slot {
                content: SlotContent::Free,
                ..
            })
        )
    });
    let new_slot_cost = if reusable.is_some() { 0 } else { SLOT_SIZE };
    if reusable.is_none() && page.count() >= RECORD_SLOTS_PER_PAGE_MAX {
        return None;
    }
    if free_space(page) < payload.inline_len() + new_slot_cost {
        return None;
    }
    let index = match reusable {
        Some(index) => index,
        None => {
            let index = page.count();
            ensure_contiguous(page, SLOT_SIZE);
            page.set_count(index + 1);
            index
        }
    };
    let content = place_payload(page, payload);
    write_slot(page, index, Slot { content, owner });
    Some(index)
}

/// Replaces the bytes of a live slot, keeping its owner; `false` if the new payload does
/// not fit (the page is then unchanged).
pub fn replace(page: &mut Page, index: u32, payload: SlotPayload<'_>) -> Result<bool, DecodeError> {
    let slot = read_slot(page, index)?;
    if slot.content == SlotContent::Free {
        return Err(DecodeError::new(format!("slot {index} holds no record")));
    }
    let old_len = match slot.content {
        SlotContent::Inline { len, .. } => len as usize,
        _ => 0,
    };
    if free_space(page) + old_len < payload.inline_len() {
        return Ok(false);
    }
    release_inline(page, slot);
    // The old bytes are dead now: the slot must not point at them while placing the new
    // bytes compacts the page.
    let vacated = Slot {
        content: SlotContent::Free,
        ..slot
    };
    write_slot(page, index, vacated);
    let content = place_payload(page, payload);
    write_slot(page, index, Slot { content, ..slot });
    Ok(true)
}

/// Frees a live slot and returns what it held (so the caller can free an overflow chain).
/// Trailing free slots leave the directory, so an emptied page has none.
pub fn remove(page: &mut Page, index: u32) -> Result<SlotContent, DecodeError> {
    let slot = read_slot(page, index)?;
    if slot.content == SlotContent::Free {
        return Err(DecodeError::new(format!("slot {index} holds no record")));
    }
    release_inline(page, slot);
    write_slot(
        page,
        index,
        Slot {
            content: SlotContent::Free,
            owner: slot.owner,
        },
    );
    while page.count() > 0
        && matches!(
            read_slot(page, page.count() - 1),
            Ok(Slot {
                content: SlotContent::Free,
                ..
            })
        )
    {
        let last = page.count() - 1;
        let position = slot_position(last);
        page.bytes_mut()[position..position + SLOT_SIZE].fill(0);
        page.set_count(last);
    }
    if page.count() == 0 {
        page.set_record_end(PAGE_HEADER_SIZE as u32);
    }
    Ok(slot.content)
}

fn release_inline(page: &mut Page, slot: Slot) {
    if let SlotContent::Inline { offset, len } = slot.content {
        assert!(page.live_bytes() >= len, "live byte count underflow");
        page.set_live_bytes(page.live_bytes() - len);
        if offset + len == page.record_end() {
            page.set_record_end(offset);
        }
    }
}

/// Stores the payload's bytes (compacting first if needed) and returns the slot content.
/// The caller has checked that the page has room.
fn place_payload(page: &mut Page, payload: SlotPayload<'_>) -> SlotContent {
    match payload {
        SlotPayload::Inline(bytes) => {
            ensure_contiguous(page, bytes.len());
            let offset = page.record_end();
            let start = offset as usize;
            page.bytes_mut()[start..start + bytes.len()].copy_from_slice(bytes);
            page.set_record_end(offset + bytes.len() as u32);
            page.set_live_bytes(page.live_bytes() + bytes.len() as u32);
            SlotContent::Inline {
                offset,
                len: bytes.len() as u32,
            }
        }
        SlotPayload::Overflow { first, len } => SlotContent::Overflow { first, len },
    }
}

/// Makes `len` contiguous bytes available after `record_end`, compacting records if holes
/// hold the space.
fn ensure_contiguous(page: &mut Page, len: usize) {
    let contiguous = directory_start(page) - page.record_end() as usize;
    if contiguous >= len {
        return;
    }
    compact(page);
    let contiguous = directory_start(page) - page.record_end() as usize;
    assert!(
        contiguous >= len,
        "compaction left {contiguous} bytes, {len} needed"
    );
}

/// Packs all inline records to the start of the record area, in offset order.
fn compact(page: &mut Page) {
    let mut records: Vec<(u32, u32, u32)> = (0..page.count())
        .filter_map(|index| match read_slot(page, index) {
            Ok(Slot {
                content: SlotContent::Inline { offset, len },
                ..
            }) => Some((offset, len, index)),
            _ => None,
        })
        .collect();
    records.sort_unstable();
    let mut cursor = PAGE_HEADER_SIZE as u32;
    for (offset, len, index) in records {
        if offset != cursor {
            let source = offset as usize..(offset + len) as usize;
            page.bytes_mut().copy_within(source, cursor as usize);
            let mut slot = read_slot(page, index).unwrap_or_else(|_| unreachable!());
            slot.content = SlotContent::Inline {
                offset: cursor,
                len,
            };
            write_slot(page, index, slot);
        }
        cursor += len;
    }
    assert_eq!(
        cursor - PAGE_HEADER_SIZE as u32,
        page.live_bytes(),
        "live bytes drifted"
    );
    page.set_record_end(cursor);
    let end = directory_start(page);
    page.bytes_mut()[cursor as usize..end].fill(0);
}

#[cfg(test)]
#[path = "slotted_tests.rs"]
mod tests;
