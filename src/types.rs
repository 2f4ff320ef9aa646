//! Small value types shared by the whole crate: identifiers and timestamps.
//!
//! Identifiers are 16 random bytes. They are generated without an external UUID crate from
//! the standard library's randomly keyed hasher, the wall clock and a process-wide counter,
//! which is unique enough for identifying memories and agents (not for cryptography).

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    bincode::Encode,
    bincode::Decode,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The current wall-clock time (0 if the clock is before 1970).
    pub fn now() -> Self {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.as_micros() as u64)
            .unwrap_or(0);
        Timestamp(micros)
    }
}

fn random_bytes_16() -> [u8; 16] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let state = RandomState::new();
    let mut high = state.build_hasher();
    high.write_u64(count);
    high.write_u64(Timestamp::now().0);
    let mut low = state.build_hasher();
    low.write_u64(!count);
    low.write_u64(high.finish());
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&high.finish().to_le_bytes());
    bytes[8..].copy_from_slice(&low.finish().to_le_bytes());
    bytes
}

fn write_hex(formatter: &mut fmt::Formatter<'_>, bytes: &[u8; 16]) -> fmt::Result {
    for byte in bytes {
        write!(formatter, "{byte:02x}")?;
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, bincode::Encode, bincode::Decode,
        )]
        pub struct $name(pub [u8; 16]);

        impl $name {
            /// A new random identifier.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                $name(random_bytes_16())
            }

            /// The identifier's 16 bytes.
            pub fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }
        }

        impl From<[u8; 16]> for $name {
            fn from(bytes: [u8; 16]) -> Self {
                $name(bytes)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(formatter, "{}(", stringify!($name))?;
                write_hex(formatter, &self.0)?;
                write!(formatter, ")")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                write_hex(formatter, &self.0)
            }
        }
    };
}

id_type!(
    /// Identifies the agent a memory belongs to.
    AgentId
);
id_type!(
    /// Identifies one memory node, independently of where it is stored.
    MemoryId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_identifiers_differ() {
        let first = MemoryId::new();
        let second = MemoryId::new();
        assert_ne!(first, second);
        assert_ne!(AgentId::new().0, AgentId::new().0);
    }

    #[test]
    fn identifiers_display_as_32_hex_digits() {
        let id = AgentId([0xab; 16]);
        assert_eq!(id.to_string(), "ab".repeat(16));
    }
}
