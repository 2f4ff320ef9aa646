//! The engines under test behind one interface. Each adapter does what an application
//! would: the key-value engines encode the node on the way in and decode it on the way out
//! (with this project's record encoding), the memory stores take the node itself.
//! Every write is durable when the call returns.

pub mod fjall_engine;
pub mod ours;
pub mod redb_engine;
pub mod sqlite;
pub mod v045;

use crate::workload::Item;
use std::path::Path;

/// What every adapter returns on failure.
pub type BenchResult<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Where an engine keeps a record: its own handle (ours, 0.45, SQLite's rowid) or the
/// index into the workload (key-value engines, which look records up by key).
pub type Handle = u128;

/// A record to delete: its handle, and its key for the engines that look records up by key.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub handle: Handle,
    pub key: [u8; 16],
}

/// An open store.
pub trait Store: Send + Sync {
    /// Stores one node durably (one commit).
    fn put(&self, index: u64, item: &Item) -> BenchResult<Handle>;
    /// Stores nodes durably in one commit.
    fn put_batch(&self, first_index: u64, items: &[Item]) -> BenchResult<Vec<Handle>>;
    /// Loads a node's text (after decoding the whole node).
    fn get(&self, handle: Handle, key: &[u8; 16]) -> BenchResult<String>;
    /// Reads and decodes every node; returns how many.
    fn scan(&self) -> BenchResult<u64>;
    /// Moves everything into the main files (checkpoint, or the nearest equivalent).
    fn checkpoint(&self) -> BenchResult<()>;
    /// Deletes one record durably (one commit). Fails if it was not there, where the
    /// engine can tell.
    fn delete(&self, target: Target) -> BenchResult<()>;
    /// Deletes records durably in one commit, or one commit each where the engine has no
    /// batch ([`Engine::batch_delete`]).
    fn delete_batch(&self, targets: &[Target]) -> BenchResult<()>;
    /// Gives the space of deleted records back with what the engine offers for it, then
    /// checkpoints.
    fn reclaim(&mut self) -> BenchResult<()>;
    /// Clean shutdown.
    fn close(self: Box<Self>) -> BenchResult<()>;
}

/// An engine: opens stores.
pub trait Engine: Sync {
    fn name(&self) -> &'static str;
    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>>;
    /// Footnotes for the table.
    fn notes(&self) -> &'static str {
        ""
    }
    /// The engine's main file in its directory; `None` when it has no single one (its
    /// apparent length is then the sum over the directory).
    fn main_file(&self) -> Option<&'static str> {
        None
    }
    /// Whether [`Store::delete_batch`] is one commit (else a commit per record).
    fn batch_delete(&self) -> bool {
        true
    }
    /// What [`Store::reclaim`] does, for the tables.
    fn reclaim_notes(&self) -> &'static str {
        ""
    }
}

/// Cache budget for every engine.
pub const CACHE_BYTES: usize = 64 << 20;

/// Every engine of the default table, ours first.
pub fn all() -> Vec<Box<dyn Engine>> {
    vec![
        Box::new(ours::Ours::CHECKPOINT),
        Box::new(ours::Ours::SEALED),
        Box::new(sqlite::Sqlite::DEFAULT),
        Box::new(redb_engine::Redb),
        Box::new(fjall_engine::Fjall),
        Box::new(v045::V045),
    ]
}

/// The engines of the churn modes, ours first: every engine that can delete and give
/// space back, each way of giving it back that the brief of issue 14 names.
pub fn churn() -> Vec<Box<dyn Engine>> {
    vec![
        Box::new(ours::Ours::CHECKPOINT),
        Box::new(ours::Ours::COMPACT),
        Box::new(sqlite::Sqlite::DEFAULT),
        Box::new(sqlite::Sqlite::INCREMENTAL),
        Box::new(redb_engine::Redb),
        Box::new(fjall_engine::Fjall),
    ]
}

/// The engines of the delete-throughput mode, ours first.
pub fn deletes() -> Vec<Box<dyn Engine>> {
    vec![
        Box::new(ours::Ours::CHECKPOINT),
        Box::new(sqlite::Sqlite::DEFAULT),
        Box::new(redb_engine::Redb),
        Box::new(fjall_engine::Fjall),
        Box::new(v045::V045),
    ]
}

/// The engine called `name`, in any of the lists.
pub fn by_name(name: &str) -> Option<Box<dyn Engine>> {
    all()
        .into_iter()
        .chain(churn())
        .find(|engine| engine.name() == name)
}
