//! redb: one table from the 16-byte id to the encoded node; each put is a write
//! transaction committed with redb's default (immediate, durable) durability; a 64 MiB cache.

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store};
use crate::workload::Item;
use mentedb_storage::memory::{decode_record, encoded_record};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("memories");

pub struct Redb;

impl Engine for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let database = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(dir.join("memories.redb"))?;
        let transaction = database.begin_write()?;
        transaction.open_table(TABLE)?;
        transaction.commit()?;
        Ok(Box::new(RedbStore(database)))
    }

    fn notes(&self) -> &'static str {
        "redb: E after `compact()` is not measured (it needs exclusive access); its file is as written."
    }
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

    fn close(self: Box<Self>) -> BenchResult<()> {
        drop(self);
        Ok(())
    }
}
