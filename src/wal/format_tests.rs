use super::*;
use crate::page::PageId;

const SALT: u32 = 0x5eed_1234;

fn frames(kinds: &[WalEntryType], payload_len: usize) -> (Vec<u8>, WalHeader) {
    let header_bytes = encode_header(SALT, Lsn(100));
    let header = decode_header(&header_bytes).expect("header");
    let mut out = header_bytes.to_vec();
    let mut prev = header.crc;
    for (index, kind) in kinds.iter().enumerate() {
        let payload: Vec<u8> = (0..payload_len)
            .map(|byte| (byte * 7 + index) as u8)
            .collect();
        let lsn = Lsn(101 + index as u64);
        let spec = FrameSpec {
            lsn,
            durable_lsn: Lsn(lsn.0 - 1),
            kind: *kind,
            page: PageId(index as u64),
            payload: &payload,
        };
        prev = encode_frame(&mut out, SALT, prev, spec);
    }
    (out, header)
}

fn scan_all(bytes: &[u8], header: WalHeader) -> Scan {
    let start = ScanStart {
        offset: WAL_HEADER_SIZE as u64,
        prev_crc: header.crc,
        lsn: header.base_lsn,
    };
    scan_frames(&bytes[WAL_HEADER_SIZE..], SALT, start)
}

#[test]
fn header_round_trips_and_rejects_damage() {
    let bytes = encode_header(7, Lsn(9));
    let header = decode_header(&bytes).expect("valid");
    assert_eq!((header.salt, header.base_lsn), (7, Lsn(9)));
    let mut damaged = bytes;
    damaged[13] ^= 1;
    assert!(decode_header(&damaged).is_err());
    assert!(decode_header(&bytes[..10]).is_err());
}

#[test]
fn frames_round_trip_raw_and_compressed() {
    for payload in [vec![1u8, 2, 3], vec![0u8; 60_000]] {
        let mut out = Vec::new();
        let spec = FrameSpec {
            lsn: Lsn(5),
            durable_lsn: Lsn(4),
            kind: WalEntryType::PageImage,
            page: PageId(3),
            payload: &payload,
        };
        let crc = encode_frame(&mut out, SALT, 11, spec);
        assert_eq!(out.len() % FRAME_ALIGN, 0);
        let frame = parse_frame(&out, 0, SALT).expect("frame");
        assert_eq!((frame.crc, frame.lsn, frame.prev_crc), (crc, Lsn(5), 11));
        assert_eq!(frame_payload(&out).expect("payload"), payload);
    }
}

#[test]
fn frame_with_another_salt_is_not_valid() {
    let mut out = Vec::new();
    let spec = FrameSpec {
        lsn: Lsn(1),
        durable_lsn: Lsn(0),
        kind: WalEntryType::Commit,
        page: PageId(0),
        payload: b"meta",
    };
    encode_frame(&mut out, SALT, 0, spec);
    assert!(parse_frame(&out, 0, SALT + 1).is_err());
}

#[test]
fn scan_finds_committed_end_and_drops_an_unfinished_transaction() {
    use WalEntryType::*;
    let (bytes, header) = frames(&[PageImage, Commit, PageDelta, Commit, PageDelta], 500);
    let scan = scan_all(&bytes, header);
    assert_eq!(scan.stop, ScanStop::End);
    assert_eq!(scan.frames.len(), 5);
    assert_eq!(scan.committed_frames, 4);
    assert_eq!(scan.committed_lsn, Lsn(104));
    assert_eq!(scan.committed_end, scan.frames[4].offset);
}

#[test]
fn every_truncation_stops_cleanly_at_a_committed_prefix() {
    use WalEntryType::*;
    let (bytes, header) = frames(&[PageImage, Commit, PageDelta, Commit], 3000);
    let full = scan_all(&bytes, header);
    for cut in WAL_HEADER_SIZE..bytes.len() {
        let scan = scan_all(&bytes[..cut], header);
        assert!(
            !matches!(scan.stop, ScanStop::Corruption { .. }),
            "cut {cut}"
        );
        assert!(scan.committed_lsn <= full.committed_lsn);
        assert!(scan.committed_end <= align_up(cut) as u64);
    }
}

#[test]
fn damaged_frame_followed_by_a_durable_claim_is_corruption() {
    use WalEntryType::*;
    let (mut bytes, header) = frames(&[PageImage, Commit, PageDelta, Commit], 1000);
    let scan = scan_all(&bytes, header);
    // frame 4 (lsn 104) says lsn 103 was durable: damage in frame 3 (lsn 103) is corruption.
    let damaged = scan.frames[2].offset as usize + FRAME_HEADER_SIZE + 10;
    bytes[damaged] ^= 0x40;
    let after = scan_all(&bytes, header);
    assert!(
        matches!(after.stop, ScanStop::Corruption { .. }),
        "{:?}",
        after.stop
    );
    assert_eq!(after.committed_lsn, Lsn(102));
}

