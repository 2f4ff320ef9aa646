//! Reading `wal.log` for a salvage: every stretch of frames that verifies, also past damage.
//!
//! The engine's scan ([`crate::wal::format::scan_file`]) follows the chain of frames from
//! the header and stops at the first frame that fails. A salvage goes on: from where a
//! chain stops it searches, frame alignment by frame alignment, for the next frame that
//! verifies with the log's salt (its CRC covers the salt, so frames of an older life of the
//! file never qualify) and has a higher LSN, and follows the chain from there. Each chain is
//! a [`Segment`].
//!
//! # Which segments are part of the log
//! The first chain (from the header) is the log as the engine reads it. A later one is part
//! of the log only if something proves that the log really went on past the damage: a frame
//! in it (or after it) claims, in its `durable_lsn`, that a commit after the last one before
//! the damage was already durable when it was written, or `wal.shm` records such a commit
//! durable. That is the rule by which the engine tells damage from a torn tail
//! ([`crate::wal::format`]), and it keeps out what a crash leaves behind: frames of a
//! transaction that never became durable, which a later transaction partly overwrote. Such
//! frames verify and may even carry a commit, but they claim nothing durable past the point
//! where their transaction began, so they are noted, never used.
//!
//! A damaged header does not end the reading: the salt is taken from its bytes (a flipped
//! byte elsewhere in the header leaves it intact), and the first chain found is taken as
//! the log's start.
//!
//! # Limits
//! At most [`crate::wal::WAL_SCAN_BYTES_MAX`] bytes are examined; the search reads the file
//! in windows of [`SEARCH_WINDOW_BYTES`], so memory stays at a window and the frame lists.

use super::report::{Findings, ProblemKind};
use crate::error::Result;
use crate::page::{LSN_MAX, Lsn};
use crate::pager::AllocState;
use crate::vfs::VfsFile;
use crate::wal::format::{
    self, AfterZeros, FRAME_ALIGN, FRAME_HEADER_SIZE, FRAME_PAYLOAD_MAX, FRAME_TOTAL_MAX,
    FrameInfo, ScanStart, ScanStop, WAL_HEADER_SIZE, WalEntryType,
};
use crate::wal::{SCAN_WINDOW_BYTES, WAL_FILE_NAME, WAL_SCAN_BYTES_MAX, read_up_to};

/// Bytes the search for the next verifying frame reads at a time.
pub const SEARCH_WINDOW_BYTES: usize = 1 << 20;

const _: () = assert!(SEARCH_WINDOW_BYTES > FRAME_TOTAL_MAX);

/// A chain of frames that each verify and continue the one before.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    /// The frames, in order.
    pub frames: Vec<FrameInfo>,
    /// Leading frames whose transaction's commit frame is in the segment.
    pub committed: usize,
    /// True if the frames after the last commit belong to a transaction that committed:
    /// the log goes on after this segment (its commit frame is in the damage after it).
    pub tail_committed: bool,
}

impl Segment {
    fn first_lsn(&self) -> Lsn {
        self.frames.first().map_or(Lsn(0), |frame| frame.lsn)
    }

    fn last_lsn(&self) -> Lsn {
        self.frames.last().map_or(Lsn(0), |frame| frame.lsn)
    }

    /// LSN of the last commit frame, if any.
    fn last_commit(&self) -> Option<Lsn> {
        self.committed
            .checked_sub(1)
            .map(|index| self.frames[index].lsn)
    }

    fn end(&self) -> u64 {
        self.frames
            .last()
            .map_or(0, |frame| frame.offset + u64::from(frame.total_len))
    }

    /// The frames that are part of a committed transaction.
    pub fn usable(&self) -> &[FrameInfo] {
        if self.tail_committed {
            &self.frames
        } else {
            &self.frames[..self.committed]
        }
    }
}

