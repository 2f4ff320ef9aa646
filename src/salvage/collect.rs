//! Pass one of a salvage: every version of every page, and every record slot in them.
//!
//! The WAL first, page by page: each page's committed frames are replayed in LSN order
//! (an image, then the deltas after it), each frame giving one version. A delta is applied
//! only to the version just before it in the same segment: after damaged frames a delta's
//! base is unknown (a change to the page may be in the damage), so the version it makes is
//! unreadable. Then `pages.db`, page by page: a copy whose LSN a WAL version already has is
//! that version (it stands in for it if the WAL one is unreadable); any other copy that
//! verifies is a version of its own.
//!
//! Each readable record page version adds its live slots as *candidates* of their owners
//! (home slot and serial): where a version of the record lies, not its bytes, which pass
//! two reads again. Handle pages are not collected: the decision reads the newest readable
//! version of a record's handle page when it needs it.

use super::catalogue::{Catalogue, PageFrame, Reader, Source, Version, read_file_page};
use super::report::{Findings, ProblemKind};
use super::wal_read::WalHistory;
use super::{Phase, SalvageProgress};
use crate::error::{Error, Result};
use crate::page::{Lsn, PAGE_ID_MAX, PAGE_SIZE, Page, PageId, PageType};
use crate::pager::{FIRST_DATA_PAGE, PAGE_FILE_NAME};
use crate::slotted::{self, Owner, SlotContent};
use crate::vfs::VfsFile;
use crate::wal::format::WalEntryType;
use std::collections::HashMap;

/// Where one version of a record lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Candidate {
    /// The version of the record page.
    pub version: u32,
    /// The record slot.
    pub slot: u32,
    /// What the slot holds.
    pub content: SlotContent,
}

/// What pass one found.
#[derive(Debug, Default)]
pub(super) struct Collected {
    /// Every version of every page.
    pub catalogue: Catalogue,
    /// The versions of each record, by owner.
    pub candidates: HashMap<Owner, Vec<Candidate>>,
    /// Unreadable versions, with why.
    pub damage: Vec<(u32, String)>,
    /// Pages of `pages.db` examined, meta pages excluded.
    pub pages_examined: u64,
    /// Of those, pages that do not verify.
    pub pages_damaged: u64,
}

/// The point `pages.db` is complete for, and how many pages it had then.
#[derive(Debug, Clone, Copy)]
pub(super) struct SnapshotPoint {
    /// The checkpoint LSN.
    pub lsn: Lsn,
    /// The page count at that checkpoint, if known.
    pub page_count: Option<u64>,
}

/// Runs pass one (see the module docs). `Err` only for I/O failures.
pub(super) fn collect(
    page_file: &dyn VfsFile,
    wal: &dyn VfsFile,
    history: &WalHistory,
    snapshot: SnapshotPoint,
    findings: &mut Findings,
    progress: &mut dyn FnMut(SalvageProgress),
) -> Result<Collected> {
    let mut collected = Collected {
        catalogue: Catalogue::new(snapshot.lsn, history),
        ..Collected::default()
    };
    collected.catalogue.frames = page_frames(history);
    let reader = Reader::new(page_file, wal, history.salt);
    let pages = {
        let mut pages: Vec<PageId> = collected.catalogue.frames.keys().copied().collect();
        pages.sort_unstable();
        pages
    };
    for (done, page) in pages.iter().enumerate() {
        replay_page(&mut collected, &reader, *page)?;
        progress(SalvageProgress {
            phase: Phase::Wal,
            done: done as u64 + 1,
            total: pages.len() as u64,
        });
    }
    read_page_file(
        &mut collected,
        page_file,
        history,
        snapshot,
        findings,
        progress,
    )?;
    Ok(collected)
}

/// The highest LSN of a page of `pages.db` that verifies (for a page file whose meta pages
/// and WAL header are all damaged: its snapshot point is at least that).
pub(super) fn newest_verified_lsn(page_file: &dyn VfsFile) -> Result<Lsn> {
    let len = page_file
        .len()
        .map_err(|source| Error::io("stat", PAGE_FILE_NAME, source))?;
    let file_pages = len.div_ceil(PAGE_SIZE as u64).min(PAGE_ID_MAX + 1);
    let mut newest = Lsn(0);
    for raw in FIRST_DATA_PAGE.0..file_pages {
        let page = read_file_page(page_file, PageId(raw))?;
        if let Ok(header) = page.verify(PageId(raw)) {
            newest = newest.max(header.lsn);
        }
    }
    Ok(newest)
}

/// Each page's usable WAL frames, with the commit each belongs to.
fn page_frames(
    history: &WalHistory,
) -> HashMap<PageId, Vec<PageFrame>, crate::page::PageIdHashing> {
    let mut frames: HashMap<PageId, Vec<PageFrame>, crate::page::PageIdHashing> =
        HashMap::default();
    for (segment_index, segment) in history.segments.iter().enumerate() {
        let usable = segment.usable();
        // Walk backwards to know, for each frame, the commit after it.
        let mut commit: Option<Lsn> = None;
        let mut tagged = Vec::with_capacity(usable.len());
        for frame in usable.iter().rev() {
            if frame.kind == WalEntryType::Commit {
                commit = Some(frame.lsn);
                continue;
            }
            tagged.push(PageFrame {
                info: *frame,
                segment: segment_index,
                as_of: commit.unwrap_or(frame.lsn),
            });
        }
        for frame in tagged.into_iter().rev() {
            frames.entry(frame.info.page).or_default().push(frame);
        }
    }
    frames
}

