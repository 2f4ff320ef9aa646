//! Scheduling hooks: where another thread may run, and what time it is, as the engine sees
//! it. They exist for deterministic simulation; in production they cost one relaxed atomic
//! load per lock and change nothing.
//!
//! # What it owns
//!
//! Every lock the engine takes while it may already hold another or may do I/O under it
//! (the writer lock, the view, the WAL's sync state, the write batching queue, the buffer
//! pool, the record maps), every wait on a condition, every poll loop and every reading of
//! the clock goes through this module. A thread without a [`Scheduler`] runs them as plain
//! `std::sync` calls and `std::time::Instant`.
//!
//! A thread with a scheduler ([`set_thread_scheduler`]; the simulator's actors) instead:
//! - calls [`Scheduler::yield_point`] with [`Point::Lock`] before taking a lock, and with
//!   [`Point::Blocked`] in a loop while the lock is held by another thread (it never blocks
//!   in the operating system, so a scheduler that runs one thread at a time cannot deadlock
//!   on a lock whose holder it paused);
//! - waits on a condition by releasing the lock, yielding [`Point::Blocked`] and locking
//!   again (every wait in the engine rechecks its condition in a loop);
//! - reads the clock from [`Scheduler::now`] (simulated time), so timeouts and poll
//!   deadlines are a function of the schedule, not of the machine.
//!
//! A simulated filesystem calls [`yield_point`] with [`Point::Io`] at each of its calls.
//! Together these are the points where the simulator switches threads, chosen by its seed:
//! operations of several threads and processes then interleave at every I/O call and lock,
//! deterministically (DESIGN.md §7 item 8).
//!
//! # Promise
//!
//! With no scheduler installed on any thread of the process, every function here behaves
//! exactly as the `std` call it wraps (poisoned locks are entered: the engine keeps its
//! shared state consistent before anything that can panic).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard,
    TryLockError,
};
use std::time::{Duration, Instant};

/// Why a thread reached a scheduling point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Point {
    /// Before a filesystem call.
    Io,
    /// Before taking a lock.
    Lock,
    /// The thread cannot go on until another one runs: the lock it wants is held, it waits
    /// on a condition, or it polls for something another thread does.
    Blocked,
}

/// Decides which thread runs at each scheduling point (implemented by simulators).
pub trait Scheduler: Send + Sync {
    /// The calling thread reached a scheduling point; returns when it may go on (other
    /// threads may have run meanwhile).
    fn yield_point(&self, point: Point);
    /// Simulated monotonic time since the scheduler started.
    fn now(&self) -> Duration;
    /// The calling thread sleeps for `duration` of simulated time: other threads run
    /// meanwhile. The default is one [`Point::Blocked`].
    fn sleep(&self, duration: Duration) {
        let _ = duration;
        self.yield_point(Point::Blocked);
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<dyn Scheduler>>> = const { RefCell::new(None) };
}

/// Set once any thread installs a scheduler: until then the hooks are one relaxed load.
static ANY_INSTALLED: AtomicBool = AtomicBool::new(false);

/// Installs (or with `None` removes) the scheduler of the calling thread.
pub fn set_thread_scheduler(scheduler: Option<Arc<dyn Scheduler>>) {
    if scheduler.is_some() {
        ANY_INSTALLED.store(true, Ordering::Release);
    }
    CURRENT.with(|current| *current.borrow_mut() = scheduler);
}

/// The calling thread's scheduler, if it has one.
fn current() -> Option<Arc<dyn Scheduler>> {
    if !ANY_INSTALLED.load(Ordering::Relaxed) {
        return None;
    }
    CURRENT.with(|current| current.borrow().clone())
}

/// True if the calling thread runs under a scheduler.
pub fn is_scheduled() -> bool {
    current().is_some()
}

/// A scheduling point of the calling thread (nothing without a scheduler).
pub fn yield_point(point: Point) {
    if let Some(scheduler) = current() {
        scheduler.yield_point(point);
    }
}

/// Time since an arbitrary start: the scheduler's simulated clock, else the real one.
pub fn now() -> Duration {
    match current() {
        Some(scheduler) => scheduler.now(),
        None => {
            static START: OnceLock<Instant> = OnceLock::new();
            START.get_or_init(Instant::now).elapsed()
        }
    }
}

/// Lets other threads run while this one polls: `std::thread::yield_now`, or a
/// [`Point::Blocked`] under a scheduler.
pub fn pause() {
    match current() {
        Some(scheduler) => scheduler.yield_point(Point::Blocked),
        None => std::thread::yield_now(),
    }
}

/// Sleeps: `std::thread::sleep`, or [`Scheduler::sleep`] under a scheduler.
pub fn sleep(duration: Duration) {
    match current() {
        Some(scheduler) => scheduler.sleep(duration),
        None => std::thread::sleep(duration),
    }
}

/// Locks `mutex` (entering it if poisoned).
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    let Some(scheduler) = current() else {
        return mutex
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    };
    scheduler.yield_point(Point::Lock);
    loop {
        match mutex.try_lock() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => scheduler.yield_point(Point::Blocked),
        }
    }
}

