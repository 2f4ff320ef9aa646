//! The speed figures of issue 2, measured in one run on the real disk (release build):
//!
//! ```text
//! cargo run --release --example bench [-- --dir DIRECTORY]
//! ```
//!
//! 1. durable `store_memory` of a 2 KiB node vs a bare 4 KiB append + `fdatasync` loop;
//! 2. `store_memory_batch` of 500 nodes;
//! 3. warm `load_memory` of a 2 KiB node (one thread);
//! 4. reopen after 2,000 durable stores without `close()`;
//! 5. allocated bytes on disk (WAL included) after 20,000 nodes and a checkpoint, against
//!    their encoded size.
//!
//! Each rate is the median of several rounds.

use mentedb_storage::memory::encoded_record;
use mentedb_storage::{AgentId, MemoryNode, MemoryType, RecordId, StorageEngine};
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const ROUNDS: usize = 5;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = bench_root();
    std::fs::create_dir_all(&root)?;
    println!("bench directory: {}", root.display());

    let durable_stores = 10_000;
    let baseline =
        median_rate(|round| raw_append_sync(&root.join(format!("raw-{round}")), durable_stores))?;
    let stores =
        median_rate(|round| durable_store(&root.join(format!("store-{round}")), durable_stores))?;
    println!(
        "1. raw 4 KiB append+fdatasync:   {baseline:>10.0} /s (median of {ROUNDS} x {durable_stores})"
    );
    println!(
        "   durable store_memory (2 KiB): {stores:>10.0} /s = {:.2}x the raw loop (target >= 0.80)",
        stores / baseline
    );

    let batch = median_rate(|round| batch_store(&root.join(format!("batch-{round}")), 500, 40))?;
    println!("2. store_memory_batch of 500:    {batch:>10.0} nodes/s (target >= 100,000)");

    let loads =
        median_rate(|round| warm_loads(&root.join(format!("load-{round}")), 2_000, 1_000_000))?;
    println!("3. warm load_memory (2 KiB):     {loads:>10.0} loads/s (target >= 700,000)");

    let mut reopen_ms = Vec::new();
    for round in 0..ROUNDS {
        reopen_ms.push(
            reopen_after_crash(&root.join(format!("reopen-{round}")), 2_000)?.as_secs_f64() * 1e3,
        );
    }
    println!(
        "4. reopen after 2,000 stores:    {:>10.3} ms (median; target <= 5 ms)",
        median(reopen_ms)
    );

    let (allocated, payload) = footprint(&root.join("footprint"), 20_000)?;
    println!(
        "5. footprint of 20,000 nodes:    {:>10.3}x ({allocated} allocated bytes / {payload} encoded bytes; target <= 1.2)",
        allocated as f64 / payload as f64
    );
    std::fs::remove_dir_all(&root)?;
    Ok(())
}

fn bench_root() -> PathBuf {
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--dir"
            && let Some(dir) = args.next()
        {
            return PathBuf::from(dir);
        }
    }
    std::env::current_dir()
        .unwrap_or_else(|_| std::env::temp_dir())
        .join("target")
        .join(format!("mentedb-bench-{}", std::process::id()))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn median_rate(
    mut round: impl FnMut(usize) -> Result<(usize, Duration), Box<dyn std::error::Error>>,
) -> Result<f64, Box<dyn std::error::Error>> {
    let mut rates = Vec::new();
    for index in 0..ROUNDS {
        let (count, elapsed) = round(index)?;
        rates.push(count as f64 / elapsed.as_secs_f64());
    }
    Ok(median(rates))
}

fn node(agent: AgentId, index: usize) -> MemoryNode {
    let content: String = (0..300)
        .map(|at| (b'a' + ((index + at) % 26) as u8) as char)
        .collect();
    let embedding = (0..384)
        .map(|dimension| ((index * 7 + dimension) % 101) as f32 / 101.0)
        .collect();
    let mut node = MemoryNode::new(agent, MemoryType::Episodic, content, embedding);
    node.tags = vec![
        "bench".into(),
        format!("t{}", index % 10),
        "agent-memory".into(),
    ];
    node
}

