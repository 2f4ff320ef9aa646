//! The seeded workload: which operation comes next and what nodes look like.
//!
//! Everything is drawn from the run's random source (a seeded `ChaCha8Rng`, or the input
//! bytes of a fuzz target), including node identifiers and
//! timestamps (never the wall clock), so a seed replays exactly.

use mentedb_storage::{AgentId, MemoryId, MemoryNode, MemoryType, Timestamp};
use rand_chacha::rand_core::RngCore;
use std::collections::BTreeMap;

/// Uniform integer in `0..bound` (bound > 0), unbiased enough for a workload.
pub fn below<R: RngCore + ?Sized>(rng: &mut R, bound: u64) -> u64 {
    assert!(bound > 0, "empty range");
    ((u128::from(rng.next_u64()) * u128::from(bound)) >> 64) as u64
}

/// True with probability `parts_per_million` / 1,000,000.
pub fn chance<R: RngCore + ?Sized>(rng: &mut R, parts_per_million: u32) -> bool {
    below(rng, 1_000_000) < u64::from(parts_per_million)
}

/// How large a node's encoded record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum NodeSize {
    /// A few hundred bytes.
    Small,
    /// About 2 KiB (384-dim embedding): the common case.
    Typical,
    /// Larger than a data page holds next to others (8–16 KiB): forces moves.
    Large,
    /// Larger than a record may be inline (16 KiB): an overflow chain of one or two pages
    /// (17–117 KB of content).
    Overflow,
}

impl NodeSize {
    fn draw<R: RngCore + ?Sized>(rng: &mut R) -> NodeSize {
        match below(rng, 100) {
            0..=29 => NodeSize::Small,
            30..=87 => NodeSize::Typical,
            88..=97 => NodeSize::Large,
            _ => NodeSize::Overflow,
        }
    }
}

/// Builds a node of `size` from the RNG alone.
pub fn node<R: RngCore + ?Sized>(rng: &mut R, size: NodeSize) -> MemoryNode {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    let mut agent = [0u8; 16];
    agent[0] = below(rng, 4) as u8;
    let (content_len, dimensions) = match size {
        NodeSize::Small => (20 + below(rng, 200) as usize, 8),
        NodeSize::Typical => (150 + below(rng, 450) as usize, 384),
        NodeSize::Large => (8_000 + below(rng, 8_000) as usize, 384),
        NodeSize::Overflow => (17_000 + below(rng, 100_000) as usize, 384),
    };
    let seed = rng.next_u64();
    let content: String = (0..content_len)
        .map(|index| (b'a' + ((seed as usize).wrapping_add(index * 7) % 26) as u8) as char)
        .collect();
    let embedding = (0..dimensions)
        .map(|index| ((seed >> (index % 48)) & 0xffff) as f32 / 65_536.0)
        .collect();
    let tags = (0..below(rng, 4))
        .map(|index| format!("tag-{index}-{}", below(rng, 10)))
        .collect();
    let mut attributes = BTreeMap::new();
    if below(rng, 3) == 0 {
        attributes.insert("source".to_string(), format!("sim-{}", below(rng, 100)));
    }
    let created = Timestamp(1_700_000_000_000_000 + below(rng, 1 << 40));
    MemoryNode {
        id: MemoryId(id),
        agent_id: AgentId(agent),
        memory_type: match below(rng, 5) {
            0 => MemoryType::Episodic,
            1 => MemoryType::Semantic,
            2 => MemoryType::Procedural,
            3 => MemoryType::Working,
            _ => MemoryType::Reflection,
        },
        embedding,
        content,
        created_at: created,
        accessed_at: created,
        access_count: below(rng, 100),
        salience: below(rng, 1000) as f32 / 1000.0,
        confidence: below(rng, 1000) as f32 / 1000.0,
        tags,
        attributes,
    }
}

/// Most handles one delete batch of the workload names.
pub const DELETE_BATCH_MAX: usize = 500;

