//! Deterministic simulation for `mentedb-storage`.
//!
//! - [`simfs`]: `SimFs`, a seeded disk that loses, tears, reorders and corrupts unsynced
//!   data, kills processes and fails I/O on purpose; it implements the library's `Vfs`, so
//!   the engine (or your code on top of it) runs on it unchanged.
//! - [`workload`]: the seeded operations of a run; [`model`]: what the database must hold;
//!   [`oracle`]: the rules a recovered engine is checked against (DESIGN.md §8).
//! - [`sched`]: the deterministic scheduler that interleaves simulated threads and
//!   processes at every filesystem call and lock;
//! - [`runner`]: one run of one seed; [`campaign`]: many seeds and the summary table;
//!   [`trace`]: the trace hash that shows a replay is exact.
//!
//! The binary `mentedb-sim` drives it: `--seed N` replays one run, `--seeds A..B` runs a
//! campaign (see the README).

pub mod campaign;
pub mod model;
pub mod oracle;
pub mod runner;
pub mod sched;
pub mod shrink;
pub mod simfs;
pub mod targets;
pub mod trace;
pub mod workload;
