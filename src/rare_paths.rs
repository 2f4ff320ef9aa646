//! Counters of the engine's rare paths, for simulators and fuzzers: how often a run reached
//! each recovery, repair, retry and reuse path that only faults, crashes and races lead to.
//! A path that a long campaign never reaches is one its checks say nothing about.
//!
//! Counting is off unless the calling thread has a [`Recorder`] installed
//! ([`Recorder::install`]): an embedder pays one thread-local read on a rare path, and
//! nothing on the paths of ordinary loads and commits. A recorder counts what the threads
//! that installed it reach; a simulator that runs one operation on several threads installs
//! the same recorder in each ([`Recorder::current`] gives the one to pass on).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A rare path of the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RarePath {
    /// An open found a torn tail after the last commit of the WAL (unsynced frames a crash
    /// left half-written) and read up to the commit before it.
    TornTailAtOpen,
    /// A WAL scan proved damage to a synced frame: a later intact frame says it was durable.
    DamagedFrameProven,
    /// An open refused a WAL that ends before what `wal.shm` records as made durable.
    LostTailRefused,
    /// A meta slot failed to decode and the other slot's meta page was used.
    MetaSlotDamaged,
    /// A page read failed its checksum and was read again.
    PageReadRetried,
    /// An open repaired after a sync failure marked in `wal.shm` (meta pages and WAL
    /// rewritten and synced).
    FailedSyncRepaired,
    /// An open repaired after a sync intent left set: a process died syncing, or between a
    /// failed sync and its mark.
    SyncIntentRepaired,
    /// An open rewrote the meta pages of a checkpoint interrupted between its meta page and
    /// its WAL reset before finishing it.
    InterruptedCheckpointResynced,
    /// A writer finished a checkpoint that another process (or this one) started and did
    /// not end.
    InterruptedCheckpointFinished,
    /// A writer refused to write because a sync failed in some process.
    WriterStoppedBySyncFailure,
    /// A view reload met a checkpoint in progress (a WAL reset or a cut page file) and
    /// started again.
    ReloadRetried,
    /// A page became free (its last record or chain page went).
    PageFreed,
    /// A free page was allocated again.
    FreePageReused,
    /// A checkpoint cut trailing free pages off `pages.db`.
    PageFileCut,
    /// An update moved a record to another page (its handle unchanged).
    RecordRelocated,
    /// A compaction step moved a record or an overflow chain to a lower page.
    CompactionMoved,
    /// A wait for a lock gave up with `Error::Locked`.
    LockTimedOut,
    /// A write returned `Error::OutcomeUnknown` (its sync failed).
    CommitOutcomeUnknown,
    /// A page read from `pages.db` carried another LSN than the version its map keeps (a
    /// lost or misdirected write, or a view another process's checkpoint made stale: read
    /// again after a refresh).
    StalePageRefused,
}

impl RarePath {
    /// Every rare path, in a fixed order.
    pub const ALL: [RarePath; 19] = [
        RarePath::TornTailAtOpen,
        RarePath::DamagedFrameProven,
        RarePath::LostTailRefused,
        RarePath::MetaSlotDamaged,
        RarePath::PageReadRetried,
        RarePath::FailedSyncRepaired,
        RarePath::SyncIntentRepaired,
        RarePath::InterruptedCheckpointResynced,
        RarePath::InterruptedCheckpointFinished,
        RarePath::WriterStoppedBySyncFailure,
        RarePath::ReloadRetried,
        RarePath::PageFreed,
        RarePath::FreePageReused,
        RarePath::PageFileCut,
        RarePath::RecordRelocated,
        RarePath::CompactionMoved,
        RarePath::LockTimedOut,
        RarePath::CommitOutcomeUnknown,
        RarePath::StalePageRefused,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

const PATHS: usize = RarePath::ALL.len();

/// Counts of the rare paths reached by the threads it is installed in.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    counts: Arc<[AtomicU64; PATHS]>,
}

thread_local! {
    static CURRENT: RefCell<Option<Recorder>> = const { RefCell::new(None) };
}

/// Uninstalls a recorder (restoring the one before) when dropped.
#[derive(Debug)]
pub struct Installed {
    previous: Option<Recorder>,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|current| *current.borrow_mut() = previous);
    }
}

impl Recorder {
    /// A recorder with every count zero.
    pub fn new() -> Recorder {
        Recorder::default()
    }

    /// Counts this thread's rare paths into this recorder until the guard drops.
    pub fn install(&self) -> Installed {
        let previous = CURRENT.with(|current| current.borrow_mut().replace(self.clone()));
        Installed { previous }
    }

    /// The recorder installed in this thread, to install in the threads it starts.
    pub fn current() -> Option<Recorder> {
        CURRENT.with(|current| current.borrow().clone())
    }

    /// How often each path was reached, in [`RarePath::ALL`] order.
    pub fn counts(&self) -> Vec<(RarePath, u64)> {
        RarePath::ALL
            .iter()
            .map(|path| (*path, self.counts[path.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// Notes that this thread reached `path` (a no-op without a recorder).
pub(crate) fn hit(path: RarePath) {
    CURRENT.with(|current| {
        if let Some(recorder) = current.borrow().as_ref() {
            recorder.counts[path.index()].fetch_add(1, Ordering::Relaxed);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorder_counts_only_what_its_threads_reach() {
        hit(RarePath::PageFreed);
        let recorder = Recorder::new();
        {
            let _installed = recorder.install();
            hit(RarePath::PageFreed);
            hit(RarePath::PageFreed);
            let passed_on = Recorder::current().expect("installed");
            std::thread::spawn(move || {
                let _installed = passed_on.install();
                hit(RarePath::LockTimedOut);
            })
            .join()
            .expect("thread");
            std::thread::spawn(|| hit(RarePath::LockTimedOut))
                .join()
                .expect("thread");
        }
        hit(RarePath::PageFreed);
        let counts = recorder.counts();
        assert_eq!(counts.len(), RarePath::ALL.len());
        let count = |path| counts.iter().find(|(p, _)| *p == path).expect("listed").1;
        assert_eq!(count(RarePath::PageFreed), 2);
        assert_eq!(count(RarePath::LockTimedOut), 1);
        assert!(
            RarePath::ALL
                .iter()
                .enumerate()
                .all(|(i, p)| p.index() == i)
        );
    }
}
