//! A database's lineage: the databases it was restored from, so that a handle names one
//! record of one line of history.
//!
//! # Why
//! A restore makes a second line of history from the same starting point: the database the
//! backup was taken from may go on (or be restored again from the same backup), and both
//! lines then hand out the same serials. A handle of one line loaded in the other would name
//! whatever that line stored under the serial. Found by the simulator, which restores backups
//! in the middle of runs: restoring one backup twice (a serial *epoch* per restore, as
//! before, came out the same both times) gave a handle of a record stored after the first
//! restore to a record stored after the second.
//!
//! # How
//! Each restore gives the restored database a new random identity (the one in every handle
//! it issues) and appends the old identity to its lineage with the first serial the restore
//! did not take over (the backup's reserved limit). Serials only grow along a line, so the
//! lineage maps every serial to the one identity that can have issued it: serials below the
//! first entry's end came from the first ancestor, and so on; serials from the last end on
//! from the database itself. A handle is valid here only if its identity is the one its
//! serial maps to: records stored before a backup keep their handles in every line restored
//! from it, and a handle issued in one line is `NotFound` in every other (their identities
//! differ, and two lines never share one but with probability 2^-32).
//!
//! # Limits
//! At most [`LINEAGE_MAX`] ancestors are kept; a restore past that forgets the oldest, whose
//! handles then give `NotFound` (never another record: its serials then map to the next
//! ancestor, which never issued them).
//!
//! # Encoding
//! In the meta page after the allocation state: `count u32`, then `count` × `(id u32, end
//! u64)`. A meta page written before lineages existed holds zeros there: no ancestors.

use crate::error::DecodeError;
use crate::record_id::{DatabaseId, RecordId, SERIAL_MAX, Serial};

/// Ancestors kept, at most.
pub const LINEAGE_MAX: usize = 64;
/// Encoded size with [`LINEAGE_MAX`] entries.
pub const LINEAGE_BYTES_MAX: usize = 4 + LINEAGE_MAX * ENTRY_BYTES;
const ENTRY_BYTES: usize = 12;

/// The databases this one was restored from, oldest first, each with the first serial it
/// did not issue (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lineage {
    ancestors: Vec<(DatabaseId, u64)>,
}

impl Lineage {
    /// The identity that issued `serial`, in a database whose own identity is `current`.
    pub fn issuer(&self, current: DatabaseId, serial: Serial) -> DatabaseId {
        self.ancestors
            .iter()
            .find(|(_, end)| serial.0 < *end)
            .map_or(current, |(id, _)| *id)
    }

    /// True if `id` was issued in this line of history (in a database whose identity is
    /// `current`): its identity is the issuer of its serial.
    pub fn names(&self, current: DatabaseId, id: RecordId) -> bool {
        id.database() == self.issuer(current, id.serial())
    }

    /// The first serial the database itself issued (1 without ancestors).
    pub fn own_start(&self) -> u64 {
        self.ancestors.last().map_or(1, |(_, end)| *end)
    }

    /// The ancestors, oldest first.
    pub fn ancestors(&self) -> &[(DatabaseId, u64)] {
        &self.ancestors
    }

    /// The lineage of a database restored from one whose identity is `parent` and whose
    /// lineage is `self`, taking over serials below `end`.
    pub fn restored_from(&self, parent: DatabaseId, end: u64) -> Lineage {
        let mut ancestors = self.ancestors.clone();
        // Serials only grow, so `end` is at least the parent's own start; a meta page that
        // says otherwise is refused when decoded, and the entries stay in order anyway.
        ancestors.push((parent, end.max(self.own_start())));
        if ancestors.len() > LINEAGE_MAX {
            ancestors.remove(0);
        }
        Lineage { ancestors }
    }

    /// True if `id` is the identity of this database or of an ancestor.
    pub fn contains(&self, current: DatabaseId, id: DatabaseId) -> bool {
        id == current || self.ancestors.iter().any(|(ancestor, _)| *ancestor == id)
    }

