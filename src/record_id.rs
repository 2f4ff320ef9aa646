//! [`RecordId`]: the stable handle of a stored memory node.
//!
//! A handle is (page, slot, generation) packed into a `u64`:
//!
//! ```text
//! bits 63..32  page id   (data page holding the record's home slot)
//! bits 31..20  slot      (index in that page's slot directory, < SLOTS_PER_PAGE_MAX)
//! bits 19..0   generation (bumped each time the slot is reused; 0 is never valid)
//! ```
//!
//! The home slot never moves: when an update outgrows its page the record moves and the home
//! slot forwards to it, so the handle stays valid for the record's life. A slot's generation
//! only grows, and a slot whose generation is exhausted is retired instead of reused, so a
//! stale handle can never name another record.

use crate::page::{PAGE_ID_MAX, PageId};
use std::fmt;

/// Number of slots a data page may hold.
pub const SLOTS_PER_PAGE_MAX: u32 = 1 << 12;
/// Largest slot generation; a slot that reaches it is retired.
pub const GENERATION_MAX: u32 = (1 << 20) - 1;

const SLOT_SHIFT: u32 = 20;
const PAGE_SHIFT: u32 = 32;
const _: () = assert!(SLOTS_PER_PAGE_MAX as u64 <= 1 << (PAGE_SHIFT - SLOT_SHIFT));
const _: () = assert!(PAGE_ID_MAX == (1u64 << (64 - PAGE_SHIFT)) - 1);

/// Handle of a stored memory node. Convert it to a `u64` to keep it in your own indexes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(u64);

impl RecordId {
    /// Builds a handle; `None` if a part is out of range or the generation is 0.
    pub fn new(page: PageId, slot: u32, generation: u32) -> Option<RecordId> {
        let in_range = page.0 <= PAGE_ID_MAX
            && slot < SLOTS_PER_PAGE_MAX
            && (1..=GENERATION_MAX).contains(&generation);
        in_range.then(|| {
            RecordId(page.0 << PAGE_SHIFT | u64::from(slot) << SLOT_SHIFT | u64::from(generation))
        })
    }

    /// The data page holding the record's home slot.
    pub fn page_id(self) -> PageId {
        PageId(self.0 >> PAGE_SHIFT)
    }

    /// The slot index in that page.
    pub fn slot(self) -> u32 {
        ((self.0 >> SLOT_SHIFT) as u32) & (SLOTS_PER_PAGE_MAX - 1)
    }

    /// The slot generation the handle was issued for.
    pub fn generation(self) -> u32 {
        (self.0 as u32) & GENERATION_MAX
    }

    /// The handle as a `u64`.
    pub fn to_u64(self) -> u64 {
        self.0
    }

    /// Rebuilds a handle from [`RecordId::to_u64`]. Any `u64` is accepted: a value that names
    /// no live record makes loads fail with `Error::NotFound`.
    pub fn from_u64(raw: u64) -> RecordId {
        RecordId(raw)
    }

    /// The handle as 8 little-endian bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0.to_le_bytes()
    }

    /// Rebuilds a handle from [`RecordId::to_bytes`].
    pub fn from_bytes(bytes: [u8; 8]) -> RecordId {
        RecordId(u64::from_le_bytes(bytes))
    }
}

impl From<RecordId> for u64 {
    fn from(id: RecordId) -> u64 {
        id.0
    }
}

impl From<u64> for RecordId {
    fn from(raw: u64) -> RecordId {
        RecordId(raw)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "RecordId(page {}, slot {}, gen {})",
            self.page_id().0,
            self.slot(),
            self.generation()
        )
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{}:{}:{}",
            self.page_id().0,
            self.slot(),
            self.generation()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_through_u64_and_bytes() {
        let id = RecordId::new(PageId(123_456), 4095, GENERATION_MAX).expect("in range");
        assert_eq!(id.page_id(), PageId(123_456));
        assert_eq!(id.slot(), 4095);
        assert_eq!(id.generation(), GENERATION_MAX);
        assert_eq!(RecordId::from_u64(id.to_u64()), id);
        assert_eq!(RecordId::from_bytes(id.to_bytes()), id);
    }

    #[test]
    fn out_of_range_parts_are_refused() {
        assert!(RecordId::new(PageId(PAGE_ID_MAX + 1), 0, 1).is_none());
        assert!(RecordId::new(PageId(2), SLOTS_PER_PAGE_MAX, 1).is_none());
        assert!(RecordId::new(PageId(2), 0, 0).is_none());
        assert!(RecordId::new(PageId(2), 0, GENERATION_MAX + 1).is_none());
    }
}
