//! Space inside a transaction: allocating and freeing pages, finding room for records and
//! handles, keeping the space map (`crate::space_map`) exact, and handing out serials.
//!
//! The space map is the truth; [`SpaceCache`] is a writer's index over it (which pages are
//! free, which record pages have how much room, which handle pages have a free slot) so
//! that finding room is a lookup, not a walk over the map. The cache is only ever a source
//! of candidates: each one is checked against its page before use, and a wrong one is
//! corrected and skipped, so a stale cache costs time, never correctness. It catches up
//! with the map page by page: a map page whose LSN differs from the one the cache last saw
//! (another process's commit, or our own) is compared entry by entry. Nothing is read at
//! open; the first writer that needs room reads the map pages once.
//!
//! Every page a transaction changes gets its map entry settled at commit
//! ([`Txn::settle_space`]): an emptied record page or handle page is freed there (it may
//! become any kind of page), a record page's entry is set from its free bytes, a handle
//! page's from whether it has a free slot.

use super::txn::Txn;
use crate::error::{Error, Result};
use crate::handle_page;
use crate::page::{Lsn, PAGE_SIZE, Page, PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::record_id::{SERIAL_MAX, Serial};
use crate::slotted;
use crate::space_map::{self, Entry, FREE, HANDLES_WITH_ROOM, IN_USE, MAP_SPAN};
use std::collections::BTreeSet;

/// Serials a commit reserves at a time (see `pager`'s module docs): an open skips at most
/// this many, and a commit that raises the reservation is synced before it returns.
pub const SERIAL_RESERVE: u64 = 1024;
/// Candidates a lookup tries before it gives up on the cache and allocates.
const CANDIDATES_MAX: usize = 64;

/// One map page as the cache last saw it.
#[derive(Debug, Default)]
struct SpanView {
    /// The map page's LSN when it was read (`None`: never read, or the cache was reset).
    lsn: Option<Lsn>,
    /// Its entries.
    entries: Vec<u8>,
}

/// A writer's index of the space map (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct SpaceCache {
    /// The page count the cache last saw: when the file shrank (in any process), what it
    /// knows of pages past the new end is dropped.
    page_count: u64,
    spans: Vec<SpanView>,
    free: BTreeSet<PageId>,
    handles: BTreeSet<PageId>,
    /// Record pages by room class (index 0 unused).
    rooms: Vec<BTreeSet<PageId>>,
}

impl SpaceCache {
    /// Forgets everything (after a transaction that failed: it may have noted entries that
    /// never committed).
    pub fn reset(&mut self) {
        *self = SpaceCache::default();
    }

    fn unlist(&mut self, page: PageId, entry: u8) {
        match Entry::decode(entry) {
            Entry::Free => {
                self.free.remove(&page);
            }
            Entry::HandlesWithRoom => {
                self.handles.remove(&page);
            }
            Entry::RecordRoom(class) => {
                if let Some(set) = self.rooms.get_mut(usize::from(class)) {
                    set.remove(&page);
                }
            }
            Entry::InUse | Entry::Invalid(_) => {}
        }
    }

    fn list(&mut self, page: PageId, entry: u8) {
        match Entry::decode(entry) {
            Entry::Free => {
                self.free.insert(page);
            }
            Entry::HandlesWithRoom => {
                self.handles.insert(page);
            }
            Entry::RecordRoom(class) => {
                if self.rooms.len() <= usize::from(class) {
                    self.rooms
                        .resize_with(usize::from(class) + 1, BTreeSet::new);
                }
                self.rooms[usize::from(class)].insert(page);
            }
            Entry::InUse | Entry::Invalid(_) => {}
        }
    }

    /// Records that `page`'s entry is now `entry`.
    pub fn set(&mut self, page: PageId, entry: u8) {
        let (map_page, offset) = space_map::locate(page);
        let span = span_index(map_page);
        let index = offset - crate::page::PAGE_HEADER_SIZE;
        let Some(view) = self.spans.get_mut(span) else {
            return;
        };
        if view.lsn.is_none() || view.entries.len() <= index {
            return;
        }
        let old = std::mem::replace(&mut view.entries[index], entry);
        self.unlist(page, old);
        self.list(page, entry);
    }

