//! The shared counters file `wal.shm`: what every process of a database directory polls and
//! publishes without a lock (the last commit, the durable LSN, the writer marks), and the
//! cross-process sync gate (its `flock`). See [`SharedCounter`] for the layout.

use crate::error::{Error, Result};
use crate::page::Lsn;
use crate::vfs::{LockMode, SharedView, Vfs, VfsFile};
use std::path::Path;

/// Name of the shared change counter inside the database directory.
pub const SHM_FILE_NAME: &str = "wal.shm";
/// What a missing or torn `wal.shm` reads as: never published (LSNs stay far below).
const SHM_UNKNOWN: u64 = u64::MAX;
/// Where `wal.shm` keeps the durable-LSN record (`salt u32, lsn u64, crc u32`).
const DURABLE_OFFSET: u64 = 32;
const DURABLE_RECORD_BYTES: usize = 16;
/// Where `wal.shm` keeps the sync-failure mark, and the mark.
const SYNC_FAILED_OFFSET: u64 = 16;
const SYNC_FAILED_MARK: [u8; 8] = *b"SYNCFAIL";
/// Where `wal.shm` keeps the checkpoint-in-progress mark (`salt u32, magic u32, crc u32`).
const CHECKPOINT_MARK_OFFSET: u64 = 48;
const CHECKPOINT_MARK_BYTES: usize = 12;
const CHECKPOINT_MARK_MAGIC: u32 = 0x4b43_5043;
/// Where `wal.shm` keeps the sync intent (`magic u32, crc u32`), after the holder record
/// of `locks` (offsets 64..77).
const SYNC_INTENT_OFFSET: u64 = 80;
const SYNC_INTENT_BYTES: usize = 16;
/// Where `wal.shm` keeps the boot the sync-failure mark was set in.
const SYNC_FAILED_BOOT_OFFSET: u64 = 24;
const SYNC_INTENT_MAGIC: u32 = 0x434e_5953;
/// The marks a writer reads under the writer lock: offsets 16 to 60, one read.
const WRITER_MARKS_BYTES: usize =
    (CHECKPOINT_MARK_OFFSET - SYNC_FAILED_OFFSET) as usize + CHECKPOINT_MARK_BYTES;
const _: () = assert!(DURABLE_OFFSET + DURABLE_RECORD_BYTES as u64 <= CHECKPOINT_MARK_OFFSET);
const _: () = assert!(CHECKPOINT_MARK_OFFSET as usize + CHECKPOINT_MARK_BYTES <= SHM_MAP_BYTES);
const _: () = assert!(SYNC_INTENT_OFFSET as usize + SYNC_INTENT_BYTES <= SHM_MAP_BYTES);
/// Bytes of `wal.shm` mapped (one page; the file is extended to it).
const SHM_MAP_BYTES: usize = 4096;

