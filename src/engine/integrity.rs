//! Full integrity check: every page verified, and every page accounted for exactly once.
//!
//! Pages below the page count must each be a meta page (0, 1), a data page, an overflow
//! page owned by exactly one record's chain, or a free page on the free list (whose length
//! must match the allocation state). Every forward must reach a moved-in slot, and every
//! moved-in slot must be reached by exactly one forward. No page may carry an LSN above the
//! last committed one: such a page holds changes of a transaction that never became durable
//! (it reached `pages.db` before its WAL frames were synced, against the write-ahead rule),
//! and what the database shows is a mix of that transaction and the durable state. Problems
//! are collected, not
//! returned as the first error, so a caller sees the whole picture; only I/O failures abort.

use super::Inner;
use crate::error::{Error, Result};
use crate::page::{PAGE_DATA_SIZE, Page, PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::record_id::RecordId;
use crate::slotted::{self, SlotContent};
use std::collections::BTreeMap;

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
    /// Slotted data pages.
    pub data_pages: u64,
    /// Overflow pages owned by records.
    pub overflow_pages: u64,
    /// Pages on the free list.
    pub free_pages: u64,
    /// Live records (each counted once, under its home slot).
    pub live_records: u64,
    /// Records living away from their home slot.
    pub moved_records: u64,
    /// Encoded bytes of the live records (inline and overflow).
    pub record_bytes: u64,
    /// Every problem found; empty when the database is sound.
    pub problems: Vec<IntegrityProblem>,
}

impl IntegrityReport {
    /// True when no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Chain(RecordId),
    FreeList,
}

struct Checker<'a> {
    inner: &'a Inner,
    page_count: u64,
    /// The last committed LSN: no page may be newer.
    last_lsn: crate::page::Lsn,
    report: IntegrityReport,
    owners: BTreeMap<PageId, Owner>,
    forwards: BTreeMap<RecordId, RecordId>,
    moved_in: Vec<RecordId>,
    types: BTreeMap<PageId, PageType>,
}

