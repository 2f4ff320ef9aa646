//! Deterministic simulation for `mentedb-storage` (work in progress: see issue 3).
