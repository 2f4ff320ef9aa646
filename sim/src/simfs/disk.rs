//! The simulated disk's state: names, inodes with a live and a durable image, the unsynced
//! operations between them, locks, processes, and the fault log. Everything here runs under
//! the one mutex of [`super::SimFs`]; nothing here knows about threads.

use super::faults::{Damage, FaultConfig, FaultKind, FaultRecord};
use crate::workload::{below, chance};
use mentedb_storage::vfs::LockMode;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// The largest file the simulated disk holds (keeps a stray offset from allocating
/// without bound).
pub const FILE_BYTES_MAX: u64 = 1 << 32;

/// A simulated process id.
pub type Pid = usize;

/// One unsynced change of a file, kept until a sync makes it durable or a power loss
/// decides its fate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// Bytes written at an offset; `seq` orders writes across the disk.
    Write {
        offset: u64,
        bytes: Vec<u8>,
        seq: u64,
    },
    /// The length set (truncate or extend).
    SetLen(u64),
}

/// One file's contents.
#[derive(Debug, Clone, Default)]
pub struct Inode {
    /// What reads see (the page cache).
    pub live: Vec<u8>,
    /// What survives a power loss for sure.
    pub durable: Vec<u8>,
    /// Changes in `live` not yet in `durable`, in issue order.
    pub pending: Vec<Pending>,
    /// End of the furthest write of data (not all zeros) that a sync made durable. Zeros
    /// written ahead (the WAL's preallocation) prove nothing about the bytes before them.
    pub synced_data_end: u64,
    /// flock state: exclusive holder or shared holders, by handle id.
    pub exclusive: Option<u64>,
    pub shared: BTreeSet<u64>,
}

/// An open handle.
#[derive(Debug, Clone, Copy)]
pub struct Handle {
    pub pid: Pid,
    pub epoch: u64,
    pub inode: u64,
    /// A writeback error of the file this handle has not been told about yet (Linux
    /// reports a failed writeback once to every file description open at the time).
    pub unreported_error: bool,
}

/// A call that counts toward crash triggers and fault rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    Read,
    Write,
    SetLen,
    Meta,
}

/// The whole disk.
#[derive(Debug)]
pub struct Disk {
    pub rng: ChaCha8Rng,
    pub config: FaultConfig,
    /// Whether faults other than crashes are injected now.
    pub faults_active: bool,
    /// Set while a checker reads the disk: no fault fires, nothing else changes.
    pub faults_paused: bool,
    /// Directories whose files are never damaged at rest (bit flips): files the oracle
    /// does not judge (a second database, kept to check handles across databases).
    pub spared: BTreeSet<PathBuf>,
    pub names: BTreeMap<PathBuf, u64>,
    pub durable_names: BTreeMap<PathBuf, u64>,
    pub directories: BTreeSet<PathBuf>,
    pub inodes: BTreeMap<u64, Inode>,
    pub inode_next: u64,
    pub handles: BTreeMap<u64, Handle>,
    pub handle_next: u64,
    /// Per process: the current life (handles of an older life are dead) and whether the
    /// process is dead right now.
    pub epochs: BTreeMap<Pid, u64>,
    pub killed: BTreeSet<Pid>,
    /// Counts every call, for traces and triggers.
    pub io_calls: u64,
    /// Power losses so far: the boot the processes run in (`Vfs::boot_id` is one more).
    pub power_losses: u64,
    /// Kill `pid` when `io_calls` reaches the value.
    pub kill_at: Option<(u64, Pid)>,
    /// Cut the power when `io_calls` reaches the value.
    pub power_cut_at: Option<u64>,
    /// Fail the n-th sync (1 = the next) of the named file, with Linux semantics.
    pub sync_fail_at: Option<(String, u64)>,
    /// Set when a power cut happened and [`Disk::power_loss`] has not run yet.
    pub power_cut: bool,
    /// (file name, call kind) pairs failing with `EIO` until faults stop.
    pub persistent_errors: BTreeSet<(String, u8)>,
    pub log: Vec<FaultRecord>,
    pub damage: Vec<Damage>,
    /// Damage resolved by an overwrite that reached the durable image.
    pub damage_repaired: u64,
    /// Set when a misdirected write happened: the page it was meant for silently kept its
    /// old contents (a lost write no checksum can see).
    pub lost_page_write: bool,
    /// Sequence number of the last write issued.
    pub write_seq: u64,
    /// Where to capture crash points for exhaustive enumeration: one rule per file name.
    pub capture_rules: Vec<CaptureRule>,
    /// Crash points captured and not yet taken, in the order they were captured.
    pub captured: Vec<super::power::CrashPoint>,
    /// Set while capturing is paused.
    pub capture_paused: bool,
}

