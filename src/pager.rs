//! The page file `pages.db`: its two meta pages, the allocation state, and checked page I/O.
//!
//! # Meta pages
//! Pages 0 and 1 are meta pages, written alternately by checkpoints (generation `g` goes to
//! page `g % 2`), so a torn meta write always leaves the other, older one intact. Open takes
//! the valid one with the highest generation. A meta page's bytes past
//! [`META_WRITTEN_BYTES`] are zero: a meta write writes only the bytes before that, and a
//! meta read reads only those and takes the rest as zeros, whatever the file holds there
//! (the checksum covers the whole page, zeros included, as for every page). So the slots'
//! tails are never written: on a file system with holes an empty database is a few KiB on
//! disk, not two 64 KiB pages, and damage or garbage in a tail cannot fail a meta page.
//! Files written before kept zeros there, which reads the same. Body layout (after the
//! page header):
//! ```text
//! 48  8 magic           b"MENTEDB\0"
//! 56  8 generation      checkpoint counter
//! 64  8 checkpoint_lsn  every change up to this LSN is in the page file
//! 72  . alloc state     ALLOC_STATE_SIZE bytes, see below
//! 136 . lineage         the databases it was restored from (see `lineage`; zeros: none)
//! ```
//!
//! # Allocation state
//! `page_count u64, free_pages u64, serial_next u64, serial_limit u64, database_id u32,
//! reserved u32, record_hint u64, handle_hint u64, reserved u64` (64 bytes). It is the
//! payload of every WAL commit frame too, so between checkpoints the newest committed frame
//! says how many pages exist, how many of them are free, which serials are handed out and
//! reserved, and which pages new records and handles try first. Which pages are free and
//! which have room is in the space map (`space_map`), not here.
//!
//! # Serials
//! Serials below `serial_next` have been handed out. A commit may hand out serials only
//! below `serial_limit`; one that needs more raises the limit and is made durable before it
//! returns (in every sync mode). An open starts at the limit, so a serial handed out by a
//! commit that a crash lost (acknowledged in `SyncMode::Normal`) is never handed out again.

use crate::error::{DecodeError, Error, Result};
use crate::page::{Lsn, PAGE_HEADER_SIZE, PAGE_SIZE, Page, PageId, PageType};
use crate::record_id::{DatabaseId, SERIAL_MAX};
use crate::vfs::{Vfs, VfsFile};
use std::path::Path;

/// Name of the page file inside the database directory.
pub const PAGE_FILE_NAME: &str = "pages.db";
/// First page id that can hold data (0 and 1 are meta pages).
pub const FIRST_DATA_PAGE: PageId = PageId(2);
/// Encoded size of [`AllocState`].
pub const ALLOC_STATE_SIZE: usize = 64;
/// How often a page read that fails its checksum is retried before it is reported as
/// corruption (a concurrent checkpoint may be rewriting the page).
pub const PAGE_READ_RETRIES_MAX: u32 = 16;

const META_MAGIC: [u8; 8] = *b"MENTEDB\0";
const META_OFFSET_MAGIC: usize = PAGE_HEADER_SIZE;
const META_OFFSET_GENERATION: usize = PAGE_HEADER_SIZE + 8;
const META_OFFSET_CHECKPOINT_LSN: usize = PAGE_HEADER_SIZE + 16;
const META_OFFSET_ALLOC: usize = PAGE_HEADER_SIZE + 24;
const META_OFFSET_LINEAGE: usize = META_OFFSET_ALLOC + ALLOC_STATE_SIZE;
/// Bytes of a meta page that a meta write writes; the rest of the page is zero.
pub const META_WRITTEN_BYTES: usize = 4096;
/// Where the meta page keeps the versions of the map pages: `count u32`, then `count` ×
/// `lsn u64` (see [`Meta::map_versions`]).
const META_OFFSET_MAP_VERSIONS: usize = META_OFFSET_LINEAGE + crate::lineage::LINEAGE_BYTES_MAX;
/// Map pages the meta page keeps versions of, at most: the file's limit is this many
/// spans (`space_map::MAP_SPAN` pages each): 398, 176 GiB of file.
pub const MAP_PAGES_MAX: usize = (META_WRITTEN_BYTES - META_OFFSET_MAP_VERSIONS - 4) / 8;
/// Most pages a file may have: [`MAP_PAGES_MAX`] spans.
pub const FILE_PAGES_MAX: u64 =
    crate::space_map::FIRST_MAP_PAGE.0 + MAP_PAGES_MAX as u64 * crate::space_map::MAP_SPAN;
