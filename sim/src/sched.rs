//! [`Schedule`]: runs simulated threads ("actors") one at a time and switches between them
//! at the engine's scheduling points, as the seed chooses.
//!
//! Each actor is a real thread, but only the one holding the turn runs; every other one
//! waits in [`Scheduler::yield_point`]. The engine reaches a scheduling point before every
//! filesystem call of [`crate::simfs::SimFs`] ([`Point::Io`]), before every lock it takes
//! ([`Point::Lock`]) and whenever it cannot go on without another thread ([`Point::Blocked`]:
//! a held lock, a condition wait, a poll; see [`mentedb_storage::sched`]). At each point the
//! running actor draws from the schedule's RNG whether to hand the turn to another actor,
//! and to which, so the interleaving is a function of the seed alone:
//! - at an `Io` or `Lock` point it switches with probability `switch_ppm` (drawn per seed:
//!   long runs of one actor in some seeds, a switch at nearly every call in others);
//! - at a `Blocked` point it always hands the turn to another live actor, if any.
//!
//! Time is simulated: the clock advances by one microsecond at every point (and by the
//! duration of a sleep), so timeouts and poll deadlines in the engine expire after a number
//! of steps, not of machine time.
//!
//! # Failures it reports
//! - A panic in an actor is caught and returned as that actor's result (`Err(message)`).
//! - **Deadlock**: if the actors reach [`DEADLOCK_BLOCKED_POINTS`] blocked points in a row
//!   with no other point between (every actor waits for another), each actor panics at its
//!   next point with a message saying so; the run then reports the panics.
//! - A thread that blocks outside any scheduling point (a lock or a wait the hooks do not
//!   cover) would stop the whole simulation: after [`STALL_SECONDS`] of real time without
//!   a single point the process prints what it knows and exits (an engine bug or a gap in
//!   the hooks; it never happens in a passing run).

use mentedb_storage::sched::{Point, Scheduler, set_thread_scheduler};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Blocked points in a row (no actor progressing) that count as a deadlock.
pub const DEADLOCK_BLOCKED_POINTS: u64 = 200_000;
/// Real seconds without any scheduling point before the simulation gives up.
pub const STALL_SECONDS: u64 = 120;
/// Most actors one schedule runs at once.
pub const ACTORS_MAX: usize = 16;

/// The body of one actor.
pub type ActorBody<'env, T> = Box<dyn FnOnce() -> T + Send + 'env>;

/// Counters of a schedule, for traces and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScheduleStats {
    /// Scheduling points reached.
    pub points: u64,
    /// Times the turn moved to another actor.
    pub switches: u64,
    /// Blocked points (a held lock, a wait, a poll).
    pub blocked: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ActorState {
    Live,
    Finished,
}

#[derive(Debug)]
struct State {
    rng: ChaCha8Rng,
    switch_ppm: u32,
    actors: Vec<ActorState>,
    running: Option<usize>,
    clock_micros: u64,
    blocked_streak: u64,
    deadlock: bool,
    stats: ScheduleStats,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    turn: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until `actor` holds the turn (or the schedule ended).
    fn wait_turn<'a>(
        &'a self,
        mut state: MutexGuard<'a, State>,
        actor: usize,
    ) -> MutexGuard<'a, State> {
        while state.running != Some(actor) {
            state = self
                .turn
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        state
    }
}

impl State {
    fn live_except(&self, actor: usize) -> Vec<usize> {
        (0..self.actors.len())
            .filter(|other| *other != actor && self.actors[*other] == ActorState::Live)
            .collect()
    }

    fn pick(&mut self, candidates: &[usize]) -> Option<usize> {
        if candidates.is_empty() {
            return None;
        }
        let index = crate::workload::below(&mut self.rng, candidates.len() as u64) as usize;
        Some(candidates[index])
    }
}

/// The per-thread hook an actor installs: the schedule and which actor it is.
struct ActorHook {
    shared: Arc<Shared>,
    actor: usize,
}

