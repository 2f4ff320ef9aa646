//! [`MemFs`]: an in-memory filesystem without faults, for unit tests and as an executable
//! model of the contract in [`crate::vfs`].
//!
//! # What it owns
//!
//! One shared namespace per [`MemFs`] (clones share it): a `BTreeMap` from normalized path to
//! file contents, and a `BTreeSet` of directories, so listings are deterministic. A file's
//! contents live in an inode shared by every handle opened on it; each
//! [`Vfs::open_file`] returns a new handle with its own lock identity onto that inode.
//!
//! # What it promises
//!
//! - Every completed write is visible at once to every handle of the file (the contract's
//!   shared page cache). Nothing is ever lost: `sync_data` and `sync_dir` are no-ops because
//!   there is no power loss to survive.
//! - Writing or extending past the end fills the gap with zeros. A file may not grow beyond
//!   4 GiB (`FILE_BYTES_MAX`); going over fails with `FileTooLarge` instead of allocating.
//! - Opening a file whose parent directory does not exist fails with `NotFound`; handles
//!   opened with [`OpenMode::ReadOnly`] refuse writes and `set_len` with `PermissionDenied`.
//! - `remove_file` and `rename` change names only: open handles keep their inode, like
//!   `unlink(2)` on POSIX. `rename` replaces its target and renames files only.
//! - Locks follow `flock(2)` between handles: shared holders coexist, an exclusive holder
//!   excludes everyone else, a handle never conflicts with itself, and dropping a handle
//!   releases its lock. Locking again with the other mode converts the lock the way Linux
//!   does: the old lock is dropped first, so a failed `try_lock` upgrade leaves the handle
//!   holding nothing, and two shared holders upgrading at once cannot deadlock.
//!
//! Paths are normalized lexically (`.` dropped, `..` pops the previous component); they are
//! never resolved against the process's working directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use super::{LockMode, OpenMode, Vfs, VfsFile};

/// The largest file [`MemFs`] holds, in bytes. Keeps a stray write at a huge offset from
/// trying to allocate the whole address space.
const FILE_BYTES_MAX: u64 = 1 << 32;

/// An in-memory filesystem. Cloning it yields another handle onto the same files.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    namespace: Arc<Mutex<Namespace>>,
}

/// The names of a [`MemFs`]: which paths are files (and which inode each names) and which
/// are directories.
#[derive(Debug, Default)]
struct Namespace {
    files: BTreeMap<PathBuf, Arc<Inode>>,
    directories: BTreeSet<PathBuf>,
    handle_id_next: u64,
}

/// One file's contents and lock table, shared by all its handles.
#[derive(Debug, Default)]
struct Inode {
    bytes: Mutex<Vec<u8>>,
    locks: Mutex<LockTable>,
    /// Signalled whenever a lock is released, waking blocked [`VfsFile::lock`] calls.
    lock_released: Condvar,
}

/// Who holds the `flock` of one file, by handle id.
#[derive(Debug, Default)]
struct LockTable {
    shared_holders: BTreeSet<u64>,
    exclusive_holder: Option<u64>,
}

/// An open handle of [`MemFs`]. Its id is its lock identity.
struct MemFile {
    handle_id: u64,
    inode: Arc<Inode>,
    writable: bool,
}

