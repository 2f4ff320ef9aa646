//! A loop of durable single puts, for profiling the commit path (`perf`, `strace -c`,
//! `valgrind --tool=callgrind`):
//!
//! ```text
//! cargo run --release --example put_profile -- DIRECTORY [COUNT] [--normal]
//! ```
//!
//! `--normal` uses `SyncMode::Normal`, which leaves the `fdatasync` out, so a profile
//! shows the engine's own CPU; `--loads N` adds N random warm loads of what was stored;
//! `--threads N` runs the puts from N threads at once instead (group commit);
//! `--batch N` stores them in durable batches of N instead; `--crash` exits after the
//! puts without closing, and `--reopen` then times opening what it left (with `--loads N`:
//! a scan, N random loads, and the peak resident memory).

use mentedb_storage::{
    AgentId, MemoryNode, MemoryType, Options, RecordId, StorageEngine, SyncMode,
};
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = PathBuf::from(args.first().ok_or("usage: put_profile DIRECTORY [COUNT]")?);
    let count: usize = match args.get(1) {
        Some(count) if !count.starts_with("--") => count.parse()?,
        _ => 2_000,
    };
    let mut options = Options::default();
    if args.iter().any(|arg| arg == "--normal") {
        options = options
            .sync_mode(SyncMode::Normal)
            .normal_sync_commits(u32::MAX);
    }
    if args.iter().any(|arg| arg == "--reopen") {
        let started = Instant::now();
        let engine = StorageEngine::open_with(&dir, options)?;
        println!("reopen in {:.3} ms", started.elapsed().as_secs_f64() * 1e3);
        if let Some(at) = args.iter().position(|arg| arg == "--loads") {
            let loads: usize = args.get(at + 1).ok_or("--loads needs a count")?.parse()?;
            let started = Instant::now();
            let ids: Vec<_> = engine
                .scan_memories()
                .map(|item| item.map(|(id, _)| id))
                .collect::<Result<_, _>>()?;
            println!(
                "scan of {} nodes in {:.3} s: {:.0}/s",
                ids.len(),
                started.elapsed().as_secs_f64(),
                ids.len() as f64 / started.elapsed().as_secs_f64()
            );
            random_loads(&engine, &ids, loads)?;
            println!("peak RSS {} MiB", peak_rss_kib() / 1024);
        }
        drop(engine);
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&dir);
    let engine = StorageEngine::open_with(&dir, options)?;
    let agent = AgentId::new();
    let nodes: Vec<MemoryNode> = (0..count).map(|index| node(agent, index)).collect();
    if let Some(at) = args.iter().position(|arg| arg == "--threads") {
        let threads: usize = args.get(at + 1).ok_or("--threads needs a count")?.parse()?;
        let started = Instant::now();
        std::thread::scope(|scope| {
            for chunk in nodes.chunks(count.div_ceil(threads.max(1))) {
                let engine = &engine;
                scope.spawn(move || {
                    for node in chunk {
                        engine.store_memory(node).expect("store");
                    }
                });
            }
        });
        let elapsed = started.elapsed();
        println!(
            "{count} puts from {threads} threads in {:.3} s: {:.0}/s",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64()
        );
        engine.close()?;
        return Ok(());
    }
    if let Some(at) = args.iter().position(|arg| arg == "--batch") {
        let size: usize = args.get(at + 1).ok_or("--batch needs a size")?.parse()?;
        let started = Instant::now();
        for batch in nodes.chunks(size.max(1)) {
            engine.store_memory_batch(batch)?;
        }
        let elapsed = started.elapsed();
        println!(
            "{count} nodes in batches of {size} in {:.3} s: {:.0}/s",
            elapsed.as_secs_f64(),
            count as f64 / elapsed.as_secs_f64()
        );
        engine.close()?;
        return Ok(());
    }
    let mut latencies = Vec::with_capacity(count);
    let mut ids = Vec::with_capacity(count);
    let started = Instant::now();
    for node in &nodes {
        let put = Instant::now();
        ids.push(engine.store_memory(node)?);
        latencies.push(put.elapsed().as_nanos() as u64);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    println!(
        "{count} puts in {:.3} s: {:.0}/s, p50 {} µs, p99 {} µs",
        elapsed.as_secs_f64(),
        count as f64 / elapsed.as_secs_f64(),
        latencies[count / 2] / 1000,
        latencies[count * 99 / 100] / 1000
    );
    if args.iter().any(|arg| arg == "--crash") {
        // No close, no destructors: what a killed process leaves.
        std::process::exit(0);
    }
    if let Some(at) = args.iter().position(|arg| arg == "--loads") {
        let loads: usize = args.get(at + 1).ok_or("--loads needs a count")?.parse()?;
        random_loads(&engine, &ids, loads)?;
    }
    engine.close()?;
    Ok(())
}

fn random_loads(
    engine: &StorageEngine,
    ids: &[RecordId],
    loads: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let started = Instant::now();
    for _ in 0..loads {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let node = engine.load_memory(ids[(state % ids.len() as u64) as usize])?;
        std::hint::black_box(node);
    }
    let elapsed = started.elapsed();
    println!(
        "{loads} random loads in {:.3} s: {:.0}/s",
        elapsed.as_secs_f64(),
        loads as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

/// Peak resident memory of this process (`VmHWM`), in KiB; 0 where unknown.
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|line| line.starts_with("VmHWM:"))
                .and_then(|line| line.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn node(agent: AgentId, index: usize) -> MemoryNode {
    let content: String = (0..300)
        .map(|at| (b'a' + ((index + at) % 26) as u8) as char)
        .collect();
    // Pseudo-random values, as real embeddings: they do not compress.
    let mut state = index as u64 * 0x9e37_79b9_7f4a_7c15 + 1;
    let embedding = (0..384)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 2_000_001) as f32 / 1_000_000.0 - 1.0
        })
        .collect();
    let mut node = MemoryNode::new(agent, MemoryType::Episodic, content, embedding);
    node.tags = vec!["bench".into(), format!("t{}", index % 10)];
    node
}