const _: () = assert!(META_OFFSET_MAP_VERSIONS + 4 + 8 * MAP_PAGES_MAX <= META_WRITTEN_BYTES);
const _: () = assert!(FILE_PAGES_MAX <= crate::page::PAGE_ID_MAX);

/// How many pages exist, how many are free, and the serials handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AllocState {
    /// Pages in the file, meta pages included.
    pub page_count: u64,
    /// Pages the space map marks free.
    pub free_pages: u64,
    /// The next serial to hand out.
    pub serial_next: u64,
    /// Serials from here on are not reserved yet (see the module docs).
    pub serial_limit: u64,
    /// The database's identity (in every handle it issues).
    pub database_id: DatabaseId,
    /// The record page new records try first (0 = none).
    pub record_hint: PageId,
    /// The handle page new handles try first (0 = none).
    pub handle_hint: PageId,
}

impl AllocState {
    /// The state of a new, empty database with identity `database_id`.
    pub fn empty(database_id: DatabaseId) -> AllocState {
        AllocState {
            page_count: FIRST_DATA_PAGE.0,
            free_pages: 0,
            serial_next: 1,
            serial_limit: 1,
            database_id,
            record_hint: PageId(0),
            handle_hint: PageId(0),
        }
    }

    /// Encodes the state.
    pub fn encode(&self) -> [u8; ALLOC_STATE_SIZE] {
        let mut bytes = [0u8; ALLOC_STATE_SIZE];
        bytes[0..8].copy_from_slice(&self.page_count.to_le_bytes());
        bytes[8..16].copy_from_slice(&self.free_pages.to_le_bytes());
        bytes[16..24].copy_from_slice(&self.serial_next.to_le_bytes());
        bytes[24..32].copy_from_slice(&self.serial_limit.to_le_bytes());
        bytes[32..36].copy_from_slice(&self.database_id.0.to_le_bytes());
        bytes[40..48].copy_from_slice(&self.record_hint.0.to_le_bytes());
        bytes[48..56].copy_from_slice(&self.handle_hint.0.to_le_bytes());
        bytes
    }

    /// Decodes and checks a state.
    pub fn decode(bytes: &[u8]) -> Result<AllocState, DecodeError> {
        if bytes.len() != ALLOC_STATE_SIZE {
            return Err(DecodeError::new(format!(
                "allocation state has {} bytes, expected {ALLOC_STATE_SIZE}",
                bytes.len()
            )));
        }
        let field = |index: usize| {
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&bytes[index * 8..index * 8 + 8]);
            u64::from_le_bytes(raw)
        };
        let state = AllocState {
            page_count: field(0),
            free_pages: field(1),
            serial_next: field(2),
            serial_limit: field(3),
            database_id: DatabaseId(field(4) as u32),
            record_hint: PageId(field(5)),
            handle_hint: PageId(field(6)),
        };
        if field(4) >> 32 != 0 || field(7) != 0 {
            return Err(DecodeError::new("allocation state has reserved bytes set"));
        }
        state.check()?;
        Ok(state)
    }

    fn check(&self) -> Result<(), DecodeError> {
        let in_file =
            |page: PageId| page.0 == 0 || (page >= FIRST_DATA_PAGE && page.0 < self.page_count);
        let valid = self.page_count >= FIRST_DATA_PAGE.0
            && self.page_count <= FILE_PAGES_MAX
            && in_file(self.record_hint)
            && in_file(self.handle_hint)
            && self.free_pages < self.page_count
            && (1..=SERIAL_MAX + 1).contains(&self.serial_next)
            && self.serial_next <= self.serial_limit
            && self.serial_limit <= SERIAL_MAX + 1
            && self.database_id.0 != 0;
        if valid {
            Ok(())
        } else {
            Err(DecodeError::new(format!(
                "inconsistent allocation state {self:?}"
            )))
        }
    }
}

