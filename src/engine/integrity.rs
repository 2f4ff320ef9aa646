//! Full integrity check: every page verified, every page accounted for exactly once, and
//! the space map and the handles agreeing with the pages.
//!
//! Pages below the page count must each be a meta page (0, 1), a space map page at its
//! fixed place, a handle page, a record page, an overflow page owned by exactly one
//! record's chain, or a free page. The checks:
//! - **Handles**: every live home slot points to a record slot that names it back (home
//!   slot and serial); every live record slot is reached by exactly one home slot; serials
//!   are unique and below the next serial to hand out; the live count of each handle page
//!   is its header's.
//! - **Space map**: each page's entry is the one its content gives (free exactly for free
//!   pages, the room class of a record page, whether a handle page has a free slot, 0 for
//!   everything else and for pages past the count); the count of free pages is the
//!   allocation state's. A record or handle page left empty (never freed) is a problem.
//! - **Versions**: no page carries an LSN above the last committed one: such a page holds
//!   changes of a transaction that never became durable (it reached `pages.db` before its
//!   WAL frames were synced, against the write-ahead rule), and what the database shows is
//!   a mix of that transaction and the durable state.
//!
//! Problems are collected, not returned as the first error, so a caller sees the whole
//! picture; only I/O failures abort.

use super::Inner;
use crate::error::{Error, Result};
use crate::handle_page;
use crate::page::{PAGE_DATA_SIZE, PAGE_HEADER_SIZE, Page, PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::record_id::{HOME_SLOTS_PER_PAGE, Serial};
use crate::slotted::{self, Owner, SlotContent};
use crate::space_map::{self, FREE, HANDLES_WITH_ROOM, IN_USE};
use std::collections::{BTreeMap, BTreeSet};

/// One problem found by [`crate::StorageEngine::check_integrity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrityProblem {
    /// The file holding the damaged structure.
    pub file: String,
    /// Byte offset of the damaged structure.
    pub offset: u64,
    /// What is wrong.
    pub detail: String,
}

/// What [`crate::StorageEngine::check_integrity`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IntegrityReport {
    /// Pages in the file, meta pages included.
    pub pages: u64,
    /// Record pages.
    pub data_pages: u64,
    /// Handle pages.
    pub handle_pages: u64,
    /// Space map pages.
    pub map_pages: u64,
    /// Overflow pages owned by records.
    pub overflow_pages: u64,
    /// Free pages.
    pub free_pages: u64,
    /// Live records.
    pub live_records: u64,
    /// Encoded bytes of the live records (inline and overflow).
    pub record_bytes: u64,
    /// Encoded bytes of the live records kept inline in record pages.
    pub inline_record_bytes: u64,
    /// Bytes free inside record pages (room for records without a new page).
    pub free_record_bytes: u64,
    /// The highest handle page (0 if none): compaction cannot move the file's end below it.
    pub last_handle_page: u64,
    /// Every problem found; empty when the database is sound.
    pub problems: Vec<IntegrityProblem>,
}

impl IntegrityReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    /// Bytes of the free pages.
    pub fn free_page_bytes(&self) -> u64 {
        self.free_pages * crate::page::PAGE_SIZE as u64
    }

    /// About how many bytes `compact` would give back: the free pages, and the record pages
    /// the free bytes inside record pages add up to (what packing the records would empty),
    /// but never the pages up to the last handle page, which handles pin. An estimate:
    /// records do not pack perfectly.
    pub fn compact_would_return_bytes(&self) -> u64 {
        let packable = self.free_record_bytes / PAGE_DATA_SIZE as u64;
        let in_use = self.pages.saturating_sub(self.free_pages + packable);
        let pages_after = in_use.max(self.last_handle_page + 1).min(self.pages);
        (self.pages - pages_after) * crate::page::PAGE_SIZE as u64
    }
}

struct Checker<'a> {
    inner: &'a Inner,
    page_count: u64,
    /// The last committed LSN: no page may be newer.
    last_lsn: crate::page::Lsn,
    serial_next: u64,
    report: IntegrityReport,
    /// The entry each page's content calls for.
    expected_entries: BTreeMap<PageId, u8>,
    /// Overflow pages by the record whose chain holds them.
    chain_owner: BTreeMap<PageId, Owner>,
    overflow_pages: BTreeSet<PageId>,
    /// Live record slots and their owners.
    record_slots: BTreeMap<(PageId, u32), Owner>,
    /// What live home slots point to.
    home_targets: BTreeMap<(PageId, u32), Owner>,
    serials: BTreeSet<Serial>,
}

