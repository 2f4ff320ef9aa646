//! Durability of commits: the `fdatasync` that makes a commit durable, shared between the
//! threads of a process (the WAL's leader/follower group commit) and between processes
//! (the sync gate and the durable-LSN record in `wal.shm`), and what a failed sync leaves
//! for the next open.

use super::{Commit, Inner, SyncMode, seal};
use crate::error::{Error, Result};
use crate::page::Lsn;
use std::sync::atomic::Ordering;

/// Longest a sync leader waits for this process's other committers to append.
const GROUP_COMMIT_WAIT_MAX: std::time::Duration = std::time::Duration::from_micros(200);

/// Whether a sync leader first lets this process's committers append (not when the caller
/// holds the writer lock: they could not).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CommittersWait {
    Yes,
    No,
}

impl Inner {
    /// Makes a commit durable as the sync mode says (always, if it reserved serials).
    pub(super) fn make_durable(&self, commit: Commit) -> Result<()> {
        let lsn = commit.lsn;
        let sync_now = match self.options.sync_mode {
            SyncMode::Full | SyncMode::Sealed => true,
            SyncMode::Normal if commit.must_sync => true,
            SyncMode::Normal => {
                let commits = self.commits_unsynced.fetch_add(1, Ordering::AcqRel) + 1;
                commits >= self.options.normal_sync_commits
            }
        };
        if sync_now {
            self.commits_unsynced.store(0, Ordering::Release);
            self.sync_shared(lsn, CommittersWait::Yes)
                .map_err(|error| {
                    crate::rare_paths::hit(crate::rare_paths::RarePath::CommitOutcomeUnknown);
                    let reason = error.to_string();
                    self.wal_sync_failed(error);
                    Error::OutcomeUnknown(reason)
                })?;
        }
        Ok(())
    }

    /// Makes `lsn` durable, sharing syncs between threads (the WAL's leader/follower group
    /// commit) and between processes: the leader passes a `flock` gate in `wal.shm`; if a
    /// process that synced meanwhile recorded that it covered the target, no `fdatasync`
    /// is needed; otherwise it syncs everything published so far and records that, so the
    /// processes queued behind it at the gate usually find their commits covered.
    ///
    /// In [`SyncMode::Sealed`] the leader then seals what it knows durable (see `seal`),
    /// unless a seal already covers the target; a commit is acknowledged only once sealed.
    pub(super) fn sync_shared(&self, lsn: Lsn, wait: CommittersWait) -> Result<()> {
        let salt = self.read_view().cursor.salt;
        let sealing = self.options.sync_mode == SyncMode::Sealed;
        self.wal.sync_through_with(lsn, |wal, target| {
            if wait == CommittersWait::Yes {
                self.wait_for_committers();
            }
            let _gate = self.shm.take_sync_gate().map_err(std::io::Error::other)?;
            let recorded = self.shm.read_durable(salt).map_err(std::io::Error::other)?;
            if recorded >= target {
                if sealing {
                    self.seal_through(salt, target, recorded)?;
                }
                return Ok(recorded);
            }
            // Every commit published so far was appended before this sync starts, so the
            // sync covers it (a torn or missing counter covers only the target).
            let published = Lsn(self.shm.read().map_err(std::io::Error::other)?);
            let covered = if published.is_valid() {
                published.max(target)
            } else {
                target
            };
            // Set until the sync succeeded: a failure, or this process dying, leaves it for
            // the next open (see `shm::SharedCounter`).
            self.shm.mark_sync_intent().map_err(std::io::Error::other)?;
            wal.sync_file()?;
            self.shm
                .write_durable(salt, covered)
                .map_err(std::io::Error::other)?;
            if sealing {
                self.seal_through(salt, target, covered)?;
            }
            self.shm
                .clear_sync_intent()
                .map_err(std::io::Error::other)?;
            Ok(covered)
        })
    }

