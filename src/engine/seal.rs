//! The commit seal file `wal.seal` of [`SyncMode::Sealed`](super::SyncMode::Sealed): a
//! durable record of the highest LSN whose `fdatasync` completed, written and synced after
//! that sync and before the commit is acknowledged.
//!
//! # Why
//! A torn tail and a bit flip in the last synced frames look the same on disk: a frame that
//! fails to verify with nothing after it. Earlier synced frames are proven by later frames
//! (`durable_lsn`, see `wal::format`), but the last ones before a power loss have no later
//! frame, and `wal.shm`'s record of them does not survive the power loss. Telling the two
//! apart needs either a second durable record written after the sync (this file) or the
//! frames written twice; this costs one more `fdatasync` per commit group, the other twice
//! the log's bytes. With a seal, an open that finds the log ending before the sealed LSN
//! refuses it as damaged instead of cutting acknowledged commits as a torn tail.
//!
//! # Layout
//! Two slots, each alone in its own 4 KiB block (a torn write of one never touches the
//! other), at offsets 0 and [`SEAL_SLOT_STRIDE`]. A slot (little-endian):
//! ```text
//!  0  4 magic    b"SEAL"
//!  4  4 version  SEAL_FORMAT_VERSION
//!  8  4 salt     the WAL life the LSN belongs to
//! 12  4 zero
//! 16  8 lsn      every frame up to it was durable when the slot was written
//! 24  4 crc      CRC32 of bytes 0..24
//! 28  4 zero
//! ```
//! A writer overwrites the slot that holds the older record (or none), so the newer one
//! survives any torn write; seals are written under the cross-process sync gate. A seal of
//! another WAL life (another salt) proves nothing about the current one.

use crate::error::{Error, Result};
use crate::page::Lsn;
use crate::vfs::{Access, Vfs, VfsFile};
use std::path::Path;

/// Name of the seal file inside the database directory.
pub const SEAL_FILE_NAME: &str = "wal.seal";
/// Bytes of a slot's record.
pub const SEAL_RECORD_BYTES: usize = 32;
/// Distance between the two slots (each in its own block).
pub const SEAL_SLOT_STRIDE: u64 = 4096;
const SEAL_MAGIC: [u8; 4] = *b"SEAL";
const SEAL_FORMAT_VERSION: u32 = 1;

/// One slot's record: the highest LSN of the WAL life `salt` known durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seal {
    /// The WAL life.
    pub salt: u32,
    /// Every frame up to it was durable.
    pub lsn: Lsn,
}

/// Encodes a slot.
pub fn encode_seal(seal: Seal) -> [u8; SEAL_RECORD_BYTES] {
    let mut bytes = [0u8; SEAL_RECORD_BYTES];
    bytes[0..4].copy_from_slice(&SEAL_MAGIC);
    bytes[4..8].copy_from_slice(&SEAL_FORMAT_VERSION.to_le_bytes());
    bytes[8..12].copy_from_slice(&seal.salt.to_le_bytes());
    bytes[16..24].copy_from_slice(&seal.lsn.0.to_le_bytes());
    let crc = crc32fast::hash(&bytes[0..24]);
    bytes[24..28].copy_from_slice(&crc.to_le_bytes());
    bytes
}

/// Decodes a slot; `None` for anything but an intact record (never written, torn, flipped,
/// another version).
pub fn decode_seal(bytes: &[u8]) -> Option<Seal> {
    let bytes = bytes.get(..SEAL_RECORD_BYTES)?;
    let u32_at =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    let mut lsn = [0u8; 8];
    lsn.copy_from_slice(&bytes[16..24]);
    let intact = bytes[0..4] == SEAL_MAGIC
        && u32_at(4) == SEAL_FORMAT_VERSION
        && u32_at(24) == crc32fast::hash(&bytes[0..24]);
    let lsn = Lsn(u64::from_le_bytes(lsn));
    (intact && lsn.is_valid()).then_some(Seal {
        salt: u32_at(8),
        lsn,
    })
}

/// The slot a new seal goes to: one without an intact record, else the older one.
pub fn slot_to_write(slots: [Option<Seal>; 2]) -> usize {
    match slots {
        [None, _] => 0,
        [_, None] => 1,
        [Some(first), Some(second)] => usize::from(second.lsn < first.lsn),
    }
}

/// The open seal file (an empty stand-in where there is none and this process does not
/// seal: nothing to read, nothing written).
#[derive(Debug)]
pub(crate) struct SealFile {
    file: Box<dyn VfsFile>,
}

impl SealFile {
    /// Opens `wal.seal`: created if `sealing` (and the access allows), else read if it
    /// exists.
    pub fn open(vfs: &dyn Vfs, path: &Path, access: Access, sealing: bool) -> Result<SealFile> {
        let access = if sealing { access } else { Access::ReadOnly };
        let file = crate::vfs::open_for(vfs, path, access, true)
            .map_err(|source| Error::io("open", SEAL_FILE_NAME, source))?;
        Ok(SealFile { file })
    }