impl Scheduler for ActorHook {
    fn yield_point(&self, point: Point) {
        let mut state = self.shared.lock();
        debug_assert_eq!(
            state.running,
            Some(self.actor),
            "only the running actor runs"
        );
        state.stats.points += 1;
        state.clock_micros += 1;
        if point == Point::Blocked {
            state.stats.blocked += 1;
            state.blocked_streak += 1;
            if state.blocked_streak >= DEADLOCK_BLOCKED_POINTS {
                state.deadlock = true;
            }
        } else {
            state.blocked_streak = 0;
        }
        if state.deadlock {
            drop(state);
            if std::thread::panicking() {
                // Unwinding from the deadlock panic: run on to the end of the body.
                return;
            }
            panic!(
                "deadlock: {DEADLOCK_BLOCKED_POINTS} blocked scheduling points in a row, no thread can go on"
            );
        }
        let others = state.live_except(self.actor);
        let switch = match point {
            Point::Blocked => true,
            _ => {
                let switch_ppm = state.switch_ppm;
                crate::workload::chance(&mut state.rng, switch_ppm)
            }
        };
        if !switch {
            return;
        }
        let Some(next) = state.pick(&others) else {
            return;
        };
        state.running = Some(next);
        state.stats.switches += 1;
        self.shared.turn.notify_all();
        drop(self.shared.wait_turn(state, self.actor));
    }

    fn now(&self) -> Duration {
        Duration::from_micros(self.shared.lock().clock_micros)
    }

    fn sleep(&self, duration: Duration) {
        {
            let mut state = self.shared.lock();
            let micros = u64::try_from(duration.as_micros()).unwrap_or(u64::MAX);
            state.clock_micros = state.clock_micros.saturating_add(micros.saturating_sub(1));
        }
        self.yield_point(Point::Blocked);
    }
}

/// A deterministic scheduler for the actors of one run (see the module docs).
#[derive(Debug, Clone)]
pub struct Schedule {
    shared: Arc<Shared>,
}

impl Schedule {
    /// A schedule whose choices come from `seed`; at an I/O or lock point the running actor
    /// hands the turn on with probability `switch_ppm` / 1,000,000.
    pub fn new(seed: u64, switch_ppm: u32) -> Schedule {
        Schedule {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5343_4845_4455_4c45),
                    switch_ppm,
                    actors: Vec::new(),
                    running: None,
                    clock_micros: 0,
                    blocked_streak: 0,
                    deadlock: false,
                    stats: ScheduleStats::default(),
                }),
                turn: Condvar::new(),
            }),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ScheduleStats {
        self.shared.lock().stats
    }

    /// Simulated time so far.
    pub fn now(&self) -> Duration {
        Duration::from_micros(self.shared.lock().clock_micros)
    }

    /// Runs `bodies` as actors, interleaved at their scheduling points, and returns their
    /// results in order (`Err` with the message for an actor that panicked). Returns when
    /// every actor has finished.
    pub fn run<'env, T: Send + 'env>(
        &self,
        bodies: Vec<ActorBody<'env, T>>,
    ) -> Vec<Result<T, String>> {
        assert!(bodies.len() <= ACTORS_MAX, "at most {ACTORS_MAX} actors");
        if bodies.is_empty() {
            return Vec::new();
        }
        {
            let mut state = self.shared.lock();
            assert!(state.running.is_none(), "one group of actors at a time");
            state.actors = vec![ActorState::Live; bodies.len()];
            state.blocked_streak = 0;
            state.deadlock = false;
        }
        std::thread::scope(|scope| {
            let handles: Vec<_> = bodies
                .into_iter()
                .enumerate()
                .map(|(actor, body)| {
                    let shared = Arc::clone(&self.shared);
                    // The actors' rare paths count in the run's recorder.
                    let recorder = mentedb_storage::rare_paths::Recorder::current();
                    scope.spawn(move || {
                        let _installed = recorder.as_ref().map(|recorder| recorder.install());
                        run_actor(shared, actor, body)
                    })
                })
                .collect();
            self.start_and_wait();
            handles
                .into_iter()
                .map(|handle| match handle.join() {
                    Ok(result) => result,
                    Err(_) => Err("actor thread died outside its body".to_string()),
                })
                .collect()
        })
    }

    /// Hands the first turn to an actor drawn from the schedule, then waits until every
    /// actor finished (giving up on a stall, see the module docs).
    fn start_and_wait(&self) {
        let mut state = self.shared.lock();
        let all: Vec<usize> = (0..state.actors.len()).collect();
        state.running = state.pick(&all);
        self.shared.turn.notify_all();
        let mut last_points = state.stats.points;
        loop {
            if state
                .actors
                .iter()
                .all(|actor| *actor == ActorState::Finished)
            {
                return;
            }
            let (next, timeout) = self
                .shared
                .turn
                .wait_timeout(state, Duration::from_secs(STALL_SECONDS))
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            state = next;
            if timeout.timed_out() && state.stats.points == last_points {
                eprintln!(
                    "simulation stalled: actor {:?} ran {STALL_SECONDS} s without reaching a \
                     scheduling point (it blocks outside the scheduler's hooks); stats {:?}",
                    state.running, state.stats
                );
                std::process::exit(3);
            }
            last_points = state.stats.points;
        }
    }
}

