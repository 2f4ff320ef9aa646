//! Which faults a run injects (drawn per seed: swarm testing) and the ground-truth log of
//! every fault that was injected.

use crate::workload::{below, chance};
use rand_chacha::rand_core::RngCore;
use std::fmt;

/// How much of the unsynced state survives a power loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persistence {
    /// POSIX at its most pessimistic: any subset of unsynced writes survives, in any
    /// order, each torn per piece; file lengths change only at a sync of the file.
    Strict,
    /// Like ext4 with `data=ordered`: per file, a prefix (in issue order) of the unsynced
    /// writes survives, the last one possibly torn; lengths follow the surviving writes.
    Ordered,
}

/// Fault rates for one run, in parts per million of the calls each applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultConfig {
    /// Power-loss persistence profile.
    pub persistence: Persistence,
    /// Probability that one unsynced write survives a power loss (Strict profile).
    pub survive_ppm: u32,
    /// Whether a surviving write may be torn into pieces of old, new and garbage bytes.
    pub torn_writes: bool,
    /// Tear granularity in bytes (512 or 4096).
    pub tear_piece_bytes: u64,
    /// `EIO` on a read.
    pub read_error_ppm: u32,
    /// `EIO` on a write.
    pub write_error_ppm: u32,
    /// Probability that an `EIO` keeps failing the same call kind on that file until the
    /// faults stop.
    pub error_persistent_ppm: u32,
    /// `ENOSPC` on a write or extension.
    pub no_space_ppm: u32,
    /// A read or write that transfers only part of the buffer.
    pub short_io_ppm: u32,
    /// A failed `fdatasync` (Linux semantics: reported once, the pages marked clean).
    pub sync_error_ppm: u32,
    /// After a failed `fdatasync`, the syncing process is killed at its next call: before
    /// it can leave any mark of the failure (the window of issue 16, item 4, which kills at
    /// random calls almost never hit).
    pub kill_after_sync_error_ppm: u32,
    /// A persistent bit flip in stored bytes, per write call.
    pub bit_flip_ppm: u32,
    /// Whether bit flips may hit `wal.log` (else only `pages.db`), where the engine promises
    /// to tell them from a torn tail (see [`super::wal_proof`]).
    pub wal_bit_flips: bool,
    /// Whether the engine seals its commits (`SyncMode::Sealed`): WAL flips may then hit
    /// any synced byte, and `wal.seal` too.
    pub sealed_commits: bool,
    /// A whole-page write that lands at another page's offset.
    pub misdirect_ppm: u32,
    /// Never-written regions read back as garbage instead of zeros.
    pub garbage_holes: bool,
}

impl FaultConfig {
    /// No faults at all (power loss and process crashes still lose unsynced state if the
    /// runner asks for them).
    pub fn none() -> FaultConfig {
        FaultConfig {
            persistence: Persistence::Strict,
            survive_ppm: 500_000,
            torn_writes: false,
            tear_piece_bytes: 4096,
            read_error_ppm: 0,
            write_error_ppm: 0,
            error_persistent_ppm: 0,
            no_space_ppm: 0,
            short_io_ppm: 0,
            sync_error_ppm: 0,
            kill_after_sync_error_ppm: 0,
            bit_flip_ppm: 0,
            wal_bit_flips: true,
            sealed_commits: false,
            misdirect_ppm: 0,
            garbage_holes: false,
        }
    }

    /// Crash faults only: torn, reordered, lost writes and garbage holes; no I/O errors and
    /// no corruption.
    pub fn crash_only<R: RngCore + ?Sized>(rng: &mut R) -> FaultConfig {
        FaultConfig {
            persistence: if chance(rng, 500_000) {
                Persistence::Strict
            } else {
                Persistence::Ordered
            },
            survive_ppm: below(rng, 1_000_001) as u32,
            torn_writes: chance(rng, 700_000),
            tear_piece_bytes: if chance(rng, 500_000) { 512 } else { 4096 },
            garbage_holes: chance(rng, 500_000),
            ..FaultConfig::none()
        }
    }

    /// Swarm testing: each fault switched on or off and given its own rate by the seed, so
    /// one seed hammers torn writes, the next bit flips, the next nothing at all.
    pub fn swarm<R: RngCore + ?Sized>(rng: &mut R) -> FaultConfig {
        let rate = |rng: &mut R, max_ppm: u64| -> u32 {
            if chance(rng, 400_000) {
                below(rng, max_ppm + 1) as u32
            } else {
                0
            }
        };
        let base = FaultConfig::crash_only(rng);
        FaultConfig {
            read_error_ppm: rate(rng, 1_000),
            write_error_ppm: rate(rng, 1_000),
            error_persistent_ppm: rate(rng, 300_000),
            no_space_ppm: rate(rng, 500),
            short_io_ppm: rate(rng, 20_000),
            sync_error_ppm: rate(rng, 3_000),
            // Not drawn, so the seeds' other rates stay what they were.
            kill_after_sync_error_ppm: 300_000,
            bit_flip_ppm: rate(rng, 300),
            misdirect_ppm: rate(rng, 1_000),
            ..base
        }
    }