#[test]
fn damaged_last_frame_is_a_torn_tail() {
    use WalEntryType::*;
    let (mut bytes, header) = frames(&[PageImage, Commit, PageDelta, Commit], 1000);
    let last = bytes.len() - 20;
    bytes[last] ^= 0x01;
    let scan = scan_all(&bytes, header);
    assert!(matches!(scan.stop, ScanStop::TornTail(_)));
    assert_eq!(scan.committed_lsn, Lsn(102));
}

#[test]
fn leftover_frames_from_an_overwritten_tail_do_not_continue_the_chain() {
    use WalEntryType::*;
    let (old, header) = frames(&[PageImage, Commit, PageDelta, Commit], 200);
    let old_scan = scan_all(&old, header);
    // A new writer rewrites from frame 3 on with a shorter frame; the old frame 4 remains.
    let mut bytes = old[..old_scan.frames[2].offset as usize].to_vec();
    let spec = FrameSpec {
        lsn: Lsn(103),
        durable_lsn: Lsn(102),
        kind: Commit,
        page: PageId(0),
        payload: b"x",
    };
    encode_frame(&mut bytes, SALT, old_scan.frames[1].crc, spec);
    let tail_start = old_scan.frames[3].offset as usize;
    if bytes.len() < tail_start {
        bytes.resize(tail_start, 0);
        bytes.extend_from_slice(&old[tail_start..]);
    }
    let scan = scan_all(&bytes, header);
    assert_eq!(scan.committed_lsn, Lsn(103));
    assert!(!matches!(scan.stop, ScanStop::Corruption { .. }));
}