fn raw_append_sync(
    path: &Path,
    count: usize,
) -> Result<(usize, Duration), Box<dyn std::error::Error>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .open(path)?;
    let block = vec![0x5au8; 4096];
    let started = Instant::now();
    for index in 0..count {
        file.write_all_at(&block, (index * block.len()) as u64)?;
        file.sync_data()?;
    }
    let elapsed = started.elapsed();
    std::fs::remove_file(path)?;
    Ok((count, elapsed))
}

fn durable_store(
    dir: &Path,
    count: usize,
) -> Result<(usize, Duration), Box<dyn std::error::Error>> {
    let engine = StorageEngine::open(dir)?;
    let agent = AgentId::new();
    let nodes: Vec<MemoryNode> = (0..count).map(|index| node(agent, index)).collect();
    let started = Instant::now();
    for node in &nodes {
        engine.store_memory(node)?;
    }
    let elapsed = started.elapsed();
    engine.close()?;
    std::fs::remove_dir_all(dir)?;
    Ok((count, elapsed))
}

fn batch_store(
    dir: &Path,
    batch: usize,
    batches: usize,
) -> Result<(usize, Duration), Box<dyn std::error::Error>> {
    let engine = StorageEngine::open(dir)?;
    let agent = AgentId::new();
    let nodes: Vec<MemoryNode> = (0..batch * batches)
        .map(|index| node(agent, index))
        .collect();
    let started = Instant::now();
    for chunk in nodes.chunks(batch) {
        engine.store_memory_batch(chunk)?;
    }
    let elapsed = started.elapsed();
    engine.close()?;
    std::fs::remove_dir_all(dir)?;
    Ok((nodes.len(), elapsed))
}

fn warm_loads(
    dir: &Path,
    nodes: usize,
    loads: usize,
) -> Result<(usize, Duration), Box<dyn std::error::Error>> {
    let engine = StorageEngine::open(dir)?;
    let agent = AgentId::new();
    let all: Vec<MemoryNode> = (0..nodes).map(|index| node(agent, index)).collect();
    let ids: Vec<RecordId> = engine.store_memory_batch(&all)?;
    for id in &ids {
        engine.load_memory(*id)?;
    }
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let started = Instant::now();
    let mut checksum = 0usize;
    for _ in 0..loads {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let node = engine.load_memory(ids[(state % ids.len() as u64) as usize])?;
        checksum = checksum.wrapping_add(node.content.len());
    }
    let elapsed = started.elapsed();
    assert_eq!(checksum, loads * 300, "every load returned a full node");
    engine.close()?;
    std::fs::remove_dir_all(dir)?;
    Ok((loads, elapsed))
}

fn reopen_after_crash(dir: &Path, count: usize) -> Result<Duration, Box<dyn std::error::Error>> {
    let engine = StorageEngine::open(dir)?;
    let agent = AgentId::new();
    let mut last = None;
    for index in 0..count {
        last = Some(engine.store_memory(&node(agent, index))?);
    }
    drop(engine);
    let started = Instant::now();
    let engine = StorageEngine::open(dir)?;
    let elapsed = started.elapsed();
    if let Some(id) = last {
        engine.load_memory(id)?;
    }
    drop(engine);
    std::fs::remove_dir_all(dir)?;
    Ok(elapsed)
}

fn footprint(dir: &Path, count: usize) -> Result<(u64, u64), Box<dyn std::error::Error>> {
    let engine = StorageEngine::open(dir)?;
    let agent = AgentId::new();
    let nodes: Vec<MemoryNode> = (0..count).map(|index| node(agent, index)).collect();
    let mut payload = 0u64;
    for node in &nodes {
        payload += encoded_record(node)?.len() as u64;
    }
    for chunk in nodes.chunks(500) {
        engine.store_memory_batch(chunk)?;
    }
    engine.checkpoint()?;
    let mut allocated = 0;
    for entry in std::fs::read_dir(dir)? {
        allocated += entry?.metadata()?.blocks() * 512;
    }
    engine.close()?;
    std::fs::remove_dir_all(dir)?;
    Ok((allocated, payload))
}
