//! This project's engine: `store_memory` (Full sync mode: durable on return, group commit
//! across threads), `store_memory_batch`, `load_memory`, `scan_memories`, `checkpoint`.

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store};
use crate::workload::Item;
use mentedb_storage::{Options, PAGE_SIZE, RecordId, StorageEngine};
use std::path::Path;

pub struct Ours;

impl Engine for Ours {
    fn name(&self) -> &'static str {
        "mentedb-storage (this)"
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        let options = Options::default().buffer_pool_pages(CACHE_BYTES / PAGE_SIZE);
        Ok(Box::new(OursStore(StorageEngine::open_with(dir, options)?)))
    }
}

struct OursStore(StorageEngine);

impl Store for OursStore {
    fn put(&self, _index: u64, item: &Item) -> BenchResult<Handle> {
        Ok(self.0.store_memory(&item.node)?.to_u128())
    }

    fn put_batch(&self, _first_index: u64, items: &[Item]) -> BenchResult<Vec<Handle>> {
        let nodes: Vec<_> = items.iter().map(|item| item.node.clone()).collect();
        Ok(self
            .0
            .store_memory_batch(&nodes)?
            .into_iter()
            .map(RecordId::to_u128)
            .collect())
    }

    fn get(&self, handle: Handle, _key: &[u8; 16]) -> BenchResult<String> {
        Ok(self.0.load_memory(RecordId::from_u128(handle))?.content)
    }

    fn scan(&self) -> BenchResult<u64> {
        let mut count = 0;
        for item in self.0.scan_memories() {
            item?;
            count += 1;
        }
        Ok(count)
    }

    fn checkpoint(&self) -> BenchResult<()> {
        Ok(self.0.checkpoint()?)
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        Ok(self.0.close()?)
    }
}
