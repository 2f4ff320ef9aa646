//! [`RecordId`]: the stable handle of a stored memory node.
//!
//! A handle is 128 bits:
//!
//! ```text
//! bits 127..96  database id  (random at creation, kept by backups and restores)
//! bits  95..64  home page    (the handle page holding the record's home slot)
//! bits  63..48  home slot    (index in that page, < HOME_SLOTS_PER_PAGE)
//! bits  47..0   serial       (never handed out twice in the database's life; 0 is invalid)
//! ```
//!
//! Written as text (`Display`, `FromStr`) it is four hex groups, `dddddddd-pppppppp-ssss-
//! nnnnnnnnnnnn`; as bytes ([`RecordId::to_bytes`]) 16 bytes little-endian.
//!
//! # Why a handle never names another record
//! - Another database: the database id must match the one the handle is loaded in (a random
//!   32-bit id: two databases share one with probability 2^-32).
//! - A deleted record, a reused slot, a freed and reused page: the home slot stores the
//!   serial of its occupant, and serials come from one counter of the database that only
//!   grows. A slot or page used again holds a different serial, so the old handle misses.
//! - Lost commits (a power loss in `SyncMode::Normal`, a failed `fdatasync`): serials are
//!   handed out from a range reserved durably before use, and every open starts after the
//!   reserved range, so a serial a lost commit handed out is never handed out again.
//! - A restore from a backup: the restored database gets a new identity and keeps the old
//!   one in its lineage (`crate::lineage`): handles from before the backup stay valid, and
//!   a handle issued after it, by the original or by any restore of it, names nothing in
//!   any other line of history.

use crate::page::{PAGE_ID_MAX, PageId};
use std::fmt;
use std::str::FromStr;

/// Slots of one handle page (its slot directory fills the page body).
pub const HOME_SLOTS_PER_PAGE: u32 = 4092;
/// Largest serial (48 bits).
pub const SERIAL_MAX: u64 = (1 << 48) - 1;
const SLOT_SHIFT: u32 = 48;
const PAGE_SHIFT: u32 = 64;
const DATABASE_SHIFT: u32 = 96;
const _: () = assert!(HOME_SLOTS_PER_PAGE < 1 << (PAGE_SHIFT - SLOT_SHIFT));
const _: () = assert!(PAGE_ID_MAX == (1u64 << (DATABASE_SHIFT - PAGE_SHIFT)) - 1);

/// The identity of one database, chosen at random when it is created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DatabaseId(pub u32);

/// A record's serial: unique in the life of its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Serial(pub u64);

impl Serial {
    /// True if the serial can name a record (1..=[`SERIAL_MAX`]).
    pub fn is_valid(self) -> bool {
        (1..=SERIAL_MAX).contains(&self.0)
    }
}

/// Handle of a stored memory node. Keep it as a `u128`, 16 bytes or its text form.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordId(u128);

impl RecordId {
    /// Builds a handle; `None` if a part is out of range or the serial is 0.
    pub fn new(database: DatabaseId, page: PageId, slot: u32, serial: Serial) -> Option<RecordId> {
        let in_range = page.0 <= PAGE_ID_MAX && slot < HOME_SLOTS_PER_PAGE && serial.is_valid();
        in_range.then(|| {
            RecordId(
                u128::from(database.0) << DATABASE_SHIFT
                    | u128::from(page.0) << PAGE_SHIFT
                    | u128::from(slot) << SLOT_SHIFT
                    | u128::from(serial.0),
            )
        })
    }

    /// The database the handle was issued by.
    pub fn database(self) -> DatabaseId {
        DatabaseId((self.0 >> DATABASE_SHIFT) as u32)
    }

    /// The handle page holding the record's home slot.
    pub fn page_id(self) -> PageId {
        PageId(((self.0 >> PAGE_SHIFT) as u64) & PAGE_ID_MAX)
    }

    /// The home slot's index in that page.
    pub fn slot(self) -> u32 {
        ((self.0 >> SLOT_SHIFT) as u32) & 0xffff
    }

    /// The record's serial.
    pub fn serial(self) -> Serial {
        Serial((self.0 as u64) & SERIAL_MAX)
    }

