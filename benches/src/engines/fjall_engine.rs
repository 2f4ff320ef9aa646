//! fjall (LSM tree): one keyspace from the 16-byte id to the encoded node; each put (or
//! batch) is followed by `persist(SyncData)`, so it is durable on return; a 64 MiB cache.
//! Deletes write tombstones (a batch per batch; an LSM delete does not look the key up
//! first, so it cannot tell a missing key); `major_compact()` then `persist(SyncAll)`
//! is what it offers to give their space back.

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store, Target};
use crate::workload::Item;
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use mentedb_storage::memory::{decode_record, encoded_record};
use std::path::Path;

pub struct Fjall;

impl Engine for Fjall {
    fn name(&self) -> &'static str {
        "fjall"
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        let database = Database::builder(dir)
            .cache_size(CACHE_BYTES as u64)
            .open()?;
        let keyspace = database.keyspace("memories", KeyspaceCreateOptions::default)?;
        Ok(Box::new(FjallStore { database, keyspace }))
    }

    fn notes(&self) -> &'static str {
        "fjall: the checkpoint equivalent is `persist(SyncAll)`; compaction runs in the background."
    }

    fn reclaim_notes(&self) -> &'static str {
        "fjall: `rotate_memtable_and_wait()`, `major_compact()`, then `persist(SyncAll)` (no single main file: its length is the directory's)"
    }
}

struct FjallStore {
    database: Database,
    keyspace: Keyspace,
}

impl Store for FjallStore {
    fn put(&self, index: u64, item: &Item) -> BenchResult<Handle> {
        self.keyspace
            .insert(&item.key[..], encoded_record(&item.node)?)?;
        self.database.persist(PersistMode::SyncData)?;
        Ok(u128::from(index))
    }

    fn put_batch(&self, first_index: u64, items: &[Item]) -> BenchResult<Vec<Handle>> {
        let mut batch = self.database.batch();
        for item in items {
            batch.insert(&self.keyspace, &item.key[..], encoded_record(&item.node)?);
        }
        batch.commit()?;
        self.database.persist(PersistMode::SyncData)?;
        Ok((first_index..first_index + items.len() as u64)
            .map(u128::from)
            .collect())
    }

    fn get(&self, _handle: Handle, key: &[u8; 16]) -> BenchResult<String> {
        let value = self.keyspace.get(key)?.ok_or("missing key")?;
        Ok(decode_record(&value).map_err(|error| error.0)?.content)
    }

    fn scan(&self) -> BenchResult<u64> {
        let mut count = 0;
        for guard in self.keyspace.iter() {
            let value = guard.value()?;
            decode_record(&value).map_err(|error| error.0)?;
            count += 1;
        }
        Ok(count)
    }

    fn checkpoint(&self) -> BenchResult<()> {
        Ok(self.database.persist(PersistMode::SyncAll)?)
    }

    fn delete(&self, target: Target) -> BenchResult<()> {
        self.keyspace.remove(&target.key[..])?;
        self.database.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn delete_batch(&self, targets: &[Target]) -> BenchResult<()> {
        let mut batch = self.database.batch();
        for target in targets {
            batch.remove(&self.keyspace, &target.key[..]);
        }
        batch.commit()?;
        self.database.persist(PersistMode::SyncData)?;
        Ok(())
    }

    fn reclaim(&mut self) -> BenchResult<()> {
        // Tombstones and the values they cover may still be in the memtable and journal,
        // which a major compaction does not touch: flush first.
        self.keyspace.rotate_memtable_and_wait()?;
        self.keyspace.major_compact()?;
        Ok(self.database.persist(PersistMode::SyncAll)?)
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        self.database.persist(PersistMode::SyncAll)?;
        drop(self);
        Ok(())
    }
}