/// The contents of a meta page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Checkpoint counter; the newer meta page has the higher one.
    pub generation: u64,
    /// Every change up to this LSN is in the page file.
    pub checkpoint_lsn: Lsn,
    /// Allocation state at the checkpoint.
    pub alloc: AllocState,
    /// The databases this one was restored from (see `lineage`).
    pub lineage: crate::lineage::Lineage,
    /// The LSN each map page had when this checkpoint wrote it (or an earlier one), in
    /// span order: what a map page read from `pages.db` must carry (the map pages keep the
    /// versions of every other page; see `space_map`). One per map page of the file.
    pub map_versions: Vec<Lsn>,
}

/// Builds the (sealed) meta page for `meta`, placed at page `generation % 2`.
pub fn encode_meta_page(meta: &Meta) -> Page {
    let mut page = Page::new(meta_page_id(meta.generation), PageType::Meta);
    page.set_lsn(meta.checkpoint_lsn);
    let bytes = page.bytes_mut();
    bytes[META_OFFSET_MAGIC..META_OFFSET_MAGIC + 8].copy_from_slice(&META_MAGIC);
    page.put_u64(META_OFFSET_GENERATION, meta.generation);
    page.put_u64(META_OFFSET_CHECKPOINT_LSN, meta.checkpoint_lsn.0);
    page.bytes_mut()[META_OFFSET_ALLOC..META_OFFSET_ALLOC + ALLOC_STATE_SIZE]
        .copy_from_slice(&meta.alloc.encode());
    let lineage = meta.lineage.encode();
    page.bytes_mut()[META_OFFSET_LINEAGE..META_OFFSET_LINEAGE + lineage.len()]
        .copy_from_slice(&lineage);
    assert!(
        meta.map_versions.len() <= MAP_PAGES_MAX,
        "{} map pages, over the limit",
        meta.map_versions.len()
    );
    page.put_u32(META_OFFSET_MAP_VERSIONS, meta.map_versions.len() as u32);
    for (index, lsn) in meta.map_versions.iter().enumerate() {
        page.put_u64(META_OFFSET_MAP_VERSIONS + 4 + 8 * index, lsn.0);
    }
    page.seal();
    page
}

/// Decodes the map versions of a meta page whose allocation state says `page_count`.
fn decode_map_versions(page: &Page, page_count: u64) -> Result<Vec<Lsn>, DecodeError> {
    let count = page.get_u32(META_OFFSET_MAP_VERSIONS) as usize;
    let expected = crate::space_map::map_pages(page_count).count();
    if count != expected {
        return Err(DecodeError::new(format!(
            "the meta page keeps versions of {count} map pages, but {page_count} pages have \
             {expected}"
        )));
    }
    (0..count)
        .map(|index| {
            let lsn = Lsn(page.get_u64(META_OFFSET_MAP_VERSIONS + 4 + 8 * index));
            if lsn.is_valid() {
                Ok(lsn)
            } else {
                Err(DecodeError::new(format!(
                    "map page version {} over the limit",
                    lsn.0
                )))
            }
        })
        .collect()
}

/// Reads meta slot `id` as every reader must: its first [`META_WRITTEN_BYTES`] (zeros past
/// the end of the file), the rest of the page zeros.
pub(crate) fn read_meta_slot(file: &dyn VfsFile, id: PageId) -> std::io::Result<Page> {
    assert!(id < FIRST_DATA_PAGE, "{id} is not a meta slot");
    let mut page = Page::zeroed();
    let prefix = &mut page.bytes_mut()[..META_WRITTEN_BYTES];
    let filled = crate::wal::read_up_to(file, prefix, id.offset())?;
    prefix[filled..].fill(0);
    Ok(page)
}