    /// Seals `durable` (known durable, at least `target`) unless `wal.seal` already covers
    /// `target`. Caller holds the sync gate. A failure fails the commit's sync: the commit
    /// is not acknowledged (its frames are durable, the proof of them may not be).
    fn seal_through(&self, salt: u32, target: Lsn, durable: Lsn) -> std::io::Result<()> {
        let sealed = self.seal.sealed(salt).map_err(std::io::Error::other)?;
        if sealed >= target {
            return Ok(());
        }
        self.seal.write(seal::Seal { salt, lsn: durable })
    }

    /// Runs a WAL sync that is not a commit's (a reset's, or one making an adopted header
    /// durable) under the sync gate with the sync intent set, as [`Inner::sync_shared`]
    /// does: a failure, or this process dying in it, then leaves the intent for the next
    /// open to repair. Without it, a reset whose header sync failed and whose process died
    /// before the sync-failure mark left a header the page cache calls clean and the disk
    /// never got; the next commit's sync would not write it, and after a power loss the
    /// log's frames would sit behind no header. Caller holds the WAL lock.
    pub(super) fn wal_sync_marked<T>(
        &self,
        sync: impl FnOnce(&crate::wal::Wal) -> Result<T>,
    ) -> Result<T> {
        let _gate = self.shm.take_sync_gate()?;
        self.shm.mark_sync_intent()?;
        let outcome = sync(&self.wal).map_err(|error| self.wal_sync_failed(error))?;
        self.shm.clear_sync_intent()?;
        Ok(outcome)
    }

    /// Makes the WAL durable up to `last_lsn` (the last commit the view covers) before a
    /// checkpoint writes pages, and returns the LSN now known durable (at least
    /// `last_lsn`). The caller holds the writer locks, so nothing is appended meanwhile. A
    /// sync another process recorded in `wal.shm` for this life of the WAL counts; else
    /// this syncs (shared with this process's committers waiting for a sync).
    pub(super) fn make_durable_for_checkpoint(&self, salt: u32, last_lsn: Lsn) -> Result<Lsn> {
        if self.wal.durable_lsn() < last_lsn {
            let recorded = self.shm.read_durable(salt)?;
            if recorded >= last_lsn {
                self.wal.note_durable(recorded);
            } else {
                self.sync_shared(last_lsn, CommittersWait::No)
                    .map_err(|error| self.wal_sync_failed(error))?;
            }
        }
        let durable = self.wal.durable_lsn();
        assert!(
            durable >= last_lsn,
            "the WAL is durable to {} after syncing it to {}",
            durable.0,
            last_lsn.0
        );
        Ok(durable)
    }

    /// Before a leader syncs, lets the threads of this process that are committing right
    /// now append first (bounded by [`GROUP_COMMIT_WAIT_MAX`]), so one `fdatasync` covers
    /// them too: without it, the first of them to append synced alone while the others were
    /// still building their transactions. A lone writer never waits.
    pub(super) fn wait_for_committers(&self) {
        let deadline = crate::sched::now() + GROUP_COMMIT_WAIT_MAX;
        while self.committers.load(Ordering::Acquire) > 0 && crate::sched::now() < deadline {
            crate::sched::pause();
        }
    }

    /// Notes a failed WAL sync (or reset) for the next open, and passes the error on.
    pub(super) fn wal_sync_failed(&self, error: Error) -> Error {
        let _ = self.shm.mark_sync_failed();
        error
    }

    /// At open, after recovery read the WAL: refuses a database whose WAL lost commits that
    /// were made durable. `wal.shm` records the highest LSN some process synced in this
    /// life of the WAL (it is written only after that `fdatasync` succeeded); a WAL that
    /// now ends before it was cut or damaged after the sync, and acknowledged writes are
    /// gone. Opening used to overwrite that record, destroying the only evidence, and
    /// `verify` then said clean (found by a new user who cut `wal.log`). The error names
    /// both LSNs; the record is left in place for `verify` and `salvage`.
    ///
    /// `wal.seal`'s slots are the same evidence made durable (see `seal`): they survive a
    /// power loss, which `wal.shm`'s record does not.
    pub(super) fn check_no_lost_tail(&self) -> Result<()> {
        let mut evidence: Vec<(&str, u32, Lsn)> = Vec::new();
        if let Some((salt, durable)) = self.shm.durable_record()? {
            evidence.push((super::SHM_FILE_NAME, salt, durable));
        }
        for seal in self.seal.slots()?.into_iter().flatten() {
            evidence.push((super::SEAL_FILE_NAME, seal.salt, seal.lsn));
        }
        for (file, salt, durable) in evidence {
            self.check_durable_record(file, salt, durable)?;
        }
        Ok(())
    }

