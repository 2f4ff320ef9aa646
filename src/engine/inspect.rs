//! Read-only views for tools (the `mentedb-storage` command): statistics, a page as it is
//! now, and the frames of the WAL. They take no lock beyond what reads take, except
//! [`StorageEngine::stats`], which runs the integrity check (under the writer lock).

use super::{IntegrityProblem, IntegrityReport, StorageEngine};
use crate::error::{Error, Result};
use crate::page::{Lsn, Page, PageId};
use crate::wal::{AfterZeros, FrameInfo, ScanStop, WalCursor, WalHeader};

/// What [`StorageEngine::stats`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct DatabaseStats {
    /// The integrity check's counts (pages by kind, live records, record bytes) and any
    /// problems it found.
    pub report: IntegrityReport,
    /// Bytes of `pages.db` on disk.
    pub page_file_bytes: u64,
    /// Bytes of WAL in use.
    pub wal_bytes: u64,
    /// LSN of the last checkpoint (everything up to it is in `pages.db`).
    pub checkpoint_lsn: Lsn,
    /// LSN of the last commit.
    pub last_lsn: Lsn,
    /// Pages the buffer pool holds at most.
    pub buffer_pool_pages: usize,
}

impl DatabaseStats {
    /// Live record bytes over the space of the data and overflow pages that hold them.
    pub fn fill_factor(&self) -> f64 {
        let pages = self.report.data_pages + self.report.overflow_pages;
        if pages == 0 {
            return 0.0;
        }
        self.report.record_bytes as f64 / (pages as f64 * crate::page::PAGE_DATA_SIZE as f64)
    }
}

/// The frames of the WAL, for [`StorageEngine::wal_frames`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalFrames {
    /// The header, or `None` if the WAL was never started.
    pub header: Option<WalHeader>,
    /// Every frame of the verified chain; the first `committed` belong to commits.
    pub frames: Vec<FrameInfo>,
    /// How many leading frames are committed.
    pub committed: usize,
    /// Why the scan stopped (a torn tail after a crash is normal).
    pub stop: ScanStop,
}

impl StorageEngine {
    /// LSN of the last checkpoint, as of the last commit seen.
    pub fn checkpoint_lsn(&self) -> Lsn {
        self.inner.read_view().meta.checkpoint_lsn
    }

    /// Counts and sizes of the database (runs the full integrity check).
    pub fn stats(&self) -> Result<DatabaseStats> {
        let report = self.check_integrity()?;
        let view = self.inner.read_view().clone();
        Ok(DatabaseStats {
            report,
            page_file_bytes: self.inner.pages.len()?,
            wal_bytes: view.wal_bytes(),
            checkpoint_lsn: view.meta.checkpoint_lsn,
            last_lsn: view.last_lsn(),
            buffer_pool_pages: self.inner.options.buffer_pool_pages,
        })
    }

    /// Checks the copies in `pages.db` of the pages the WAL holds newer versions of. The
    /// integrity check reads the newest version of each page, so damage to such a copy
    /// harms nothing (the next checkpoint rewrites it), but it shows the disk damaged data:
    /// an operator wants to know. Returns one problem per damaged copy.
    pub fn check_shadowed_pages(&self) -> Result<Vec<IntegrityProblem>> {
        self.inner.check_open()?;
        self.inner.refresh_if_changed()?;
        let mut shadowed: Vec<PageId> = self.inner.read_view().index.keys().copied().collect();
        shadowed.sort_unstable();
        let file_pages = self.inner.pages.len()? / crate::page::PAGE_SIZE as u64;
        let mut problems = Vec::new();
        for id in shadowed {
            if id < crate::pager::FIRST_DATA_PAGE || id.0 >= file_pages {
                continue;
            }
            match self.inner.pages.read_verified(id) {
                Ok(_) => {}
                Err(Error::Corruption {
                    file,
                    offset,
                    detail,
                }) => problems.push(IntegrityProblem {
                    file,
                    offset,
                    detail: format!(
                        "{detail} (an old copy: the WAL holds the current version, and the \
                         next checkpoint rewrites it)"
                    ),
                }),
                Err(error) => return Err(error),
            }
        }
        Ok(problems)
    }

    /// Page `id` as it is now (from the WAL or `pages.db`, checksum verified).
    pub fn read_page_image(&self, id: PageId) -> Result<Page> {
        self.inner.check_open()?;
        self.inner.refresh_if_changed()?;
        let page_count = self.page_count();
        if id.0 >= page_count {
            return Err(Error::InvalidArgument(format!(
                "{id} is past the last page ({page_count} pages)"
            )));
        }
        let page = self.inner.read_page(id, false)?;
        Ok(Page::clone(&page))
    }

    /// Every frame in the WAL file, verified, with where and why the scan stopped.
    pub fn wal_frames(&self) -> Result<WalFrames> {
        self.inner.check_open()?;
        let header = self.inner.wal.read_header()?;
        let Some(header) = header else {
            return Ok(WalFrames {
                header: None,
                frames: Vec::new(),
                committed: 0,
                stop: ScanStop::End,
            });
        };
        let scan = self
            .inner
            .wal
            .scan_after(&WalCursor::at_start(header), AfterZeros::Probe)?;
        Ok(WalFrames {
            header: Some(header),
            committed: scan.committed_frames,
            frames: scan.frames,
            stop: scan.stop,
        })
    }
}
