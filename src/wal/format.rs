//! Pure encoding, decoding and scanning of WAL bytes. No I/O here, so fuzz targets and
//! tests call these functions directly.
//!
//! # Byte layout of `wal.log` (little-endian)
//!
//! Header, [`WAL_HEADER_SIZE`] bytes:
//! ```text
//!  0  8 magic     b"MENTEWAL"
//!  8  4 version   WAL_FORMAT_VERSION
//! 12  4 salt      random, new at every reset: frames of an older life of the file
//!                 carry another salt and are never taken for current ones
//! 16  8 base_lsn  the first frame has LSN base_lsn + 1
//! 24  4 crc       CRC32 of bytes 0..24
//! 28  4 reserved  zero
//! ```
//! Then frames, each starting at an offset that is a multiple of [`FRAME_ALIGN`]:
//! ```text
//!  0  4 payload_len  bytes of payload as stored
//!  4  4 crc          CRC32 of salt (4 bytes) followed by frame bytes 8..40+payload_len
//!  8  8 lsn          previous frame's LSN + 1
//! 16  8 durable_lsn  highest LSN known durable when this frame was written
//! 24  8 page         the page an image or delta applies to (0 for commits)
//! 32  4 prev_crc     crc of the previous frame (the header's crc for the first one)
//! 36  1 kind         WalEntryType
//! 37  1 codec        0 = raw, 1 = LZ4 block preceded by the raw length (u32)
//! 38  2 reserved     zero
//! 40  . payload      padded with zeros to FRAME_ALIGN
//! ```
//! Payloads: a page image is the 64 KiB page; a delta is the changed byte ranges of a page
//! (`page::encode_delta`); a commit is the allocation state after the transaction
//! (`pager::AllocState`).
//!
//! # Where the log ends
//! The log is the longest chain of frames that each verify (CRC, salt, `prev_crc` link,
//! LSN + 1). Only frames up to the last `Commit` count. A frame that fails ends the log:
//! normally a torn tail of unsynced writes after a crash. But if some later, intact frame of
//! the same salt claims (`durable_lsn`) that the failing frame's LSN was already durable, a
//! synced frame was damaged: that is reported as corruption, not dropped silently. A frame
//! claims what its writer synced and what any process recorded durable in `wal.shm`. The
//! last synced frames have no later frame; the engine proves them from `wal.shm` until a
//! power loss and, in `SyncMode::Sealed`, from `wal.seal` after one (`engine::seal`).
//!
//! # Preallocated space
//! The writer keeps zeros written (and synced) ahead of the log, so that a commit
//! overwrites blocks the file already has and its `fdatasync` writes no inode. A frame
//! header of zeros is never a valid frame (LSNs start at 1), so a chain that stops at one
//! stopped at that space ([`ScanStop::Preallocated`]): decided by the 40 header bytes, with
//! no need to read further. A torn frame there has a header of zeros too (its first piece
//! never landed): it was not synced, or a later frame proves otherwise. The corruption
//! probe still runs after the zeros when a scan reads the log as the disk left it (at
//! open): a synced write can be missing there, as when a failed `fdatasync` dropped it and
//! the process died before it could leave the mark that makes the next open rewrite the
//! log (the simulator's seed 713). A process catching up with the live log (the page cache,
//! which never shows such a hole) skips it: that is every writer's scan before its commit.

use crate::error::DecodeError;
use crate::page::{Lsn, PAGE_SIZE, PageId};

/// Bytes of the WAL file header.
pub const WAL_HEADER_SIZE: usize = 32;
/// Bytes of a frame header.
pub const FRAME_HEADER_SIZE: usize = 40;
/// Frames start at multiples of this.
pub const FRAME_ALIGN: usize = 8;
/// Largest decoded payload of one frame: a page image or delta plus its page id and framing.
pub const FRAME_PAYLOAD_MAX: usize = PAGE_SIZE + 1024;
/// Magic bytes at the start of `wal.log`.
pub const WAL_MAGIC: [u8; 8] = *b"MENTEWAL";
/// Version of the WAL format.
pub const WAL_FORMAT_VERSION: u32 = 1;
/// How far past a failing frame the scan looks for evidence of corruption.
pub const CORRUPTION_PROBE_BYTES_MAX: usize = 4 * 1024 * 1024;