/// Crash points to capture just before syncs of one file.
#[derive(Debug, Clone, Default)]
pub struct CaptureRule {
    pub file: String,
    pub ppm: u32,
    pub remaining: usize,
}

impl Disk {
    /// True if this sync of `file` is the one [`Disk::sync_fail_at`] armed (which it then
    /// disarms); counts the syncs of that file down otherwise.
    fn armed_sync_failure(&mut self, file: &str) -> bool {
        match &mut self.sync_fail_at {
            Some((armed, remaining)) if armed == file => {
                *remaining -= 1;
                if *remaining == 0 {
                    self.sync_fail_at = None;
                    return true;
                }
                false
            }
            _ => false,
        }
    }
}

/// The error a dead process gets for every call.
pub fn killed_error() -> io::Error {
    io::Error::other("simulated process death: this process was killed")
}

impl Disk {
    pub fn new(rng: ChaCha8Rng, config: FaultConfig) -> Disk {
        let mut directories = BTreeSet::new();
        directories.insert(PathBuf::from("/"));
        Disk {
            rng,
            config,
            faults_active: true,
            faults_paused: false,
            spared: BTreeSet::new(),
            names: BTreeMap::new(),
            durable_names: BTreeMap::new(),
            directories,
            inodes: BTreeMap::new(),
            inode_next: 1,
            handles: BTreeMap::new(),
            handle_next: 1,
            epochs: BTreeMap::new(),
            killed: BTreeSet::new(),
            io_calls: 0,
            power_losses: 0,
            kill_at: None,
            power_cut_at: None,
            sync_fail_at: None,
            power_cut: false,
            persistent_errors: BTreeSet::new(),
            log: Vec::new(),
            damage: Vec::new(),
            damage_repaired: 0,
            lost_page_write: false,
            write_seq: 0,
            capture_rules: Vec::new(),
            captured: Vec::new(),
            capture_paused: false,
        }
    }

    pub fn record(&mut self, kind: FaultKind, file: &str, offset: u64) {
        self.log.push(FaultRecord {
            io_call: self.io_calls,
            kind,
            file: file.to_string(),
            offset,
        });
    }

    pub fn epoch(&self, pid: Pid) -> u64 {
        self.epochs.get(&pid).copied().unwrap_or(0)
    }

    /// Counts a call by `pid` and fires a due crash trigger. `Err` if the process is (now)
    /// dead; the caller must not change anything then.
    pub fn enter(&mut self, pid: Pid) -> io::Result<()> {
        if self.killed.contains(&pid) || self.power_cut {
            return Err(killed_error());
        }
        self.io_calls += 1;
        if self.power_cut_at.is_some_and(|at| self.io_calls >= at) {
            self.power_cut_at = None;
            self.power_cut = true;
            let pids: Vec<Pid> = self.epochs.keys().copied().collect();
            for pid in pids {
                self.kill(pid);
            }
            return Err(killed_error());
        }
        if let Some((at, victim)) = self.kill_at
            && self.io_calls >= at
            && victim == pid
        {
            self.kill_at = None;
            self.kill(pid);
            self.record(FaultKind::ProcessCrash, "", 0);
            return Err(killed_error());
        }
        Ok(())
    }

    /// Checks that the handle belongs to a living process's current life.
    pub fn enter_handle(&mut self, handle_id: u64) -> io::Result<Handle> {
        let handle = *self
            .handles
            .get(&handle_id)
            .ok_or_else(|| io::Error::other("simulated handle was closed"))?;
        if self.epoch(handle.pid) != handle.epoch {
            return Err(killed_error());
        }
        self.enter(handle.pid)?;
        Ok(handle)
    }

    /// Kills `pid`: its handles die and its locks are released at once.
    pub fn kill(&mut self, pid: Pid) {
        self.killed.insert(pid);
        let dead: Vec<u64> = self
            .handles
            .iter()
            .filter(|(_, handle)| handle.pid == pid)
            .map(|(id, _)| *id)
            .collect();
        for id in dead {
            self.release_lock(id);
        }
        *self.epochs.entry(pid).or_insert(0) += 1;
    }

    /// Brings a killed process back (a new life; old handles stay dead).
    pub fn restart(&mut self, pid: Pid) {
        self.killed.remove(&pid);
        self.epochs.entry(pid).or_insert(0);
    }

