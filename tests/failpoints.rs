//! Failpoints on the real-file path (`RealFs`): every crash-critical step of the engine is
//! made to fail (the error path runs, the engine is dropped) or to kill the process (a
//! child process aborts there), then the directory is reopened and checked against the
//! oracle's rules: every acknowledged write present and byte-equal, nothing deleted back,
//! the interrupted operation all or nothing, the integrity check clean, writes accepted.
//!
//! Run with `cargo test --release --features failpoints --test failpoints`.

#![cfg(feature = "failpoints")]

use mentedb_storage::failpoints::NAMES;
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, RecordId, StorageEngine, Timestamp};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Environment of a child process: the failpoint to die at, its action, the directory.
const CHILD_POINT: &str = "MENTEDB_FAILPOINT_CHILD_POINT";
const CHILD_ACTION: &str = "MENTEDB_FAILPOINT_CHILD_ACTION";
const CHILD_DIR: &str = "MENTEDB_FAILPOINT_CHILD_DIR";
/// Which hit of a failpoint fires: the first, a later one, one after a checkpoint.
const HITS: [u32; 3] = [1, 3, 9];

/// One step of the fixed workload.
#[derive(Debug, Clone)]
enum Step {
    Store(usize),
    Batch(Vec<usize>),
    Update(usize, usize),
    Delete(usize),
    Checkpoint,
}

/// The workload: stores (one overflow-sized), a batch, an update growing past its page and
/// one shrinking, deletes and checkpoints. `Update(k, n)` / `Delete(k)` name the k-th
/// stored handle.
fn workload() -> Vec<Step> {
    let mut steps: Vec<Step> = (0..6).map(Step::Store).collect();
    steps.push(Step::Batch(vec![6, 7, 8, 9]));
    steps.push(Step::Update(1, 100));
    steps.push(Step::Checkpoint);
    steps.push(Step::Store(10));
    steps.push(Step::Update(2, 101));
    steps.push(Step::Delete(3));
    steps.push(Step::Update(1, 102));
    steps.push(Step::Checkpoint);
    steps.extend((11..15).map(Step::Store));
    steps.push(Step::Delete(0));
    steps.push(Step::Checkpoint);
    steps.push(Step::Store(15));
    steps
}

fn node(index: usize) -> MemoryNode {
    let content_len = match index {
        4 => 90_000,
        100 => 20_000,
        101 => 12_000,
        _ => 200 + index * 37,
    };
    let content: String = (0..content_len)
        .map(|position| (b'a' + ((position + index) % 26) as u8) as char)
        .collect();
    let mut node = MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        content,
        vec![index as f32; 384],
    );
    node.id.0 = [index as u8; 16];
    node.agent_id = AgentId([7; 16]);
    node.created_at = Timestamp(1_700_000_000_000_000 + index as u64);
    node.accessed_at = node.created_at;
    node
}

/// What the database must hold: handles of stores in order, live nodes, deleted handles.
#[derive(Debug, Default, Clone)]
struct Model {
    handles: Vec<RecordId>,
    live: BTreeMap<RecordId, MemoryNode>,
    deleted: Vec<RecordId>,
}

impl Model {
    /// Applies an acknowledged step with the handles the engine returned.
    fn apply(&mut self, step: &Step, ids: &[RecordId]) {
        match step {
            Step::Store(index) => {
                self.handles.push(ids[0]);
                self.live.insert(ids[0], node(*index));
            }
            Step::Batch(indexes) => {
                for (id, index) in ids.iter().zip(indexes) {
                    self.handles.push(*id);
                    self.live.insert(*id, node(*index));
                }
            }
            Step::Update(handle, index) => {
                self.live.insert(self.handles[*handle], node(*index));
            }
            Step::Delete(handle) => {
                let id = self.handles[*handle];
                self.live.remove(&id);
                self.deleted.push(id);
            }
            Step::Checkpoint => {}
        }
    }
}

