//! `check`: after the power cut, reopens the database (recovery) and holds it against the
//! state file and this iteration's ack logs.
//!
//! - Every acknowledged store, batch and update is present and byte-equal, unless a later
//!   acknowledged operation of the same thread changed it; acknowledged deletes stay
//!   `NotFound`.
//! - An operation that began but was not acknowledged (in flight at the cut) may or may not
//!   have taken effect: an updated record is wholly old or wholly new, a deleted one old or
//!   gone, a batch's nodes all there or none.
//! - A full scan shows each expected record once and nothing else; `check_integrity` is
//!   clean and counts the same number of live records.
//!
//! On success the state file is rewritten with each in-flight operation resolved the way
//! recovery showed, and the ack logs are removed: the next iteration starts from it.

use crate::content::Content;
use crate::log::{Handle, Logged, Op, State, ThreadLog, ack_log_paths, parse_thread_log};
use crate::writer::FAIL_IO;
use mentedb_storage::{Error, MemoryNode, RecordId, StorageEngine};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

/// Violations printed in full; the rest are counted (all are written to the file).
const VIOLATIONS_SHOWN_MAX: usize = 40;
const VIOLATIONS_FILE_NAME: &str = "violations.txt";
/// Scan errors after which the scan is given up.
const SCAN_ERRORS_MAX: usize = 100;

/// Acknowledged operations, by kind.
#[derive(Debug, Default)]
struct Counts {
    stores: u64,
    batches: u64,
    batch_nodes: u64,
    updates: u64,
    deletes: u64,
    checkpoints: u64,
}

impl Counts {
    fn total(&self) -> u64 {
        self.stores + self.batches + self.updates + self.deletes + self.checkpoints
    }
}

/// An operation in flight at the power cut.
#[derive(Debug)]
enum Pending {
    Update {
        handle: Handle,
        old: Content,
        new: Content,
    },
    Delete {
        handle: Handle,
        old: Content,
    },
    Store {
        contents: Vec<Content>,
    },
    Checkpoint,
}

/// What the database must hold, and which operation last set each record (for reports).
#[derive(Debug, Default)]
struct Expected {
    live: BTreeMap<Handle, Content>,
    deleted: BTreeSet<Handle>,
    origin: BTreeMap<Handle, String>,
}

impl Expected {
    fn from_state(state: &State) -> Expected {
        Expected {
            live: state.live.clone(),
            deleted: state.deleted.clone(),
            origin: BTreeMap::new(),
        }
    }

    fn origin(&self, handle: Handle) -> &str {
        self.origin
            .get(&handle)
            .map_or("an earlier iteration", String::as_str)
    }

    fn insert_new(
        &mut self,
        handle: Handle,
        content: Content,
        origin: String,
    ) -> Result<(), String> {
        if self.live.contains_key(&handle) || self.deleted.contains(&handle) {
            return Err(format!(
                "{origin} was given handle {} ({handle}), which an earlier record had",
                RecordId::from_u128(handle)
            ));
        }
        self.live.insert(handle, content);
        self.origin.insert(handle, origin);
        Ok(())
    }
}

/// `filesystem_died`: the power was cut by killing LazyFS under the writers, so writes that
/// failed with I/O errors are expected (and count as in flight).
pub fn run(db: &Path, logs: &Path, filesystem_died: bool) -> i32 {
    let mut violations = Vec::new();
    match check(db, logs, filesystem_died, &mut violations) {
        Ok(summary) if violations.is_empty() => {
            println!("{summary}");
            0
        }
        Ok(summary) => {
            println!("check FAILED: {} violation(s); {summary}", violations.len());
            let all = logs.join(VIOLATIONS_FILE_NAME);
            match std::fs::write(&all, violations.join("\n") + "\n") {
                Ok(()) => println!("  (all of them in {})", all.display()),
                Err(error) => println!("  (could not write {}: {error})", all.display()),
            }
            for violation in violations.iter().take(VIOLATIONS_SHOWN_MAX) {
                println!("  violation: {violation}");
            }
            if violations.len() > VIOLATIONS_SHOWN_MAX {
                println!("  ... and {} more", violations.len() - VIOLATIONS_SHOWN_MAX);
            }
            1
        }
        Err(error) => {
            println!("check FAILED: {error}");
            for violation in &violations {
                println!("  violation: {violation}");
            }
            2
        }
    }
}

