//! Snapshot backups: [`backup`] an open database while it keeps working, [`restore`] a
//! backup into a new directory, [`verify`] a backup file and [`verify_database`] a
//! database directory.
//!
//! # Promises
//! - A backup is the database at one commit point (a [`crate::engine::Snapshot`]): commits
//!   after it are not in it, commits before it all are, even while other threads and
//!   processes write during the copy. Checkpoints wait for it (automatic ones skip).
//! - It streams: memory stays at a few pages and a 1 MiB write buffer whatever the size of
//!   the database; pages are compressed with LZ4; a manifest at the end records the
//!   format version, the source LSN, the restored file's size and CRC32 (format:
//!   [`mod@format`]).
//! - A backup is written to `<dest>.partial`, synced, then renamed to `<dest>` and the
//!   directory synced: a file named `<dest>` is always complete.
//! - [`restore`] refuses a target that is not empty, writes `pages.db.restoring`, checks
//!   every chunk, page and the manifest, syncs, renames it to `pages.db` and syncs the
//!   directory. A directory left by an interrupted restore holds only `pages.db.restoring`,
//!   which [`crate::StorageEngine::open`] refuses to take for a database.
//! - Any backup file — truncated, bit-flipped or hand-made — gives a clear error with the
//!   file and offset, never a panic, and never allocates more than a page for it.

pub mod format;

use crate::StorageEngine;
use crate::engine::{IntegrityProblem, IntegrityReport, Options};
use crate::error::{DecodeError, Error, Result};
use crate::page::{Lsn, PAGE_SIZE, Page, PageId};
use crate::pager::{PAGE_FILE_NAME, decode_meta_page};
use crate::vfs::{OpenMode, Vfs, VfsFile};
use format::{
    BackupHeader, CHUNK_HEADER_BYTES, HEADER_BYTES, MANIFEST_BYTES, Manifest, STORED_PAGE_MAX,
};
use std::path::{Path, PathBuf};

/// The name a restore writes the page file under until it is complete.
pub const RESTORING_FILE_NAME: &str = "pages.db.restoring";
/// What a backup file is named until it is complete: `<dest>` + this.
pub const PARTIAL_SUFFIX: &str = ".partial";
/// Bytes a backup buffers before writing them out.
const WRITE_BUFFER_BYTES: usize = 1 << 20;

/// Called with (pages done, pages in all) as a long operation goes.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// What a backup or restore did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupSummary {
    /// Pages copied (meta pages included).
    pub pages: u64,
    /// The last commit the backup contains.
    pub source_lsn: Lsn,
    /// Bytes of the backup file.
    pub backup_bytes: u64,
}

/// What [`verify`] found in a backup file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackupCheck {
    /// Pages the header announces (0 if the header is unreadable).
    pub pages: u64,
    /// Source LSN the header records.
    pub source_lsn: Lsn,
    /// Each problem with the file and offset it is at; empty when the backup is sound.
    pub problems: Vec<IntegrityProblem>,
}

