//! The versions of every page a salvage found, and what each one can be trusted for.
//!
//! A *version* is one state of one page as of one commit: the copy in `pages.db`, or the
//! state after one WAL frame (a full image, or a delta applied to the image and deltas
//! before it). A version is *readable* if its bytes verify (the page checksum for a copy in
//! `pages.db`, the frame CRCs for a version rebuilt from the WAL); an *unreadable* version
//! is one the salvage knows existed but cannot read (a copy that fails its checksum, a delta
//! whose base is lost in damaged frames).
//!
//! # When a version is the state of its page at a commit
//! A record's overflow pages carry no owner, so reading a record's chain needs, for each
//! chain page, its state as of the commit the record slot is from; anything else could be
//! another record's bytes that happen to fit. [`Catalogue::state_at`] answers "which
//! version of page P held at commit t" only when it can prove it:
//! - the version is the newest known one at or below t, and
//! - no change to the page between it and t can have been missed: every LSN in between
//!   lies in a stretch of WAL frames that were all read ([`Catalogue::covered`]), except
//!   that a copy in `pages.db` at or below the snapshot point S (the checkpoint the page
//!   file is complete for) is the page's state at S, whatever happened before.
//!
//! Versions rebuilt from the WAL are not kept in memory: [`Reader`] rebuilds them on demand
//! (a small cache keeps the last few), so memory stays at the catalogue itself.

use super::wal_read::{WalHistory, read_payload};
use crate::error::{DecodeError, Error, Result};
use crate::page::{Lsn, PAGE_SIZE, Page, PageId, PageIdHashing, PageType, apply_delta};
use crate::pager::PAGE_FILE_NAME;
use crate::vfs::VfsFile;
use crate::wal::format::{FrameInfo, WalEntryType};
use crate::wal::read_up_to;
use std::collections::HashMap;
use std::sync::Arc;

/// Versions [`Reader`] keeps rebuilt.
const READER_CACHE_PAGES: usize = 32;

/// Where a version's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// The copy in `pages.db`.
    PageFile,
    /// Rebuilt from the page's WAL frames: the image at index `image` of the page's frame
    /// list, then the deltas after it up to index `upto`.
    Wal { image: u32, upto: u32 },
}

/// One version of one page.
#[derive(Debug, Clone, Copy)]
pub(super) struct Version {
    /// The page.
    pub page: PageId,
    /// The LSN of the change that made it (0 for a copy in `pages.db` that does not verify).
    pub lsn: Lsn,
    /// The commit it is the state of (for a copy in `pages.db`, the snapshot point).
    pub as_of: Lsn,
    /// Where its bytes are.
    pub source: Source,
    /// Its page type; `None` if it is unreadable.
    pub kind: Option<PageType>,
    /// A copy in `pages.db` that is the page's state at the snapshot point.
    pub snapshot: bool,
}

/// A frame of a page, with the commit it belongs to.
#[derive(Debug, Clone, Copy)]
pub(super) struct PageFrame {
    /// The frame.
    pub info: FrameInfo,
    /// The segment it is in.
    pub segment: usize,
    /// The LSN of its transaction's commit (its own LSN if that commit was lost).
    pub as_of: Lsn,
}

/// Every version found, by page.
#[derive(Debug, Default)]
pub(super) struct Catalogue {
    versions: Vec<Version>,
    by_page: HashMap<PageId, Vec<u32>, PageIdHashing>,
    /// Each page's WAL frames, in LSN order.
    pub frames: HashMap<PageId, Vec<PageFrame>, PageIdHashing>,
    /// Inclusive LSN ranges in which every frame was read.
    coverage: Vec<(Lsn, Lsn)>,
    /// The checkpoint `pages.db` is complete for.
    pub snapshot: Lsn,
}

impl Catalogue {
    /// An empty catalogue for a page file complete up to `snapshot`, with the WAL `history`.
    pub fn new(snapshot: Lsn, history: &WalHistory) -> Catalogue {
        let mut coverage = history.coverage();
        coverage.sort_unstable();
        Catalogue {
            coverage,
            snapshot,
            ..Catalogue::default()
        }
    }

