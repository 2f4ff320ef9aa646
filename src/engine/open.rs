//! Opening a database: recovery (read-write) or a view of it that changes nothing on disk
//! (read-only).
//!
//! # Read-write
//! Under the writer locks: repair after another process's failed sync, write the first meta
//! page of a new database, sync the directory once, catch up with the whole WAL (that is
//! the recovery: nothing is rewritten), refuse a WAL that lost synced commits, start the
//! WAL's next life if it holds nothing new, skip the serials a crash may have handed out,
//! make the recovered frames durable and publish them.
//!
//! # Read-only
//! Opens existing files read-only (a missing `wal.log` or `wal.shm` reads as empty), takes
//! the writer lock only to read one consistent state, and rebuilds the view in memory from
//! the meta page and the WAL. Nothing is created, written or synced, so it works on
//! read-only files and mounts. It shows what is readable of a damaged database: WAL damage
//! ends the log where the damage is, a log that does not fit the meta page is set aside,
//! and a lost tail is noted; each becomes a note ([`super::StorageEngine::open_notes`]).
//! An instance that went past something shows the database as the open found it: later
//! refreshes leave its view as it is (another process's commits are not followed).

use super::{Inner, IntegrityProblem, SHM_FILE_NAME, WalLock};
use crate::error::{Error, Result};
use crate::page::Lsn;
use crate::pager::PAGE_FILE_NAME;
use crate::pager::{AllocState, Meta};
use crate::record_id::DatabaseId;
use crate::vfs::{Access, Vfs};
use std::path::Path;
use std::sync::atomic::Ordering;

/// Creates the directory (read-write) or checks there is a database in it (read-only), and
/// refuses one an interrupted restore left.
pub(super) fn prepare_directory(vfs: &dyn Vfs, path: &Path, access: Access) -> Result<()> {
    let dir_error =
        |operation| move |source| Error::io(operation, path.display().to_string(), source);
    let page_file = vfs
        .exists(&path.join(PAGE_FILE_NAME))
        .map_err(dir_error("stat"))?;
    match access {
        Access::ReadWrite => vfs
            .create_dir_all(path)
            .map_err(dir_error("create directory"))?,
        Access::ReadOnly if !page_file => {
            return Err(Error::InvalidArgument(format!(
                "{} holds no database (no {PAGE_FILE_NAME}): check the path",
                path.display()
            )));
        }
        Access::ReadOnly => {}
    }
    let restoring = vfs
        .exists(&path.join(crate::backup::RESTORING_FILE_NAME))
        .map_err(dir_error("stat"))?;
    if restoring && !page_file {
        return Err(Error::InvalidArgument(format!(
            "{} holds an unfinished restore ({}): remove the directory and restore again",
            path.display(),
            crate::backup::RESTORING_FILE_NAME
        )));
    }
    Ok(())
}

