//! Write transactions run to the end: under the writer locks, appended to the WAL as one
//! commit, published to the other processes, then made durable as the sync mode says.

use super::*;

/// A commit appended to the WAL, not yet made durable.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Commit {
    /// Its LSN.
    pub(super) lsn: Lsn,
    /// It must be durable before it returns whatever the sync mode (it reserved serials:
    /// see `pager`'s module docs).
    pub(super) must_sync: bool,
}

/// Counts a thread as committing while it lives (see [`Inner::wait_for_committers`]).
pub(super) struct Committing<'a>(&'a AtomicUsize);

impl<'a> Committing<'a> {
    pub(super) fn enter(counter: &'a AtomicUsize) -> Committing<'a> {
        counter.fetch_add(1, Ordering::AcqRel);
        Committing(counter)
    }
}

impl Drop for Committing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Writes of the shared counter a commit tries before its outcome counts as unknown.
const PUBLISH_ATTEMPTS: usize = 3;

impl Inner {
    /// Runs `operation` as one write transaction under the writer locks, commits it, and
    /// makes it durable as the sync mode says.
    ///
    /// # Errors and what they mean
    /// An error before the commit is appended means nothing was written. Once it is
    /// appended the write is committed: a failed `fdatasync` gives
    /// [`Error::OutcomeUnknown`] (the commit may not survive a power loss), and an
    /// automatic checkpoint that fails afterwards is not this write's error (a failed sync
    /// in it poisons the instance, so the next write reports it).
    pub(super) fn write<T>(&self, operation: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let (value, commit) = self.commit_only(operation)?;
        self.make_durable(commit)?;
        self.checkpoint_after_commit();
        Ok(value)
    }

    /// Runs `operation` as one write transaction under the writer locks and commits it;
    /// returns its value and the commit, not yet durable.
    pub(super) fn commit_only<T>(
        &self,
        operation: impl FnOnce(&mut Txn<'_>) -> Result<T>,
    ) -> Result<(T, Commit)> {
        self.check_writable()?;
        let _committing = Committing::enter(&self.committers);
        let mut writer = self.lock_writer();
        let _lock = WalLock::take(self, locks::Purpose::Write)?;
        self.check_writer_marks()?;
        self.refresh()?;
        self.commit_locked(&mut writer, operation)
    }

    /// [`Inner::commit_only`] for a caller that holds the writer locks and has caught up.
    pub(super) fn commit_locked<T>(
        &self,
        writer: &mut WriterState,
        operation: impl FnOnce(&mut Txn<'_>) -> Result<T>,
    ) -> Result<(T, Commit)> {
        self.ensure_wal_ready()?;
        let (alloc, lineage) = {
            let view = self.read_view();
            (view.alloc, view.meta.lineage.clone())
        };
        let mut txn = Txn::new(self, alloc, lineage, &mut writer.space);
        let outcome = operation(&mut txn).and_then(|value| {
            let must_sync = txn.needs_sync;
            txn.commit().map(|lsn| (value, Commit { lsn, must_sync }))
        });
        if outcome.is_err() {
            // The index may hold entries of changes that never committed.
            writer.space.reset();
        }
        outcome
    }

    /// Starts a new life of the WAL if it has none usable (never initialised, or holding
    /// only frames a checkpoint already covers). Caller holds the writer locks.
    pub(super) fn ensure_wal_ready(&self) -> Result<()> {
        let mut view = self.write_view();
        if view.wal_ready {
            return Ok(());
        }
        // The meta page this reset relies on may sit only in the page cache: a checkpoint
        // that died between writing it and syncing it leaves it there. Resetting the WAL
        // before it is durable would, after a power loss, pair the old meta page with a
        // WAL that starts after it (found by the simulator, seed 18 of `--faults crash`).
        self.pages
            .sync()
            .map_err(|error| self.poison(error.to_string()))?;
        let salt = next_salt(view.cursor.salt, &view.meta);
        let base_lsn = view.meta.checkpoint_lsn;
        let header = self.wal_sync_marked(|wal| wal.reset(salt, base_lsn))?;
        *view = View::checkpointed(view.meta.clone(), Some(header));
        Ok(())
    }

    /// Makes a just-appended commit visible here and announces it to other processes.
    pub(super) fn publish_commit(
        &self,
        frames: &[FrameInfo],
        cursor: WalCursor,
        alloc: AllocState,
        pages: Vec<(PageId, Page)>,
    ) -> Result<()> {
        let mut view = self.write_view();
        self.apply_committed(
            &mut view,
            frames,
            cursor,
            Some(alloc),
            CacheUpdate::Invalidate,
        )?;
        for (id, page) in pages {
            self.pool.install(id, Arc::new(page), true);
        }
        drop(view);
        // Other processes' readers learn of the commit only from this counter: one left
        // unpublished let them answer `NotFound` for a record acknowledged here (found by
        // `--seeds 0..1000 --ops 500 --faults io`, seed 355: a failed `pwrite` of the
        // counter, and the commit still acknowledged). A failed write is tried again;
        // if it keeps failing, the commit is not acknowledged: it is appended and may be
        // made durable by another process's sync, so its outcome is unknown, and this
        // instance refuses writes until a reopen publishes the log's end again.
        self.shm_seen.store(cursor.last_lsn.0, Ordering::Release);
        let mut failure = None;
        for _ in 0..PUBLISH_ATTEMPTS {
            match self.shm.write(cursor.last_lsn.0) {
                Ok(()) => return Ok(()),
                Err(error) => failure = Some(error),
            }
        }
        let reason = format!(
            "publishing commit {} in {SHM_FILE_NAME} failed ({}); reopen to publish it",
            cursor.last_lsn.0,
            failure.map_or_else(String::new, |error| error.to_string())
        );
        self.poison(reason.clone());
        crate::rare_paths::hit(crate::rare_paths::RarePath::CommitOutcomeUnknown);
        Err(Error::OutcomeUnknown(reason))
    }
}

/// The salt of the next life of the WAL: derived (deterministically, so simulations
/// replay) from the previous one and the checkpoint, and never equal to the previous.
pub(super) fn next_salt(previous: u32, meta: &Meta) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&previous.to_le_bytes());
    hasher.update(&meta.generation.to_le_bytes());
    hasher.update(&meta.checkpoint_lsn.0.to_le_bytes());
    let salt = hasher.finalize();
    if salt == previous {
        salt.wrapping_add(1)
    } else {
        salt
    }
}
