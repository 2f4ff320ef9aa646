//! The space map: one byte per page saying whether it is free, or how much room it has.
//!
//! It is what makes free space durable and shared: every process, after any reopen and any
//! crash, finds the pages and the room that deletes freed, because the map lives in pages
//! that change in the same transactions as the pages they describe, logged in the WAL like
//! every other page (no free list to walk, no in-memory hints to lose).
//!
//! # Where the map pages are
//! Page [`FIRST_MAP_PAGE`] (2) is the first map page; it describes the [`MAP_SPAN`] pages
//! starting at itself. The next span starts right after, with its own map page first, and
//! so on: map page `k` is page `2 + k * MAP_SPAN`, so finding the entry of a page is
//! arithmetic. A map page exists once the file reaches its span.
//!
//! # Entry of a page (one byte)
//! | value | meaning |
//! |---|---|
//! | 0 | in use with no room to offer: a map, overflow or full handle page, a full record page |
//! | 1..=127 | a record page with at least `value * 512` bytes free |
//! | 128 | a handle page with a free home slot |
//! | 255 | free: may become any kind of page |
//!
//! The map is exact for free pages (entry 255 exactly when the page is free) and a lower
//! bound for room (a record page never has less room than its entry says), which the
//! integrity check verifies. Pages at or past the page count have entry 0.
//!
//! # Version of a page (eight bytes)
//! After the [`MAP_SPAN`] entry bytes, the map page keeps one `u64` per page of its span:
//! the LSN the page had when a checkpoint last wrote it to `pages.db` (0: never written;
//! 0 for the map page itself, whose version the meta page keeps). A page read from
//! `pages.db` must carry exactly that LSN: an older one is a write that was lost, or went to
//! another page (a misdirected write leaves the page it was meant for stale with a valid
//! checksum, which no checksum inside the page can tell). The versions change only in the
//! commit a checkpoint makes before it writes the pages (see `engine::checkpoint`), so
//! they are logged and recovered like every other byte of the map.

use crate::page::{Lsn, PAGE_DATA_SIZE, PAGE_HEADER_SIZE, Page, PageId};

/// The first map page.
pub const FIRST_MAP_PAGE: PageId = PageId(2);
/// Bytes a page takes in its map page: its entry and its version.
const BYTES_PER_PAGE: usize = 1 + 8;
/// Pages one map page describes (its own page included): 7,276, 455 MiB of file.
pub const MAP_SPAN: u64 = (PAGE_DATA_SIZE / BYTES_PER_PAGE) as u64;
/// Where the versions start in a map page.
const VERSIONS_OFFSET: usize = PAGE_HEADER_SIZE + MAP_SPAN as usize;
const _: () = assert!(VERSIONS_OFFSET + 8 * MAP_SPAN as usize <= PAGE_HEADER_SIZE + PAGE_DATA_SIZE);
/// Bytes of room one unit of a record page's entry stands for.
pub const ROOM_UNIT_BYTES: usize = 512;
/// Largest room class of a record page.
pub const ROOM_CLASS_MAX: u8 = 127;
/// Entry of a page with nothing to offer.
pub const IN_USE: u8 = 0;
/// Entry of a handle page with a free home slot.
pub const HANDLES_WITH_ROOM: u8 = 128;
/// Entry of a free page.
pub const FREE: u8 = 255;

const _: () = assert!(ROOM_CLASS_MAX as usize * ROOM_UNIT_BYTES <= PAGE_DATA_SIZE);
const _: () = assert!(ROOM_CLASS_MAX < HANDLES_WITH_ROOM && HANDLES_WITH_ROOM < FREE);

/// What a map entry says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Nothing to offer.
    InUse,
    /// A record page with at least `class * 512` free bytes.
    RecordRoom(u8),
    /// A handle page with a free slot.
    HandlesWithRoom,
    /// A free page.
    Free,
    /// A value no writer stores (damage).
    Invalid(u8),
}

impl Entry {
    /// Decodes an entry byte.
    pub fn decode(byte: u8) -> Entry {
        match byte {
            IN_USE => Entry::InUse,
            1..=ROOM_CLASS_MAX => Entry::RecordRoom(byte),
            HANDLES_WITH_ROOM => Entry::HandlesWithRoom,
            FREE => Entry::Free,
            other => Entry::Invalid(other),
        }
    }
}

/// The map page describing `page`, and the entry's offset within that map page.
pub fn locate(page: PageId) -> (PageId, usize) {
    assert!(page >= FIRST_MAP_PAGE, "meta pages have no entry");
    let relative = page.0 - FIRST_MAP_PAGE.0;
    let span = relative / MAP_SPAN;
    let map_page = PageId(FIRST_MAP_PAGE.0 + span * MAP_SPAN);
    (map_page, PAGE_HEADER_SIZE + (relative % MAP_SPAN) as usize)
}

/// The map page keeping the version of `page`, and the version's offset within it.
pub fn locate_version(page: PageId) -> (PageId, usize) {
    let (map_page, entry_offset) = locate(page);
    let index = entry_offset - PAGE_HEADER_SIZE;
    (map_page, VERSIONS_OFFSET + 8 * index)
}

/// The version `map` (the map page of `page`'s span) keeps for `page`.
pub fn version(map: &Page, page: PageId) -> Lsn {
    let (map_page, offset) = locate_version(page);
    debug_assert_eq!(
        map.id(),
        map_page,
        "{page} is not in the span of {}",
        map.id()
    );
    Lsn(map.get_u64(offset))
}

