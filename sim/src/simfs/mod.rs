//! [`SimFs`]: a seeded, deterministic disk that loses, tears, reorders and corrupts unsynced
//! data and fails I/O on purpose, shared by several simulated processes.
//!
//! # Fault model (DESIGN.md §7)
//!
//! Every file has a *live* image (what reads see: the page cache) and a *durable* image
//! (what survives a power loss for sure); the changes between them are kept in issue order.
//! 1. **Power loss** ([`SimFs::power_loss`], or armed with [`SimFs::cut_power_after`]):
//!    every process dies; names fall back to the last directory sync; per file, the
//!    [`Persistence`] profile decides which unsynced changes survive: `Strict` keeps any
//!    subset in any order and file lengths only from syncs, `Ordered` keeps a prefix in issue
//!    order with lengths following it. A surviving write may be torn per 512 B or 4 KiB
//!    piece into new, old and garbage bytes.
//! 2. **Process crash** ([`SimFs::kill_process`], or armed with
//!    [`SimFs::kill_process_after`]): the process's handles die (every later call fails),
//!    its `flock`s are released at once, the page cache (live images) survives.
//! 3. **Metadata**: creating, renaming and removing a name is durable only after
//!    `sync_dir` of its directory; a length change only after a sync of the file.
//!    Directories themselves are always durable (the engine creates its directory once).
//! 4. **I/O errors**: `EIO` on read or write (once, or persistent for that file and call
//!    kind until faults stop), `ENOSPC` on writes that grow a file, short reads and writes.
//! 5. **`fsync` failure with Linux semantics**: the call fails once, each unsynced change
//!    of the file either reached the disk or is lost, and the queue is emptied anyway: a
//!    retry returns Ok while the durable image lacks data the live image shows. As on
//!    Linux since 4.13, every other handle open on the file at the time gets the error
//!    once too, at its next sync.
//! 6. **Latent corruption**: a bit flip in stored bytes of `pages.db` or of the part of
//!    `wal.log` that was followed by another sync (damage there is provably detectable);
//!    gaps in files read back as garbage instead of zeros.
//! 7. **Misdirected writes**: a whole-page write to `pages.db` lands at another page's
//!    offset. The page it was meant for silently keeps its old contents (a *lost write*,
//!    which no checksum inside the page can reveal; [`SimFs::lost_page_write`] says it
//!    happened). Both pages are listed as damage (the landing one, on a meta slot, for the
//!    bytes a meta page is read from) until a later write of them reaches the disk, and a
//!    power loss that drops the misdirected write drops its damage.
//!
//! Rates come from a [`FaultConfig`] (swarm: drawn per seed). Every injected fault is
//! logged ([`SimFs::faults`]); damage not yet overwritten is listed by [`SimFs::damage`],
//! so a checker can demand that each was detected and that no corruption is reported
//! where none was injected.
//!
//! # Determinism
//!
//! All choices come from one `ChaCha8Rng` seeded with the run's seed; names and inodes are
//! kept in ordered maps; nothing reads the clock. Every call is a scheduling point
//! ([`mentedb_storage::sched`]): under the simulator's [`crate::sched::Schedule`] several
//! simulated threads and processes interleave at each call, as the seed chooses, and a
//! blocking [`VfsFile::lock`] yields until the holder releases the lock. A thread without
//! a scheduler gets `WouldBlock` from a lock that would wait (nothing could ever release
//! it while the only thread waits).
//!
//! # Using it to crash-test your own code
//!
//! ```
//! use mentedb_sim::simfs::{FaultConfig, SimFs};
//! use mentedb_storage::{Options, StorageEngine};
//! use std::path::Path;
//!
//! let disk = SimFs::new(42, FaultConfig::none());
//! let dir = Path::new("/db");
//! let engine = StorageEngine::open_with(dir, Options::default().vfs(disk.process(0)))?;
//! # let node = mentedb_storage::MemoryNode::new(
//! #     mentedb_storage::AgentId::new(), mentedb_storage::MemoryType::Episodic,
//! #     "hello".to_string(), vec![0.5]);
//! let id = engine.store_memory(&node)?; // durable on return
//! disk.power_loss(); // every process dies, unsynced data lost or torn
//! drop(engine);
//! disk.restart_process(0);
//! let engine = StorageEngine::open_with(dir, Options::default().vfs(disk.process(0)))?;
//! assert_eq!(engine.load_memory(id)?, node);
//! # Ok::<(), mentedb_storage::Error>(())
//! ```

mod disk;
pub mod faults;
mod file;
pub mod power;
pub mod wal_proof;

pub use disk::{FILE_BYTES_MAX, Pending, Pid};
pub use faults::{Damage, FaultConfig, FaultKind, FaultRecord, Persistence};
pub use power::{CrashPoint, Image};

