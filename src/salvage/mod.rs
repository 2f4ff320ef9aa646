//! Salvage: copy every record of a damaged database that can still be read and verified
//! into a new database, and report what could not be saved (what SQLite's `.recover` does
//! for SQLite files).
//!
//! [`salvage`] never changes the source: every file is opened read-only (run it on a
//! database no process is writing: a copy, or one whose users are stopped; it takes no lock
//! for its whole run). It refuses a destination that exists and is not empty or lies inside
//! the source, creates a new database there, stores the saved
//! records in it (with new handles), and writes [`MAP_FILE_NAME`] there: one line per saved
//! record, its old handle and its new one in their text form (`RecordId`'s `Display`),
//! separated by a space and sorted by old handle, so that embedders can fix their own
//! indexes. The map is written last: a destination without it is a salvage that did not
//! finish.
//!
//! # How records are found
//! Two readers, because each covers what the other cannot:
//! 1. **The read-only open** ([`crate::Options::read_only`]) and a scan of it: the engine's
//!    own reading of the newest commit, which already goes past WAL damage (to the last
//!    commit before it) and a log that does not fit the meta page. Each record it returns
//!    decoded and verified. It cannot read past the first WAL damage, nor anything a
//!    damaged meta page, handle page or record page hides from it, and it may not open at
//!    all.
//! 2. **The page walk**, independent of whether the open worked: every page of `pages.db`
//!    whose checksum verifies, and every WAL frame whose CRC verifies, also frames after
//!    damage when a later durable frame proves the log went on there (`wal_read`). Each is
//!    a *version* of a page (`catalogue`): a full page image, or a delta applied to a base
//!    the salvage knows and trusts. Every record slot in every version of every record page
//!    is a *candidate* of its owner — the home slot and serial that the record's handle
//!    names (`collect`) — so a record is identified by its handle even where its handle
//!    page is lost, and a record seen in several versions (in `pages.db` and newer in the
//!    WAL) is saved once, in its newest version that reads whole (`decide`). An overflow
//!    chain is read page by page as of the record's commit, each link checked; a broken
//!    chain is that record not saved (`extract`).
//!
//! For each record the page walk's newest version wins when it is newer than the open's
//! view (found past WAL damage); otherwise the open's copy is kept, and where both read
//! the same version their bytes are compared (a self-check; a disagreement is noted).
//!
//! We chose to save an older version of a record when its newest cannot be read (a
//! damaged overflow page of its newest version, say), and to report it among the losses:
//! an operator salvages to get back as much as possible, and the report says exactly
//! which records are older. A record a newer handle page shows deleted is never saved.
//!
//! # Why frames after WAL damage help less than one would hope
//! A delta frame carries changed byte ranges, not the page they apply to. After damaged
//! frames the base of a delta is unknown (a change to the same page may be in the damage),
//! so the version it makes is unreadable; what helps are full page images after the damage
//! (a page's first change after a checkpoint, a large change, or a page whose chain of
//! deltas grew long). Likewise an overflow page names no owner, so a chain page is trusted
//! only where the salvage can prove which version of it the record's commit saw
//! (`catalogue`); where WAL damage lies in between, the record's older version is saved.
//!
//! # What counts as lost
//! The report ([`SalvageReport`]) lists as lost: a page whose newest version does not
//! verify (unless it is a handle or space map page, which hold no record bytes, or the
//! space map shows it free), damaged WAL frames that later durable frames (or `wal.shm`)
//! prove were part of the log, and each record that could not be saved or was saved only
//! in an older version, with its file, offset and why. Damage that costs nothing (an old
//! copy the WAL supersedes, a torn WAL tail a crash left) is a note. Exit status of the
//! `mentedb-storage salvage` command: 0 when nothing was lost, 1 otherwise.
//!
//! # Memory
//! Pages are read one at a time (a few dozen rebuilt versions are cached); what grows with
//! the database is the catalogue (a few dozen bytes per page version and per record
//! version) and the map of handles.

mod catalogue;
mod collect;
mod damage;
mod decide;
mod extract;
mod report;
mod save;
mod wal_read;
mod write;

pub use report::{ProblemKind, SalvageProblem, SalvageReport};
pub use write::MAP_FILE_NAME;

use crate::StorageEngine;
use crate::engine::Options;
use crate::error::{Error, Result};
use crate::memory::encoded_record;
use crate::page::{Lsn, PAGE_FORMAT_VERSION, PageId};
use crate::pager::{Meta, PAGE_FILE_NAME, decode_meta_page};
use crate::record_id::{DatabaseId, RecordId};
use crate::vfs::{Access, Vfs, VfsFile};
use crate::wal::WAL_FILE_NAME;
use catalogue::Reader;
use collect::SnapshotPoint;
use report::Findings;
use std::collections::HashMap;
use std::path::Path;