const CODEC_RAW: u8 = 0;
const CODEC_LZ4: u8 = 1;

const _: () = assert!(WAL_HEADER_SIZE.is_multiple_of(FRAME_ALIGN));
const _: () = assert!(FRAME_HEADER_SIZE.is_multiple_of(FRAME_ALIGN));

/// The kind of a WAL frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum WalEntryType {
    /// A full page image: payload is the page id and the 64 KiB page.
    PageImage = 1,
    /// Changed byte ranges of a page: payload is the page id and the ranges.
    PageDelta = 2,
    /// Ends a transaction; payload is the database meta state after it.
    Commit = 3,
}

impl WalEntryType {
    /// Decodes a kind byte.
    pub fn from_u8(byte: u8) -> Option<WalEntryType> {
        match byte {
            1 => Some(WalEntryType::PageImage),
            2 => Some(WalEntryType::PageDelta),
            3 => Some(WalEntryType::Commit),
            _ => None,
        }
    }
}

/// The decoded WAL header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalHeader {
    /// Salt of this life of the log.
    pub salt: u32,
    /// LSN just before the first frame.
    pub base_lsn: Lsn,
    /// CRC of the header; the first frame's `prev_crc`.
    pub crc: u32,
}

/// Encodes a WAL header.
pub fn encode_header(salt: u32, base_lsn: Lsn) -> [u8; WAL_HEADER_SIZE] {
    let mut bytes = [0u8; WAL_HEADER_SIZE];
    bytes[0..8].copy_from_slice(&WAL_MAGIC);
    bytes[8..12].copy_from_slice(&WAL_FORMAT_VERSION.to_le_bytes());
    bytes[12..16].copy_from_slice(&salt.to_le_bytes());
    bytes[16..24].copy_from_slice(&base_lsn.0.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn le_u32(bytes: &[u8], at: usize) -> u32 {
    let mut raw = [0u8; 4];
    raw.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(raw)
}

fn le_u64(bytes: &[u8], at: usize) -> u64 {
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(raw)
}

/// Decodes and checks a WAL header.
pub fn decode_header(bytes: &[u8]) -> Result<WalHeader, DecodeError> {
    if bytes.len() < WAL_HEADER_SIZE {
        return Err(DecodeError::new(format!(
            "WAL header needs {WAL_HEADER_SIZE} bytes, file has {}",
            bytes.len()
        )));
    }
    if bytes[0..8] != WAL_MAGIC {
        return Err(DecodeError::new("not a mentedb WAL (bad magic)"));
    }
    let stored = le_u32(bytes, 24);
    let computed = crc32fast::hash(&bytes[0..24]);
    if stored != computed {
        return Err(DecodeError::new(format!(
            "WAL header checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let version = le_u32(bytes, 8);
    if version != WAL_FORMAT_VERSION {
        return Err(DecodeError::new(format!(
            "WAL format version {version}, expected {WAL_FORMAT_VERSION}"
        )));
    }
    let base_lsn = Lsn(le_u64(bytes, 16));
    if !base_lsn.is_valid() {
        return Err(DecodeError::new(format!(
            "WAL base LSN {} over the limit",
            base_lsn.0
        )));
    }
    Ok(WalHeader {
        salt: le_u32(bytes, 12),
        base_lsn,
        crc: stored,
    })
}

/// What to put in a frame.
#[derive(Debug, Clone, Copy)]
pub struct FrameSpec<'a> {
    /// The frame's LSN.
    pub lsn: Lsn,
    /// Highest LSN known durable now.
    pub durable_lsn: Lsn,
    /// The frame kind.
    pub kind: WalEntryType,
    /// The page an image or delta applies to (0 for commits).
    pub page: PageId,
    /// The uncompressed payload.
    pub payload: &'a [u8],
}

/// Rounds `len` up to a multiple of [`FRAME_ALIGN`].
pub fn align_up(len: usize) -> usize {
    len.div_ceil(FRAME_ALIGN) * FRAME_ALIGN
}

/// Appends one encoded frame to `out`, returning its CRC (the next frame's `prev_crc`).
/// Payloads that LZ4 shrinks are stored compressed.
pub fn encode_frame(out: &mut Vec<u8>, salt: u32, prev_crc: u32, spec: FrameSpec<'_>) -> u32 {
    assert!(
        spec.payload.len() <= FRAME_PAYLOAD_MAX,
        "frame payload over the limit"
    );
    assert_eq!(out.len() % FRAME_ALIGN, 0, "frames start aligned");
    let start = out.len();
    out.resize(start + FRAME_HEADER_SIZE, 0);
    let compressed = compress_if_smaller(spec.payload);
    let codec = match &compressed {
        Some(bytes) => {
            out.extend_from_slice(&(spec.payload.len() as u32).to_le_bytes());
            out.extend_from_slice(bytes);
            CODEC_LZ4
        }
        None => {
            out.extend_from_slice(spec.payload);
            CODEC_RAW
        }
    };
    let payload_len = out.len() - start - FRAME_HEADER_SIZE;
    let header = &mut out[start..start + FRAME_HEADER_SIZE];
    header[0..4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    header[8..16].copy_from_slice(&spec.lsn.0.to_le_bytes());
    header[16..24].copy_from_slice(&spec.durable_lsn.0.to_le_bytes());
    header[24..32].copy_from_slice(&spec.page.0.to_le_bytes());
    header[32..36].copy_from_slice(&prev_crc.to_le_bytes());
    header[36] = spec.kind as u8;
    header[37] = codec;
    let crc = frame_crc(salt, &out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + align_up(out.len() - start), 0);
    crc
}

/// Most bytes of a payload compressed first to see whether the whole is worth it.
const COMPRESS_SAMPLE_BYTES: usize = 4096;
/// Payloads shorter than this are stored as they are.
const COMPRESS_MIN_BYTES: usize = 256;

/// The payload compressed, if that saves at least 1/16 of it. A sample from its middle (half
/// of it, at most [`COMPRESS_SAMPLE_BYTES`]) is compressed first, and the whole only if the
/// sample shrank by 1/8: a node is mostly its embedding (random floats), which does not
/// compress, and trying cost a single put 12 % of its CPU and a batch of 500 stores 7 %.
fn compress_if_smaller(payload: &[u8]) -> Option<Vec<u8>> {
    if payload.len() < COMPRESS_MIN_BYTES {
        return None;
    }
    let sample_len = (payload.len() / 2).min(COMPRESS_SAMPLE_BYTES);
    if sample_len >= COMPRESS_MIN_BYTES {
        let start = payload.len() / 2 - sample_len / 2;
        let sample = &payload[start..start + sample_len];
        if lz4_flex::block::compress(sample).len() > sample_len * 7 / 8 {
            return None;
        }
    }
    let compressed = lz4_flex::block::compress(payload);
    (compressed.len() + 4 + payload.len() / 16 <= payload.len()).then_some(compressed)
}

/// Rewrites the checksums of a WAL image in place so they verify: the header's CRC, then
/// each frame's CRC and `prev_crc` link, frame after frame, until one's length does not fit.
/// Everything else is left as it is. For fuzzing: crafted logs whose checksums hold reach
/// the decoders behind them. Returns how many frames were sealed.
pub fn reseal_log(bytes: &mut [u8]) -> usize {
    if bytes.len() < WAL_HEADER_SIZE {
        return 0;
    }
    let header_crc = crc32fast::hash(&bytes[0..24]);
    bytes[24..28].copy_from_slice(&header_crc.to_le_bytes());
    let salt = le_u32(bytes, 12);
    let mut prev_crc = header_crc;
    let mut offset = WAL_HEADER_SIZE;
    let mut sealed = 0;
    while let Some(frame) = bytes.get_mut(offset..) {
        if frame.len() < FRAME_HEADER_SIZE {
            break;
        }
        let payload_len = le_u32(frame, 0) as usize;
        let Some(end) = FRAME_HEADER_SIZE
            .checked_add(payload_len)
            .filter(|end| *end <= frame.len())
        else {
            break;
        };
        frame[32..36].copy_from_slice(&prev_crc.to_le_bytes());
        let crc = frame_crc(salt, &frame[8..end]);
        frame[4..8].copy_from_slice(&crc.to_le_bytes());
        prev_crc = crc;
        sealed += 1;
        offset += align_up(end);
    }
    sealed
}

fn frame_crc(salt: u32, covered: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&salt.to_le_bytes());
    hasher.update(covered);
    hasher.finalize()
}

/// A frame that verified on its own (CRC and salt); its place in the chain is checked by
/// the scanner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Offset of the frame in the file.
    pub offset: u64,
    /// Bytes the frame occupies, padding included.
    pub total_len: u32,
    /// The frame's CRC.
    pub crc: u32,
    /// The frame's LSN.
    pub lsn: Lsn,
    /// Highest LSN its writer knew durable.
    pub durable_lsn: Lsn,
    /// The page an image or delta applies to.
    pub page: PageId,
    /// CRC of the frame before it.
    pub prev_crc: u32,
    /// The kind.
    pub kind: WalEntryType,
}

/// Parses the frame at the start of `bytes` (which sits at `offset` in the file), checking
/// its length bounds, CRC with `salt`, and kind. `Err` means: not a valid frame here.
pub fn parse_frame(bytes: &[u8], offset: u64, salt: u32) -> Result<FrameInfo, DecodeError> {
    if bytes.len() < FRAME_HEADER_SIZE {
        return Err(DecodeError::new("frame header cut short"));
    }
    let payload_len = le_u32(bytes, 0) as usize;
    if payload_len > FRAME_PAYLOAD_MAX + 4 {
        return Err(DecodeError::new(format!(
            "frame payload length {payload_len} over the limit"
        )));
    }
    let end = FRAME_HEADER_SIZE + payload_len;
    if bytes.len() < end {
        return Err(DecodeError::new("frame payload cut short"));
    }
    let stored = le_u32(bytes, 4);
    let computed = frame_crc(salt, &bytes[8..end]);
    if stored != computed {
        return Err(DecodeError::new(format!(
            "frame checksum mismatch: stored {stored:#010x}, computed {computed:#010x}"
        )));
    }
    let kind = WalEntryType::from_u8(bytes[36])
        .ok_or_else(|| DecodeError::new(format!("unknown frame kind {}", bytes[36])))?;
    if bytes[37] != CODEC_RAW && bytes[37] != CODEC_LZ4 {
        return Err(DecodeError::new(format!(
            "unknown frame codec {}",
            bytes[37]
        )));
    }
    if !Lsn(le_u64(bytes, 8)).is_valid() || !Lsn(le_u64(bytes, 16)).is_valid() {
        return Err(DecodeError::new("frame LSN over the limit"));
    }
    Ok(FrameInfo {
        offset,
        total_len: align_up(end) as u32,
        crc: stored,
        lsn: Lsn(le_u64(bytes, 8)),
        durable_lsn: Lsn(le_u64(bytes, 16)),
        page: PageId(le_u64(bytes, 24)),
        prev_crc: le_u32(bytes, 32),
        kind,
    })
}

/// Decodes (decompressing if needed) the payload of a frame whose bytes start `bytes`;
/// the frame must have passed [`parse_frame`].
pub fn frame_payload(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if bytes.len() < FRAME_HEADER_SIZE {
        return Err(DecodeError::new("frame header cut short"));
    }
    let payload_len = le_u32(bytes, 0) as usize;
    let stored = bytes
        .get(FRAME_HEADER_SIZE..FRAME_HEADER_SIZE + payload_len)
        .ok_or_else(|| DecodeError::new("frame payload cut short"))?;
    match bytes[37] {
        CODEC_RAW => Ok(stored.to_vec()),
        CODEC_LZ4 => decompress_bounded(stored),
        codec => Err(DecodeError::new(format!("unknown frame codec {codec}"))),
    }
}

fn decompress_bounded(stored: &[u8]) -> Result<Vec<u8>, DecodeError> {
    if stored.len() < 4 {
        return Err(DecodeError::new("compressed payload lacks its length"));
    }
    let raw_len = le_u32(stored, 0) as usize;
    if raw_len > FRAME_PAYLOAD_MAX {
        return Err(DecodeError::new(format!(
            "decompressed length {raw_len} over the limit"
        )));
    }
    let mut out = vec![0u8; raw_len];
    let written = lz4_flex::block::decompress_into(&stored[4..], &mut out)
        .map_err(|error| DecodeError::new(format!("LZ4 payload does not decode: {error}")))?;
    if written != raw_len {
        return Err(DecodeError::new(format!(
            "LZ4 payload decodes to {written} bytes, header says {raw_len}"
        )));
    }
    Ok(out)
}

/// Why a scan stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanStop {
    /// The bytes ended exactly after the last frame.
    End,
    /// The preallocated zeros start after the last frame (a frame header of zeros).
    Preallocated,
    /// A frame failed to verify: a torn tail (expected after a crash), with the reason.
    TornTail(String),
    /// A frame that a later frame proves durable failed to verify.
    Corruption {
        /// Offset of the damaged frame.
        offset: u64,
        /// What was wrong.
        detail: String,
    },
}

/// Result of scanning frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// Every frame of the verified chain, committed or not.
    pub frames: Vec<FrameInfo>,
    /// Number of leading `frames` that belong to committed transactions.
    pub committed_frames: usize,
    /// Offset just past the last committed frame (where the next append goes).
    pub committed_end: u64,
    /// CRC of the last committed frame (the next frame's `prev_crc`).
    pub committed_crc: u32,
    /// LSN of the last committed frame.
    pub committed_lsn: Lsn,
    /// Why the scan stopped.
    pub stop: ScanStop,
}

/// Where a scan starts: just after a known frame (or the header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanStart {
    /// File offset of `bytes[0]`.
    pub offset: u64,
    /// CRC the first frame must name as `prev_crc`.
    pub prev_crc: u32,
    /// LSN before the first frame.
    pub lsn: Lsn,
}

/// Scans the frames in `bytes` (the file from `start.offset` on), following the chain.
/// The corruption probe runs after a torn tail and after preallocated zeros.
pub fn scan_frames(bytes: &[u8], salt: u32, start: ScanStart) -> Scan {
    let mut scan = scan_chain(bytes, salt, start);
    let stop_position = (scan.committed_end - start.offset) as usize;
    probe_torn_tail(&mut scan, bytes, start.offset, stop_position, salt);
    scan
}

/// Whether a scan probes for corruption after preallocated zeros (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterZeros {
    /// The log as the disk left it (an open): probe as after a torn tail.
    Probe,
    /// The live log of a process that has opened it since the last crash: the zeros end it.
    End,
}

