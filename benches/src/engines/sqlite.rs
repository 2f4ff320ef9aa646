//! SQLite (bundled) in WAL mode with `synchronous=FULL`: one row per node (`rowid` as the
//! handle, the 16-byte id, the encoded node), a 64 MiB page cache, one connection behind a
//! mutex (SQLite serializes writers anyway).

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store};
use crate::workload::Item;
use mentedb_storage::memory::{decode_record, encoded_record};
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::Mutex;

pub struct Sqlite;

impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite (WAL, FULL)"
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let connection = Connection::open(dir.join("memories.sqlite"))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "cache_size", -((CACHE_BYTES / 1024) as i64))?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS memories (
                 rowid INTEGER PRIMARY KEY, id BLOB NOT NULL, node BLOB NOT NULL)",
        )?;
        Ok(Box::new(SqliteStore(Mutex::new(connection))))
    }
}

struct SqliteStore(Mutex<Connection>);

impl SqliteStore {
    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Store for SqliteStore {
    fn put(&self, _index: u64, item: &Item) -> BenchResult<Handle> {
        let bytes = encoded_record(&item.node)?;
        let connection = self.connection();
        connection
            .prepare_cached("INSERT INTO memories (id, node) VALUES (?1, ?2)")?
            .execute(params![&item.key[..], bytes])?;
        rowid_handle(connection.last_insert_rowid())
    }

    fn put_batch(&self, _first_index: u64, items: &[Item]) -> BenchResult<Vec<Handle>> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        let mut handles = Vec::with_capacity(items.len());
        {
            let mut insert =
                transaction.prepare_cached("INSERT INTO memories (id, node) VALUES (?1, ?2)")?;
            for item in items {
                insert.execute(params![&item.key[..], encoded_record(&item.node)?])?;
                handles.push(rowid_handle(transaction.last_insert_rowid())?);
            }
        }
        transaction.commit()?;
        Ok(handles)
    }

    fn get(&self, handle: Handle, _key: &[u8; 16]) -> BenchResult<String> {
        let connection = self.connection();
        let bytes: Vec<u8> = connection
            .prepare_cached("SELECT node FROM memories WHERE rowid = ?1")?
            .query_row(params![handle_rowid(handle)?], |row| row.get(0))?;
        Ok(decode_record(&bytes).map_err(|error| error.0)?.content)
    }

    fn scan(&self) -> BenchResult<u64> {
        let connection = self.connection();
        let mut statement = connection.prepare_cached("SELECT node FROM memories")?;
        let mut rows = statement.query([])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let bytes = row.get_ref(0)?.as_blob()?;
            decode_record(bytes).map_err(|error| error.0)?;
            count += 1;
        }
        Ok(count)
    }

    fn checkpoint(&self) -> BenchResult<()> {
        self.connection()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        let connection = self
            .0
            .into_inner()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        connection.close().map_err(|(_, error)| error)?;
        Ok(())
    }
}

/// A rowid as a handle (rowids of this table are positive).
fn rowid_handle(rowid: i64) -> BenchResult<Handle> {
    Ok(u128::from(u64::try_from(rowid)?))
}

/// A handle back as the rowid it was made from.
fn handle_rowid(handle: Handle) -> BenchResult<i64> {
    Ok(i64::try_from(handle)?)
}
