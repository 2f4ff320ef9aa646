//! The filesystem boundary: every byte the engine reads or writes goes through [`Vfs`] and
//! [`VfsFile`].
//!
//! Implementations:
//! - [`RealFs`]: `std::fs` files with positional I/O, `fdatasync` and `flock(2)` (via `fs2`).
//! - [`MemFs`]: an in-memory filesystem without faults, for unit tests.
//! - `SimFs` (package `mentedb-sim`): a seeded, fault-injecting disk. It implements these same
//!   traits, so the engine runs on it unchanged.
//!
//! # Contract
//!
//! The engine relies on exactly these promises, and a faithful implementation must keep them:
//! - Reads see every completed write to the same file from any handle in any process
//!   (a shared page cache), even before a sync.
//! - Nothing is durable until synced: file contents and length by [`VfsFile::sync_data`],
//!   directory entries (create, rename, remove) by [`Vfs::sync_dir`] on the parent directory.
//!   After a power loss any subset of unsynced writes may survive, possibly torn.
//! - A failed `sync_data` may have lost data even if a later retry succeeds (Linux
//!   semantics): the engine treats the first failure as fatal for the instance.
//! - Locks are advisory `flock(2)` locks held per open handle: two handles on the same file
//!   conflict even in one process, and every lock of a handle is released when it is dropped
//!   (or its process dies). Changing a held lock's mode is not atomic (as with `flock`): the
//!   old lock is dropped first, so a failed `try_lock` upgrade leaves the handle unlocked.
//!   The engine never upgrades: it takes the exclusive lock from no lock.
//! - Paths are the engine's own names joined to the database directory; a `Vfs` may treat
//!   them as opaque keys.

mod mem;
mod real;

pub use mem::MemFs;
pub use real::RealFs;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How [`Vfs::open_file`] treats a missing or existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing; fail with `NotFound` if it is missing.
    Existing,
    /// Open the file for reading and writing, creating it empty if it is missing.
    CreateOrOpen,
    /// Open an existing file for reading only; writes fail.
    ReadOnly,
}

/// The kind of advisory lock to take on a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Many holders at once, none exclusive.
    Shared,
    /// One holder, no shared holders.
    Exclusive,
}

/// A filesystem: opens files and changes directories. Shared between threads.
pub trait Vfs: Send + Sync + fmt::Debug {
    /// Opens `path` as described by `mode`.
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>>;
    /// Creates `path` and its missing parents as directories. Durable after `sync_dir` of
    /// each parent.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Removes a file. Durable after `sync_dir` of its directory.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file atomically, replacing `to` if it exists. Durable after `sync_dir`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Lists the entries of a directory, sorted by name (deterministic order).
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, path: &Path) -> io::Result<()>;
    /// True if `path` exists (file or directory).
    fn exists(&self, path: &Path) -> io::Result<bool>;
    /// The process this filesystem is used by, as lock holders are named in errors: the
    /// operating system's id; a simulated filesystem gives its simulated process.
    fn process_id(&self) -> u32 {
        std::process::id()
    }

    /// This boot of the machine, never 0: the page cache (and what it shows that the disk
    /// lacks after a failed sync) lives only within one. The default reads Linux's
    /// `/proc/sys/kernel/random/boot_id` once (1 where it cannot); a simulated filesystem
    /// counts its power losses.
    fn boot_id(&self) -> u64 {
        static BOOT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
        *BOOT.get_or_init(|| {
            let text =
                std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
            let bytes = text.trim().as_bytes();
            let high = u64::from(crc32fast::hash(bytes));
            let mut reversed = bytes.to_vec();
            reversed.reverse();
            let low = u64::from(crc32fast::hash(&reversed));
            ((high << 32) | low).max(1)
        })
    }

    /// 64 random bits, for identities (a new database's id). The default draws them from
    /// the operating system's hash keys (`RandomState`); a simulated filesystem overrides it
    /// with its seeded generator so that runs replay.
    fn random_u64(&self) -> u64 {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(std::process::id().into());
        hasher.finish()
    }
}

/// An open file. All I/O is positional, so one handle is shared by many threads.
pub trait VfsFile: Send + Sync + fmt::Debug {
    /// Reads up to `buf.len()` bytes at `offset`; returns how many were read (0 at or past
    /// the end). May read fewer bytes than asked even before the end.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;
    /// Writes up to `buf.len()` bytes at `offset`, extending the file if needed; returns how
    /// many were written. May write fewer than asked.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
    /// Makes the file's contents and length durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// The current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends (with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Blocks until the lock is held by this handle.
    fn lock(&self, mode: LockMode) -> io::Result<()>;
    /// Takes the lock if no conflicting holder exists; returns whether it was taken.
    fn try_lock(&self, mode: LockMode) -> io::Result<bool>;
    /// Releases this handle's lock (no-op when it holds none).
    fn unlock(&self) -> io::Result<()>;

