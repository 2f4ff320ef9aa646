//! SQLite (bundled) in WAL mode with `synchronous=FULL`: one row per node (`rowid` as the
//! handle, the 16-byte id, the encoded node), a 64 MiB page cache, one connection behind a
//! mutex (SQLite serializes writers anyway). Deletes by rowid, a transaction per batch.
//! Two ways to give deleted space back: the default (free pages stay in the file for
//! reuse; only the WAL is truncated) and `auto_vacuum=INCREMENTAL` (set before the table is
//! created) with `PRAGMA incremental_vacuum` after deletes.

use super::{BenchResult, CACHE_BYTES, Engine, Handle, Store, Target};
use crate::workload::Item;
use mentedb_storage::memory::{decode_record, encoded_record};
use rusqlite::{Connection, params};
use std::path::Path;
use std::sync::Mutex;

const FILE_NAME: &str = "memories.sqlite";

/// What SQLite does with the pages deleted rows leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vacuum {
    /// The default: they go on the free list inside the file.
    None,
    /// `auto_vacuum=INCREMENTAL`; `PRAGMA incremental_vacuum` cuts them off the file.
    Incremental,
}

pub struct Sqlite {
    vacuum: Vacuum,
}

impl Sqlite {
    pub const DEFAULT: Sqlite = Sqlite {
        vacuum: Vacuum::None,
    };
    pub const INCREMENTAL: Sqlite = Sqlite {
        vacuum: Vacuum::Incremental,
    };
}

impl Engine for Sqlite {
    fn name(&self) -> &'static str {
        match self.vacuum {
            Vacuum::None => "SQLite (WAL, FULL)",
            Vacuum::Incremental => "SQLite (WAL, FULL, incremental vacuum)",
        }
    }

    fn open(&self, dir: &Path) -> BenchResult<Box<dyn Store>> {
        std::fs::create_dir_all(dir)?;
        let connection = Connection::open(dir.join(FILE_NAME))?;
        if self.vacuum == Vacuum::Incremental {
            // Only takes effect before the first table exists; checked below.
            connection.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
        }
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "cache_size", -((CACHE_BYTES / 1024) as i64))?;
        connection.execute_batch(
            "CREATE TABLE IF NOT EXISTS memories (
                 rowid INTEGER PRIMARY KEY, id BLOB NOT NULL, node BLOB NOT NULL)",
        )?;
        let auto_vacuum: i64 =
            connection.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
        let wanted = match self.vacuum {
            Vacuum::None => 0,
            Vacuum::Incremental => 2,
        };
        if auto_vacuum != wanted {
            return Err(format!("SQLite auto_vacuum is {auto_vacuum}, wanted {wanted}").into());
        }
        Ok(Box::new(SqliteStore {
            connection: Mutex::new(connection),
            vacuum: self.vacuum,
        }))
    }

    fn main_file(&self) -> Option<&'static str> {
        Some(FILE_NAME)
    }

    fn reclaim_notes(&self) -> &'static str {
        match self.vacuum {
            Vacuum::None => "SQLite: `wal_checkpoint(TRUNCATE)` (free pages stay in the file)",
            Vacuum::Incremental => {
                "SQLite incremental: `PRAGMA incremental_vacuum`, then `wal_checkpoint(TRUNCATE)`"
            }
        }
    }
}

struct SqliteStore {
    connection: Mutex<Connection>,
    vacuum: Vacuum,
}

impl SqliteStore {
    fn connection(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Deletes one row by rowid inside whatever transaction `connection` is in.
fn delete_row(connection: &Connection, handle: Handle) -> BenchResult<()> {
    let deleted = connection
        .prepare_cached("DELETE FROM memories WHERE rowid = ?1")?
        .execute(params![handle_rowid(handle)?])?;
    if deleted != 1 {
        return Err(format!("rowid {handle}: {deleted} rows deleted, expected 1").into());
    }
    Ok(())
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

    fn delete(&self, target: Target) -> BenchResult<()> {
        delete_row(&self.connection(), target.handle)
    }

    fn delete_batch(&self, targets: &[Target]) -> BenchResult<()> {
        let mut connection = self.connection();
        let transaction = connection.transaction()?;
        for target in targets {
            delete_row(&transaction, target.handle)?;
        }
        transaction.commit()?;
        Ok(())
    }

    fn reclaim(&mut self) -> BenchResult<()> {
        let connection = self.connection();
        if self.vacuum == Vacuum::Incremental {
            // Each step of this pragma frees one page (`execute_batch` steps once), so run
            // it to the end, then check the free list is empty.
            let mut statement = connection.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = statement.query([])?;
            while rows.next()?.is_some() {}
            let free: i64 =
                connection.pragma_query_value(None, "freelist_count", |row| row.get(0))?;
            if free != 0 {
                return Err(
                    format!("SQLite: {free} free pages left after incremental_vacuum").into(),
                );
            }
        }
        connection.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")?;
        Ok(())
    }

    fn close(self: Box<Self>) -> BenchResult<()> {
        let connection = self
            .connection
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
