//! The slotted layout of data pages: many records share one page.
//!
//! # Byte layout of a data page's body
//!
//! ```text
//! 48 .. record_end                       record bytes, packed upwards (with holes)
//! record_end .. PAGE_SIZE - count*16     free space
//! PAGE_SIZE - (i+1)*16                   slot i (the directory grows downwards)
//! ```
//!
//! A slot is 16 bytes: `kind u8, flags u8, reserved u16, generation u32, a u32, b u32`.
//!
//! | kind | meaning | a | b |
//! |---|---|---|---|
//! | 0 free | reusable; keeps its last generation | - | - |
//! | 1 inline | record bytes in this page | offset | length |
//! | 2 overflow | record bytes in an overflow chain | first page | length |
//! | 3 forward | the record moved; follow the handle | handle low 32 bits | handle high 32 bits |
//! | 4 retired | generation exhausted; never reused | - | - |
//!
//! Flag bit 0 (`moved_in`) marks a slot holding a record that moved here from its home
//! slot: it is reached only through its home slot's forward, never by a user handle, and
//! scans skip it.
//!
//! Invariants kept by every mutation: `48 <= record_end <= PAGE_SIZE - count*16`; every
//! inline record lies inside `48..record_end`; `live_bytes` is the sum of inline lengths;
//! records never overlap. Readers do not trust them: every slot and range is bounds-checked
//! when read, so a damaged page gives a [`DecodeError`], never a panic.

use crate::error::DecodeError;
use crate::page::{PAGE_HEADER_SIZE, PAGE_SIZE, Page, PageId, PageType};
use crate::record_id::{GENERATION_MAX, RecordId, SLOTS_PER_PAGE_MAX};

/// Size of one slot directory entry.
pub const SLOT_SIZE: usize = 16;
/// Records larger than this go to an overflow chain instead of a data page, so that data
/// pages keep packing many records.
pub const INLINE_RECORD_MAX: usize = 16 * 1024;

const _: () = assert!(INLINE_RECORD_MAX + SLOT_SIZE < PAGE_SIZE - PAGE_HEADER_SIZE);
const _: () = assert!(SLOTS_PER_PAGE_MAX as usize * SLOT_SIZE <= PAGE_SIZE);

const KIND_FREE: u8 = 0;
const KIND_INLINE: u8 = 1;
const KIND_OVERFLOW: u8 = 2;
const KIND_FORWARD: u8 = 3;
const KIND_RETIRED: u8 = 4;
const FLAG_MOVED_IN: u8 = 1;

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
    /// The record lives at another slot.
    Forward(RecordId),
    /// Never reused again.
    Retired,
}

/// A decoded slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// What it holds.
    pub content: SlotContent,
    /// Generation of the current (or last) occupant.
    pub generation: u32,
    /// True if this slot holds a record moved here from its home slot.
    pub moved_in: bool,
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
    /// A forward to where the record now lives.
    Forward(RecordId),
}

impl SlotPayload<'_> {
    fn inline_len(&self) -> usize {
        match self {
            SlotPayload::Inline(bytes) => bytes.len(),
            _ => 0,
        }
    }
}

fn slot_position(index: u32) -> usize {
    PAGE_SIZE - (index as usize + 1) * SLOT_SIZE
}

fn directory_start(page: &Page) -> usize {
    PAGE_SIZE - page.count() as usize * SLOT_SIZE
}

/// A new, empty data page.
pub fn new_data_page(page_id: PageId) -> Page {
    Page::new(page_id, PageType::Data)
}