/// Runs every check; violations go to `violations`, `Err` is a check that could not run.
fn check(
    db: &Path,
    logs: &Path,
    filesystem_died: bool,
    violations: &mut Vec<String>,
) -> Result<String, String> {
    let mut state = State::load(logs)?;
    let mut thread_logs = Vec::new();
    for path in ack_log_paths(logs).map_err(|error| format!("list {}: {error}", logs.display()))? {
        let text = std::fs::read_to_string(&path)
            .map_err(|error| format!("read {}: {error}", path.display()))?;
        let name = path
            .file_stem()
            .map_or_else(String::new, |stem| stem.to_string_lossy().into());
        thread_logs.push(parse_thread_log(&name, &text)?);
    }
    let mut expected = Expected::from_state(&state);
    let (counts, pending) = replay(&thread_logs, filesystem_died, &mut expected, violations)?;

    let started = Instant::now();
    let engine = StorageEngine::open(db).map_err(|error| format!("reopen (recovery): {error}"))?;
    let recovery_ms = started.elapsed().as_secs_f64() * 1e3;

    let ambiguous: BTreeSet<Handle> = pending
        .iter()
        .filter_map(|pending| match pending {
            Pending::Update { handle, .. } | Pending::Delete { handle, .. } => Some(*handle),
            Pending::Store { .. } | Pending::Checkpoint => None,
        })
        .collect();
    check_loads(&engine, &expected, &ambiguous, violations);
    let mut took_effect = resolve_updates(&engine, &pending, &mut expected, violations);
    took_effect += check_scan(&engine, &pending, &mut expected, violations);
    let integrity = engine
        .check_integrity()
        .map_err(|error| format!("check_integrity: {error}"))?;
    for problem in &integrity.problems {
        violations.push(format!(
            "integrity: {} at offset {}: {}",
            problem.file, problem.offset, problem.detail
        ));
    }
    if integrity.live_records != expected.live.len() as u64 {
        violations.push(format!(
            "check_integrity counts {} live records, {} expected",
            integrity.live_records,
            expected.live.len()
        ));
    }
    drop(engine);

    let in_flight = pending.len();
    let summary = format!(
        "check {}: iteration {}: acked {} ops (store {}, batch {} of {} nodes, update {}, \
         delete {}, checkpoint {}); in flight {in_flight} (took effect {took_effect}); \
         live {}, deleted {}; pages {} (overflow {}); recovery {recovery_ms:.1} ms \
         | acked={} inflight={in_flight} live={}",
        if violations.is_empty() { "ok" } else { "done" },
        state.iteration + 1,
        counts.total(),
        counts.stores,
        counts.batches,
        counts.batch_nodes,
        counts.updates,
        counts.deletes,
        counts.checkpoints,
        expected.live.len(),
        expected.deleted.len(),
        integrity.pages,
        integrity.overflow_pages,
        counts.total(),
        expected.live.len(),
    );
    if violations.is_empty() {
        state.iteration += 1;
        state.live = expected.live;
        state.deleted = expected.deleted;
        state
            .save(logs)
            .map_err(|error| format!("save state: {error}"))?;
        for path in ack_log_paths(logs).map_err(|error| error.to_string())? {
            std::fs::remove_file(&path)
                .map_err(|error| format!("remove {}: {error}", path.display()))?;
        }
    }
    Ok(summary)
}

/// Applies the acknowledged operations of each thread, in order, to `expected`; returns the
/// counts and the operations in flight (at most one per thread: its last).
fn replay(
    thread_logs: &[ThreadLog],
    filesystem_died: bool,
    expected: &mut Expected,
    violations: &mut Vec<String>,
) -> Result<(Counts, Vec<Pending>), String> {
    let mut counts = Counts::default();
    let mut pending = Vec::new();
    for log in thread_logs {
        for failure in &log.failures {
            let io_error = failure.split_whitespace().nth(4) == Some(FAIL_IO);
            if !(filesystem_died && io_error) {
                violations.push(format!("the writer reported: {failure}"));
            }
        }
        for logged in &log.ops {
            let origin = format!("{} #{} {}", log.name, logged.seq, op_name(&logged.op));
            match &logged.acked {
                Some(handles) => {
                    apply_acked(logged, handles, &origin, expected, &mut counts, violations)?;
                }
                None => pending.push(pending_of(logged, expected, &origin)?),
            }
        }
    }
    Ok((counts, pending))
}

fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Store(_) => "store",
        Op::Batch(_) => "batch",
        Op::Update(..) => "update",
        Op::Delete(_) => "delete",
        Op::Checkpoint => "checkpoint",
    }
}

fn apply_acked(
    logged: &Logged,
    handles: &[Handle],
    origin: &str,
    expected: &mut Expected,
    counts: &mut Counts,
    violations: &mut Vec<String>,
) -> Result<(), String> {
    let owned = |expected: &Expected, handle: Handle| {
        expected.live.get(&handle).copied().ok_or_else(|| {
            format!("{origin}: the log names record {handle}, which its thread does not own")
        })
    };
    match &logged.op {
        Op::Store(content) => {
            counts.stores += 1;
            let [handle] = handles else {
                return Err(format!("{origin}: {} handles acknowledged", handles.len()));
            };
            if let Err(violation) = expected.insert_new(*handle, *content, origin.to_string()) {
                violations.push(violation);
            }
        }
        Op::Batch(contents) => {
            counts.batches += 1;
            counts.batch_nodes += contents.len() as u64;
            if handles.len() != contents.len() {
                return Err(format!(
                    "{origin}: {} handles for {} nodes",
                    handles.len(),
                    contents.len()
                ));
            }
            for (handle, content) in handles.iter().zip(contents) {
                if let Err(violation) = expected.insert_new(*handle, *content, origin.to_string()) {
                    violations.push(violation);
                }
            }
        }
        Op::Update(handle, content) => {
            counts.updates += 1;
            owned(expected, *handle)?;
            expected.live.insert(*handle, *content);
            expected.origin.insert(*handle, origin.to_string());
        }
        Op::Delete(handle) => {
            counts.deletes += 1;
            owned(expected, *handle)?;
            expected.live.remove(handle);
            expected.deleted.insert(*handle);
            expected.origin.insert(*handle, origin.to_string());
        }
        Op::Checkpoint => counts.checkpoints += 1,
    }
    Ok(())
}

fn pending_of(logged: &Logged, expected: &Expected, origin: &str) -> Result<Pending, String> {
    let old = |handle: &Handle| {
        expected.live.get(handle).copied().ok_or_else(|| {
            format!("{origin} (in flight) names record {handle}, which its thread does not own")
        })
    };
    Ok(match &logged.op {
        Op::Store(content) => Pending::Store {
            contents: vec![*content],
        },
        Op::Batch(contents) => Pending::Store {
            contents: contents.clone(),
        },
        Op::Update(handle, new) => Pending::Update {
            handle: *handle,
            old: old(handle)?,
            new: *new,
        },
        Op::Delete(handle) => Pending::Delete {
            handle: *handle,
            old: old(handle)?,
        },
        Op::Checkpoint => Pending::Checkpoint,
    })
}

/// What a loaded node is, for a report.
fn describe(node: &MemoryNode) -> String {
    match Content::of_node(node) {
        Some(content) if *node == content.node() => format!("node {content}"),
        Some(content) => format!("a damaged node {content}"),
        None => "a node this driver never wrote".to_string(),
    }
}

/// Every record not touched by an in-flight operation loads as expected; deleted ones are
/// `NotFound`.
fn check_loads(
    engine: &StorageEngine,
    expected: &Expected,
    ambiguous: &BTreeSet<Handle>,
    violations: &mut Vec<String>,
) {
    for (&handle, content) in &expected.live {
        if ambiguous.contains(&handle) {
            continue;
        }
        let id = RecordId::from_u128(handle);
        let origin = expected.origin(handle);
        match engine.load_memory(id) {
            Ok(node) if node == content.node() => {}
            Ok(node) => violations.push(format!(
                "record {id} ({origin}) should be node {content}, loads as {}",
                describe(&node)
            )),
            Err(error) => violations.push(format!(
                "record {id} ({origin}) should be node {content}, load fails: {error}"
            )),
        }
    }
    for &handle in &expected.deleted {
        if ambiguous.contains(&handle) {
            continue;
        }
        let id = RecordId::from_u128(handle);
        match engine.load_memory(id) {
            Err(Error::NotFound) => {}
            Ok(node) => violations.push(format!(
                "deleted record {id} ({}) loads as {}",
                expected.origin(handle),
                describe(&node)
            )),
            Err(error) => violations.push(format!("deleted record {id}: load fails: {error}")),
        }
    }
}

