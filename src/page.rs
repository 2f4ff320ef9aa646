//! Pages: the 64 KiB unit of the page file `pages.db`, their header and checksum.
//!
//! # Byte layout of every page (little-endian)
//!
//! ```text
//! offset size field
//!      0    4 crc          CRC32 of bytes 4..PAGE_SIZE (so it covers the page id: a page
//!                          written at the wrong offset fails verification)
//!      4    1 page_type    PageType as u8
//!      5    1 version      PAGE_FORMAT_VERSION
//!      6    2 reserved     zero
//!      8    8 page_id      where this page belongs in the file
//!     16    8 lsn          LSN of the last change applied to this page
//!     24    8 next         overflow: next page of the chain; handle page: the lowest slot
//!                          that may be free; else 0
//!     32    4 count        data: slot count; overflow: bytes used in this page; handles:
//!                          live home slots
//!     36    4 record_end   data: end of the record area (records grow up from 48)
//!     40    4 live_bytes   data: bytes held by live records (holes are the rest)
//!     44    4 reserved     zero
//!     48    . body         PAGE_DATA_SIZE bytes, meaning depends on the page type
//! ```
//!
//! The layout of data pages' body lives in `slotted`; meta pages' in `pager`. A page in
//! memory carries a stale checksum: [`Page::seal`] computes it just before the page is
//! written to `pages.db`, and [`Page::verify`] checks it right after it is read.

use crate::error::DecodeError;
use std::fmt;

/// Size of every page in bytes: 64 KiB.
pub const PAGE_SIZE: usize = 64 * 1024;
/// Size of the page header in bytes.
pub const PAGE_HEADER_SIZE: usize = 48;
/// Bytes available to a page's body after the header.
pub const PAGE_DATA_SIZE: usize = PAGE_SIZE - PAGE_HEADER_SIZE;
/// Version of the page format written by this crate. Version 2 (this one) keeps records in
/// record pages behind handle pages, tracks space in a space map and names records by
/// 128-bit handles with serials; version 1 (mentedb-storage before the space map) kept
/// records in their home slots with per-slot generations and a free list. A page of another
/// version is refused.
pub const PAGE_FORMAT_VERSION: u8 = 3;
/// Largest page id a record handle can name (page ids are kept to 32 bits).
pub const PAGE_ID_MAX: u64 = u32::MAX as u64;

const _: () = assert!(PAGE_SIZE.is_power_of_two());
const _: () = assert!(PAGE_HEADER_SIZE.is_multiple_of(8) && PAGE_HEADER_SIZE < PAGE_SIZE);

const OFFSET_CRC: usize = 0;
const OFFSET_TYPE: usize = 4;
const OFFSET_VERSION: usize = 5;
const OFFSET_PAGE_ID: usize = 8;
const OFFSET_LSN: usize = 16;
const OFFSET_NEXT: usize = 24;
const OFFSET_COUNT: usize = 32;
const OFFSET_RECORD_END: usize = 36;
const OFFSET_LIVE_BYTES: usize = 40;

/// Identifies a page by its index in `pages.db` (byte offset = id × `PAGE_SIZE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PageId(pub u64);

impl PageId {
    /// Byte offset of this page in the page file.
    pub fn offset(self) -> u64 {
        self.0 * PAGE_SIZE as u64
    }
}

impl fmt::Display for PageId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "page {}", self.0)
    }
}

/// Hashes a page id with one multiplication: page ids are dense small integers, and
/// SipHash, the default, was a fifth of a buffer-pool hit. For maps keyed by [`PageId`].
#[derive(Debug, Default, Clone, Copy)]
pub struct PageIdHasher(u64);

impl std::hash::Hasher for PageIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.write_u64(u64::from(*byte));
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = (self.0.rotate_left(29) ^ value).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// The `BuildHasher` of maps keyed by [`PageId`].
pub type PageIdHashing = std::hash::BuildHasherDefault<PageIdHasher>;