use disk::{Call, Disk, Handle};
use file::SimFile;
use mentedb_storage::vfs::{OpenMode, SharedVfs, Vfs, VfsFile};
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use std::collections::BTreeMap;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// The simulated disk. Clones share it.
#[derive(Debug, Clone)]
pub struct SimFs {
    disk: Arc<Mutex<Disk>>,
}

impl SimFs {
    /// An empty disk whose every random choice derives from `seed`.
    pub fn new(seed: u64, config: FaultConfig) -> SimFs {
        let rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5349_4d46_5344_4953);
        SimFs {
            disk: Arc::new(Mutex::new(Disk::new(rng, config))),
        }
    }

    /// A disk holding exactly `image` (all of it durable).
    pub fn from_image(image: &Image, seed: u64, config: FaultConfig) -> SimFs {
        let fs = SimFs::new(seed, config);
        {
            let mut disk = fs.disk();
            disk.directories.extend(image.directories.iter().cloned());
            for (path, bytes) in &image.files {
                let id = disk.inode_next;
                disk.inode_next += 1;
                disk.inodes.insert(
                    id,
                    disk::Inode {
                        live: bytes.clone(),
                        durable: bytes.clone(),
                        synced_data_end: bytes.len() as u64,
                        ..disk::Inode::default()
                    },
                );
                disk.names.insert(path.clone(), id);
                disk.durable_names.insert(path.clone(), id);
            }
        }
        fs
    }

    fn disk(&self) -> MutexGuard<'_, Disk> {
        self.disk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The filesystem as process `pid` sees it: give it to an engine with
    /// [`mentedb_storage::Options::vfs`]. Every process shares files, page cache and locks.
    pub fn process(&self, pid: Pid) -> SharedVfs {
        self.disk().epochs.entry(pid).or_insert(0);
        Arc::new(ProcessFs {
            disk: Arc::clone(&self.disk),
            pid,
        })
    }

    /// Kills `pid` now (SIGKILL): its handles fail from now on, its locks are released.
    pub fn kill_process(&self, pid: Pid) {
        let mut disk = self.disk();
        disk.kill(pid);
        disk.record(FaultKind::ProcessCrash, "", 0);
    }

    /// Cuts `path` at a random offset from `keep` up to the end of its synced data, in the
    /// page cache and on disk, as a tool, a file system or a disk losing bytes the engine
    /// made durable would; recorded as injected damage ([`FaultKind::TailCut`]). `None` if
    /// nothing past `keep` was synced.
    pub fn cut_synced_tail(&self, path: &Path, keep: u64) -> Option<u64> {
        let mut disk = self.disk();
        let id = disk.lookup(&normalize(path))?;
        let end = disk.inodes.get(&id)?.synced_data_end;
        if end <= keep {
            return None;
        }
        let cut = keep + crate::workload::below(&mut disk.rng, end - keep);
        let inode = disk.inodes.get_mut(&id)?;
        inode.live.truncate(cut as usize);
        inode.durable.truncate(cut as usize);
        inode.pending.clear();
        inode.synced_data_end = inode.synced_data_end.min(cut);
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        disk.record(FaultKind::TailCut, &name, cut);
        Some(cut)
    }

    /// Flips bit `bit` of the byte at `offset` of `path`, on disk and in the page cache, as
    /// a damaged medium would; recorded as injected damage ([`FaultKind::BitFlip`]). For
    /// scenario tests that place a flip where a campaign draws it by chance. `None` if the
    /// byte is not on disk.
    pub fn flip_stored_bit(&self, path: &Path, offset: u64, bit: u8) -> Option<()> {
        let mut disk = self.disk();
        let id = disk.lookup(&normalize(path))?;
        let mask = 1u8 << (bit % 8);
        let inode = disk.inodes.get_mut(&id)?;
        *inode.durable.get_mut(offset as usize)? ^= mask;
        if let Some(byte) = inode.live.get_mut(offset as usize) {
            *byte ^= mask;
        }
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        disk.record(FaultKind::BitFlip, &name, offset);
        let seq = disk.next_seq();
        disk.damage.push(Damage {
            inode: id,
            file: name,
            offset,
            len: 1,
            kind: FaultKind::BitFlip,
            seq,
        });
        Some(())
    }

    /// Never damages files under `dir` at rest (see `Disk::spared`).
    pub fn spare_from_damage(&self, dir: &Path) {
        self.disk().spared.insert(normalize(dir));
    }

    /// Lets `pid` run again after a kill or power loss (its old handles stay dead).
    pub fn restart_process(&self, pid: Pid) {
        self.disk().restart(pid);
    }

    /// True while `pid` is dead.
    pub fn is_killed(&self, pid: Pid) -> bool {
        self.disk().killed.contains(&pid)
    }

    /// Kills `pid` at its `calls`-th filesystem call from now (1 = the next one).
    pub fn kill_process_after(&self, pid: Pid, calls: u64) {
        let mut disk = self.disk();
        let at = disk.io_calls + calls.max(1);
        disk.kill_at = Some((at, pid));
    }

    /// Cuts the power at the `calls`-th filesystem call from now. When it fires every
    /// process dies; call [`SimFs::power_loss`] afterwards to settle the disk.
    pub fn cut_power_after(&self, calls: u64) {
        let mut disk = self.disk();
        disk.power_cut_at = Some(disk.io_calls + calls.max(1));
    }

    /// Fails the `syncs`-th sync (1 = the next one) of the file named `file`, by any
    /// process, as a failed writeback does on Linux (fault 5 of the module docs), even with
    /// faults off.
    pub fn fail_sync_after(&self, file: &str, syncs: u64) {
        self.disk().sync_fail_at = Some((file.to_string(), syncs.max(1)));
    }

    /// Drops armed kill, power-cut and sync-failure triggers that did not fire.
    pub fn disarm(&self) {
        let mut disk = self.disk();
        disk.kill_at = None;
        disk.power_cut_at = None;
        disk.sync_fail_at = None;
    }

    /// True if an armed power cut fired and [`SimFs::power_loss`] has not run since.
    pub fn power_cut_fired(&self) -> bool {
        self.disk().power_cut
    }

    /// Cuts the power now (or settles a cut that fired): see the module docs.
    pub fn power_loss(&self) {
        self.disk().power_loss();
    }

    /// Switches injected faults (errors, corruption) on or off; crashes and power cuts the
    /// caller asks for still happen. Persistent errors end when faults stop.
    pub fn set_faults_active(&self, active: bool) {
        self.disk().set_faults_active(active);
    }

    /// Suspends (or resumes) injected faults without ending persistent errors: for checks
    /// that must observe the disk without changing what the run does next.
    pub fn pause_faults(&self, paused: bool) {
        self.disk().faults_paused = paused;
    }

    /// Every fault injected so far, in order.
    pub fn faults(&self) -> Vec<FaultRecord> {
        self.disk().log.clone()
    }

    /// Number of faults injected, by kind.
    pub fn fault_counts(&self) -> BTreeMap<FaultKind, u64> {
        let mut counts = BTreeMap::new();
        for record in &self.disk().log {
            *counts.entry(record.kind).or_insert(0) += 1;
        }
        counts
    }

    /// Injected damage that no durable overwrite has repaired yet.
    pub fn damage(&self) -> Vec<Damage> {
        self.disk().damage.clone()
    }

    /// True if any corruption was injected in this run (repaired or not).
    pub fn corruption_injected(&self) -> bool {
        self.disk()
            .log
            .iter()
            .any(|record| record.kind.is_corruption())
    }

    /// True if a misdirected write left a page silently stale.
    pub fn lost_page_write(&self) -> bool {
        self.disk().lost_page_write
    }

    /// Filesystem calls made so far (every process).
    pub fn io_calls(&self) -> u64 {
        self.disk().io_calls
    }

    /// The state a power cut right now would start from.
    pub fn capture(&self) -> CrashPoint {
        self.disk().capture()
    }

    /// Captures a [`CrashPoint`] just before a sync of the file named `file` (that has
    /// unsynced changes), with probability `ppm` per sync, at most `count` times; take them
    /// with [`SimFs::take_captured`]. Replaces the rule for that file; rules for other files
    /// stay (e.g. `wal.log` for commits and `pages.db` for checkpoints).
    pub fn capture_at_syncs(&self, file: &str, ppm: u32, count: usize) {
        let mut disk = self.disk();
        disk.capture_rules.retain(|rule| rule.file != file);
        disk.capture_rules.push(disk::CaptureRule {
            file: file.to_string(),
            ppm,
            remaining: count,
        });
    }

    /// Stops capturing at syncs of every file.
    pub fn stop_capturing(&self) {
        self.disk().capture_rules.clear();
    }

    /// Pauses (or resumes) capturing crash points.
    pub fn set_capture_paused(&self, paused: bool) {
        self.disk().capture_paused = paused;
    }

    /// The crash points captured since the last call.
    pub fn take_captured(&self) -> Vec<CrashPoint> {
        std::mem::take(&mut self.disk().captured)
    }

    /// The live contents of a file, if it exists.
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.disk();
        let id = disk.lookup(&normalize(path))?;
        disk.inodes.get(&id).map(|inode| inode.live.clone())
    }
}