    /// A named profile: `none`, `crash` (crash faults only), `swarm` (everything, rates
    /// per seed), `io` (I/O errors without corruption), `corrupt` (bit flips and
    /// misdirected writes).
    pub fn profile<R: RngCore + ?Sized>(name: &str, rng: &mut R) -> Option<FaultConfig> {
        let config = match name {
            "none" => FaultConfig::none(),
            "crash" => FaultConfig::crash_only(rng),
            "swarm" => FaultConfig::swarm(rng),
            "io" => FaultConfig {
                read_error_ppm: 1_000,
                write_error_ppm: 1_000,
                error_persistent_ppm: 100_000,
                no_space_ppm: 500,
                short_io_ppm: 10_000,
                sync_error_ppm: 2_000,
                kill_after_sync_error_ppm: 300_000,
                ..FaultConfig::crash_only(rng)
            },
            "corrupt" => FaultConfig {
                bit_flip_ppm: 200,
                misdirect_ppm: 500,
                ..FaultConfig::crash_only(rng)
            },
            _ => return None,
        };
        Some(config)
    }

    /// The names [`FaultConfig::profile`] accepts.
    pub const PROFILES: [&'static str; 5] = ["none", "crash", "swarm", "io", "corrupt"];

    /// The faults [`FaultConfig::switch_off`] can turn off, by name.
    pub const SWITCHES: [&'static str; 12] = [
        "read_error",
        "write_error",
        "no_space",
        "short_io",
        "sync_error",
        "kill_after_sync_error",
        "bit_flip",
        "wal_bit_flips",
        "misdirect",
        "torn_writes",
        "garbage_holes",
        "unsynced_survive",
    ];

    /// Turns off the fault named `name` (one of [`FaultConfig::SWITCHES`]); an unknown name
    /// changes nothing and returns false. `unsynced_survive`: every unsynced write is lost
    /// at a power loss (none survives).
    pub fn switch_off(&mut self, name: &str) -> bool {
        match name {
            "read_error" => self.read_error_ppm = 0,
            "write_error" => self.write_error_ppm = 0,
            "no_space" => self.no_space_ppm = 0,
            "short_io" => self.short_io_ppm = 0,
            "sync_error" => self.sync_error_ppm = 0,
            "kill_after_sync_error" => self.kill_after_sync_error_ppm = 0,
            "bit_flip" => self.bit_flip_ppm = 0,
            "wal_bit_flips" => self.wal_bit_flips = false,
            "misdirect" => self.misdirect_ppm = 0,
            "torn_writes" => self.torn_writes = false,
            "garbage_holes" => self.garbage_holes = false,
            "unsynced_survive" => self.survive_ppm = 0,
            _ => return false,
        }
        true
    }
}

/// The kind of an injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FaultKind {
    /// Power cut: every process died, unsynced writes lost or torn.
    PowerLoss,
    /// One process killed (SIGKILL).
    ProcessCrash,
    /// An unsynced write lost at power loss.
    LostWrite,
    /// A surviving write torn into old/new/garbage pieces.
    TornWrite,
    /// `EIO` returned from a read.
    ReadError,
    /// `EIO` returned from a write.
    WriteError,
    /// `ENOSPC` returned.
    NoSpace,
    /// A read or write transferred fewer bytes than asked.
    ShortIo,
    /// `fdatasync` failed; some of the file's unsynced writes never reached the disk.
    SyncError,
    /// A stored bit flipped.
    BitFlip,
    /// A page written at the wrong offset.
    Misdirect,
    /// A gap in a file filled with garbage instead of zeros.
    GarbageHole,
    /// Synced bytes at the end of a file lost (a tool, a file system or a disk cutting a
    /// log the engine had made durable).
    TailCut,
}

impl FaultKind {
    /// Every kind, in report order.
    pub const ALL: [FaultKind; 13] = [
        FaultKind::PowerLoss,
        FaultKind::ProcessCrash,
        FaultKind::LostWrite,
        FaultKind::TornWrite,
        FaultKind::ReadError,
        FaultKind::WriteError,
        FaultKind::NoSpace,
        FaultKind::ShortIo,
        FaultKind::SyncError,
        FaultKind::BitFlip,
        FaultKind::Misdirect,
        FaultKind::GarbageHole,
        FaultKind::TailCut,
    ];

    /// True for faults that damage stored bytes the engine must then detect.
    pub fn is_corruption(self) -> bool {
        matches!(
            self,
            FaultKind::BitFlip | FaultKind::Misdirect | FaultKind::TailCut
        )
    }
}

/// One injected fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultRecord {
    /// The disk's I/O call counter when it was injected.
    pub io_call: u64,
    /// What happened.
    pub kind: FaultKind,
    /// The file's name (empty for whole-disk faults).
    pub file: String,
    /// Byte offset (0 when not applicable).
    pub offset: u64,
}

impl fmt::Display for FaultRecord {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "io#{} {:?} {} @{}",
            self.io_call, self.kind, self.file, self.offset
        )
    }
}

/// A corruption the engine has not yet overwritten: it must be detected if read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// The inode it is in.
    pub inode: u64,
    /// The file's name when it was injected.
    pub file: String,
    /// First damaged byte.
    pub offset: u64,
    /// Damaged length.
    pub len: u64,
    /// What did it.
    pub kind: FaultKind,
    /// Write sequence number of the damage: only later writes repair it.
    pub seq: u64,
}