/// The meta page slot a generation is written to.
pub fn meta_page_id(generation: u64) -> PageId {
    PageId(generation % 2)
}

/// Decodes a meta page read from slot `id`; `Ok(None)` for a never-written page.
pub fn decode_meta_page(page: &Page, id: PageId) -> Result<Option<Meta>, DecodeError> {
    let header = page.verify(id)?;
    match header.page_type {
        PageType::Unused => return Ok(None),
        PageType::Meta => {}
        other => {
            return Err(DecodeError::new(format!(
                "meta slot holds a {other:?} page"
            )));
        }
    }
    if page.bytes()[META_OFFSET_MAGIC..META_OFFSET_MAGIC + 8] != META_MAGIC {
        return Err(DecodeError::new("meta page has a bad magic"));
    }
    let generation = page.get_u64(META_OFFSET_GENERATION);
    if generation > crate::page::LSN_MAX {
        return Err(DecodeError::new(format!(
            "meta generation {generation} over the limit"
        )));
    }
    if meta_page_id(generation) != id {
        return Err(DecodeError::new(format!(
            "generation {generation} in the wrong meta slot"
        )));
    }
    let alloc =
        AllocState::decode(&page.bytes()[META_OFFSET_ALLOC..META_OFFSET_ALLOC + ALLOC_STATE_SIZE])?;
    let checkpoint_lsn = Lsn(page.get_u64(META_OFFSET_CHECKPOINT_LSN));
    if !checkpoint_lsn.is_valid() {
        return Err(DecodeError::new(format!(
            "checkpoint LSN {} over the limit",
            checkpoint_lsn.0
        )));
    }
    let lineage = crate::lineage::Lineage::decode(&page.bytes()[META_OFFSET_LINEAGE..])?;
    if lineage.own_start() > alloc.serial_next.max(alloc.serial_limit) {
        // The database's own serials start where its lineage ends: one that starts past
        // what it handed out would name its new records after an ancestor.
        return Err(DecodeError::new(format!(
            "the lineage ends at serial {}, past the serials handed out ({})",
            lineage.own_start(),
            alloc.serial_next
        )));
    }
    let map_versions = decode_map_versions(page, alloc.page_count)?;
    Ok(Some(Meta {
        generation,
        checkpoint_lsn,
        alloc,
        lineage,
        map_versions,
    }))
}

/// Refuses a meta page that is intact but written in another page format (an older or a
/// newer build): its version byte is covered by its checksum, so this is not damage.
fn check_format(page: &Page) -> Result<()> {
    let version = page.bytes()[5];
    let intact = page.get_u32(0) == page.compute_crc();
    if intact && version != 0 && version != crate::page::PAGE_FORMAT_VERSION {
        return Err(Error::UnsupportedFormat {
            file: PAGE_FILE_NAME.to_string(),
            found: version,
            supported: crate::page::PAGE_FORMAT_VERSION,
        });
    }
    Ok(())
}

/// The open page file.
#[derive(Debug)]
pub struct PageFile {
    file: Box<dyn VfsFile>,
}

fn page_io(operation: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::io(operation, PAGE_FILE_NAME, source)
}

impl PageFile {
    /// Opens the page file at `path`: created if missing, or read-only (it must exist).
    pub fn open(vfs: &dyn Vfs, path: &Path, access: crate::vfs::Access) -> Result<PageFile> {
        let file = crate::vfs::open_for(vfs, path, access, false).map_err(page_io("open"))?;
        Ok(PageFile { file })
    }

    /// Reads page `id` raw: bytes past the end of the file read as zeros.
    pub fn read_raw(&self, id: PageId) -> Result<Page> {
        self.read_raw_into(id, Page::zeroed())
    }

