//! `writer`: one process, 1–2 threads, each running a seeded random mix of writes on the
//! records it owns, logging each write before it starts and after it is acknowledged, until
//! the harness kills the process.
//!
//! A thread owns the records it stored and, of the records the state file lists, those
//! whose owner slot ([`owner_slot`]) is its own; it never touches another thread's records,
//! so each record's history is one thread's log, in order.

use crate::content::{Content, Rng, mix};
use crate::log::{AckLog, Handle, Op, State};
use mentedb_storage::{Error, Options, RecordId, StorageEngine};
use std::path::Path;

pub const WRITERS_MAX: u32 = 3;
pub const THREADS_MAX: u32 = 2;
const OWNER_SLOTS: u64 = (WRITERS_MAX * THREADS_MAX) as u64;
/// Past this many records a thread deletes more often than it stores.
const OWNED_TARGET: usize = 60;
const BATCH_NODES_MIN: u64 = 2;
const BATCH_NODES_MAX: u64 = 20;
/// Automatic-checkpoint thresholds a writer picks from: small, so they run often.
const CHECKPOINT_WAL_BYTES_CHOICES: [u64; 3] = [256 << 10, 512 << 10, 1 << 20];

/// How a `fail` line starts: an I/O error, a poisoned engine or an unknown outcome (expected once the filesystem
/// died under the writer), any other engine error, or a result that differs from the log.
pub const FAIL_IO: &str = "io:";
const FAIL_ENGINE: &str = "engine:";
const MISMATCH: &str = "mismatch:";

fn failure(what: &str, error: &Error) -> String {
    let kind = match error {
        // A failed `fdatasync` leaves a write's outcome unknown: also an I/O failure (it
        // came after `37ba54c`, and a crash cut that killed LazyFS under a commit was
        // reported as an engine error: the first re-run on format 2 stopped on it).
        Error::Io { .. } | Error::Poisoned(..) | Error::OutcomeUnknown(..) => FAIL_IO,
        _ => FAIL_ENGINE,
    };
    format!("{kind} {what}: {error}")
}

/// The owner slot of a record that came from an earlier iteration.
pub fn owner_slot(handle: Handle) -> u64 {
    mix(handle as u64 ^ (handle >> 64) as u64) % OWNER_SLOTS
}

fn thread_slot(writer: u32, thread: u32) -> u64 {
    u64::from(writer * THREADS_MAX + thread)
}

pub fn run(db: &Path, logs: &Path, writer: u32, threads: u32, seed: u64) -> Result<(), String> {
    if writer >= WRITERS_MAX || !(1..=THREADS_MAX).contains(&threads) {
        return Err(format!(
            "writer id must be below {WRITERS_MAX} and threads 1..={THREADS_MAX}"
        ));
    }
    let state = State::load(logs)?;
    let mut rng = Rng::new(mix(seed));
    let checkpoint_wal_bytes =
        CHECKPOINT_WAL_BYTES_CHOICES[rng.below(CHECKPOINT_WAL_BYTES_CHOICES.len() as u64) as usize];
    let mut workers = Vec::new();
    for thread in 0..threads {
        let owned: Vec<(Handle, Content)> = state
            .live
            .iter()
            .filter(|(handle, _)| owner_slot(**handle) == thread_slot(writer, thread))
            .map(|(handle, content)| (*handle, *content))
            .collect();
        let thread_seed = mix(seed ^ mix(u64::from(thread) + 1));
        let mut log = AckLog::create(logs, writer, thread).map_err(|error| error.to_string())?;
        log.start(&format!(
            "seed={thread_seed:x} checkpoint_wal_bytes={checkpoint_wal_bytes} owned={}",
            owned.len()
        ))
        .map_err(|error| error.to_string())?;
        workers.push((log, Rng::new(thread_seed), owned));
    }
    let options = Options::default().checkpoint_wal_bytes(checkpoint_wal_bytes);
    let engine = StorageEngine::open_with(db, options).map_err(|error| format!("open: {error}"))?;
    std::thread::scope(|scope| {
        for (log, rng, owned) in workers {
            let engine = &engine;
            scope.spawn(move || {
                let mut worker = Worker {
                    engine,
                    log,
                    rng,
                    owned,
                    deleted: Vec::new(),
                    seq: 0,
                };
                let error = worker.run();
                eprintln!("powerloss writer {writer}: {error}");
                std::process::exit(3);
            });
        }
    });
    Err("writer threads returned".to_string())
}

struct Worker<'a> {
    engine: &'a StorageEngine,
    log: AckLog,
    rng: Rng,
    owned: Vec<(Handle, Content)>,
    deleted: Vec<Handle>,
    seq: u64,
}

#[derive(Clone, Copy)]
enum Kind {
    Store,
    Batch,
    Update,
    Delete,
    Load,
    Checkpoint,
}

