//! The buffer pool: a fixed-capacity cache of pages in memory with CLOCK eviction.
//!
//! # What it owns
//!
//! At most `capacity` cached pages, each held as an `Arc<Page>` in a frame together with a
//! CLOCK reference bit and a dirty flag; a page is pinned while anyone but the pool holds
//! its `Arc` (a guard, or a caller that kept the `Arc` of one). It owns no I/O: a miss returns `None`
//! and the caller reads the page from `pages.db` or rebuilds it from the WAL, then hands it
//! back with [`BufferPool::fill`].
//!
//! # What it promises
//!
//! - Never more than `capacity` cached pages, even when every frame is pinned: when two full
//!   sweeps of the CLOCK hand find only pinned frames, the frame under the hand is evicted
//!   anyway. That is safe because a [`PageRef`] owns its own `Arc<Page>`: eviction only drops
//!   the pool's reference, never the bytes a reader is looking at.
//! - A cache hit never copies the 64 KiB page: the guard holds a clone of the frame's `Arc`.
//! - Eviction never writes back. Dirty pages get the same second chance as clean ones and may
//!   then be evicted, because the engine can rebuild any page from its WAL.
//! - A page read before an [`install`](BufferPool::install), [`invalidate`](BufferPool::invalidate)
//!   or [`clear`](BufferPool::clear) is never cached after it: every such call bumps the
//!   pool's version, and [`fill`](BufferPool::fill) caches only if the version still equals
//!   the [`FillTicket`] taken before the read.
//!
//! # CLOCK
//!
//! The hand sweeps the frames in order. A pinned frame is skipped. A frame with its reference
//! bit set has the bit cleared and is skipped (its second chance). The first unpinned frame
//! with a clear bit is the victim. Accesses set the bit (a hit, a `fill` that finds the page
//! cached, an `install`); a page that enters through a `fill` starts with a clear bit, so a
//! scan of pages read once does not push out pages read twice.
//!
//! # Locking
//!
//! One mutex guards the map, the frames, the hand and the version; the hit, miss and eviction
//! counters are atomics beside it. A pin is a reference to the frame's `Arc`, so a guard
//! unpins on drop without taking the lock; pins are taken only under the lock, which is
//! where eviction reads the reference count.

use crate::page::{Page, PageId, PageIdHashing};
use std::collections::HashMap;
use std::fmt;
use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Number of full sweeps of the hand before CLOCK gives up on finding an unpinned victim.
/// Two suffice: the first clears every unpinned frame's bit, the second finds one of them.
const CLOCK_SWEEPS_MAX: usize = 2;

/// Counters of the pool's activity since it was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BufferStats {
    /// `get` calls that found the page cached.
    pub hits: u64,
    /// `get` calls that did not.
    pub misses: u64,
    /// Pages dropped to make room for another (not counting `invalidate` and `clear`).
    pub evictions: u64,
    /// Pages cached now.
    pub resident: usize,
}

/// A page the pool dropped to make room for another.
#[derive(Debug)]
pub struct Evicted {
    /// Which page it was.
    pub id: PageId,
    /// The copy the pool held (guards may still hold it too).
    pub page: Arc<Page>,
}

/// The pool's invalidation version when the ticket was taken; see [`BufferPool::fill`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FillTicket(u64);

/// A fixed-capacity page cache with CLOCK eviction. `Send + Sync`; share it by reference.
pub struct BufferPool {
    capacity_pages: usize,
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

const _: fn() = || {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<BufferPool>();
    assert_send_sync::<PageRef>();
};

type PageMap = HashMap<PageId, usize, PageIdHashing>;

struct State {
    /// Page id → index into `frames`.
    map: PageMap,
    /// At most `capacity_pages` frames; every frame's id is in `map`, pointing back to it.
    frames: Vec<Frame>,
    /// Next frame CLOCK looks at: `< frames.len()`, or 0 when there are no frames.
    hand: usize,
    /// Bumped by every install, invalidate and clear.
    version: u64,
    /// Evicted pages nobody else held, kept (at most [`SPARE_PAGES_MAX`]) so the next miss
    /// reads into one instead of a fresh zeroed allocation (the zeroing was a sixth of a
    /// load that misses).
    spares: Vec<Page>,
}

/// Most evicted pages kept for reuse.
const SPARE_PAGES_MAX: usize = 4;

struct Frame {
    id: PageId,
    /// Every other holder of this `Arc` pins the page; a replaced copy is another `Arc`,
    /// so guards on it never pin its successor.
    page: Arc<Page>,
    referenced: bool,
    dirty: bool,
}

impl Frame {
    fn new(id: PageId, page: Arc<Page>, referenced: bool, dirty: bool) -> Frame {
        Frame {
            id,
            page,
            referenced,
            dirty,
        }
    }