/// What the WAL holds, as far as it can be read.
#[derive(Debug, Clone, Default)]
pub(super) struct WalHistory {
    /// The salt frames are checked with (from the header, even a damaged one).
    pub salt: u32,
    /// The LSN before the log's first frame, if the header verifies.
    pub base_lsn: Option<Lsn>,
    /// The segments that are part of the log, in order (LSNs increase).
    pub segments: Vec<Segment>,
    /// Bytes examined.
    pub bytes: u64,
    /// The allocation state of the newest commit that decodes.
    pub newest_alloc: Option<AllocState>,
}

impl WalHistory {
    /// Frames that verify, in every segment used.
    pub fn frame_count(&self) -> u64 {
        self.segments
            .iter()
            .map(|segment| segment.frames.len() as u64)
            .sum()
    }

    /// The LSN of the commit that ends the transaction holding `lsn`, if it is known.
    pub fn commit_of(&self, lsn: Lsn) -> Option<Lsn> {
        let segment = self
            .segments
            .iter()
            .find(|segment| segment.first_lsn() <= lsn && lsn <= segment.last_lsn())?;
        let committed = &segment.frames[..segment.committed];
        // LSNs increase along a segment: start the search at `lsn`.
        let from = committed.partition_point(|frame| frame.lsn < lsn);
        committed[from..]
            .iter()
            .find(|frame| frame.kind == WalEntryType::Commit)
            .map(|frame| frame.lsn)
    }

    /// The LSN ranges (inclusive) whose every frame was read and verified.
    pub fn coverage(&self) -> Vec<(Lsn, Lsn)> {
        self.segments
            .iter()
            .filter(|segment| !segment.frames.is_empty())
            .map(|segment| (segment.first_lsn(), segment.last_lsn()))
            .collect()
    }

    /// The newest committed LSN.
    pub fn newest_commit(&self) -> Option<Lsn> {
        self.segments.iter().rev().find_map(Segment::last_commit)
    }
}

fn wal_io(operation: &'static str) -> impl FnOnce(std::io::Error) -> crate::Error {
    move |source| crate::Error::io(operation, WAL_FILE_NAME, source)
}

/// A chain found in the file, before it is judged.
struct Found {
    segment: Segment,
    /// Where the bytes before it that did not verify start (`None` for the first chain).
    gap_from: Option<u64>,
    stop: ScanStop,
}

/// Reads the WAL (see the module docs). `shm_durable` is the durable-LSN record of
/// `wal.shm` (salt and LSN), if it is intact. `Err` only for I/O failures.
pub(super) fn read_wal(
    file: &dyn VfsFile,
    shm_durable: Option<(u32, Lsn)>,
    findings: &mut Findings,
) -> Result<WalHistory> {
    let len = file.len().map_err(wal_io("stat"))?;
    let mut history = WalHistory::default();
    if len < WAL_HEADER_SIZE as u64 {
        if len > 0 {
            findings.note(
                ProblemKind::Note,
                WAL_FILE_NAME,
                0,
                format!("the WAL is {len} bytes, shorter than its header: it holds nothing"),
            );
        }
        return Ok(history);
    }
    let limit = len.min(WAL_HEADER_SIZE as u64 + WAL_SCAN_BYTES_MAX);
    if limit < len {
        findings.lose(
            ProblemKind::DamagedWal,
            WAL_FILE_NAME,
            limit,
            format!("the WAL is {len} bytes; only the first {limit} were examined (the limit)"),
        );
    }
    history.bytes = limit;
    let mut header = [0u8; WAL_HEADER_SIZE];
    file.read_exact_at(&mut header, 0).map_err(wal_io("read"))?;
    let start = match format::decode_header(&header) {
        Ok(decoded) => {
            history.salt = decoded.salt;
            history.base_lsn = Some(decoded.base_lsn);
            Some(ScanStart {
                offset: WAL_HEADER_SIZE as u64,
                prev_crc: decoded.crc,
                lsn: decoded.base_lsn,
            })
        }
        Err(error) => {
            history.salt = u32::from_le_bytes([header[12], header[13], header[14], header[15]]);
            findings.note(
                ProblemKind::DamagedWal,
                WAL_FILE_NAME,
                0,
                format!(
                    "the WAL header does not verify ({error}); frames are checked with the \
                     salt its bytes hold"
                ),
            );
            None
        }
    };
    let found = find_segments(file, limit, history.salt, start)?;
    judge(&mut history, found, shm_durable, findings);
    history.newest_alloc = newest_alloc(file, &history);
    Ok(history)
}