    /// Maps the first `len` bytes of the file, shared with every other handle and process
    /// (`mmap(MAP_SHARED)`), extending the file with zeros to `len` first. Reads and writes
    /// through the map are those of [`VfsFile::read_at`] and [`VfsFile::write_at`] (the
    /// page cache's bytes, never synced by the map), without a system call. `None` (the
    /// default) if the implementation cannot map: callers then use `read_at`/`write_at`.
    /// The file must never shrink below `len` while mapped.
    fn map_shared(&self, len: usize) -> io::Result<Option<Box<dyn SharedView>>> {
        let _ = len;
        Ok(None)
    }

    /// True if the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Reads exactly `buf.len()` bytes at `offset`, looping over short reads. Fails with
    /// `UnexpectedEof` if the file ends first.
    fn read_exact_at(&self, mut buf: &mut [u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.read_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("file ends before offset {}", offset + buf.len() as u64),
                    ));
                }
                Ok(count) => {
                    buf = &mut buf[count..];
                    offset += count as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Writes all of `buf` at `offset`, looping over short writes.
    fn write_all_at(&self, mut buf: &[u8], mut offset: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match self.write_at(buf, offset) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "write returned zero bytes",
                    ));
                }
                Ok(count) => {
                    buf = &buf[count..];
                    offset += count as u64;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// The start of a file mapped by [`VfsFile::map_shared`].
pub trait SharedView: Send + Sync + fmt::Debug {
    /// Bytes mapped.
    fn len(&self) -> usize;
    /// Copies the mapped bytes at `offset..offset + buf.len()` into `buf`; false (and `buf`
    /// unchanged) if they are not all mapped. Another process may be writing them: a copy
    /// can mix old and new bytes, as a `pread` racing a `pwrite` can.
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool;
    /// Copies `bytes` into the mapping at `offset`; false (and nothing written) if they do
    /// not all fit. A reader may see some of them before the others, as with a `pwrite`;
    /// everything written before this call is visible to a reader that sees any of them.
    fn write(&self, offset: usize, bytes: &[u8]) -> bool;
    /// True if nothing is mapped.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// How an engine opens the files of a database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Access {
    /// Create what is missing, recover, write.
    #[default]
    ReadWrite,
    /// Open existing files read-only; create, change and sync nothing.
    ReadOnly,
}

/// Opens `path` as `access` says: read-write (created if missing), or read-only, in which
/// case a missing file (`wal.log`, `wal.shm` of a database whose log was never started, or
/// on a read-only copy) reads as an empty file kept in memory: nothing is created on disk.
pub fn open_for(
    vfs: &dyn Vfs,
    path: &Path,
    access: Access,
    missing_is_empty: bool,
) -> io::Result<Box<dyn VfsFile>> {
    match access {
        Access::ReadWrite => vfs.open_file(path, OpenMode::CreateOrOpen),
        Access::ReadOnly => match vfs.open_file(path, OpenMode::ReadOnly) {
            Err(error) if missing_is_empty && error.kind() == io::ErrorKind::NotFound => {
                let empty = MemFs::new();
                let name = Path::new("/empty");
                empty.open_file(name, OpenMode::CreateOrOpen)
            }
            other => other,
        },
    }
}

/// The check every [`VfsFile`] implementation makes before changing a file: a handle opened
/// with [`OpenMode::ReadOnly`] refuses with `PermissionDenied`.
pub fn check_writable(writable: bool) -> io::Result<()> {
    if writable {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "file handle was opened read-only",
        ))
    }
}

/// Bytes [`rewrite_prefix`] moves per call.
const REWRITE_CHUNK_BYTES: usize = 1 << 20;

/// Re-issues `file`'s current length and rewrites its first `prefix_len` bytes with what
/// reads return, so a following sync really writes them. After a failed `fdatasync` Linux
/// marks the lost pages clean while the page cache still shows their new contents: a later
/// sync would report success without writing them. Rewriting makes them dirty again.
pub fn rewrite_prefix(file: &dyn VfsFile, prefix_len: u64) -> io::Result<()> {
    rewrite_range(file, 0, prefix_len)
}

/// [`rewrite_prefix`] of the bytes from `start` to `end` (both clipped to the length).
/// Only what may not be durable should be rewritten: a power cut during the rewrite may
/// tear what it rewrites, durable or not.
pub fn rewrite_range(file: &dyn VfsFile, start: u64, end: u64) -> io::Result<()> {
    let len = file.len()?;
    file.set_len(len)?;
    let end = end.min(len);
    let mut buffer = vec![0u8; REWRITE_CHUNK_BYTES];
    let mut offset = start;
    while offset < end {
        let count = (end - offset).min(REWRITE_CHUNK_BYTES as u64) as usize;
        file.read_exact_at(&mut buffer[..count], offset)?;
        file.write_all_at(&buffer[..count], offset)?;
        offset += count as u64;
    }
    Ok(())
}

/// A shareable filesystem handle, as stored in [`crate::Options`].
pub type SharedVfs = Arc<dyn Vfs>;
