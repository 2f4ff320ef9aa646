//! redb: one table from the 16-byte id to the encoded node; each put is a write
//! transaction committed with redb's default (immediate, durable) durability; a 64 MiB cache.
//! Deletes remove keys in one write transaction per batch; `compact()` gives space back.

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store, Target};
use crate::workload::Item;
use mentedb_storage::memory::{decode_record, encoded_record};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memories");
const FILE_NAME: &str = "memories.redb";
/// Calls of `compact()` at most in one reclaim (each returns whether it did anything).
const COMPACT_CALLS_MAX: usize = 16;

pub struct Redb;

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let database = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join(FILE_NAME))?;
        let transaction = database.begin_write()?;
        transaction.open_table(TABLE)?;
        transaction.commit()?;
        Ok(Box::new(RedbStore(database)))
    }

    fn notes(&self) -> &'static str {
        "redb: E after `compact()` is not measured (it needs exclusive access); its file is as written."
    }

    fn main_file(&self) -> Option<&'static str> {
        Some(FILE_NAME)
    }

    fn reclaim_notes(&self) -> &'static str {
        "redb: `compact()` until it reports nothing left to do"
    }
}

/// Removes one key inside a write transaction's table; fails if it was not there.
fn remove_key(
    table: &mut redb::Table<'_, &'static [u8], &'static [u8]>,
    key: &[u8; 16],
) -> BenchResult<()> {
    if table.remove(&key[..])?.is_none() {
        return Err(format!("redb: key {key:?} was not there to delete").into());
    }
    Ok(())
}

struct RedbStore(Database);

impl Store for RedbStore {
    fn put(&self, index: u64, item: &Item) -> BenchResult<Handle> {
        let bytes = encoded_record(&item.node)?;
        let transaction = self.0.begin_write()?;
        transaction
            .open_table(TABLE)?
            .insert(&item.key[..], &bytes[..])?;
        transaction.commit()?;
        Ok(u128::from(index))
    }

    fn put_batch(&self, first_index: u64, items: &[Item]) -> BenchResult<Vec<Handle>> {
        let transaction = self.0.begin_write()?;
        {
            let mut table = transaction.open_table(TABLE)?;
            for item in items {
                table.insert(&item.key[..], &encoded_record(&item.node)?[..])?;
            }
        }
        transaction.commit()?;
        Ok((first_index..first_index + items.len() as u64)
            .map(u128::from)
            .collect())
    }

    fn get(&self, _handle: Handle, key: &[u8; 16]) -> BenchResult<String> {
        let transaction = self.0.begin_read()?;
        let table = transaction.open_table(TABLE)?;
        let value = table.get(&key[..])?.ok_or("missing key")?;
        Ok(decode_record(value.value())
            .map_err(|error| error.0)?
            .content)
    }

    fn scan(&self) -> BenchResult<u64> {
        let transaction = self.0.begin_read()?;
        let table = transaction.open_table(TABLE)?;
        let mut count = 0;
        for entry in table.iter()? {
            let (_, value) = entry?;
            decode_record(value.value()).map_err(|error| error.0)?;
            count += 1;
        }
        Ok(count)
    }

    fn checkpoint(&self) -> BenchResult<()> {
        Ok(())
    }

    fn delete(&self, target: Target) -> BenchResult<()> {
        self.delete_batch(&[target])
    }

    fn delete_batch(&self, targets: &[Target]) -> BenchResult<()> {
        let transaction = self.0.begin_write()?;
        {
            let mut table = transaction.open_table(TABLE)?;
            for target in targets {
                remove_key(&mut table, &target.key)?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn reclaim(&mut self) -> BenchResult<()> {
        for _ in 0..COMPACT_CALLS_MAX {
            if !self.0.compact()? {
                break;
            }
        }
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        drop(self);
        Ok(())
    }
}
