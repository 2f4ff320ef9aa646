//! Which bytes of `wal.log` a bit flip may damage with the engine still bound to tell it
//! from a torn tail: the oracle demands that every acknowledged commit survives, so SimFs
//! must flip only where the engine promises detection (module docs of
//! `mentedb_storage::wal::format`, README "WAL damage").
//!
//! - With sealed commits (`SyncMode::Sealed`), every synced byte: a commit is acknowledged
//!   only after `wal.seal` durably records it, and a flip in frames synced but not yet
//!   sealed may drop them as a torn tail (they were never acknowledged).
//! - Otherwise, the bytes of frames that a later durable frame claims durable (its
//!   `durable_lsn`): the last synced commits before a power loss have no such claim, and a
//!   flip in them cannot be told from a torn write by anything on disk. Computed from the
//!   bytes as they are, not from how often the file was synced: "followed by one more
//!   sync" let a flip land in frames that no later frame claimed (another process's frames,
//!   or one appended while the sync that covered it was running).

use mentedb_storage::wal::format::{FRAME_ALIGN, WAL_HEADER_SIZE, decode_header, parse_frame};

/// End of the bytes of a durable `wal.log` image where a flip is provably detectable
/// without seals: past the last frame some later intact frame claims durable (0 if none,
/// or if the header does not verify).
pub fn proven_end(durable: &[u8]) -> u64 {
    let Ok(header) = decode_header(durable) else {
        return 0;
    };
    let mut frames = Vec::new();
    let mut position = WAL_HEADER_SIZE;
    while position + FRAME_ALIGN <= durable.len() {
        if let Ok(frame) = parse_frame(&durable[position..], position as u64, header.salt) {
            frames.push(frame);
            position += frame.total_len as usize;
        } else {
            position += FRAME_ALIGN;
        }
    }
    let claimed = frames
        .iter()
        .map(|frame| frame.durable_lsn)
        .max()
        .unwrap_or_default();
    frames
        .iter()
        .filter(|frame| frame.lsn <= claimed && frame.lsn.0 > header.base_lsn.0)
        .map(|frame| frame.offset + u64::from(frame.total_len))
        .max()
        .unwrap_or(0)
}
