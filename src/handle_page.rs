//! Handle pages: the home slots that record handles name, each pointing to where its
//! record lives.
//!
//! A handle names (handle page, home slot, serial). The home slot never moves, but the
//! record it points to may move to any record page (an update that outgrows its page, a
//! compaction): only the home slot's pointer changes. Home slots are small (16 bytes,
//! 4,092 per page), so the pages that pin handles stay dense while the record bytes, the
//! bulk of the file, can always be packed and the file shrunk.
//!
//! # Byte layout of a handle page's body
//!
//! ```text
//! 48 + i*16   home slot i: kind u8, reserved u8, serial u48 (u16 high, u32 low),
//!                          record page u32, record slot u16, reserved u16
//! ```
//!
//! Kind 0 is free, 1 live. The header's `count` is the number of live slots, its `next` the
//! lowest slot that may be free (a hint: everything below it is live).
//!
//! # Promise
//! A live slot always carries a valid serial; a slot is free exactly when its kind is 0;
//! `count` equals the live slots. Readers check every field, so a damaged page gives a
//! [`DecodeError`], never a panic.

use crate::error::DecodeError;
use crate::page::{PAGE_HEADER_SIZE, PAGE_SIZE, Page, PageId, PageType};
use crate::record_id::{HOME_SLOTS_PER_PAGE, Serial};

/// Size of one home slot.
pub const HOME_SLOT_SIZE: usize = 16;

const _: () =
    assert!(PAGE_HEADER_SIZE + HOME_SLOTS_PER_PAGE as usize * HOME_SLOT_SIZE <= PAGE_SIZE);

const KIND_FREE: u8 = 0;
const KIND_LIVE: u8 = 1;

/// A live home slot: the record's serial and where it lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HomeSlot {
    /// The serial of the record the slot belongs to.
    pub serial: Serial,
    /// The record page holding it.
    pub record_page: PageId,
    /// Its slot there.
    pub record_slot: u32,
}

fn position(index: u32) -> usize {
    PAGE_HEADER_SIZE + index as usize * HOME_SLOT_SIZE
}

/// A new, empty handle page.
pub fn new_handle_page(page_id: PageId) -> Page {
    Page::new(page_id, PageType::Handles)
}

/// Checks the page-level fields of a handle page.
pub fn check_handle_page(page: &Page) -> Result<(), DecodeError> {
    if page.page_type() != Some(PageType::Handles) {
        return Err(DecodeError::new(format!(
            "expected a handle page, found type {:?}",
            page.page_type()
        )));
    }
    if page.count() > HOME_SLOTS_PER_PAGE {
        return Err(DecodeError::new(format!(
            "live home slot count {} over the {HOME_SLOTS_PER_PAGE} slots",
            page.count()
        )));
    }
    Ok(())
}

/// Reads home slot `index`: `None` if it is free.
pub fn read(page: &Page, index: u32) -> Result<Option<HomeSlot>, DecodeError> {
    check_handle_page(page)?;
    if index >= HOME_SLOTS_PER_PAGE {
        return Err(DecodeError::new(format!("home slot {index} past the page")));
    }
    let at = position(index);
    match page.bytes()[at] {
        KIND_FREE => Ok(None),
        KIND_LIVE => {
            let serial =
                Serial(u64::from(page.get_u16(at + 2)) << 32 | u64::from(page.get_u32(at + 4)));
            if !serial.is_valid() {
                return Err(DecodeError::new(format!(
                    "home slot {index} is live without a serial"
                )));
            }
            Ok(Some(HomeSlot {
                serial,
                record_page: PageId(u64::from(page.get_u32(at + 8))),
                record_slot: u32::from(page.get_u16(at + 12)),
            }))
        }
        kind => Err(DecodeError::new(format!(
            "home slot {index} has unknown kind {kind}"
        ))),
    }
}

/// The live home slot `index` if it belongs to `serial` (what a handle checks).
pub fn lookup(page: &Page, index: u32, serial: Serial) -> Result<Option<HomeSlot>, DecodeError> {
    if index >= HOME_SLOTS_PER_PAGE {
        return Ok(None);
    }
    Ok(read(page, index)?.filter(|slot| slot.serial == serial))
}

fn write(page: &mut Page, index: u32, slot: Option<HomeSlot>) {
    let at = position(index);
    page.bytes_mut()[at..at + HOME_SLOT_SIZE].fill(0);
    if let Some(slot) = slot {
        assert!(slot.serial.is_valid(), "a live home slot has a serial");
        page.bytes_mut()[at] = KIND_LIVE;
        page.put_u16(at + 2, (slot.serial.0 >> 32) as u16);
        page.put_u32(at + 4, slot.serial.0 as u32);
        page.put_u32(at + 8, slot.record_page.0 as u32);
        page.put_u16(at + 12, slot.record_slot as u16);
    }
}