/// Takes `rwlock` shared (entering it if poisoned).
pub fn read<T: ?Sized>(rwlock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    let Some(scheduler) = current() else {
        return rwlock
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    };
    scheduler.yield_point(Point::Lock);
    loop {
        match rwlock.try_read() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => scheduler.yield_point(Point::Blocked),
        }
    }
}

/// Takes `rwlock` exclusive (entering it if poisoned).
pub fn write<T: ?Sized>(rwlock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    let Some(scheduler) = current() else {
        return rwlock
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    };
    scheduler.yield_point(Point::Lock);
    loop {
        match rwlock.try_write() {
            Ok(guard) => return guard,
            Err(TryLockError::Poisoned(poisoned)) => return poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => scheduler.yield_point(Point::Blocked),
        }
    }
}

/// Waits on `condvar` with `guard` (a guard of `mutex`), returning it locked again. Under a
/// scheduler this is a release, a [`Point::Blocked`] and a lock: a spurious wake-up, which
/// every caller allows (it rechecks its condition in a loop).
pub fn wait<'a, T>(
    condvar: &Condvar,
    mutex: &'a Mutex<T>,
    guard: MutexGuard<'a, T>,
) -> MutexGuard<'a, T> {
    let Some(scheduler) = current() else {
        return condvar
            .wait(guard)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
    };
    drop(guard);
    scheduler.yield_point(Point::Blocked);
    lock(mutex)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    /// Counts points and advances a clock by one microsecond per point.
    #[derive(Default)]
    struct Counting {
        points: Mutex<Vec<Point>>,
        micros: AtomicU64,
    }

    impl Scheduler for Counting {
        fn yield_point(&self, point: Point) {
            self.points.lock().unwrap().push(point);
            self.micros.fetch_add(1, Ordering::Relaxed);
        }
        fn now(&self) -> Duration {
            Duration::from_micros(self.micros.load(Ordering::Relaxed))
        }
    }

    #[test]
    fn without_a_scheduler_the_hooks_are_plain_std_calls() {
        std::thread::spawn(|| {
            assert!(!is_scheduled());
            let mutex = Mutex::new(1);
            *lock(&mutex) += 1;
            assert_eq!(*lock(&mutex), 2);
            let rwlock = RwLock::new(3);
            assert_eq!(*read(&rwlock), 3);
            *write(&rwlock) = 4;
            assert_eq!(*read(&rwlock), 4);
            let before = now();
            pause();
            assert!(now() >= before);
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_scheduled_thread_reports_every_lock_and_reads_simulated_time() {
        std::thread::spawn(|| {
            let scheduler = Arc::new(Counting::default());
            set_thread_scheduler(Some(scheduler.clone()));
            let mutex = Mutex::new(0);
            drop(lock(&mutex));
            let rwlock = RwLock::new(0);
            drop(read(&rwlock));
            drop(write(&rwlock));
            yield_point(Point::Io);
            assert_eq!(now(), Duration::from_micros(4));
            pause();
            let guard = lock(&mutex);
            let condvar = Condvar::new();
            drop(wait(&condvar, &mutex, guard));
            set_thread_scheduler(None);
            assert_eq!(
                *scheduler.points.lock().unwrap(),
                vec![
                    Point::Lock,
                    Point::Lock,
                    Point::Lock,
                    Point::Io,
                    Point::Blocked,
                    Point::Lock,
                    Point::Blocked,
                    Point::Lock,
                ]
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn a_held_lock_makes_a_scheduled_thread_yield_until_it_is_free() {
        use std::sync::mpsc::{Sender, channel};
        /// Tells the holder to let go at the third blocked point.
        struct Releasing {
            release: Mutex<Option<Sender<()>>>,
            blocked: AtomicU64,
        }
        impl Scheduler for Releasing {
            fn yield_point(&self, point: Point) {
                if point == Point::Blocked
                    && self.blocked.fetch_add(1, Ordering::Relaxed) == 2
                    && let Some(release) = self.release.lock().unwrap().take()
                {
                    release.send(()).unwrap();
                }
                std::thread::yield_now();
            }
            fn now(&self) -> Duration {
                Duration::ZERO
            }
        }
        let mutex = Arc::new(Mutex::new(7));
        let (release, released) = channel();
        let (held, is_held) = channel();
        let holder = {
            let mutex = Arc::clone(&mutex);
            std::thread::spawn(move || {
                let guard = mutex.lock().unwrap();
                held.send(()).unwrap();
                released.recv().unwrap();
                drop(guard);
            })
        };
        is_held.recv().unwrap();
        let waiter = std::thread::spawn(move || {
            let scheduler = Arc::new(Releasing {
                release: Mutex::new(Some(release)),
                blocked: AtomicU64::new(0),
            });
            set_thread_scheduler(Some(scheduler.clone()));
            assert_eq!(*lock(&mutex), 7);
            assert!(scheduler.blocked.load(Ordering::Relaxed) >= 3);
            set_thread_scheduler(None);
        });
        waiter.join().unwrap();
        holder.join().unwrap();
    }
}