    /// One record of [`Inner::check_no_lost_tail`]: `file` says every frame up to
    /// `durable` of the WAL life `salt` was made durable.
    fn check_durable_record(&self, file: &str, salt: u32, durable: Lsn) -> Result<()> {
        let view = self.read_view();
        let header = self.wal.read_header()?;
        let same_life = header.is_some_and(|header| header.salt == salt);
        let last = view.last_lsn();
        let lost = if same_life {
            durable > last
        } else {
            // No WAL (or a blank one): everything the record counts must be in the page
            // file already.
            header.is_none() && durable > view.meta.checkpoint_lsn
        };
        if lost {
            crate::rare_paths::hit(crate::rare_paths::RarePath::LostTailRefused);
            return Err(Error::corruption(
                crate::wal::WAL_FILE_NAME,
                view.cursor.end,
                format!(
                    "the log ends at LSN {}, but {} records that LSN {} was made durable: \
                     acknowledged commits after LSN {} were lost (the log was cut or \
                     damaged); run `mentedb-storage verify` and `salvage`",
                    last.0, file, durable.0, last.0
                ),
            ));
        }
        Ok(())
    }

    /// Under the writer lock, before anything is appended: refuses to write (and poisons
    /// this instance) while `wal.shm` holds the mark of a
    /// failed sync: the process that failed may have left a meta page or WAL frames that
    /// only the page cache holds, and writing on top of them (appending to a WAL whose
    /// checkpoint another process wrote but could not sync) gave states no open accepts
    /// (found by the simulator's concurrent groups: a checkpoint's meta sync failed in one
    /// process while two others kept committing). The next open repairs and clears the
    /// mark. Caller holds the writer lock (the failing process sets the mark before it
    /// releases it).
    ///
    /// Then finishes a checkpoint that another process (or this one) started and did not
    /// end: its meta page may be written while the WAL was not reset (see
    /// `view::SharedCounter`). The view is reloaded from the meta page, which resets the
    /// WAL if the checkpoint covers it; appending to the old life instead gave a WAL that
    /// straddles the checkpoint, which no open accepts (found by the simulator's
    /// concurrent groups: a checkpoint killed between its meta page and its WAL reset while
    /// another process committed).
    pub(super) fn check_writer_marks(&self) -> Result<()> {
        let marks = self.shm.writer_marks()?;
        if marks.sync_failed {
            crate::rare_paths::hit(crate::rare_paths::RarePath::WriterStoppedBySyncFailure);
            return Err(self.poison(format!(
                "an fdatasync failed in a process sharing this database (marked in {}); \
                 reopen to repair",
                super::SHM_FILE_NAME
            )));
        }
        if marks.interrupted_checkpoint.is_some() {
            crate::rare_paths::hit(crate::rare_paths::RarePath::InterruptedCheckpointFinished);
            {
                let mut view = self.write_view();
                self.reload(&mut view)?;
            }
            self.ensure_wal_ready()?;
            self.wal_sync_marked(|wal| wal.sync_adopted_header())?;
            self.shm.clear_checkpoint_mark()?;
        }
        Ok(())
    }

