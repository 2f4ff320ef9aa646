//! Several real processes on one database directory (`RealFs`): child processes of this
//! test binary store, update, delete, load, scan and checkpoint concurrently for a bounded
//! time while the parent kills some of them with SIGKILL at random moments (and starts
//! replacements). Afterwards the parent reopens the directory and checks the oracle's
//! rules: every acknowledged write present and byte-equal, nothing deleted back, at most
//! the one in-flight operation of a killed process undecided, the page file clean.
//!
//! Each child writes an intent line before an operation and an acknowledgement after it to
//! its own log (plain writes: they survive the death of the process, which is all SIGKILL
//! does).

use mentedb_storage::{
    AgentId, Error, MemoryId, MemoryNode, MemoryType, Options, RecordId, StorageEngine, Timestamp,
};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_DIR: &str = "MENTEDB_MULTI_PROCESS_DIR";
const CHILD_ID: &str = "MENTEDB_MULTI_PROCESS_ID";
const CHILD_MILLIS: &str = "MENTEDB_MULTI_PROCESS_MILLIS";
/// Concurrent children, kills, and how long the whole test runs.
const CHILDREN: usize = 4;
const KILLS: usize = 5;
const RUN_MILLIS: u64 = 2_500;

/// The node a child writes for (child, sequence number, version).
fn node(child: u8, seq: u32, version: u32) -> MemoryNode {
    let mut id = [0u8; 16];
    id[0] = child;
    id[1..5].copy_from_slice(&seq.to_le_bytes());
    let content_len = 100 + ((seq as usize * 131 + version as usize * 977) % 3_000);
    MemoryNode {
        id: MemoryId(id),
        agent_id: AgentId([child; 16]),
        memory_type: MemoryType::Episodic,
        embedding: vec![version as f32; 64],
        content: (0..content_len)
            .map(|index| (b'a' + ((index + seq as usize + version as usize) % 26) as u8) as char)
            .collect(),
        created_at: Timestamp(1_700_000_000_000_000 + u64::from(seq)),
        accessed_at: Timestamp(1_700_000_000_000_000 + u64::from(version)),
        access_count: u64::from(version),
        salience: 0.5,
        confidence: 0.5,
        tags: vec![format!("child-{child}")],
        attributes: BTreeMap::new(),
    }
}

/// The child half: does nothing unless started by the parent.
#[test]
fn child_process_works_on_the_shared_directory() {
    let (Ok(dir), Ok(id), Ok(millis)) = (
        std::env::var(CHILD_DIR),
        std::env::var(CHILD_ID),
        std::env::var(CHILD_MILLIS),
    ) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let child: u8 = id.parse().expect("child id");
    let deadline = Instant::now() + Duration::from_millis(millis.parse().expect("millis"));
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(format!("child-{child}.log")))
        .expect("log");
    // Odd children cache 8 pages (7 pages and the record maps of evicted ones), so their
    // loads also read single records through maps while the others commit and checkpoint.
    let options = if child % 2 == 1 {
        Options::default().buffer_pool_pages(8)
    } else {
        Options::default()
    };
    let engine = StorageEngine::open_with(&dir.join("db"), options).expect("open");
    let mut mine: Vec<(RecordId, u32, u32)> = Vec::new();
    let mut seq = 0u32;
    let mut step = 0u64;
    while Instant::now() < deadline {
        step += 1;
        let pick = (step.wrapping_mul(2_654_435_761) % 1_000) as usize;
        match step % 10 {
            0..=4 => {
                seq += 1;
                writeln!(log, "begin store {seq}").expect("log");
                let id = engine.store_memory(&node(child, seq, 0)).expect("store");
                writeln!(log, "stored {seq} {}", id.to_u128()).expect("log");
                mine.push((id, seq, 0));
            }
            5 | 6 if !mine.is_empty() => {
                let index = pick % mine.len();
                let (id, seq, version) = mine[index];
                writeln!(log, "begin update {seq} {}", version + 1).expect("log");
                engine
                    .update_memory(id, &node(child, seq, version + 1))
                    .expect("update");
                writeln!(log, "updated {seq} {}", version + 1).expect("log");
                mine[index].2 = version + 1;
            }
            7 if !mine.is_empty() => {
                let (id, seq, _) = mine.swap_remove(pick % mine.len());
                writeln!(log, "begin delete {seq}").expect("log");
                engine.delete_memory(id).expect("delete");
                writeln!(log, "deleted {seq}").expect("log");
            }
            8 if !mine.is_empty() => {
                let (id, seq, version) = mine[pick % mine.len()];
                let loaded = engine.load_memory(id).expect("load");
                assert!(
                    loaded == node(child, seq, version),
                    "child {child} reads back a different node"
                );
            }
            _ if step.is_multiple_of(97) => engine.checkpoint().expect("checkpoint"),
            _ if step.is_multiple_of(53) => {
                let mut count = 0;
                for item in engine.scan_memories() {
                    item.expect("scan");
                    count += 1;
                }
                assert!(count >= mine.len(), "a scan misses this child's own nodes");
            }
            _ => {}
        }
    }
    engine.close().expect("close");
}

/// What one child's log says: acknowledged nodes (seq → version), deleted seqs, and the
/// operation it began but never acknowledged (if it was killed).
#[derive(Debug, Default)]
struct ChildLog {
    live: BTreeMap<u32, u32>,
    deleted: Vec<u32>,
    in_flight: Option<String>,
}

