//! Deterministic simulation for `mentedb-storage` (work in progress: see issue 3).

pub mod campaign;
pub mod model;
pub mod oracle;
pub mod runner;
pub mod simfs;
pub mod trace;
pub mod workload;