    /// Encodes (pure); at most [`LINEAGE_BYTES_MAX`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(4 + self.ancestors.len() * ENTRY_BYTES);
        bytes.extend_from_slice(&(self.ancestors.len() as u32).to_le_bytes());
        for (id, end) in &self.ancestors {
            bytes.extend_from_slice(&id.0.to_le_bytes());
            bytes.extend_from_slice(&end.to_le_bytes());
        }
        bytes
    }

    /// Decodes from the start of `bytes` (pure), checking every entry: a count over the
    /// limit, an identity of 0, or ends not strictly growing or past the serial range are
    /// damage.
    pub fn decode(bytes: &[u8]) -> Result<Lineage, DecodeError> {
        let word = |at: usize| -> Result<[u8; 4], DecodeError> {
            bytes
                .get(at..at + 4)
                .and_then(|slice| slice.try_into().ok())
                .ok_or_else(|| DecodeError::new("lineage runs past the meta page"))
        };
        let count = u32::from_le_bytes(word(0)?) as usize;
        if count > LINEAGE_MAX {
            return Err(DecodeError::new(format!(
                "lineage of {count} ancestors, over the limit of {LINEAGE_MAX}"
            )));
        }
        let mut ancestors = Vec::with_capacity(count);
        let mut previous_end = 0;
        for index in 0..count {
            let at = 4 + index * ENTRY_BYTES;
            let id = DatabaseId(u32::from_le_bytes(word(at)?));
            let end_bytes: [u8; 8] = bytes
                .get(at + 4..at + ENTRY_BYTES)
                .and_then(|slice| slice.try_into().ok())
                .ok_or_else(|| DecodeError::new("lineage runs past the meta page"))?;
            let end = u64::from_le_bytes(end_bytes);
            if id.0 == 0 || end <= previous_end || end > SERIAL_MAX + 1 {
                return Err(DecodeError::new(format!(
                    "lineage entry {index} ({:#010x} up to serial {end}) is out of order",
                    id.0
                )));
            }
            previous_end = end;
            ancestors.push((id, end));
        }
        Ok(Lineage { ancestors })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::PageId;

    fn handle(database: u32, serial: u64) -> RecordId {
        RecordId::new(DatabaseId(database), PageId(3), 1, Serial(serial)).expect("valid")
    }

    #[test]
    fn handles_from_before_a_restore_stay_valid_and_each_line_rejects_the_others() {
        let original = DatabaseId(0xa);
        let line = Lineage::default();
        assert!(line.names(original, handle(0xa, 5)));
        // Two restores of one backup taken when serials up to 100 were reserved.
        let first = line.restored_from(original, 100);
        let second = line.restored_from(original, 100);
        let (one, two) = (DatabaseId(0xb), DatabaseId(0xc));
        for (restored, id) in [(&first, one), (&second, two)] {
            assert!(restored.names(id, handle(0xa, 5)), "from before the backup");
            assert!(
                !restored.names(id, handle(0xa, 100)),
                "the original after the backup"
            );
        }
        assert!(first.names(one, handle(0xb, 100)));
        assert!(
            !second.names(two, handle(0xb, 100)),
            "the first restore's handle"
        );
        assert!(
            !first.names(one, handle(0xc, 100)),
            "the second restore's handle"
        );
        assert!(
            !first.names(one, handle(0xb, 99)),
            "never issued by the restored one"
        );
        assert_eq!(first.own_start(), 100);
    }

    #[test]
    fn a_lineage_round_trips_and_damage_is_refused() {
        let mut lineage = Lineage::default();
        for (index, id) in (1..=70u32).enumerate() {
            lineage = lineage.restored_from(DatabaseId(id), 10 * (index as u64 + 1));
        }
        assert_eq!(lineage.ancestors().len(), LINEAGE_MAX);
        let bytes = lineage.encode();
        assert!(bytes.len() <= LINEAGE_BYTES_MAX);
        assert_eq!(Lineage::decode(&bytes).expect("decode"), lineage);
        assert_eq!(Lineage::decode(&[0; 4]).expect("empty"), Lineage::default());
        let mut out_of_order = bytes.clone();
        out_of_order[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Lineage::decode(&out_of_order).is_err());
        let mut too_many = bytes.clone();
        too_many[..4].copy_from_slice(&65u32.to_le_bytes());
        assert!(Lineage::decode(&too_many).is_err());
        assert!(Lineage::decode(&bytes[..20]).is_err());
    }
}