/// Scan errors of the read-only open noted one by one; the rest are counted.
const OPEN_ERRORS_NOTED_MAX: usize = 100;

/// Which part of a salvage is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Reading records through the read-only open (`total` is 0: not known in advance).
    Open,
    /// Replaying the pages the WAL holds (`done` and `total` count pages).
    Wal,
    /// Reading `pages.db` (pages).
    PageFile,
    /// Reading the chosen versions and writing them into the new database (records).
    Write,
}

/// Where a salvage is (for a progress bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SalvageProgress {
    /// The part running.
    pub phase: Phase,
    /// Units done in this part.
    pub done: u64,
    /// Units in this part (0 if not known).
    pub total: u64,
}

/// Salvages the database in `source` into a new database in `dest` (see the module docs).
/// `options` give the filesystem and the new database's settings; the source is opened
/// read-only whatever they say.
///
/// `Err` for what stops a salvage before it starts (no database in `source`, a `dest` that
/// is not empty, a source in which nothing at all verifies) and for I/O failures; damage
/// the salvage went past is in the report.
pub fn salvage(source: &Path, dest: &Path, options: Options) -> Result<SalvageReport> {
    salvage_with_progress(source, dest, options, &mut |_| {})
}

/// [`salvage`], calling `progress` as it goes.
pub fn salvage_with_progress(
    source: &Path,
    dest: &Path,
    options: Options,
    progress: &mut dyn FnMut(SalvageProgress),
) -> Result<SalvageReport> {
    let vfs = std::sync::Arc::clone(&options.vfs);
    check_source(&*vfs, source)?;
    check_dest(&*vfs, source, dest)?;
    let mut findings = Findings::default();
    let opened = open_source(source, &options, &mut findings, progress);
    let files = SourceFiles::read(&*vfs, source, &mut findings)?;
    let collected = collect::collect(
        &*files.page_file,
        &*files.wal,
        &files.history,
        files.snapshot,
        &mut findings,
        progress,
    )?;
    let found_anything = files.meta.is_some()
        || collected.catalogue.any_readable()
        || files.history.frame_count() > 0
        || opened
            .as_ref()
            .is_some_and(|opened| !opened.crcs.is_empty());
    if !found_anything {
        return Err(nothing_to_salvage(source, &files));
    }
    let database_id = database_identity(&files, opened.as_ref(), &mut findings);
    let mut reader = Reader::new(&*files.page_file, &*files.wal, files.history.salt);
    let end = damage::PageEnd {
        snapshot: files.snapshot,
        newest_count: files.history.newest_alloc.map(|alloc| alloc.page_count),
    };
    damage::report_damage(&collected, &mut reader, end, &mut findings)?;
    let writer = write::Writer::create(dest, &options)?;
    let context = save::Context {
        collected: &collected,
        opened: opened.as_ref(),
        database_id: database_id.unwrap_or(DatabaseId(0)),
        lineage: files
            .meta
            .as_ref()
            .map(|meta| meta.lineage.clone())
            .unwrap_or_default(),
    };
    let (saved, writer) =
        save::save_records(&context, &mut reader, writer, &mut findings, progress)?;
    let map_file = writer.finish(&*vfs, dest)?;
    let newest_lsn = [
        files.meta.as_ref().map(|meta| meta.checkpoint_lsn),
        files.history.newest_commit(),
        opened.as_ref().map(|opened| opened.last_lsn),
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(Lsn(0));
    Ok(SalvageReport {
        records_saved: saved.records,
        records_from_open: saved.from_open,
        deleted_versions_skipped: saved.deleted,
        page_file_pages: collected.pages_examined + metas_examined(&*files.page_file)?,
        page_file_pages_damaged: collected.pages_damaged + files.metas_damaged,
        wal_frames: files.history.frame_count(),
        wal_bytes: files.history.bytes,
        database_id,
        newest_lsn,
        map_file,
        lost: findings.lost,
        notes: findings.notes,
    })
}

/// The source's files, opened read-only, with what their meta pages and WAL say.
struct SourceFiles {
    page_file: Box<dyn VfsFile>,
    wal: Box<dyn VfsFile>,
    /// The newest meta page that verifies.
    meta: Option<Meta>,
    /// Meta pages that do not verify.
    metas_damaged: u64,
    /// What the WAL holds.
    history: wal_read::WalHistory,
    /// The checkpoint `pages.db` is complete for.
    snapshot: SnapshotPoint,
}

impl SourceFiles {
    fn read(vfs: &dyn Vfs, source: &Path, findings: &mut Findings) -> Result<SourceFiles> {
        let page_file = open_read_only(vfs, source, PAGE_FILE_NAME, false)?;
        let wal = open_read_only(vfs, source, WAL_FILE_NAME, true)?;
        let (meta, metas_damaged) = read_meta(&*page_file, findings)?;
        let shm_durable = read_shm_durable(vfs, source)?;
        let history = wal_read::read_wal(&*wal, shm_durable, findings)?;
        let snapshot = snapshot_point(meta.clone(), &history, &*page_file)?;
        Ok(SourceFiles {
            page_file,
            wal,
            meta,
            metas_damaged,
            history,
            snapshot,
        })
    }
}

/// The source database's identity: from its meta page, else its newest commit, else a
/// handle the read-only open returned.
fn database_identity(
    files: &SourceFiles,
    opened: Option<&Opened>,
    findings: &mut Findings,
) -> Option<DatabaseId> {
    let database_id = files
        .meta
        .as_ref()
        .map(|meta| meta.alloc.database_id)
        .or(files.history.newest_alloc.map(|alloc| alloc.database_id))
        .or(opened.and_then(|opened| opened.crcs.keys().next().map(|id| id.database())));
    if database_id.is_none() {
        findings.note(
            report::ProblemKind::Note,
            PAGE_FILE_NAME,
            0,
            "the database's identity could not be read: old handles in the map start with \
             00000000"
                .to_string(),
        );
    }
    database_id
}

/// Refuses a directory without `pages.db`.
fn check_source(vfs: &dyn Vfs, source: &Path) -> Result<()> {
    let name = source.display().to_string();
    let exists = vfs
        .exists(&source.join(PAGE_FILE_NAME))
        .map_err(|error| Error::io("stat", &name, error))?;
    if !exists {
        return Err(Error::InvalidArgument(format!(
            "{name} holds no database (no {PAGE_FILE_NAME}): check the path"
        )));
    }
    Ok(())
}

/// Refuses a destination that is the source or is not a new or empty directory.
fn check_dest(vfs: &dyn Vfs, source: &Path, dest: &Path) -> Result<()> {
    let name = dest.display().to_string();
    if dest.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(
            "the destination path is empty: give a new directory to salvage into".to_string(),
        ));
    }
    if dest.starts_with(source) {
        return Err(Error::InvalidArgument(format!(
            "{name} is the database being salvaged or inside it (the source is only read): \
             salvage into a new directory elsewhere"
        )));
    }
    let exists = vfs
        .exists(dest)
        .map_err(|error| Error::io("stat", &name, error))?;
    if !exists {
        return Ok(());
    }
    let entries = vfs.list_dir(dest).map_err(|_| {
        Error::InvalidArgument(format!(
            "{name} exists and is not a directory: salvage into a new or empty directory"
        ))
    })?;
    if !entries.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{name} is not empty: salvage into a new or empty directory (nothing was written)"
        )));
    }
    Ok(())
}

