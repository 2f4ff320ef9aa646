//! Bounded waits for the cross-process locks, and who holds them.
//!
//! # What it owns
//! - Taking the writer lock (an exclusive `flock` on `wal.log`) and the checkpoint gate (a
//!   `flock` on a second handle of `pages.db`: exclusive for a checkpoint, shared for a
//!   snapshot) within [`crate::Options::lock_timeout`]. A held lock is polled with
//!   `try_lock`, backing off from [`POLL_FIRST`] to [`POLL_MAX`], on the engine's clock
//!   ([`crate::sched`]: simulated time under the simulator, so a timeout expires after a
//!   number of steps and replays).
//! - The holder record in `wal.shm` ([`HOLDER_OFFSET`]): each process that takes the writer
//!   lock writes its process id and what it holds it for, so that a writer that gives up
//!   can say who it waited for. It is a hint (never synced, written after the lock is
//!   taken, left behind when released): the error names it as the last holder seen.
//!
//! # Promise
//! A call that cannot take a lock within the timeout returns [`Error::Locked`] naming the
//! database directory, the lock, how long it waited and the holder if recorded; it has
//! written nothing (every lock is taken before the first write of the call).

use super::Inner;
use super::shm::SharedCounter;
use crate::error::{Error, Result};
use crate::vfs::{LockMode, VfsFile};
use std::time::Duration;

/// First pause between two attempts at a held lock.
const POLL_FIRST: Duration = Duration::from_micros(20);
/// Longest pause between two attempts: what a waiter may lag behind the release.
const POLL_MAX: Duration = Duration::from_millis(1);

/// Offset in `wal.shm` of the holder record: magic, process id, purpose, CRC32 of those.
const HOLDER_OFFSET: u64 = 64;
const HOLDER_BYTES: usize = 13;
const HOLDER_MAGIC: u32 = 0x444c_4f48;

/// What a process holds the writer lock for (named in [`Error::Locked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// A commit (store, update, delete, batch, apply).
    Write,
    /// A checkpoint.
    Checkpoint,
    /// A compaction step.
    Compact,
    /// Opening (recovery, or a read-only open's one consistent read).
    Open,
    /// An integrity check (it holds the lock while it reads every page).
    Check,
    /// Opening a snapshot (a backup).
    Snapshot,
    /// A load that could not read a consistent state without it.
    Load,
}

impl Purpose {
    const ALL: [Purpose; 7] = [
        Purpose::Write,
        Purpose::Checkpoint,
        Purpose::Compact,
        Purpose::Open,
        Purpose::Check,
        Purpose::Snapshot,
        Purpose::Load,
    ];

    fn code(self) -> u8 {
        match self {
            Purpose::Write => 1,
            Purpose::Checkpoint => 2,
            Purpose::Compact => 3,
            Purpose::Open => 4,
            Purpose::Check => 5,
            Purpose::Snapshot => 6,
            Purpose::Load => 7,
        }
    }

    fn from_code(code: u8) -> Option<Purpose> {
        Purpose::ALL
            .into_iter()
            .find(|purpose| purpose.code() == code)
    }

    fn describe(self) -> &'static str {
        match self {
            Purpose::Write => "a write",
            Purpose::Checkpoint => "a checkpoint",
            Purpose::Compact => "a compaction",
            Purpose::Open => "opening the database",
            Purpose::Check => "an integrity check",
            Purpose::Snapshot => "opening a snapshot (backup)",
            Purpose::Load => "a load",
        }
    }
}

/// The last holder of the writer lock that said so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Holder {
    pub process: u32,
    pub purpose: Purpose,
}