    /// [`PageFile::read_raw`] into a page buffer whose bytes are all overwritten.
    pub fn read_raw_into(&self, id: PageId, mut page: Page) -> Result<Page> {
        let buffer = page.bytes_mut();
        let mut filled = 0;
        while filled < PAGE_SIZE {
            let count = self
                .file
                .read_at(&mut buffer[filled..], id.offset() + filled as u64)
                .map_err(page_io("read"))?;
            if count == 0 {
                buffer[filled..].fill(0);
                break;
            }
            filled += count;
        }
        Ok(page)
    }

    /// Reads `buffer.len()` bytes of page `id` from `offset` within it, unverified (the
    /// caller checks them against what it knows of the page); a short read is an error.
    pub fn read_within(&self, id: PageId, offset: u32, buffer: &mut [u8]) -> Result<()> {
        let end = offset as usize + buffer.len();
        if end > PAGE_SIZE {
            return Err(Error::InvalidArgument(format!(
                "bytes {offset}..{end} are outside a page of {PAGE_SIZE}"
            )));
        }
        self.file
            .read_exact_at(buffer, id.offset() + u64::from(offset))
            .map_err(page_io("read"))
    }

    /// Reads and verifies page `id`, retrying a checksum failure a bounded number of times
    /// (another process's checkpoint may be rewriting it) before reporting corruption.
    pub fn read_verified(&self, id: PageId) -> Result<Page> {
        self.read_verified_into(id, Page::zeroed())
    }

    /// [`PageFile::read_verified`] into a page buffer whose bytes are all overwritten.
    pub fn read_verified_into(&self, id: PageId, mut buffer: Page) -> Result<Page> {
        let mut attempt = 0;
        loop {
            let page = self.read_raw_into(id, buffer)?;
            match page.verify(id) {
                Ok(_) => return Ok(page),
                Err(error) if attempt >= PAGE_READ_RETRIES_MAX => {
                    return Err(error.at(PAGE_FILE_NAME, id.offset()));
                }
                Err(_) => {
                    crate::rare_paths::hit(crate::rare_paths::RarePath::PageReadRetried);
                    attempt += 1;
                    buffer = page;
                    crate::sched::pause();
                }
            }
        }
    }

    /// Seals and writes a data, overflow or free page at its place. `wal_durable` is the
    /// LSN up to which the WAL is known durable: the write-ahead rule says no page reaches
    /// `pages.db` before the WAL is durable up to that page's LSN, and this is where it is
    /// checked (a checkpoint that broke it once lost acknowledged records after a power
    /// loss: it wrote pages of a commit whose `fdatasync` had not completed).
    ///
    /// # Panics
    /// If the page is newer than `wal_durable` (a bug in the caller, never an I/O outcome).
    pub fn write_page(&self, page: &mut Page, wal_durable: Lsn) -> Result<()> {
        assert!(
            page.lsn() <= wal_durable,
            "write-ahead rule broken: {} at LSN {} would reach {PAGE_FILE_NAME} with the WAL \
             durable only up to LSN {}",
            page.id(),
            page.lsn().0,
            wal_durable.0
        );
        assert!(
            page.id() >= FIRST_DATA_PAGE,
            "meta pages go through write_meta"
        );
        self.write_sealed(page)
    }

    fn write_sealed(&self, page: &mut Page) -> Result<()> {
        page.seal();
        self.file
            .write_all_at(page.bytes(), page.id().offset())
            .map_err(page_io("write"))
    }