/// One process's view of a [`SimFs`].
#[derive(Debug)]
pub struct ProcessFs {
    disk: Arc<Mutex<Disk>>,
    pid: Pid,
}

impl ProcessFs {
    /// Takes the disk lock, after a scheduling point (another simulated thread may run
    /// before this call).
    fn disk(&self) -> MutexGuard<'_, Disk> {
        mentedb_storage::sched::yield_point(mentedb_storage::sched::Point::Io);
        self.disk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Vfs for ProcessFs {
    fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn VfsFile>> {
        let path = normalize(path);
        let mut disk = self.disk();
        disk.enter(self.pid)?;
        let inode = match disk.lookup(&path) {
            Some(inode) => inode,
            None if mode == OpenMode::CreateOrOpen => {
                let parent = path.parent().unwrap_or(Path::new("/"));
                if !disk.directories.contains(parent) {
                    return Err(not_found("no parent directory", &path));
                }
                let id = disk.inode_next;
                disk.inode_next += 1;
                disk.inodes.insert(id, disk::Inode::default());
                disk.names.insert(path.clone(), id);
                id
            }
            None => return Err(not_found("no such file", &path)),
        };
        let handle_id = disk.handle_next;
        disk.handle_next += 1;
        let epoch = disk.epoch(self.pid);
        disk.handles.insert(
            handle_id,
            Handle {
                pid: self.pid,
                epoch,
                inode,
                unreported_error: false,
            },
        );
        let name = path
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Box::new(SimFile::new(
            Arc::clone(&self.disk),
            handle_id,
            inode,
            name,
            mode != OpenMode::ReadOnly,
        )))
    }

    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut disk = self.disk();
        disk.enter(self.pid)?;
        if disk.names.contains_key(&path) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, "is a file"));
        }
        for ancestor in path.ancestors() {
            disk.directories.insert(ancestor.to_path_buf());
        }
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut disk = self.disk();
        disk.enter(self.pid)?;
        disk.io_error(Call::Meta, "", 0)?;
        match disk.names.remove(&path) {
            Some(_) => Ok(()),
            None => Err(not_found("no such file", &path)),
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let (from, to) = (normalize(from), normalize(to));
        let mut disk = self.disk();
        disk.enter(self.pid)?;
        let parent = to.parent().unwrap_or(Path::new("/"));
        if !disk.directories.contains(parent) {
            return Err(not_found("no parent directory", &to));
        }
        let inode = disk
            .names
            .remove(&from)
            .ok_or_else(|| not_found("no such file", &from))?;
        disk.names.insert(to, inode);
        Ok(())
    }

    fn list_dir(&self, path: &Path) -> io::Result<Vec<PathBuf>> {
        let path = normalize(path);
        let mut disk = self.disk();
        disk.enter(self.pid)?;
        if !disk.directories.contains(&path) {
            return Err(not_found("no such directory", &path));
        }
        let mut entries: Vec<PathBuf> = disk
            .names
            .keys()
            .chain(disk.directories.iter())
            .filter(|entry| entry.parent() == Some(path.as_path()))
            .cloned()
            .collect();
        entries.sort();
        Ok(entries)
    }

    fn sync_dir(&self, path: &Path) -> io::Result<()> {
        let path = normalize(path);
        let mut disk = self.disk();
        disk.enter(self.pid)?;
        if !disk.directories.contains(&path) {
            return Err(not_found("no such directory", &path));
        }
        let in_dir = |entry: &Path| entry.parent() == Some(path.as_path());
        disk.durable_names.retain(|entry, _| !in_dir(entry));
        let live: Vec<(PathBuf, u64)> = disk
            .names
            .iter()
            .filter(|(entry, _)| in_dir(entry))
            .map(|(entry, id)| (entry.clone(), *id))
            .collect();
        disk.durable_names.extend(live);
        Ok(())
    }

    /// The simulated process (lock holders are named by it, the same in every replay).
    fn process_id(&self) -> u32 {
        u32::try_from(self.pid).unwrap_or(u32::MAX)
    }

    /// A power loss starts a new boot: the page cache is gone.
    fn boot_id(&self) -> u64 {
        self.disk().power_losses + 1
    }

    /// Drawn from the disk's seeded generator, so a run replays (a new database's id).
    fn random_u64(&self) -> u64 {
        use rand_chacha::rand_core::RngCore;
        self.disk().rng.next_u64()
    }

    fn exists(&self, path: &Path) -> io::Result<bool> {
        let path = normalize(path);
        let mut disk = self.disk();
        disk.enter(self.pid)?;
        Ok(disk.names.contains_key(&path) || disk.directories.contains(&path))
    }
}

/// `path` made absolute-looking and with `.`/`..` resolved lexically.
fn normalize(path: &Path) -> PathBuf {
    let mut normalized = PathBuf::from("/");
    for component in path.components() {
        match component {
            Component::Normal(part) => normalized.push(part),
            Component::ParentDir => {
                normalized.pop();
            }
            _ => {}
        }
    }
    normalized
}

fn not_found(message: &str, path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{message}: {}", path.display()),
    )
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
