//! [`RealFs`]: the operating system's filesystem behind the [`Vfs`] traits.
//!
//! This module owns the mapping from the contract in [`crate::vfs`] to system calls:
//! positional `pread`/`pwrite` (`std::os::unix::fs::FileExt`), `fdatasync`
//! ([`File::sync_data`]), `fsync` on an opened directory for [`Vfs::sync_dir`], and `flock(2)`
//! through the `fs2` crate. It adds no buffering or caching of its own, so the kernel's page
//! cache gives the "reads see every completed write" promise, and durability is exactly what
//! the kernel grants for these calls.
//!
//! Lock conversion follows `flock(2)`: locking again with the other mode converts the lock,
//! and the kernel drops the old lock before it tries to take the new one. A failed
//! [`VfsFile::try_lock`] upgrade may therefore leave the handle holding no lock at all.
//!
//! Errors are the operating system's, unchanged, so callers can match on their kind.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use super::{LockMode, OpenMode, SharedView, Vfs, VfsFile};
use std::os::fd::AsRawFd as _;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering, fence};

/// The real filesystem. Stateless: every call goes straight to `std::fs`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealFs;

impl RealFs {
    /// Returns the real filesystem.
    #[must_use]
    pub const fn new() -> Self {
        RealFs
    }
}

impl Vfs for RealFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let file = open_options(mode).open(path)?;
        Ok(Box::new(RealFile { file }))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        fs::create_dir_all(path)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let mut entries = fs::read_dir(path)?
            .map(|entry| entry.map(|entry| entry.path()))
            .collect::<io::Result<Vec<PathBuf>>>()?;
        entries.sort();
        Ok(entries)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        path.try_exists()
    }
}

/// The `OpenOptions` for each [`OpenMode`].
fn open_options(mode: OpenMode) -> OpenOptions {
    let mut options = OpenOptions::new();
    match mode {
        OpenMode::Existing => options.read(true).write(true),
        OpenMode::CreateOrOpen => options.read(true).write(true).create(true),
        OpenMode::ReadOnly => options.read(true),
    };
    options
}

/// An open file of [`RealFs`]. Its `flock` is released when the descriptor closes on drop.
#[derive(Debug)]
struct RealFile {
    file: File,
}

impl VfsFile for RealFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.file.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.file.write_at(buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The end of the file by `lseek(SEEK_END)`, not `fstat`: since Linux 6.13 (multigrain
    /// timestamps) a `stat` that reads a file's times makes the next write take a fresh
    /// timestamp and dirty the inode, and the `fdatasync` after it then writes the inode
    /// too. On this project's disk that made an overwrite + `fdatasync` loop 30 % slower
    /// (~11,500/s → ~8,100/s with one `fstat` per round; `lseek` costs nothing). The file
    /// offset it moves is never used: every read and write here is positional.
    fn len(&self) -> io::Result<u64> {
        use std::io::Seek as _;
        (&self.file).seek(io::SeekFrom::End(0))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.file.set_len(len)
    }

    fn map_shared(&self, len: usize) -> io::Result<Option<Box<dyn SharedView>>> {
        if self.len()? < len as u64 {
            self.file.set_len(len as u64)?;
        }
        Ok(Some(Box::new(SharedMap::new(&self.file, len)?)))
    }

    // `std::fs::File` has inherent lock methods of the same names since Rust 1.89, so the
    // `fs2` calls are spelled out in full to make sure `fs2` is the one called.
    fn lock(&self, mode: LockMode) -> io::Result<()> {
        match mode {
            LockMode::Shared => fs2::FileExt::lock_shared(&self.file),
            LockMode::Exclusive => fs2::FileExt::lock_exclusive(&self.file),
        }
    }

    fn try_lock(&self, mode: LockMode) -> io::Result<bool> {
        let result = match mode {
            LockMode::Shared => fs2::FileExt::try_lock_shared(&self.file),
            LockMode::Exclusive => fs2::FileExt::try_lock_exclusive(&self.file),
        };
        match result {
            Ok(()) => Ok(true),
            Err(error) if is_lock_contended(&error) => Ok(false),
            Err(error) => Err(error),
        }
    }

    fn unlock(&self) -> io::Result<()> {
        fs2::FileExt::unlock(&self.file)
    }
}

/// True if `error` means "another holder has a conflicting lock" rather than a failure.
fn is_lock_contended(error: &io::Error) -> bool {
    error.kind() == io::ErrorKind::WouldBlock
        || error.raw_os_error() == fs2::lock_contended_error().raw_os_error()
}

#[cfg(test)]
#[path = "real_tests.rs"]
mod tests;

/// A `MAP_SHARED` mapping of the start of a file: the only `unsafe` code of the crate. The
/// pages are the page cache's, so they show every write to the file at once, and what is
/// written here is what a `pread` of the file returns. Bytes are read and written with
/// atomic operations, since other processes access them concurrently.
#[derive(Debug)]
struct SharedMap {
    start: NonNull<u8>,
    len: usize,
}

// SAFETY: this process accesses the mapping only through atomic operations; it stays valid
// until `drop`, whichever thread drops it.
unsafe impl Send for SharedMap {}
// SAFETY: as above: concurrent reads of shared memory through atomics are sound.
unsafe impl Sync for SharedMap {}

impl SharedMap {
    fn new(file: &File, len: usize) -> io::Result<SharedMap> {
        if len == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "cannot map zero bytes",
            ));
        }
        // SAFETY: a fresh mapping (no address hint) of `len` bytes of an open descriptor;
        // the kernel checks the descriptor and the length and returns MAP_FAILED on error.
        let address = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if address == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let start = NonNull::new(address.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null address"))?;
        Ok(SharedMap { start, len })
    }
}

impl SharedView for SharedMap {
    fn len(&self) -> usize {
        self.len
    }

    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        for (index, byte) in buf.iter_mut().enumerate() {
            // SAFETY: `offset + index < len`, inside the live, readable and writable mapping;
            // `AtomicU8` has the alignment and size of `u8`, and this process only accesses
            // the mapping atomically.
            *byte = unsafe { AtomicU8::from_ptr(self.start.as_ptr().add(offset + index)) }
                .load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        true
    }

    fn write(&self, offset: usize, bytes: &[u8]) -> bool {
        if offset
            .checked_add(bytes.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        fence(Ordering::Release);
        for (index, byte) in bytes.iter().enumerate() {
            // SAFETY: as in `read`: inside the live, writable mapping, accessed atomically.
            unsafe { AtomicU8::from_ptr(self.start.as_ptr().add(offset + index)) }
                .store(*byte, Ordering::Relaxed);
        }
        true
    }
}

impl Drop for SharedMap {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the region `new` mapped, once; nothing reads it afterwards
        // (`read` borrows `self`). A failure would only leak the mapping.
        unsafe {
            libc::munmap(self.start.as_ptr().cast(), self.len);
        }
    }
}
