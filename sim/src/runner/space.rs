//! The space rules, checked at the end of every run (DESIGN.md §8 "Space"):
//! - **found again**: after the final power loss and recovery, stores take free pages the
//!   run left before the file grows (free space is durable and every process finds it);
//! - **bounded by the live data**: after `compact`, the pages in use are at most
//!   [`space_bound_pages`] of what the live records need;
//! - **given back**: after deleting every record and a checkpoint, `pages.db` is the two
//!   meta pages and nothing else.
//!
//! Leaked and doubly owned pages, and a space map that disagrees with its pages, are the
//! integrity check's, which every check after a crash runs.

use super::*;
use mentedb_storage::engine::IntegrityReport;

/// Pages the live data of `report` may take after a compaction: the meta and map pages,
/// the handle pages and overflow pages it has, and twice the record pages its inline bytes
/// fill (records do not pack perfectly), plus two.
pub fn space_bound_pages(report: &IntegrityReport) -> u64 {
    let page = mentedb_storage::PAGE_DATA_SIZE as u64;
    let inline = report.inline_record_bytes
        + report.live_records * mentedb_storage::slotted::SLOT_SIZE as u64;
    2 + report.map_pages
        + report.handle_pages
        + report.overflow_pages
        + 2 * inline.div_ceil(page)
        + 2
}

impl Sim {
    /// Free pages of the database as process `pid` sees it (runs the integrity check).
    pub(super) fn free_pages(&mut self, pid: Pid) -> Result<(u64, u64), Stop> {
        let engine = self.engine(pid)?;
        match engine.check_integrity() {
            Ok(report) => Ok((report.free_pages, report.pages)),
            Err(error) => {
                let text = error.to_string();
                self.classify_error(&error)?;
                Err(broken(
                    Rule::Liveness,
                    format!("integrity check failed: {text}"),
                ))
            }
        }
    }

    /// After stores that needed fewer pages than were free, the file must not have grown.
    pub(super) fn free_space_was_found(&mut self, (free, pages): (u64, u64)) -> Step {
        let (_, now) = self.free_pages(0)?;
        // Three typical nodes, one record page at most and a handle page.
        if free >= 3 && now > pages {
            return Err(broken(
                Rule::Space,
                format!(
                    "{free} pages were free, yet three stores grew the file from {pages} to {now} pages"
                ),
            ));
        }
        Ok(())
    }

    /// Compaction bounds the file by its live data; deleting everything gives it back.
    pub(super) fn space(&mut self) -> Step {
        let engine = self.engine(0)?;
        if let Err(error) = engine.compact() {
            let text = error.to_string();
            self.classify_error(&error)?;
            return Err(broken(
                Rule::Liveness,
                format!("compact after faults stopped: {text}"),
            ));
        }
        let report = match engine.check_integrity() {
            Ok(report) => report,
            Err(error) => {
                let text = error.to_string();
                self.classify_error(&error)?;
                return Err(broken(
                    Rule::Liveness,
                    format!("integrity check failed: {text}"),
                ));
            }
        };
        if !report.is_clean() {
            return Err(broken(
                Rule::Structure,
                format!("after compact: {:?}", report.problems),
            ));
        }
        let bound = space_bound_pages(&report).max(report.last_handle_page + 1);
        let in_use = report.pages - report.free_pages;
        if in_use > bound {
            return Err(broken(
                Rule::Space,
                format!(
                    "after compact {in_use} pages are in use, the live data ({} records, {} bytes) \
                     allows {bound}",
                    report.live_records, report.record_bytes
                ),
            ));
        }
        self.trace.push(format!(
            "space ok: {} pages ({in_use} in use, bound {bound}) for {} records",
            report.pages, report.live_records
        ));
        self.delete_everything()
    }

    fn delete_everything(&mut self) -> Step {
        let ids: Vec<RecordId> = self.model.live().keys().copied().collect();
        let engine = self.engine(0)?;
        for chunk in ids.chunks(crate::workload::DELETE_BATCH_MAX) {
            if let Err(error) = engine.delete_memory_batch(chunk) {
                let text = error.to_string();
                self.classify_error(&error)?;
                return Err(broken(
                    Rule::Liveness,
                    format!("delete after faults stopped: {text}"),
                ));
            }
        }
        for id in ids {
            self.model.deleted_ack(id);
        }
        let engine = self.engine(0)?;
        if let Err(error) = engine.checkpoint() {
            let text = error.to_string();
            self.classify_error(&error)?;
            return Err(broken(
                Rule::Liveness,
                format!("checkpoint after faults stopped: {text}"),
            ));
        }
        let pages = engine.page_count();
        let file = self
            .fs
            .file_bytes(&Path::new(DIR).join("pages.db"))
            .map_or(0, |bytes| bytes.len() as u64);
        if pages != 2 || file > 2 * mentedb_storage::PAGE_SIZE as u64 {
            return Err(broken(
                Rule::Space,
                format!(
                    "everything deleted and checkpointed, yet {pages} pages and a file of {file} bytes"
                ),
            ));
        }
        self.trace.push("space given back: 2 pages".to_string());
        self.check(0, Depth::Full)
    }
}