#[test]
fn hostile_lengths_are_errors_not_allocations() {
    let mut bytes = vec![0u8; FRAME_HEADER_SIZE + 8];
    bytes[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(parse_frame(&bytes, 0, SALT).is_err());
    let mut compressed = vec![0u8; FRAME_HEADER_SIZE];
    compressed[0..4].copy_from_slice(&8u32.to_le_bytes());
    compressed[37] = 1;
    compressed.extend_from_slice(&u32::MAX.to_le_bytes());
    compressed.extend_from_slice(&[0u8; 4]);
    assert!(frame_payload(&compressed).is_err());
}

/// `scan_file` reads window by window; whatever the window, it must find exactly what
/// `scan_frames` finds over the whole rest of the file: on intact logs, torn tails at every
/// cut, flipped bytes (torn tails and proven corruption), and frames larger than a window.
#[test]
fn windowed_scan_finds_what_the_whole_file_scan_finds() {
    use WalEntryType::{Commit, PageDelta, PageImage};
    let kinds = [
        PageImage, PageDelta, Commit, PageDelta, PageDelta, Commit, PageImage, Commit, PageDelta,
        Commit, PageDelta,
    ];
    let mut logs = Vec::new();
    for payload_len in [3usize, 200, 5_000, 66_000] {
        let (bytes, header) = frames(&kinds, payload_len);
        let step = (bytes.len() / 23).max(1);
        for cut in (WAL_HEADER_SIZE..=bytes.len()).step_by(step) {
            logs.push((bytes[..cut].to_vec(), header));
        }
        for flip in (WAL_HEADER_SIZE..bytes.len()).step_by(step) {
            let mut damaged = bytes.clone();
            damaged[flip] ^= 0x40;
            logs.push((damaged, header));
        }
        let mut padded = bytes.clone();
        padded.extend(std::iter::repeat_n(0u8, 3_000));
        logs.push((padded, header));
        for zeros in [FRAME_HEADER_SIZE - 1, 1 << 20] {
            // Preallocated space after the log, and a frame torn into it (only its later
            // pieces landed: its header still reads as zeros).
            let mut preallocated = bytes.clone();
            let second_commit = WAL_HEADER_SIZE + (bytes.len() - WAL_HEADER_SIZE) / 2;
            preallocated.truncate(align_up(second_commit));
            preallocated.extend(std::iter::repeat_n(0u8, zeros));
            logs.push((preallocated.clone(), header));
            let mut torn_into_zeros = preallocated;
            let resume = align_up(second_commit) + FRAME_HEADER_SIZE + 64;
            if resume < bytes.len() && resume < torn_into_zeros.len() {
                let end = bytes.len().min(torn_into_zeros.len());
                torn_into_zeros[resume..end].copy_from_slice(&bytes[resume..end]);
                logs.push((torn_into_zeros, header));
            }
        }
        logs.push((bytes, header));
    }
    for (bytes, header) in &logs {
        let expected = scan_all(bytes, *header);
        let start = ScanStart {
            offset: WAL_HEADER_SIZE as u64,
            prev_crc: header.crc,
            lsn: header.base_lsn,
        };
        for window in [8usize, 100, 4_096, 70_000, 1 << 20] {
            let mut read = |offset: u64, buffer: &mut [u8]| -> Result<usize, ()> {
                let from = (offset as usize).min(bytes.len());
                let count = buffer.len().min(bytes.len() - from);
                buffer[..count].copy_from_slice(&bytes[from..from + count]);
                Ok(count)
            };
            let scanned = scan_file(
                bytes.len() as u64,
                SALT,
                start,
                window,
                AfterZeros::Probe,
                &mut read,
            )
            .expect("in-memory reads do not fail");
            assert_eq!(scanned, expected, "window {window}, {} bytes", bytes.len());
        }
    }
}

/// A writer catching up before its commit finds the preallocated zeros after the log: the
/// scan ends there, reports no torn tail, and reads one small window, not the zeros.
#[test]
fn scan_stops_at_preallocated_zeros_after_one_small_read() {
    use WalEntryType::{Commit, PageDelta};
    let (mut bytes, header) = frames(&[PageDelta, Commit, PageDelta, Commit], 300);
    let log_end = bytes.len() as u64;
    bytes.extend(std::iter::repeat_n(0u8, 4 << 20));
    let whole = scan_all(&bytes, header);
    assert_eq!(whole.stop, ScanStop::Preallocated);
    assert_eq!((whole.committed_end, whole.frames.len()), (log_end, 4));
    let start = ScanStart {
        offset: log_end,
        prev_crc: whole.committed_crc,
        lsn: whole.committed_lsn,
    };
    let mut bytes_read = 0;
    let mut read = |offset: u64, buffer: &mut [u8]| -> Result<usize, ()> {
        let from = offset as usize;
        buffer.copy_from_slice(&bytes[from..from + buffer.len()]);
        bytes_read += buffer.len();
        Ok(buffer.len())
    };
    let caught_up = scan_file(
        bytes.len() as u64,
        SALT,
        start,
        256 * 1024,
        AfterZeros::End,
        &mut read,
    )
    .expect("in-memory reads do not fail");
    assert_eq!(caught_up.stop, ScanStop::Preallocated);
    assert!(caught_up.frames.is_empty());
    assert_eq!(bytes_read, SCAN_FIRST_WINDOW_BYTES);
}

/// A commit's frames dropped by a failed `fdatasync` read back as preallocated zeros after a
/// power loss. At open the probe looks past them and finds the later commit that says they
/// were durable; a live catch-up (no hole possible) stops at the zeros.
#[test]
fn zeros_before_a_later_durable_claim_are_corruption_at_open_only() {
    use WalEntryType::{Commit, PageDelta};
    let (mut bytes, header) = frames(
        &[PageDelta, Commit, PageDelta, Commit, PageDelta, Commit],
        300,
    );
    let whole = scan_all(&bytes, header);
    let hole = whole.frames[2].offset as usize..whole.frames[4].offset as usize;
    bytes[hole.clone()].fill(0);
    bytes.extend(std::iter::repeat_n(0u8, 64 * 1024));
    let damaged = scan_all(&bytes, header);
    assert!(
        matches!(damaged.stop, ScanStop::Corruption { offset, .. } if offset == hole.start as u64),
        "{:?}",
        damaged.stop
    );
    let start = ScanStart {
        offset: WAL_HEADER_SIZE as u64,
        prev_crc: header.crc,
        lsn: header.base_lsn,
    };
    for (after_zeros, corrupt) in [(AfterZeros::Probe, true), (AfterZeros::End, false)] {
        let mut read = |offset: u64, buffer: &mut [u8]| -> Result<usize, ()> {
            let from = (offset as usize).min(bytes.len());
            let count = buffer.len().min(bytes.len() - from);
            buffer[..count].copy_from_slice(&bytes[from..from + count]);
            Ok(count)
        };
        let scan = scan_file(
            bytes.len() as u64,
            SALT,
            start,
            4096,
            after_zeros,
            &mut read,
        )
        .expect("in-memory reads do not fail");
        assert_eq!(matches!(scan.stop, ScanStop::Corruption { .. }), corrupt);
        assert_eq!(scan.committed_end, hole.start as u64);
    }
}