/// Runs one step; returns the handles it produced.
fn run_step(
    engine: &StorageEngine,
    model: &Model,
    step: &Step,
) -> mentedb_storage::error::Result<Vec<RecordId>> {
    match step {
        Step::Store(index) => Ok(vec![engine.store_memory(&node(*index))?]),
        Step::Batch(indexes) => {
            let nodes: Vec<MemoryNode> = indexes.iter().map(|index| node(*index)).collect();
            engine.store_memory_batch(&nodes)
        }
        Step::Update(handle, index) => {
            engine.update_memory(model.handles[*handle], &node(*index))?;
            Ok(Vec::new())
        }
        Step::Delete(handle) => {
            engine.delete_memory(model.handles[*handle])?;
            Ok(Vec::new())
        }
        Step::Checkpoint => {
            engine.checkpoint()?;
            Ok(Vec::new())
        }
    }
}

/// The states the database may be in after `acknowledged` steps succeeded and the next
/// one was interrupted: without it, or with it whole.
fn acceptable(model: &Model, interrupted: Option<&Step>) -> Vec<BTreeMap<MemoryNodeKey, ()>> {
    let mut states = vec![key_set(model.live.values())];
    if let Some(step) = interrupted {
        let mut with: Vec<MemoryNode> = model.live.values().cloned().collect();
        match step {
            Step::Store(index) => with.push(node(*index)),
            Step::Batch(indexes) => with.extend(indexes.iter().map(|index| node(*index))),
            Step::Update(handle, index) => {
                let id = model.handles[*handle];
                let mut live = model.live.clone();
                live.insert(id, node(*index));
                with = live.into_values().collect();
            }
            Step::Delete(handle) => {
                let mut live = model.live.clone();
                live.remove(&model.handles[*handle]);
                with = live.into_values().collect();
            }
            Step::Checkpoint => {}
        }
        states.push(key_set(with.iter()));
    }
    states
}

/// A node compared by identity and contents (the interrupted store's handle is unknown).
type MemoryNodeKey = (Vec<u8>, String, usize);

fn key_set<'a>(nodes: impl Iterator<Item = &'a MemoryNode>) -> BTreeMap<MemoryNodeKey, ()> {
    nodes
        .map(|node| {
            (
                (
                    node.id.0.to_vec(),
                    node.content.clone(),
                    node.embedding.len(),
                ),
                (),
            )
        })
        .collect()
}

/// Reopens `dir` on real files and checks the oracle's rules.
fn check_recovered(dir: &Path, model: &Model, interrupted: Option<&Step>, case: &str) {
    let engine = StorageEngine::open(dir).unwrap_or_else(|error| panic!("{case}: reopen: {error}"));
    let mut seen = BTreeMap::new();
    for item in engine.scan_memories() {
        let (id, node) = item.unwrap_or_else(|error| panic!("{case}: scan: {error}"));
        assert!(
            seen.insert(id, node).is_none(),
            "{case}: scan yields {id:?} twice"
        );
    }
    for (id, node) in &model.live {
        let affected = match interrupted {
            Some(Step::Update(handle, _)) | Some(Step::Delete(handle)) => {
                model.handles[*handle] == *id
            }
            _ => false,
        };
        if !affected {
            assert!(
                seen.get(id) == Some(node),
                "{case}: acknowledged {id:?} lost or changed"
            );
        }
    }
    for id in &model.deleted {
        assert!(!seen.contains_key(id), "{case}: deleted {id:?} came back");
        assert!(
            matches!(engine.load_memory(*id), Err(Error::NotFound)),
            "{case}: deleted {id:?} loads"
        );
    }
    let found = key_set(seen.values());
    assert!(
        acceptable(model, interrupted).contains(&found),
        "{case}: state is neither before nor after the interrupted step {interrupted:?}"
    );
    let report = engine
        .check_integrity()
        .unwrap_or_else(|error| panic!("{case}: integrity: {error}"));
    assert!(
        report.is_clean(),
        "{case}: integrity problems {:?}",
        report.problems
    );
    let fresh = engine
        .store_memory(&node(200))
        .unwrap_or_else(|error| panic!("{case}: write after recovery: {error}"));
    assert!(
        engine.load_memory(fresh).expect("load new") == node(200),
        "{case}: new node"
    );
    engine.close().expect("close");
}