impl Worker<'_> {
    /// Runs operations until one fails (returned, after a `fail` line); normally the
    /// process is killed first.
    fn run(&mut self) -> String {
        loop {
            self.seq += 1;
            if let Err(detail) = self.step() {
                let _ = self.log.fail(self.seq, &detail);
                return format!("operation {}: {detail}", self.seq);
            }
        }
    }

    fn pick(&mut self) -> Kind {
        let owned = self.owned.len();
        let some = |weight: u64| if owned > 0 { weight } else { 0 };
        // Over the target, fewer stores than deletes: a batch adds 11 nodes on average.
        let (store, batch, delete) = if owned > OWNED_TARGET {
            (10, 1, 45)
        } else {
            (25, 6, 12)
        };
        let weights = [
            (Kind::Store, store),
            (Kind::Batch, batch),
            (Kind::Update, some(25)),
            (Kind::Delete, some(delete)),
            (Kind::Load, some(20)),
            (Kind::Checkpoint, 2),
        ];
        let total: u64 = weights.iter().map(|(_, weight)| weight).sum();
        let mut ticket = self.rng.below(total);
        for (kind, weight) in weights {
            if ticket < weight {
                return kind;
            }
            ticket -= weight;
        }
        unreachable!("the ticket is below the total weight")
    }

    fn step(&mut self) -> Result<(), String> {
        match self.pick() {
            Kind::Store => self.store(),
            Kind::Batch => self.batch(),
            Kind::Update => self.update(),
            Kind::Delete => self.delete(),
            Kind::Load => self.load(),
            Kind::Checkpoint => {
                self.begin(&Op::Checkpoint)?;
                self.engine
                    .checkpoint()
                    .map_err(|error| failure("checkpoint", &error))?;
                self.ok(&[])
            }
        }
    }

    fn begin(&mut self, op: &Op) -> Result<(), String> {
        self.log
            .begin(self.seq, op)
            .map_err(|error| format!("ack log: {error}"))
    }

    fn ok(&mut self, handles: &[Handle]) -> Result<(), String> {
        self.log
            .ok(self.seq, handles)
            .map_err(|error| format!("ack log: {error}"))
    }

    fn store(&mut self) -> Result<(), String> {
        let content = Content::random(&mut self.rng);
        let node = content.node();
        self.begin(&Op::Store(content))?;
        let id = self
            .engine
            .store_memory(&node)
            .map_err(|error| failure(&format!("store {content}"), &error))?;
        self.ok(&[id.to_u128()])?;
        self.owned.push((id.to_u128(), content));
        Ok(())
    }

    fn batch(&mut self) -> Result<(), String> {
        let count = self.rng.range(BATCH_NODES_MIN, BATCH_NODES_MAX + 1);
        let contents: Vec<Content> = (0..count).map(|_| Content::random(&mut self.rng)).collect();
        let nodes: Vec<_> = contents.iter().map(|content| content.node()).collect();
        self.begin(&Op::Batch(contents.clone()))?;
        let ids = self
            .engine
            .store_memory_batch(&nodes)
            .map_err(|error| failure(&format!("batch of {count}"), &error))?;
        if ids.len() != contents.len() {
            return Err(format!(
                "{MISMATCH} a batch of {count} returned {} handles",
                ids.len()
            ));
        }
        let handles: Vec<Handle> = ids.iter().map(|id| id.to_u128()).collect();
        self.ok(&handles)?;
        self.owned.extend(handles.into_iter().zip(contents));
        Ok(())
    }

    fn update(&mut self) -> Result<(), String> {
        let index = self.rng.below(self.owned.len() as u64) as usize;
        let (handle, old) = self.owned[index];
        let new = old.resized(&mut self.rng);
        let node = new.node();
        self.begin(&Op::Update(handle, new))?;
        self.engine
            .update_memory(RecordId::from_u128(handle), &node)
            .map_err(|error| failure(&format!("update {handle} {old} -> {new}"), &error))?;
        self.ok(&[])?;
        self.owned[index].1 = new;
        Ok(())
    }

    fn delete(&mut self) -> Result<(), String> {
        let index = self.rng.below(self.owned.len() as u64) as usize;
        let (handle, content) = self.owned.swap_remove(index);
        self.begin(&Op::Delete(handle))?;
        self.engine
            .delete_memory(RecordId::from_u128(handle))
            .map_err(|error| failure(&format!("delete {handle} ({content})"), &error))?;
        self.ok(&[])?;
        self.deleted.push(handle);
        Ok(())
    }

    /// Loads one of its own records (or, now and then, one it deleted) and compares.
    fn load(&mut self) -> Result<(), String> {
        if !self.deleted.is_empty() && self.rng.below(8) == 0 {
            let handle = self.deleted[self.rng.below(self.deleted.len() as u64) as usize];
            return match self.engine.load_memory(RecordId::from_u128(handle)) {
                Err(Error::NotFound) => Ok(()),
                Ok(node) => Err(format!(
                    "{MISMATCH} deleted record {handle} loads as {:?}",
                    Content::of_node(&node)
                )),
                Err(error) => Err(failure(&format!("load of deleted record {handle}"), &error)),
            };
        }
        let (handle, content) = self.owned[self.rng.below(self.owned.len() as u64) as usize];
        match self.engine.load_memory(RecordId::from_u128(handle)) {
            Ok(node) if node == content.node() => Ok(()),
            Ok(node) => Err(format!(
                "{MISMATCH} record {handle} should be {content}, loads as {:?}",
                Content::of_node(&node)
            )),
            Err(error) => Err(failure(&format!("load {handle} ({content})"), &error)),
        }
    }
}