impl MemFs {
    /// Returns an empty filesystem (no files; every root directory exists).
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The current contents of the file at `path`, or `None` if no file has that name.
    #[must_use]
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let namespace = self.namespace();
        let inode = namespace.files.get(&normalize(path))?;
        Some(inode.bytes().clone())
    }

    /// Replaces the contents of the file at `path` with `bytes`, as another process writing
    /// the file would: open handles see the new bytes. Creates the file, and any missing
    /// parent directories, if it does not exist. Meant for tests that corrupt files.
    ///
    /// # Panics
    ///
    /// If `path` names a directory: that is a bug in the calling test.
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) {
        let path = normalize(path);
        let mut namespace = self.namespace();
        assert!(
            !namespace.is_directory(&path),
            "set_file_bytes on directory {}",
            path.display()
        );
        if let Some(parent) = path.parent() {
            namespace.add_directory_and_ancestors(parent);
        }
        let inode = namespace.files.entry(path).or_default();
        *inode.bytes() = bytes;
    }

    fn namespace(&self) -> MutexGuard<'_, Namespace> {
        self.namespace
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Vfs for MemFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let path = normalize(path);
        let mut namespace = self.namespace();
        let inode = match namespace.files.get(&path) {
            Some(inode) => Arc::clone(inode),
            None => namespace.create_file(&path, mode)?,
        };
        let handle_id = namespace.handle_id_next;
        namespace.handle_id_next += 1;
        Ok(Box::new(MemFile {
            handle_id,
            inode,
            writable: mode != OpenMode::ReadOnly,
        }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut namespace = self.namespace();
        if namespace.files.contains_key(&path) {
            return Err(error(io::ErrorKind::AlreadyExists, "is a file", &path));
        }
        if let Some(file) = path.ancestors().find(|a| namespace.files.contains_key(*a)) {
            return Err(error(io::ErrorKind::NotADirectory, "is a file", file));
        }
        namespace.add_directory_and_ancestors(&path);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut namespace = self.namespace();
        if namespace.files.remove(&path).is_some() {
            return Ok(());
        }
        if namespace.is_directory(&path) {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory", &path));
        }
        Err(error(io::ErrorKind::NotFound, "no such file", &path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalize(from), normalize(to));
        let mut namespace = self.namespace();
        if namespace.is_directory(&from) {
            let message = "renaming directories is not supported";
            return Err(error(io::ErrorKind::Unsupported, message, &from));
        }
        if !namespace.files.contains_key(&from) {
            return Err(error(io::ErrorKind::NotFound, "no such file", &from));
        }
        namespace.check_can_hold_file(&to)?;
        if let Some(inode) = namespace.files.remove(&from) {
            namespace.files.insert(to, inode);
        }
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let path = normalize(path);
        let namespace = self.namespace();
        if namespace.files.contains_key(&path) {
            return Err(error(io::ErrorKind::NotADirectory, "is a file", &path));
        }
        if !namespace.is_directory(&path) {
            return Err(error(io::ErrorKind::NotFound, "no such directory", &path));
        }
        let files = namespace.files.keys();
        let mut entries: Vec<PathBuf> = files
            .chain(namespace.directories.iter())
            .filter(|entry| entry.parent() == Some(path.as_path()))
            .cloned()
            .collect();
        entries.sort();
        Ok(entries)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        if self.namespace().is_directory(&path) {
            Ok(())
        } else {
            Err(error(io::ErrorKind::NotFound, "no such directory", &path))
        }
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let path = normalize(path);
        let namespace = self.namespace();
        Ok(namespace.files.contains_key(&path) || namespace.is_directory(&path))
    }
}

impl Namespace {
    /// True for a directory made by `create_dir_all`, or a root (`/` or the empty path),
    /// which always exists.
    fn is_directory(&self, path: &Path) -> bool {
        path.parent().is_none() || self.directories.contains(path)
    }

    fn add_directory_and_ancestors(&mut self, path: &Path) {
        for ancestor in path.ancestors().filter(|a| a.parent().is_some()) {
            self.directories.insert(ancestor.to_path_buf());
        }
    }

    /// Fails unless a file may be created or replaced at `path`: its parent must be a
    /// directory and `path` itself must not be one.
    fn check_can_hold_file(&self, path: &Path) -> io::Result<()> {
        if self.is_directory(path) {
            return Err(error(io::ErrorKind::IsADirectory, "is a directory", path));
        }
        match path.parent() {
            Some(parent) if self.is_directory(parent) => Ok(()),
            _ => Err(error(io::ErrorKind::NotFound, "no parent directory", path)),
        }
    }

    /// Creates the missing file at `path` if `mode` allows it.
    fn create_file(&mut self, path: &Path, mode: OpenMode) -> io::Result<Arc<Inode>> {
        if mode != OpenMode::CreateOrOpen {
            if self.is_directory(path) {
                return Err(error(io::ErrorKind::IsADirectory, "is a directory", path));
            }
            return Err(error(io::ErrorKind::NotFound, "no such file", path));
        }
        self.check_can_hold_file(path)?;
        let inode = Arc::new(Inode::default());
        self.files.insert(path.to_path_buf(), Arc::clone(&inode));
        Ok(inode)
    }
}

impl Inode {
    fn bytes(&self) -> MutexGuard<'_, Vec<u8>> {
        self.bytes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn locks(&self) -> MutexGuard<'_, LockTable> {
        self.locks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl LockTable {
    fn mode_of(&self, handle_id: u64) -> Option<LockMode> {
        if self.exclusive_holder == Some(handle_id) {
            Some(LockMode::Exclusive)
        } else if self.shared_holders.contains(&handle_id) {
            Some(LockMode::Shared)
        } else {
            None
        }
    }

    /// Drops `handle_id`'s lock; returns whether it held one.
    fn release(&mut self, handle_id: u64) -> bool {
        if self.exclusive_holder == Some(handle_id) {
            self.exclusive_holder = None;
            return true;
        }
        self.shared_holders.remove(&handle_id)
    }

    /// Whether `mode` can be granted given the current holders (the caller holds nothing).
    fn can_grant(&self, mode: LockMode) -> bool {
        match mode {
            LockMode::Shared => self.exclusive_holder.is_none(),
            LockMode::Exclusive => {
                self.exclusive_holder.is_none() && self.shared_holders.is_empty()
            }
        }
    }

    fn grant(&mut self, handle_id: u64, mode: LockMode) {
        debug_assert!(self.mode_of(handle_id).is_none());
        debug_assert!(self.can_grant(mode));
        match mode {
            LockMode::Shared => {
                self.shared_holders.insert(handle_id);
            }
            LockMode::Exclusive => self.exclusive_holder = Some(handle_id),
        }
        assert!(self.exclusive_holder.is_none() || self.shared_holders.is_empty());
    }
}

impl MemFile {
    fn check_writable(&self) -> io::Result<()> {
        super::check_writable(self.writable)
    }

    /// Takes `mode`, waiting for conflicting holders to leave if `wait`; returns whether the
    /// lock is now held. A held lock of the other mode is dropped first, as `flock` does.
    fn acquire(&self, mode: LockMode, wait: bool) -> bool {
        let mut table = self.inode.locks();
        if table.mode_of(self.handle_id) == Some(mode) {
            return true;
        }
        if table.release(self.handle_id) {
            self.inode.lock_released.notify_all();
        }
        while !table.can_grant(mode) {
            if !wait {
                return false;
            }
            table = self
                .inode
                .lock_released
                .wait(table)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        table.grant(self.handle_id, mode);
        true
    }

    fn release(&self) {
        if self.inode.locks().release(self.handle_id) {
            self.inode.lock_released.notify_all();
        }
    }
}

impl VfsFile for MemFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let bytes = self.inode.bytes();
        let Some(available) = usize::try_from(offset).ok().and_then(|o| bytes.get(o..)) else {
            return Ok(0);
        };
        let count = buf.len().min(available.len());
        buf[..count].copy_from_slice(&available[..count]);
        Ok(count)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.check_writable()?;
        let end = checked_end(offset, buf.len())?;
        let mut bytes = self.inode.bytes();
        if bytes.len() < end {
            bytes.resize(end, 0);
        }
        // `end` fits in usize, so `offset` does too.
        let start = end - buf.len();
        bytes[start..end].copy_from_slice(buf);
        Ok(buf.len())
    }

    fn sync_data(&self) -> io::Result<()> {
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        Ok(self.inode.bytes().len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.check_writable()?;
        let len = checked_end(len, 0)?;
        self.inode.bytes().resize(len, 0);
        Ok(())
    }

    fn lock(&self, mode: LockMode) -> io::Result<()> {
        let acquired = self.acquire(mode, true);
        debug_assert!(acquired);
        Ok(())
    }

    fn try_lock(&self, mode: LockMode) -> io::Result<bool> {
        Ok(self.acquire(mode, false))
    }

    fn unlock(&self) -> io::Result<()> {
        self.release();
        Ok(())
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        self.release();
    }
}

impl fmt::Debug for MemFile {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("MemFile")
            .field("handle_id", &self.handle_id)
            .field("writable", &self.writable)
            .finish_non_exhaustive()
    }
}

/// The end offset of `count` bytes at `offset`, if the file may reach it.
fn checked_end(offset: u64, count: usize) -> io::Result<usize> {
    offset
        .checked_add(count as u64)
        .filter(|end| *end <= FILE_BYTES_MAX)
        .and_then(|end| usize::try_from(end).ok())
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::FileTooLarge,
                format!("file would exceed {FILE_BYTES_MAX} bytes"),
            )
        })
}

/// `path` with `.` components dropped and each `..` cancelling the component before it.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => match normalized.components().next_back() {
                Some(Component::Normal(_)) => {
                    normalized.pop();
                }
                // `/..` is `/`, as the kernel has it.
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => normalized.push(component),
            },
            other => normalized.push(other),
        }
    }
    normalized
}

fn error(kind: io::ErrorKind, message: &str, path: &Path) -> io::Error {
    io::Error::new(kind, format!("{message}: {}", path.display()))
}

#[cfg(test)]
#[path = "mem_tests.rs"]
mod tests;
