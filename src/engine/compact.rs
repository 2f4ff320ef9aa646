//! Online compaction: moves records and overflow chains from the end of the file into room
//! nearer its start, then checkpoints, which gives the freed tail back to the file system.
//!
//! Handles stay valid: a record moves by repointing its home slot (see `records`), and home
//! slots never move. So the file can end near its live data whatever was deleted where,
//! except for handle pages, which stay where they are: a handle page with one live handle
//! left pins its 64 KiB (a page holds 4,092 handles, so this is 16 bytes a record when
//! handles are dense, and at worst one page per live handle).
//!
//! It runs in small transactions ([`COMPACT_BATCH_RECORDS`] moves each), so other threads
//! and processes read and write while it runs; a crash in the middle leaves a consistent
//! database (each batch commits or not), and running it again goes on where it stopped.
//!
//! # Order
//! 1. The bound: where the file could end, the pages in use (`page_count - free_pages`)
//!    less the record pages the free bytes inside record pages add up to, but never below
//!    the last handle page or map page.
//! 2. Record pages at or past the bound, highest first: each record moves to the lowest
//!    record page below it with room (or a new record page in the lowest free page).
//! 3. Overflow chains with a page at or past the bound are copied into the lowest free
//!    pages.
//! 4. A checkpoint: the trailing free pages leave the page count and the file.

use super::Inner;
use crate::error::Result;
use crate::page::{PageId, PageType};
use crate::pager::FIRST_DATA_PAGE;
use crate::record_id::RecordId;
use crate::slotted::{self, SlotContent};
use crate::space_map;

/// Records (or chains) one compaction transaction moves at most.
pub const COMPACT_BATCH_RECORDS: usize = 64;
/// Rounds of the plan-and-move loop at most (each recomputes the bound).
const COMPACT_ROUNDS_MAX: usize = 4;

/// Where a compaction is (for a progress bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactProgress {
    /// Records and chains looked at so far.
    pub done: u64,
    /// Records and chains to look at (the estimate of this round).
    pub total: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// Pages in the file before and after.
    pub pages_before: u64,
    pub pages_after: u64,
    /// Records moved to lower pages.
    pub records_moved: u64,
    /// Overflow chains copied to lower pages.
    pub chains_moved: u64,
}

impl CompactReport {
    /// Bytes given back to the file system.
    pub fn bytes_returned(&self) -> u64 {
        self.pages_before.saturating_sub(self.pages_after) * crate::page::PAGE_SIZE as u64
    }
}

/// The work of one round: records in record pages past the bound, and records whose
/// overflow chain reaches past it.
struct Plan {
    bound: u64,
    records: Vec<(RecordId, PageId)>,
    chains: Vec<RecordId>,
}

impl Inner {
    /// See [`crate::StorageEngine::compact`].
    pub(crate) fn compact(
        &self,
        progress: &mut dyn FnMut(CompactProgress),
    ) -> Result<CompactReport> {
        self.check_writable()?;
        self.refresh()?;
        let mut report = CompactReport {
            pages_before: self.read_view().alloc.page_count,
            ..CompactReport::default()
        };
        let mut done = 0;
        for _ in 0..COMPACT_ROUNDS_MAX {
            let plan = self.plan_compaction()?;
            let total = done + (plan.records.len() + plan.chains.len()) as u64;
            progress(CompactProgress { done, total });
            let mut moved_any = false;
            for batch in plan.records.chunks(COMPACT_BATCH_RECORDS) {
                let moved = self.write(|txn| {
                    let mut moved = 0u64;
                    for (id, from) in batch {
                        if txn.move_record_down(*id, *from)? {
                            moved += 1;
                        }
                    }
                    Ok(moved)
                })?;
                report.records_moved += moved;
                if moved > 0 {
                    crate::rare_paths::hit(crate::rare_paths::RarePath::CompactionMoved);
                }
                moved_any |= moved > 0;
                done += batch.len() as u64;
                progress(CompactProgress { done, total });
            }
            for batch in plan.chains.chunks(COMPACT_BATCH_RECORDS) {
                let moved = self.write(|txn| {
                    let mut moved = 0u64;
                    for id in batch {
                        if txn.move_chain_down(*id, plan.bound)? {
                            moved += 1;
                        }
                    }
                    Ok(moved)
                })?;
                report.chains_moved += moved;
                if moved > 0 {
                    crate::rare_paths::hit(crate::rare_paths::RarePath::CompactionMoved);
                }
                moved_any |= moved > 0;
                done += batch.len() as u64;
                progress(CompactProgress { done, total });
            }
            self.checkpoint(true)?;
            if !moved_any {
                break;
            }
        }
        report.pages_after = self.read_view().alloc.page_count;
        Ok(report)
    }

    /// Finds the bound and what lies past it (under the writer locks, so the picture is
    /// one commit's; each move checks its record again).
    fn plan_compaction(&self) -> Result<Plan> {
        let _writer = self.lock_writer();
        let _lock = super::WalLock::take(self, super::locks::Purpose::Compact)?;
        self.check_writer_marks()?;
        self.refresh()?;
        let (alloc, lineage) = {
            let view = self.read_view();
            (view.alloc, view.meta.lineage.clone())
        };
        let mut last_pinned = FIRST_DATA_PAGE.0;
        let mut record_pages = Vec::new();
        for raw in FIRST_DATA_PAGE.0..alloc.page_count {
            let id = PageId(raw);
            if space_map::is_map_page(id) {
                last_pinned = raw;
                continue;
            }
            match self.read_page(id, false)?.page_type() {
                Some(PageType::Handles) => last_pinned = raw,
                Some(PageType::Data) => record_pages.push(id),
                _ => {}
            }
        }
        // The record pages the free bytes inside record pages add up to can be emptied by
        // packing: the file could end that much earlier.
        let mut free_record_bytes = 0u64;
        for id in &record_pages {
            free_record_bytes += slotted::free_space(&*self.read_page(*id, false)?) as u64;
        }
        let packable = free_record_bytes / crate::page::PAGE_DATA_SIZE as u64;
        let in_use = alloc.page_count - alloc.free_pages;
        let bound = in_use.saturating_sub(packable).max(last_pinned + 1);
        let mut records = Vec::new();
        let mut chains = Vec::new();
        for id in record_pages.into_iter().rev() {
            let page = self.read_page(id, false)?;
            for index in 0..slotted::slot_count(&page) {
                let Ok(slot) = slotted::read_slot(&page, index) else {
                    continue;
                };
                if slot.content == SlotContent::Free {
                    continue;
                }
                let Some(record) = RecordId::new(
                    lineage.issuer(alloc.database_id, slot.owner.serial),
                    slot.owner.home_page,
                    slot.owner.home_slot,
                    slot.owner.serial,
                ) else {
                    continue;
                };
                if id.0 >= bound {
                    records.push((record, id));
                }
                if let SlotContent::Overflow { .. } = slot.content {
                    chains.push(record);
                }
            }
        }
        Ok(Plan {
            bound,
            records,
            chains,
        })
    }
}
