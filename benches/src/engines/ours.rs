//! This project's engine: `store_memory` (Full sync mode: durable on return, group commit
//! across threads), `store_memory_batch`, `load_memory`, `scan_memories`, `checkpoint`,
//! `delete_memory`, `delete_memory_batch`, and for the churn modes `compact`.

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store, Target};
use crate::workload::Item;
use mentedb_storage::pager::PAGE_FILE_NAME;
use mentedb_storage::{Options, PAGE_SIZE, RecordId, StorageEngine, SyncMode};
use std::path::Path;

/// How the churn modes give deleted space back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reclaim {
    /// `checkpoint()`: trailing free pages leave the file.
    Checkpoint,
    /// `checkpoint()`, `compact()`, `checkpoint()`: live records move down first.
    Compact,
}

/// The name of our engine in every table (with checkpoints as its reclaim).
pub const NAME: &str = "mentedb-storage (this)";

pub struct Ours {
    reclaim: Reclaim,
    sync_mode: SyncMode,
}

impl Ours {
    pub const CHECKPOINT: Ours = Ours {
        reclaim: Reclaim::Checkpoint,
        sync_mode: SyncMode::Full,
    };
    pub const COMPACT: Ours = Ours {
        reclaim: Reclaim::Compact,
        sync_mode: SyncMode::Full,
    };
    /// `SyncMode::Sealed`: a second `fdatasync` per commit group (README, "WAL damage").
    pub const SEALED: Ours = Ours {
        reclaim: Reclaim::Checkpoint,
        sync_mode: SyncMode::Sealed,
    };
}

impl Engine for Ours {
    fn name(&self) -> &'static str {
        match (self.reclaim, self.sync_mode) {
            (_, SyncMode::Sealed) => "mentedb-storage (this, sealed)",
            (Reclaim::Checkpoint, _) => NAME,
            (Reclaim::Compact, _) => "mentedb-storage (this) + compact",
        }
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        let options = Options::default()
            .buffer_pool_pages(CACHE_BYTES / PAGE_SIZE)
            .sync_mode(self.sync_mode);
        Ok(Box::new(OursStore {
            engine: StorageEngine::open_with(dir, options)?,
            reclaim: self.reclaim,
        }))
    }

    fn main_file(&self) -> Option<&'static str> {
        Some(PAGE_FILE_NAME)
    }

    fn reclaim_notes(&self) -> &'static str {
        match self.reclaim {
            Reclaim::Checkpoint => "ours: `delete_memory_batch`, then `checkpoint()`",
            Reclaim::Compact => {
                "ours + compact: `delete_memory_batch`, then `checkpoint()`, `compact()`, `checkpoint()`"
            }
        }
    }
}

struct OursStore {
    engine: StorageEngine,
    reclaim: Reclaim,
}

impl Store for OursStore {
    fn put(&self, _index: u64, item: &Item) -> BenchResult<Handle> {
        Ok(self.engine.store_memory(&item.node)?.to_u128())
    }

    fn put_batch(&self, _first_index: u64, items: &[Item]) -> BenchResult<Vec<Handle>> {
        let nodes: Vec<_> = items.iter().map(|item| item.node.clone()).collect();
        Ok(self
            .engine
            .store_memory_batch(&nodes)?
            .into_iter()
            .map(RecordId::to_u128)
            .collect())
    }

    fn get(&self, handle: Handle, _key: &[u8; 16]) -> BenchResult<String> {
        Ok(self
            .engine
            .load_memory(RecordId::from_u128(handle))?
            .content)
    }

    fn scan(&self) -> BenchResult<u64> {
        let mut count = 0;
        for item in self.engine.scan_memories() {
            item?;
            count += 1;
        }
        Ok(count)
    }

    fn checkpoint(&self) -> BenchResult<()> {
        Ok(self.engine.checkpoint()?)
    }

    fn delete(&self, target: Target) -> BenchResult<()> {
        Ok(self
            .engine
            .delete_memory(RecordId::from_u128(target.handle))?)
    }

    fn delete_batch(&self, targets: &[Target]) -> BenchResult<()> {
        let ids: Vec<RecordId> = targets
            .iter()
            .map(|target| RecordId::from_u128(target.handle))
            .collect();
        Ok(self.engine.delete_memory_batch(&ids)?)
    }

    fn reclaim(&mut self) -> BenchResult<()> {
        self.engine.checkpoint()?;
        if self.reclaim == Reclaim::Compact {
            self.engine.compact()?;
            self.engine.checkpoint()?;
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        Ok(self.engine.close()?)
    }
}
