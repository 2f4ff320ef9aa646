//! Deterministic simulation for `mentedb-storage` (work in progress: see issue 3).

pub mod model;
pub mod oracle;
pub mod simfs;
pub mod workload;