/// Follows the chain of frames in `bytes` until the bytes end or a frame fails; a failure
/// is reported as a torn tail (whether it is corruption is [`probe_torn_tail`]'s question).
fn scan_chain(bytes: &[u8], salt: u32, start: ScanStart) -> Scan {
    let mut scan = Scan {
        frames: Vec::new(),
        committed_frames: 0,
        committed_end: start.offset,
        committed_crc: start.prev_crc,
        committed_lsn: start.lsn,
        stop: ScanStop::End,
    };
    let mut position = 0usize;
    let mut prev_crc = start.prev_crc;
    let mut lsn = start.lsn;
    while position < bytes.len() {
        let offset = start.offset + position as u64;
        let frame = match parse_frame(&bytes[position..], offset, salt) {
            Ok(frame) if frame.prev_crc == prev_crc && frame.lsn == lsn.next() => frame,
            Ok(frame) => {
                scan.stop = ScanStop::TornTail(format!(
                    "frame at {offset} does not continue the chain (lsn {}, expected {})",
                    frame.lsn.0,
                    lsn.next().0
                ));
                break;
            }
            Err(_) if is_zero_header(&bytes[position..]) => {
                scan.stop = ScanStop::Preallocated;
                break;
            }
            Err(error) => {
                scan.stop = ScanStop::TornTail(format!("at offset {offset}: {error}"));
                break;
            }
        };
        position += frame.total_len as usize;
        prev_crc = frame.crc;
        lsn = frame.lsn;
        scan.frames.push(frame);
        if frame.kind == WalEntryType::Commit {
            scan.committed_frames = scan.frames.len();
            scan.committed_end = start.offset + position as u64;
            scan.committed_crc = frame.crc;
            scan.committed_lsn = frame.lsn;
        }
    }
    scan
}

