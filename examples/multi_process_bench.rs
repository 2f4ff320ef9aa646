//! Throughput with several processes on one database directory (issue 5's figures).
//!
//! `cargo run --release --example multi_process_bench [seconds-per-round]`
//!
//! 1. Durable stores/s (Full sync mode, 2 KiB nodes) with 1 writer process and with 4
//!    writer processes at once: the total of all writers, median of 3 rounds.
//! 2. Warm loads/s of a reader process alone, and of a reader process while a writer
//!    process stores in the same directory (median of 3 rounds each).
//!
//! The parent re-runs this binary as its children (`--child ...`).

use mentedb_storage::{AgentId, MemoryNode, MemoryType, RecordId, StorageEngine};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

const NODE_CONTENT_BYTES: usize = 450;
const EMBEDDING_DIMENSIONS: usize = 384;
const READ_SET_NODES: usize = 5_000;
const ROUNDS: usize = 3;

fn node(seed: u64) -> MemoryNode {
    let content: String = (0..NODE_CONTENT_BYTES)
        .map(|index| (b'a' + ((index as u64 + seed) % 26) as u8) as char)
        .collect();
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Episodic,
        content,
        vec![seed as f32 / 7.0; EMBEDDING_DIMENSIONS],
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--child") {
        return child(&args[2..]);
    }
    let seconds: f64 = args
        .get(1)
        .map(|text| text.parse())
        .transpose()?
        .unwrap_or(3.0);
    let round = Duration::from_secs_f64(seconds);
    let root = std::env::temp_dir().join(format!("mentedb-mp-bench-{}", std::process::id()));
    println!("multi-process throughput, {seconds} s per round, median of {ROUNDS} rounds");

    let one = median(
        (0..ROUNDS)
            .map(|_| writers(&root, 1, round))
            .collect::<Result<_, _>>()?,
    );
    let four = median(
        (0..ROUNDS)
            .map(|_| writers(&root, 4, round))
            .collect::<Result<_, _>>()?,
    );
    println!("1. durable stores/s, 1 writer process:   {one:>9.0}");
    println!(
        "   durable stores/s, 4 writer processes: {four:>9.0} total = {:.2}x one process (target >= 1.0)",
        four / one
    );

    let dir = root.join("reads");
    let _ = std::fs::remove_dir_all(&dir);
    let handles = prepare_read_set(&dir)?;
    let alone = median(
        (0..ROUNDS)
            .map(|_| readers(&dir, &handles, round, false))
            .collect::<Result<_, _>>()?,
    );
    let busy = median(
        (0..ROUNDS)
            .map(|_| readers(&dir, &handles, round, true))
            .collect::<Result<_, _>>()?,
    );
    println!("2. warm loads/s, reader process alone:          {alone:>10.0}");
    println!(
        "   warm loads/s, reader while a writer process runs: {busy:>10.0} = {:.2}x alone (target >= 0.5)",
        busy / alone
    );
    let _ = std::fs::remove_dir_all(&root);
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn spawn(arguments: &[String]) -> Result<Child, std::io::Error> {
    Command::new(std::env::current_exe()?)
        .arg("--child")
        .args(arguments)
        .spawn()
}

/// Runs `count` writer processes on a fresh directory for `round`; total stores/s.
fn writers(root: &Path, count: usize, round: Duration) -> Result<f64, Box<dyn std::error::Error>> {
    let dir = root.join(format!("writers-{count}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    StorageEngine::open(&dir.join("db"))?.close()?;
    let children: Vec<Child> = (0..count)
        .map(|index| {
            spawn(&[
                "writer".to_string(),
                dir.display().to_string(),
                round.as_millis().to_string(),
                index.to_string(),
            ])
        })
        .collect::<Result<_, _>>()?;
    let mut total = 0.0;
    for (index, mut child) in children.into_iter().enumerate() {
        assert!(child.wait()?.success(), "writer {index} failed");
        total += std::fs::read_to_string(dir.join(format!("rate-{index}")))?
            .trim()
            .parse::<f64>()?;
    }
    Ok(total)
}

fn prepare_read_set(dir: &Path) -> Result<Vec<RecordId>, Box<dyn std::error::Error>> {
    let engine = StorageEngine::open(&dir.join("db"))?;
    let nodes: Vec<MemoryNode> = (0..READ_SET_NODES as u64).map(node).collect();
    let mut handles = Vec::new();
    for chunk in nodes.chunks(500) {
        handles.extend(engine.store_memory_batch(chunk)?);
    }
    engine.checkpoint()?;
    engine.close()?;
    let list: Vec<String> = handles.iter().map(|id| id.to_u128().to_string()).collect();
    std::fs::write(dir.join("handles"), list.join("\n"))?;
    Ok(handles)
}

/// Runs a reader process (and, if `with_writer`, a writer process beside it); the reader's
/// loads/s.
fn readers(
    dir: &Path,
    _handles: &[RecordId],
    round: Duration,
    with_writer: bool,
) -> Result<f64, Box<dyn std::error::Error>> {
    let millis = round.as_millis().to_string();
    let writer = if with_writer {
        // A little longer than the reader, so it runs for the whole measurement.
        Some(spawn(&[
            "writer".to_string(),
            dir.display().to_string(),
            (round.as_millis() + 1_000).to_string(),
            "w".to_string(),
        ])?)
    } else {
        None
    };
    let mut reader = spawn(&["reader".to_string(), dir.display().to_string(), millis])?;
    assert!(reader.wait()?.success(), "reader failed");
    if let Some(mut writer) = writer {
        assert!(writer.wait()?.success(), "writer failed");
    }
    Ok(std::fs::read_to_string(dir.join("rate-reader"))?
        .trim()
        .parse()?)
}

fn child(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let role = args[0].as_str();
    let dir = PathBuf::from(&args[1]);
    let run = Duration::from_millis(args[2].parse()?);
    let engine = StorageEngine::open(&dir.join("db"))?;
    match role {
        "writer" => {
            let name = &args[3];
            let nodes: Vec<MemoryNode> = (0..256).map(node).collect();
            let started = Instant::now();
            let mut stores = 0u64;
            while started.elapsed() < run {
                engine.store_memory(&nodes[(stores % 256) as usize])?;
                stores += 1;
            }
            let rate = stores as f64 / started.elapsed().as_secs_f64();
            std::fs::write(dir.join(format!("rate-{name}")), rate.to_string())?;
        }
        "reader" => {
            let handles: Vec<RecordId> = std::fs::read_to_string(dir.join("handles"))?
                .lines()
                .map(|line| line.parse().map(RecordId::from_u128))
                .collect::<Result<_, _>>()?;
            for id in &handles {
                engine.load_memory(*id)?;
            }
            let started = Instant::now();
            let mut loads = 0u64;
            let mut position = 0usize;
            while started.elapsed() < run {
                for _ in 0..256 {
                    position = (position + 7_919) % handles.len();
                    engine.load_memory(handles[position])?;
                }
                loads += 256;
            }
            let rate = loads as f64 / started.elapsed().as_secs_f64();
            std::fs::write(dir.join("rate-reader"), rate.to_string())?;
        }
        other => return Err(format!("unknown child role {other}").into()),
    }
    engine.close()?;
    Ok(())
}