impl Inner {
    /// Checks the whole database at the last commit. It holds the writer locks while it
    /// runs: it relates many pages to each other, and commits and checkpoints of other
    /// processes between those reads would show as false problems.
    pub(crate) fn check_integrity(&self) -> Result<IntegrityReport> {
        self.check_open()?;
        let _writer = self.lock_writer();
        let _lock = super::WalLock::take(self, super::locks::Purpose::Check)?;
        self.refresh()?;
        let (alloc, last_lsn) = {
            let view = self.read_view();
            (view.alloc, view.last_lsn())
        };
        let mut checker = Checker {
            inner: self,
            page_count: alloc.page_count,
            last_lsn,
            serial_next: alloc.serial_next,
            report: IntegrityReport {
                pages: alloc.page_count,
                ..IntegrityReport::default()
            },
            expected_entries: BTreeMap::new(),
            chain_owner: BTreeMap::new(),
            overflow_pages: BTreeSet::new(),
            record_slots: BTreeMap::new(),
            home_targets: BTreeMap::new(),
            serials: BTreeSet::new(),
        };
        for raw in FIRST_DATA_PAGE.0..alloc.page_count {
            checker.visit_page(PageId(raw))?;
        }
        checker.check_handles();
        checker.check_overflow_ownership();
        checker.check_map(alloc.free_pages)?;
        Ok(checker.report)
    }
}