/// One part of a drawn [`Op::Apply`].
#[derive(Debug, Clone, PartialEq)]
pub enum PartDraw {
    /// Store a node.
    Store(MemoryNode),
    /// Replace the node `pick` selects.
    Update(u64, MemoryNode),
    /// Delete the node `pick` selects.
    Delete(u64),
}

/// One step of the workload. `pick` selects an existing handle (modulo the count known).
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Store one node.
    Store { process: usize, node: MemoryNode },
    /// Store several nodes atomically.
    Batch {
        process: usize,
        nodes: Vec<MemoryNode>,
    },
    /// Replace a node (grow or shrink).
    Update {
        process: usize,
        pick: u64,
        node: MemoryNode,
    },
    /// Delete a node.
    Delete { process: usize, pick: u64 },
    /// Delete several nodes atomically (`all`: every live node, in batches of at most
    /// [`DELETE_BATCH_MAX`]).
    DeleteMany {
        process: usize,
        picks: Vec<u64>,
        all: bool,
    },
    /// Stores, updates and deletes in one atomic `apply`.
    Apply {
        process: usize,
        parts: Vec<PartDraw>,
    },
    /// Online compaction.
    Compact { process: usize },
    /// Load a live node and compare.
    Load { process: usize, pick: u64 },
    /// Load a deleted handle: must be not found.
    StaleLoad { process: usize, pick: u64 },
    /// Scan everything and compare.
    Scan { process: usize },
    /// Checkpoint.
    Checkpoint { process: usize },
    /// Close cleanly and reopen.
    Reopen { process: usize },
    /// Kill one process (SIGKILL) and restart it.
    ProcessCrash { process: usize },
    /// Cut the power: every process dies, unsynced writes are lost or torn.
    PowerLoss,
    /// Take an online backup (kept for a later [`Op::Restore`]).
    Backup { process: usize },
    /// Close every process, restore the last backup over the database and reopen: the
    /// handles of records stored after the backup must stay `NotFound` for ever.
    Restore,
    /// Load a handle of another database here, and one of ours there: `NotFound` both.
    ForeignLoad { process: usize, pick: u64 },
    /// Kill every process, then lose synced bytes at the end of `wal.log` (its evidence in
    /// `wal.shm` stays): `verify` must report what open refuses, and change nothing.
    CutLog,
}

impl Op {
    /// A one-line description for traces.
    pub fn describe(&self) -> String {
        match self {
            Op::Store { process, node } => {
                format!("p{process} store {} ({} B)", node.id, node.content.len())
            }
            Op::Batch { process, nodes } => format!("p{process} batch of {}", nodes.len()),
            Op::Update {
                process,
                pick,
                node,
            } => format!("p{process} update #{pick} to {} B", node.content.len()),
            Op::Delete { process, pick } => format!("p{process} delete #{pick}"),
            Op::DeleteMany {
                process,
                picks,
                all,
            } => {
                if *all {
                    format!("p{process} delete everything")
                } else {
                    format!("p{process} delete a batch of {}", picks.len())
                }
            }
            Op::Apply { process, parts } => format!("p{process} apply {} parts", parts.len()),
            Op::Compact { process } => format!("p{process} compact"),
            Op::Load { process, pick } => format!("p{process} load #{pick}"),
            Op::StaleLoad { process, pick } => format!("p{process} stale load #{pick}"),
            Op::Scan { process } => format!("p{process} scan"),
            Op::Checkpoint { process } => format!("p{process} checkpoint"),
            Op::Reopen { process } => format!("p{process} close + reopen"),
            Op::ProcessCrash { process } => format!("p{process} SIGKILL + restart"),
            Op::PowerLoss => "power loss".to_string(),
            Op::Backup { process } => format!("p{process} backup"),
            Op::Restore => "restore the last backup".to_string(),
            Op::CutLog => "kill every process and cut wal.log's synced tail".to_string(),
            Op::ForeignLoad { process, pick } => {
                format!("p{process} load #{pick} of another database (and ours there)")
            }
        }
    }
}