/// Log sequence number: the position of a change in the history of the database.
/// Strictly increasing across the life of a database, also across WAL resets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// The largest LSN a decoder accepts from disk: far beyond any real history (2^62
/// commits), and low enough that the arithmetic on it never overflows.
pub const LSN_MAX: u64 = u64::MAX >> 2;

impl Lsn {
    /// The LSN after this one (saturating: decoders reject LSNs above [`LSN_MAX`], so only
    /// a bug could get near the end).
    pub fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }

    /// True if the LSN is one a database can hold (at most [`LSN_MAX`]).
    pub fn is_valid(self) -> bool {
        self.0 <= LSN_MAX
    }
}

/// What a page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PageType {
    /// Never written (all zeros).
    Unused = 0,
    /// One of the two meta pages (0 and 1).
    Meta = 1,
    /// A slotted page of records (a record page).
    Data = 2,
    /// A piece of a record too large for a record page.
    Overflow = 3,
    /// Free: waiting to be reused as any kind of page.
    Free = 4,
    /// A page of the space map (one byte per page: free, or how much room it has).
    SpaceMap = 5,
    /// A handle page: the home slots that record handles name.
    Handles = 6,
}

impl PageType {
    /// Decodes a page type byte.
    pub fn from_u8(byte: u8) -> Option<PageType> {
        match byte {
            0 => Some(PageType::Unused),
            1 => Some(PageType::Meta),
            2 => Some(PageType::Data),
            3 => Some(PageType::Overflow),
            4 => Some(PageType::Free),
            5 => Some(PageType::SpaceMap),
            6 => Some(PageType::Handles),
            _ => None,
        }
    }
}

/// Bytes at the start of a stored page that say which version of which page it is:
/// checksum, type, format version, reserved, page id and LSN.
pub const PAGE_IDENTITY_SIZE: usize = OFFSET_LSN + size_of::<u64>();

const _: () = assert!(PAGE_IDENTITY_SIZE == 24 && PAGE_IDENTITY_SIZE <= PAGE_HEADER_SIZE);

/// The type, id and LSN named by the first [`PAGE_IDENTITY_SIZE`] bytes of a stored page,
/// or `None` if its type or format version is unknown. Not a verification: the checksum
/// covers the whole page and is not checked here.
pub fn page_identity(prefix: &[u8; PAGE_IDENTITY_SIZE]) -> Option<(PageType, PageId, Lsn)> {
    if prefix[OFFSET_VERSION] != PAGE_FORMAT_VERSION {
        return None;
    }
    let page_type = PageType::from_u8(prefix[OFFSET_TYPE])?;
    let field = |offset: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&prefix[offset..offset + 8]);
        u64::from_le_bytes(bytes)
    };
    Some((
        page_type,
        PageId(field(OFFSET_PAGE_ID)),
        Lsn(field(OFFSET_LSN)),
    ))
}

/// The decoded fixed header of a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageHeader {
    /// Stored checksum (valid only on a sealed page).
    pub crc: u32,
    /// What the page holds.
    pub page_type: PageType,
    /// Where the page belongs.
    pub page_id: PageId,
    /// LSN of the last change applied.
    pub lsn: Lsn,
    /// Next page of an overflow chain or of the free list.
    pub next: PageId,
    /// Slot count (data) or bytes used (overflow).
    pub count: u32,
    /// End of the record area (data pages).
    pub record_end: u32,
    /// Bytes held by live records (data pages).
    pub live_bytes: u32,
}

/// One 64 KiB page in memory.
#[derive(Clone, PartialEq, Eq)]
pub struct Page {
    bytes: Box<[u8; PAGE_SIZE]>,
}

impl fmt::Debug for Page {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Page")
            .field("type", &self.bytes[OFFSET_TYPE])
            .field("id", &self.id())
            .field("lsn", &self.lsn())
            .finish_non_exhaustive()
    }
}

