use super::*;
use crate::page::PageType;
use std::thread;

fn page(id: u64) -> Page {
    Page::new(PageId(id), PageType::Data)
}

fn fill_fresh(pool: &BufferPool, id: u64) {
    let ticket = pool.ticket();
    drop(pool.fill(PageId(id), page(id), ticket));
}

impl BufferPool {
    /// Whether `id` is cached, without touching stats or reference bits.
    fn contains(&self, id: u64) -> bool {
        self.lock().index_of(PageId(id)).is_some()
    }
}

#[test]
fn hit_returns_the_installed_arc_without_copying_and_counts_a_hit() {
    let pool = BufferPool::new(4);
    let installed = Arc::new(page(7));
    pool.install(PageId(7), Arc::clone(&installed), false);
    let guard = pool.get(PageId(7)).expect("installed page is cached");
    assert!(Arc::ptr_eq(guard.arc(), &installed));
    assert_eq!(guard.id(), PageId(7));
    assert_eq!(pool.stats().hits, 1);
    assert_eq!(pool.stats().misses, 0);
}

#[test]
fn miss_returns_none_and_counts_a_miss() {
    let pool = BufferPool::new(4);
    assert!(pool.get(PageId(3)).is_none());
    let stats = pool.stats();
    assert_eq!((stats.hits, stats.misses, stats.resident), (0, 1, 0));
}

#[test]
fn capacity_is_clamped_to_at_least_one() {
    let pool = BufferPool::new(0);
    assert_eq!(pool.capacity(), 1);
    fill_fresh(&pool, 1);
    fill_fresh(&pool, 2);
    assert_eq!(pool.stats().resident, 1);
    assert!(pool.contains(2));
}

#[test]
fn capacity_is_never_exceeded_and_evictions_are_counted() {
    let pool = BufferPool::new(3);
    for id in 0..10 {
        fill_fresh(&pool, id);
        assert!(pool.stats().resident <= 3);
    }
    for id in 10..15 {
        pool.install(PageId(id), Arc::new(page(id)), id % 2 == 0);
        assert!(pool.stats().resident <= 3);
    }
    let stats = pool.stats();
    assert_eq!(stats.resident, 3);
    assert_eq!(stats.evictions, 15 - 3);
}

#[test]
fn clock_gives_a_recently_referenced_page_a_second_chance() {
    let pool = BufferPool::new(3);
    for id in [1, 2, 3] {
        fill_fresh(&pool, id);
    }
    drop(pool.get(PageId(1)));
    fill_fresh(&pool, 4);
    assert!(pool.contains(1), "the touched page survives");
    assert!(!pool.contains(2), "the first untouched page is evicted");
    assert!(pool.contains(3));
    assert!(pool.contains(4));
    assert_eq!(pool.stats().evictions, 1);
}

#[test]
fn pinned_pages_are_not_evicted_while_unpinned_ones_exist() {
    let pool = BufferPool::new(3);
    for id in [1, 2, 3] {
        fill_fresh(&pool, id);
    }
    let pin_1 = pool.get(PageId(1)).expect("cached");
    let pin_3 = pool.get(PageId(3)).expect("cached");
    for id in 4..10 {
        fill_fresh(&pool, id);
        assert!(pool.contains(1) && pool.contains(3), "pinned pages stay");
    }
    assert!(pool.contains(9));
    drop((pin_1, pin_3));
}

#[test]
fn a_pool_of_pinned_pages_still_evicts_to_stay_within_capacity() {
    let pool = BufferPool::new(2);
    fill_fresh(&pool, 1);
    fill_fresh(&pool, 2);
    let pins = [pool.get(PageId(1)), pool.get(PageId(2))];
    let guard = pool.fill(PageId(3), page(3), pool.ticket());
    assert_eq!(pool.stats().resident, 2);
    assert_eq!(pool.stats().evictions, 1);
    assert!(pool.contains(3));
    for pinned in pins.iter().flatten() {
        assert_eq!(
            pinned.page_type(),
            Some(PageType::Data),
            "evicted guard readable"
        );
    }
    assert_eq!(guard.id(), PageId(3));
}

#[test]
fn guard_clone_pins_again_and_drop_unpins() {
    let pool = BufferPool::new(1);
    fill_fresh(&pool, 1);
    let guard = pool.get(PageId(1)).expect("cached");
    let clone = guard.clone();
    let pinned = |pool: &BufferPool| pool.lock().frames[0].is_pinned();
    assert!(guard.is_cached() && pinned(&pool));
    drop(guard);
    assert!(pinned(&pool), "the clone still pins");
    drop(clone);
    assert!(!pinned(&pool));
}

#[test]
fn guard_keeps_its_page_readable_after_invalidate_and_clear() {
    let pool = BufferPool::new(4);
    pool.install(PageId(1), Arc::new(page(1)), true);
    pool.install(PageId(2), Arc::new(page(2)), false);
    let guard_1 = pool.get(PageId(1)).expect("cached");
    let guard_2 = pool.get(PageId(2)).expect("cached");
    pool.invalidate(PageId(1));
    assert!(pool.get(PageId(1)).is_none());
    assert_eq!(guard_1.id(), PageId(1));
    pool.clear();
    assert!(pool.get(PageId(2)).is_none());
    assert_eq!(guard_2.id(), PageId(2));
    assert_eq!(pool.stats().resident, 0);
    assert!(pool.dirty_pages().is_empty());
}