    /// True if no seal was ever written here (a new file: its name may not be durable).
    pub fn is_empty(&self) -> Result<bool> {
        self.file
            .len()
            .map(|len| len == 0)
            .map_err(|source| Error::io("stat", SEAL_FILE_NAME, source))
    }

    /// Both slots as stored (a slot past the end of the file was never written).
    pub fn slots(&self) -> Result<[Option<Seal>; 2]> {
        let mut slots = [None, None];
        for (index, slot) in slots.iter_mut().enumerate() {
            let mut bytes = [0u8; SEAL_RECORD_BYTES];
            match self
                .file
                .read_exact_at(&mut bytes, index as u64 * SEAL_SLOT_STRIDE)
            {
                Ok(()) => *slot = decode_seal(&bytes),
                Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
                Err(source) => return Err(Error::io("read", SEAL_FILE_NAME, source)),
            }
        }
        Ok(slots)
    }

    /// The highest LSN sealed for the WAL life `salt` (`Lsn(0)` if none).
    pub fn sealed(&self, salt: u32) -> Result<Lsn> {
        Ok(self
            .slots()?
            .into_iter()
            .flatten()
            .filter(|seal| seal.salt == salt)
            .map(|seal| seal.lsn)
            .max()
            .unwrap_or(Lsn(0)))
    }

    /// Seals `lsn` of the WAL life `salt` and makes it durable. Caller holds the sync gate
    /// and has made every frame up to `lsn` durable.
    pub fn write(&self, seal: Seal) -> std::io::Result<()> {
        let slots = self.slots().map_err(std::io::Error::other)?;
        let offset = slot_to_write(slots) as u64 * SEAL_SLOT_STRIDE;
        crate::failpoints::check("seal.write")?;
        self.file.write_all_at(&encode_seal(seal), offset)?;
        self.file.sync_data()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_round_trips_and_any_flipped_bit_makes_it_unreadable() {
        let seal = Seal {
            salt: 0xdead_beef,
            lsn: Lsn(12_345),
        };
        let bytes = encode_seal(seal);
        assert_eq!(decode_seal(&bytes), Some(seal));
        for bit in 0..28 * 8 {
            let mut flipped = bytes;
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(decode_seal(&flipped), None, "bit {bit}");
        }
        assert_eq!(decode_seal(&bytes[..31]), None);
        assert_eq!(decode_seal(&[0u8; SEAL_RECORD_BYTES]), None);
    }

    fn seal_file() -> (crate::vfs::MemFs, SealFile) {
        let fs = crate::vfs::MemFs::new();
        let path = Path::new("/db/wal.seal");
        crate::vfs::Vfs::create_dir_all(&fs, Path::new("/db")).expect("dir");
        let file = SealFile::open(&fs, path, Access::ReadWrite, true).expect("open");
        (fs, file)
    }

    fn at(lsn: u64) -> Seal {
        Seal {
            salt: 7,
            lsn: Lsn(lsn),
        }
    }

    #[test]
    fn seals_alternate_between_the_two_slots_and_a_torn_one_leaves_the_newer() {
        let (fs, file) = seal_file();
        assert!(file.is_empty().expect("len"));
        assert_eq!(file.sealed(7).expect("read"), Lsn(0));
        file.write(at(5)).expect("seal 5");
        file.write(at(9)).expect("seal 9");
        assert!(!file.is_empty().expect("len"));
        let mut held: Vec<u64> = file
            .slots()
            .expect("read")
            .into_iter()
            .map(|slot| slot.expect("both slots written").lsn.0)
            .collect();
        held.sort_unstable();
        assert_eq!(held, vec![5, 9], "each seal in its own slot");
        // A third seal torn while it overwrote the older slot: the newer one still counts.
        let older = file
            .slots()
            .expect("read")
            .iter()
            .position(|slot| slot.is_some_and(|seal| seal.lsn == Lsn(5)))
            .expect("the older slot");
        let raw = crate::vfs::Vfs::open_file(
            &fs,
            Path::new("/db/wal.seal"),
            crate::vfs::OpenMode::CreateOrOpen,
        )
        .expect("raw");
        raw.write_all_at(&[0xa5; 12], older as u64 * SEAL_SLOT_STRIDE)
            .expect("tear");
        assert_eq!(file.sealed(7).expect("read"), Lsn(9));
        assert_eq!(file.sealed(8).expect("read"), Lsn(0), "another life's seal");
    }

    #[test]
    fn a_new_seal_overwrites_the_missing_or_older_slot_never_the_newer() {
        let at = |lsn| {
            Some(Seal {
                salt: 1,
                lsn: Lsn(lsn),
            })
        };
        assert_eq!(slot_to_write([None, None]), 0);
        assert_eq!(slot_to_write([at(5), None]), 1);
        assert_eq!(slot_to_write([None, at(5)]), 0);
        assert_eq!(slot_to_write([at(5), at(9)]), 0);
        assert_eq!(slot_to_write([at(9), at(5)]), 1);
    }
}