impl Inner {
    /// Checks the whole database at the last commit. It holds the writer locks while it
    /// runs: it relates many pages to each other, and commits and checkpoints of other
    /// processes between those reads would show as false problems.
    pub(crate) fn check_integrity(&self) -> Result<IntegrityReport> {
        self.check_open()?;
        let _writer = self.lock_writer();
        let _lock = super::WalLock::take(&self.wal)?;
        self.refresh()?;
        let (alloc, last_lsn) = {
            let view = self.read_view();
            (view.alloc, view.last_lsn())
        };
        let mut checker = Checker {
            inner: self,
            page_count: alloc.page_count,
            last_lsn,
            report: IntegrityReport {
                pages: alloc.page_count,
                ..IntegrityReport::default()
            },
            owners: BTreeMap::new(),
            forwards: BTreeMap::new(),
            moved_in: Vec::new(),
            types: BTreeMap::new(),
        };
        for raw in FIRST_DATA_PAGE.0..alloc.page_count {
            checker.visit_page(PageId(raw))?;
        }
        checker.walk_free_list(alloc.free_head, alloc.free_count)?;
        checker.check_forwards();
        checker.check_ownership();
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

    /// Reads a page; corruption becomes a problem (`None`), I/O errors abort.
    fn read(&mut self, id: PageId) -> Result<Option<Page>> {
        match self.inner.read_page(id, false) {
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
        self.types.insert(id, page_type);
        match page_type {
            PageType::Data => self.visit_data_page(id, &page),
            PageType::Overflow | PageType::Free => Ok(()),
            PageType::Unused => {
                self.problem(
                    id,
                    format!("{id} is below the page count but was never written"),
                );
                Ok(())
            }
            PageType::Meta => {
                self.problem(id, format!("{id} is a meta page outside slots 0 and 1"));
                Ok(())
            }
        }
    }

    fn visit_data_page(&mut self, id: PageId, page: &Page) -> Result<()> {
        self.report.data_pages += 1;
        if let Err(error) = slotted::check_data_page(page) {
            self.problem(id, error.0);
            return Ok(());
        }
        for index in 0..slotted::slot_count(page) {
            let slot = match slotted::read_slot(page, index) {
                Ok(slot) => slot,
                Err(error) => {
                    self.problem(id, error.0);
                    continue;
                }
            };
            let Some(record) = RecordId::new(id, index, slot.generation.max(1)) else {
                continue;
            };
            if slot.moved_in {
                self.moved_in.push(record);
            } else if !matches!(slot.content, SlotContent::Free | SlotContent::Retired) {
                self.report.live_records += 1;
            }
            self.report.record_bytes += match slot.content {
                SlotContent::Inline { len, .. } => u64::from(len),
                SlotContent::Overflow { len, .. } => u64::from(len),
                _ => 0,
            };
            match slot.content {
                SlotContent::Overflow { first, len } => self.walk_chain(record, first, len)?,
                SlotContent::Forward(target) => {
                    self.forwards.insert(record, target);
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn claim(&mut self, page: PageId, owner: Owner) -> bool {
        if page < FIRST_DATA_PAGE || page.0 >= self.page_count {
            self.problem(
                page,
                format!("{owner:?} points at {page}, outside the file"),
            );
            return false;
        }
        if let Some(previous) = self.owners.insert(page, owner) {
            self.problem(
                page,
                format!("{page} is owned twice: by {previous:?} and {owner:?}"),
            );
            return false;
        }
        true
    }

    fn walk_chain(&mut self, record: RecordId, first: PageId, len: u32) -> Result<()> {
        let expected = (len as usize).div_ceil(PAGE_DATA_SIZE);
        let mut current = first;
        for _ in 0..expected {
            if !self.claim(current, Owner::Chain(record)) {
                return Ok(());
            }
            let Some(page) = self.read(current)? else {
                return Ok(());
            };
            if page.page_type() != Some(PageType::Overflow) {
                self.problem(
                    current,
                    format!("chain of {record:?} reaches a non-overflow {current}"),
                );
                return Ok(());
            }
            self.report.overflow_pages += 1;
            current = page.next();
        }
        if current.0 != 0 {
            self.problem(
                first,
                format!("chain of {record:?} is longer than its {len} bytes"),
            );
        }
        Ok(())
    }

    fn walk_free_list(&mut self, head: PageId, count: u64) -> Result<()> {
        let mut current = head;
        let mut seen = 0u64;
        while current.0 != 0 {
            if seen >= count || !self.claim(current, Owner::FreeList) {
                self.problem(head, format!("free list is longer than its count {count}"));
                return Ok(());
            }
            let Some(page) = self.read(current)? else {
                return Ok(());
            };
            if page.page_type() != Some(PageType::Free) {
                self.problem(current, format!("free list reaches a non-free {current}"));
                return Ok(());
            }
            seen += 1;
            current = page.next();
        }
        self.report.free_pages = seen;
        if seen != count {
            self.problem(
                head,
                format!("free list has {seen} pages, the allocation state says {count}"),
            );
        }
        Ok(())
    }

    fn check_forwards(&mut self) {
        let mut reached: BTreeMap<RecordId, u32> = BTreeMap::new();
        for target in self.forwards.values() {
            *reached.entry(*target).or_default() += 1;
        }
        self.report.moved_records = self.forwards.len() as u64;
        for (home, target) in self.forwards.clone() {
            if !self.moved_in.contains(&target) {
                self.problem(
                    home.page_id(),
                    format!("{home:?} forwards to {target:?}, not a moved-in record"),
                );
            }
        }
        for moved in self.moved_in.clone() {
            let count = reached.get(&moved).copied().unwrap_or(0);
            if count != 1 {
                self.problem(
                    moved.page_id(),
                    format!("moved-in {moved:?} is reached by {count} forwards"),
                );
            }
        }
    }

    fn check_ownership(&mut self) {
        let unowned: Vec<(PageId, PageType)> = self
            .types
            .iter()
            .filter(|(id, page_type)| {
                matches!(page_type, PageType::Overflow | PageType::Free)
                    && !self.owners.contains_key(id)
            })
            .map(|(id, page_type)| (*id, *page_type))
            .collect();
        for (id, page_type) in unowned {
            self.problem(
                id,
                format!("{page_type:?} {id} is owned by nothing (leaked)"),
            );
        }
    }
}