fn open_read_only(
    vfs: &dyn Vfs,
    dir: &Path,
    name: &str,
    missing_is_empty: bool,
) -> Result<Box<dyn VfsFile>> {
    let path = dir.join(name);
    crate::vfs::open_for(vfs, &path, Access::ReadOnly, missing_is_empty)
        .map_err(|source| Error::io("open", path.display().to_string(), source))
}

/// What the read-only open of the source gave.
#[derive(Debug)]
struct Opened {
    /// The open engine (for loading the records it has).
    engine: StorageEngine,
    /// The CRC32 of each record it returned.
    crcs: HashMap<RecordId, u32>,
    /// The last commit of its view.
    last_lsn: Lsn,
}

/// Opens the source read-only and scans it; `None` (noted) if it does not open.
fn open_source(
    source: &Path,
    options: &Options,
    findings: &mut Findings,
    progress: &mut dyn FnMut(SalvageProgress),
) -> Option<Opened> {
    let engine = match StorageEngine::open_with(source, options.clone().read_only()) {
        Ok(engine) => engine,
        Err(error) => {
            findings.note(
                report::ProblemKind::Note,
                PAGE_FILE_NAME,
                0,
                format!(
                    "the read-only open failed ({error}): records are reassembled from the \
                     pages and frames alone"
                ),
            );
            return None;
        }
    };
    for note in engine.open_notes() {
        findings.note(
            report::ProblemKind::Note,
            &note.file,
            note.offset,
            format!("the read-only open went past: {}", note.detail),
        );
    }
    let crcs = scan_open(&engine, findings, progress);
    let last_lsn = engine.last_lsn();
    Some(Opened {
        engine,
        crcs,
        last_lsn,
    })
}

