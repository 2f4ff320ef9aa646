//! Record maps of evicted pages: where each record of a record page lies and the checksum
//! of its bytes, kept after the buffer pool dropped the page, so that a load that misses
//! the pool reads the one record it needs instead of the whole 64 KiB page.
//!
//! # What it owns
//!
//! For each remembered record page, the page's LSN and, per slot, the owner's serial and
//! the offset, length and CRC32 of the record if it is inline. Maps are made
//! from page copies the buffer pool held, which were verified when they entered it (read
//! whole from `pages.db` and checksummed, rebuilt from checksummed WAL frames, or written
//! by this engine). At most `budget_bytes` of maps are kept; the oldest go first.
//!
//! # What it promises
//!
//! - A map answers only for the page version it was made from. The reader compares the
//!   LSN in the page's header on disk with the map's and the CRC32 of the record bytes it
//!   read with the map's (see `Inner::load_from_map`). Any difference, an I/O error, and
//!   anything but an inline record of the owner asked for send the reader to the whole-page path,
//!   which verifies the page checksum and reports corruption. Bytes returned through a map
//!   are therefore byte for byte the bytes that were verified when the page was cached.
//! - Correctness never depends on a map being forgotten: a page changes only by a commit,
//!   and every commit gives the page a new LSN. Forgetting only saves memory.
//! - Bounded: the maps, counted with [`MAP_OVERHEAD_SIZE`] each, never exceed the budget,
//!   and the eviction queue never holds more than twice the maps plus a constant.

use crate::page::{Lsn, Page, PageId, PageIdHashing, PageType};
use crate::record_id::Serial;
use crate::slotted::{self, SlotContent};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// Bytes a map is counted for besides its entries: its key, LSN and vector in the table,
/// its place in the queue, and the table's spare capacity.
pub const MAP_OVERHEAD_SIZE: usize = 96;

/// Length marking an entry whose slot holds no inline record.
const NOT_INLINE: u32 = u32::MAX;

/// Queue entries allowed beyond twice the maps before the queue is compacted.
const QUEUE_SLACK: usize = 64;

/// A page whose map answers this many lookups within [`PROMOTION_WINDOW_LOOKUPS`] of all
/// maps' lookups is hot: the lookup declines, so the reader caches the whole page again.
/// Under uniform access over many pages that almost never happens (with 2,000 mapped
/// pages, a page sees a second lookup within 256 in about 1 of 160 windows), while a page
/// read again and again goes back into the pool at its second read.
pub const PROMOTION_HITS: u32 = 2;
/// The window of [`PROMOTION_HITS`], counted in lookups of any map.
pub const PROMOTION_WINDOW_LOOKUPS: u64 = 256;

/// One slot of a remembered page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    serial: Serial,
    offset: u32,
    /// [`NOT_INLINE`] if the slot is free or its record in an overflow chain: the
    /// whole-page path handles those.
    len: u32,
    crc: u32,
}

/// Bytes one slot costs in a map.
pub const ENTRY_SIZE: usize = size_of::<Entry>();

const _: () = assert!(ENTRY_SIZE == 24);

/// The records of one data page version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMap {
    lsn: Lsn,
    entries: Box<[Entry]>,
    /// Lookup tick at which the map's current promotion window started.
    window_start: u64,
    /// Lookups answered in that window.
    window_hits: u32,
}

/// Where one record lies in its page on disk and what its bytes must hash to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordLocation {
    /// LSN the page on disk must carry for the location to hold.
    pub lsn: Lsn,
    /// Byte offset of the record in the page.
    pub offset: u32,
    /// Record length in bytes.
    pub len: u32,
    /// CRC32 of the record's bytes.
    pub crc: u32,
}

impl RecordMap {
    /// The map of a record page, or `None` for any other page or a directory that does not
    /// decode (the whole-page path reports that).
    pub fn of(page: &Page) -> Option<RecordMap> {
        if page.page_type() != Some(PageType::Data) {
            return None;
        }
        let count = slotted::slot_count(page);
        let mut entries = Vec::with_capacity(count as usize);
        for index in 0..count {
            let slot = slotted::read_slot(page, index).ok()?;
            let entry = match slot.content {
                SlotContent::Inline { offset, len } if len != NOT_INLINE => {
                    let bytes = slotted::inline_bytes(page, offset, len);
                    Entry {
                        serial: slot.owner.serial,
                        offset,
                        len,
                        crc: crc32fast::hash(bytes),
                    }
                }
                _ => Entry {
                    serial: Serial(0),
                    offset: 0,
                    len: NOT_INLINE,
                    crc: 0,
                },
            };
            entries.push(entry);
        }
        Some(RecordMap {
            lsn: page.lsn(),
            entries: entries.into_boxed_slice(),
            window_start: 0,
            window_hits: 0,
        })
    }

    /// Where the record with `serial` in slot `slot` lies, if it is an inline record.
    pub fn locate(&self, slot: u32, serial: Serial) -> Option<RecordLocation> {
        let entry = self.entries.get(slot as usize)?;
        if entry.len == NOT_INLINE || entry.serial != serial {
            return None;
        }
        Some(RecordLocation {
            lsn: self.lsn,
            offset: entry.offset,
            len: entry.len,
            crc: entry.crc,
        })
    }

