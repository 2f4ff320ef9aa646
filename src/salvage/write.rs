//! The new database a salvage writes, and its map of old handles to new ones.
//!
//! Records go in with [`StorageEngine::store_memory_batch`], in batches of at most
//! [`BATCH_RECORDS_MAX`] records and about [`BATCH_BYTES_MAX`] bytes (each one commit).
//! The new database hands out new handles; the map file `salvage-map.txt` in it lists,
//! one line per saved record, the old handle and the new one in their text form
//! (`RecordId`'s `Display`), separated by one space, sorted by old handle:
//!
//! ```text
//! 3f2a9c01-00000003-0000-000000000001 7b11d0e4-00000003-0000-000000000001
//! ```
//!
//! The map is written last, after the database is checkpointed and closed, and synced with
//! its directory: a directory without it is a salvage that did not finish.

use crate::StorageEngine;
use crate::engine::Options;
use crate::error::{Error, Result};
use crate::memory::MemoryNode;
use crate::record_id::RecordId;
use crate::vfs::{OpenMode, Vfs};
use std::path::{Path, PathBuf};

/// Name of the map file in the new database's directory.
pub const MAP_FILE_NAME: &str = "salvage-map.txt";
/// Most records one batch (one commit) of the new database holds.
pub const BATCH_RECORDS_MAX: usize = 1000;
/// Record bytes after which a batch is committed.
pub const BATCH_BYTES_MAX: usize = 32 << 20;

const _: () = assert!(BATCH_RECORDS_MAX <= crate::engine::BATCH_NODES_MAX);
const _: () = assert!((BATCH_BYTES_MAX as u64) < crate::engine::TXN_RECORD_BYTES_MAX);

/// Writes saved records into the new database.
#[derive(Debug)]
pub(super) struct Writer {
    engine: StorageEngine,
    nodes: Vec<MemoryNode>,
    old: Vec<RecordId>,
    bytes: usize,
    map: Vec<(RecordId, RecordId)>,
}

impl Writer {
    /// Creates the new database in `dest` (which the caller checked is new or empty).
    pub fn create(dest: &Path, options: &Options) -> Result<Writer> {
        let mut options = options.clone();
        options.access = crate::vfs::Access::ReadWrite;
        let engine = StorageEngine::open_with(dest, options)?;
        Ok(Writer {
            engine,
            nodes: Vec::new(),
            old: Vec::new(),
            bytes: 0,
            map: Vec::new(),
        })
    }

    /// Adds a record saved under handle `old`; `record_len` is its size in bytes.
    pub fn add(&mut self, old: RecordId, node: MemoryNode, record_len: usize) -> Result<()> {
        if !self.nodes.is_empty() && self.bytes + record_len > BATCH_BYTES_MAX {
            self.flush()?;
        }
        self.nodes.push(node);
        self.old.push(old);
        self.bytes += record_len;
        if self.nodes.len() >= BATCH_RECORDS_MAX || self.bytes >= BATCH_BYTES_MAX {
            self.flush()?;
        }
        Ok(())
    }

    /// Records written or waiting to be.
    pub fn saved(&self) -> u64 {
        (self.map.len() + self.nodes.len()) as u64
    }

    fn flush(&mut self) -> Result<()> {
        if self.nodes.is_empty() {
            return Ok(());
        }
        let new = self.engine.store_memory_batch(&self.nodes)?;
        assert_eq!(new.len(), self.old.len(), "one handle per stored node");
        self.map.extend(self.old.drain(..).zip(new));
        self.nodes.clear();
        self.bytes = 0;
        Ok(())
    }

    /// Commits what is left, checkpoints and closes the new database, and writes the map
    /// file; returns its path.
    pub fn finish(mut self, vfs: &dyn Vfs, dest: &Path) -> Result<PathBuf> {
        self.flush()?;
        self.engine.checkpoint()?;
        self.engine.close()?;
        self.map.sort_unstable();
        let mut text = String::with_capacity(self.map.len() * 72);
        for (old, new) in &self.map {
            text.push_str(&format!("{old} {new}\n"));
        }
        let path = dest.join(MAP_FILE_NAME);
        let io = |operation| {
            let name = path.display().to_string();
            move |source| Error::io(operation, name, source)
        };
        let file = vfs
            .open_file(&path, OpenMode::CreateOrOpen)
            .map_err(io("create"))?;
        file.set_len(0).map_err(io("truncate"))?;
        file.write_all_at(text.as_bytes(), 0).map_err(io("write"))?;
        file.sync_data().map_err(io("fdatasync"))?;
        drop(file);
        vfs.sync_dir(dest).map_err(io("sync directory"))?;
        Ok(path)
    }
}
