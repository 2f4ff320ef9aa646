//! Writes the seed corpora of the fuzz targets into `corpus/<target>/` (deterministic: the
//! same files on every run).
//!
//! `cargo run --release -p mentedb-sim --example make_corpus [corpus-dir]`
//!
//! - `wal_recovery`: databases built on `SimFs` (fresh; frames not yet checkpointed; after a
//!   checkpoint with more frames; an overflow node, updates and deletes; a torn WAL tail; a
//!   bit flip in a synced frame), each as `u32 WAL length | WAL | pages.db`.
//! - `page_decode`: a meta page, data pages, an overflow page, a free page (each followed by
//!   a delta against an older version where there is one), and a WAL file.
//! - `record_decode`: encoded nodes of every shape.
//! - `engine_ops`: operation streams (eight bytes of fault seed, then the workload's bytes).
//! - `backup_restore`: backups (flag byte, then the file) of a fresh database, of small and
//!   overflowing nodes with changes still in the WAL; truncated in the header, a chunk and
//!   the manifest; bit-flipped as written and with the checksums resealed.

use mentedb_sim::simfs::{FaultConfig, SimFs};
use mentedb_sim::targets::join_files;
use mentedb_storage::backup;
use mentedb_storage::memory::encoded_record;
use mentedb_storage::page::{Page, encode_delta, page_diff};
use mentedb_storage::{
    AgentId, MemoryId, MemoryNode, MemoryType, Options, PAGE_SIZE, RecordId, StorageEngine,
    Timestamp,
};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// Named input files of one target.
type Inputs = Vec<(String, Vec<u8>)>;
/// What a generator returns.
type Made<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> Made<()> {
    let root = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpus"));
    let mut written = 0;
    for (target, files) in [
        ("wal_recovery", wal_recovery_inputs()?),
        ("page_decode", page_inputs()?),
        ("record_decode", record_inputs()?),
        ("engine_ops", engine_ops_inputs()),
        ("backup_restore", backup_inputs()?),
    ] {
        let dir = root.join(target);
        fs::create_dir_all(&dir)?;
        let mut bytes_total = 0;
        for (name, bytes) in files {
            bytes_total += bytes.len();
            fs::write(dir.join(name), bytes)?;
            written += 1;
        }
        println!("{target}: {bytes_total} bytes");
        assert!(
            bytes_total < 2 << 20,
            "the {target} corpus must stay under 2 MiB"
        );
    }
    println!("{written} files under {}", root.display());
    Ok(())
}

fn node(index: u64, content_len: usize) -> MemoryNode {
    let mut attributes = BTreeMap::new();
    if index.is_multiple_of(2) {
        attributes.insert("source".to_string(), format!("corpus-{index}"));
    }
    MemoryNode {
        id: MemoryId([index as u8; 16]),
        agent_id: AgentId([3; 16]),
        memory_type: MemoryType::Semantic,
        embedding: (0..16).map(|position| (position as f32) / 16.0).collect(),
        content: (0..content_len)
            .map(|position| (b'a' + (position % 26) as u8) as char)
            .collect(),
        created_at: Timestamp(1_700_000_000_000_000 + index),
        accessed_at: Timestamp(1_700_000_000_000_000 + index),
        access_count: index,
        salience: 0.5,
        confidence: 0.75,
        tags: (0..index % 3).map(|tag| format!("tag-{tag}")).collect(),
        attributes,
    }
}

/// A database on a fresh `SimFs` after `build` ran; returns (WAL, pages.db).
fn database(
    build: impl FnOnce(&StorageEngine) -> mentedb_storage::Result<()>,
) -> Made<(Vec<u8>, Vec<u8>)> {
    let fs = SimFs::new(1, FaultConfig::none());
    let options = Options::default()
        .vfs(fs.process(0))
        .checkpoint_wal_bytes(0);
    let engine = StorageEngine::open_with(Path::new("/db"), options)?;
    build(&engine)?;
    drop(engine);
    let mut wal = fs.file_bytes(Path::new("/db/wal.log")).unwrap_or_default();
    // The preallocated zeros after the log's end (up to 1 MiB) say nothing a fuzzer can
    // use and would make every input a megabyte.
    let end = wal
        .iter()
        .rposition(|byte| *byte != 0)
        .map_or(0, |last| last + 1);
    wal.truncate(end.max(mentedb_storage::wal::WAL_HEADER_SIZE.min(wal.len())));
    let pages = fs.file_bytes(Path::new("/db/pages.db")).unwrap_or_default();
    Ok((wal, pages))
}