/// One actor's thread: waits for its first turn, runs its body with the hook installed,
/// then hands the turn on.
fn run_actor<T>(shared: Arc<Shared>, actor: usize, body: ActorBody<'_, T>) -> Result<T, String> {
    drop(shared.wait_turn(shared.lock(), actor));
    set_thread_scheduler(Some(Arc::new(ActorHook {
        shared: Arc::clone(&shared),
        actor,
    })));
    let result = catch_unwind(AssertUnwindSafe(body)).map_err(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| (*text).to_string()))
            .unwrap_or_else(|| "non-text panic".to_string())
    });
    set_thread_scheduler(None);
    let mut state = shared.lock();
    state.actors[actor] = ActorState::Finished;
    let live = state.live_except(actor);
    state.running = state.pick(&live);
    shared.turn.notify_all();
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use mentedb_storage::sched::{lock, now, yield_point};

    fn interleaving(seed: u64, switch_ppm: u32) -> (Vec<(usize, u32)>, ScheduleStats) {
        let schedule = Schedule::new(seed, switch_ppm);
        let log = Mutex::new(Vec::new());
        let bodies: Vec<ActorBody<'_, ()>> = (0..3)
            .map(|actor| {
                let log = &log;
                Box::new(move || {
                    for step in 0..50 {
                        yield_point(Point::Io);
                        lock(log).push((actor, step));
                    }
                }) as ActorBody<'_, ()>
            })
            .collect();
        for result in schedule.run(bodies) {
            result.unwrap();
        }
        (log.into_inner().unwrap(), schedule.stats())
    }

    #[test]
    fn the_same_seed_interleaves_the_same_way_and_another_seed_differently() {
        let (first, stats) = interleaving(7, 300_000);
        let (second, _) = interleaving(7, 300_000);
        assert_eq!(first, second);
        assert!(stats.switches > 10, "{stats:?}");
        let (other, _) = interleaving(8, 300_000);
        assert_ne!(first, other);
        assert_eq!(first.len(), 150);
    }

    #[test]
    fn a_blocked_actor_hands_the_turn_to_the_one_it_waits_for() {
        let schedule = Schedule::new(1, 0);
        let flag = std::sync::atomic::AtomicBool::new(false);
        let flag = &flag;
        let bodies: Vec<ActorBody<'_, u64>> = vec![
            Box::new(move || {
                let mut polls = 0;
                while !flag.load(std::sync::atomic::Ordering::Acquire) {
                    mentedb_storage::sched::pause();
                    polls += 1;
                }
                polls
            }),
            Box::new(move || {
                yield_point(Point::Io);
                flag.store(true, std::sync::atomic::Ordering::Release);
                0
            }),
        ];
        let results = schedule.run(bodies);
        assert!(results.iter().all(Result::is_ok));
        assert!(schedule.now() > Duration::ZERO);
    }

    #[test]
    fn a_deadlock_is_reported_as_panics_not_a_hang() {
        let schedule = Schedule::new(3, 500_000);
        let bodies: Vec<ActorBody<'_, ()>> = (0..2)
            .map(|_| {
                Box::new(|| {
                    let forever = std::sync::atomic::AtomicBool::new(true);
                    while forever.load(std::sync::atomic::Ordering::Relaxed) {
                        mentedb_storage::sched::pause();
                    }
                }) as ActorBody<'_, ()>
            })
            .collect();
        let results = schedule.run(bodies);
        for result in results {
            assert!(result.unwrap_err().contains("deadlock"));
        }
    }

    #[test]
    fn simulated_time_advances_one_microsecond_per_point() {
        let schedule = Schedule::new(5, 0);
        let bodies: Vec<ActorBody<'_, Duration>> = vec![Box::new(|| {
            let start = now();
            for _ in 0..10 {
                yield_point(Point::Io);
            }
            now() - start
        })];
        let results = schedule.run(bodies);
        assert_eq!(results[0].as_ref().unwrap(), &Duration::from_micros(10));
    }
}
