//! Node contents regenerable from a 12-byte description ([`Content`]: a seed and a text
//! size), so an ack log names a node in a few characters and the checker rebuilds it
//! byte for byte. The description is also written into the node's `MemoryId`, so a node the
//! checker meets in a scan names the description it was built from.

use mentedb_storage::{AgentId, MemoryId, MemoryNode, MemoryType, Timestamp};
use std::collections::BTreeMap;
use std::fmt;

/// Smallest and largest content text, in bytes.
pub const CONTENT_BYTES_MIN: u32 = 100;
pub const CONTENT_BYTES_MAX: u32 = 200 * 1024;
/// Texts above this are certain to spill into overflow pages (a page is 16 KiB).
const CONTENT_BYTES_LARGE: u32 = 64 * 1024;
const _: () = assert!(CONTENT_BYTES_MIN < CONTENT_BYTES_LARGE);
const _: () = assert!(CONTENT_BYTES_LARGE < CONTENT_BYTES_MAX);

/// The last four bytes of every generated `MemoryId`: a node without them was not made here.
const ID_MAGIC: [u8; 4] = *b"PLv1";
const ID_BYTES: usize = 16;
const _: () = assert!(size_of::<u64>() + size_of::<u32>() + ID_MAGIC.len() == ID_BYTES);

const EMBEDDING_DIMENSIONS_MIN: u64 = 4;
const EMBEDDING_DIMENSIONS_SPREAD: u64 = 29;
const MEMORY_TYPES: [MemoryType; 5] = [
    MemoryType::Episodic,
    MemoryType::Semantic,
    MemoryType::Procedural,
    MemoryType::Working,
    MemoryType::Reflection,
];

/// splitmix64: small, seedable, and the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..bound` (bound > 0; the modulo bias is irrelevant here).
    pub fn below(&mut self, bound: u64) -> u64 {
        assert!(bound > 0, "an empty range");
        self.next_u64() % bound
    }

    /// Uniform in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        assert!(low < high, "an empty range {low}..{high}");
        low + self.below(high - low)
    }
}

/// The splitmix64 finalizer: a bijection that scatters nearby inputs.
pub fn mix(value: u64) -> u64 {
    let mut z = value;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// What a node is built from. Written `seed:size` (seed in hex) in logs and the state file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Content {
    pub seed: u64,
    pub size_bytes: u32,
}

impl fmt::Display for Content {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{:x}:{}", self.seed, self.size_bytes)
    }
}

impl Content {
    pub fn parse(text: &str) -> Option<Content> {
        let (seed, size) = text.split_once(':')?;
        let content = Content {
            seed: u64::from_str_radix(seed, 16).ok()?,
            size_bytes: size.parse().ok()?,
        };
        (CONTENT_BYTES_MIN..=CONTENT_BYTES_MAX)
            .contains(&content.size_bytes)
            .then_some(content)
    }

    /// A fresh description: mostly small texts, a quarter up to 64 KiB, and about one in
    /// seven above 64 KiB (overflow chains of several pages).
    pub fn random(rng: &mut Rng) -> Content {
        let size = match rng.below(100) {
            0..60 => rng.range(u64::from(CONTENT_BYTES_MIN), 4096),
            60..85 => rng.range(4096, u64::from(CONTENT_BYTES_LARGE)),
            _ => rng.range(
                u64::from(CONTENT_BYTES_LARGE) + 1,
                u64::from(CONTENT_BYTES_MAX) + 1,
            ),
        };
        Content {
            seed: rng.next_u64(),
            size_bytes: u32::try_from(size).expect("sizes are below CONTENT_BYTES_MAX"),
        }
    }

    /// The same seed with another size: an update that grows or shrinks the node.
    pub fn resized(self, rng: &mut Rng) -> Content {
        let size = match rng.below(3) {
            0 => self.size_bytes.saturating_mul(2),
            1 => self.size_bytes / 2,
            _ => Content::random(rng).size_bytes,
        };
        Content {
            seed: rng.next_u64(),
            size_bytes: size.clamp(CONTENT_BYTES_MIN, CONTENT_BYTES_MAX),
        }
    }

    /// The node this description stands for; the same bytes every time.
    pub fn node(self) -> MemoryNode {
        let mut rng = Rng::new(self.seed);
        let mut id = [0u8; ID_BYTES];
        id[..8].copy_from_slice(&self.seed.to_le_bytes());
        id[8..12].copy_from_slice(&self.size_bytes.to_le_bytes());
        id[12..].copy_from_slice(&ID_MAGIC);
        let mut agent = [0u8; ID_BYTES];
        agent[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
        agent[8..].copy_from_slice(&rng.next_u64().to_le_bytes());
        let memory_type = MEMORY_TYPES[rng.below(MEMORY_TYPES.len() as u64) as usize];
        let dimensions = EMBEDDING_DIMENSIONS_MIN + rng.below(EMBEDDING_DIMENSIONS_SPREAD);
        let embedding = (0..dimensions)
            .map(|_| (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
            .collect();
        let created = rng.below(1 << 50);
        let mut attributes = BTreeMap::new();
        attributes.insert("content".to_string(), self.to_string());
        MemoryNode {
            id: MemoryId::from(id),
            agent_id: AgentId::from(agent),
            memory_type,
            embedding,
            content: text(&mut rng, self.size_bytes as usize),
            created_at: Timestamp(created),
            accessed_at: Timestamp(created + rng.below(1 << 30)),
            access_count: rng.below(1000),
            salience: rng.below(1000) as f32 / 1000.0,
            confidence: rng.below(1000) as f32 / 1000.0,
            tags: vec![format!("tag-{}", rng.below(50)), "powerloss".to_string()],
            attributes,
        }
    }

    /// The description a node was built from, read back from its id; `None` for a node
    /// that was not built by [`Content::node`]. The caller still compares the whole node.
    pub fn of_node(node: &MemoryNode) -> Option<Content> {
        let id = node.id.as_bytes();
        if id[12..] != ID_MAGIC {
            return None;
        }
        let seed = u64::from_le_bytes(id[..8].try_into().ok()?);
        let size_bytes = u32::from_le_bytes(id[8..12].try_into().ok()?);
        Some(Content { seed, size_bytes })
    }
}

/// `size` bytes of lowercase words: ASCII, so any length is valid UTF-8.
fn text(rng: &mut Rng, size: usize) -> String {
    let mut bytes = Vec::with_capacity(size);
    while bytes.len() < size {
        let word = rng.next_u64();
        for shift in (0..64).step_by(8) {
            let byte = (word >> shift) as u8;
            bytes.push(if byte.is_multiple_of(8) {
                b' '
            } else {
                b'a' + byte % 26
            });
        }
    }
    bytes.truncate(size);
    String::from_utf8(bytes).expect("ASCII is UTF-8")
}