    /// Makes the page file durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(page_io("fdatasync"))
    }

    /// Rewrites meta slot `id` (its written prefix) and the file length, and syncs (see
    /// [`crate::vfs::rewrite_prefix`]): run at open after some process's sync failed or a
    /// checkpoint was interrupted, so a meta page that only the page cache holds reaches the
    /// disk before anything relies on it. One slot only: a power cut during the rewrite may
    /// tear what it rewrites, and the other slot is what a torn one falls back to.
    pub fn rewrite_meta_slot(&self, id: PageId) -> Result<()> {
        assert!(id < FIRST_DATA_PAGE, "{id} is not a meta slot");
        crate::vfs::rewrite_range(
            &*self.file,
            id.offset(),
            id.offset() + META_WRITTEN_BYTES as u64,
        )
        .map_err(page_io("rewrite"))?;
        self.sync()
    }

    /// Reads both meta pages and returns the valid one with the higher generation;
    /// `Ok(None)` for a new database (both never written).
    pub fn load_meta(&self) -> Result<Option<Meta>> {
        let mut found = Vec::new();
        let mut errors = Vec::new();
        for id in [PageId(0), PageId(1)] {
            let page = read_meta_slot(&*self.file, id).map_err(page_io("read"))?;
            check_format(&page)?;
            match decode_meta_page(&page, id) {
                Ok(Some(meta)) => found.push(meta),
                Ok(None) => {}
                Err(error) => errors.push((id, error)),
            }
        }
        if let Some(best) = found.into_iter().max_by_key(|meta| meta.generation) {
            if !errors.is_empty() {
                crate::rare_paths::hit(crate::rare_paths::RarePath::MetaSlotDamaged);
            }
            return Ok(Some(best));
        }
        match errors.into_iter().next() {
            Some((id, error)) => Err(error.at(PAGE_FILE_NAME, id.offset())),
            None => Ok(None),
        }
    }

    /// Writes the meta page for `meta` and syncs it.
    pub fn write_meta(&self, meta: &Meta) -> Result<()> {
        let mut page = encode_meta_page(meta);
        page.seal();
        assert!(
            page.bytes()[META_WRITTEN_BYTES..]
                .iter()
                .all(|&byte| byte == 0),
            "a meta page's bytes past {META_WRITTEN_BYTES} are zero"
        );
        self.file
            .write_all_at(&page.bytes()[..META_WRITTEN_BYTES], page.id().offset())
            .map_err(page_io("write"))?;
        self.sync()
    }

    /// Cuts (or extends) the page file to `len` bytes; durable after [`PageFile::sync`].
    pub fn set_len(&self, len: u64) -> Result<()> {
        self.file.set_len(len).map_err(page_io("truncate"))
    }

    /// Length of the page file in bytes.
    pub fn len(&self) -> Result<u64> {
        self.file.len().map_err(page_io("stat"))
    }

    /// True if the page file is empty.
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.len()? == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(generation: u64) -> Meta {
        Meta {
            generation,
            checkpoint_lsn: Lsn(generation * 10),
            alloc: AllocState {
                page_count: 9,
                free_pages: 2,
                serial_next: 40,
                serial_limit: 1064,
                database_id: DatabaseId(77),
                record_hint: PageId(3),
                handle_hint: PageId(4),
            },
            lineage: crate::lineage::Lineage::default()
                .restored_from(DatabaseId(5), 12)
                .restored_from(DatabaseId(6), 30),
            map_versions: vec![Lsn(7)],
        }
    }

    #[test]
    fn meta_page_round_trips() {
        let page = encode_meta_page(&meta(5));
        assert_eq!(page.id(), PageId(1));
        assert_eq!(
            decode_meta_page(&page, PageId(1)).expect("valid"),
            Some(meta(5))
        );
    }

    #[test]
    fn meta_page_in_the_wrong_slot_is_rejected() {
        let page = encode_meta_page(&meta(4));
        assert!(decode_meta_page(&page, PageId(1)).is_err());
    }

    #[test]
    fn alloc_state_rejects_pointers_outside_the_file_and_bad_serials() {
        let mut state = meta(1).alloc;
        state.record_hint = PageId(50);
        assert!(AllocState::decode(&state.encode()).is_err());
        let mut state = meta(1).alloc;
        state.free_pages = 9;
        assert!(AllocState::decode(&state.encode()).is_err());
        let mut state = meta(1).alloc;
        state.serial_next = state.serial_limit + 1;
        assert!(AllocState::decode(&state.encode()).is_err());
        let mut state = meta(1).alloc;
        state.database_id = DatabaseId(0);
        assert!(AllocState::decode(&state.encode()).is_err());
        assert_eq!(
            AllocState::decode(&meta(1).alloc.encode()),
            Ok(meta(1).alloc)
        );
    }

    #[test]
    fn a_meta_page_of_another_format_is_refused_as_such() {
        let vfs = crate::vfs::MemFs::new();
        vfs.create_dir_all(Path::new("/db")).expect("dir");
        let file = PageFile::open(
            &vfs,
            Path::new("/db/pages.db"),
            crate::vfs::Access::ReadWrite,
        )
        .expect("open");
        let mut page = encode_meta_page(&meta(2));
        page.bytes_mut()[5] = crate::page::PAGE_FORMAT_VERSION + 1;
        page.seal();
        file.file.write_all_at(page.bytes(), 0).expect("write");
        match file.load_meta() {
            Err(error @ Error::UnsupportedFormat { .. }) => {
                assert!(
                    error.to_string().contains("a newer mentedb-storage"),
                    "{error}"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn newest_valid_meta_wins_and_a_torn_one_falls_back() {
        let vfs = crate::vfs::MemFs::new();
        vfs.create_dir_all(Path::new("/db")).expect("dir");
        let file = PageFile::open(
            &vfs,
            Path::new("/db/pages.db"),
            crate::vfs::Access::ReadWrite,
        )
        .expect("open");
        assert_eq!(file.load_meta().expect("empty"), None);
        file.write_meta(&meta(1)).expect("write");
        file.write_meta(&meta(2)).expect("write");
        assert_eq!(file.load_meta().expect("load"), Some(meta(2)));
        let mut torn = file.read_raw(PageId(0)).expect("read");
        torn.bytes_mut()[100] ^= 1;
        file.file.write_all_at(torn.bytes(), 0).expect("write");
        assert_eq!(file.load_meta().expect("load"), Some(meta(1)));
    }

    #[test]
    fn a_meta_write_covers_its_prefix_and_reads_ignore_the_tail() {
        let vfs = crate::vfs::MemFs::new();
        vfs.create_dir_all(Path::new("/db")).expect("dir");
        let file = PageFile::open(
            &vfs,
            Path::new("/db/pages.db"),
            crate::vfs::Access::ReadWrite,
        )
        .expect("open");
        file.write_meta(&meta(4)).expect("write");
        assert_eq!(file.load_meta().expect("load"), Some(meta(4)));
        // Garbage past the prefix of both slots (a file system that shows a hole as
        // garbage, or damage): meta reads never look there.
        for slot in [0, PAGE_SIZE as u64] {
            let garbage_at = slot + META_WRITTEN_BYTES as u64 + 17;
            file.file
                .write_all_at(&[0xA5; 9], garbage_at)
                .expect("damage");
        }
        assert_eq!(file.load_meta().expect("load"), Some(meta(4)));
        file.write_meta(&meta(5)).expect("write");
        assert_eq!(file.load_meta().expect("load"), Some(meta(5)));
        let slot = read_meta_slot(&*file.file, PageId(1)).expect("read");
        assert!(
            slot.bytes()[META_WRITTEN_BYTES..]
                .iter()
                .all(|&byte| byte == 0)
        );
    }

    #[test]
    fn rewriting_the_meta_pages_after_a_failed_sync_keeps_them_valid() {
        let vfs = crate::vfs::MemFs::new();
        vfs.create_dir_all(Path::new("/db")).expect("dir");
        let file = PageFile::open(
            &vfs,
            Path::new("/db/pages.db"),
            crate::vfs::Access::ReadWrite,
        )
        .expect("open");
        file.write_meta(&meta(6)).expect("write");
        file.write_meta(&meta(7)).expect("write");
        let before = vfs.file_bytes(Path::new("/db/pages.db")).expect("bytes");
        file.rewrite_meta_slot(PageId(1)).expect("rewrite");
        assert_eq!(vfs.file_bytes(Path::new("/db/pages.db")), Some(before));
        assert_eq!(file.load_meta().expect("load"), Some(meta(7)));
    }
}