    fn is_pinned(&self) -> bool {
        // The count only steers eviction; memory safety comes from the guards' own Arcs.
        Arc::strong_count(&self.page) > 1
    }
}

impl BufferPool {
    /// A pool caching at most `capacity_pages` pages (clamped to at least 1).
    pub fn new(capacity_pages: usize) -> BufferPool {
        BufferPool {
            capacity_pages: capacity_pages.max(1),
            state: Mutex::new(State {
                map: PageMap::default(),
                frames: Vec::new(),
                hand: 0,
                version: 0,
                spares: Vec::new(),
            }),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        }
    }

    /// Most pages the pool caches at once.
    pub fn capacity(&self) -> usize {
        self.capacity_pages
    }

    /// Cache hit: pins the page (RAII guard), sets its CLOCK reference bit, counts a hit.
    /// Miss: counts a miss, returns `None`.
    /// Misses so far (every thread of the process; relaxed: a hint that some read went past
    /// the pool, never a proof that none did unless read again after).
    pub fn miss_count(&self) -> u64 {
        self.misses.load(Ordering::Acquire)
    }

    pub fn get(&self, id: PageId) -> Option<PageRef> {
        let mut state = self.lock();
        let Some(index) = state.index_of(id) else {
            drop(state);
            self.misses.fetch_add(1, Ordering::AcqRel);
            return None;
        };
        let frame = &mut state.frames[index];
        frame.referenced = true;
        let guard = PageRef::pin(frame);
        drop(state);
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(guard)
    }

    /// A ticket for a later [`fill`](BufferPool::fill): the pool's invalidation version now.
    /// Take it before reading the page, so that a write racing the read is noticed.
    pub fn ticket(&self) -> FillTicket {
        FillTicket(self.lock().version)
    }

    /// Caches a page just read from disk or rebuilt from the WAL after a miss, only if
    /// nothing was installed or invalidated since `ticket` was taken and the page is not
    /// cached already. Returns a guard on the cached page; if a copy is cached already, on
    /// that copy (it is at least as new); if the version moved on, an uncached guard on
    /// `page` that is not in the pool.
    pub fn fill(&self, id: PageId, page: Page, ticket: FillTicket) -> PageRef {
        let (guard, evicted) = self.fill_evicting(id, page, ticket);
        if let Some(evicted) = evicted {
            self.recycle(evicted.page);
        }
        guard
    }

    /// [`fill`](BufferPool::fill), and the page it evicted to make room, if any, for the
    /// caller to look at outside the lock (the engine keeps its record map) and then hand
    /// back with [`recycle`](BufferPool::recycle).
    pub fn fill_evicting(
        &self,
        id: PageId,
        page: Page,
        ticket: FillTicket,
    ) -> (PageRef, Option<Evicted>) {
        let mut state = self.lock();
        debug_assert!(ticket.0 <= state.version, "ticket from another pool");
        if let Some(index) = state.index_of(id) {
            let frame = &mut state.frames[index];
            frame.referenced = true;
            return (PageRef::pin(frame), None);
        }
        if ticket.0 != state.version {
            return (PageRef::uncached(Arc::new(page)), None);
        }
        let frame = Frame::new(id, Arc::new(page), false, false);
        let (index, evicted) = self.insert(&mut state, frame);
        (PageRef::pin(&state.frames[index]), evicted)
    }