    /// Draws whether an injected fault of rate `ppm` fires now.
    pub fn fault(&mut self, ppm: u32) -> bool {
        self.faults_active && !self.faults_paused && ppm > 0 && chance(&mut self.rng, ppm)
    }

    /// Returns an `EIO` if a transient or persistent error fires for this call.
    pub fn io_error(&mut self, call: Call, file: &str, offset: u64) -> io::Result<()> {
        let key = (file.to_string(), call as u8);
        if self.faults_active && !self.faults_paused && self.persistent_errors.contains(&key) {
            return Err(io::Error::other(format!(
                "simulated EIO on {file} (persistent)"
            )));
        }
        let (ppm, kind) = match call {
            Call::Read => (self.config.read_error_ppm, FaultKind::ReadError),
            Call::Write | Call::SetLen => (self.config.write_error_ppm, FaultKind::WriteError),
            Call::Meta => return Ok(()),
        };
        if self.fault(ppm) {
            self.record(kind, file, offset);
            if chance(&mut self.rng, self.config.error_persistent_ppm) {
                self.persistent_errors.insert(key);
            }
            return Err(io::Error::other(format!("simulated EIO on {file}")));
        }
        Ok(())
    }

    pub fn no_space(&mut self, file: &str, offset: u64) -> io::Result<()> {
        if self.fault(self.config.no_space_ppm) {
            self.record(FaultKind::NoSpace, file, offset);
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!("simulated ENOSPC on {file}"),
            ));
        }
        Ok(())
    }

    /// Stops (or resumes) every fault except crashes the runner asks for; persistent
    /// errors end with the faulty phase.
    pub fn set_faults_active(&mut self, active: bool) {
        self.faults_active = active;
        if !active {
            self.persistent_errors.clear();
        }
    }

    pub fn inode(&mut self, id: u64) -> &mut Inode {
        self.inodes
            .get_mut(&id)
            .expect("a handle's inode outlives the handle")
    }

    pub fn name_of(&self, inode: u64) -> String {
        self.names
            .iter()
            .find(|(_, id)| **id == inode)
            .and_then(|(path, _)| path.file_name())
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Applies a write to the live image and queues it for durability, filling a gap past
    /// the end with zeros or (if enabled) garbage.
    pub fn apply_write(&mut self, inode_id: u64, offset: u64, bytes: &[u8], file: &str) {
        let len = self.inode(inode_id).live.len() as u64;
        if offset > len {
            self.fill_hole(inode_id, len, offset, file);
        }
        let seq = self.next_seq();
        let inode = self.inode(inode_id);
        let start = offset as usize;
        let end = start + bytes.len();
        if inode.live.len() < end {
            inode.live.resize(end, 0);
        }
        inode.live[start..end].copy_from_slice(bytes);
        inode.pending.push(Pending::Write {
            offset,
            bytes: bytes.to_vec(),
            seq,
        });
    }

    /// Truncates or extends the live image, queueing the change.
    pub fn apply_set_len(&mut self, inode_id: u64, len: u64, file: &str) {
        let old = self.inode(inode_id).live.len() as u64;
        self.inode(inode_id).pending.push(Pending::SetLen(len));
        self.inode(inode_id).live.truncate(len as usize);
        if len > old {
            self.fill_hole(inode_id, old, len, file);
        }
    }

    /// The next write sequence number.
    pub fn next_seq(&mut self) -> u64 {
        self.write_seq += 1;
        self.write_seq
    }

    /// Extends the live image from `start` (its end) to `end` with zeros, or garbage if
    /// enabled, queued like a write: a gap reads back as whatever the disk held.
    fn fill_hole(&mut self, inode_id: u64, start: u64, end: u64, file: &str) {
        let mut fill = vec![0u8; (end - start) as usize];
        if self.config.garbage_holes {
            self.rng.fill_bytes(&mut fill);
            self.record(FaultKind::GarbageHole, file, start);
        }
        let seq = self.next_seq();
        let inode = self.inode(inode_id);
        debug_assert_eq!(inode.live.len() as u64, start);
        inode.live.extend_from_slice(&fill);
        inode.pending.push(Pending::Write {
            offset: start,
            bytes: fill,
            seq,
        });
    }

    /// `fdatasync`: makes every pending change durable, or (a fault) fails with Linux
    /// semantics: some pending changes reached the disk, the rest are dropped from the
    /// queue anyway, so a retry succeeds while the durable image lacks them.
    pub fn sync(&mut self, handle_id: u64, inode_id: u64, file: &str) -> io::Result<()> {
        let failing = self.fault(self.config.sync_error_ppm) | self.armed_sync_failure(file);
        let unreported = self
            .handles
            .get_mut(&handle_id)
            .map(|handle| std::mem::take(&mut handle.unreported_error))
            .unwrap_or(false);
        let pending = std::mem::take(&mut self.inode(inode_id).pending);
        let mut lost = false;
        let mut data_end = 0;
        for change in &pending {
            if failing && chance(&mut self.rng, 500_000) {
                lost = true;
                continue;
            }
            if let Pending::Write { offset, bytes, .. } = change
                && !all_zeros(bytes)
            {
                data_end = data_end.max(offset + bytes.len() as u64);
            }
            self.make_durable(inode_id, change);
        }
        let inode = self.inode(inode_id);
        let durable_len = inode.durable.len() as u64;
        inode.synced_data_end = inode.synced_data_end.min(durable_len);
        if failing {
            self.record(FaultKind::SyncError, file, u64::from(lost));
            let kill_ppm = self.config.kill_after_sync_error_ppm;
            if let Some(pid) = self.handles.get(&handle_id).map(|handle| handle.pid)
                && kill_ppm > 0
                && chance(&mut self.rng, kill_ppm)
            {
                self.kill_at = Some((self.io_calls + 1, pid));
            }
            for (id, handle) in self.handles.iter_mut() {
                if handle.inode == inode_id && *id != handle_id {
                    handle.unreported_error = true;
                }
            }
            return Err(io::Error::other(format!(
                "simulated fdatasync failure on {file}"
            )));
        }
        if unreported {
            return Err(io::Error::other(format!(
                "simulated fdatasync failure on {file} (an earlier writeback through another handle failed)"
            )));
        }
        // Only growth counts: data written after the last synced data is what can prove
        // it durable (a rewrite in place, or zeros written ahead, proves nothing).
        let inode = self.inode(inode_id);
        if data_end > inode.synced_data_end {
            inode.synced_data_end = data_end;
        }
        Ok(())
    }

    /// Applies one change to the durable image and marks the damage it overwrites repaired.
    pub fn make_durable(&mut self, inode_id: u64, change: &Pending) {
        let inode = self.inode(inode_id);
        match change {
            Pending::Write { offset, bytes, seq } => {
                let start = *offset as usize;
                let end = start + bytes.len();
                if inode.durable.len() < end {
                    inode.durable.resize(end, 0);
                }
                inode.durable[start..end].copy_from_slice(bytes);
                self.repair(inode_id, *offset, bytes.len() as u64, *seq);
            }
            Pending::SetLen(len) => {
                inode.durable.resize(*len as usize, 0);
                self.repair(inode_id, *len, u64::MAX - *len, u64::MAX);
            }
        }
    }

    /// Forgets damage inside `offset..offset+len` of the inode (overwritten or cut off)
    /// by a write issued after the damage (`seq`).
    pub fn repair(&mut self, inode_id: u64, offset: u64, len: u64, seq: u64) {
        let end = offset.saturating_add(len);
        let before = self.damage.len();
        self.damage.retain(|damage| {
            let inside = damage.offset >= offset && damage.offset + damage.len <= end;
            damage.inode != inode_id || !inside || seq <= damage.seq
        });
        self.damage_repaired += (before - self.damage.len()) as u64;
    }

    /// Takes a lock for a handle if no other handle conflicts; the handle's previous lock
    /// is dropped first (flock conversion).
    pub fn try_lock(&mut self, handle_id: u64, inode_id: u64, mode: LockMode) -> bool {
        let inode = self.inode(inode_id);
        let held = if inode.exclusive == Some(handle_id) {
            Some(LockMode::Exclusive)
        } else if inode.shared.contains(&handle_id) {
            Some(LockMode::Shared)
        } else {
            None
        };
        if held == Some(mode) {
            return true;
        }
        self.release_lock(handle_id);
        let inode = self.inode(inode_id);
        let free = match mode {
            LockMode::Shared => inode.exclusive.is_none(),
            LockMode::Exclusive => inode.exclusive.is_none() && inode.shared.is_empty(),
        };
        if !free {
            return false;
        }
        match mode {
            LockMode::Shared => {
                inode.shared.insert(handle_id);
            }
            LockMode::Exclusive => inode.exclusive = Some(handle_id),
        }
        true
    }

    pub fn release_lock(&mut self, handle_id: u64) {
        let Some(handle) = self.handles.get(&handle_id).copied() else {
            return;
        };
        if let Some(inode) = self.inodes.get_mut(&handle.inode) {
            if inode.exclusive == Some(handle_id) {
                inode.exclusive = None;
            }
            inode.shared.remove(&handle_id);
        }
    }

    /// Maybe flips a stored bit: in a file the engine must check (`pages.db`, `wal.log`,
    /// `wal.seal`), in bytes whose damage is provably detectable (for the WAL: see
    /// [`super::wal_proof`]).
    pub fn maybe_flip_bit(&mut self) {
        if !self.fault(self.config.bit_flip_ppm) {
            return;
        }
        let targets: Vec<(String, u64, u64)> = self
            .names
            .iter()
            .filter_map(|(path, inode)| {
                if self.spared.iter().any(|dir| path.starts_with(dir)) {
                    return None;
                }
                let name = path.file_name()?.to_string_lossy().into_owned();
                let stored = self.inodes.get(inode)?;
                let range = match name.as_str() {
                    "pages.db" => stored.durable.len() as u64,
                    "wal.log" if self.config.wal_bit_flips && self.config.sealed_commits => {
                        stored.synced_data_end.min(stored.durable.len() as u64)
                    }
                    "wal.log" if self.config.wal_bit_flips => {
                        let synced = stored.synced_data_end.min(stored.durable.len() as u64);
                        super::wal_proof::proven_end(&stored.durable[..synced as usize])
                    }
                    "wal.seal" if self.config.wal_bit_flips && self.config.sealed_commits => {
                        stored.synced_data_end.min(stored.durable.len() as u64)
                    }
                    _ => return None,
                };
                (range > 0).then_some((name, *inode, range))
            })
            .collect();
        if targets.is_empty() {
            return;
        }
        let (file, inode_id, range) =
            targets[below(&mut self.rng, targets.len() as u64) as usize].clone();
        // Half the flips of a sealed log land in its last synced 4 KiB: the last synced
        // commits are where damage and a torn tail look alike (uniform offsets almost never
        // hit them, and a writer appending over a damaged last commit went unseen).
        let tail = if file == "wal.log"
            && self.config.sealed_commits
            && self.rng.next_u32().is_multiple_of(2)
        {
            range.min(WAL_TAIL_FLIP_BYTES)
        } else {
            range
        };
        let offset = in_meaningful_bytes(&file, range - tail + below(&mut self.rng, tail));
        let bit = 1u8 << below(&mut self.rng, 8);
        let inode = self.inode(inode_id);
        inode.durable[offset as usize] ^= bit;
        if let Some(byte) = inode.live.get_mut(offset as usize) {
            *byte ^= bit;
        }
        self.record(FaultKind::BitFlip, &file, offset);
        let seq = self.next_seq();
        self.damage.push(Damage {
            inode: inode_id,
            file,
            offset,
            len: 1,
            kind: FaultKind::BitFlip,
            seq,
        });
    }

    /// Resolves a path's inode in the live namespace.
    pub fn lookup(&self, path: &Path) -> Option<u64> {
        self.names.get(path).copied()
    }
}