/// True if `bytes` start with a whole frame header of zeros: preallocated space.
fn is_zero_header(bytes: &[u8]) -> bool {
    bytes
        .get(..FRAME_HEADER_SIZE)
        .is_some_and(|header| header.iter().all(|&byte| byte == 0))
}

/// A torn tail is corruption if, past the last committed frame, an intact frame says that a
/// later LSN was already durable. `bytes` start at file offset `base_offset`; the committed
/// end is at `bytes[from]`.
fn probe_torn_tail(scan: &mut Scan, bytes: &[u8], base_offset: u64, from: usize, salt: u32) {
    let detail = match &scan.stop {
        ScanStop::TornTail(detail) => detail.clone(),
        ScanStop::Preallocated => "zeros after the last commit".to_string(),
        _ => return,
    };
    if let Some(proof) = durable_frame_after(bytes, base_offset, from, salt, scan.committed_lsn) {
        scan.stop = ScanStop::Corruption {
            offset: scan.committed_end,
            detail: format!(
                "{detail}; yet the frame at {} (lsn {}) says lsn {} was durable",
                proof.offset, proof.lsn.0, proof.durable_lsn.0
            ),
        };
    }
}

/// Most bytes one frame occupies in the file.
pub const FRAME_TOTAL_MAX: usize =
    (FRAME_HEADER_SIZE + FRAME_PAYLOAD_MAX + 4).div_ceil(FRAME_ALIGN) * FRAME_ALIGN;