fn zeroed_page_bytes() -> Box<[u8; PAGE_SIZE]> {
    let bytes = vec![0u8; PAGE_SIZE].into_boxed_slice();
    match bytes.try_into() {
        Ok(array) => array,
        Err(_) => unreachable!("a vector of PAGE_SIZE bytes converts to a PAGE_SIZE array"),
    }
}

impl Page {
    /// A page of all zeros (type `Unused`).
    pub fn zeroed() -> Page {
        Page {
            bytes: zeroed_page_bytes(),
        }
    }

    /// A fresh, empty page of `page_type` for `page_id`.
    pub fn new(page_id: PageId, page_type: PageType) -> Page {
        let mut page = Page::zeroed();
        page.bytes[OFFSET_TYPE] = page_type as u8;
        page.bytes[OFFSET_VERSION] = PAGE_FORMAT_VERSION;
        page.put_u64(OFFSET_PAGE_ID, page_id.0);
        if page_type == PageType::Data {
            page.set_record_end(PAGE_HEADER_SIZE as u32);
        }
        page
    }

    /// Wraps raw bytes without checking them; call [`Page::verify`] on bytes from disk.
    pub fn from_bytes(bytes: &[u8]) -> Result<Page, DecodeError> {
        if bytes.len() != PAGE_SIZE {
            return Err(DecodeError::new(format!(
                "page image has {} bytes, expected {PAGE_SIZE}",
                bytes.len()
            )));
        }
        let mut page = Page::zeroed();
        page.bytes.copy_from_slice(bytes);
        Ok(page)
    }

    /// The page's bytes.
    pub fn bytes(&self) -> &[u8; PAGE_SIZE] {
        &self.bytes
    }