fn read_log(path: &Path) -> ChildLog {
    let mut state = ChildLog::default();
    let text = fs::read_to_string(path).unwrap_or_default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["begin", ..] => state.in_flight = Some(line.to_string()),
            ["stored", seq, _] => {
                state.live.insert(seq.parse().expect("seq"), 0);
                state.in_flight = None;
            }
            ["updated", seq, version] => {
                state
                    .live
                    .insert(seq.parse().expect("seq"), version.parse().expect("version"));
                state.in_flight = None;
            }
            ["deleted", seq] => {
                let seq = seq.parse().expect("seq");
                state.live.remove(&seq);
                state.deleted.push(seq);
                state.in_flight = None;
            }
            // A line cut short by the kill: the operation it starts is in flight.
            _ => {}
        }
    }
    state
}

fn spawn(exe: &Path, dir: &Path, child: usize, millis: u64) -> Child {
    Command::new(exe)
        .args([
            "--exact",
            "child_process_works_on_the_shared_directory",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ID, child.to_string())
        .env(CHILD_MILLIS, millis.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

#[test]
fn processes_killed_at_random_moments_lose_no_acknowledged_write() {
    let dir = std::env::temp_dir().join(format!("mentedb-multi-process-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("dir");
    let exe = std::env::current_exe().expect("test binary");
    let started = Instant::now();
    let mut children: Vec<(usize, Child)> = (0..CHILDREN)
        .map(|child| (child, spawn(&exe, &dir, child, RUN_MILLIS)))
        .collect();
    let mut next_child = CHILDREN;
    // Kill at pseudo-random moments spread over the run, and start a replacement with a
    // fresh id (its own log) so the load stays at CHILDREN processes.
    for kill in 0..KILLS {
        let at = Duration::from_millis(
            RUN_MILLIS * (kill as u64 * 2 + 1) / (KILLS as u64 * 2 + 2) + (kill as u64 * 37) % 90,
        );
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        let victim = (kill * 7 + 3) % children.len();
        let (id, mut process) = children.swap_remove(victim);
        process.kill().expect("SIGKILL");
        let status = process.wait().expect("reap");
        assert!(!status.success(), "child {id} should have died by the kill");
        let left = RUN_MILLIS
            .saturating_sub(started.elapsed().as_millis() as u64)
            .max(200);
        children.push((next_child, spawn(&exe, &dir, next_child, left)));
        next_child += 1;
    }
    for (id, process) in children {
        let output = process.wait_with_output().expect("child");
        assert!(
            output.status.success(),
            "child {id} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    check_directory(&dir, next_child);
    fs::remove_dir_all(&dir).expect("clean up");
}

fn check_directory(dir: &Path, children: usize) {
    let engine = StorageEngine::open(&dir.join("db")).expect("reopen");
    let mut found: BTreeMap<(u8, u32), (RecordId, MemoryNode)> = BTreeMap::new();
    for item in engine.scan_memories() {
        let (id, node) = item.expect("scan");
        let key = (
            node.id.0[0],
            u32::from_le_bytes([node.id.0[1], node.id.0[2], node.id.0[3], node.id.0[4]]),
        );
        assert!(
            found.insert(key, (id, node)).is_none(),
            "node {key:?} stored twice"
        );
    }
    let mut acknowledged = 0;
    for child in 0..children {
        let log = read_log(&dir.join(format!("child-{child}.log")));
        let in_flight = log.in_flight.as_deref().unwrap_or("");
        for (seq, version) in &log.live {
            acknowledged += 1;
            let deleting = in_flight == format!("begin delete {seq}");
            let Some((_, node)) = found.remove(&(child as u8, *seq)) else {
                assert!(
                    deleting,
                    "child {child}: acknowledged node {seq} is missing"
                );
                continue;
            };
            let updating = in_flight == format!("begin update {seq} {}", version + 1);
            assert!(
                node == node_of(child, *seq, *version)
                    || (updating && node == node_of(child, *seq, version + 1)),
                "child {child}: node {seq} is not version {version}"
            );
        }
        for seq in &log.deleted {
            assert!(
                !found.contains_key(&(child as u8, *seq)),
                "child {child}: deleted node {seq} came back"
            );
        }
        // What is left of this child must be its one in-flight store.
        let leftover: Vec<u32> = found
            .keys()
            .filter(|(owner, _)| *owner as usize == child)
            .map(|(_, seq)| *seq)
            .collect();
        for seq in leftover {
            assert_eq!(
                in_flight,
                format!("begin store {seq}"),
                "child {child}: node {seq} was never acknowledged"
            );
            let (_, node) = found.remove(&(child as u8, seq)).expect("leftover");
            assert!(
                node == node_of(child, seq, 0),
                "child {child}: in-flight node {seq} is torn"
            );
        }
    }
    assert!(
        found.is_empty(),
        "nodes no child wrote: {:?}",
        found.keys().collect::<Vec<_>>()
    );
    assert!(
        acknowledged > 100,
        "the children did too little work ({acknowledged} nodes)"
    );
    let report = engine.check_integrity().expect("integrity");
    assert!(
        report.is_clean(),
        "integrity problems: {:?}",
        report.problems
    );
    let probe = engine
        .store_memory(&node(200, 1, 0))
        .expect("write after the run");
    assert!(matches!(engine.load_memory(probe), Ok(ref loaded) if *loaded == node(200, 1, 0)));
    let stale = RecordId::from_u128(u128::MAX);
    assert!(matches!(engine.load_memory(stale), Err(Error::NotFound)));
}

fn node_of(child: usize, seq: u32, version: u32) -> MemoryNode {
    node(child as u8, seq, version)
}