/// Resolves in-flight updates and deletes; returns how many took effect.
fn resolve_updates(
    engine: &StorageEngine,
    pending: &[Pending],
    expected: &mut Expected,
    violations: &mut Vec<String>,
) -> u64 {
    let mut took_effect = 0;
    for operation in pending {
        let (handle, old, new) = match operation {
            Pending::Update { handle, old, new } => (*handle, *old, Some(*new)),
            Pending::Delete { handle, old } => (*handle, *old, None),
            Pending::Store { .. } | Pending::Checkpoint => continue,
        };
        let id = RecordId::from_u128(handle);
        match (engine.load_memory(id), new) {
            (Ok(node), _) if node == old.node() => {}
            (Ok(node), Some(new)) if node == new.node() => {
                took_effect += 1;
                expected.live.insert(handle, new);
            }
            (Err(Error::NotFound), None) => {
                took_effect += 1;
                expected.live.remove(&handle);
                expected.deleted.insert(handle);
            }
            (Ok(node), _) => violations.push(format!(
                "record {id} under an in-flight {operation:?} loads as {}",
                describe(&node)
            )),
            (Err(error), _) => violations.push(format!(
                "record {id} under an in-flight {operation:?}: load fails: {error}"
            )),
        }
    }
    took_effect
}

/// A full scan shows each expected record once, equal, and otherwise only nodes of
/// in-flight stores, each store wholly or not at all; returns the stores that took effect.
fn check_scan(
    engine: &StorageEngine,
    pending: &[Pending],
    expected: &mut Expected,
    violations: &mut Vec<String>,
) -> u64 {
    let in_flight: BTreeSet<Content> = pending
        .iter()
        .flat_map(|operation| match operation {
            Pending::Store { contents } => contents.clone(),
            _ => Vec::new(),
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut found: BTreeMap<Content, Handle> = BTreeMap::new();
    let mut scan_errors = 0;
    for item in engine.scan_memories() {
        let (id, node) = match item {
            Ok(item) => item,
            Err(error) => {
                // The scan goes on with the next page after an error.
                violations.push(format!("scan error after {} records: {error}", seen.len()));
                scan_errors += 1;
                if scan_errors == SCAN_ERRORS_MAX {
                    break;
                }
                continue;
            }
        };
        let handle = id.to_u128();
        if !seen.insert(handle) {
            violations.push(format!("the scan shows record {id} twice"));
            continue;
        }
        if let Some(content) = expected.live.get(&handle) {
            if node != content.node() {
                violations.push(format!(
                    "the scan shows record {id} as {}, node {content} expected",
                    describe(&node)
                ));
            }
            continue;
        }
        match Content::of_node(&node) {
            Some(content)
                if in_flight.contains(&content)
                    && node == content.node()
                    && !expected.deleted.contains(&handle)
                    && found.insert(content, handle).is_none() => {}
            _ => violations.push(format!(
                "the scan shows an unknown record {id}: {}",
                describe(&node)
            )),
        }
    }
    let unseen = expected.live.keys().filter(|handle| !seen.contains(handle));
    if scan_errors == SCAN_ERRORS_MAX {
        violations.push(format!(
            "the scan was given up after {SCAN_ERRORS_MAX} errors; {} expected records \
             were not reached",
            unseen.count()
        ));
        return 0;
    }
    for &handle in unseen {
        violations.push(format!(
            "record {} ({}) is missing from the scan",
            RecordId::from_u128(handle),
            expected.origin(handle)
        ));
    }
    let mut took_effect = 0;
    for operation in pending {
        let Pending::Store { contents } = operation else {
            continue;
        };
        let present = contents
            .iter()
            .filter(|content| found.contains_key(content))
            .count();
        if present == contents.len() {
            took_effect += 1;
            for content in contents {
                let handle = found[content];
                expected.live.insert(handle, *content);
                expected
                    .origin
                    .insert(handle, "an in-flight store".to_string());
            }
        } else if present != 0 {
            violations.push(format!(
                "an in-flight batch of {} nodes is partly there: {present} found",
                contents.len()
            ));
        }
    }
    took_effect
}
