use super::*;

fn owner(serial: u64) -> Owner {
    Owner {
        home_page: PageId(3),
        home_slot: (serial % 100) as u32,
        serial: Serial(serial),
    }
}

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
    while insert(&mut page, SlotPayload::Inline(&record), owner(stored + 1)).is_some() {
        stored += 1;
    }
    assert_eq!(
        stored as usize,
        (PAGE_SIZE - PAGE_HEADER_SIZE) / (2048 + SLOT_SIZE)
    );
    check_data_page(&page).expect("valid");
}

#[test]
fn a_slot_answers_only_for_the_record_that_owns_it() {
    let mut page = new_data_page(PageId(2));
    let first = insert(&mut page, SlotPayload::Inline(b"first"), owner(1)).expect("fits");
    assert!(lookup(&page, first, owner(1)).expect("lookup").is_some());
    remove(&mut page, first).expect("remove");
    assert_eq!(lookup(&page, first, owner(1)).expect("lookup"), None);
    let again = insert(&mut page, SlotPayload::Inline(b"second"), owner(2)).expect("fits");
    assert_eq!(again, first, "a free slot is reused");
    assert_eq!(
        lookup(&page, again, owner(1)).expect("lookup"),
        None,
        "the old owner does not find the new record"
    );
    assert!(lookup(&page, again, owner(2)).expect("lookup").is_some());
}

#[test]
fn removing_the_last_records_empties_the_directory() {
    let mut page = new_data_page(PageId(2));
    let slots: Vec<u32> = (1..=5)
        .map(|serial| {
            insert(&mut page, SlotPayload::Inline(&[1u8; 300]), owner(serial)).expect("fits")
        })
        .collect();
    remove(&mut page, slots[4]).expect("remove");
    assert_eq!(slot_count(&page), 4);
    remove(&mut page, slots[1]).expect("remove");
    assert_eq!(slot_count(&page), 4, "a free slot in the middle stays");
    for slot in [slots[0], slots[2], slots[3]] {
        remove(&mut page, slot).expect("remove");
    }
    assert!(is_empty(&page));
    assert_eq!(free_space(&page), PAGE_SIZE - PAGE_HEADER_SIZE);
    check_data_page(&page).expect("valid");
}

#[test]
fn holes_are_reclaimed_by_compaction() {
    let mut page = new_data_page(PageId(2));
    let record = vec![1u8; 4000];
    let mut slots = Vec::new();
    let mut serial = 1;
    while let Some(slot) = insert(&mut page, SlotPayload::Inline(&record), owner(serial)) {
        slots.push(slot);
        serial += 1;
    }
    for slot in slots.iter().step_by(2) {
        remove(&mut page, *slot).expect("remove");
    }
    let big = vec![2u8; 7000];
    let slot =
        insert(&mut page, SlotPayload::Inline(&big), owner(serial)).expect("fits after compaction");
    assert_eq!(inline_record(&page, slot), big);
    for kept in slots.iter().skip(1).step_by(2) {
        assert_eq!(inline_record(&page, *kept), record);
    }
    check_data_page(&page).expect("valid");
}

#[test]
fn replace_grows_and_shrinks_in_place_or_refuses_without_change() {
    let mut page = new_data_page(PageId(2));
    let slot = insert(&mut page, SlotPayload::Inline(&[3u8; 100]), owner(9)).expect("fits");
    assert!(replace(&mut page, slot, SlotPayload::Inline(&[4u8; 30_000])).expect("ok"));
    assert_eq!(inline_record(&page, slot), vec![4u8; 30_000]);
    let before = page.clone();
    assert!(!replace(&mut page, slot, SlotPayload::Inline(&vec![5u8; PAGE_SIZE])).expect("ok"));
    assert_eq!(page, before, "a refused replace changes nothing");
    assert!(replace(&mut page, slot, SlotPayload::Inline(&[6u8; 10])).expect("ok"));
    assert_eq!(read_slot(&page, slot).expect("slot").owner, owner(9));
}

/// Regression: `replace` left the slot pointing at its released bytes, so a compaction
/// triggered by the new bytes counted and moved the dead record ("live bytes drifted").
#[test]
fn replace_that_needs_compaction_keeps_every_record() {
    let mut page = new_data_page(PageId(2));
    let mut slots = Vec::new();
    let mut serial = 1;
    while let Some(slot) = insert(&mut page, SlotPayload::Inline(&[9u8; 3000]), owner(serial)) {
        slots.push(slot);
        serial += 1;
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
fn damaged_slot_fields_give_errors_not_panics() {
    let mut page = new_data_page(PageId(2));
    insert(&mut page, SlotPayload::Inline(b"abc"), owner(1)).expect("fits");
    let position = slot_position(0);
    page.put_u32(position + 16, 60_000);
    assert!(read_slot(&page, 0).is_err());
    page.put_u32(position + 16, PAGE_HEADER_SIZE as u32);
    page.put_u64(position + 8, 0);
    assert!(read_slot(&page, 0).is_err(), "a record without a serial");
    page.set_count(RECORD_SLOTS_PER_PAGE_MAX + 1);
    assert!(check_data_page(&page).is_err());
    assert!(read_slot(&page, 0).is_err());
}
