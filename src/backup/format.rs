//! The backup file format: pure encode/decode functions, no I/O.
//!
//! A backup is one file, read and written front to back (so it streams in bounded memory):
//!
//! ```text
//! header    40 B   magic "MENTEBAK", version u32, page size u32, page count u64,
//!                  source LSN u64, reserved u32, CRC32 of the 36 bytes before
//! chunk × page count, page 0 first:
//!   header  24 B   magic "PAGE", page id u64, stored length u32, CRC32 of the stored
//!                  bytes u32, CRC32 of the 20 bytes before u32
//!   body           the page (64 KiB) compressed as one LZ4 block
//! manifest  64 B   magic "MANIFEST", version u32, file count u32 (1), source LSN u64,
//!                  page count u64, size of `pages.db` u64, CRC32 of `pages.db` u32,
//!                  meta generation u64, offset of the manifest u64, CRC32 of the 60
//!                  bytes before
//! ```
//!
//! All integers little-endian. The snapshot is the page file of a database at one commit
//! point with the WAL folded in: its meta page records that commit as its checkpoint, so a
//! restored directory needs no WAL. Every length is bounded before it is used: a crafted
//! file can make decoding fail, never allocate more than one page or panic.

use crate::error::DecodeError;
use crate::page::{Lsn, PAGE_SIZE};

/// Magic bytes at the start of a backup file.
pub const BACKUP_MAGIC: [u8; 8] = *b"MENTEBAK";
/// The format version this code writes and reads.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
/// Bytes of the file header.
pub const HEADER_BYTES: usize = 40;
/// Bytes of a chunk header.
pub const CHUNK_HEADER_BYTES: usize = 24;
/// Bytes of the manifest.
pub const MANIFEST_BYTES: usize = 64;
/// Most pages a backup may hold (2^32 pages = 256 TiB).
pub const BACKUP_PAGES_MAX: u64 = 1 << 32;
/// Largest stored (compressed) page: what LZ4 produces for an incompressible page.
pub const STORED_PAGE_MAX: usize = PAGE_SIZE + PAGE_SIZE / 255 + 16;

const CHUNK_MAGIC: [u8; 4] = *b"PAGE";
const MANIFEST_MAGIC: [u8; 8] = *b"MANIFEST";

/// The file header: what the backup holds, known before the first page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupHeader {
    /// Pages in the snapshot (meta pages included).
    pub page_count: u64,
    /// The last commit the snapshot contains.
    pub source_lsn: Lsn,
}

/// A chunk header: which page follows and how it is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkHeader {
    /// The page the chunk holds.
    pub page: u64,
    /// Bytes of the compressed page that follow the header.
    pub stored_len: u32,
    /// CRC32 of those bytes.
    pub body_crc: u32,
}