impl Inner {
    /// Opens read-write: recovery (see the module docs).
    pub(super) fn recover(&self, vfs: &dyn Vfs, path: &Path) -> Result<()> {
        let _writer = self.lock_writer();
        let _lock = WalLock::take(self, super::locks::Purpose::Open)?;
        let open_error = |source| Error::io("open", path.display().to_string(), source);
        crate::failpoints::check("open.locked").map_err(open_error)?;
        self.resync_after_failed_sync()?;
        let interrupted_checkpoint = self.shm.writer_marks()?.interrupted_checkpoint;
        // A WAL header is written only after an open has synced the directory, so the
        // names of the files are durable if there is one; otherwise sync them now (a
        // directory fsync was a sixth of a reopen).
        // A seal file never written may be new: its name must be durable before a seal in
        // it is trusted to prove anything.
        let names_durable = self.wal.read_header()?.is_some()
            && (self.options.sync_mode != super::SyncMode::Sealed || !self.seal.is_empty()?);
        if self.pages.load_meta()?.is_none() {
            self.pages.write_meta(&initial_meta(new_database_id(vfs)))?;
        }
        if !names_durable {
            vfs.sync_dir(path).map_err(|source| {
                Error::io("sync directory", path.display().to_string(), source)
            })?;
        }
        self.refresh_at_open()?;
        self.check_no_lost_tail()?;
        self.ensure_wal_ready()?;
        // Serials below the reservation may have been handed out by commits a crash
        // lost (acknowledged in `SyncMode::Normal`): never hand them out again.
        {
            let mut view = self.write_view();
            view.alloc.serial_next = view.alloc.serial_limit;
        }
        if interrupted_checkpoint.is_some() {
            crate::rare_paths::hit(crate::rare_paths::RarePath::InterruptedCheckpointFinished);
            // The open reloaded its view from the meta page (and reset a WAL the
            // checkpoint covers): the interrupted checkpoint is finished, once the WAL's
            // header is durable (the checkpoint may have died syncing its reset).
            self.wal_sync_marked(|wal| wal.sync_adopted_header())?;
            self.shm.clear_checkpoint_mark()?;
        }
        crate::failpoints::check("open.recovered").map_err(open_error)?;
        self.publish_recovered()
    }

    /// Makes the recovered frames durable and tells the other processes where the log ends.
    fn publish_recovered(&self) -> Result<()> {
        let last_lsn = self.read_view().last_lsn();
        let salt = self.read_view().cursor.salt;
        // Frames found in the WAL may sit only in the page cache (a crashed writer never
        // synced them): make them durable before claiming so in new frames, unless
        // `wal.shm` records that some process synced them all (it records only after a
        // sync that covered them, so they are on disk: a crashed writer whose commits were
        // acknowledged needs no second sync).
        // Nothing past the checkpoint (every open after a clean close): the page file
        // holds it all, durably; an `fdatasync` of the empty log was most of a reopen.
        let nothing_logged = last_lsn <= self.read_view().meta.checkpoint_lsn;
        if nothing_logged || self.shm.read_durable(salt)? >= last_lsn {
            self.wal.note_durable(last_lsn);
        } else {
            // Under the sync intent, as every WAL sync: a failure here left the page cache
            // showing frames the disk lacks, marked clean, and the next open trusted them,
            // synced nothing and let new commits claim them durable (`--seeds 0..1000
            // --faults io`, seed 572: "zeros after the last commit; yet the frame at 30120
            // (lsn 239) says lsn 238 was durable").
            self.wal_sync_marked(|wal| wal.sync_through(last_lsn))
                .map_err(|error| self.poison(error.to_string()))?;
        }
        self.shm.write(last_lsn.0)?;
        // Everything recovered is durable now; a record left from before a power loss
        // could claim LSNs that recovery has handed out again.
        self.shm.write_durable(salt, last_lsn)?;
        self.shm_seen.store(last_lsn.0, Ordering::Release);
        Ok(())
    }