fn case_dir(case: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("mentedb-failpoints-{}-{case}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    dir
}

/// Each point returns an error at its n-th hit: the engine's error path runs, the engine
/// is dropped (as a process would exit), and a reopen must satisfy the oracle.
#[test]
fn an_error_at_any_failpoint_keeps_every_acknowledged_write() {
    let scenario = fail::FailScenario::setup();
    for point in NAMES {
        for hit in HITS {
            let case = format!("error-{point}-{hit}");
            let dir = case_dir(&case);
            let mut model = Model::default();
            let mut interrupted = None;
            fail::cfg(point, &format!("{}*off->return", hit - 1)).expect("configure");
            match StorageEngine::open(&dir) {
                Err(_) => {}
                Ok(engine) => {
                    for step in workload() {
                        match run_step(&engine, &model, &step) {
                            Ok(ids) => model.apply(&step, &ids),
                            Err(_) => {
                                interrupted = Some(step);
                                break;
                            }
                        }
                    }
                    drop(engine);
                }
            }
            fail::remove(point);
            check_recovered(&dir, &model, interrupted.as_ref(), &case);
            fs::remove_dir_all(&dir).expect("clean up");
        }
    }
    scenario.teardown();
}

/// Each point kills the process at its n-th hit (a child process of this test binary
/// aborts there); the parent reopens the directory and checks the oracle, using the log of
/// acknowledged steps the child fsynced as it went.
#[test]
fn a_process_death_at_any_failpoint_keeps_every_acknowledged_write() {
    // Holds the failpoint registry so the error test (another thread) cannot configure a
    // point while this test's checks run in this process.
    let scenario = fail::FailScenario::setup();
    let exe = std::env::current_exe().expect("test binary");
    let mut deaths = 0;
    for point in NAMES {
        for hit in HITS {
            let case = format!("abort-{point}-{hit}");
            let dir = case_dir(&case);
            fs::create_dir_all(&dir).expect("dir");
            let status = Command::new(&exe)
                .args([
                    "--exact",
                    "child_process_runs_the_workload",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(CHILD_POINT, point)
                .env(CHILD_ACTION, format!("{}*off->panic", hit - 1))
                .env(CHILD_DIR, &dir)
                .output()
                .expect("spawn child");
            let log = fs::read_to_string(dir.join("acknowledged.log")).unwrap_or_default();
            let mut model = Model::default();
            let steps = workload();
            let mut done = 0;
            for line in log.lines() {
                let ids: Vec<RecordId> = line
                    .split_whitespace()
                    .map(|raw| RecordId::from_u128(raw.parse().expect("id")))
                    .collect();
                model.apply(&steps[done], &ids);
                done += 1;
            }
            let died = !status.status.success();
            deaths += usize::from(died);
            let interrupted = if died { steps.get(done) } else { None };
            check_recovered(&dir.join("db"), &model, interrupted, &case);
            fs::remove_dir_all(&dir).expect("clean up");
        }
    }
    assert!(
        deaths >= NAMES.len(),
        "only {deaths} children died at their failpoint"
    );
    scenario.teardown();
}

/// The child half of the test above: does nothing unless started by it.
#[test]
fn child_process_runs_the_workload() {
    let (Ok(point), Ok(action), Ok(dir)) = (
        std::env::var(CHILD_POINT),
        std::env::var(CHILD_ACTION),
        std::env::var(CHILD_DIR),
    ) else {
        return;
    };
    std::panic::set_hook(Box::new(|_| std::process::abort()));
    let dir = PathBuf::from(dir);
    let mut log = fs::File::create(dir.join("acknowledged.log")).expect("log");
    let scenario = fail::FailScenario::setup();
    fail::cfg(&point, &action).expect("configure");
    let engine = StorageEngine::open(&dir.join("db")).expect("open");
    let mut model = Model::default();
    for step in workload() {
        let ids = run_step(&engine, &model, &step).expect("step");
        let line: Vec<String> = ids.iter().map(|id| id.to_u128().to_string()).collect();
        writeln!(log, "{}", line.join(" ")).expect("log");
        log.sync_data().expect("sync log");
        model.apply(&step, &ids);
    }
    engine.close().expect("close");
    scenario.teardown();
}