/// Draws the next operation for a run with `processes` simulated processes. With `churn`
/// (drawn per seed), batches of deletes are five times as common and one in four deletes
/// everything: stores and deletes of the same data cycle, pages empty and fill again.
pub fn next_op<R: RngCore + ?Sized>(
    rng: &mut R,
    processes: usize,
    churn: bool,
    corrupting: bool,
) -> Op {
    let process = below(rng, processes as u64) as usize;
    let pick = rng.next_u64();
    let roll = below(rng, 1000);
    if churn && roll < 40 {
        return delete_many(rng, process, true);
    }
    match roll {
        0..=299 => {
            let size = NodeSize::draw(rng);
            Op::Store {
                process,
                node: node(rng, size),
            }
        }
        300..=349 => {
            let count = 1 + below(rng, 20) as usize;
            let nodes = (0..count)
                .map(|_| {
                    let size = NodeSize::draw(rng).min(NodeSize::Large);
                    node(rng, size)
                })
                .collect();
            Op::Batch { process, nodes }
        }
        350..=499 => {
            let size = NodeSize::draw(rng);
            Op::Update {
                process,
                pick,
                node: node(rng, size),
            }
        }
        500..=559 => Op::Delete { process, pick },
        560..=579 => delete_many(rng, process, false),
        580..=591 => {
            let count = 2 + below(rng, 7) as usize;
            let parts = (0..count)
                .map(|_| match below(rng, 3) {
                    0 => {
                        let size = NodeSize::draw(rng).min(NodeSize::Large);
                        PartDraw::Store(node(rng, size))
                    }
                    1 => {
                        let pick = rng.next_u64();
                        let size = NodeSize::draw(rng);
                        PartDraw::Update(pick, node(rng, size))
                    }
                    _ => PartDraw::Delete(rng.next_u64()),
                })
                .collect();
            Op::Apply { process, parts }
        }
        592..=599 => Op::Compact { process },
        600..=844 => Op::Load { process, pick },
        // One in eight stale loads, and one in ten checkpoints (by the pick already drawn,
        // so every other draw of a seed stays as it was): handles across databases and
        // restores.
        845..=899 if pick.is_multiple_of(8) => Op::ForeignLoad { process, pick },
        845..=899 => Op::StaleLoad { process, pick },
        910..=969 if pick.is_multiple_of(20) => Op::Backup { process },
        910..=969 if pick % 20 == 1 => Op::Restore,
        900..=909 => Op::Scan { process },
        910..=969 => Op::Checkpoint { process },
        970..=977 => Op::Reopen { process },
        978..=989 => Op::ProcessCrash { process },
        // One power loss in eight in seeds with corruption (by the pick: the rest of a
        // seed's draws stay as they were).
        _ if corrupting && pick.is_multiple_of(8) => Op::CutLog,
        _ => Op::PowerLoss,
    }
}

/// A delete batch: 1-30 picks, or (with `may_be_all`, one time in four) every live node.
fn delete_many<R: RngCore + ?Sized>(rng: &mut R, process: usize, may_be_all: bool) -> Op {
    let all = may_be_all && below(rng, 4) == 0;
    let count = 1 + below(rng, 30) as usize;
    Op::DeleteMany {
        process,
        picks: (0..count).map(|_| rng.next_u64()).collect(),
        all,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha8Rng;
    use rand_chacha::rand_core::SeedableRng;

    #[test]
    fn same_seed_draws_the_same_operations() {
        let mut first = ChaCha8Rng::seed_from_u64(7);
        let mut second = ChaCha8Rng::seed_from_u64(7);
        for _ in 0..200 {
            assert_eq!(
                next_op(&mut first, 3, true, true),
                next_op(&mut second, 3, true, true)
            );
        }
    }

    #[test]
    fn below_stays_in_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for bound in [1u64, 2, 3, 1000] {
            for _ in 0..100 {
                assert!(below(&mut rng, bound) < bound);
            }
        }
    }
}