    /// Takes back an evicted page: if nobody else holds it, its buffer is kept for the
    /// next miss to read into (at most a few are kept).
    pub fn recycle(&self, page: Arc<Page>) {
        self.lock().keep_spare(page);
    }

    /// Installs a page version written by the engine, replacing any cached copy, with its
    /// dirty flag. Bumps the version. Guards on a replaced copy keep seeing that copy.
    pub fn install(&self, id: PageId, page: Arc<Page>, dirty: bool) {
        let mut state = self.lock();
        state.version += 1;
        let frame = Frame::new(id, page, true, dirty);
        match state.index_of(id) {
            Some(index) => state.frames[index] = frame,
            None => {
                let (_, evicted) = self.insert(&mut state, frame);
                if let Some(evicted) = evicted {
                    state.keep_spare(evicted.page);
                }
            }
        }
        debug_assert!(state.index_of(id).is_some());
    }

    /// Drops a cached page, if cached. Bumps the version either way, so an in-flight read of
    /// the page is not cached. Pinned guards stay valid: they hold their own `Arc`.
    pub fn invalidate(&self, id: PageId) {
        let mut state = self.lock();
        state.version += 1;
        state.remove(id);
        debug_assert!(state.index_of(id).is_none());
        state.check(self.capacity_pages);
    }

    /// A page buffer to read a missed page into: an evicted one if there is one (its bytes
    /// are stale: the reader overwrites all of them), else a zeroed one.
    pub fn spare_page(&self) -> Page {
        self.lock().spares.pop().unwrap_or_else(Page::zeroed)
    }

    /// Drops every cached page and bumps the version. Pinned guards stay valid.
    pub fn clear(&self) {
        let mut state = self.lock();
        state.version += 1;
        state.map.clear();
        state.frames.clear();
        state.hand = 0;
        state.check(self.capacity_pages);
    }

    /// Clears the dirty flag of a cached page (after it was written to `pages.db`).
    /// Does nothing if the page is not cached.
    pub fn mark_clean(&self, id: PageId) {
        let mut state = self.lock();
        if let Some(index) = state.index_of(id) {
            state.frames[index].dirty = false;
        }
    }

    /// Ids of the cached dirty pages, sorted ascending.
    pub fn dirty_pages(&self) -> Vec<PageId> {
        let state = self.lock();
        let mut dirty: Vec<PageId> = state
            .frames
            .iter()
            .filter(|frame| frame.dirty)
            .map(|frame| frame.id)
            .collect();
        drop(state);
        dirty.sort_unstable();
        dirty
    }

    /// Whether the page is cached and dirty.
    pub fn is_dirty(&self, id: PageId) -> bool {
        let state = self.lock();
        state
            .index_of(id)
            .is_some_and(|index| state.frames[index].dirty)
    }

    /// The counters now. Taken under the lock, so `resident` is exact; the other counters
    /// may lag calls racing with this one.
    pub fn stats(&self) -> BufferStats {
        let state = self.lock();
        let resident = state.frames.len();
        debug_assert!(resident <= self.capacity_pages);
        BufferStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            resident,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation leaves `State` consistent before anything that can panic, so the
        // state behind a poisoned lock is still sound.
        crate::sched::lock(&self.state)
    }

    /// Puts an uncached page into a free frame, or into the CLOCK victim's frame when full;
    /// returns the frame and the page evicted from it.
    fn insert(&self, state: &mut State, frame: Frame) -> (usize, Option<Evicted>) {
        debug_assert!(!state.map.contains_key(&frame.id));
        let id = frame.id;
        let (index, evicted) = if state.frames.len() < self.capacity_pages {
            state.frames.push(frame);
            (state.frames.len() - 1, None)
        } else {
            let victim = state.clock_victim();
            let evicted = state.frames[victim].id;
            let removed = state.map.remove(&evicted);
            debug_assert_eq!(removed, Some(victim));
            let old = std::mem::replace(&mut state.frames[victim], frame);
            debug_assert_eq!(old.id, evicted);
            self.evictions.fetch_add(1, Ordering::Relaxed);
            let evicted = Evicted {
                id: old.id,
                page: old.page,
            };
            (victim, Some(evicted))
        };
        state.map.insert(id, index);
        state.check(self.capacity_pages);
        debug_assert_eq!(state.frames[index].id, id);
        (index, evicted)
    }
}

impl State {
    /// Keeps an evicted page's buffer for the next miss if nobody else holds it and fewer
    /// than [`SPARE_PAGES_MAX`] are kept.
    fn keep_spare(&mut self, page: Arc<Page>) {
        if self.spares.len() < SPARE_PAGES_MAX
            && let Ok(page) = Arc::try_unwrap(page)
        {
            self.spares.push(page);
        }
    }