/// Replays one page's frames into versions.
fn replay_page(collected: &mut Collected, reader: &Reader<'_>, page: PageId) -> Result<()> {
    let frames = collected
        .catalogue
        .frames
        .get(&page)
        .cloned()
        .unwrap_or_default();
    // The version before the next frame, if it is readable: its page and image index.
    let mut state: Option<(Page, u32)> = None;
    let mut previous_segment = None;
    for (index, frame) in frames.iter().enumerate() {
        let index = index as u32;
        let continues = previous_segment == Some(frame.segment);
        previous_segment = Some(frame.segment);
        let built: std::result::Result<(Page, u32), String> = match frame.info.kind {
            WalEntryType::PageImage => reader
                .image(page, &frame.info)?
                .map(|image| (image, index))
                .map_err(|error| error.0),
            _ => match state.take() {
                Some((mut base, image)) if continues => reader
                    .apply(&mut base, &frame.info)?
                    .map(|()| (base, image))
                    .map_err(|error| error.0),
                _ => Err(format!(
                    "a delta of {page} whose base is unknown (an earlier frame of the page is \
                     damaged or in damaged frames)"
                )),
            },
        };
        let mut version = Version {
            page,
            lsn: frame.info.lsn,
            as_of: frame.as_of,
            source: Source::Wal {
                image: index,
                upto: index,
            },
            kind: None,
            snapshot: false,
        };
        match built {
            Ok((built_page, image)) => {
                version.source = Source::Wal { image, upto: index };
                version.kind = built_page.page_type();
                let at = collected.catalogue.push(version);
                visit(collected, at, &built_page);
                state = Some((built_page, image));
            }
            Err(detail) => {
                let at = collected.catalogue.push(version);
                collected.damage.push((at, detail));
                state = None;
            }
        }
    }
    Ok(())
}

/// Reads every page of `pages.db` after the meta pages.
fn read_page_file(
    collected: &mut Collected,
    page_file: &dyn VfsFile,
    history: &WalHistory,
    snapshot: SnapshotPoint,
    findings: &mut Findings,
    progress: &mut dyn FnMut(SalvageProgress),
) -> Result<()> {
    let len = page_file
        .len()
        .map_err(|source| Error::io("stat", PAGE_FILE_NAME, source))?;
    let file_pages = len.div_ceil(PAGE_SIZE as u64).min(PAGE_ID_MAX + 1);
    if !len.is_multiple_of(PAGE_SIZE as u64) {
        findings.note(
            ProblemKind::DamagedPage,
            PAGE_FILE_NAME,
            (len / PAGE_SIZE as u64) * PAGE_SIZE as u64,
            format!("pages.db is {len} bytes, not a whole number of pages: its last page is cut"),
        );
    }
    let in_snapshot = |id: PageId| snapshot.page_count.is_none_or(|count| id.0 < count);
    for raw in FIRST_DATA_PAGE.0..file_pages {
        let id = PageId(raw);
        let page = read_file_page(page_file, id)?;
        collected.pages_examined += 1;
        match page.verify(id) {
            Ok(header) if header.page_type == PageType::Unused => {}
            Ok(header) => {
                let version = Version {
                    page: id,
                    lsn: header.lsn,
                    as_of: header.lsn,
                    source: Source::PageFile,
                    kind: Some(header.page_type),
                    snapshot: header.lsn <= snapshot.lsn && in_snapshot(id),
                };
                add_file_copy(collected, history, snapshot, version, &page);
            }
            Err(error) => {
                collected.pages_damaged += 1;
                let at = collected.catalogue.push(Version {
                    page: id,
                    lsn: Lsn(0),
                    as_of: snapshot.lsn,
                    source: Source::PageFile,
                    kind: None,
                    snapshot: true,
                });
                collected.damage.push((at, error.0));
            }
        }
        progress(SalvageProgress {
            phase: Phase::PageFile,
            done: raw + 1 - FIRST_DATA_PAGE.0,
            total: file_pages.saturating_sub(FIRST_DATA_PAGE.0),
        });
    }
    Ok(())
}

/// Adds a verified copy from `pages.db`, unless a WAL version of the same LSN has it.
fn add_file_copy(
    collected: &mut Collected,
    history: &WalHistory,
    snapshot: SnapshotPoint,
    mut version: Version,
    page: &Page,
) {
    if let Some(existing) = collected.catalogue.find(version.page, version.lsn) {
        let known = *collected.catalogue.get(existing);
        if known.kind.is_some() {
            return;
        }
        version.as_of = known.as_of;
        collected.catalogue.replace(existing, version);
        visit(collected, existing, page);
        return;
    }
    version.as_of = if version.snapshot {
        snapshot.lsn
    } else {
        history.commit_of(version.lsn).unwrap_or(version.lsn)
    };
    let at = collected.catalogue.push(version);
    visit(collected, at, page);
}

/// Adds the live record slots of a readable record page version as candidates.
fn visit(collected: &mut Collected, version: u32, page: &Page) {
    if page.page_type() != Some(PageType::Data) {
        return;
    }
    if let Err(error) = slotted::check_data_page(page) {
        collected
            .damage
            .push((version, format!("record page does not parse: {error}")));
        return;
    }
    for slot in 0..slotted::slot_count(page) {
        match slotted::read_slot(page, slot) {
            Ok(read) if read.content != SlotContent::Free => collected
                .candidates
                .entry(read.owner)
                .or_default()
                .push(Candidate {
                    version,
                    slot,
                    content: read.content,
                }),
            Ok(_) => {}
            Err(error) => collected
                .damage
                .push((version, format!("slot {slot} does not parse: {error}"))),
        }
    }
}
