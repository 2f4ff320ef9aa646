//! Write batching: single stores made by concurrent threads of one process share one
//! transaction and one `fdatasync`.
//!
//! Group commit alone shares the `fdatasync` between committers, but each of them still
//! ran a whole transaction of its own under the writer lock (catch-up with other
//! processes, the `flock`, the frames, the publication), queued on that lock and woke up
//! one after the other: with 4 threads a put cost ~50 µs of CPU against ~10 µs alone, and a
//! sync covered ~3 commits. Here a store joins a queue; the first thread to find no leader
//! becomes the leader, takes the stores queued (up to [`GROUP_NODES_MAX`] and
//! [`GROUP_BYTES_MAX`]), commits them in one transaction and makes it durable, while the
//! others sleep; then it hands each its handle. Stores that arrive meanwhile queue for the
//! next leader.
//!
//! A leader first waits (at most [`GATHER_WAIT_MAX`]) until as many stores are queued as
//! the previous group had: the members of that group are on their way back, and without
//! the wait the first of them to return would commit alone, the others after it, and the
//! groups would alternate in halves. A lone writer never waits (its groups have one store).
//!
//! Both waits poll, yielding the processor, before anything sleeps: the leader while it
//! gathers, a member for up to [`MEMBER_SPIN_MAX`] (one commit and sync take ~0.1 ms). On
//! the 2-core development VM a wake-up from a condition variable cost more than the sync
//! it waited for: with sleeping waits 4 threads made ~25k puts/s, polling ~30k (2.3x →
//! 2.9x one thread's rate). Only threads with a store in flight poll; a member still
//! waiting after [`MEMBER_SPIN_MAX`] sleeps.
//!
//! A group commits atomically: after a crash all of its stores are there or none; none of
//! them was acknowledged before the sync. If a store of the group fails (before the
//! commit, so nothing was written), every member runs its store alone and gets its own
//! result. If the commit itself fails, every member gets that error: its store may or may
//! not be in the log, exactly as when a single store's commit fails (running it again
//! would store it twice: the simulator caught that). A failed sync poisons the instance,
//! and each member finds that out as its own error.

use super::{Commit, Inner};
use crate::error::{Error, Result};
use crate::record_id::RecordId;
use crate::sched;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Most stores one group commits.
pub const GROUP_NODES_MAX: usize = 256;
/// Most record bytes one group commits.
pub const GROUP_BYTES_MAX: usize = 8 << 20;
/// Longest a member spins for its outcome before it sleeps.
pub const MEMBER_SPIN_MAX: Duration = Duration::from_micros(300);
/// Longest a leader waits (polling) for the members of the previous group to queue again.
pub const GATHER_WAIT_MAX: Duration = Duration::from_micros(100);

/// What the leader tells a member about its store.
#[derive(Debug)]
enum Outcome {
    /// Committed (not yet durable) in the group's commit.
    Committed(RecordId, Commit),
    /// One of the group's stores failed before the commit, so nothing was written: run the
    /// store (its record, handed back) alone.
    Alone(Vec<u8>),
    /// Committing the group failed; it may or may not be in the log, as for a single store
    /// whose commit failed. Running it again could store it twice.
    Failed(Error),
}

#[derive(Debug, Default)]
struct GroupState {
    next_ticket: u64,
    queued: Vec<(u64, Vec<u8>)>,
    leading: bool,
    /// Stores in the last group committed: how many a leader waits for.
    last_group: usize,
    /// Members waiting for an outcome.
    waiting: usize,
    outcomes: HashMap<u64, Outcome>,
}

/// The queue of single stores waiting for a leader.
#[derive(Debug, Default)]
pub(crate) struct StoreGroup {
    state: Mutex<GroupState>,
    /// Members that polled long enough sleep here until their outcome is handed out.
    handed_out: Condvar,
    /// Bumped (under the lock) when a store queues or outcomes are handed out: pollers
    /// watch it instead of taking the lock on every turn.
    changes: AtomicU64,
}

