//! What a salvage did: [`SalvageReport`], and each thing it could not save or went past
//! ([`SalvageProblem`]).
//!
//! Two lists, because they mean different things to the operator:
//! - `lost`: something that held data could not be saved — a page whose newest version does
//!   not verify, damaged WAL frames that a later durable frame proves were part of the log,
//!   a record whose overflow chain is broken or whose bytes do not decode, a record a handle
//!   page says is live but whose record no readable page holds, a record saved only in an
//!   older version. Empty means everything readable was saved and nothing was lost.
//! - `notes`: damage or oddities that cost nothing (a damaged page the WAL holds a newer
//!   version of, a torn WAL tail a crash left, what the read-only open went past).

use crate::page::Lsn;
use crate::record_id::{DatabaseId, RecordId};
use std::fmt;
use std::path::PathBuf;

/// What kind of thing a [`SalvageProblem`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// A page (or one version of it) that does not verify or cannot be rebuilt.
    DamagedPage,
    /// Bytes of `wal.log` that do not verify, or frames that cannot be used.
    DamagedWal,
    /// A record whose overflow chain is broken (a link missing, damaged or unverifiable).
    BrokenChain,
    /// A record whose bytes were read from verified pages but do not decode.
    Undecodable,
    /// A record a handle page names as live, but no readable page holds it.
    RecordMissing,
    /// A record saved in an older version than the newest one the database held.
    OlderVersion,
    /// A record that may have been deleted or moved: not saved (see the detail).
    Uncertain,
    /// Anything else worth knowing that lost nothing.
    Note,
}

impl ProblemKind {
    /// A short name (`damaged-page`, `broken-chain`, ...), for tools.
    pub fn name(self) -> &'static str {
        match self {
            ProblemKind::DamagedPage => "damaged-page",
            ProblemKind::DamagedWal => "damaged-wal",
            ProblemKind::BrokenChain => "broken-chain",
            ProblemKind::Undecodable => "undecodable",
            ProblemKind::RecordMissing => "record-missing",
            ProblemKind::OlderVersion => "older-version",
            ProblemKind::Uncertain => "uncertain",
            ProblemKind::Note => "note",
        }
    }
}

/// One thing a salvage could not save, or went past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalvageProblem {
    /// What it is about.
    pub kind: ProblemKind,
    /// The file of the source database it is in (`pages.db`, `wal.log`, ...).
    pub file: String,
    /// Byte offset in that file.
    pub offset: u64,
    /// The record it concerns, by its handle in the source database, if known.
    pub record: Option<RecordId>,
    /// What was wrong, and what it cost.
    pub detail: String,
}

impl fmt::Display for SalvageProblem {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} at offset {}: {}",
            self.file, self.offset, self.detail
        )?;
        if let Some(record) = self.record {
            write!(formatter, " (record {record})")?;
        }
        Ok(())
    }
}

/// What [`super::salvage`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// Records written into the new database.
    pub records_saved: u64,
    /// Of those, records taken through the read-only open of the source (the others were
    /// reassembled from pages and frames; a record both found is counted once).
    pub records_from_open: u64,
    /// Versions of records that a newer handle page shows deleted: not saved (not a loss).
    pub deleted_versions_skipped: u64,
    /// Pages of `pages.db` examined (meta pages included).
    pub page_file_pages: u64,
    /// Of those, pages that do not verify.
    pub page_file_pages_damaged: u64,
    /// Frames of `wal.log` that verify (commits included).
    pub wal_frames: u64,
    /// Bytes of `wal.log` examined.
    pub wal_bytes: u64,
    /// The source database's identity (the first part of its handles), if any copy of it
    /// could be read.
    pub database_id: Option<DatabaseId>,
    /// The newest commit any verified frame or page shows.
    pub newest_lsn: Lsn,
    /// The file mapping each saved record's old handle to its new one.
    pub map_file: PathBuf,
    /// What could not be saved (empty: nothing readable was left behind, nothing lost).
    pub lost: Vec<SalvageProblem>,
    /// What was damaged or odd but cost nothing.
    pub notes: Vec<SalvageProblem>,
}

impl SalvageReport {
    /// True when nothing was lost: every record the source held was saved in its newest
    /// version.
    pub fn is_complete(&self) -> bool {
        self.lost.is_empty()
    }
}

/// Collects problems while a salvage runs.
#[derive(Debug, Default)]
pub(super) struct Findings {
    pub lost: Vec<SalvageProblem>,
    pub notes: Vec<SalvageProblem>,
}

impl Findings {
    /// Adds something that was lost.
    pub fn lose(&mut self, kind: ProblemKind, file: &str, offset: u64, detail: String) {
        self.lost.push(problem(kind, file, offset, None, detail));
    }

    /// Adds a lost record.
    pub fn lose_record(
        &mut self,
        kind: ProblemKind,
        (file, offset): (&str, u64),
        record: RecordId,
        detail: String,
    ) {
        self.lost
            .push(problem(kind, file, offset, Some(record), detail));
    }

    /// Adds something that cost nothing.
    pub fn note(&mut self, kind: ProblemKind, file: &str, offset: u64, detail: String) {
        self.notes.push(problem(kind, file, offset, None, detail));
    }
}

fn problem(
    kind: ProblemKind,
    file: &str,
    offset: u64,
    record: Option<RecordId>,
    detail: String,
) -> SalvageProblem {
    SalvageProblem {
        kind,
        file: file.to_string(),
        offset,
        record,
        detail,
    }
}
