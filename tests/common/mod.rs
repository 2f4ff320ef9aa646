//! Test support: a fault-injecting wrapper around `MemFs`.
//!
//! `FaultFs` counts mutating calls (write, set_len, sync, directory changes). From the
//! `crash_after`-th one on, every mutating call fails, as if the process had died there
//! (what it wrote before stays, like a page cache after SIGKILL). `fail_wal_sync_once`
//! makes the next `sync_data` of `wal.log` (or of `pages.db`) fail once, Linux style;
//! `fail_seal_reads` fails every read of `wal.seal`.

#![allow(dead_code)]

use mentedb_storage::vfs::{LockMode, MemFs, OpenMode, Vfs, VfsFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Faults {
    pub mutations: AtomicU64,
    pub crash_after: AtomicU64,
    pub fail_wal_sync: AtomicBool,
    pub fail_pages_sync: AtomicBool,
    /// Every read of `wal.seal` fails (EIO) while set.
    pub fail_seal_reads: AtomicBool,
}

impl Faults {
    pub fn new() -> Arc<Faults> {
        let faults = Faults::default();
        faults.crash_after.store(u64::MAX, Ordering::SeqCst);
        Arc::new(faults)
    }

    fn mutate(&self) -> io::Result<()> {
        let count = self.mutations.fetch_add(1, Ordering::SeqCst);
        if count >= self.crash_after.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated process death"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
pub struct FaultFs {
    pub inner: MemFs,
    pub faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultFile {
    inner: Box<dyn VfsFile>,
    faults: Arc<Faults>,
    name: String,
}

impl FaultFs {
    pub fn new(inner: MemFs) -> FaultFs {
        FaultFs {
            inner,
            faults: Faults::new(),
        }
    }
}

impl Vfs for FaultFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        Ok(Box::new(FaultFile {
            inner: self.inner.open_file(path, mode)?,
            faults: Arc::clone(&self.faults),
            name: path
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }))
    }
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        self.inner.create_dir_all(path)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.faults.mutate()?;
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.mutate()?;
        self.inner.rename(from, to)
    }
    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        self.faults.mutate()?;
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> io::Result<bool> {
        self.inner.exists(path)
    }
}

impl VfsFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        if self.name == "wal.seal" && self.faults.fail_seal_reads.load(Ordering::SeqCst) {
            return Err(io::Error::other("simulated read failure (EIO)"));
        }
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.faults.mutate()?;
        self.inner.write_at(buf, offset)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.faults.mutate()?;
        let flag = match self.name.as_str() {
            "wal.log" => &self.faults.fail_wal_sync,
            "pages.db" => &self.faults.fail_pages_sync,
            _ => return self.inner.sync_data(),
        };
        if flag.swap(false, Ordering::SeqCst) {
            return Err(io::Error::other("simulated fsync failure (EIO)"));
        }
        self.inner.sync_data()
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.mutate()?;
        self.inner.set_len(len)
    }
    fn lock(&self, mode: LockMode) -> io::Result<()> {
        self.inner.lock(mode)
    }
    fn try_lock(&self, mode: LockMode) -> io::Result<bool> {
        self.inner.try_lock(mode)
    }
    fn unlock(&self) -> io::Result<()> {
        self.inner.unlock()
    }
}