    /// Adds a version; returns its index.
    pub fn push(&mut self, version: Version) -> u32 {
        let index = self.versions.len() as u32;
        self.versions.push(version);
        let list = self.by_page.entry(version.page).or_default();
        // Frames come in LSN order, and the copy in `pages.db` is added last: keep the list
        // sorted by inserting from the end.
        let at = list
            .iter()
            .rposition(|other| self.versions[*other as usize].lsn <= version.lsn)
            .map_or(0, |position| position + 1);
        list.insert(at, index);
        index
    }

    /// True if some version is readable.
    pub fn any_readable(&self) -> bool {
        self.versions.iter().any(|version| version.kind.is_some())
    }

    /// The version at `index`.
    pub fn get(&self, index: u32) -> &Version {
        &self.versions[index as usize]
    }

    /// Replaces the version at `index` (a copy in `pages.db` standing in for an unreadable
    /// WAL version of the same LSN).
    pub fn replace(&mut self, index: u32, version: Version) {
        self.versions[index as usize] = version;
    }

    /// The version of `page` made by the change at `lsn`, if one is known.
    pub fn find(&self, page: PageId, lsn: Lsn) -> Option<u32> {
        self.by_page
            .get(&page)?
            .iter()
            .copied()
            .find(|index| self.get(*index).lsn == lsn)
    }

    /// Every page with a version, in order.
    pub fn pages(&self) -> Vec<PageId> {
        let mut pages: Vec<PageId> = self.by_page.keys().copied().collect();
        pages.sort_unstable();
        pages
    }

    /// The newest version of `page`.
    pub fn newest(&self, page: PageId) -> Option<u32> {
        self.by_page.get(&page)?.last().copied()
    }

    /// The newest readable version of `page`.
    pub fn newest_readable(&self, page: PageId) -> Option<u32> {
        self.by_page
            .get(&page)?
            .iter()
            .rev()
            .copied()
            .find(|index| self.get(*index).kind.is_some())
    }

    /// Where version `index` is, for reports: the page in `pages.db`, or its last frame.
    pub fn location(&self, index: u32) -> (&'static str, u64) {
        let version = self.get(index);
        match version.source {
            Source::PageFile => (PAGE_FILE_NAME, version.page.offset()),
            Source::Wal { upto, .. } => (
                crate::wal::WAL_FILE_NAME,
                self.frames
                    .get(&version.page)
                    .and_then(|frames| frames.get(upto as usize))
                    .map_or(0, |frame| frame.info.offset),
            ),
        }
    }

    /// True if every LSN in `(from, to]` lies in a stretch of WAL frames that were all read.
    pub fn covered(&self, from: Lsn, to: Lsn) -> bool {
        let mut next = from.next();
        for &(first, last) in &self.coverage {
            if next > to {
                break;
            }
            if first <= next && next <= last {
                next = last.next();
            }
        }
        next > to
    }

    /// The version of `page` that is provably its state at commit `at` (see the module
    /// docs): `Ok(index)`, or `Err` saying why none is.
    pub fn state_at(&self, page: PageId, at: Lsn) -> std::result::Result<u32, String> {
        let index = self
            .by_page
            .get(&page)
            .and_then(|list| {
                list.iter()
                    .rev()
                    .copied()
                    .find(|index| self.get(*index).lsn <= at)
            })
            .ok_or_else(|| format!("no version of {page} as of LSN {} was found", at.0))?;
        let version = self.get(index);
        if version.kind.is_none() {
            return Err(format!(
                "the version of {page} as of LSN {} does not verify",
                at.0
            ));
        }
        let from = if version.snapshot {
            version.lsn.max(self.snapshot)
        } else {
            version.lsn
        };
        if at <= from || self.covered(from, at) {
            Ok(index)
        } else {
            Err(format!(
                "{page} may have changed between LSN {} and {} in WAL frames that do not \
                 verify",
                from.0, at.0
            ))
        }
    }
}

/// Reads page `id` of the page file raw: bytes past the end read as zeros.
pub(super) fn read_file_page(file: &dyn VfsFile, id: PageId) -> Result<Page> {
    let mut page = Page::zeroed();
    read_up_to(file, page.bytes_mut(), id.offset())
        .map_err(|source| Error::io("read", PAGE_FILE_NAME, source))?;
    Ok(page)
}