impl Checker<'_> {
    fn problem(&mut self, page: PageId, detail: impl Into<String>) {
        self.report.problems.push(IntegrityProblem {
            file: PAGE_FILE_NAME.to_string(),
            offset: page.offset(),
            detail: detail.into(),
        });
    }

    /// Reads a page as a reopen would (not from the pool: from the WAL if it holds the
    /// page, else from `pages.db` with its version checked, so a copy on disk whose write
    /// was lost is found while a cached copy is still current); corruption becomes a
    /// problem (`None`), I/O errors abort.
    fn read(&mut self, id: PageId) -> Result<Option<Page>> {
        match self.inner.read_missed_page(id, false) {
            Ok(page) => Ok(Some(Page::clone(&page))),
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => {
                self.report.problems.push(IntegrityProblem {
                    file,
                    offset,
                    detail,
                });
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    fn visit_page(&mut self, id: PageId) -> Result<()> {
        let Some(page) = self.read(id)? else {
            return Ok(());
        };
        let Some(page_type) = page.page_type() else {
            self.problem(id, "unknown page type");
            return Ok(());
        };
        if page.lsn() > self.last_lsn {
            self.problem(
                id,
                format!(
                    "{id} has LSN {} above the last committed LSN {}: it holds changes that \
                     never became durable",
                    page.lsn().0,
                    self.last_lsn.0
                ),
            );
        }
        if space_map::is_map_page(id) != (page_type == PageType::SpaceMap) {
            self.problem(
                id,
                format!("{id} is a {page_type:?} page, and the space map's places say otherwise"),
            );
            return Ok(());
        }
        let entry = match page_type {
            PageType::SpaceMap => {
                self.report.map_pages += 1;
                return Ok(());
            }
            PageType::Data => self.visit_record_page(id, &page)?,
            PageType::Handles => self.visit_handle_page(id, &page),
            PageType::Overflow => {
                self.overflow_pages.insert(id);
                IN_USE
            }
            PageType::Free => {
                self.report.free_pages += 1;
                FREE
            }
            PageType::Unused => {
                self.problem(
                    id,
                    format!("{id} is below the page count but was never written"),
                );
                return Ok(());
            }
            PageType::Meta => {
                self.problem(id, format!("{id} is a meta page outside slots 0 and 1"));
                return Ok(());
            }
        };
        self.expected_entries.insert(id, entry);
        Ok(())
    }

    fn visit_record_page(&mut self, id: PageId, page: &Page) -> Result<u8> {
        self.report.data_pages += 1;
        if let Err(error) = slotted::check_data_page(page) {
            self.problem(id, error.0);
            return Ok(IN_USE);
        }
        if slotted::is_empty(page) {
            self.problem(
                id,
                format!("record page {id} holds no record and was not freed"),
            );
        }
        let free = slotted::free_space(page);
        self.report.free_record_bytes += free as u64;
        for index in 0..slotted::slot_count(page) {
            let slot = match slotted::read_slot(page, index) {
                Ok(slot) => slot,
                Err(error) => {
                    self.problem(id, error.0);
                    continue;
                }
            };
            match slot.content {
                SlotContent::Free => continue,
                SlotContent::Inline { len, .. } => {
                    self.report.record_bytes += u64::from(len);
                    self.report.inline_record_bytes += u64::from(len);
                }
                SlotContent::Overflow { first, len } => {
                    self.report.record_bytes += u64::from(len);
                    self.walk_chain(slot.owner, first, len)?;
                }
            }
            self.report.live_records += 1;
            self.record_slots.insert((id, index), slot.owner);
        }
        Ok(space_map::record_entry(free))
    }

    fn visit_handle_page(&mut self, id: PageId, page: &Page) -> u8 {
        self.report.handle_pages += 1;
        self.report.last_handle_page = self.report.last_handle_page.max(id.0);
        if let Err(error) = handle_page::check_handle_page(page) {
            self.problem(id, error.0);
            return IN_USE;
        }
        let mut live = 0;
        for index in 0..HOME_SLOTS_PER_PAGE {
            match handle_page::read(page, index) {
                Ok(None) => {}
                Ok(Some(home)) => {
                    live += 1;
                    let owner = Owner {
                        home_page: id,
                        home_slot: index,
                        serial: home.serial,
                    };
                    if home.serial.0 >= self.serial_next {
                        self.problem(
                            id,
                            format!(
                                "home slot {index} of {id} holds serial {}, not handed out yet \
                                 (next is {})",
                                home.serial.0, self.serial_next
                            ),
                        );
                    }
                    if !self.serials.insert(home.serial) {
                        self.problem(id, format!("serial {} is held twice", home.serial.0));
                    }
                    let target = (home.record_page, home.record_slot);
                    if let Some(other) = self.home_targets.insert(target, owner) {
                        self.problem(
                            id,
                            format!(
                                "home slots {other:?} and {owner:?} both point to {} slot {}",
                                home.record_page, home.record_slot
                            ),
                        );
                    }
                }
                Err(error) => self.problem(id, error.0),
            }
        }
        if live != page.count() {
            self.problem(
                id,
                format!(
                    "{id} has {live} live home slots, its header says {}",
                    page.count()
                ),
            );
        }
        if live == 0 {
            self.problem(
                id,
                format!("handle page {id} holds no handle and was not freed"),
            );
        }
        if handle_page::has_room(page) {
            HANDLES_WITH_ROOM
        } else {
            IN_USE
        }
    }

    fn walk_chain(&mut self, owner: Owner, first: PageId, len: u32) -> Result<()> {
        let expected = (len as usize).div_ceil(PAGE_DATA_SIZE);
        let mut current = first;
        let mut remaining = len as usize;
        for _ in 0..expected {
            if current < FIRST_DATA_PAGE || current.0 >= self.page_count {
                self.problem(
                    first,
                    format!("chain of {owner:?} leaves the file at {current}"),
                );
                return Ok(());
            }
            if let Some(previous) = self.chain_owner.insert(current, owner) {
                self.problem(
                    current,
                    format!("{current} is owned twice: by {previous:?} and {owner:?}"),
                );
                return Ok(());
            }
            let Some(page) = self.read(current)? else {
                return Ok(());
            };
            let used = remaining.min(PAGE_DATA_SIZE);
            if page.page_type() != Some(PageType::Overflow) || page.count() as usize != used {
                self.problem(
                    current,
                    format!(
                        "chain of {owner:?} reaches {current}, not the overflow page it expects"
                    ),
                );
                return Ok(());
            }
            self.report.overflow_pages += 1;
            remaining -= used;
            current = page.next();
        }
        if current.0 != 0 {
            self.problem(
                first,
                format!("chain of {owner:?} is longer than its {len} bytes"),
            );
        }
        Ok(())
    }

    /// Every live home slot reaches a record slot naming it back, and every live record
    /// slot is reached.
    fn check_handles(&mut self) {
        let targets = std::mem::take(&mut self.home_targets);
        for ((record_page, record_slot), owner) in &targets {
            match self.record_slots.get(&(*record_page, *record_slot)) {
                Some(named) if named == owner => {}
                Some(named) => self.problem(
                    *record_page,
                    format!(
                        "{owner:?} points to slot {record_slot} of {record_page}, which names \
                         {named:?}"
                    ),
                ),
                None => self.problem(
                    owner.home_page,
                    format!(
                        "{owner:?} points to slot {record_slot} of {record_page}, which holds \
                         no record"
                    ),
                ),
            }
        }
        let orphans: Vec<((PageId, u32), Owner)> = self
            .record_slots
            .iter()
            .filter(|(place, owner)| targets.get(place) != Some(owner))
            .map(|(place, owner)| (*place, *owner))
            .collect();
        for ((page, slot), owner) in orphans {
            self.problem(
                page,
                format!(
                    "slot {slot} of {page} holds a record of {owner:?} that no home slot reaches"
                ),
            );
        }
    }

    fn check_overflow_ownership(&mut self) {
        let leaked: Vec<PageId> = self
            .overflow_pages
            .iter()
            .filter(|page| !self.chain_owner.contains_key(page))
            .copied()
            .collect();
        for page in leaked {
            self.problem(
                page,
                format!("overflow {page} is owned by no chain (leaked)"),
            );
        }
    }

    /// Every entry of the space map is the one its page's content calls for.
    fn check_map(&mut self, free_pages: u64) -> Result<()> {
        for map_page in space_map::map_pages(self.page_count).collect::<Vec<_>>() {
            let Some(page) = self.read(map_page)? else {
                continue;
            };
            let first = map_page.0;
            for offset in 0..space_map::MAP_SPAN {
                let id = PageId(first + offset);
                let entry = page.bytes()[PAGE_HEADER_SIZE + offset as usize];
                let expected = if id == map_page || id.0 >= self.page_count {
                    Some(IN_USE)
                } else {
                    self.expected_entries.get(&id).copied()
                };
                match expected {
                    Some(expected) if expected != entry => self.problem(
                        map_page,
                        format!("the space map gives {id} entry {entry}, its content calls for {expected}"),
                    ),
                    _ => {}
                }
            }
        }
        if free_pages != self.report.free_pages {
            self.problem(
                PageId(0),
                format!(
                    "{} pages are free, the allocation state says {free_pages}",
                    self.report.free_pages
                ),
            );
        }
        Ok(())
    }
}