    /// The handle as a `u128`.
    pub fn to_u128(self) -> u128 {
        self.0
    }

    /// Rebuilds a handle from [`RecordId::to_u128`]. Any value is accepted: one that names no
    /// live record of the database makes loads fail with `Error::NotFound`.
    pub fn from_u128(raw: u128) -> RecordId {
        RecordId(raw)
    }

    /// The handle as 16 little-endian bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_le_bytes()
    }

    /// Rebuilds a handle from [`RecordId::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> RecordId {
        RecordId(u128::from_le_bytes(bytes))
    }
}

impl From<RecordId> for u128 {
    fn from(id: RecordId) -> u128 {
        id.0
    }
}

impl From<u128> for RecordId {
    fn from(raw: u128) -> RecordId {
        RecordId(raw)
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "RecordId(page {}, slot {}, serial {})",
            self.page_id().0,
            self.slot(),
            self.serial().0
        )
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{:08x}-{:08x}-{:04x}-{:012x}",
            self.database().0,
            self.page_id().0,
            self.slot(),
            self.serial().0
        )
    }
}

/// Why a text is not a [`RecordId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseRecordIdError(String);

impl fmt::Display for ParseRecordIdError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "not a record handle: {}", self.0)
    }
}

impl std::error::Error for ParseRecordIdError {}

impl FromStr for RecordId {
    type Err = ParseRecordIdError;

    /// Parses the text form written by `Display` (four hex groups of 8, 8, 4 and 12 digits).
    fn from_str(text: &str) -> Result<RecordId, ParseRecordIdError> {
        let error = |detail: &str| ParseRecordIdError(format!("'{text}': {detail}"));
        let groups: Vec<&str> = text.trim().split('-').collect();
        let widths = [8, 8, 4, 12];
        if groups.len() != widths.len() {
            return Err(error("expected four groups separated by '-'"));
        }
        let mut raw: u128 = 0;
        for (group, width) in groups.iter().zip(widths) {
            if group.len() != width || !group.bytes().all(|byte| byte.is_ascii_hexdigit()) {
                return Err(error(&format!("'{group}' is not {width} hex digits")));
            }
            let value =
                u64::from_str_radix(group, 16).map_err(|parse| error(&parse.to_string()))?;
            raw = raw << (width * 4) | u128::from(value);
        }
        Ok(RecordId(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_round_trip_through_u128_bytes_and_text() {
        let id = RecordId::new(
            DatabaseId(0xdead_beef),
            PageId(123_456),
            HOME_SLOTS_PER_PAGE - 1,
            Serial(SERIAL_MAX),
        )
        .expect("in range");
        assert_eq!(id.database(), DatabaseId(0xdead_beef));
        assert_eq!(id.page_id(), PageId(123_456));
        assert_eq!(id.slot(), HOME_SLOTS_PER_PAGE - 1);
        assert_eq!(id.serial(), Serial(SERIAL_MAX));
        assert_eq!(RecordId::from_u128(id.to_u128()), id);
        assert_eq!(RecordId::from_bytes(id.to_bytes()), id);
        assert_eq!(id.to_string(), "deadbeef-0001e240-0ffb-ffffffffffff");
        assert_eq!(id.to_string().parse::<RecordId>(), Ok(id));
    }

    #[test]
    fn out_of_range_parts_are_refused() {
        let db = DatabaseId(1);
        assert!(RecordId::new(db, PageId(PAGE_ID_MAX + 1), 0, Serial(1)).is_none());
        assert!(RecordId::new(db, PageId(2), HOME_SLOTS_PER_PAGE, Serial(1)).is_none());
        assert!(RecordId::new(db, PageId(2), 0, Serial(0)).is_none());
        assert!(RecordId::new(db, PageId(2), 0, Serial(SERIAL_MAX + 1)).is_none());
    }

    #[test]
    fn bad_text_is_refused_with_the_reason() {
        for text in [
            "",
            "deadbeef-0001e240-0ffb",
            "deadbeef-0001e240-0ffb-fffffffffffff",
            "deadbeeg-0001e240-0ffb-ffffffffffff",
            "+eadbeef-0001e240-0ffb-ffffffffffff",
        ] {
            assert!(text.parse::<RecordId>().is_err(), "{text}");
        }
    }
}
