//! Quick start: store memory nodes, "crash" (drop the engine without closing it), reopen,
//! and load every node back.
//!
//! ```text
//! cargo run --release --example quickstart [DIRECTORY]
//! ```
//! Without a directory argument it uses a fresh directory under the system's temp dir.

use mentedb_storage::{AgentId, MemoryNode, MemoryType, Result, StorageEngine};
use std::path::PathBuf;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

const NODES: usize = 1_000;
const EMBEDDING_DIMENSIONS: usize = 384;

fn main() -> Result<()> {
    let dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => fresh_temp_dir(),
    };
    println!("database directory: {}", dir.display());

    let agent = AgentId::new();
    let engine = StorageEngine::open(&dir)?;
    let started = Instant::now();
    let mut stored = Vec::with_capacity(NODES);
    for index in 0..NODES {
        let node = sample_node(agent, index);
        let id = engine.store_memory(&node)?;
        stored.push((id, node));
    }
    let big = MemoryNode::new(
        agent,
        MemoryType::Semantic,
        "x".repeat(3 << 20),
        vec![0.5; EMBEDDING_DIMENSIONS],
    );
    let big_id = engine.store_memory(&big)?;
    stored.push((big_id, big));
    println!(
        "stored {} nodes (one of 3 MiB), each durable on return, in {:.1} ms",
        stored.len(),
        started.elapsed().as_secs_f64() * 1e3
    );

    let (first_id, first) = stored[0].clone();
    let mut grown = first;
    grown.content = "grown past its page: ".to_string() + &"y".repeat(40_000);
    engine.update_memory(first_id, &grown)?;
    stored[0].1 = grown;
    println!("updated node {first_id} to 40 KB: its handle stays valid");

    drop(engine);
    println!("dropped the engine without close() (a simulated crash)");

    let started = Instant::now();
    let engine = StorageEngine::open(&dir)?;
    println!(
        "reopened in {:.2} ms",
        started.elapsed().as_secs_f64() * 1e3
    );
    for (id, node) in &stored {
        let loaded = engine.load_memory(*id)?;
        assert_eq!(&loaded, node, "node {id} came back different");
    }
    println!("loaded all {} nodes back, byte-equal", stored.len());
    let scanned = engine.scan_memories().count();
    println!(
        "a full scan sees {scanned} live nodes; {} pages in the file",
        engine.page_count()
    );
    engine.close()?;
    println!(
        "closed cleanly (checkpointed); the database stays in {}",
        dir.display()
    );
    Ok(())
}

fn sample_node(agent: AgentId, index: usize) -> MemoryNode {
    let content = format!("memory {index}: the user mentioned a preference for concise answers");
    let embedding = (0..EMBEDDING_DIMENSIONS)
        .map(|dimension| ((index * 31 + dimension) % 97) as f32 / 97.0)
        .collect();
    let mut node = MemoryNode::new(agent, MemoryType::Episodic, content, embedding);
    node.tags = vec!["quickstart".to_string(), format!("batch-{}", index / 100)];
    node
}

fn fresh_temp_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("mentedb-quickstart-{}-{nanos}", std::process::id()))
}