impl BackupCheck {
    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Backs up an open database into a new file `dest` (on the engine's filesystem).
pub fn backup(engine: &StorageEngine, dest: &Path) -> Result<BackupSummary> {
    backup_with_progress(engine, dest, &mut |_, _| {})
}

/// [`backup`], reporting progress.
pub fn backup_with_progress(
    engine: &StorageEngine,
    dest: &Path,
    progress: Progress<'_>,
) -> Result<BackupSummary> {
    let vfs = engine.vfs();
    let dest_name = dest.display().to_string();
    if vfs
        .exists(dest)
        .map_err(|source| Error::io("stat", &dest_name, source))?
    {
        return Err(Error::InvalidArgument(format!(
            "{dest_name} already exists: back up to a new file name"
        )));
    }
    let partial = with_suffix(dest, PARTIAL_SUFFIX);
    let partial_name = partial.display().to_string();
    let file = vfs
        .open_file(&partial, OpenMode::CreateOrOpen)
        .map_err(|source| Error::io("create", &partial_name, source))?;
    let written = write_backup(engine, &*file, &partial_name, progress).and_then(|summary| {
        file.sync_data()
            .map_err(|source| Error::io("fdatasync", &partial_name, source))?;
        drop(file);
        vfs.rename(&partial, dest)
            .map_err(|source| Error::io("rename", &partial_name, source))?;
        let parent = parent_dir(dest);
        vfs.sync_dir(&parent)
            .map_err(|source| Error::io("sync directory", parent.display().to_string(), source))?;
        Ok(summary)
    });
    if written.is_err() {
        // Best effort: a leftover `.partial` is never mistaken for a backup.
        let _ = vfs.remove_file(&partial);
    }
    written
}

/// Opens the database in `dir` and backs it up into `dest`.
pub fn backup_dir(dir: &Path, dest: &Path, options: Options) -> Result<BackupSummary> {
    let engine = open_existing(dir, options)?;
    backup(&engine, dest)
}

fn write_backup(
    engine: &StorageEngine,
    file: &dyn VfsFile,
    name: &str,
    progress: Progress<'_>,
) -> Result<BackupSummary> {
    file.set_len(0)
        .map_err(|source| Error::io("truncate", name, source))?;
    let snapshot = engine.snapshot()?;
    let page_count = snapshot.page_count();
    let source_lsn = snapshot.last_lsn();
    let mut out = SequentialWriter::new(file, name);
    out.write(&format::encode_header(&BackupHeader {
        page_count,
        source_lsn,
    }))?;
    let mut crc = crc32fast::Hasher::new();
    let mut chunk = Vec::with_capacity(CHUNK_HEADER_BYTES + STORED_PAGE_MAX);
    for raw in 0..page_count {
        let page = snapshot.page(PageId(raw))?;
        crc.update(page.bytes());
        chunk.clear();
        format::encode_chunk(raw, page.bytes(), &mut chunk);
        out.write(&chunk)?;
        progress(raw + 1, page_count);
    }
    let manifest = Manifest {
        source_lsn,
        page_count,
        page_file_bytes: page_count * PAGE_SIZE as u64,
        page_file_crc: crc.finalize(),
        meta_generation: snapshot.meta().generation,
        manifest_offset: out.offset(),
    };
    drop(snapshot);
    out.write(&format::encode_manifest(&manifest))?;
    out.flush()?;
    Ok(BackupSummary {
        pages: page_count,
        source_lsn,
        backup_bytes: out.offset(),
    })
}

/// Restores backup file `backup` into `target`, a new or empty directory.
pub fn restore(vfs: &dyn Vfs, backup: &Path, target: &Path) -> Result<BackupSummary> {
    restore_with_progress(vfs, backup, target, &mut |_, _| {})
}

/// [`restore`], reporting progress.
pub fn restore_with_progress(
    vfs: &dyn Vfs,
    backup: &Path,
    target: &Path,
    progress: Progress<'_>,
) -> Result<BackupSummary> {
    let target_name = target.display().to_string();
    let target_exists = vfs
        .exists(target)
        .map_err(|source| Error::io("stat", &target_name, source))?;
    if target_exists
        && !vfs
            .list_dir(target)
            .map_err(|source| Error::io("list", &target_name, source))?
            .is_empty()
    {
        return Err(Error::InvalidArgument(format!(
            "{target_name} is not empty: restore into a new or empty directory"
        )));
    }
    let backup_name = backup.display().to_string();
    let source = vfs
        .open_file(backup, OpenMode::ReadOnly)
        .map_err(|source| Error::io("open", &backup_name, source))?;
    let mut reader = BackupReader::open(&*source, &backup_name)?;
    vfs.create_dir_all(target)
        .map_err(|source| Error::io("create directory", &target_name, source))?;
    let temporary = target.join(RESTORING_FILE_NAME);
    let written = write_restored(vfs, &mut reader, &temporary, progress).and_then(|manifest| {
        vfs.rename(&temporary, &target.join(PAGE_FILE_NAME))
            .map_err(|source| Error::io("rename", RESTORING_FILE_NAME, source))?;
        vfs.sync_dir(target)
            .map_err(|source| Error::io("sync directory", &target_name, source))?;
        if !target_exists {
            let parent = parent_dir(target);
            vfs.sync_dir(&parent).map_err(|source| {
                Error::io("sync directory", parent.display().to_string(), source)
            })?;
        }
        Ok(BackupSummary {
            pages: manifest.page_count,
            source_lsn: manifest.source_lsn,
            backup_bytes: manifest.manifest_offset + MANIFEST_BYTES as u64,
        })
    });
    if written.is_err() {
        let _ = vfs.remove_file(&temporary);
    }
    written
}

fn write_restored(
    vfs: &dyn Vfs,
    reader: &mut BackupReader<'_>,
    temporary: &Path,
    progress: Progress<'_>,
) -> Result<Manifest> {
    let file = vfs
        .open_file(temporary, OpenMode::CreateOrOpen)
        .map_err(|source| Error::io("create", RESTORING_FILE_NAME, source))?;
    let io = |operation| move |source| Error::io(operation, RESTORING_FILE_NAME, source);
    file.set_len(0).map_err(io("truncate"))?;
    let page_count = reader.header.page_count;
    while let Some(outcome) = reader.next_page()? {
        let id = outcome?;
        file.write_all_at(reader.page_bytes(), id.offset())
            .map_err(io("write"))?;
        progress(id.0 + 1, page_count);
    }
    let manifest = reader.finish()?;
    start_new_lineage(vfs, &*file)?;
    file.sync_data().map_err(io("fdatasync"))?;
    Ok(manifest)
}

/// Makes the restored database a new line of history (see `crate::lineage`): a new random
/// identity, the old one appended to its lineage with the first serial it did not take
/// over. The database the backup was taken from may have handed out serials after the
/// backup, and so may every other restore of the same backup; a restored database handing
/// them out again under the same identity would give old handles to new records (a handle
/// taken after the backup named the new record after the restore: found by a new user; and
/// restoring one backup twice did the same with the serial *epoch* per restore that came
/// first: found by the simulator). Writes a newer meta page; the manifest was checked on
/// the bytes as restored before.
fn start_new_lineage(vfs: &dyn Vfs, file: &dyn VfsFile) -> Result<()> {
    let mut newest: Option<crate::pager::Meta> = None;
    for id in [PageId(0), PageId(1)] {
        let mut page = Page::zeroed();
        file.read_exact_at(page.bytes_mut(), id.offset())
            .map_err(|source| Error::io("read", RESTORING_FILE_NAME, source))?;
        if let Ok(Some(meta)) = decode_meta_page(&page, id)
            && newest
                .as_ref()
                .is_none_or(|best| meta.generation > best.generation)
        {
            newest = Some(meta);
        }
    }
    let Some(mut meta) = newest else {
        return Err(Error::corruption(
            RESTORING_FILE_NAME,
            0,
            "the restored file has no valid meta page",
        ));
    };
    let taken_over = meta.alloc.serial_limit.max(meta.alloc.serial_next);
    let parent = meta.alloc.database_id;
    meta.lineage = meta.lineage.restored_from(parent, taken_over);
    // A random identity none of the line has had (at most 65 are taken, so the walk from
    // a repeated draw ends within 66 steps).
    let mut candidate = crate::engine::new_database_id(vfs);
    for _ in 0..=crate::lineage::LINEAGE_MAX + 1 {
        if !meta.lineage.contains(parent, candidate) {
            break;
        }
        candidate = crate::record_id::DatabaseId(candidate.0.wrapping_add(1).max(1));
    }
    meta.alloc.database_id = candidate;
    meta.alloc.serial_next = taken_over;
    meta.alloc.serial_limit = taken_over;
    meta.generation += 1;
    let mut page = crate::pager::encode_meta_page(&meta);
    page.seal();
    file.write_all_at(page.bytes(), page.id().offset())
        .map_err(|source| Error::io("write", RESTORING_FILE_NAME, source))
}

/// Checks every chunk, page and the manifest of a backup file; reports each problem.
/// `Err` only when the file cannot be read at all.
pub fn verify(vfs: &dyn Vfs, backup: &Path) -> Result<BackupCheck> {
    verify_with_progress(vfs, backup, &mut |_, _| {})
}

/// [`verify`], reporting progress.
pub fn verify_with_progress(
    vfs: &dyn Vfs,
    backup: &Path,
    progress: Progress<'_>,
) -> Result<BackupCheck> {
    let name = backup.display().to_string();
    let file = vfs
        .open_file(backup, OpenMode::ReadOnly)
        .map_err(|source| Error::io("open", &name, source))?;
    let mut check = BackupCheck::default();
    let mut reader = match BackupReader::open(&*file, &name) {
        Ok(reader) => reader,
        Err(error) => return problem_or_error(check, error),
    };
    check.pages = reader.header.page_count;
    check.source_lsn = reader.header.source_lsn;
    loop {
        match reader.next_page() {
            Ok(Some(Ok(id))) => progress(id.0 + 1, check.pages),
            Ok(Some(Err(error))) => check = problem_or_error(check, error)?,
            Ok(None) => break,
            Err(error) => return problem_or_error(check, error),
        }
    }
    if let Err(error) = reader.finish() {
        return problem_or_error(check, error);
    }
    Ok(check)
}

fn problem_or_error(mut check: BackupCheck, error: Error) -> Result<BackupCheck> {
    match error {
        Error::Corruption {
            file,
            offset,
            detail,
        } => {
            check.problems.push(IntegrityProblem {
                file,
                offset,
                detail,
            });
            Ok(check)
        }
        other => Err(other),
    }
}

/// Checks a database directory: opens it read-only (nothing on disk changes: the view is
/// rebuilt in memory, see [`Options::read_only`]) and runs the full integrity check of
/// every page, the meta pages and the WAL, then checks the old copies in `pages.db` of
/// pages the WAL holds newer versions of. What the open went past (WAL damage, a lost
/// synced tail, an interrupted checkpoint) comes first among the problems; a database too
/// damaged to open is reported as a problem, not an error. Refuses a directory that holds
/// no database.
pub fn verify_database(dir: &Path, options: Options) -> Result<IntegrityReport> {
    require_page_file(dir, &*options.vfs)?;
    let meta_problems = check_meta_pages(dir, &*options.vfs)?;
    let options = if options.is_read_only() {
        options
    } else {
        options.read_only()
    };
    let mut report = match open_existing(dir, options) {
        Ok(engine) => {
            let mut report = engine.check_integrity()?;
            report.problems.splice(0..0, engine.open_notes());
            report.problems.extend(engine.check_shadowed_pages()?);
            report
        }
        Err(Error::Corruption {
            file,
            offset,
            detail,
        }) => IntegrityReport {
            problems: vec![IntegrityProblem {
                file,
                offset,
                detail,
            }],
            ..IntegrityReport::default()
        },
        Err(error) => return Err(error),
    };
    report.problems.splice(0..0, meta_problems);
    Ok(report)
}

/// Checks both meta pages and names a damaged one, with the one the database relies on
/// (the newest intact). An older meta page is what a torn write of the newer falls back
/// to, so damage to it is a problem even while the newer one is sound (verify used to say
/// clean over it); a damaged newest one made open report a WAL/LSN mismatch without
/// saying which page was damaged.
fn check_meta_pages(dir: &Path, vfs: &dyn Vfs) -> Result<Vec<IntegrityProblem>> {
    let path = dir.join(PAGE_FILE_NAME);
    let file = vfs
        .open_file(&path, OpenMode::ReadOnly)
        .map_err(|source| Error::io("open", PAGE_FILE_NAME, source))?;
    let mut decoded = Vec::new();
    for id in [PageId(0), PageId(1)] {
        let page = crate::pager::read_meta_slot(&*file, id)
            .map_err(|source| Error::io("read", PAGE_FILE_NAME, source))?;
        decoded.push((id, decode_meta_page(&page, id)));
    }
    let newest = decoded
        .iter()
        .filter_map(|(id, meta)| match meta {
            Ok(Some(meta)) => Some((*id, meta.generation)),
            _ => None,
        })
        .max_by_key(|(_, generation)| *generation);
    let relied_on = match newest {
        Some((id, generation)) => format!(
            "the database relies on meta page {} (generation {generation})",
            id.0
        ),
        None => "no meta page is intact".to_string(),
    };
    let mut problems = Vec::new();
    for (id, meta) in decoded {
        if let Err(error) = meta {
            problems.push(IntegrityProblem {
                file: PAGE_FILE_NAME.to_string(),
                offset: id.offset(),
                detail: format!(
                    "meta page {} does not verify (damaged, or torn by a crash during a \
                     checkpoint): {}; {relied_on}",
                    id.0, error.0
                ),
            });
        }
    }
    Ok(problems)
}

/// Opens an existing database; a directory without `pages.db` is refused (opening would
/// create an empty database there).
pub fn open_existing(dir: &Path, options: Options) -> Result<StorageEngine> {
    require_page_file(dir, &*options.vfs)?;
    StorageEngine::open_with(dir, options)
}

/// Refuses a directory without `pages.db` (nothing there is a database).
fn require_page_file(dir: &Path, vfs: &dyn Vfs) -> Result<()> {
    let name = dir.display().to_string();
    let exists = vfs
        .exists(&dir.join(PAGE_FILE_NAME))
        .map_err(|source| Error::io("stat", &name, source))?;
    if !exists {
        return Err(Error::InvalidArgument(format!(
            "{name} holds no database (no {PAGE_FILE_NAME}): check the path"
        )));
    }
    Ok(())
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Buffers sequential writes into large `pwrite`s.
struct SequentialWriter<'f> {
    file: &'f dyn VfsFile,
    name: &'f str,
    buffer: Vec<u8>,
    flushed: u64,
}

impl<'f> SequentialWriter<'f> {
    fn new(file: &'f dyn VfsFile, name: &'f str) -> SequentialWriter<'f> {
        SequentialWriter {
            file,
            name,
            buffer: Vec::with_capacity(WRITE_BUFFER_BYTES + STORED_PAGE_MAX),
            flushed: 0,
        }
    }

    fn offset(&self) -> u64 {
        self.flushed + self.buffer.len() as u64
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.buffer.extend_from_slice(bytes);
        if self.buffer.len() >= WRITE_BUFFER_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.file
            .write_all_at(&self.buffer, self.flushed)
            .map_err(|source| Error::io("write", self.name, source))?;
        self.flushed += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }
}

/// Reads a backup file front to back, checking as it goes. Fatal problems (the file ends,
/// a chunk header is damaged, pages out of order) are `Err`; a damaged page is reported
/// and skipped.
struct BackupReader<'f> {
    file: &'f dyn VfsFile,
    name: &'f str,
    len: u64,
    offset: u64,
    header: BackupHeader,
    next_page: u64,
    crc: crc32fast::Hasher,
    damaged: bool,
    body: Vec<u8>,
    page: Box<[u8; PAGE_SIZE]>,
}