/// The span at the end of a sealed log's synced bytes that half of its flips land in.
const WAL_TAIL_FLIP_BYTES: u64 = 4096;

/// True if every byte is zero, comparing 4 KiB blocks at a time (preallocation writes
/// hundreds of KiB of zeros; a byte loop over them was a tenth of a campaign).
fn all_zeros(bytes: &[u8]) -> bool {
    const BLOCK: usize = 4096;
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    bytes
        .chunks(BLOCK)
        .all(|block| block == &ZEROS[..block.len()])
}

/// Moves a flip that would land in the unused tail of a meta slot of `pages.db` (bytes the
/// format never reads: a meta page is its first `META_WRITTEN_BYTES`, the rest zeros by
/// definition) or of a slot of `wal.seal` (its first `SEAL_RECORD_BYTES`) into that slot's
/// prefix, so every flip damages bytes the engine reads.
fn in_meaningful_bytes(file: &str, offset: u64) -> u64 {
    let page = mentedb_storage::PAGE_SIZE as u64;
    let prefix = mentedb_storage::pager::META_WRITTEN_BYTES as u64;
    let slot = mentedb_storage::engine::SEAL_SLOT_STRIDE;
    let record = mentedb_storage::engine::SEAL_RECORD_BYTES as u64;
    if file == "pages.db" && offset < 2 * page && offset % page >= prefix {
        offset - offset % page + offset % prefix
    } else if file == "wal.seal" {
        offset - offset % slot + offset % record
    } else {
        offset
    }
}