impl StoreGroup {
    fn lock(&self) -> MutexGuard<'_, GroupState> {
        sched::lock(&self.state)
    }

    /// Notes a change for the pollers (call with the lock held).
    fn changed(&self) {
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Releases the lock, yields until something changed (or `until`), and locks again.
    fn poll<'a>(
        &'a self,
        state: MutexGuard<'a, GroupState>,
        until: Duration,
    ) -> MutexGuard<'a, GroupState> {
        let seen = self.changes.load(Ordering::Acquire);
        drop(state);
        while self.changes.load(Ordering::Acquire) == seen && sched::now() < until {
            sched::pause();
        }
        self.lock()
    }
}

impl Inner {
    /// Stores one encoded record through the group (see the module docs); durable on return
    /// as the sync mode says.
    pub(crate) fn store_grouped(&self, record: Vec<u8>) -> Result<RecordId> {
        self.check_writable()?;
        let group = &self.group;
        let mut state = group.lock();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queued.push((ticket, record));
        group.changed();
        let outcome = loop {
            if let Some(outcome) = state.outcomes.remove(&ticket) {
                break outcome;
            }
            if !state.leading {
                state = self.lead_group(state);
                continue;
            }
            // Spin (yielding) a while first: the outcome comes within one commit and sync,
            // and a wake-up from sleep costs this VM more than that.
            let spin_until = sched::now() + MEMBER_SPIN_MAX;
            while !state.outcomes.contains_key(&ticket)
                && state.leading
                && sched::now() < spin_until
            {
                state = group.poll(state, spin_until);
            }
            if state.outcomes.contains_key(&ticket) || !state.leading {
                continue;
            }
            state.waiting += 1;
            state = sched::wait(&group.handed_out, &group.state, state);
            state.waiting -= 1;
        };
        drop(state);
        match outcome {
            Outcome::Committed(id, commit) => {
                self.make_durable(commit)?;
                self.checkpoint_after_commit();
                Ok(id)
            }
            Outcome::Alone(record) => self.write(|txn| txn.insert_record(&record)),
            Outcome::Failed(error) => Err(error),
        }
    }

    /// Commits the queued stores as one transaction, makes it durable and hands out their
    /// outcomes. Called with the group state locked and no leader; returns with it locked.
    fn lead_group<'a>(
        &'a self,
        mut state: MutexGuard<'a, GroupState>,
    ) -> MutexGuard<'a, GroupState> {
        state.leading = true;
        let deadline = sched::now() + GATHER_WAIT_MAX;
        while state.queued.len() < state.last_group.min(GROUP_NODES_MAX) {
            if sched::now() >= deadline {
                break;
            }
            state = self.group.poll(state, deadline);
        }
        let mut bytes = 0;
        let take = state
            .queued
            .iter()
            .take(GROUP_NODES_MAX)
            .take_while(|(_, record)| {
                bytes += record.len();
                bytes <= GROUP_BYTES_MAX
            })
            .count()
            .max(1);
        let members: Vec<(u64, Vec<u8>)> = state.queued.drain(..take).collect();
        state.last_group = members.len();
        drop(state);
        let mut store_failed = false;
        let committed = self.commit_only(|txn| {
            let ids = members
                .iter()
                .map(|(_, record)| txn.insert_record(record))
                .collect::<Result<Vec<RecordId>>>();
            store_failed = ids.is_err();
            ids
        });
        if let Ok((_, commit)) = &committed
            && (self.options.sync_mode.syncs_every_commit() || commit.must_sync)
        {
            // Each member makes its commit durable again on return: an error here reaches
            // every one of them there (the instance is poisoned), so it is not kept.
            let _ = self.make_durable(*commit);
        }
        let mut state = self.group.lock();
        match committed {
            Ok((ids, commit)) => {
                for ((ticket, _), id) in members.iter().zip(ids) {
                    state
                        .outcomes
                        .insert(*ticket, Outcome::Committed(id, commit));
                }
            }
            Err(_) if store_failed => {
                for (ticket, record) in members {
                    state.outcomes.insert(ticket, Outcome::Alone(record));
                }
            }
            Err(error) => {
                for (ticket, _) in members {
                    state
                        .outcomes
                        .insert(ticket, Outcome::Failed(error.duplicate()));
                }
            }
        }
        state.leading = false;
        self.group.changed();
        if state.waiting > 0 {
            // A wake-up is a system call even with nobody waiting.
            self.group.handed_out.notify_all();
        }
        state
    }
}