    /// Catches up with one map page (its entries up to `page_count`).
    fn sync_span(&mut self, span: usize, map: &Page, page_count: u64) {
        if self.spans.len() <= span {
            self.spans.resize_with(span + 1, SpanView::default);
        }
        if self.spans[span].lsn == Some(map.lsn()) {
            return;
        }
        let first = space_map::FIRST_MAP_PAGE.0 + span as u64 * MAP_SPAN;
        let count = page_count.saturating_sub(first).min(MAP_SPAN) as usize;
        let body = &map.bytes()[crate::page::PAGE_HEADER_SIZE..][..count];
        let mut old = std::mem::take(&mut self.spans[span].entries);
        old.resize(count, IN_USE);
        for (index, (&was, &now)) in old.iter().zip(body).enumerate() {
            if was != now {
                let page = PageId(first + index as u64);
                self.unlist(page, was);
                self.list(page, now);
            }
        }
        self.spans[span] = SpanView {
            lsn: Some(map.lsn()),
            entries: body.to_vec(),
        };
    }

    /// Drops what the cache knows of pages at or past `page_count` (the file shrank).
    fn forget_from(&mut self, page_count: u64) {
        self.page_count = page_count;
        let keep = |page: &PageId| page.0 < page_count;
        self.free.retain(keep);
        self.handles.retain(keep);
        for set in &mut self.rooms {
            set.retain(keep);
        }
        let spans = space_map::map_pages(page_count).count();
        self.spans.truncate(spans);
        if let Some(last) = self.spans.last_mut() {
            last.lsn = None;
        }
    }

    fn lowest_free(&self, skip: &BTreeSet<PageId>) -> Option<PageId> {
        self.free.iter().find(|page| !skip.contains(page)).copied()
    }

    fn lowest_room(&self, class: u8, skip: &BTreeSet<PageId>) -> Option<PageId> {
        self.rooms
            .iter()
            .skip(usize::from(class))
            .filter_map(|set| set.iter().find(|page| !skip.contains(page)))
            .min()
            .copied()
    }

    fn lowest_handles(&self, skip: &BTreeSet<PageId>) -> Option<PageId> {
        self.handles
            .iter()
            .find(|page| !skip.contains(page))
            .copied()
    }
}

fn span_index(map_page: PageId) -> usize {
    ((map_page.0 - space_map::FIRST_MAP_PAGE.0) / MAP_SPAN) as usize
}

