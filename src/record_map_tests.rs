use super::*;
use crate::page::PAGE_SIZE;
use crate::slotted::SlotPayload;

fn data_page(id: u64, records: &[&[u8]]) -> (Page, Vec<RecordId>) {
    let mut page = slotted::new_data_page(PageId(id));
    let ids = records
        .iter()
        .map(|record| {
            let (slot, generation) =
                slotted::insert(&mut page, SlotPayload::Inline(record), false).expect("fits");
            RecordId::new(PageId(id), slot, generation).expect("valid handle")
        })
        .collect();
    page.set_lsn(Lsn(77));
    (page, ids)
}

#[test]
fn a_map_locates_each_inline_record_with_the_checksum_of_its_bytes() {
    let (page, ids) = data_page(5, &[b"first record", b"second", &[9u8; 3000]]);
    let map = RecordMap::of(&page).expect("a data page has a map");
    for id in &ids {
        let location = map.locate(*id).expect("inline home record");
        let bytes = &page.bytes()[location.offset as usize..][..location.len as usize];
        assert_eq!(location.lsn, Lsn(77));
        assert_eq!(location.crc, crc32fast::hash(bytes));
    }
    assert_eq!(map.size(), MAP_OVERHEAD_SIZE + 3 * ENTRY_SIZE);
}

#[test]
fn a_map_does_not_answer_for_stale_generations_free_slots_or_forwards() {
    let (mut page, ids) = data_page(5, &[b"one", b"two", b"three"]);
    slotted::remove(&mut page, ids[0].slot()).expect("removes");
    let forward = RecordId::new(PageId(9), 0, 1).expect("valid");
    slotted::replace(&mut page, ids[1].slot(), SlotPayload::Forward(forward)).expect("replaces");
    let map = RecordMap::of(&page).expect("map");
    assert_eq!(map.locate(ids[0]), None, "deleted");
    assert_eq!(map.locate(ids[1]), None, "forwarded");
    assert!(map.locate(ids[2]).is_some());
    let wrong_generation =
        RecordId::new(PageId(5), ids[2].slot(), ids[2].generation() + 1).expect("valid");
    assert_eq!(map.locate(wrong_generation), None);
    let past_the_directory = RecordId::new(PageId(5), 40, 1).expect("valid");
    assert_eq!(map.locate(past_the_directory), None);
}

#[test]
fn only_data_pages_with_a_sound_directory_have_maps() {
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
    let (page, ids) = data_page(5, &[b"a", b"b"]);
    let map = RecordMap::of(&page).expect("map");
    let maps = RecordMaps::new(3 * map.size());
    for id in 0..10 {
        maps.remember(PageId(id), map.clone());
        let (count, bytes) = maps.usage();
        assert!(bytes <= 3 * map.size());
        assert!(count <= 3);
    }
    assert_eq!(maps.usage().0, 3);
    let located = |page: u64| {
        maps.locate(RecordId::new(PageId(page), ids[0].slot(), ids[0].generation()).expect("valid"))
    };
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
    let (page, ids) = data_page(5, &[b"a"]);
    let maps = RecordMaps::new(0);
    assert!(!maps.is_enabled());
    maps.remember(PageId(5), RecordMap::of(&page).expect("map"));
    assert_eq!(maps.locate(ids[0]), None);
}

#[test]
fn a_page_looked_up_again_soon_is_declined_so_it_is_cached_whole() {
    let (page, ids) = data_page(5, &[b"a", b"b"]);
    let map = RecordMap::of(&page).expect("map");
    let maps = RecordMaps::new(1 << 20);
    for other in 100..400 {
        maps.remember(PageId(other), map.clone());
    }
    maps.remember(PageId(5), map);
    assert!(maps.locate(ids[0]).is_some(), "first read through the map");
    assert!(
        maps.locate(ids[1]).is_none(),
        "second read soon after: promoted"
    );
    assert!(maps.locate(ids[1]).is_some(), "a new window starts");
    // Lookups spread over many pages are answered, each page seen rarely.
    let slot = (ids[0].slot(), ids[0].generation());
    let spread = |page: u64| RecordId::new(PageId(page), slot.0, slot.1).expect("valid");
    let answered = (0..3_000u64)
        .filter(|turn| maps.locate(spread(100 + turn * 7 % 300)).is_some())
        .count();
    assert!(answered > 2_900, "{answered} of 3000");
}
