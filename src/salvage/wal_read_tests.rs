use super::*;
use crate::page::PageId;
use crate::vfs::{MemFs, OpenMode, Vfs};
use crate::wal::format::{FrameSpec, encode_frame, encode_header};
use std::path::Path;

const SALT: u32 = 0x5eed_1234;

/// Builds WAL bytes frame by frame.
struct Log {
    bytes: Vec<u8>,
    prev_crc: u32,
}

impl Log {
    fn new(base: u64) -> Log {
        let header = encode_header(SALT, Lsn(base));
        let prev_crc = u32::from_le_bytes([header[24], header[25], header[26], header[27]]);
        Log {
            bytes: header.to_vec(),
            prev_crc,
        }
    }

    /// Appends a frame; returns its offset.
    fn frame(&mut self, lsn: u64, durable: u64, kind: WalEntryType) -> u64 {
        let offset = self.bytes.len() as u64;
        let payload = [lsn as u8; 100];
        self.prev_crc = encode_frame(
            &mut self.bytes,
            SALT,
            self.prev_crc,
            FrameSpec {
                lsn: Lsn(lsn),
                durable_lsn: Lsn(durable),
                kind,
                page: PageId(7),
                payload: &payload,
            },
        );
        offset
    }

    /// A transaction: a delta and its commit at `lsn` and `lsn + 1`.
    fn commit(&mut self, lsn: u64, durable: u64) -> u64 {
        let offset = self.frame(lsn, durable, WalEntryType::PageDelta);
        self.frame(lsn + 1, durable, WalEntryType::Commit);
        offset
    }

    fn read(&self) -> (WalHistory, Findings) {
        let vfs = MemFs::new();
        let path = Path::new("/wal.log");
        let file = vfs.open_file(path, OpenMode::CreateOrOpen).expect("open");
        file.write_all_at(&self.bytes, 0).expect("write");
        let mut findings = Findings::default();
        let history = read_wal(&*file, None, &mut findings).expect("read");
        (history, findings)
    }
}

fn lsns(history: &WalHistory) -> Vec<Vec<u64>> {
    history
        .segments
        .iter()
        .map(|segment| segment.frames.iter().map(|frame| frame.lsn.0).collect())
        .collect()
}

#[test]
fn an_intact_log_is_one_segment_of_every_frame() {
    let mut log = Log::new(10);
    log.commit(11, 10);
    log.commit(13, 12);
    let (history, findings) = log.read();
    assert_eq!(lsns(&history), vec![vec![11, 12, 13, 14]]);
    assert_eq!(history.base_lsn, Some(Lsn(10)));
    assert_eq!(history.commit_of(Lsn(13)), Some(Lsn(14)));
    assert!(findings.lost.is_empty() && findings.notes.is_empty());
}

#[test]
fn frames_after_damage_are_used_when_a_later_frame_proves_the_log_went_on() {
    let mut log = Log::new(0);
    log.commit(1, 0);
    let damaged = log.commit(3, 2);
    log.commit(5, 4);
    log.commit(7, 6);
    log.bytes[damaged as usize + 50] ^= 0xff;
    let (history, findings) = log.read();
    assert_eq!(lsns(&history), vec![vec![1, 2], vec![4, 5, 6, 7, 8]]);
    assert_eq!(findings.lost.len(), 1, "{:?}", findings.lost);
    assert_eq!(findings.lost[0].offset, damaged);
    assert_eq!(history.coverage(), vec![(Lsn(1), Lsn(2)), (Lsn(4), Lsn(8))]);
}

#[test]
fn frames_nothing_proves_durable_are_a_torn_tail_and_not_used() {
    // The last transaction is damaged and nothing after it claims it was durable.
    let mut log = Log::new(0);
    log.commit(1, 0);
    let damaged = log.frame(3, 2, WalEntryType::PageDelta);
    log.frame(4, 2, WalEntryType::PageDelta);
    log.frame(5, 2, WalEntryType::Commit);
    log.bytes[damaged as usize + 50] ^= 0xff;
    let (history, findings) = log.read();
    assert_eq!(lsns(&history), vec![vec![1, 2]]);
    assert!(findings.lost.is_empty(), "{:?}", findings.lost);
    assert!(!findings.notes.is_empty());
}

#[test]
fn frames_a_later_transaction_overwrote_the_start_of_are_never_used() {
    // A crash cut a transaction (LSN 3..=9, never durable) short; after recovery a shorter
    // one took LSN 3..=4 and overwrote its start. What is left of the old one verifies, has
    // higher LSNs and even a commit, but claims nothing durable past LSN 2.
    let mut old = Log::new(0);
    old.commit(1, 0);
    for lsn in 3..9 {
        old.frame(lsn, 2, WalEntryType::PageDelta);
    }
    old.frame(9, 2, WalEntryType::Commit);
    let mut live = Log::new(0);
    live.commit(1, 0);
    live.commit(3, 2);
    let mut bytes = old.bytes.clone();
    bytes[..live.bytes.len()].copy_from_slice(&live.bytes);
    live.bytes = bytes;
    let (history, findings) = live.read();
    assert_eq!(lsns(&history), vec![vec![1, 2, 3, 4]]);
    assert!(findings.lost.is_empty(), "{:?}", findings.lost);
}

#[test]
fn a_damaged_header_keeps_its_salt_and_the_log_is_read() {
    let mut log = Log::new(0);
    log.commit(1, 0);
    log.commit(3, 2);
    log.bytes[0] ^= 0xff;
    let (history, findings) = log.read();
    assert_eq!(history.base_lsn, None);
    assert_eq!(lsns(&history), vec![vec![1, 2, 3, 4]]);
    assert!(findings.lost.is_empty(), "{:?}", findings.lost);
    assert_eq!(findings.notes.len(), 1, "the header damage is noted");
}

#[test]
fn plausible_headers_are_checked_before_the_crc() {
    let mut log = Log::new(0);
    let offset = log.frame(1, 0, WalEntryType::PageDelta) as usize;
    let header = &log.bytes[offset..offset + FRAME_HEADER_SIZE];
    assert!(plausible_header(header, Lsn(1)));
    assert!(!plausible_header(header, Lsn(2)), "LSN below the minimum");
    assert!(
        !plausible_header(&[0u8; FRAME_HEADER_SIZE], Lsn(1)),
        "zeros"
    );
    let mut bad_kind = header.to_vec();
    bad_kind[36] = 9;
    assert!(!plausible_header(&bad_kind, Lsn(1)));
}