/// The index of the span a map page heads (0 for [`FIRST_MAP_PAGE`]).
pub fn span_of(map_page: PageId) -> usize {
    assert!(is_map_page(map_page), "{map_page} is not a map page");
    ((map_page.0 - FIRST_MAP_PAGE.0) / MAP_SPAN) as usize
}

/// True if `page` is a map page.
pub fn is_map_page(page: PageId) -> bool {
    page >= FIRST_MAP_PAGE && (page.0 - FIRST_MAP_PAGE.0).is_multiple_of(MAP_SPAN)
}

/// The map pages of a file of `page_count` pages, in order.
pub fn map_pages(page_count: u64) -> impl Iterator<Item = PageId> {
    (FIRST_MAP_PAGE.0..page_count)
        .step_by(MAP_SPAN as usize)
        .map(PageId)
}

/// The pages a map page describes, within a file of `page_count` pages.
pub fn span_pages(map_page: PageId, page_count: u64) -> std::ops::Range<u64> {
    assert!(is_map_page(map_page), "{map_page} is not a map page");
    map_page.0..(map_page.0 + MAP_SPAN).min(page_count)
}

/// The entry of a record page with `free_bytes` free.
pub fn record_entry(free_bytes: usize) -> u8 {
    (free_bytes / ROOM_UNIT_BYTES).min(ROOM_CLASS_MAX as usize) as u8
}

/// The smallest entry of a record page that surely holds `needed` bytes (`None` if no
/// entry promises that much; such a record needs an empty page).
pub fn record_class_for(needed: usize) -> Option<u8> {
    let class = needed.div_ceil(ROOM_UNIT_BYTES);
    (class <= ROOM_CLASS_MAX as usize).then_some(class.max(1) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_a_version_after_the_entries_of_its_map_page() {
        assert_eq!(MAP_SPAN, 7276);
        assert_eq!(locate_version(PageId(2)), (PageId(2), VERSIONS_OFFSET));
        assert_eq!(locate_version(PageId(3)), (PageId(2), VERSIONS_OFFSET + 8));
        let last = PageId(2 + MAP_SPAN - 1);
        let (map, offset) = locate_version(last);
        assert_eq!(map, PageId(2));
        assert_eq!(offset + 8, VERSIONS_OFFSET + 8 * MAP_SPAN as usize);
        assert!(offset + 8 <= crate::page::PAGE_SIZE);
        assert_eq!(locate_version(PageId(2 + MAP_SPAN)).0, PageId(2 + MAP_SPAN));
        let mut map_page = Page::new(PageId(2), crate::page::PageType::SpaceMap);
        map_page.put_u64(locate_version(PageId(9)).1, 77);
        assert_eq!(version(&map_page, PageId(9)), Lsn(77));
        assert_eq!(version(&map_page, PageId(10)), Lsn(0));
        assert_eq!(span_of(PageId(2 + 3 * MAP_SPAN)), 3);
    }

    #[test]
    fn the_file_limit_is_what_the_readme_says() {
        assert_eq!(crate::pager::MAP_PAGES_MAX, 398);
        assert_eq!(crate::pager::FILE_PAGES_MAX, 2_895_850);
    }

    #[test]
    fn every_page_has_one_entry_in_the_map_page_of_its_span() {
        assert_eq!(locate(PageId(2)), (PageId(2), PAGE_HEADER_SIZE));
        assert_eq!(locate(PageId(3)), (PageId(2), PAGE_HEADER_SIZE + 1));
        let last_of_first = PageId(2 + MAP_SPAN - 1);
        assert_eq!(
            locate(last_of_first),
            (PageId(2), PAGE_HEADER_SIZE + MAP_SPAN as usize - 1)
        );
        let second = PageId(2 + MAP_SPAN);
        assert_eq!(locate(second), (second, PAGE_HEADER_SIZE));
        assert!(is_map_page(PageId(2)) && is_map_page(second) && !is_map_page(PageId(3)));
        assert_eq!(
            map_pages(2 + MAP_SPAN + 1).collect::<Vec<_>>(),
            vec![PageId(2), second]
        );
        assert_eq!(
            span_pages(second, 2 + MAP_SPAN + 10),
            second.0..second.0 + 10
        );
    }

    #[test]
    fn room_classes_never_promise_more_than_is_free() {
        for free in [0, 511, 512, 1023, 1024, 5000, PAGE_DATA_SIZE] {
            assert!(
                usize::from(record_entry(free)) * ROOM_UNIT_BYTES <= free,
                "{free}"
            );
        }
        for needed in [1, 24, 511, 512, 513, 2100, 16 * 1024 + 24] {
            let class = record_class_for(needed).expect("a page can hold it");
            assert!(usize::from(class) * ROOM_UNIT_BYTES >= needed, "{needed}");
        }
        assert_eq!(record_class_for(1), Some(1));
        assert_eq!(record_class_for(513), Some(2));
        assert_eq!(record_class_for(PAGE_DATA_SIZE * 2), None);
        for byte in 0..=u8::MAX {
            let entry = Entry::decode(byte);
            let invalid = byte > HANDLES_WITH_ROOM && byte < FREE;
            assert_eq!(matches!(entry, Entry::Invalid(_)), invalid);
        }
    }
}