/// The CRC32 of each record the read-only open's scan returns; what it could not read is
/// noted.
fn scan_open(
    engine: &StorageEngine,
    findings: &mut Findings,
    progress: &mut dyn FnMut(SalvageProgress),
) -> HashMap<RecordId, u32> {
    let mut crcs = HashMap::new();
    let mut errors = 0usize;
    for item in engine.scan_memories() {
        let error = match item {
            Ok((id, node)) => {
                if let Ok(bytes) = encoded_record(&node) {
                    crcs.insert(id, crc32fast::hash(&bytes));
                }
                progress(SalvageProgress {
                    phase: Phase::Open,
                    done: crcs.len() as u64,
                    total: 0,
                });
                continue;
            }
            Err(error) => error,
        };
        errors += 1;
        if errors > OPEN_ERRORS_NOTED_MAX {
            continue;
        }
        let (file, offset, detail) = match error {
            Error::Corruption {
                file,
                offset,
                detail,
            } => (file, offset, detail),
            other => (PAGE_FILE_NAME.to_string(), 0, other.to_string()),
        };
        findings.note(
            report::ProblemKind::Note,
            &file,
            offset,
            format!("the read-only open's scan could not read a record: {detail}"),
        );
    }
    if errors > OPEN_ERRORS_NOTED_MAX {
        findings.note(
            report::ProblemKind::Note,
            PAGE_FILE_NAME,
            0,
            format!(
                "{} more records the read-only open's scan could not read",
                errors - OPEN_ERRORS_NOTED_MAX
            ),
        );
    }
    crcs
}

/// The newest meta page that verifies, and how many meta pages do not. Refuses a page file
/// of another format version.
fn read_meta(page_file: &dyn VfsFile, findings: &mut Findings) -> Result<(Option<Meta>, u64)> {
    let mut newest: Option<Meta> = None;
    let mut damaged = 0;
    for id in [PageId(0), PageId(1)] {
        let page = crate::pager::read_meta_slot(page_file, id)
            .map_err(|source| Error::io("read", PAGE_FILE_NAME, source))?;
        let version = page.bytes()[5];
        let intact = page.get_u32(0) == page.compute_crc();
        if intact && version != 0 && version != PAGE_FORMAT_VERSION {
            return Err(Error::UnsupportedFormat {
                file: PAGE_FILE_NAME.to_string(),
                found: version,
                supported: PAGE_FORMAT_VERSION,
            });
        }
        match decode_meta_page(&page, id) {
            Ok(Some(meta))
                if newest
                    .as_ref()
                    .is_none_or(|best| meta.generation > best.generation) =>
            {
                newest = Some(meta);
            }
            Ok(_) => {}
            Err(error) => {
                damaged += 1;
                findings.note(
                    report::ProblemKind::DamagedPage,
                    PAGE_FILE_NAME,
                    id.offset(),
                    format!("meta page {} does not verify: {error}", id.0),
                );
            }
        }
    }
    Ok((newest, damaged))
}

/// Meta pages the page file has (0, 1 or 2).
fn metas_examined(page_file: &dyn VfsFile) -> Result<u64> {
    let len = page_file
        .len()
        .map_err(|source| Error::io("stat", PAGE_FILE_NAME, source))?;
    Ok(len.div_ceil(crate::page::PAGE_SIZE as u64).min(2))
}

/// The durable-LSN record of `wal.shm`, if it is intact.
fn read_shm_durable(vfs: &dyn Vfs, source: &Path) -> Result<Option<(u32, Lsn)>> {
    let path = source.join(crate::engine::SHM_FILE_NAME);
    let counter = crate::engine::SharedCounter::open(vfs, &path, Access::ReadOnly)?;
    counter.durable_record()
}

/// The checkpoint `pages.db` is complete for: the newest meta page's, or the WAL's base if
/// that is newer (a damaged newest meta page), or else the newest LSN of a verified page.
fn snapshot_point(
    meta: Option<Meta>,
    history: &wal_read::WalHistory,
    page_file: &dyn VfsFile,
) -> Result<SnapshotPoint> {
    match (meta, history.base_lsn) {
        (Some(meta), base) if base.is_none_or(|base| base <= meta.checkpoint_lsn) => {
            Ok(SnapshotPoint {
                lsn: meta.checkpoint_lsn,
                page_count: Some(meta.alloc.page_count),
            })
        }
        (_, Some(base)) => Ok(SnapshotPoint {
            lsn: base,
            page_count: None,
        }),
        (_, None) => Ok(SnapshotPoint {
            lsn: collect::newest_verified_lsn(page_file)?,
            page_count: None,
        }),
    }
}

fn nothing_to_salvage(source: &Path, files: &SourceFiles) -> Error {
    let page_bytes = files.page_file.len().unwrap_or(0);
    let wal_bytes = files.wal.len().unwrap_or(0);
    Error::corruption(
        source.join(PAGE_FILE_NAME).display().to_string(),
        0,
        format!(
            "nothing here verifies: no meta page, no page of pages.db ({page_bytes} bytes) and \
             no frame of wal.log ({wal_bytes} bytes); not a mentedb-storage database, or one \
             damaged beyond salvage; nothing was written"
        ),
    )
}