/// Encodes a holder record (pure).
fn encode_holder(holder: Holder) -> [u8; HOLDER_BYTES] {
    let mut bytes = [0u8; HOLDER_BYTES];
    bytes[..4].copy_from_slice(&HOLDER_MAGIC.to_le_bytes());
    bytes[4..8].copy_from_slice(&holder.process.to_le_bytes());
    bytes[8] = holder.purpose.code();
    let crc = crc32fast::hash(&bytes[..9]);
    bytes[9..].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes a holder record: `None` for anything but an intact one (pure).
fn decode_holder(bytes: &[u8; HOLDER_BYTES]) -> Option<Holder> {
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(0) != HOLDER_MAGIC || word(9) != crc32fast::hash(&bytes[..9]) {
        return None;
    }
    Some(Holder {
        process: word(4),
        purpose: Purpose::from_code(bytes[8])?,
    })
}

impl SharedCounter {
    /// Records this process as the holder of the writer lock (a hint; see the module docs).
    pub(crate) fn write_holder(&self, holder: Holder) -> Result<()> {
        self.write_bytes(&encode_holder(holder), HOLDER_OFFSET)
    }

    /// The last recorded holder of the writer lock, if any.
    pub(crate) fn read_holder(&self) -> Option<Holder> {
        let mut bytes = [0u8; HOLDER_BYTES];
        self.read_bytes(&mut bytes, HOLDER_OFFSET).ok()?;
        decode_holder(&bytes)
    }
}

/// Takes `mode` on `file` within `timeout`: `Ok(false)` when it stayed held.
pub(crate) fn lock_within(
    file: &dyn VfsFile,
    mode: LockMode,
    timeout: Duration,
) -> std::io::Result<bool> {
    if file.try_lock(mode)? {
        return Ok(true);
    }
    let deadline = crate::sched::now().checked_add(timeout);
    let mut pause = POLL_FIRST;
    loop {
        let now = crate::sched::now();
        let left = match deadline {
            Some(deadline) if now >= deadline => return Ok(false),
            Some(deadline) => deadline - now,
            None => POLL_MAX,
        };
        crate::sched::sleep(pause.min(left));
        if file.try_lock(mode)? {
            return Ok(true);
        }
        pause = (pause * 2).min(POLL_MAX);
    }
}

impl Inner {
    /// The error of a writer-lock wait that timed out.
    pub(crate) fn writer_lock_timed_out(&self) -> Error {
        let holder = match self.shm.read_holder() {
            Some(holder) => format!(
                "process {} holds it for {} (the last holder recorded in wal.shm)",
                holder.process,
                holder.purpose.describe()
            ),
            None => "no holder is recorded in wal.shm (an older version, or a tool \
                     holding the file)"
                .to_string(),
        };
        crate::rare_paths::hit(crate::rare_paths::RarePath::LockTimedOut);
        Error::Locked(format!(
            "{}: waited {:?} for the writer lock (an exclusive flock on wal.log); {holder}; \
             nothing was written",
            self.dir.display(),
            self.options.lock_timeout
        ))
    }

    /// The error of a checkpoint-gate wait that timed out.
    pub(crate) fn gate_timed_out(&self, mode: LockMode) -> Error {
        let what = match mode {
            LockMode::Exclusive => {
                "for the snapshots (backups) open in other threads or processes to end: a \
                 checkpoint rewrites pages they read"
            }
            LockMode::Shared => "for a checkpoint running in another process to end",
        };
        crate::rare_paths::hit(crate::rare_paths::RarePath::LockTimedOut);
        Error::Locked(format!(
            "{}: waited {:?} {what} (the checkpoint gate, a flock on pages.db); nothing was \
             written",
            self.dir.display(),
            self.options.lock_timeout
        ))
    }
}

/// Holds the cross-process writer lock; releases it on drop.
pub(super) struct WalLock<'a>(&'a crate::wal::Wal);

impl<'a> WalLock<'a> {
    /// Takes the writer lock of `inner` within its lock timeout (see [`locks`]) and records
    /// this process as its holder.
    pub(super) fn take(inner: &'a Inner, purpose: Purpose) -> Result<WalLock<'a>> {
        let taken = lock_within(
            inner.wal.lock_file(),
            crate::vfs::LockMode::Exclusive,
            inner.options.lock_timeout,
        )
        .map_err(|source| Error::io("lock", crate::wal::WAL_FILE_NAME, source))?;
        if !taken {
            return Err(inner.writer_lock_timed_out());
        }
        let lock = WalLock(&inner.wal);
        if !inner.options.is_read_only() {
            // A hint for a waiter's error; failing to leave it changes nothing.
            let _ = inner.shm.write_holder(Holder {
                process: inner.options.vfs.process_id(),
                purpose,
            });
        }
        Ok(lock)
    }
}

impl Drop for WalLock<'_> {
    fn drop(&mut self) {
        // Unlocking cannot meaningfully fail; if it did, closing the handle releases it.
        let _ = self.0.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_holder_record_round_trips_and_damage_reads_as_none() {
        for purpose in Purpose::ALL {
            let holder = Holder {
                process: 4242,
                purpose,
            };
            let bytes = encode_holder(holder);
            assert_eq!(decode_holder(&bytes), Some(holder));
            for at in 0..HOLDER_BYTES {
                let mut damaged = bytes;
                damaged[at] ^= 0x10;
                assert_eq!(decode_holder(&damaged), None, "byte {at}");
            }
        }
        assert_eq!(decode_holder(&[0; HOLDER_BYTES]), None);
    }
}
