//! The write-ahead log `wal.log`: appends, group commit, reset, and reading frames back.
//!
//! The byte format and the scan that finds where the log ends are pure functions in
//! [`format`](mod@format). This module owns the file handle and the durability bookkeeping:
//! - Appends are O(1): the writer keeps a [`WalCursor`] (end offset, last CRC, last LSN)
//!   and never rescans the log to find where to write.
//! - Group commit: [`Wal::sync_through`] makes an LSN durable; concurrent committers wait
//!   for one leader's `fdatasync` instead of each issuing their own.
//! - A failed `fdatasync` poisons the log for good (Linux may have dropped the dirty pages
//!   and a retry would lie): every later sync returns [`Error::Poisoned`].
//! - The file lock on `wal.log` serializes writers across processes (see `engine`).
//! - Preallocation: an append that grows the file also writes zeros up to the next
//!   multiple of [`WAL_PREALLOC_BYTES`] past it, synced with it (unless it is a large
//!   batch, which pays for its inode write with much data and would only write twice). The commits after it
//!   overwrite blocks the file already has, so their `fdatasync` flushes data only, not the
//!   inode (on this project's disk a bare overwrite + `fdatasync` loop runs ~1.5x an append
//!   loop). The scan stops at the zeros ([`ScanStop::Preallocated`]); a reset truncates them.

pub mod format;

use crate::error::{Error, Result};
use crate::failpoints;
use crate::page::Lsn;
use crate::vfs::{Vfs, VfsFile};
pub use format::{
    AfterZeros, FrameInfo, FrameSpec, Scan, ScanStart, ScanStop, WAL_HEADER_SIZE, WalEntryType,
    WalHeader,
};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

/// Name of the WAL file inside the database directory.
pub const WAL_FILE_NAME: &str = "wal.log";
/// Bytes of WAL a scan reads at a time.
pub const SCAN_WINDOW_BYTES: usize = 256 * 1024;
/// Largest stretch of WAL one scan walks.
pub const WAL_SCAN_BYTES_MAX: u64 = 1 << 32;
/// The WAL file grows in steps of this many bytes of zeros (see the module docs).
pub const WAL_PREALLOC_BYTES: u64 = 1 << 20;
/// Appends at least this large grow the file without preallocating after them.
const PREALLOC_APPEND_MAX: u64 = WAL_PREALLOC_BYTES / 4;
/// Bytes of zeros one `pwrite` of preallocation writes.
const PREALLOC_WRITE_BYTES: usize = 256 * 1024;

/// One decoded WAL entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalEntry {
    /// Its LSN.
    pub lsn: Lsn,
    /// Its kind.
    pub kind: WalEntryType,
    /// Its decoded (decompressed) payload.
    pub payload: Vec<u8>,
}

/// Where the next frame goes: the end of the committed log as this process knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WalCursor {
    /// Salt of the current life of the log.
    pub salt: u32,
    /// LSN before the first frame of this life.
    pub base_lsn: Lsn,
    /// CRC of the header (first frame's `prev_crc`).
    pub header_crc: u32,
    /// Offset just past the last committed frame.
    pub end: u64,
    /// CRC of the last committed frame (or the header's).
    pub prev_crc: u32,
    /// LSN of the last committed frame (or `base_lsn`).
    pub last_lsn: Lsn,
}

impl WalCursor {
    /// The cursor of an empty log with `header`.
    pub fn at_start(header: WalHeader) -> WalCursor {
        WalCursor {
            salt: header.salt,
            base_lsn: header.base_lsn,
            header_crc: header.crc,
            end: WAL_HEADER_SIZE as u64,
            prev_crc: header.crc,
            last_lsn: header.base_lsn,
        }
    }

    /// Where a scan continuing from this cursor starts.
    pub fn scan_start(&self) -> ScanStart {
        ScanStart {
            offset: self.end,
            prev_crc: self.prev_crc,
            lsn: self.last_lsn,
        }
    }

    /// The cursor after the committed part of `scan`.
    pub fn after(&self, scan: &Scan) -> WalCursor {
        WalCursor {
            end: scan.committed_end,
            prev_crc: scan.committed_crc,
            last_lsn: scan.committed_lsn,
            ..*self
        }
    }
}

#[derive(Debug, Default)]
struct SyncState {
    durable_lsn: Lsn,
    syncing: bool,
    /// Threads waiting for the syncing leader.
    waiting: usize,
    poisoned: Option<String>,
}

/// The open WAL file of one engine instance.
#[derive(Debug)]
pub struct Wal {
    file: Box<dyn VfsFile>,
    written_lsn: AtomicU64,
    /// The file's length as last seen under the WAL lock (scan, reset, append): an append
    /// past it preallocates. Only a hint: stale low it rewrites zeros, stale high it skips
    /// one preallocation; the next scan under the lock corrects it.
    known_len: AtomicU64,
    sync: Mutex<SyncState>,
    synced: Condvar,
}

