//! Failpoints at the crash-critical steps of the real-file path, for `tests/failpoints.rs`.
//!
//! Built only with the cargo feature `failpoints` (the `fail` crate); without it
//! [`check`] is an inlined `Ok(())` and costs nothing. Each point is a place where a real
//! process can die or a real call can fail, so a test can make it return an error (the
//! engine's error path runs) or panic (with a panic hook that aborts: a process death).
//!
//! | name | where |
//! |---|---|
//! | `wal.append.before` | a commit's frames are about to be written |
//! | `wal.append.after` | frames written, not yet synced |
//! | `wal.sync.before` | the group-commit leader is about to `fdatasync` the WAL |
//! | `wal.sync.after` | the sync returned, commits not yet acknowledged |
//! | `wal.reset.truncated` | a WAL reset emptied the log durably, header not yet written |
//! | `checkpoint.pages_written` | checkpoint pages written to `pages.db`, not synced |
//! | `checkpoint.pages_synced` | pages durable, meta page not yet written |
//! | `checkpoint.meta_synced` | new meta page durable, WAL not yet reset |
//! | `open.locked` | open holds the writer lock, recovery not started |
//! | `open.recovered` | recovery read the WAL, its tail not yet synced |

use std::io;

/// Every failpoint name, in the order of the table above.
pub const NAMES: [&str; 10] = [
    "wal.append.before",
    "wal.append.after",
    "wal.sync.before",
    "wal.sync.after",
    "wal.reset.truncated",
    "checkpoint.pages_written",
    "checkpoint.pages_synced",
    "checkpoint.meta_synced",
    "open.locked",
    "open.recovered",
];

/// Evaluates failpoint `name`: `Err` when a test configured it to return, a panic when
/// configured to panic, else `Ok(())`.
#[cfg(feature = "failpoints")]
pub fn check(name: &str) -> io::Result<()> {
    debug_assert!(NAMES.contains(&name), "unlisted failpoint {name}");
    fail::fail_point!(name, |_| Err(io::Error::other(format!("failpoint {name}"))));
    Ok(())
}

/// Evaluates failpoint `name`: always `Ok(())` without the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn check(_name: &str) -> io::Result<()> {
    Ok(())
}