    /// The page's bytes, for writers in this crate.
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8; PAGE_SIZE] {
        &mut self.bytes
    }

    pub(crate) fn get_u32(&self, offset: usize) -> u32 {
        let mut raw = [0u8; 4];
        raw.copy_from_slice(&self.bytes[offset..offset + 4]);
        u32::from_le_bytes(raw)
    }

    pub(crate) fn get_u64(&self, offset: usize) -> u64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&self.bytes[offset..offset + 8]);
        u64::from_le_bytes(raw)
    }

    pub(crate) fn get_u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    pub(crate) fn put_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn put_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    pub(crate) fn put_u64(&mut self, offset: usize, value: u64) {
        self.bytes[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
    }

    /// The page type, or `None` for an unknown type byte.
    pub fn page_type(&self) -> Option<PageType> {
        PageType::from_u8(self.bytes[OFFSET_TYPE])
    }

    /// The page id stored in the header.
    pub fn id(&self) -> PageId {
        PageId(self.get_u64(OFFSET_PAGE_ID))
    }

    /// LSN of the last change applied to this page.
    pub fn lsn(&self) -> Lsn {
        Lsn(self.get_u64(OFFSET_LSN))
    }

    /// Records that the change with `lsn` has been applied.
    pub fn set_lsn(&mut self, lsn: Lsn) {
        self.put_u64(OFFSET_LSN, lsn.0);
    }

    /// Next page in an overflow chain or the free list (0 = none).
    pub fn next(&self) -> PageId {
        PageId(self.get_u64(OFFSET_NEXT))
    }

    /// Sets the next page of a chain.
    pub fn set_next(&mut self, next: PageId) {
        self.put_u64(OFFSET_NEXT, next.0);
    }

    /// Slot count (data pages) or used bytes (overflow pages).
    pub fn count(&self) -> u32 {
        self.get_u32(OFFSET_COUNT)
    }

    pub(crate) fn set_count(&mut self, count: u32) {
        self.put_u32(OFFSET_COUNT, count);
    }

    pub(crate) fn record_end(&self) -> u32 {
        self.get_u32(OFFSET_RECORD_END)
    }

    pub(crate) fn set_record_end(&mut self, end: u32) {
        self.put_u32(OFFSET_RECORD_END, end);
    }

    pub(crate) fn live_bytes(&self) -> u32 {
        self.get_u32(OFFSET_LIVE_BYTES)
    }

    pub(crate) fn set_live_bytes(&mut self, bytes: u32) {
        self.put_u32(OFFSET_LIVE_BYTES, bytes);
    }

    /// Decodes the header.
    pub fn header(&self) -> Result<PageHeader, DecodeError> {
        let type_byte = self.bytes[OFFSET_TYPE];
        let page_type = PageType::from_u8(type_byte)
            .ok_or_else(|| DecodeError::new(format!("unknown page type {type_byte}")))?;
        Ok(PageHeader {
            crc: self.get_u32(OFFSET_CRC),
            page_type,
            page_id: self.id(),
            lsn: self.lsn(),
            next: self.next(),
            count: self.count(),
            record_end: self.record_end(),
            live_bytes: self.live_bytes(),
        })
    }

    /// The checksum the page's current contents should carry.
    pub fn compute_crc(&self) -> u32 {
        crc32fast::hash(&self.bytes[OFFSET_CRC + 4..])
    }

    /// Stores the checksum; call right before writing the page to disk.
    pub fn seal(&mut self) {
        let crc = self.compute_crc();
        self.put_u32(OFFSET_CRC, crc);
    }

    /// Checks a page read from disk: checksum, version, type and that it is `expected` page.
    /// An all-zero page (never written) passes as `Unused`.
    pub fn verify(&self, expected: PageId) -> Result<PageHeader, DecodeError> {
        if self.bytes.iter().all(|&byte| byte == 0) {
            return Ok(PageHeader {
                crc: 0,
                page_type: PageType::Unused,
                page_id: expected,
                lsn: Lsn(0),
                next: PageId(0),
                count: 0,
                record_end: 0,
                live_bytes: 0,
            });
        }
        let stored = self.get_u32(OFFSET_CRC);
        let computed = self.compute_crc();
        if stored != computed {
            return Err(DecodeError::new(format!(
                "page checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
            )));
        }
        let version = self.bytes[OFFSET_VERSION];
        if version != PAGE_FORMAT_VERSION {
            return Err(DecodeError::new(format!(
                "page format version {version}, expected {PAGE_FORMAT_VERSION}"
            )));
        }
        let header = self.header()?;
        if header.page_id != expected {
            return Err(DecodeError::new(format!(
                "misdirected page: header says {}, read at {}",
                header.page_id, expected
            )));
        }
        Ok(header)
    }
}

/// The byte ranges in which `new` differs from `old`, ignoring the checksum and LSN fields
/// (the WAL sets those on redo). Ranges less than 32 bytes apart are merged.
pub fn page_diff(old: &Page, new: &Page) -> Vec<(u32, u32)> {
    const CHUNK: usize = 64;
    const BLOCK: usize = 4096;
    const GAP_MAX: usize = 32;
    const _: () = assert!(OFFSET_LSN + 8 <= CHUNK && BLOCK.is_multiple_of(CHUNK));
    const _: () = assert!(PAGE_SIZE.is_multiple_of(BLOCK));
    let mut ranges: Vec<(u32, u32)> = Vec::new();
    let (old_bytes, new_bytes) = (&old.bytes()[..], &new.bytes()[..]);
    for block_start in (0..PAGE_SIZE).step_by(BLOCK) {
        // A transaction changes a few hundred bytes of a 64 KiB page: one comparison of a
        // whole block skips the unchanged ones (the first block holds the volatile fields,
        // so it always goes chunk by chunk).
        let block = block_start..block_start + BLOCK;
        if block_start > 0 && old_bytes[block.clone()] == new_bytes[block.clone()] {
            continue;
        }
        for chunk_start in block.step_by(CHUNK) {
            let mut old_chunk = [0u8; CHUNK];
            let mut new_chunk = [0u8; CHUNK];
            old_chunk.copy_from_slice(&old_bytes[chunk_start..chunk_start + CHUNK]);
            new_chunk.copy_from_slice(&new_bytes[chunk_start..chunk_start + CHUNK]);
            if chunk_start == 0 {
                for volatile in [OFFSET_CRC..OFFSET_CRC + 4, OFFSET_LSN..OFFSET_LSN + 8] {
                    old_chunk[volatile.clone()].fill(0);
                    new_chunk[volatile].fill(0);
                }
            }
            if old_chunk == new_chunk {
                continue;
            }
            let first = (0..CHUNK)
                .find(|&at| old_chunk[at] != new_chunk[at])
                .unwrap_or(0);
            let last = (0..CHUNK)
                .rfind(|&at| old_chunk[at] != new_chunk[at])
                .unwrap_or(0);
            let (start, end) = (chunk_start + first, chunk_start + last + 1);
            match ranges.last_mut() {
                Some(previous) if start <= previous.1 as usize + GAP_MAX => previous.1 = end as u32,
                _ => ranges.push((start as u32, end as u32)),
            }
        }
    }
    ranges
}