    /// After a failed sync anywhere, the page cache may show WAL and meta bytes that never
    /// reached the disk, and Linux reports them clean, so later syncs would not write
    /// them. Rewriting them before this open relies on them makes the next sync real
    /// (DESIGN.md §7 item 5; found by the simulator's fsync-failure fault).
    ///
    /// A failed sync is known by its mark, or by a sync intent left set (its process died
    /// before it could write the mark, or while syncing: the two look the same, and the
    /// rewrite is harmless after a sync that went well). A checkpoint interrupted between its
    /// meta page and its WAL reset may have died after that meta page's sync failed, with
    /// nothing marked: its meta page is rewritten and synced before the open finishes the
    /// checkpoint from it. (Both windows lost acknowledged commits after a power loss:
    /// `sim/tests/sync_failure_then_death.rs`.) Caller holds the writer lock; this takes the
    /// sync gate, so no sync is in flight while it looks.
    pub(super) fn resync_after_failed_sync(&self) -> Result<()> {
        let _gate = self.shm.take_sync_gate()?;
        let marks = self.shm.writer_marks()?;
        let intent = self.shm.sync_intent()?;
        // A mark of another boot warns of a page cache a power loss took away: nothing
        // to repair (0: an older build's mark, of an unknown boot).
        let this_boot = |boot: u64| boot == self.shm.boot() || boot == 0;
        let sync_unknown = (marks.sync_failed && this_boot(marks.sync_failed_boot))
            || intent.is_some_and(this_boot);
        if !sync_unknown && (marks.sync_failed || intent.is_some()) {
            self.shm.clear_sync_intent()?;
            self.shm.clear_sync_failed()?;
        }
        if sync_unknown {
            crate::rare_paths::hit(if marks.sync_failed {
                crate::rare_paths::RarePath::FailedSyncRepaired
            } else {
                crate::rare_paths::RarePath::SyncIntentRepaired
            });
        } else if marks.interrupted_checkpoint.is_some() {
            crate::rare_paths::hit(crate::rare_paths::RarePath::InterruptedCheckpointResynced);
        } else {
            return Ok(());
        }
        self.rewrite_unrelied_meta()?;
        if sync_unknown {
            self.rewrite_undurable_wal()?;
            self.shm.clear_sync_intent()?;
            self.shm.clear_sync_failed()?;
        }
        Ok(())
    }

    /// Rewrites the newest meta page if nothing durable relies on it yet: while the WAL
    /// still starts before its checkpoint, the older slot is what a torn rewrite falls back
    /// to, and it matches that WAL. Once the WAL was reset to it, the newest meta page was
    /// durable (the reset follows its sync), and a rewrite torn by a power cut would leave
    /// only the older one, which the reset WAL no longer fits: rewriting both slots did
    /// that (`--seeds 0..1000 --ops 500`, seed 997: "the WAL starts after LSN 1018 but the
    /// newest meta page has checkpoint LSN 997").
    fn rewrite_unrelied_meta(&self) -> Result<()> {
        let Some(meta) = self.pages.load_meta()? else {
            return Ok(());
        };
        let header = self.wal.read_header()?;
        if header.is_some_and(|header| header.base_lsn < meta.checkpoint_lsn) {
            self.pages
                .rewrite_meta_slot(crate::pager::meta_page_id(meta.generation))?;
        }
        Ok(())
    }

    /// Rewrites the WAL from its first frame past what `wal.shm` records as made durable
    /// (all of it, header first, without a record of this life: a reset that failed or died
    /// in its sync may have left the header only in the page cache): frames a successful
    /// sync covered are on disk, and a rewrite torn by a power cut would damage them.
    fn rewrite_undurable_wal(&self) -> Result<()> {
        let Some(header) = self.wal.read_header()? else {
            return self.wal.rewrite_all();
        };
        let durable = self.shm.read_durable(header.salt)?;
        if durable < header.base_lsn {
            return self.wal.rewrite_all();
        }
        let scan = self.wal.scan_after(
            &crate::wal::WalCursor::at_start(header),
            crate::wal::AfterZeros::Probe,
        )?;
        let from = scan
            .frames
            .iter()
            .find(|frame| frame.lsn > durable)
            .map_or(scan.committed_end, |frame| frame.offset);
        self.wal.rewrite_from(from)
    }
}