fn lock_state(mutex: &Mutex<SyncState>) -> MutexGuard<'_, SyncState> {
    crate::sched::lock(mutex)
}

/// Reads into `buffer` from `offset` until it is full or the file ends; returns the count.
pub(crate) fn read_up_to(
    file: &dyn VfsFile,
    buffer: &mut [u8],
    offset: u64,
) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read_at(&mut buffer[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(count) => filled += count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

fn wal_io(operation: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::io(operation, WAL_FILE_NAME, source)
}

impl Wal {
    /// Opens the WAL at `path` (see [`crate::vfs::open_for`]: created if missing, or
    /// read-only with a missing log read as empty).
    pub fn open(vfs: &dyn Vfs, path: &Path, access: crate::vfs::Access) -> Result<Wal> {
        let file = crate::vfs::open_for(vfs, path, access, true).map_err(wal_io("open"))?;
        Ok(Wal {
            file,
            written_lsn: AtomicU64::new(0),
            known_len: AtomicU64::new(0),
            sync: Mutex::new(SyncState::default()),
            synced: Condvar::new(),
        })
    }

    /// Reads the header; `Ok(None)` for a log that was never initialised (empty, or a
    /// header-sized remnant of an interrupted reset). An invalid header in front of frame
    /// bytes is corruption.
    ///
    /// One read of the header and the byte after it tells all three apart: no `lseek`
    /// (every writer reads the header before its commit).
    pub fn read_header(&self) -> Result<Option<WalHeader>> {
        let mut bytes = [0u8; WAL_HEADER_SIZE + 1];
        let len = read_up_to(&*self.file, &mut bytes, 0).map_err(wal_io("read"))?;
        if len < WAL_HEADER_SIZE {
            return Ok(None);
        }
        match format::decode_header(&bytes[..WAL_HEADER_SIZE]) {
            Ok(header) => Ok(Some(header)),
            Err(_) if len == WAL_HEADER_SIZE => Ok(None),
            Err(error) => Err(error.at(WAL_FILE_NAME, 0)),
        }
    }

    /// Starts a new life of the log: empties the file durably, then writes and syncs a
    /// header with `salt` and `base_lsn`. A crash in between leaves an empty or header-sized
    /// file, which [`Wal::read_header`] reads as uninitialised. Caller holds the WAL lock.
    pub fn reset(&self, salt: u32, base_lsn: Lsn) -> Result<WalHeader> {
        self.file.set_len(0).map_err(wal_io("truncate"))?;
        self.sync_now()?;
        failpoints::check("wal.reset.truncated").map_err(wal_io("write"))?;
        let bytes = format::encode_header(salt, base_lsn);
        self.file.write_all_at(&bytes, 0).map_err(wal_io("write"))?;
        self.sync_now()?;
        self.known_len
            .store(WAL_HEADER_SIZE as u64, Ordering::Release);
        self.note_durable(base_lsn);
        format::decode_header(&bytes).map_err(|error| error.at(WAL_FILE_NAME, 0))
    }

    /// Rewrites the whole file and syncs it (see [`crate::vfs::rewrite_range`]): run at
    /// open after some process's sync failed. The header goes first, synced on its own:
    /// when it never reached the disk, a power cut during one rewrite could keep the frames
    /// and tear the header, and a log whose header is bad in front of frames is corruption
    /// no open accepts. Caller holds the WAL lock.
    pub fn rewrite_all(&self) -> Result<()> {
        crate::vfs::rewrite_range(&*self.file, 0, WAL_HEADER_SIZE as u64)
            .map_err(wal_io("rewrite"))?;
        self.sync_now()?;
        self.rewrite_from(WAL_HEADER_SIZE as u64)
    }

    /// Makes everything written to the file durable, the header included: run when a
    /// process adopts a header it did not sync itself (a checkpoint that died in its WAL
    /// reset leaves the new header in the page cache only; frames appended behind it and
    /// kept by a power cut that drops the header give a log no open accepts: 1,000-seed
    /// swarm campaign, seed 501). Caller holds the WAL lock.
    pub fn sync_adopted_header(&self) -> Result<()> {
        self.sync_now()
    }

    /// [`Wal::rewrite_all`] of the bytes from `offset` on: what may not be durable (a power
    /// cut during a rewrite may tear what it rewrites).
    pub fn rewrite_from(&self, offset: u64) -> Result<()> {
        crate::vfs::rewrite_range(&*self.file, offset, u64::MAX).map_err(wal_io("rewrite"))?;
        self.sync_now()
    }

    /// Scans the frames after `cursor` to the end of the file, reading it in windows of
    /// [`SCAN_WINDOW_BYTES`] (a reopen after a crash reads megabytes; one buffer of that size
    /// is reused instead of a fresh one as large as the log).
    ///
    /// `after_zeros` says whether the corruption probe runs after preallocated zeros: at
    /// open ([`AfterZeros::Probe`]), not when catching up with the live log.
    ///
    /// A catch-up ([`AfterZeros::End`]) does not ask the file's length (a system call before
    /// every commit): reads come back short at the end, and the log's end is in the first
    /// window when nothing is new.
    pub fn scan_after(&self, cursor: &WalCursor, after_zeros: AfterZeros) -> Result<Scan> {
        let len = match after_zeros {
            AfterZeros::End => u64::MAX,
            AfterZeros::Probe => {
                let len = self.file.len().map_err(wal_io("stat"))?;
                self.known_len.store(len, Ordering::Release);
                let wanted = len.saturating_sub(cursor.end);
                if wanted > WAL_SCAN_BYTES_MAX {
                    return Err(Error::TooLarge {
                        what: "write-ahead log",
                        size: wanted,
                        limit: WAL_SCAN_BYTES_MAX,
                    });
                }
                len
            }
        };
        let mut read = |offset: u64, buffer: &mut [u8]| read_up_to(&*self.file, buffer, offset);
        format::scan_file(
            len,
            cursor.salt,
            cursor.scan_start(),
            SCAN_WINDOW_BYTES,
            after_zeros,
            &mut read,
        )
        .map_err(wal_io("read"))
    }

    /// Reads back one frame found by a scan and decodes its payload. The frame is verified
    /// again: if another process reset the log since the scan, this fails with corruption
    /// at that offset, and the caller refreshes and retries.
    pub fn read_entry(&self, salt: u32, frame: &FrameInfo) -> Result<WalEntry> {
        let mut bytes = vec![0u8; frame.total_len as usize];
        self.file
            .read_exact_at(&mut bytes, frame.offset)
            .map_err(wal_io("read"))?;
        let at = |error: crate::error::DecodeError| error.at(WAL_FILE_NAME, frame.offset);
        let reread = format::parse_frame(&bytes, frame.offset, salt).map_err(at)?;
        if reread.crc != frame.crc || reread.lsn != frame.lsn {
            return Err(Error::corruption(
                WAL_FILE_NAME,
                frame.offset,
                "frame changed since it was scanned",
            ));
        }
        let payload = format::frame_payload(&bytes).map_err(at)?;
        Ok(WalEntry {
            lsn: frame.lsn,
            kind: frame.kind,
            payload,
        })
    }

    /// Writes encoded frames at `offset`; `last_lsn` is the LSN of the last of them.
    /// Caller holds the WAL lock. Not durable until [`Wal::sync_through`].
    ///
    /// `Err` means the frames are not part of the log: a failed write is undone by cutting
    /// the file back to `offset` (which never needs space; the committed log ends there)
    /// and syncing the cut, so no scan in any process, and no recovery after a power loss,
    /// ever sees a commit of it. If that fails too, the error is [`Error::OutcomeUnknown`]
    /// (and the log is poisoned: a failed sync cannot be trusted again). Zeroing
    /// ahead of the log (preallocation) is best effort: failing to preallocate is not a
    /// failed append (it was once reported as one: the caller then believed a write that
    /// had committed had failed).
    pub fn append(&self, offset: u64, frames: &[u8], last_lsn: Lsn) -> Result<()> {
        failpoints::check("wal.append.before").map_err(wal_io("write"))?;
        let written = self
            .file
            .write_all_at(frames, offset)
            .and_then(|()| failpoints::check("wal.append.after"));
        if let Err(source) = written {
            self.known_len.store(offset, Ordering::Release);
            let undone = self
                .file
                .set_len(offset)
                .map_err(|undo| undo.to_string())
                .and_then(|()| self.sync_now().map_err(|undo| undo.to_string()));
            return match undone {
                Ok(()) => Err(Error::io("write", WAL_FILE_NAME, source)),
                Err(undo) => Err(Error::OutcomeUnknown(format!(
                    "appending to {WAL_FILE_NAME} failed ({source}) and so did undoing it \
                     ({undo})"
                ))),
            };
        }
        self.written_lsn.fetch_max(last_lsn.0, Ordering::AcqRel);
        let end = offset + frames.len() as u64;
        if frames.len() as u64 >= PREALLOC_APPEND_MAX {
            // A large commit pays for its inode write with a lot of data; zeros ahead of
            // it would only double what the batch after it writes.
            self.known_len.fetch_max(end, Ordering::AcqRel);
            return Ok(());
        }
        // Best effort: without the zeros ahead, the next appends grow the file instead.
        let _ = self.preallocate_after(end);
        Ok(())
    }

    /// If an append ending at `end` grew the file, writes zeros from `end` to the next
    /// multiple of [`WAL_PREALLOC_BYTES`] after it (the same `fdatasync` makes them durable
    /// with the frames). Only bytes past the committed log are written: those are never
    /// part of it (torn frames, or zeros already).
    fn preallocate_after(&self, end: u64) -> Result<()> {
        if end <= self.known_len.load(Ordering::Acquire) {
            return Ok(());
        }
        let target = (end / WAL_PREALLOC_BYTES + 1) * WAL_PREALLOC_BYTES;
        let zeros = vec![0u8; PREALLOC_WRITE_BYTES];
        let mut at = end;
        while at < target {
            let count = (target - at).min(PREALLOC_WRITE_BYTES as u64) as usize;
            self.file
                .write_all_at(&zeros[..count], at)
                .map_err(wal_io("write"))?;
            at += count as u64;
        }
        self.known_len.store(target, Ordering::Release);
        Ok(())
    }

    /// Highest LSN this instance knows durable.
    pub fn durable_lsn(&self) -> Lsn {
        lock_state(&self.sync).durable_lsn
    }

    /// Records that everything up to `lsn` is durable (e.g. after a checkpoint).
    pub fn note_durable(&self, lsn: Lsn) {
        let mut state = lock_state(&self.sync);
        state.durable_lsn = state.durable_lsn.max(lsn);
    }

    /// The poison reason, if a sync has failed.
    pub fn poisoned(&self) -> Option<String> {
        lock_state(&self.sync).poisoned.clone()
    }

    /// Returns once `lsn` is durable. Concurrent callers share one `fdatasync`: the first
    /// becomes the leader and syncs everything written so far; the others wait for it.
    pub fn sync_through(&self, lsn: Lsn) -> Result<()> {
        self.sync_through_with(lsn, |wal, target| wal.sync_file().map(|()| target))
    }

    /// `fdatasync` of the log, between the `wal.sync.*` failpoints.
    pub fn sync_file(&self) -> std::io::Result<()> {
        failpoints::check("wal.sync.before")
            .and_then(|()| self.file.sync_data())
            .and_then(|()| failpoints::check("wal.sync.after"))
    }

    /// [`Wal::sync_through`] with the leader's work given by the caller: `leader(wal,
    /// target)` must make everything this instance wrote up to `target` durable (usually
    /// with [`Wal::sync_file`]) and return the LSN it knows durable, at least `target`.
    /// The engine uses it to share syncs with other processes. A failure poisons the log.
    pub fn sync_through_with(
        &self,
        lsn: Lsn,
        leader: impl Fn(&Wal, Lsn) -> std::io::Result<Lsn>,
    ) -> Result<()> {
        let mut state = lock_state(&self.sync);
        loop {
            if let Some(reason) = &state.poisoned {
                return Err(Error::Poisoned(reason.clone()));
            }
            if state.durable_lsn >= lsn {
                return Ok(());
            }
            if state.syncing {
                state.waiting += 1;
                state = crate::sched::wait(&self.synced, &self.sync, state);
                state.waiting -= 1;
                continue;
            }
            state.syncing = true;
            let target = Lsn(self.written_lsn.load(Ordering::Acquire)).max(lsn);
            drop(state);
            let result = leader(self, target);
            state = lock_state(&self.sync);
            state.syncing = false;
            match result {
                Ok(durable) => {
                    debug_assert!(durable >= target, "the leader must cover its target");
                    state.durable_lsn = state.durable_lsn.max(durable).max(target);
                }
                Err(error) => {
                    state.poisoned = Some(format!("fdatasync of {WAL_FILE_NAME} failed: {error}"))
                }
            }
            if state.waiting > 0 {
                // A wake-up is a system call even with nobody waiting.
                self.synced.notify_all();
            }
        }
    }

    /// Syncs now, outside group commit (reset). A failure poisons the log.
    fn sync_now(&self) -> Result<()> {
        if let Err(error) = self.file.sync_data() {
            let reason = format!("fdatasync of {WAL_FILE_NAME} failed: {error}");
            lock_state(&self.sync).poisoned = Some(reason.clone());
            return Err(Error::Poisoned(reason));
        }
        Ok(())
    }

    /// The file whose exclusive lock is the writer lock (the engine takes it within its
    /// lock timeout).
    pub(crate) fn lock_file(&self) -> &dyn VfsFile {
        &*self.file
    }

    /// Releases the writer lock.
    pub fn unlock(&self) -> Result<()> {
        self.file.unlock().map_err(wal_io("unlock"))
    }

    /// Current file length.
    pub fn file_len(&self) -> Result<u64> {
        self.file.len().map_err(wal_io("stat"))
    }
}