impl Txn<'_> {
    /// Brings the space cache up to date with every map page.
    fn sync_space(&mut self) -> Result<()> {
        let page_count = self.alloc.page_count;
        if page_count < self.space.page_count {
            self.space.forget_from(page_count);
        }
        self.space.page_count = page_count;
        for map_page in space_map::map_pages(page_count) {
            let span = span_index(map_page);
            let page = self.read(map_page)?;
            if page.page_type() != Some(PageType::SpaceMap) {
                return Err(Error::corruption(
                    PAGE_FILE_NAME,
                    map_page.offset(),
                    format!("{map_page} should be a space map page"),
                ));
            }
            let page = Page::clone(&page);
            self.space.sync_span(span, &page, page_count);
        }
        Ok(())
    }

    /// Corrects the cache's entry of a candidate that did not hold what the cache said.
    fn correct(&mut self, candidate: PageId) -> Result<()> {
        if candidate.0 >= self.alloc.page_count || space_map::is_map_page(candidate) {
            self.space.set(candidate, IN_USE);
            return Ok(());
        }
        let entry = self.map_entry(candidate)?;
        self.space.set(candidate, entry);
        Ok(())
    }

    /// The map entry of `page` as of this transaction.
    pub fn map_entry(&self, page: PageId) -> Result<u8> {
        let (map_page, offset) = space_map::locate(page);
        Ok(self.read(map_page)?.bytes()[offset])
    }

    /// Records in the map that `page` is written to `pages.db` at `lsn` (see
    /// `space_map`): done by the commit a checkpoint makes before it writes the pages.
    pub fn set_version(&mut self, page: PageId, lsn: Lsn) -> Result<()> {
        assert!(
            !space_map::is_map_page(page),
            "the meta page keeps map versions"
        );
        let (map_page, offset) = space_map::locate_version(page);
        if self.read(map_page)?.get_u64(offset) != lsn.0 {
            self.page_mut(map_page)?.put_u64(offset, lsn.0);
        }
        Ok(())
    }

    /// Sets the map entry of `page`, keeping the free page count.
    pub fn set_map_entry(&mut self, page: PageId, entry: u8) -> Result<()> {
        assert!(!space_map::is_map_page(page), "map pages keep entry 0");
        let (map_page, offset) = space_map::locate(page);
        let old = self.map_entry(page)?;
        if old == entry {
            return Ok(());
        }
        match (old == FREE, entry == FREE) {
            (true, false) => self.alloc.free_pages -= 1,
            (false, true) => self.alloc.free_pages += 1,
            _ => {}
        }
        self.page_mut(map_page)?.bytes_mut()[offset] = entry;
        self.space.set(page, entry);
        Ok(())
    }

    /// Allocates a page of `page_type`: the lowest free page, else a new one at the end of
    /// the file (after creating the map page of a new span).
    pub fn allocate(&mut self, page_type: PageType) -> Result<PageId> {
        assert!(
            page_type != PageType::SpaceMap,
            "map pages have fixed places"
        );
        self.check_page_budget()?;
        self.sync_space()?;
        let mut skip = BTreeSet::new();
        while skip.len() < CANDIDATES_MAX {
            let Some(candidate) = self.space.lowest_free(&skip) else {
                break;
            };
            if candidate.0 >= self.alloc.page_count {
                skip.insert(candidate);
                continue;
            }
            let entry = self.map_entry(candidate)?;
            if entry == FREE {
                crate::rare_paths::hit(crate::rare_paths::RarePath::FreePageReused);
                self.set_map_entry(candidate, IN_USE)?;
                self.put_new_page(candidate, page_type);
                return Ok(candidate);
            }
            self.space.set(candidate, entry);
            skip.insert(candidate);
        }
        let mut id = PageId(self.alloc.page_count);
        if space_map::is_map_page(id) {
            self.extend_to(id)?;
            self.put_new_page(id, PageType::SpaceMap);
            id = PageId(id.0 + 1);
        }
        self.extend_to(id)?;
        self.put_new_page(id, page_type);
        Ok(id)
    }

    /// Makes the file `id + 1` pages long (its map entry is 0 already: pages past the count
    /// have entry 0).
    fn extend_to(&mut self, id: PageId) -> Result<()> {
        if id.0 >= crate::pager::FILE_PAGES_MAX {
            return Err(Error::TooLarge {
                what: "page file",
                size: id.offset(),
                limit: crate::pager::FILE_PAGES_MAX * PAGE_SIZE as u64,
            });
        }
        assert_eq!(
            id.0, self.alloc.page_count,
            "the file grows one page at a time"
        );
        self.alloc.page_count += 1;
        Ok(())
    }

    /// Frees a page: it may become any kind of page.
    pub fn free(&mut self, id: PageId) -> Result<()> {
        assert!(id >= FIRST_DATA_PAGE, "meta pages are never freed");
        assert!(!space_map::is_map_page(id), "map pages are never freed");
        crate::rare_paths::hit(crate::rare_paths::RarePath::PageFreed);
        self.page_mut(id)?;
        self.put_new_page(id, PageType::Free);
        self.set_map_entry(id, FREE)
    }

    /// A record page holding `needed` more bytes (not `avoid`): the hint, else the lowest
    /// with room, else a new one.
    pub fn page_with_room(&mut self, needed: usize, avoid: Option<PageId>) -> Result<PageId> {
        let hint = self.alloc.record_hint;
        if hint.0 != 0 && Some(hint) != avoid && self.record_page_fits(hint, needed)? {
            return Ok(hint);
        }
        if let Some(class) = space_map::record_class_for(needed) {
            self.sync_space()?;
            let mut skip: BTreeSet<PageId> = avoid.into_iter().collect();
            while skip.len() < CANDIDATES_MAX {
                let Some(candidate) = self.space.lowest_room(class, &skip) else {
                    break;
                };
                if self.record_page_fits(candidate, needed)? {
                    self.alloc.record_hint = candidate;
                    return Ok(candidate);
                }
                self.correct(candidate)?;
                skip.insert(candidate);
            }
        }
        let id = self.allocate(PageType::Data)?;
        self.alloc.record_hint = id;
        Ok(id)
    }

    /// The lowest record page below `below` that holds `needed` more bytes, if any (for
    /// compaction: moving a record there frees space at the end of the file).
    pub fn lower_page_with_room(&mut self, needed: usize, below: PageId) -> Result<Option<PageId>> {
        let Some(class) = space_map::record_class_for(needed) else {
            return Ok(None);
        };
        self.sync_space()?;
        let mut skip = BTreeSet::new();
        while skip.len() < CANDIDATES_MAX {
            let Some(candidate) = self.space.lowest_room(class, &skip) else {
                break;
            };
            if candidate >= below {
                break;
            }
            if self.record_page_fits(candidate, needed)? {
                return Ok(Some(candidate));
            }
            self.correct(candidate)?;
            skip.insert(candidate);
        }
        // No record page below has room: a free page below becomes one.
        match self.space.lowest_free(&BTreeSet::new()) {
            Some(free) if free < below && self.map_entry(free)? == FREE => {
                Ok(Some(self.allocate(PageType::Data)?))
            }
            _ => Ok(None),
        }
    }

    fn record_page_fits(&self, id: PageId, needed: usize) -> Result<bool> {
        if id < FIRST_DATA_PAGE || id.0 >= self.alloc.page_count || space_map::is_map_page(id) {
            return Ok(false);
        }
        let page = self.read(id)?;
        Ok(page.page_type() == Some(PageType::Data)
            && slotted::check_data_page(&page).is_ok()
            && slotted::free_space(&page) >= needed
            && slotted::slot_count(&page) < slotted::RECORD_SLOTS_PER_PAGE_MAX)
    }

    /// A handle page with a free home slot: the hint, else the lowest with room, else new.
    pub fn page_with_free_handle(&mut self) -> Result<PageId> {
        let hint = self.alloc.handle_hint;
        if hint.0 != 0 && self.handle_page_has_room(hint)? {
            return Ok(hint);
        }
        self.sync_space()?;
        let mut skip = BTreeSet::new();
        while skip.len() < CANDIDATES_MAX {
            let Some(candidate) = self.space.lowest_handles(&skip) else {
                break;
            };
            if self.handle_page_has_room(candidate)? {
                self.alloc.handle_hint = candidate;
                return Ok(candidate);
            }
            self.correct(candidate)?;
            skip.insert(candidate);
        }
        let id = self.low_page_for_handles()?;
        self.alloc.handle_hint = id;
        Ok(id)
    }

    /// A new handle page as low in the file as possible: the lowest page that is neither a
    /// handle page nor a map page, if it is free or a record page (whose records move
    /// elsewhere first), else a newly allocated page. Handle pages cannot move (handles name
    /// them), so keeping them together at the start of the file is what lets compaction
    /// and the checkpoint's shrink give back everything after them; allocated where the
    /// file happened to end, one handle left in the last of them would pin the whole file.
    fn low_page_for_handles(&mut self) -> Result<PageId> {
        let page_count = self.alloc.page_count;
        let mut candidate = None;
        let mut others = 0;
        for raw in FIRST_DATA_PAGE.0..page_count {
            let id = PageId(raw);
            if space_map::is_map_page(id) {
                continue;
            }
            match self.read(id)?.page_type() {
                Some(PageType::Handles) => continue,
                Some(PageType::Free | PageType::Data) => {
                    candidate = Some(id);
                    break;
                }
                // Overflow pages cannot move without their owner: look a little further.
                _ => {
                    others += 1;
                    if others >= CANDIDATES_MAX {
                        break;
                    }
                }
            }
        }
        let Some(id) = candidate else {
            return self.allocate(PageType::Handles);
        };
        if self.read(id)?.page_type() == Some(PageType::Data) {
            self.empty_record_page(id)?;
        } else {
            self.set_map_entry(id, IN_USE)?;
        }
        self.page_mut(id)?;
        self.put_new_page(id, PageType::Handles);
        self.set_map_entry(id, HANDLES_WITH_ROOM)?;
        Ok(id)
    }

    fn handle_page_has_room(&self, id: PageId) -> Result<bool> {
        if id < FIRST_DATA_PAGE || id.0 >= self.alloc.page_count || space_map::is_map_page(id) {
            return Ok(false);
        }
        let page = self.read(id)?;
        Ok(handle_page::check_handle_page(&page).is_ok() && handle_page::has_room(&page))
    }

    /// Hands out the next serial, reserving more (and marking the commit for a sync) when
    /// the reservation is used up.
    pub fn next_serial(&mut self) -> Result<Serial> {
        let serial = self.alloc.serial_next;
        if serial > SERIAL_MAX {
            return Err(Error::TooLarge {
                what: "serial of this database (records stored in its life)",
                size: serial,
                limit: SERIAL_MAX + 1,
            });
        }
        if serial >= self.alloc.serial_limit {
            self.alloc.serial_limit = (serial + SERIAL_RESERVE).min(SERIAL_MAX + 1);
            self.needs_sync = true;
        }
        self.alloc.serial_next = serial + 1;
        Ok(Serial(serial))
    }

    /// Settles the map entry of every page this transaction changed (see the module docs).
    /// Called by commit before the frames are encoded.
    pub fn settle_space(&mut self) -> Result<()> {
        let ids: Vec<PageId> = self.changed_ids();
        for id in ids {
            if space_map::is_map_page(id) {
                continue;
            }
            let page = self.read(id)?;
            let entry = match page.page_type() {
                Some(PageType::Data) if slotted::is_empty(&page) => None,
                Some(PageType::Data) => Some(space_map::record_entry(slotted::free_space(&page))),
                Some(PageType::Handles) if handle_page::is_empty(&page) => None,
                Some(PageType::Handles) if handle_page::has_room(&page) => Some(HANDLES_WITH_ROOM),
                Some(PageType::Free) => Some(FREE),
                _ => Some(IN_USE),
            };
            drop(page);
            match entry {
                Some(entry) => self.set_map_entry(id, entry)?,
                None => {
                    if self.alloc.record_hint == id {
                        self.alloc.record_hint = PageId(0);
                    }
                    if self.alloc.handle_hint == id {
                        self.alloc.handle_hint = PageId(0);
                    }
                    self.free(id)?;
                }
            }
        }
        Ok(())
    }

    /// Gives trailing free pages back: lowers the page count past the last page in use
    /// (with the map pages of spans left empty), clearing their entries. Returns the new
    /// page count; the checkpoint after it truncates the file.
    pub fn shrink(&mut self) -> Result<u64> {
        let mut count = self.alloc.page_count;
        while count > FIRST_DATA_PAGE.0 {
            let last = PageId(count - 1);
            if space_map::is_map_page(last) {
                count -= 1;
                continue;
            }
            if self.map_entry(last)? != FREE {
                break;
            }
            self.set_map_entry(last, IN_USE)?;
            count -= 1;
        }
        // A map page stays only with a page of its span after it.
        while count > FIRST_DATA_PAGE.0 && space_map::is_map_page(PageId(count - 1)) {
            count -= 1;
        }
        if count < self.alloc.page_count {
            for hint in [&mut self.alloc.record_hint, &mut self.alloc.handle_hint] {
                if hint.0 >= count {
                    *hint = PageId(0);
                }
            }
            self.alloc.page_count = count;
            self.drop_pages_from(count);
            self.space.forget_from(count);
        }
        Ok(count)
    }
}
