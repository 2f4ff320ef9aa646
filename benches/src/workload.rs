//! The seeded agent-memory workload every engine gets: 16-byte ids, an agent id, 150–600
//! characters of word-like text, a 384-dimension embedding, 0–4 tags, timestamps and
//! scores (about 2 KiB encoded). The same seed gives the same nodes in every engine.

use mentedb_storage::{AgentId, MemoryId, MemoryNode, MemoryType, Timestamp};

/// Dimensions of every embedding.
pub const EMBEDDING_DIMENSIONS: usize = 384;

const WORDS: [&str; 24] = [
    "user", "prefers", "rust", "meeting", "tomorrow", "project", "deadline", "coffee", "travel",
    "budget", "review", "memory", "agent", "remember", "email", "friday", "design", "storage",
    "crash", "safe", "notes", "summary", "plan", "question",
];

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..bound` (`bound` > 0).
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }
}

/// One memory of the workload.
#[derive(Debug, Clone)]
pub struct Item {
    /// The node's id, the key of the key-value engines.
    pub key: [u8; 16],
    pub node: MemoryNode,
}

/// The `index`-th node of the workload of `seed`.
pub fn item(seed: u64, index: u64) -> Item {
    let mut rng = Rng::new(seed ^ index.wrapping_mul(0x2545_f491_4f6c_dd1d));
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&rng.next_u64().to_le_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    let text_len = 150 + rng.below(451) as usize;
    let mut content = String::with_capacity(text_len + 12);
    while content.len() < text_len {
        content.push_str(WORDS[rng.below(WORDS.len() as u64) as usize]);
        content.push(' ');
    }
    content.truncate(text_len);
    let embedding = (0..EMBEDDING_DIMENSIONS)
        .map(|_| (rng.below(2_000_001) as f32 / 1_000_000.0) - 1.0)
        .collect();
    let mut node = MemoryNode::new(AgentId([7; 16]), MemoryType::Episodic, content, embedding);
    node.id = MemoryId(key);
    node.created_at = Timestamp(1_790_000_000_000_000 + index);
    node.accessed_at = node.created_at;
    node.salience = (rng.below(1_000) as f32) / 1_000.0;
    node.confidence = (rng.below(1_000) as f32) / 1_000.0;
    node.tags = (0..rng.below(5))
        .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize].to_string())
        .collect();
    Item { key, node }
}

/// Items `from..to` of the workload of `seed`.
pub fn items(seed: u64, from: u64, to: u64) -> Vec<Item> {
    (from..to).map(|index| item(seed, index)).collect()
}