fn store_some(
    engine: &StorageEngine,
    from: u64,
    count: u64,
) -> mentedb_storage::Result<Vec<RecordId>> {
    (from..from + count)
        .map(|index| engine.store_memory(&node(index, 100 + 50 * index as usize)))
        .collect()
}

fn wal_recovery_inputs() -> Made<Inputs> {
    let mut inputs = Vec::new();
    let (wal, pages) = database(|_| Ok(()))?;
    inputs.push(("fresh".to_string(), join_files(&wal, &pages, false)));
    let (wal, pages) = database(|engine| store_some(engine, 0, 5).map(drop))?;
    inputs.push(("five-frames".to_string(), join_files(&wal, &pages, false)));
    let torn = wal.len().saturating_sub(37);
    inputs.push((
        "torn-tail".to_string(),
        join_files(&wal[..torn], &pages, false),
    ));
    let mut flipped = wal.clone();
    if flipped.len() > 200 {
        flipped[120] ^= 0x10;
    }
    inputs.push((
        "flipped-synced-frame".to_string(),
        join_files(&flipped, &pages, false),
    ));
    let (wal, pages) = database(|engine| {
        store_some(engine, 0, 4)?;
        engine.checkpoint()?;
        store_some(engine, 4, 3).map(drop)
    })?;
    inputs.push((
        "after-checkpoint".to_string(),
        join_files(&wal, &pages, false),
    ));
    let (wal, pages) = database(|engine| {
        let ids = store_some(engine, 0, 3)?;
        engine.store_memory(&node(9, 40_000))?;
        engine.update_memory(ids[0], &node(10, 12_000))?;
        engine.delete_memory(ids[1])?;
        engine
            .store_memory_batch(&[node(11, 30), node(12, 60)])
            .map(drop)
    })?;
    inputs.push((
        "overflow-update-delete-batch".to_string(),
        join_files(&wal, &pages, false),
    ));
    // The same, with checksums resealed after changes a checksum would catch: a frame
    // naming a page far past the end, and meta pages claiming 2^30 pages.
    let mut crafted_wal = wal.clone();
    if crafted_wal.len() > 32 + 40 {
        crafted_wal[32 + 24..32 + 32].copy_from_slice(&u64::from(u32::MAX).to_le_bytes());
    }
    inputs.push((
        "resealed-page-past-the-end".to_string(),
        join_files(&crafted_wal, &pages, true),
    ));
    let (wal, pages) = database(|engine| {
        store_some(engine, 0, 3)?;
        engine.checkpoint()
    })?;
    let mut crafted_pages = pages.clone();
    // The allocation state's page count (meta body offset 24) of both meta pages, with
    // an empty log, so the meta page is what recovery believes.
    for meta in [0, PAGE_SIZE] {
        crafted_pages[meta + 72..meta + 80].copy_from_slice(&(1u64 << 30).to_le_bytes());
    }
    inputs.push((
        "resealed-huge-meta".to_string(),
        join_files(&wal, &crafted_pages, true),
    ));
    Ok(inputs)
}