/// Encodes the ranges of `page` named by `ranges` as a WAL delta payload:
/// `count u32`, then per range `offset u32, len u32, bytes`.
pub fn encode_delta(page: &Page, ranges: &[(u32, u32)]) -> Vec<u8> {
    let bytes_total: usize = ranges
        .iter()
        .map(|(start, end)| (end - start) as usize + 8)
        .sum();
    let mut out = Vec::with_capacity(4 + bytes_total);
    out.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
    for &(start, end) in ranges {
        assert!(
            start < end && end as usize <= PAGE_SIZE,
            "delta range out of the page"
        );
        out.extend_from_slice(&start.to_le_bytes());
        out.extend_from_slice(&(end - start).to_le_bytes());
        out.extend_from_slice(&page.bytes()[start as usize..end as usize]);
    }
    out
}

/// Size of the delta payload [`encode_delta`] would produce.
pub fn delta_len(ranges: &[(u32, u32)]) -> usize {
    4 + ranges
        .iter()
        .map(|(start, end)| (end - start) as usize + 8)
        .sum::<usize>()
}

/// Applies a delta payload to `page`. Every range is bounds-checked before any byte is
/// written, so a damaged payload leaves the page unchanged and returns an error.
pub fn apply_delta(page: &mut Page, payload: &[u8]) -> Result<(), DecodeError> {
    let ranges = parse_delta(payload)?;
    for (offset, bytes) in ranges {
        page.bytes_mut()[offset..offset + bytes.len()].copy_from_slice(bytes);
    }
    Ok(())
}