impl<'f> BackupReader<'f> {
    fn open(file: &'f dyn VfsFile, name: &'f str) -> Result<BackupReader<'f>> {
        let len = file
            .len()
            .map_err(|source| Error::io("stat", name, source))?;
        let mut reader = BackupReader {
            file,
            name,
            len,
            offset: 0,
            header: BackupHeader {
                page_count: 0,
                source_lsn: Lsn(0),
            },
            next_page: 0,
            crc: crc32fast::Hasher::new(),
            damaged: false,
            body: Vec::with_capacity(STORED_PAGE_MAX),
            page: Box::new([0u8; PAGE_SIZE]),
        };
        let mut bytes = [0u8; HEADER_BYTES];
        reader.read_exact(&mut bytes, "the header")?;
        reader.header = format::decode_header(&bytes).map_err(|error| error.at(name, 0))?;
        Ok(reader)
    }

    fn read_exact(&mut self, buf: &mut [u8], what: &str) -> Result<()> {
        let end = self.offset.saturating_add(buf.len() as u64);
        if end > self.len {
            return Err(Error::corruption(
                self.name,
                self.offset,
                format!(
                    "the file ends at byte {} inside {what}: the backup is truncated",
                    self.len
                ),
            ));
        }
        self.file
            .read_exact_at(buf, self.offset)
            .map_err(|source| Error::io("read", self.name, source))?;
        self.offset = end;
        Ok(())
    }

    /// The bytes of the page [`BackupReader::next_page`] last returned as sound.
    fn page_bytes(&self) -> &[u8; PAGE_SIZE] {
        &self.page
    }

    /// The next page: `Ok(None)` after the last; `Ok(Some(Err))` for a damaged page.
    fn next_page(&mut self) -> Result<Option<std::result::Result<PageId, Error>>> {
        if self.next_page >= self.header.page_count {
            return Ok(None);
        }
        let chunk_offset = self.offset;
        let mut header_bytes = [0u8; CHUNK_HEADER_BYTES];
        self.read_exact(&mut header_bytes, "a chunk header")?;
        let header = format::decode_chunk_header(&header_bytes)
            .map_err(|error| error.at(self.name, chunk_offset))?;
        if header.page != self.next_page {
            return Err(Error::corruption(
                self.name,
                chunk_offset,
                format!(
                    "chunk holds page {}, expected page {}",
                    header.page, self.next_page
                ),
            ));
        }
        let id = PageId(self.next_page);
        self.next_page += 1;
        let body_offset = self.offset;
        let mut body = std::mem::take(&mut self.body);
        body.resize(header.stored_len as usize, 0);
        let read = self.read_exact(&mut body, "a page");
        let decoded = read.map(|()| format::decode_chunk_body(&header, &body, &mut self.page));
        self.body = body;
        let outcome = decoded?.and_then(|()| self.check_page(id));
        match outcome {
            Ok(()) => {
                self.crc.update(&self.page[..]);
                Ok(Some(Ok(id)))
            }
            Err(error) => {
                self.damaged = true;
                Ok(Some(Err(error.at(self.name, body_offset))))
            }
        }
    }

    /// The page must be sealed and be the page it claims, and meta pages must decode.
    fn check_page(&self, id: PageId) -> std::result::Result<(), DecodeError> {
        let page = Page::from_bytes(&self.page[..])?;
        page.verify(id)
            .map_err(|error| DecodeError::new(format!("{id}: {}", error.0)))?;
        if id.0 < 2 {
            decode_meta_page(&page, id)
                .map_err(|error| DecodeError::new(format!("meta {id}: {}", error.0)))?;
        }
        Ok(())
    }

    /// After the last page: reads the manifest and checks it against the header, the
    /// pages and the end of the file.
    fn finish(&mut self) -> Result<Manifest> {
        let reader = self;
        let manifest_offset = reader.offset;
        let mut bytes = [0u8; MANIFEST_BYTES];
        reader.read_exact(&mut bytes, "the manifest")?;
        let at = |detail: String| Error::corruption(reader.name, manifest_offset, detail);
        let manifest = format::decode_manifest(&bytes)
            .map_err(|error| error.at(reader.name, manifest_offset))?;
        let header = reader.header;
        if manifest.page_count != header.page_count || manifest.source_lsn != header.source_lsn {
            return Err(at(format!(
                "manifest says {} pages at LSN {}, header {} at LSN {}",
                manifest.page_count, manifest.source_lsn.0, header.page_count, header.source_lsn.0
            )));
        }
        if manifest.page_file_bytes != header.page_count.saturating_mul(PAGE_SIZE as u64) {
            return Err(at(format!(
                "manifest gives pages.db {} bytes for {} pages",
                manifest.page_file_bytes, manifest.page_count
            )));
        }
        if manifest.manifest_offset != manifest_offset {
            return Err(at(format!(
                "manifest says it starts at {}, found at {manifest_offset}",
                manifest.manifest_offset
            )));
        }
        if !reader.damaged && reader.crc.clone().finalize() != manifest.page_file_crc {
            return Err(at("the pages do not match the manifest's CRC32".into()));
        }
        if reader.len != reader.offset {
            return Err(Error::corruption(
                reader.name,
                reader.offset,
                format!(
                    "{} unexpected bytes after the manifest",
                    reader.len - reader.offset
                ),
            ));
        }
        Ok(manifest)
    }
}
