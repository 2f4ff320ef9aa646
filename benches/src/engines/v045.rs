//! The published mentedb-storage 0.45.0 (the engine this project grew from), with its own
//! node type from mentedb-core 0.45: `store_memory` (one WAL fsync each),
//! `store_memory_batch`, `load_memory`, `scan_all_memories` + loads, `checkpoint`,
//! `delete_memory` (one WAL fsync each; it has no batch delete).

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store, Target};
use crate::workload::Item;
use mentedb_core045::MemoryNode as OldNode;
use mentedb_core045::config::StorageConfig;
use mentedb_core045::memory::MemoryType as OldType;
use mentedb045::{PageId, StorageEngine};
use std::path::Path;

pub struct V045;

impl Engine for V045 {
    fn name(&self) -> &'static str {
        "mentedb-storage 0.45"
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        let config = StorageConfig {
            cache_bytes: CACHE_BYTES as u64,
            ..StorageConfig::default()
        };
        Ok(Box::new(V045Store(StorageEngine::open_with_config(
            dir, &config,
        )?)))
    }

    fn notes(&self) -> &'static str {
        "0.45: a full scan is `scan_all_memories()` (locators) plus a load of each."
    }

    fn batch_delete(&self) -> bool {
        false
    }

    fn reclaim_notes(&self) -> &'static str {
        "0.45: `checkpoint()`"
    }
}

fn old_node(item: &Item) -> OldNode {
    let node = &item.node;
    let mut old = OldNode::new(
        Default::default(),
        OldType::Episodic,
        node.content.clone(),
        node.embedding.clone(),
    );
    old.created_at = node.created_at.0;
    old.accessed_at = node.accessed_at.0;
    old.salience = node.salience;
    old.confidence = node.confidence;
    old.tags = node.tags.clone();
    old
}

struct V045Store(StorageEngine);

impl Store for V045Store {
    fn put(&self, _index: u64, item: &Item) -> BenchResult<Handle> {
        Ok(u128::from(self.0.store_memory(&old_node(item))?.0))
    }

    fn put_batch(&self, _first_index: u64, items: &[Item]) -> BenchResult<Vec<Handle>> {
        let nodes: Vec<OldNode> = items.iter().map(old_node).collect();
        Ok(self
            .0
            .store_memory_batch(&nodes)?
            .into_iter()
            .map(|id| u128::from(id.0))
            .collect())
    }

    fn get(&self, handle: Handle, _key: &[u8; 16]) -> BenchResult<String> {
        Ok(self.0.load_memory(PageId(u64::try_from(handle)?))?.content)
    }

    fn scan(&self) -> BenchResult<u64> {
        let mut count = 0;
        for (_, page) in self.0.scan_all_memories() {
            self.0.load_memory(page)?;
            count += 1;
        }
        Ok(count)
    }

    fn checkpoint(&self) -> BenchResult<()> {
        Ok(self.0.checkpoint()?)
    }

    fn delete(&self, target: Target) -> BenchResult<()> {
        Ok(self
            .0
            .delete_memory(PageId(u64::try_from(target.handle)?))?)
    }

    fn delete_batch(&self, targets: &[Target]) -> BenchResult<()> {
        targets.iter().try_for_each(|target| self.delete(*target))
    }

    fn reclaim(&mut self) -> BenchResult<()> {
        Ok(self.0.checkpoint()?)
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.0.close()?;
        Ok(())
    }
}