/// Reads the file from an offset into a buffer; short only at the end of the file.
pub type ReadAt<'a, E> = dyn FnMut(u64, &mut [u8]) -> Result<usize, E> + 'a;

/// Bytes the first window of [`scan_file`] reads: a writer catching up before its commit
/// usually finds one frame header of zeros (or one other commit) there.
pub const SCAN_FIRST_WINDOW_BYTES: usize = 4096;

/// [`scan_frames`] over a file of `file_len` bytes read window by window through `read`
/// (which fills its buffer from the offset, short only at the end of the file), so a long
/// log is never held in memory at once: the same result as reading the rest of the file
/// and calling [`scan_frames`]. Windows start at [`SCAN_FIRST_WINDOW_BYTES`] and double up
/// to `window_max`. A window that cuts a frame short is read again from that frame; the
/// corruption probe reads its own span after a torn tail, and after preallocated zeros if
/// `after_zeros` says so.
pub fn scan_file<E>(
    file_len: u64,
    salt: u32,
    start: ScanStart,
    window_max: usize,
    after_zeros: AfterZeros,
    read: &mut ReadAt<'_, E>,
) -> Result<Scan, E> {
    let mut scan = scan_chain(&[], salt, start);
    let mut next = start;
    let window_max = window_max.max(FRAME_ALIGN);
    let mut window = window_max.min(SCAN_FIRST_WINDOW_BYTES);
    let mut buffer = Vec::new();
    while next.offset < file_len {
        let want = (file_len - next.offset).min(window as u64) as usize;
        buffer.resize(want, 0);
        let got = read(next.offset, &mut buffer)?;
        let at_end = got < want || next.offset + got as u64 >= file_len;
        let part = scan_chain(&buffer[..got], salt, next);
        let consumed: usize = part
            .frames
            .iter()
            .map(|frame| frame.total_len as usize)
            .sum();
        let earlier = scan.frames.len();
        scan.frames.extend_from_slice(&part.frames);
        if part.committed_frames > 0 {
            scan.committed_frames = earlier + part.committed_frames;
            scan.committed_end = part.committed_end;
            scan.committed_crc = part.committed_crc;
            scan.committed_lsn = part.committed_lsn;
        }
        if let Some(last) = part.frames.last() {
            next = ScanStart {
                offset: last.offset + u64::from(last.total_len),
                prev_crc: last.crc,
                lsn: last.lsn,
            };
        }
        let decided = match part.stop {
            ScanStop::End => false,
            // Decided by the frame header alone.
            ScanStop::Preallocated => true,
            // The failing frame was whole in the window: a real end of the chain.
            _ => consumed + FRAME_TOTAL_MAX <= got,
        };
        if at_end || decided {
            scan.stop = part.stop;
            break;
        }
        window = if consumed == 0 && part.stop != ScanStop::End {
            // The window cannot hold the failing frame: read more at once.
            window.saturating_mul(2).max(FRAME_TOTAL_MAX)
        } else {
            window.saturating_mul(2).min(window_max).max(window)
        };
    }
    let probe = match scan.stop {
        ScanStop::TornTail(_) => true,
        ScanStop::Preallocated => after_zeros == AfterZeros::Probe,
        _ => false,
    };
    if probe {
        let from = scan.committed_end;
        let span = (file_len.saturating_sub(from)).min(CORRUPTION_PROBE_BYTES_MAX as u64) as usize;
        let mut bytes = vec![0u8; span];
        let got = read(from, &mut bytes)?;
        bytes.truncate(got);
        probe_torn_tail(&mut scan, &bytes, from, 0, salt);
    }
    Ok(scan)
}