/// The lowest free slot, if any.
pub fn find_free(page: &Page) -> Option<u32> {
    if page.count() >= HOME_SLOTS_PER_PAGE {
        return None;
    }
    let start = (page.next().0).min(u64::from(HOME_SLOTS_PER_PAGE)) as u32;
    (start..HOME_SLOTS_PER_PAGE)
        .chain(0..start)
        .find(|index| page.bytes()[position(*index)] == KIND_FREE)
}

/// True if the page has a free slot.
pub fn has_room(page: &Page) -> bool {
    page.count() < HOME_SLOTS_PER_PAGE
}

/// Makes free slot `index` live with `slot`.
pub fn occupy(page: &mut Page, index: u32, slot: HomeSlot) {
    assert!(index < HOME_SLOTS_PER_PAGE, "home slot in range");
    assert_eq!(
        page.bytes()[position(index)],
        KIND_FREE,
        "occupying a free slot"
    );
    write(page, index, Some(slot));
    page.set_count(page.count() + 1);
    if page.next().0 == u64::from(index) {
        page.set_next(PageId(u64::from(index) + 1));
    }
}

/// Points live slot `index` at a new place (its record moved).
pub fn repoint(page: &mut Page, index: u32, record_page: PageId, record_slot: u32) {
    assert_eq!(
        page.bytes()[position(index)],
        KIND_LIVE,
        "repointing a live slot"
    );
    let at = position(index);
    page.put_u32(at + 8, record_page.0 as u32);
    page.put_u16(at + 12, record_slot as u16);
}

/// Frees live slot `index`.
pub fn vacate(page: &mut Page, index: u32) {
    assert_eq!(
        page.bytes()[position(index)],
        KIND_LIVE,
        "vacating a live slot"
    );
    assert!(page.count() > 0, "live count underflow");
    write(page, index, None);
    page.set_count(page.count() - 1);
    if u64::from(index) < page.next().0 {
        page.set_next(PageId(u64::from(index)));
    }
}

/// True if no slot is live.
pub fn is_empty(page: &Page) -> bool {
    page.count() == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(serial: u64) -> HomeSlot {
        HomeSlot {
            serial: Serial(serial),
            record_page: PageId(7),
            record_slot: (serial % 50) as u32,
        }
    }

    #[test]
    fn slots_fill_lowest_first_and_a_freed_slot_is_found_again() {
        let mut page = new_handle_page(PageId(3));
        for index in 0..10 {
            assert_eq!(find_free(&page), Some(index));
            occupy(&mut page, index, slot(u64::from(index) + 1));
        }
        vacate(&mut page, 4);
        assert_eq!(find_free(&page), Some(4));
        assert_eq!(page.count(), 9);
        assert_eq!(read(&page, 4).expect("read"), None);
        assert_eq!(read(&page, 5).expect("read"), Some(slot(6)));
    }

    #[test]
    fn a_handle_with_another_serial_misses() {
        let mut page = new_handle_page(PageId(3));
        occupy(&mut page, 0, slot(41));
        assert_eq!(
            lookup(&page, 0, Serial(41)).expect("lookup"),
            Some(slot(41))
        );
        assert_eq!(lookup(&page, 0, Serial(40)).expect("lookup"), None);
        vacate(&mut page, 0);
        occupy(&mut page, 0, slot(99));
        assert_eq!(lookup(&page, 0, Serial(41)).expect("lookup"), None);
        assert_eq!(
            lookup(&page, HOME_SLOTS_PER_PAGE, Serial(41)).expect("lookup"),
            None
        );
    }

    #[test]
    fn a_full_page_has_no_room_until_a_slot_is_freed() {
        let mut page = new_handle_page(PageId(3));
        for index in 0..HOME_SLOTS_PER_PAGE {
            occupy(&mut page, index, slot(u64::from(index) + 1));
        }
        assert!(!has_room(&page));
        assert_eq!(find_free(&page), None);
        vacate(&mut page, HOME_SLOTS_PER_PAGE - 1);
        assert_eq!(find_free(&page), Some(HOME_SLOTS_PER_PAGE - 1));
    }

    #[test]
    fn repointing_keeps_the_serial() {
        let mut page = new_handle_page(PageId(3));
        occupy(&mut page, 2, slot(5));
        repoint(&mut page, 2, PageId(900), 17);
        let moved = read(&page, 2).expect("read").expect("live");
        assert_eq!(
            (moved.serial, moved.record_page, moved.record_slot),
            (Serial(5), PageId(900), 17)
        );
    }

    #[test]
    fn damage_gives_errors_not_panics() {
        let mut page = new_handle_page(PageId(3));
        occupy(&mut page, 0, slot(5));
        page.bytes_mut()[position(0)] = 9;
        assert!(read(&page, 0).is_err());
        page.bytes_mut()[position(0)] = KIND_LIVE;
        page.put_u32(position(0) + 4, 0);
        assert!(read(&page, 0).is_err(), "live without a serial");
        page.set_count(HOME_SLOTS_PER_PAGE + 1);
        assert!(check_handle_page(&page).is_err());
        assert!(read(&Page::new(PageId(3), PageType::Data), 0).is_err());
    }
}