/// Rebuilds versions of pages on demand (see the module docs).
#[derive(Debug)]
pub(super) struct Reader<'a> {
    page_file: &'a dyn VfsFile,
    wal: &'a dyn VfsFile,
    salt: u32,
    cache: Vec<(u32, Arc<Page>)>,
}

impl<'a> Reader<'a> {
    /// A reader of the files of the source database.
    pub fn new(page_file: &'a dyn VfsFile, wal: &'a dyn VfsFile, salt: u32) -> Reader<'a> {
        Reader {
            page_file,
            wal,
            salt,
            cache: Vec::new(),
        }
    }

    /// The bytes of version `index`. `Ok(Err)` if they no longer verify (the files changed
    /// since they were catalogued); `Err` for I/O failures.
    pub fn load(
        &mut self,
        catalogue: &Catalogue,
        index: u32,
    ) -> Result<std::result::Result<Arc<Page>, DecodeError>> {
        if let Some(position) = self.cache.iter().position(|(cached, _)| *cached == index) {
            let entry = self.cache.remove(position);
            let page = Arc::clone(&entry.1);
            self.cache.push(entry);
            return Ok(Ok(page));
        }
        let version = *catalogue.get(index);
        let built = match version.source {
            Source::PageFile => {
                let page = read_file_page(self.page_file, version.page)?;
                page.verify(version.page).map(|_| page)
            }
            Source::Wal { image, upto } => {
                let frames = catalogue
                    .frames
                    .get(&version.page)
                    .map_or(&[][..], Vec::as_slice);
                self.rebuild(version.page, frames, image, upto)?
            }
        };
        Ok(built.map(|page| {
            let page = Arc::new(page);
            if self.cache.len() >= READER_CACHE_PAGES {
                self.cache.remove(0);
            }
            self.cache.push((index, Arc::clone(&page)));
            page
        }))
    }

    /// Rebuilds a page from its image frame and the deltas after it.
    fn rebuild(
        &self,
        id: PageId,
        frames: &[PageFrame],
        image: u32,
        upto: u32,
    ) -> Result<std::result::Result<Page, DecodeError>> {
        let Some(image_frame) = frames.get(image as usize) else {
            return Ok(Err(DecodeError::new(format!("no image frame for {id}"))));
        };
        let mut page = match self.image(id, &image_frame.info)? {
            Ok(page) => page,
            Err(error) => return Ok(Err(error)),
        };
        let deltas = frames
            .get(image as usize + 1..=upto as usize)
            .unwrap_or_default();
        for delta in deltas {
            match self.apply(&mut page, &delta.info)? {
                Ok(()) => {}
                Err(error) => return Ok(Err(error)),
            }
        }
        Ok(Ok(page))
    }

    /// The page an image frame holds, checked to be the page and LSN the frame names.
    pub fn image(
        &self,
        id: PageId,
        frame: &FrameInfo,
    ) -> Result<std::result::Result<Page, DecodeError>> {
        let payload = match read_payload(self.wal, self.salt, frame)? {
            Ok(payload) => payload,
            Err(error) => return Ok(Err(error)),
        };
        Ok(image_page(id, frame, &payload))
    }

    /// Applies a delta frame to `page` (unchanged on error).
    pub fn apply(
        &self,
        page: &mut Page,
        frame: &FrameInfo,
    ) -> Result<std::result::Result<(), DecodeError>> {
        if frame.kind != WalEntryType::PageDelta {
            return Ok(Err(DecodeError::new("not a delta frame")));
        }
        let payload = match read_payload(self.wal, self.salt, frame)? {
            Ok(payload) => payload,
            Err(error) => return Ok(Err(error)),
        };
        Ok(apply_delta(page, &payload).map(|()| page.set_lsn(frame.lsn)))
    }
}