/// The shared counters file `wal.shm` (never synced; it only coordinates processes):
/// - offset 0: `lsn u64, crc u32` of the last commit (readers poll it to catch up);
/// - offset 16: the 8-byte sync-failure mark `SYNCFAIL` (or zeros), and at 24 the boot it
///   was set in (`Vfs::boot_id`; 0 from older builds: unknown);
/// - offset 32: `salt u32, lsn u64, crc u32`: the highest LSN of that WAL life some process
///   made durable (cross-process group commit), reset by every open;
/// - offset 48: `salt u32, magic u32, crc u32`: a checkpoint of that WAL life is writing its
///   meta page (set before the meta page is written, cleared after the WAL is reset). A
///   writer that finds it set holds the writer lock the checkpointer held, so the
///   checkpointer died in between: the meta page may be new while the WAL was not reset,
///   and appending to it would give a WAL that straddles the checkpoint. The writer
///   reloads its view from the meta page instead (which resets the WAL if the checkpoint
///   covers it) and clears the mark;
/// - offset 64: the writer lock's holder record (see `locks`);
/// - offset 80: `boot u64, magic u32, crc u32`: the sync intent. The holder of the sync gate sets it
///   before its `fdatasync` of `wal.log` and clears it after the sync succeeded, before it
///   releases the gate; a failed sync leaves it set. So one found set by whoever holds the
///   gate was left by a process whose sync failed or that died syncing: the sync-failure
///   mark, written after the failure, has a window (the process killed before it) that this
///   does not. An open treats it as a failed sync (see `durability`). A live process need
///   not: a failure after its log handle was opened is reported to its own next sync
///   (Linux since 4.13, and `SimFs`), and one before is what the open it made repaired.
///   Both marks name the boot they were set in: after a power loss the page cache they warn
///   about is gone, and an open only clears them (a repair then rewrites durable bytes,
///   which a power cut during it may tear).
///
/// Where the filesystem can map files, the first 4 KiB are mapped (the file is extended
/// with zeros to that size): the counters are polled and published without a system call
/// (the rare sync-failure mark stays a `pwrite`). Records carry a CRC, so a reader that
/// meets one half-written takes it as unknown, as after a torn `pwrite`.
///
/// Its `flock` (through a second handle) is the sync gate.
#[derive(Debug)]
pub(crate) struct SharedCounter {
    file: Box<dyn VfsFile>,
    /// The file mapped, where the filesystem can (`RealFs`): every load polls the counter,
    /// and a `pread` per load was a fifth of a warm load's time.
    map: Option<Box<dyn SharedView>>,
    /// A second handle on the same file: its `flock` is the cross-process sync gate (a
    /// lock belongs to a handle, so it must not be the handle the counter is read through).
    sync_gate: Box<dyn VfsFile>,
    /// This boot (`Vfs::boot_id`), stamped into the marks.
    boot: u64,
}

/// What [`SharedCounter::writer_marks`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct WriterMarks {
    /// Some process's sync failed since the last repair.
    pub sync_failed: bool,
    /// The boot it failed in (0: unknown, an older build's mark).
    pub sync_failed_boot: u64,
    /// A checkpoint of the WAL life with this salt started writing its meta page and did
    /// not finish.
    pub interrupted_checkpoint: Option<u32>,
}

/// Holds the cross-process sync gate; releases it on drop.
pub(crate) struct SyncGate<'a>(&'a SharedCounter);

impl Drop for SyncGate<'_> {
    fn drop(&mut self) {
        // Unlocking cannot meaningfully fail; closing the handle would release it too.
        let _ = self.0.sync_gate.unlock();
    }
}

impl SharedCounter {
    pub fn open(vfs: &dyn Vfs, path: &Path, access: crate::vfs::Access) -> Result<SharedCounter> {
        let open = || {
            crate::vfs::open_for(vfs, path, access, true)
                .map_err(|source| Error::io("open", SHM_FILE_NAME, source))
        };
        let file = open()?;
        // Without a map (a filesystem that cannot, or mmap failed) reads use `pread`.
        let map = file.map_shared(SHM_MAP_BYTES).ok().flatten();
        Ok(SharedCounter {
            file,
            map,
            sync_gate: open()?,
            boot: vfs.boot_id(),
        })
    }

    /// Writes `bytes` at `offset`: through the map if there is one (no system call).
    pub(super) fn write_bytes(&self, bytes: &[u8], offset: u64) -> Result<()> {
        if let Some(map) = &self.map
            && let Ok(start) = usize::try_from(offset)
            && map.write(start, bytes)
        {
            return Ok(());
        }
        self.file
            .write_all_at(bytes, offset)
            .map_err(|source| Error::io("write", SHM_FILE_NAME, source))
    }

    /// Reads `buf.len()` bytes at `offset`: through the map if there is one.
    pub(super) fn read_bytes(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        if let Some(map) = &self.map
            && let Ok(start) = usize::try_from(offset)
            && map.read(start, buf)
        {
            return Ok(());
        }
        self.file.read_exact_at(buf, offset)
    }

