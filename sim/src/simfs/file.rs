//! [`SimFile`]: one open handle on the simulated disk. Every call takes the disk's lock,
//! counts toward crash triggers, and may draw a fault.

use super::disk::{Call, Disk, FILE_BYTES_MAX};
use super::faults::{Damage, FaultKind};
use crate::workload::below;
use mentedb_storage::vfs::{LockMode, VfsFile};
use std::fmt;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};

/// Size of a page of `pages.db`, the unit a misdirected write moves.
const PAGE_BYTES: u64 = 64 * 1024;

pub struct SimFile {
    disk: Arc<Mutex<Disk>>,
    handle_id: u64,
    inode: u64,
    name: String,
    writable: bool,
}

impl SimFile {
    pub fn new(
        disk: Arc<Mutex<Disk>>,
        handle_id: u64,
        inode: u64,
        name: String,
        writable: bool,
    ) -> SimFile {
        SimFile {
            disk,
            handle_id,
            inode,
            name,
            writable,
        }
    }

    /// Takes the disk lock and checks the handle's process is alive. First a scheduling
    /// point: another simulated thread may run before this call.
    fn enter(&self) -> io::Result<MutexGuard<'_, Disk>> {
        mentedb_storage::sched::yield_point(mentedb_storage::sched::Point::Io);
        let mut disk = self
            .disk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        disk.enter_handle(self.handle_id)?;
        Ok(disk)
    }

    fn check_writable(&self) -> io::Result<()> {
        mentedb_storage::vfs::check_writable(self.writable)
    }

    /// How many of `len` bytes a call transfers: all, or (a fault) fewer but at least one.
    fn transfer_len(&self, disk: &mut Disk, len: usize, offset: u64) -> usize {
        if len > 1 && disk.fault(disk.config.short_io_ppm) {
            disk.record(FaultKind::ShortIo, &self.name, offset);
            return 1 + below(&mut disk.rng, len as u64 - 1) as usize;
        }
        len
    }

    /// Where a whole-page write to `pages.db` really lands (a misdirected write is a fault).
    fn landing_offset(&self, disk: &mut Disk, len: usize, offset: u64) -> u64 {
        let whole_page = len as u64 == PAGE_BYTES && offset.is_multiple_of(PAGE_BYTES);
        if self.name != "pages.db" || !whole_page || !disk.fault(disk.config.misdirect_ppm) {
            return offset;
        }
        let pages = disk.inode(self.inode).live.len() as u64 / PAGE_BYTES;
        if pages < 2 {
            return offset;
        }
        let mut target = below(&mut disk.rng, pages - 1) * PAGE_BYTES;
        if target >= offset {
            target += PAGE_BYTES;
        }
        disk.record(FaultKind::Misdirect, &self.name, offset);
        disk.lost_page_write = true;
        // The misdirected write itself gets the next sequence number when it is queued;
        // the damage is newer than everything before it, older than what follows.
        let seq = disk.write_seq + 1;
        // On a meta slot, only its first bytes are ever read (and rewritten).
        let meta_prefix = mentedb_storage::pager::META_WRITTEN_BYTES as u64;
        disk.damage.push(Damage {
            inode: self.inode,
            file: self.name.clone(),
            offset: target,
            len: if target < 2 * PAGE_BYTES {
                meta_prefix
            } else {
                PAGE_BYTES
            },
            kind: FaultKind::Misdirect,
            seq,
        });
        // The page it was meant for keeps its old contents: damage too, until a later
        // write of it reaches the disk (issue 16: detection is demanded there as well).
        disk.damage.push(Damage {
            inode: self.inode,
            file: self.name.clone(),
            offset,
            len: PAGE_BYTES,
            kind: FaultKind::Misdirect,
            seq,
        });
        target
    }
}

impl VfsFile for SimFile {
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        let mut disk = self.enter()?;
        disk.io_error(Call::Read, &self.name, offset)?;
        let count = self.transfer_len(&mut disk, buf.len(), offset);
        let live = &disk.inode(self.inode).live;
        let Some(available) = usize::try_from(offset)
            .ok()
            .and_then(|start| live.get(start..))
        else {
            return Ok(0);
        };
        let count = count.min(available.len());
        buf[..count].copy_from_slice(&available[..count]);
        Ok(count)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        let mut disk = self.enter()?;
        self.check_writable()?;
        let end = offset
            .checked_add(buf.len() as u64)
            .filter(|end| *end <= FILE_BYTES_MAX)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::FileTooLarge, "simulated file too large")
            })?;
        disk.io_error(Call::Write, &self.name, offset)?;
        if end > disk.inode(self.inode).live.len() as u64 {
            disk.no_space(&self.name, offset)?;
        }
        let count = self.transfer_len(&mut disk, buf.len(), offset);
        let landing = self.landing_offset(&mut disk, count, offset);
        disk.apply_write(self.inode, landing, &buf[..count], &self.name);
        disk.maybe_flip_bit();
        Ok(count)
    }

    fn sync_data(&self) -> io::Result<()> {
        let mut disk = self.enter()?;
        let rule = disk
            .capture_rules
            .iter()
            .position(|rule| rule.file == self.name && rule.remaining > 0 && rule.ppm > 0);
        if let Some(rule) = rule
            && !disk.capture_paused
            && !disk.inode(self.inode).pending.is_empty()
        {
            let ppm = disk.capture_rules[rule].ppm;
            if crate::workload::chance(&mut disk.rng, ppm) {
                let point = disk.capture();
                disk.capture_rules[rule].remaining -= 1;
                disk.captured.push(point);
            }
        }
        disk.sync(self.handle_id, self.inode, &self.name)
    }

    fn len(&self) -> io::Result<u64> {
        let mut disk = self.enter()?;
        Ok(disk.inode(self.inode).live.len() as u64)
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        let mut disk = self.enter()?;
        self.check_writable()?;
        if len > FILE_BYTES_MAX {
            return Err(io::Error::new(
                io::ErrorKind::FileTooLarge,
                "simulated file too large",
            ));
        }
        disk.io_error(Call::SetLen, &self.name, len)?;
        if len > disk.inode(self.inode).live.len() as u64 {
            disk.no_space(&self.name, len)?;
        }
        disk.apply_set_len(self.inode, len, &self.name);
        Ok(())
    }

    /// Blocks until the lock is granted: under a scheduler (simulated threads) by yielding
    /// while another handle holds it. A thread without a scheduler could never see it
    /// released, so it gets `WouldBlock` instead of waiting forever.
    fn lock(&self, mode: LockMode) -> io::Result<()> {
        loop {
            if self.try_lock(mode)? {
                return Ok(());
            }
            if !mentedb_storage::sched::is_scheduled() {
                return Err(io::Error::new(
                    io::ErrorKind::WouldBlock,
                    format!(
                        "{} is locked by another simulated process, and this thread has no \
                         scheduler to wait under",
                        self.name
                    ),
                ));
            }
            mentedb_storage::sched::yield_point(mentedb_storage::sched::Point::Blocked);
        }
    }

    fn try_lock(&self, mode: LockMode) -> io::Result<bool> {
        let mut disk = self.enter()?;
        Ok(disk.try_lock(self.handle_id, self.inode, mode))
    }

    fn unlock(&self) -> io::Result<()> {
        let mut disk = self.enter()?;
        disk.release_lock(self.handle_id);
        Ok(())
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        let mut disk = self
            .disk
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        disk.release_lock(self.handle_id);
        disk.handles.remove(&self.handle_id);
    }
}

impl fmt::Debug for SimFile {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("SimFile")
            .field("handle_id", &self.handle_id)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