#[test]
fn fill_with_an_unchanged_version_caches_the_page() {
    let pool = BufferPool::new(4);
    let ticket = pool.ticket();
    fill_fresh(&pool, 9); // A fill of another page does not move the version.
    let guard = pool.fill(PageId(5), page(5), ticket);
    assert!(guard.is_cached());
    let hit = pool.get(PageId(5)).expect("filled page is cached");
    assert!(Arc::ptr_eq(hit.arc(), guard.arc()));
}

#[test]
fn fill_after_an_install_since_the_ticket_does_not_cache_the_stale_page() {
    let pool = BufferPool::new(4);
    let ticket = pool.ticket();
    let installed = Arc::new(page(5));
    pool.install(PageId(5), Arc::clone(&installed), true);
    let guard = pool.fill(PageId(5), page(5), ticket);
    assert!(
        Arc::ptr_eq(guard.arc(), &installed),
        "guard on the newer copy"
    );
    let hit = pool.get(PageId(5)).expect("installed page is cached");
    assert!(Arc::ptr_eq(hit.arc(), &installed));
}

#[test]
fn fill_after_an_invalidate_since_the_ticket_does_not_cache_the_stale_page() {
    let pool = BufferPool::new(4);
    pool.install(PageId(5), Arc::new(page(5)), false);
    pool.invalidate(PageId(5));
    let ticket = pool.ticket();
    pool.invalidate(PageId(5));
    let guard = pool.fill(PageId(5), page(5), ticket);
    assert!(!guard.is_cached(), "an uncached guard");
    assert_eq!(guard.id(), PageId(5));
    assert!(pool.get(PageId(5)).is_none());
    assert_eq!(pool.stats().resident, 0);
}

#[test]
fn fill_returns_the_cached_copy_when_the_page_is_cached_already() {
    let pool = BufferPool::new(4);
    let ticket = pool.ticket();
    let first = pool.fill(PageId(5), page(5), ticket);
    let second = pool.fill(PageId(5), page(5), ticket);
    assert!(Arc::ptr_eq(first.arc(), second.arc()));
    assert_eq!(pool.stats().resident, 1);
}

#[test]
fn dirty_tracking_follows_install_and_mark_clean() {
    let pool = BufferPool::new(8);
    for id in [5, 1, 3] {
        pool.install(PageId(id), Arc::new(page(id)), true);
    }
    pool.install(PageId(2), Arc::new(page(2)), false);
    assert_eq!(pool.dirty_pages(), vec![PageId(1), PageId(3), PageId(5)]);
    assert!(pool.is_dirty(PageId(3)));
    assert!(!pool.is_dirty(PageId(2)));
    assert!(!pool.is_dirty(PageId(42)), "an uncached page is not dirty");
    pool.mark_clean(PageId(3));
    assert!(!pool.is_dirty(PageId(3)));
    assert_eq!(pool.dirty_pages(), vec![PageId(1), PageId(5)]);
    pool.install(PageId(1), Arc::new(page(1)), false);
    assert_eq!(pool.dirty_pages(), vec![PageId(5)]);
}

#[test]
fn dirty_pages_get_a_second_chance_and_may_then_be_evicted() {
    let pool = BufferPool::new(2);
    pool.install(PageId(1), Arc::new(page(1)), true);
    pool.install(PageId(2), Arc::new(page(2)), true);
    fill_fresh(&pool, 3);
    assert_eq!(pool.stats().evictions, 1);
    assert_eq!(pool.stats().resident, 2);
    assert_eq!(pool.dirty_pages().len(), 1, "one dirty page was evicted");
}

#[test]
fn concurrent_gets_and_installs_do_not_deadlock_and_stats_add_up() {
    const THREADS: u64 = 4;
    const GETS_PER_THREAD: u64 = 2_000;
    let pool = BufferPool::new(8);
    thread::scope(|scope| {
        for thread_index in 0..THREADS {
            let pool = &pool;
            scope.spawn(move || {
                for step in 0..GETS_PER_THREAD {
                    let id = (step * 7 + thread_index) % 16;
                    let ticket = pool.ticket();
                    let guard = match pool.get(PageId(id)) {
                        Some(guard) => guard,
                        None => pool.fill(PageId(id), page(id), ticket),
                    };
                    assert_eq!(guard.id(), PageId(id));
                    if step % 10 == 0 {
                        pool.install(PageId(id), Arc::new(page(id)), step % 20 == 0);
                    }
                    if step % 97 == 0 {
                        pool.invalidate(PageId(id));
                    }
                }
            });
        }
    });
    let stats = pool.stats();
    assert_eq!(stats.hits + stats.misses, THREADS * GETS_PER_THREAD);
    assert!(stats.resident <= pool.capacity());
}

#[test]
fn an_evicted_page_nobody_holds_is_handed_out_again_for_the_next_read() {
    let pool = BufferPool::new(1);
    fill_fresh(&pool, 1);
    fill_fresh(&pool, 2);
    let spare = pool.spare_page();
    assert_eq!(
        spare.id(),
        PageId(1),
        "the evicted page's buffer, stale bytes and all"
    );
    assert_eq!(
        pool.spare_page().bytes(),
        Page::zeroed().bytes(),
        "then fresh ones"
    );
}

#[test]
fn an_evicted_page_still_held_by_a_reader_is_not_reused() {
    let pool = BufferPool::new(1);
    let ticket = pool.ticket();
    let held = pool.fill(PageId(1), page(1), ticket);
    pool.install(PageId(2), Arc::new(page(2)), false);
    let spare = pool.spare_page();
    assert_ne!(spare.id(), PageId(1));
    assert_eq!(held.id(), PageId(1), "the reader's page is untouched");
}
