use super::*;
use crate::page::PAGE_SIZE;
use crate::slotted::{Owner, SlotPayload};

/// A record in a page: its slot and serial.
type Placed = (u32, Serial);

fn owner(serial: u64) -> Owner {
    Owner {
        home_page: PageId(3),
        home_slot: serial as u32,
        serial: Serial(serial),
    }
}

fn data_page(id: u64, records: &[&[u8]]) -> (Page, Vec<Placed>) {
    let mut page = slotted::new_data_page(PageId(id));
    let placed = records
        .iter()
        .enumerate()
        .map(|(index, record)| {
            let serial = index as u64 + 1;
            let slot = slotted::insert(&mut page, SlotPayload::Inline(record), owner(serial))
                .expect("fits");
            (slot, Serial(serial))
        })
        .collect();
    page.set_lsn(Lsn(77));
    (page, placed)
}

#[test]
fn a_map_locates_each_inline_record_with_the_checksum_of_its_bytes() {
    let (page, placed) = data_page(5, &[b"first record", b"second", &[9u8; 3000]]);
    let map = RecordMap::of(&page).expect("a record page has a map");
    for (slot, serial) in &placed {
        let location = map.locate(*slot, *serial).expect("inline record");
        let bytes = &page.bytes()[location.offset as usize..][..location.len as usize];
        assert_eq!(location.lsn, Lsn(77));
        assert_eq!(location.crc, crc32fast::hash(bytes));
    }
    assert_eq!(map.size(), MAP_OVERHEAD_SIZE + 3 * ENTRY_SIZE);
}

#[test]
fn a_map_does_not_answer_for_other_serials_free_slots_or_overflow_records() {
    let (mut page, placed) = data_page(5, &[b"one", b"two", b"three"]);
    slotted::remove(&mut page, placed[0].0).expect("removes");
    slotted::replace(
        &mut page,
        placed[1].0,
        SlotPayload::Overflow {
            first: PageId(9),
            len: 70_000,
        },
    )
    .expect("replaces");
    let map = RecordMap::of(&page).expect("map");
    assert_eq!(map.locate(placed[0].0, placed[0].1), None, "deleted");
    assert_eq!(
        map.locate(placed[1].0, placed[1].1),
        None,
        "in an overflow chain"
    );
    assert!(map.locate(placed[2].0, placed[2].1).is_some());
    assert_eq!(map.locate(placed[2].0, Serial(placed[2].1.0 + 1)), None);
    assert_eq!(map.locate(40, Serial(1)), None, "past the directory");
}

#[test]
fn only_record_pages_with_a_sound_directory_have_maps() {
    assert_eq!(
        RecordMap::of(&Page::new(PageId(3), PageType::Overflow)),
        None
    );
    assert_eq!(RecordMap::of(&Page::zeroed()), None);
    let (mut page, _) = data_page(5, &[b"record"]);
    // A slot kind nobody writes: the whole-page path reports it, the map stays out of it.
    page.bytes_mut()[PAGE_SIZE - slotted::SLOT_SIZE] = 99;
    assert_eq!(RecordMap::of(&page), None);
}

#[test]
fn maps_stay_within_the_budget_and_the_oldest_go_first() {
    let (page, placed) = data_page(5, &[b"a", b"b"]);
    let map = RecordMap::of(&page).expect("map");
    let maps = RecordMaps::new(3 * map.size());
    for id in 0..10 {
        maps.remember(PageId(id), map.clone());
        let (count, bytes) = maps.usage();
        assert!(bytes <= 3 * map.size());
        assert!(count <= 3);
    }
    assert_eq!(maps.usage().0, 3);
    let located = |page: u64| maps.locate(PageId(page), placed[0].0, placed[0].1);
    assert!(located(9).is_some() && located(7).is_some());
    assert!(located(6).is_none(), "evicted first");
    maps.forget(PageId(9));
    assert!(located(9).is_none());
    maps.clear();
    assert_eq!(maps.usage(), (0, 0));
}

#[test]
fn remembering_one_page_again_and_again_keeps_the_queue_bounded() {
    let (page, _) = data_page(5, &[b"a"]);
    let map = RecordMap::of(&page).expect("map");
    let maps = RecordMaps::new(1 << 20);
    for _ in 0..10_000 {
        maps.remember(PageId(5), map.clone());
    }
    let state = maps.lock();
    assert_eq!(state.maps.len(), 1);
    assert!(state.order.len() <= 2 + QUEUE_SLACK + 1);
}

#[test]
fn a_budget_of_zero_keeps_nothing() {
    let (page, placed) = data_page(5, &[b"a"]);
    let maps = RecordMaps::new(0);
    assert!(!maps.is_enabled());
    maps.remember(PageId(5), RecordMap::of(&page).expect("map"));
    assert_eq!(maps.locate(PageId(5), placed[0].0, placed[0].1), None);
}

#[test]
fn a_page_looked_up_again_soon_is_declined_so_it_is_cached_whole() {
    let (page, placed) = data_page(5, &[b"a", b"b"]);
    let map = RecordMap::of(&page).expect("map");
    let maps = RecordMaps::new(1 << 20);
    for other in 100..400 {
        maps.remember(PageId(other), map.clone());
    }
    maps.remember(PageId(5), map);
    let (first, second) = (placed[0], placed[1]);
    assert!(
        maps.locate(PageId(5), first.0, first.1).is_some(),
        "first read through the map"
    );
    assert!(
        maps.locate(PageId(5), second.0, second.1).is_none(),
        "second read soon after: promoted"
    );
    assert!(
        maps.locate(PageId(5), second.0, second.1).is_some(),
        "a new window starts"
    );
    // Lookups spread over many pages are answered, each page seen rarely.
    let answered = (0..3_000u64)
        .filter(|turn| {
            maps.locate(PageId(100 + turn * 7 % 300), first.0, first.1)
                .is_some()
        })
        .count();
    assert!(answered > 2_900, "{answered} of 3000");
}