/// The page in an image frame's payload, if it is the page and LSN the frame names.
fn image_page(
    id: PageId,
    frame: &FrameInfo,
    payload: &[u8],
) -> std::result::Result<Page, DecodeError> {
    if frame.kind != WalEntryType::PageImage || payload.len() != PAGE_SIZE {
        return Err(DecodeError::new(format!(
            "frame for {id} is not a page image"
        )));
    }
    let page = Page::from_bytes(payload)?;
    if page.id() != id || page.lsn() != frame.lsn || page.page_type().is_none() {
        return Err(DecodeError::new(format!(
            "the image of {id} holds {} at LSN {}",
            page.id(),
            page.lsn().0
        )));
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salvage::wal_read::Segment;

    fn frame(lsn: u64) -> FrameInfo {
        FrameInfo {
            offset: lsn * 100,
            total_len: 100,
            crc: 0,
            lsn: Lsn(lsn),
            durable_lsn: Lsn(0),
            page: PageId(9),
            prev_crc: 0,
            kind: WalEntryType::PageDelta,
        }
    }

    /// A catalogue of a page file complete at LSN 10 and a WAL holding LSN 11..=20 and
    /// 25..=30 (21..=24 damaged).
    fn catalogue() -> Catalogue {
        let segment = |lsns: std::ops::RangeInclusive<u64>| Segment {
            frames: lsns.map(frame).collect(),
            committed: 0,
            tail_committed: false,
        };
        let history = WalHistory {
            segments: vec![segment(11..=20), segment(25..=30)],
            ..WalHistory::default()
        };
        Catalogue::new(Lsn(10), &history)
    }

    fn version(page: u64, lsn: u64, source: Source, snapshot: bool) -> Version {
        Version {
            page: PageId(page),
            lsn: Lsn(lsn),
            as_of: Lsn(lsn),
            source,
            kind: Some(PageType::Overflow),
            snapshot,
        }
    }

    #[test]
    fn coverage_is_every_lsn_read_in_between() {
        let catalogue = catalogue();
        assert!(catalogue.covered(Lsn(10), Lsn(20)));
        assert!(catalogue.covered(Lsn(12), Lsn(15)));
        assert!(catalogue.covered(Lsn(24), Lsn(30)));
        assert!(catalogue.covered(Lsn(5), Lsn(5)), "an empty span");
        assert!(
            !catalogue.covered(Lsn(9), Lsn(11)),
            "LSN 10 is not in the WAL"
        );
        assert!(!catalogue.covered(Lsn(15), Lsn(26)), "21..=24 are damaged");
        assert!(!catalogue.covered(Lsn(25), Lsn(31)), "past the log");
    }

    #[test]
    fn a_version_is_the_state_at_a_commit_only_if_nothing_in_between_can_be_missed() {
        let mut catalogue = catalogue();
        let snapshot = catalogue.push(version(3, 4, Source::PageFile, true));
        let wal = Source::Wal { image: 0, upto: 0 };
        let logged = catalogue.push(version(4, 12, wal, false));
        // The page file's copy holds up to the snapshot and through the WAL read after it.
        assert_eq!(catalogue.state_at(PageId(3), Lsn(9)), Ok(snapshot));
        assert_eq!(catalogue.state_at(PageId(3), Lsn(20)), Ok(snapshot));
        assert!(
            catalogue.state_at(PageId(3), Lsn(26)).is_err(),
            "damage between"
        );
        assert_eq!(catalogue.state_at(PageId(4), Lsn(18)), Ok(logged));
        assert!(
            catalogue.state_at(PageId(4), Lsn(11)).is_err(),
            "not yet written"
        );
        assert!(
            catalogue.state_at(PageId(5), Lsn(11)).is_err(),
            "no version"
        );
        let newer = catalogue.push(version(4, 27, wal, false));
        assert_eq!(catalogue.state_at(PageId(4), Lsn(29)), Ok(newer));
        assert!(
            catalogue.state_at(PageId(4), Lsn(24)).is_err(),
            "12 may be stale by 24"
        );
        let mut unreadable = version(6, 14, wal, false);
        unreadable.kind = None;
        catalogue.push(unreadable);
        assert!(catalogue.state_at(PageId(6), Lsn(15)).is_err());
        assert_eq!(catalogue.newest(PageId(4)), Some(newer));
    }
}
