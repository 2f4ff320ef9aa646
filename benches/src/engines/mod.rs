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
}

/// Cache budget for every engine.
pub const CACHE_BYTES: usize = 64 << 20;

/// Every engine, ours first.
pub fn all() -> Vec<Box<dyn Engine>> {
    vec![
        Box::new(ours::Ours),
        Box::new(sqlite::Sqlite),
        Box::new(redb_engine::Redb),
        Box::new(fjall_engine::Fjall),
        Box::new(v045::V045),
    ]
}

/// The engine called `name`.
pub fn by_name(name: &str) -> Option<Box<dyn Engine>> {
    all().into_iter().find(|engine| engine.name() == name)
}