/// Checks the page-level fields of a data page.
pub fn check_data_page(page: &Page) -> Result<(), DecodeError> {
    if page.page_type() != Some(PageType::Data) {
        return Err(DecodeError::new(format!(
            "expected a data page, found type {:?}",
            page.page_type()
        )));
    }
    let count = page.count();
    if count > SLOTS_PER_PAGE_MAX {
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
    let bytes = &page.bytes()[position..position + SLOT_SIZE];
    let generation = page.get_u32(position + 4);
    let field_a = page.get_u32(position + 8);
    let field_b = page.get_u32(position + 12);
    let content = match bytes[0] {
        KIND_FREE => SlotContent::Free,
        KIND_INLINE => {
            let end = field_a as u64 + field_b as u64;
            if (field_a as usize) < PAGE_HEADER_SIZE || end > page.record_end() as u64 {
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
        KIND_FORWARD => SlotContent::Forward(RecordId::from_u64(
            u64::from(field_b) << 32 | u64::from(field_a),
        )),
        KIND_RETIRED => SlotContent::Retired,
        kind => {
            return Err(DecodeError::new(format!(
                "slot {index} has unknown kind {kind}"
            )));
        }
    };
    Ok(Slot {
        content,
        generation,
        moved_in: bytes[1] & FLAG_MOVED_IN != 0,
    })
}

fn write_slot(page: &mut Page, index: u32, slot: Slot) {
    let (kind, field_a, field_b) = match slot.content {
        SlotContent::Free => (KIND_FREE, 0, 0),
        SlotContent::Inline { offset, len } => (KIND_INLINE, offset, len),
        SlotContent::Overflow { first, len } => (KIND_OVERFLOW, first.0 as u32, len),
        SlotContent::Forward(target) => {
            let raw = target.to_u64();
            (KIND_FORWARD, raw as u32, (raw >> 32) as u32)
        }
        SlotContent::Retired => (KIND_RETIRED, 0, 0),
    };
    let position = slot_position(index);
    let bytes = page.bytes_mut();
    bytes[position] = kind;
    bytes[position + 1] = if slot.moved_in { FLAG_MOVED_IN } else { 0 };
    bytes[position + 2..position + 4].fill(0);
    page.put_u32(position + 4, slot.generation);
    page.put_u32(position + 8, field_a);
    page.put_u32(position + 12, field_b);
}

/// The bytes of an inline record.
pub fn inline_bytes(page: &Page, offset: u32, len: u32) -> &[u8] {
    &page.bytes()[offset as usize..offset as usize + len as usize]
}

/// Finds the slot a handle names, or `None` if the handle is stale or invalid. A handle
/// never reaches a moved-in slot unless `allow_moved_in` (used to follow forwards).
pub fn lookup(
    page: &Page,
    id: RecordId,
    allow_moved_in: bool,
) -> Result<Option<Slot>, DecodeError> {
    check_data_page(page)?;
    if id.slot() >= page.count() {
        return Ok(None);
    }
    let slot = read_slot(page, id.slot())?;
    let live = !matches!(slot.content, SlotContent::Free | SlotContent::Retired);
    let visible = allow_moved_in || !slot.moved_in;
    Ok((live && visible && slot.generation == id.generation()).then_some(slot))
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

/// Puts a new record into the page; returns its slot and generation, or `None` if it does
/// not fit (the page is then unchanged).
pub fn insert(page: &mut Page, payload: SlotPayload<'_>, moved_in: bool) -> Option<(u32, u32)> {
    let reusable = find_reusable_slot(page);
    let new_slot_cost = if reusable.is_some() { 0 } else { SLOT_SIZE };
    if reusable.is_none() && page.count() >= SLOTS_PER_PAGE_MAX {
        return None;
    }
    if free_space(page) < payload.inline_len() + new_slot_cost {
        return None;
    }
    let (index, generation) = match reusable {
        Some((index, last_generation)) => (index, last_generation + 1),
        None => {
            let index = page.count();
            ensure_contiguous(page, SLOT_SIZE);
            page.set_count(index + 1);
            (index, 1)
        }
    };
    let content = place_payload(page, payload);
    write_slot(
        page,
        index,
        Slot {
            content,
            generation,
            moved_in,
        },
    );
    Some((index, generation))
}

/// Replaces the occupant of a live slot, keeping its generation; `false` if the new payload
/// does not fit (the page is then unchanged).
pub fn replace(page: &mut Page, index: u32, payload: SlotPayload<'_>) -> Result<bool, DecodeError> {
    let slot = read_slot(page, index)?;
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

/// Frees a live slot and returns what it held (so the caller can free overflow pages or a
/// forward target).
pub fn remove(page: &mut Page, index: u32) -> Result<SlotContent, DecodeError> {
    let slot = read_slot(page, index)?;
    release_inline(page, slot);
    let content = if slot.generation >= GENERATION_MAX {
        SlotContent::Retired
    } else {
        SlotContent::Free
    };
    write_slot(
        page,
        index,
        Slot {
            content,
            generation: slot.generation,
            moved_in: false,
        },
    );
    Ok(slot.content)
}

fn find_reusable_slot(page: &Page) -> Option<(u32, u32)> {
    (0..page.count()).find_map(|index| match read_slot(page, index) {
        Ok(slot) if slot.content == SlotContent::Free && slot.generation < GENERATION_MAX => {
            Some((index, slot.generation))
        }
        _ => None,
    })
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
        SlotPayload::Forward(target) => SlotContent::Forward(target),
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
mod tests {
    use super::*;

    fn inline_record(page: &Page, index: u32) -> Vec<u8> {
        match read_slot(page, index).expect("slot").content {
            SlotContent::Inline { offset, len } => inline_bytes(page, offset, len).to_vec(),
            other => panic!("not inline: {other:?}"),
        }
    }

    #[test]
    fn many_records_share_a_page() {
        let mut page = new_data_page(PageId(2));
        let record = vec![7u8; 2048];
        let mut stored = 0;
        while insert(&mut page, SlotPayload::Inline(&record), false).is_some() {
            stored += 1;
        }
        assert_eq!(stored, (PAGE_SIZE - PAGE_HEADER_SIZE) / (2048 + SLOT_SIZE));
        check_data_page(&page).expect("valid");
    }

    #[test]
    fn removed_slot_is_reused_with_a_new_generation() {
        let mut page = new_data_page(PageId(2));
        let (slot, generation) =
            insert(&mut page, SlotPayload::Inline(b"first"), false).expect("fits");
        let old = RecordId::new(PageId(2), slot, generation).expect("id");
        remove(&mut page, slot).expect("remove");
        assert_eq!(lookup(&page, old, false).expect("lookup"), None);
        let (again, new_generation) =
            insert(&mut page, SlotPayload::Inline(b"second"), false).expect("fits");
        assert_eq!((again, new_generation), (slot, generation + 1));
        assert_eq!(
            lookup(&page, old, false).expect("lookup"),
            None,
            "stale handle stays stale"
        );
    }

    #[test]
    fn holes_are_reclaimed_by_compaction() {
        let mut page = new_data_page(PageId(2));
        let record = vec![1u8; 4000];
        let mut slots = Vec::new();
        while let Some((slot, _)) = insert(&mut page, SlotPayload::Inline(&record), false) {
            slots.push(slot);
        }
        for slot in slots.iter().step_by(2) {
            remove(&mut page, *slot).expect("remove");
        }
        let big = vec![2u8; 7000];
        let (slot, _) =
            insert(&mut page, SlotPayload::Inline(&big), false).expect("fits after compaction");
        assert_eq!(inline_record(&page, slot), big);
        for kept in slots.iter().skip(1).step_by(2) {
            assert_eq!(inline_record(&page, *kept), record);
        }
        check_data_page(&page).expect("valid");
    }

    #[test]
    fn replace_grows_and_shrinks_in_place_or_refuses_without_change() {
        let mut page = new_data_page(PageId(2));
        let (slot, generation) =
            insert(&mut page, SlotPayload::Inline(&[3u8; 100]), false).expect("fits");
        assert!(replace(&mut page, slot, SlotPayload::Inline(&[4u8; 30_000])).expect("ok"));
        assert_eq!(inline_record(&page, slot), vec![4u8; 30_000]);
        let before = page.clone();
        assert!(!replace(&mut page, slot, SlotPayload::Inline(&vec![5u8; PAGE_SIZE])).expect("ok"));
        assert_eq!(page, before, "a refused replace changes nothing");
        assert!(replace(&mut page, slot, SlotPayload::Inline(&[6u8; 10])).expect("ok"));
        assert_eq!(read_slot(&page, slot).expect("slot").generation, generation);
    }

    /// Regression: `replace` left the slot pointing at its released bytes, so a compaction
    /// triggered by the new bytes counted and moved the dead record ("live bytes drifted").
    #[test]
    fn replace_that_needs_compaction_keeps_every_record() {
        let mut page = new_data_page(PageId(2));
        let mut slots = Vec::new();
        while let Some((slot, _)) = insert(&mut page, SlotPayload::Inline(&[9u8; 3000]), false) {
            slots.push(slot);
        }
        remove(&mut page, slots[0]).expect("remove");
        remove(&mut page, slots[2]).expect("remove");
        let grown = vec![8u8; 7000];
        assert!(replace(&mut page, slots[1], SlotPayload::Inline(&grown)).expect("ok"));
        assert_eq!(inline_record(&page, slots[1]), grown);
        for kept in &slots[3..] {
            assert_eq!(inline_record(&page, *kept), vec![9u8; 3000]);
        }
        check_data_page(&page).expect("valid");
    }

    #[test]
    fn moved_in_slots_are_hidden_from_user_handles() {
        let mut page = new_data_page(PageId(2));
        let (slot, generation) =
            insert(&mut page, SlotPayload::Inline(b"moved"), true).expect("fits");
        let id = RecordId::new(PageId(2), slot, generation).expect("id");
        assert_eq!(lookup(&page, id, false).expect("lookup"), None);
        assert!(lookup(&page, id, true).expect("lookup").is_some());
    }

    #[test]
    fn exhausted_generation_retires_the_slot() {
        let mut page = new_data_page(PageId(2));
        let (slot, _) = insert(&mut page, SlotPayload::Inline(b"x"), false).expect("fits");
        let mut raw = read_slot(&page, slot).expect("slot");
        raw.generation = GENERATION_MAX;
        write_slot(&mut page, slot, raw);
        remove(&mut page, slot).expect("remove");
        assert_eq!(
            read_slot(&page, slot).expect("slot").content,
            SlotContent::Retired
        );
        let (next, _) = insert(&mut page, SlotPayload::Inline(b"y"), false).expect("fits");
        assert_ne!(next, slot);
    }

    #[test]
    fn damaged_slot_fields_give_errors_not_panics() {
        let mut page = new_data_page(PageId(2));
        insert(&mut page, SlotPayload::Inline(b"abc"), false).expect("fits");
        let position = slot_position(0);
        page.put_u32(position + 8, 60_000);
        assert!(read_slot(&page, 0).is_err());
        page.set_count(SLOTS_PER_PAGE_MAX + 1);
        assert!(check_data_page(&page).is_err());
        assert!(read_slot(&page, 0).is_err());
    }
}