fn page_inputs() -> Made<Inputs> {
    let (wal, pages) = database(|engine| {
        let ids = store_some(engine, 0, 6)?;
        engine.store_memory(&node(20, 70_000))?;
        engine.checkpoint()?;
        engine.delete_memory(ids[2])?;
        let big = engine.store_memory(&node(21, 40_000))?;
        engine.delete_memory(big)?;
        engine.checkpoint()
    })?;
    let mut inputs = Vec::new();
    let page_count = pages.len() / PAGE_SIZE;
    let mut previous: Option<Page> = None;
    for index in 0..page_count {
        let bytes = &pages[index * PAGE_SIZE..(index + 1) * PAGE_SIZE];
        let page = Page::from_bytes(bytes)?;
        let mut input = bytes.to_vec();
        if let Some(old) = &previous {
            input.extend(encode_delta(&page, &page_diff(old, &page)));
        }
        let kind = page
            .page_type()
            .map(|kind| format!("{kind:?}"))
            .unwrap_or_else(|| "unknown".to_string());
        inputs.push((format!("page-{index}-{}", kind.to_lowercase()), input));
        previous = Some(page);
    }
    drop(wal);
    let (wal, _) = database(|engine| {
        let ids = store_some(engine, 0, 4)?;
        engine.update_memory(ids[1], &node(30, 900))?;
        engine.delete_memory(ids[2]).map(drop)
    })?;
    inputs.push(("wal-file".to_string(), wal));
    Ok(inputs)
}

fn record_inputs() -> Made<Inputs> {
    let mut inputs = Vec::new();
    for (name, node) in [
        ("empty-content", node(0, 0)),
        ("small", node(1, 40)),
        ("typical", {
            let mut node = node(2, 400);
            node.embedding = vec![0.25; 384];
            node
        }),
        ("tags-and-attributes", node(4, 120)),
        ("large", node(5, 12_000)),
    ] {
        inputs.push((name.to_string(), encoded_record(&node)?));
    }
    Ok(inputs)
}

fn engine_ops_inputs() -> Vec<(String, Vec<u8>)> {
    let mut rng = ChaCha8Rng::seed_from_u64(4);
    [64usize, 256, 800, 1_600]
        .iter()
        .map(|len| {
            let mut bytes = vec![0u8; *len];
            rng.fill_bytes(&mut bytes);
            (format!("ops-{len}"), bytes)
        })
        .collect()
}

/// The backup file of a database on a fresh `SimFs` after `build` ran.
fn backup_of(build: impl FnOnce(&StorageEngine) -> mentedb_storage::Result<()>) -> Made<Vec<u8>> {
    let fs = SimFs::new(2, FaultConfig::none());
    let options = Options::default()
        .vfs(fs.process(0))
        .checkpoint_wal_bytes(0);
    let engine = StorageEngine::open_with(Path::new("/db"), options)?;
    build(&engine)?;
    backup::backup(&engine, Path::new("/db.mbak"))?;
    Ok(fs.file_bytes(Path::new("/db.mbak")).unwrap_or_default())
}

fn backup_inputs() -> Made<Inputs> {
    let flagged = |flag: u8, bytes: &[u8]| {
        let mut data = vec![flag];
        data.extend_from_slice(bytes);
        data
    };
    let fresh = backup_of(|_| Ok(()))?;
    let small = backup_of(|engine| store_some(engine, 0, 6).map(|_| ()))?;
    let mixed = backup_of(|engine| {
        let ids = store_some(engine, 0, 4)?;
        engine.checkpoint()?;
        engine.store_memory(&node(9, 40_000))?;
        engine.update_memory(ids[1], &node(10, 3_000))?;
        engine.delete_memory(ids[2])
    })?;
    let mut inputs = vec![
        ("fresh".to_string(), flagged(0, &fresh)),
        ("small".to_string(), flagged(0, &small)),
        ("mixed".to_string(), flagged(0, &mixed)),
        ("mixed-resealed".to_string(), flagged(1, &mixed)),
        ("truncated-header".to_string(), flagged(0, &small[..20])),
        (
            "truncated-chunk".to_string(),
            flagged(0, &small[..small.len() / 2]),
        ),
        (
            "truncated-manifest".to_string(),
            flagged(0, &small[..small.len() - 10]),
        ),
    ];
    for (name, at) in [
        ("chunk-header", 45),
        ("chunk-body", 70),
        ("manifest", mixed.len() - 30),
    ] {
        let mut flipped = mixed.clone();
        flipped[at] ^= 0x20;
        inputs.push((format!("flip-{name}"), flagged(0, &flipped)));
        inputs.push((format!("flip-{name}-resealed"), flagged(1, &flipped)));
    }
    Ok(inputs)
}