/// The manifest at the end: sizes and checksums of what the backup restores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Manifest {
    /// The last commit the snapshot contains.
    pub source_lsn: Lsn,
    /// Pages in the snapshot.
    pub page_count: u64,
    /// Bytes of the restored `pages.db`.
    pub page_file_bytes: u64,
    /// CRC32 of the restored `pages.db`, all of it.
    pub page_file_crc: u32,
    /// Generation of the snapshot's meta page.
    pub meta_generation: u64,
    /// Offset of the manifest in the backup file (header and chunks before it).
    pub manifest_offset: u64,
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Encodes the file header.
pub fn encode_header(header: &BackupHeader) -> [u8; HEADER_BYTES] {
    let mut bytes = [0u8; HEADER_BYTES];
    bytes[..8].copy_from_slice(&BACKUP_MAGIC);
    bytes[8..12].copy_from_slice(&BACKUP_FORMAT_VERSION.to_le_bytes());
    bytes[12..16].copy_from_slice(&(PAGE_SIZE as u32).to_le_bytes());
    bytes[16..24].copy_from_slice(&header.page_count.to_le_bytes());
    bytes[24..32].copy_from_slice(&header.source_lsn.0.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..36]);
    bytes[36..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes and checks the file header.
pub fn decode_header(bytes: &[u8; HEADER_BYTES]) -> Result<BackupHeader, DecodeError> {
    if bytes[..8] != BACKUP_MAGIC {
        return Err(DecodeError::new("not a mentedb-storage backup (bad magic)"));
    }
    if u32_at(bytes, 36) != crc32fast::hash(&bytes[..36]) {
        return Err(DecodeError::new("backup header checksum mismatch"));
    }
    let version = u32_at(bytes, 8);
    if version != BACKUP_FORMAT_VERSION {
        return Err(DecodeError::new(format!(
            "backup format version {version}; this build reads version {BACKUP_FORMAT_VERSION}"
        )));
    }
    let page_size = u32_at(bytes, 12);
    if page_size as usize != PAGE_SIZE {
        return Err(DecodeError::new(format!(
            "backup of {page_size}-byte pages; this build uses {PAGE_SIZE}"
        )));
    }
    let page_count = u64_at(bytes, 16);
    if !(2..=BACKUP_PAGES_MAX).contains(&page_count) {
        return Err(DecodeError::new(format!(
            "backup claims {page_count} pages (2 to {BACKUP_PAGES_MAX})"
        )));
    }
    let source_lsn = Lsn(u64_at(bytes, 24));
    if !source_lsn.is_valid() {
        return Err(DecodeError::new(format!(
            "source LSN {} over the limit",
            source_lsn.0
        )));
    }
    Ok(BackupHeader {
        page_count,
        source_lsn,
    })
}

/// Compresses one page into a chunk: header and body.
pub fn encode_chunk(page: u64, page_bytes: &[u8; PAGE_SIZE], out: &mut Vec<u8>) {
    let body = lz4_flex::block::compress(page_bytes);
    debug_assert!(body.len() <= STORED_PAGE_MAX);
    let mut header = [0u8; CHUNK_HEADER_BYTES];
    header[..4].copy_from_slice(&CHUNK_MAGIC);
    header[4..12].copy_from_slice(&page.to_le_bytes());
    header[12..16].copy_from_slice(&(body.len() as u32).to_le_bytes());
    header[16..20].copy_from_slice(&crc32fast::hash(&body).to_le_bytes());
    let crc = crc32fast::hash(&header[..20]);
    header[20..].copy_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(&body);
}

/// Decodes and checks a chunk header (not its body).
pub fn decode_chunk_header(bytes: &[u8; CHUNK_HEADER_BYTES]) -> Result<ChunkHeader, DecodeError> {
    if bytes[..4] != CHUNK_MAGIC {
        return Err(DecodeError::new("chunk header has a bad magic"));
    }
    if u32_at(bytes, 20) != crc32fast::hash(&bytes[..20]) {
        return Err(DecodeError::new("chunk header checksum mismatch"));
    }
    let stored_len = u32_at(bytes, 12);
    if stored_len == 0 || stored_len as usize > STORED_PAGE_MAX {
        return Err(DecodeError::new(format!(
            "chunk claims {stored_len} stored bytes (1 to {STORED_PAGE_MAX})"
        )));
    }
    Ok(ChunkHeader {
        page: u64_at(bytes, 4),
        stored_len,
        body_crc: u32_at(bytes, 16),
    })
}

/// Checks a chunk body against its header and decompresses it into `page`.
pub fn decode_chunk_body(
    header: &ChunkHeader,
    body: &[u8],
    page: &mut [u8; PAGE_SIZE],
) -> Result<(), DecodeError> {
    if body.len() != header.stored_len as usize {
        return Err(DecodeError::new(format!(
            "chunk body of {} bytes, header says {}",
            body.len(),
            header.stored_len
        )));
    }
    if crc32fast::hash(body) != header.body_crc {
        return Err(DecodeError::new(format!(
            "chunk of page {} fails its checksum",
            header.page
        )));
    }
    match lz4_flex::block::decompress_into(body, page) {
        Ok(PAGE_SIZE) => Ok(()),
        Ok(len) => Err(DecodeError::new(format!(
            "chunk of page {} decompresses to {len} bytes, not {PAGE_SIZE}",
            header.page
        ))),
        Err(error) => Err(DecodeError::new(format!(
            "chunk of page {} does not decompress: {error}",
            header.page
        ))),
    }
}

/// Encodes the manifest.
pub fn encode_manifest(manifest: &Manifest) -> [u8; MANIFEST_BYTES] {
    let mut bytes = [0u8; MANIFEST_BYTES];
    bytes[..8].copy_from_slice(&MANIFEST_MAGIC);
    bytes[8..12].copy_from_slice(&BACKUP_FORMAT_VERSION.to_le_bytes());
    bytes[12..16].copy_from_slice(&1u32.to_le_bytes());
    bytes[16..24].copy_from_slice(&manifest.source_lsn.0.to_le_bytes());
    bytes[24..32].copy_from_slice(&manifest.page_count.to_le_bytes());
    bytes[32..40].copy_from_slice(&manifest.page_file_bytes.to_le_bytes());
    bytes[40..44].copy_from_slice(&manifest.page_file_crc.to_le_bytes());
    bytes[44..52].copy_from_slice(&manifest.meta_generation.to_le_bytes());
    bytes[52..60].copy_from_slice(&manifest.manifest_offset.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes and checks the manifest (its own fields; agreement with the header and the
/// chunks is the reader's job).
pub fn decode_manifest(bytes: &[u8; MANIFEST_BYTES]) -> Result<Manifest, DecodeError> {
    if bytes[..8] != MANIFEST_MAGIC {
        return Err(DecodeError::new("manifest has a bad magic"));
    }
    if u32_at(bytes, 60) != crc32fast::hash(&bytes[..60]) {
        return Err(DecodeError::new("manifest checksum mismatch"));
    }
    let version = u32_at(bytes, 8);
    if version != BACKUP_FORMAT_VERSION {
        return Err(DecodeError::new(format!(
            "manifest version {version}, expected {BACKUP_FORMAT_VERSION}"
        )));
    }
    let files = u32_at(bytes, 12);
    if files != 1 {
        return Err(DecodeError::new(format!(
            "manifest lists {files} files, expected 1"
        )));
    }
    Ok(Manifest {
        source_lsn: Lsn(u64_at(bytes, 16)),
        page_count: u64_at(bytes, 24),
        page_file_bytes: u64_at(bytes, 32),
        page_file_crc: u32_at(bytes, 40),
        meta_generation: u64_at(bytes, 44),
        manifest_offset: u64_at(bytes, 52),
    })
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