/// Every chain of verifying frames in the file, in order.
fn find_segments(
    file: &dyn VfsFile,
    limit: u64,
    salt: u32,
    header_start: Option<ScanStart>,
) -> Result<Vec<Found>> {
    let mut found: Vec<Found> = Vec::new();
    let mut next = header_start;
    let mut search_from = WAL_HEADER_SIZE as u64;
    let mut min_lsn = Lsn(1);
    loop {
        let (start, gap_from) = match next.take() {
            Some(start) => (start, None),
            None => match find_frame(file, search_from, limit, salt, min_lsn)? {
                Some(frame) => (
                    ScanStart {
                        offset: frame.offset,
                        prev_crc: frame.prev_crc,
                        lsn: Lsn(frame.lsn.0 - 1),
                    },
                    Some(search_from),
                ),
                None => break,
            },
        };
        let mut read = |offset: u64, buffer: &mut [u8]| read_up_to(file, buffer, offset);
        let scan = format::scan_file(
            limit,
            salt,
            start,
            SCAN_WINDOW_BYTES,
            AfterZeros::End,
            &mut read,
        )
        .map_err(wal_io("read"))?;
        let segment = Segment {
            committed: scan.committed_frames,
            frames: scan.frames,
            tail_committed: false,
        };
        // An empty chain after a search cannot happen (the frame found verifies), but the
        // search must move on whatever happens.
        search_from = match (segment.frames.is_empty(), gap_from) {
            (false, _) => segment.end(),
            (true, None) => start.offset,
            (true, Some(_)) => start.offset + FRAME_ALIGN as u64,
        };
        if let Some(last) = segment.frames.last() {
            min_lsn = last.lsn.next();
        }
        let stop = scan.stop;
        let ended = stop == ScanStop::End;
        found.push(Found {
            segment,
            gap_from,
            stop,
        });
        if ended || search_from >= limit {
            break;
        }
    }
    Ok(found)
}

/// True if the 40 bytes at the start of `bytes` could be the header of a frame with an LSN
/// of at least `min_lsn` (cheap checks before the CRC).
fn plausible_header(bytes: &[u8], min_lsn: Lsn) -> bool {
    let field = |at: usize| {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(raw)
    };
    let payload_len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let (lsn, durable) = (field(8), field(16));
    payload_len <= FRAME_PAYLOAD_MAX + 4
        && lsn >= min_lsn.0
        && lsn <= LSN_MAX
        && durable < lsn
        && (1..=3).contains(&bytes[36])
        && bytes[37] <= 1
        && bytes[38] == 0
        && bytes[39] == 0
}

/// The first frame at or after `from` (at frame alignment) that verifies with `salt` and has
/// an LSN of at least `min_lsn`.
fn find_frame(
    file: &dyn VfsFile,
    from: u64,
    limit: u64,
    salt: u32,
    min_lsn: Lsn,
) -> Result<Option<FrameInfo>> {
    let mut window = vec![0u8; SEARCH_WINDOW_BYTES];
    let mut frame_bytes = Vec::new();
    let mut window_start = from.div_ceil(FRAME_ALIGN as u64) * FRAME_ALIGN as u64;
    while window_start + FRAME_HEADER_SIZE as u64 <= limit {
        let want = (limit - window_start).min(SEARCH_WINDOW_BYTES as u64) as usize;
        let got = read_up_to(file, &mut window[..want], window_start).map_err(wal_io("read"))?;
        if got < FRAME_HEADER_SIZE {
            break;
        }
        let mut position = 0;
        while position + FRAME_HEADER_SIZE <= got {
            let header = &window[position..position + FRAME_HEADER_SIZE];
            if plausible_header(header, min_lsn) {
                let offset = window_start + position as u64;
                let payload_len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
                let total = FRAME_HEADER_SIZE + payload_len as usize;
                let bytes: &[u8] = if position + total <= got {
                    &window[position..position + total]
                } else {
                    frame_bytes.resize(total, 0);
                    let read =
                        read_up_to(file, &mut frame_bytes, offset).map_err(wal_io("read"))?;
                    &frame_bytes[..read]
                };
                if let Ok(frame) = format::parse_frame(bytes, offset, salt) {
                    return Ok(Some(frame));
                }
            }
            position += FRAME_ALIGN;
        }
        window_start += position as u64;
    }
    Ok(None)
}