fn parse_delta(payload: &[u8]) -> Result<Vec<(usize, &[u8])>, DecodeError> {
    let read_u32 = |at: usize| -> Result<usize, DecodeError> {
        let raw = payload
            .get(at..at + 4)
            .ok_or_else(|| DecodeError::new("delta payload cut short"))?;
        Ok(u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]) as usize)
    };
    let count = read_u32(0)?;
    if count > PAGE_SIZE {
        return Err(DecodeError::new(format!("delta has {count} ranges")));
    }
    let mut ranges = Vec::with_capacity(count);
    let mut cursor = 4;
    for _ in 0..count {
        let offset = read_u32(cursor)?;
        let len = read_u32(cursor + 4)?;
        cursor += 8;
        let in_page = offset.checked_add(len).is_some_and(|end| end <= PAGE_SIZE);
        let bytes = payload.get(cursor..cursor.saturating_add(len));
        match bytes {
            Some(bytes) if in_page => ranges.push((offset, bytes)),
            _ => {
                return Err(DecodeError::new(format!(
                    "delta range {offset}+{len} is invalid"
                )));
            }
        }
        cursor += len;
    }
    if cursor != payload.len() {
        return Err(DecodeError::new("delta payload has trailing bytes"));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_page_verifies_and_a_flipped_bit_does_not() {
        let mut page = Page::new(PageId(7), PageType::Data);
        page.set_lsn(Lsn(42));
        page.seal();
        let header = page.verify(PageId(7)).expect("sealed page verifies");
        assert_eq!(header.page_type, PageType::Data);
        assert_eq!(header.lsn, Lsn(42));
        for bit_offset in [4usize, 9, 100, PAGE_SIZE - 1] {
            let mut damaged = page.clone();
            damaged.bytes_mut()[bit_offset] ^= 0x10;
            assert!(damaged.verify(PageId(7)).is_err(), "flip at {bit_offset}");
        }
    }

    #[test]
    fn misdirected_page_fails_verification() {
        let mut page = Page::new(PageId(3), PageType::Overflow);
        page.seal();
        let error = page.verify(PageId(4)).expect_err("wrong place");
        assert!(error.0.contains("misdirected"));
    }

    #[test]
    fn all_zero_page_reads_as_unused() {
        let header = Page::zeroed().verify(PageId(9)).expect("zero page");
        assert_eq!(header.page_type, PageType::Unused);
    }

    #[test]
    fn from_bytes_rejects_wrong_length() {
        assert!(Page::from_bytes(&[0u8; 100]).is_err());
    }

    #[test]
    fn diff_finds_changed_ranges_and_skips_volatile_fields() {
        let old = Page::new(PageId(5), PageType::Data);
        let mut new = old.clone();
        new.set_lsn(Lsn(99));
        new.seal();
        assert!(page_diff(&old, &new).is_empty());
        new.bytes_mut()[1000] = 1;
        new.bytes_mut()[1010] = 2;
        new.bytes_mut()[60000] = 3;
        assert_eq!(page_diff(&old, &new), vec![(1000, 1011), (60000, 60001)]);
        let ranges = page_diff(&old, &new);
        let payload = encode_delta(&new, &ranges);
        assert_eq!(payload.len(), delta_len(&ranges));
        let mut rebuilt = old.clone();
        apply_delta(&mut rebuilt, &payload).expect("applies");
        assert_eq!(page_diff(&rebuilt, &new), vec![]);
    }

    #[test]
    fn diff_of_scattered_changes_rebuilds_the_page_and_covers_every_changed_byte() {
        let old = Page::new(PageId(5), PageType::Data);
        // Changes on both sides of 4 KiB block edges, adjacent chunks and lone bytes.
        let spots = [
            64usize, 4095, 4096, 4100, 8190, 8191, 12_288, 20_000, 20_040, 65_535,
        ];
        for take in 1..spots.len() {
            let mut new = old.clone();
            for (index, &at) in spots.iter().enumerate().filter(|(i, _)| i % take == 0) {
                new.bytes_mut()[at] = index as u8 + 1;
            }
            let ranges = page_diff(&old, &new);
            for (at, (a, b)) in old.bytes().iter().zip(new.bytes().iter()).enumerate() {
                let volatile = (OFFSET_CRC..OFFSET_CRC + 4).contains(&at)
                    || (OFFSET_LSN..OFFSET_LSN + 8).contains(&at);
                if a != b && !volatile {
                    let covered = ranges
                        .iter()
                        .any(|&(start, end)| (start as usize..end as usize).contains(&at));
                    assert!(
                        covered,
                        "byte {at} changed but no range covers it: {ranges:?}"
                    );
                }
            }
            let mut rebuilt = old.clone();
            apply_delta(&mut rebuilt, &encode_delta(&new, &ranges)).expect("applies");
            assert!(page_diff(&rebuilt, &new).is_empty());
        }
    }

    #[test]
    fn damaged_delta_is_an_error_and_changes_nothing() {
        let mut page = Page::new(PageId(5), PageType::Data);
        let before = page.clone();
        let mut payload = encode_delta(&before, &[(100, 110)]);
        payload[4..8].copy_from_slice(&(PAGE_SIZE as u32 - 2).to_le_bytes());
        assert!(apply_delta(&mut page, &payload).is_err());
        assert!(apply_delta(&mut page, &payload[..6]).is_err());
        assert_eq!(page, before);
    }
}
