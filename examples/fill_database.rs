//! Fills a database with about N MiB of agent memories (2 KiB nodes with text LZ4 cannot
//! shrink much), for measuring backups, restores and the tool on a large database.
//!
//! `cargo run --release --example fill_database <dir> <MiB>`, then e.g.
//! `/usr/bin/time -v target/release/mentedb-storage backup <dir> <file>`.

use mentedb_storage::{AgentId, MemoryNode, MemoryType, StorageEngine};
use std::path::PathBuf;
use std::time::Instant;

const BATCH_NODES: usize = 500;
const TEXT_BYTES: usize = 450;
const EMBEDDING_DIMENSIONS: usize = 384;

fn node(seed: u64) -> MemoryNode {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let content = (0..TEXT_BYTES)
        .map(|_| (b'a' + (next() % 26) as u8) as char)
        .collect();
    let embedding = (0..EMBEDDING_DIMENSIONS)
        .map(|_| (next() % 10_000) as f32 / 10_000.0)
        .collect();
    MemoryNode::new(AgentId::new(), MemoryType::Episodic, content, embedding)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: fill_database <dir> <MiB>")?);
    let mebibytes: u64 = args
        .next()
        .ok_or("usage: fill_database <dir> <MiB>")?
        .parse()?;
    let engine = StorageEngine::open(&dir)?;
    let started = Instant::now();
    let target = mebibytes << 20;
    let mut bytes = 0u64;
    let mut seed = 0u64;
    while bytes < target {
        let batch: Vec<MemoryNode> = (0..BATCH_NODES)
            .map(|_| {
                seed += 1;
                node(seed)
            })
            .collect();
        bytes += batch
            .iter()
            .map(|node| mentedb_storage::memory::encoded_record(node).map(|r| r.len() as u64))
            .sum::<mentedb_storage::Result<u64>>()?;
        engine.store_memory_batch(&batch)?;
    }
    engine.checkpoint()?;
    println!(
        "{} nodes, {} MiB encoded, in {:.1} s; {} pages",
        seed,
        bytes >> 20,
        started.elapsed().as_secs_f64(),
        engine.page_count()
    );
    engine.close()?;
    Ok(())
}