/// Looks past a failing frame for an intact frame of the same salt that says a later LSN
/// than `committed_lsn` was durable when it was written.
fn durable_frame_after(
    bytes: &[u8],
    base_offset: u64,
    from: usize,
    salt: u32,
    committed_lsn: Lsn,
) -> Option<FrameInfo> {
    let limit = bytes
        .len()
        .min(from.saturating_add(CORRUPTION_PROBE_BYTES_MAX));
    let mut position = align_up(from) + FRAME_ALIGN;
    while position + FRAME_HEADER_SIZE <= limit {
        // A plausible header has a nonzero LSN in its bytes 8..16: skip every position
        // whose LSN lies in zeros (most of the span after a log is preallocated zeros).
        let Some(skip) = first_nonzero(&bytes[position + 8..limit]) else {
            break;
        };
        let nonzero = position + 8 + skip;
        position = position.max(align_up(nonzero.saturating_sub(15)));
        if position + FRAME_HEADER_SIZE > limit {
            break;
        }
        let window = &bytes[position..];
        let lsn = le_u64(window, 8);
        let durable = le_u64(window, 16);
        let plausible = lsn > committed_lsn.0 && durable > committed_lsn.0 && durable < lsn;
        if plausible && let Ok(frame) = parse_frame(window, base_offset + position as u64, salt) {
            return Some(frame);
        }
        position += FRAME_ALIGN;
    }
    None
}

/// Index of the first nonzero byte, comparing 4 KiB blocks with zeros at a time (a
/// `memcmp`: the span after a log is mostly preallocated zeros).
fn first_nonzero(bytes: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    let mut at = 0;
    for block in bytes.chunks(BLOCK) {
        if block != &ZEROS[..block.len()] {
            return block
                .iter()
                .position(|&byte| byte != 0)
                .map(|index| at + index);
        }
        at += block.len();
    }
    None
}

#[cfg(test)]
#[path = "format_tests.rs"]
mod tests;