    /// Bytes the map is counted for.
    pub fn size(&self) -> usize {
        MAP_OVERHEAD_SIZE + self.entries.len() * ENTRY_SIZE
    }
}

/// What an engine's record maps hold (see `StorageEngine::record_map_stats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordMapStats {
    /// Pages with a map now.
    pub maps: usize,
    /// Bytes the maps are counted for.
    pub bytes: usize,
    /// Most bytes of maps kept (a share of the buffer pool's budget; 0: none are kept).
    pub budget_bytes: usize,
    /// Loads answered by reading one record through a map since the engine was opened.
    pub reads: u64,
}

/// The maps of evicted pages, within a byte budget. `Send + Sync`.
#[derive(Debug)]
pub struct RecordMaps {
    budget_bytes: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Page → (sequence number of the remember call, map).
    maps: HashMap<PageId, (u64, RecordMap), PageIdHashing>,
    /// Remember calls, oldest first; an entry whose sequence number no longer matches its
    /// page's map is stale and skipped.
    order: VecDeque<(PageId, u64)>,
    next_sequence: u64,
    bytes: usize,
    /// Lookups so far: the clock of the promotion windows.
    lookups: u64,
}

impl RecordMaps {
    /// Maps of at most `budget_bytes` in all; a budget of 0 keeps none.
    pub fn new(budget_bytes: usize) -> RecordMaps {
        RecordMaps {
            budget_bytes,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether any map can be kept.
    pub fn is_enabled(&self) -> bool {
        self.budget_bytes > 0
    }

    /// Keeps the map of page `id`, replacing an older one, and drops the oldest maps
    /// beyond the budget.
    pub fn remember(&self, id: PageId, map: RecordMap) {
        if map.size() > self.budget_bytes {
            self.forget(id);
            return;
        }
        let mut state = self.lock();
        let sequence = state.next_sequence;
        state.next_sequence += 1;
        state.bytes += map.size();
        if let Some((_, old)) = state.maps.insert(id, (sequence, map)) {
            state.bytes -= old.size();
        }
        state.order.push_back((id, sequence));
        while state.bytes > self.budget_bytes {
            let Some((oldest, oldest_sequence)) = state.order.pop_front() else {
                break;
            };
            state.remove_if(oldest, oldest_sequence);
        }
        if state.order.len() > 2 * state.maps.len() + QUEUE_SLACK {
            let State { maps, order, .. } = &mut *state;
            order.retain(|(page, sequence)| maps.get(page).is_some_and(|(s, _)| s == sequence));
        }
        state.check(self.budget_bytes);
    }

    /// Where the record with `serial` in slot `slot` of record page `page` lies on disk,
    /// if the page's map knows it and the page is not hot (see [`PROMOTION_HITS`]): `None`
    /// sends the reader to the whole page, which the pool then caches.
    pub fn locate(&self, page: PageId, slot: u32, serial: Serial) -> Option<RecordLocation> {
        let mut state = self.lock();
        state.lookups += 1;
        let tick = state.lookups;
        let (_, map) = state.maps.get_mut(&page)?;
        let location = map.locate(slot, serial)?;
        if tick - map.window_start > PROMOTION_WINDOW_LOOKUPS || map.window_hits == 0 {
            map.window_start = tick;
            map.window_hits = 0;
        }
        map.window_hits += 1;
        if map.window_hits >= PROMOTION_HITS {
            map.window_hits = 0;
            return None;
        }
        Some(location)
    }

    /// Drops the map of page `id`, if any.
    pub fn forget(&self, id: PageId) {
        let mut state = self.lock();
        if let Some((_, old)) = state.maps.remove(&id) {
            state.bytes -= old.size();
        }
        state.check(self.budget_bytes);
    }

    /// Drops every map.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.maps.clear();
        state.order.clear();
        state.bytes = 0;
    }

    /// Maps kept now and the bytes they are counted for.
    pub fn usage(&self) -> (usize, usize) {
        let state = self.lock();
        (state.maps.len(), state.bytes)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change leaves `State` consistent before anything that can panic.
        crate::sched::lock(&self.state)
    }
}

impl State {
    fn remove_if(&mut self, id: PageId, sequence: u64) {
        if self
            .maps
            .get(&id)
            .is_some_and(|(kept, _)| *kept == sequence)
            && let Some((_, old)) = self.maps.remove(&id)
        {
            self.bytes -= old.size();
        }
    }

    fn check(&self, budget_bytes: usize) {
        debug_assert!(self.bytes <= budget_bytes);
        // The full sum only on small tables, so debug builds stay linear.
        debug_assert!(
            self.maps.len() > 64
                || self.bytes == self.maps.values().map(|(_, map)| map.size()).sum::<usize>()
        );
        debug_assert!(self.order.len() <= 2 * self.maps.len() + QUEUE_SLACK + 1);
    }
}

#[cfg(test)]
#[path = "record_map_tests.rs"]
mod tests;