/// Decides which chains are part of the log (see the module docs) and reports the damage
/// between them.
fn judge(
    history: &mut WalHistory,
    found: Vec<Found>,
    shm_durable: Option<(u32, Lsn)>,
    findings: &mut Findings,
) {
    let shm_proof = shm_durable
        .filter(|(salt, _)| *salt == history.salt)
        .map_or(Lsn(0), |(_, lsn)| lsn);
    // Highest durability any frame from each chain on claims.
    let mut proof_from = vec![shm_proof; found.len() + 1];
    for index in (0..found.len()).rev() {
        let claimed = found[index]
            .segment
            .frames
            .iter()
            .map(|frame| frame.durable_lsn)
            .max()
            .unwrap_or(Lsn(0));
        proof_from[index] = proof_from[index + 1].max(claimed);
    }
    let mut log = LogEnd {
        committed: history.base_lsn.unwrap_or(Lsn(0)),
        last_lsn: history.base_lsn.unwrap_or(Lsn(0)),
        end: WAL_HEADER_SIZE as u64,
        stop: None,
    };
    for (index, chain) in found.into_iter().enumerate() {
        let first = chain.segment.first_lsn();
        let starts_log = history.segments.is_empty() && history.base_lsn.is_none();
        if chain.gap_from.is_some() && !starts_log {
            if proof_from[index] <= log.committed || first <= log.last_lsn {
                note_unused(&chain.segment, findings);
                continue;
            }
            if let Some(previous) = history.segments.last_mut() {
                previous.tail_committed = true;
            }
            report_gap(&log, &chain.segment, findings);
        } else if chain.gap_from.is_some() {
            report_lost_start(&chain.segment, findings);
        }
        log.keep(history, chain.segment, chain.stop);
    }
    note_end(history, log.stop, shm_proof, log.committed, findings);
}

/// Where the log, as judged so far, ends.
struct LogEnd {
    /// Its last commit.
    committed: Lsn,
    /// Its last frame's LSN.
    last_lsn: Lsn,
    /// The offset after its last frame.
    end: u64,
    /// Why its last chain stopped.
    stop: Option<ScanStop>,
}

impl LogEnd {
    /// Adds a chain to the log.
    fn keep(&mut self, history: &mut WalHistory, segment: Segment, stop: ScanStop) {
        self.stop = Some(stop);
        if let Some(commit) = segment.last_commit() {
            self.committed = commit;
        }
        if !segment.frames.is_empty() {
            self.last_lsn = segment.last_lsn();
            self.end = segment.end();
            history.segments.push(segment);
        }
    }
}

/// Reports the damaged bytes between the log so far and a chain proved to continue it.
fn report_gap(log: &LogEnd, segment: &Segment, findings: &mut Findings) {
    let gap_to = segment.frames.first().map_or(log.end, |frame| frame.offset);
    findings.lose(
        ProblemKind::DamagedWal,
        WAL_FILE_NAME,
        log.end,
        format!(
            "bytes {}..{gap_to} of the WAL do not verify, yet later frames prove the log went \
             on: the frames there (LSN {} to {}) are lost",
            log.end,
            log.last_lsn.next().0,
            segment.first_lsn().0.saturating_sub(1)
        ),
    );
}

/// Reports damaged bytes between a damaged header and the first chain found.
fn report_lost_start(segment: &Segment, findings: &mut Findings) {
    let gap_to = segment
        .frames
        .first()
        .map_or(WAL_HEADER_SIZE as u64, |frame| frame.offset);
    if gap_to > WAL_HEADER_SIZE as u64 {
        findings.lose(
            ProblemKind::DamagedWal,
            WAL_FILE_NAME,
            WAL_HEADER_SIZE as u64,
            format!(
                "bytes {WAL_HEADER_SIZE}..{gap_to} of the WAL do not verify: the frames there, \
                 before LSN {}, are lost",
                segment.first_lsn().0
            ),
        );
    }
}