    /// The frame caching `id`, checked against the frame's own id.
    fn index_of(&self, id: PageId) -> Option<usize> {
        let index = *self.map.get(&id)?;
        debug_assert!(index < self.frames.len());
        debug_assert_eq!(self.frames[index].id, id);
        Some(index)
    }

    /// Runs the CLOCK hand over a full pool and returns the frame to evict.
    fn clock_victim(&mut self) -> usize {
        let frames_count = self.frames.len();
        assert!(frames_count > 0, "CLOCK runs only on a full pool");
        for _ in 0..CLOCK_SWEEPS_MAX * frames_count {
            let index = self.advance_hand();
            let frame = &mut self.frames[index];
            if frame.is_pinned() {
                continue;
            }
            if frame.referenced {
                frame.referenced = false;
                continue;
            }
            return index;
        }
        // Every frame is pinned. Evict one anyway so the pool never exceeds its capacity:
        // the guards keep their pages alive through their own Arcs.
        self.advance_hand()
    }

    /// Returns the frame under the hand and moves the hand to the next one.
    fn advance_hand(&mut self) -> usize {
        debug_assert!(self.hand < self.frames.len());
        let index = self.hand;
        self.hand = (self.hand + 1) % self.frames.len();
        index
    }

    fn remove(&mut self, id: PageId) {
        let Some(index) = self.map.remove(&id) else {
            return;
        };
        let removed = self.frames.swap_remove(index);
        debug_assert_eq!(removed.id, id);
        if let Some(moved) = self.frames.get(index) {
            let previous = self.map.insert(moved.id, index);
            debug_assert_eq!(previous, Some(self.frames.len()));
        }
        if self.hand >= self.frames.len() {
            self.hand = 0;
        }
    }

    /// Cheap structural invariants, checked after every change.
    fn check(&self, capacity_pages: usize) {
        debug_assert_eq!(self.map.len(), self.frames.len());
        debug_assert!(self.frames.len() <= capacity_pages);
        debug_assert!(self.hand < self.frames.len().max(1));
    }
}

impl fmt::Debug for BufferPool {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("BufferPool")
            .field("capacity_pages", &self.capacity_pages)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// A pinned page: derefs to [`Page`], unpins on drop; cloning pins again. Holds its own
/// `Arc<Page>`, so the page stays readable after it is evicted, replaced or invalidated.
#[derive(Debug, Clone)]
pub struct PageRef {
    page: Arc<Page>,
    /// False for a guard on a page that is not in the pool (a `fill` with a stale ticket).
    cached: bool,
}

impl PageRef {
    /// Pins a frame's page. Called under the pool's lock, so eviction sees the pin.
    fn pin(frame: &Frame) -> PageRef {
        PageRef {
            page: Arc::clone(&frame.page),
            cached: true,
        }
    }

    /// A guard on a page that is not cached (e.g. read by a scan that bypasses the pool).
    pub fn uncached(page: Arc<Page>) -> PageRef {
        PageRef {
            page,
            cached: false,
        }
    }

    /// The shared page, to keep it beyond the guard or hand it on without copying.
    pub fn arc(&self) -> &Arc<Page> {
        &self.page
    }

    /// Whether the guard's page was cached in the pool when the guard was made.
    pub fn is_cached(&self) -> bool {
        self.cached
    }
}

impl Deref for PageRef {
    type Target = Page;

    fn deref(&self) -> &Page {
        &self.page
    }
}

#[cfg(test)]
#[path = "buffer_tests.rs"]
mod tests;