    /// Opens read-only (see the module docs).
    pub(super) fn open_read_only(&self) -> Result<()> {
        let _writer = self.lock_writer();
        let _lock = WalLock::take(self, super::locks::Purpose::Open)?;
        if self.pages.load_meta()?.is_none() {
            return Err(Error::InvalidArgument(format!(
                "{}/{PAGE_FILE_NAME} holds no meta page: an empty file, or a database whose \
                 creation never finished; nothing was changed",
                self.dir.display()
            )));
        }
        let published = self.shm.read()?;
        let marks = self.shm.writer_marks()?;
        if marks.sync_failed {
            self.note(SHM_FILE_NAME, 16, "a writer's sync failed since the last repair: what is read may not be durable (the next read-write open repairs it)".to_string());
        }
        let sync_unknown = {
            let _gate = self.shm.take_sync_gate()?;
            let boot = self.shm.boot();
            self.shm
                .sync_intent()?
                .is_some_and(|set_in| set_in == boot || set_in == 0)
        };
        if sync_unknown {
            self.note(SHM_FILE_NAME, 80, "a writer's sync of the log failed, or its process died syncing, since the last repair: what is read may not be durable (the next read-write open repairs it)".to_string());
        }
        if marks.interrupted_checkpoint.is_some() {
            self.note(
                SHM_FILE_NAME,
                48,
                "a checkpoint was interrupted (the next read-write open finishes it)".to_string(),
            );
        }
        self.salvaging.store(true, Ordering::Release);
        let refreshed = self.refresh_at_open();
        self.salvaging.store(false, Ordering::Release);
        refreshed?;
        match self.check_no_lost_tail() {
            Err(Error::Corruption {
                file,
                offset,
                detail,
            }) => self.note(&file, offset, detail),
            other => other?,
        }
        self.shm_seen.store(published, Ordering::Release);
        if !crate::sched::lock(&self.notes).is_empty() {
            self.frozen.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Notes a problem a read-only open met and went past.
    pub(super) fn note(&self, file: &str, offset: u64, detail: String) {
        crate::sched::lock(&self.notes).push(IntegrityProblem {
            file: file.to_string(),
            offset,
            detail,
        });
    }
}

/// Files mentedb-storage 0.45 kept in a database directory.
const V045_FILE_NAMES: [&str; 2] = ["records.db", "records.wal"];

/// Refuses what must not become a database directory (see [`StorageEngine::open_with`]).
pub(super) fn check_directory(vfs: &dyn crate::vfs::Vfs, path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(
            "the database path is empty: give the directory to open or create".to_string(),
        ));
    }
    let shown = path.display();
    let exists = vfs
        .exists(path)
        .map_err(|source| Error::io("stat", shown.to_string(), source))?;
    if !exists {
        return Ok(());
    }
    let Ok(entries) = vfs.list_dir(path) else {
        return Err(Error::InvalidArgument(format!(
            "{shown} is not a directory: a database is a directory of files (give a new or \
             existing directory)"
        )));
    };
    let names: Vec<String> = entries
        .iter()
        .filter_map(|entry| {
            entry
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
        })
        .collect();
    let has = |name: &str| names.iter().any(|entry| entry == name);
    if !has(PAGE_FILE_NAME) && V045_FILE_NAMES.iter().any(|name| has(name)) {
        return Err(Error::InvalidArgument(format!(
            "{shown} holds a mentedb-storage 0.45 database ({}), which this version cannot \
             read; nothing was changed (open a new directory, or export the records with 0.45)",
            V045_FILE_NAMES.join(", ")
        )));
    }
    Ok(())
}

/// Puts the database directory into an error's file name (`wal.log` → `<dir>/wal.log`).
pub(super) fn name_directory(error: Error, dir: &Path) -> Error {
    let join = |file: String| {
        if Path::new(&file).is_absolute() || file.is_empty() {
            file
        } else {
            dir.join(file).display().to_string()
        }
    };
    match error {
        Error::Io {
            operation,
            file,
            source,
        } => Error::Io {
            operation,
            file: join(file),
            source,
        },
        Error::Corruption {
            file,
            offset,
            detail,
        } => Error::Corruption {
            file: join(file),
            offset,
            detail,
        },
        Error::UnsupportedFormat {
            file,
            found,
            supported,
        } => Error::UnsupportedFormat {
            file: join(file),
            found,
            supported,
        },
        other => other,
    }
}

pub(super) fn initial_meta(database_id: DatabaseId) -> Meta {
    Meta {
        generation: 1,
        checkpoint_lsn: Lsn(0),
        alloc: AllocState::empty(database_id),
        lineage: crate::lineage::Lineage::default(),
        map_versions: Vec::new(),
    }
}

/// A fresh database identity (never 0).
pub(crate) fn new_database_id(vfs: &dyn crate::vfs::Vfs) -> DatabaseId {
    let random = vfs.random_u64();
    let id = (random ^ (random >> 32)) as u32;
    DatabaseId(id.max(1))
}