fn note_unused(segment: &Segment, findings: &mut Findings) {
    let Some(first) = segment.frames.first() else {
        return;
    };
    findings.note(
        ProblemKind::DamagedWal,
        WAL_FILE_NAME,
        first.offset,
        format!(
            "{} frames (LSN {} to {}) verify but do not continue the log, and nothing proves \
             them durable: left by a transaction a crash cut short; not used, as an open \
             would not use them",
            segment.frames.len(),
            first.lsn.0,
            segment.last_lsn().0
        ),
    );
}

/// Reports how the log ends: uncommitted frames after the last commit (a torn tail) or a
/// lost synced tail.
fn note_end(
    history: &WalHistory,
    stop: Option<ScanStop>,
    shm_proof: Lsn,
    committed: Lsn,
    findings: &mut Findings,
) {
    if let Some(last) = history.segments.last() {
        let uncommitted = last.frames.len() - last.committed;
        if uncommitted > 0 {
            let frame = &last.frames[last.committed];
            findings.note(
                ProblemKind::Note,
                WAL_FILE_NAME,
                frame.offset,
                format!(
                    "{uncommitted} frames after the last commit (LSN {}) belong to a transaction \
                     that never committed: not saved",
                    committed.0
                ),
            );
        }
    }
    if shm_proof > committed {
        findings.lose(
            ProblemKind::DamagedWal,
            WAL_FILE_NAME,
            history
                .segments
                .last()
                .map_or(WAL_HEADER_SIZE as u64, Segment::end),
            format!(
                "wal.shm records LSN {} durable, but the readable log ends at commit {}: the \
                 commits after it are lost",
                shm_proof.0, committed.0
            ),
        );
        return;
    }
    let offset = history
        .segments
        .last()
        .map_or(WAL_HEADER_SIZE as u64, Segment::end);
    match stop {
        Some(ScanStop::Corruption { detail, .. }) => findings.lose(
            ProblemKind::DamagedWal,
            WAL_FILE_NAME,
            offset,
            format!("the log ends at damage to frames that were durable: {detail}"),
        ),
        Some(ScanStop::TornTail(detail)) => findings.note(
            ProblemKind::Note,
            WAL_FILE_NAME,
            offset,
            format!("the log ends in a torn tail (normal after a crash): {detail}"),
        ),
        _ => {}
    }
}

/// The allocation state of the newest commit frame that reads back and decodes.
fn newest_alloc(file: &dyn VfsFile, history: &WalHistory) -> Option<AllocState> {
    history
        .segments
        .iter()
        .rev()
        .flat_map(|segment| segment.frames[..segment.committed].iter().rev())
        .filter(|frame| frame.kind == WalEntryType::Commit)
        .take(16)
        .find_map(|frame| {
            let payload = read_payload(file, history.salt, frame).ok()?.ok()?;
            AllocState::decode(&payload).ok()
        })
}

/// Reads a frame back, verifies it again and decodes its payload. `Ok(Err)` if it no longer
/// verifies or does not decode.
pub(super) fn read_payload(
    file: &dyn VfsFile,
    salt: u32,
    frame: &FrameInfo,
) -> Result<std::result::Result<Vec<u8>, crate::error::DecodeError>> {
    let mut bytes = vec![0u8; frame.total_len as usize];
    let read = read_up_to(file, &mut bytes, frame.offset).map_err(wal_io("read"))?;
    bytes.truncate(read);
    let checked = format::parse_frame(&bytes, frame.offset, salt).and_then(|again| {
        if again.crc != frame.crc || again.lsn != frame.lsn {
            return Err(crate::error::DecodeError::new(
                "the frame changed since it was read",
            ));
        }
        format::frame_payload(&bytes)
    });
    Ok(checked)
}

#[cfg(test)]
#[path = "wal_read_tests.rs"]
mod tests;