    /// Takes the cross-process sync gate (blocking): one process at a time syncs the WAL,
    /// the others then find their commit covered.
    pub fn take_sync_gate(&self) -> Result<SyncGate<'_>> {
        self.sync_gate
            .lock(LockMode::Exclusive)
            .map_err(|source| Error::io("lock", SHM_FILE_NAME, source))?;
        Ok(SyncGate(self))
    }

    /// The highest LSN some process made durable in the WAL life of `salt`, or `Lsn(0)`
    /// if none is recorded (missing, torn, or another life).
    pub fn read_durable(&self, salt: u32) -> Result<Lsn> {
        let mut bytes = [0u8; DURABLE_RECORD_BYTES];
        match self.read_bytes(&mut bytes, DURABLE_OFFSET) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(Lsn(0)),
            Err(source) => return Err(Error::io("read", SHM_FILE_NAME, source)),
        }
        let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        let stored_salt = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if crc != crc32fast::hash(&bytes[..12]) || stored_salt != salt {
            return Ok(Lsn(0));
        }
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[4..12]);
        let lsn = Lsn(u64::from_le_bytes(raw));
        Ok(if lsn.is_valid() { lsn } else { Lsn(0) })
    }

    /// The durable-LSN record as stored (salt and LSN), if it is intact.
    pub fn durable_record(&self) -> Result<Option<(u32, Lsn)>> {
        let mut bytes = [0u8; DURABLE_RECORD_BYTES];
        match self.read_bytes(&mut bytes, DURABLE_OFFSET) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(source) => return Err(Error::io("read", SHM_FILE_NAME, source)),
        }
        let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if crc != crc32fast::hash(&bytes[..12]) {
            return Ok(None);
        }
        let salt = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[4..12]);
        let lsn = Lsn(u64::from_le_bytes(raw));
        Ok(lsn.is_valid().then_some((salt, lsn)))
    }

    /// Records that every frame up to `lsn` of the WAL life `salt` is durable.
    pub fn write_durable(&self, salt: u32, lsn: Lsn) -> Result<()> {
        let mut bytes = [0u8; DURABLE_RECORD_BYTES];
        bytes[..4].copy_from_slice(&salt.to_le_bytes());
        bytes[4..12].copy_from_slice(&lsn.0.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..12]);
        bytes[12..].copy_from_slice(&crc.to_le_bytes());
        self.write_bytes(&bytes, DURABLE_OFFSET)
    }

    /// The stored value, or [`SHM_UNKNOWN`] if it is missing or torn: a value no process
    /// has seen, so the reader refreshes. (It was 0 before, which equals the counter of a
    /// database without commits: a reader that had seen 0 skipped the refresh after a short
    /// read and scanned a stale view. Found by the simulator, seed 298 of `--faults swarm`.)
    pub fn read(&self) -> Result<u64> {
        let mut bytes = [0u8; 12];
        match self.read_bytes(&mut bytes, 0) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(SHM_UNKNOWN);
            }
            Err(source) => return Err(Error::io("read", SHM_FILE_NAME, source)),
        }
        let crc = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
        if crc != crc32fast::hash(&bytes[..8]) {
            return Ok(SHM_UNKNOWN);
        }
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[..8]);
        Ok(u64::from_le_bytes(raw))
    }

    /// Notes that a sync failed in some process: the page cache may show WAL or meta bytes
    /// the disk lacks. Stays set (in the page cache, like the bytes it warns about) until an
    /// open has rewritten them.
    pub fn mark_sync_failed(&self) -> Result<()> {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&SYNC_FAILED_MARK);
        bytes[8..].copy_from_slice(&self.boot.to_le_bytes());
        self.file
            .write_all_at(&bytes, SYNC_FAILED_OFFSET)
            .map_err(|source| Error::io("write", SHM_FILE_NAME, source))
    }

    /// This boot, as the marks record it.
    pub fn boot(&self) -> u64 {
        self.boot
    }

    /// The marks writers check under the writer lock: whether a sync failed, and the
    /// salt of a checkpoint that was interrupted (see the type's docs), in one read.
    pub fn writer_marks(&self) -> Result<WriterMarks> {
        let mut bytes = [0u8; WRITER_MARKS_BYTES];
        match self.read_bytes(&mut bytes, SYNC_FAILED_OFFSET) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Ok(WriterMarks::default());
            }
            Err(source) => return Err(Error::io("read", SHM_FILE_NAME, source)),
        }
        let sync_failed = bytes[..SYNC_FAILED_MARK.len()] == SYNC_FAILED_MARK;
        let boot_at = (SYNC_FAILED_BOOT_OFFSET - SYNC_FAILED_OFFSET) as usize;
        let mut boot = [0u8; 8];
        boot.copy_from_slice(&bytes[boot_at..boot_at + 8]);
        let sync_failed_boot = u64::from_le_bytes(boot);
        let start = (CHECKPOINT_MARK_OFFSET - SYNC_FAILED_OFFSET) as usize;
        let mark = &bytes[start..start + CHECKPOINT_MARK_BYTES];
        let word = |index: usize| {
            u32::from_le_bytes([
                mark[index * 4],
                mark[index * 4 + 1],
                mark[index * 4 + 2],
                mark[index * 4 + 3],
            ])
        };
        let interrupted_checkpoint = (word(1) == CHECKPOINT_MARK_MAGIC
            && word(2) == crc32fast::hash(&mark[..8]))
        .then(|| word(0));
        Ok(WriterMarks {
            sync_failed,
            sync_failed_boot,
            interrupted_checkpoint,
        })
    }

    /// Sets the checkpoint-in-progress mark for the WAL life `salt` (see the type's docs).
    pub fn mark_checkpoint(&self, salt: u32) -> Result<()> {
        let mut bytes = [0u8; CHECKPOINT_MARK_BYTES];
        bytes[..4].copy_from_slice(&salt.to_le_bytes());
        bytes[4..8].copy_from_slice(&CHECKPOINT_MARK_MAGIC.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..8]);
        bytes[8..].copy_from_slice(&crc.to_le_bytes());
        self.write_bytes(&bytes, CHECKPOINT_MARK_OFFSET)
    }

    /// Clears the checkpoint-in-progress mark.
    pub fn clear_checkpoint_mark(&self) -> Result<()> {
        self.write_bytes(&[0u8; CHECKPOINT_MARK_BYTES], CHECKPOINT_MARK_OFFSET)
    }

    /// Sets the sync intent (see the type's docs). Caller holds the sync gate.
    pub fn mark_sync_intent(&self) -> Result<()> {
        let mut bytes = [0u8; SYNC_INTENT_BYTES];
        bytes[..8].copy_from_slice(&self.boot.to_le_bytes());
        bytes[8..12].copy_from_slice(&SYNC_INTENT_MAGIC.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..12]);
        bytes[12..].copy_from_slice(&crc.to_le_bytes());
        self.write_bytes(&bytes, SYNC_INTENT_OFFSET)
    }

    /// Clears the sync intent. Caller holds the sync gate.
    pub fn clear_sync_intent(&self) -> Result<()> {
        self.write_bytes(&[0u8; SYNC_INTENT_BYTES], SYNC_INTENT_OFFSET)
    }

    /// The sync intent, if set: for a caller holding the sync gate, a sync that failed or
    /// whose process died (see the type's docs), with the boot it was set in. A torn
    /// record counts as set in this boot: only an intent write leaves anything but zeros
    /// there.
    pub fn sync_intent(&self) -> Result<Option<u64>> {
        let mut bytes = [0u8; SYNC_INTENT_BYTES];
        match self.read_bytes(&mut bytes, SYNC_INTENT_OFFSET) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(source) => return Err(Error::io("read", SHM_FILE_NAME, source)),
        }
        if bytes == [0u8; SYNC_INTENT_BYTES] {
            return Ok(None);
        }
        let crc = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
        if crc != crc32fast::hash(&bytes[..12]) {
            return Ok(Some(self.boot));
        }
        let mut boot = [0u8; 8];
        boot.copy_from_slice(&bytes[..8]);
        Ok(Some(u64::from_le_bytes(boot)))
    }

    /// Clears the sync-failure mark.
    pub fn clear_sync_failed(&self) -> Result<()> {
        self.file
            .write_all_at(&[0u8; 16], SYNC_FAILED_OFFSET)
            .map_err(|source| Error::io("write", SHM_FILE_NAME, source))
    }

    /// Publishes a new value (page cache only; never synced).
    pub fn write(&self, value: u64) -> Result<()> {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(&value.to_le_bytes());
        let crc = crc32fast::hash(&bytes[..8]);
        bytes[8..].copy_from_slice(&crc.to_le_bytes());
        self.write_bytes(&bytes, 0)
    }
}
