//! Power loss: which unsynced changes survive, torn how. Sampled once per power cut by
//! [`super::SimFs::power_loss`], or enumerated exhaustively (up to a bound) from a captured
//! [`CrashPoint`].

use super::disk::{Disk, Pending};
use super::faults::{FaultKind, Persistence};
use crate::workload::{below, chance};
use rand_chacha::rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What one surviving piece of a torn write holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    New,
    Old,
    Garbage,
}

impl Disk {
    /// Cuts the power: every process is dead, names fall back to the last directory sync,
    /// and each file's contents to its durable image plus the unsynced changes that the
    /// persistence profile lets survive (possibly torn). The page cache is gone: live
    /// equals durable afterwards.
    pub fn power_loss(&mut self) {
        let pids: Vec<_> = self.epochs.keys().copied().collect();
        for pid in pids {
            self.kill(pid);
        }
        self.power_cut = false;
        self.power_losses += 1;
        self.record(FaultKind::PowerLoss, "", 0);
        self.names = self.durable_names.clone();
        let kept: BTreeSet<u64> = self.names.values().copied().collect();
        self.inodes.retain(|id, _| kept.contains(id));
        self.handles.clear();
        for inode_id in kept {
            self.settle(inode_id);
        }
        self.persistent_errors.clear();
    }

    /// Forgets the damage a write (`seq`) that a power loss dropped would have done: a
    /// misdirected write that never reached the disk left both pages as they were.
    fn forget_damage_of(&mut self, seq: u64) {
        self.damage
            .retain(|damage| damage.kind != FaultKind::Misdirect || damage.seq != seq);
    }

    /// Decides the fate of one file's unsynced changes.
    fn settle(&mut self, inode_id: u64) {
        let file = self.name_of(inode_id);
        let pending = std::mem::take(&mut self.inode(inode_id).pending);
        let durable_len = self.inode(inode_id).durable.len();
        match self.config.persistence {
            Persistence::Strict => {
                let mut survivors: Vec<&Pending> = Vec::new();
                for change in &pending {
                    if matches!(change, Pending::Write { .. })
                        && chance(&mut self.rng, self.config.survive_ppm)
                    {
                        survivors.push(change);
                    } else if let Pending::Write { seq, .. } = change {
                        self.record(FaultKind::LostWrite, &file, offset_of(change));
                        self.forget_damage_of(*seq);
                    }
                }
                // Any order: the disk may write back a newer copy before an older one.
                for index in (1..survivors.len()).rev() {
                    let other = below(&mut self.rng, index as u64 + 1) as usize;
                    survivors.swap(index, other);
                }
                for change in survivors {
                    self.survive(inode_id, change, &file);
                }
                self.inode(inode_id).durable.resize(durable_len, 0);
            }
            Persistence::Ordered => {
                let count = below(&mut self.rng, pending.len() as u64 + 1) as usize;
                for change in &pending[count..] {
                    self.record(FaultKind::LostWrite, &file, offset_of(change));
                    if let Pending::Write { seq, .. } = change {
                        self.forget_damage_of(*seq);
                    }
                }
                for change in &pending[..count] {
                    self.survive(inode_id, change, &file);
                }
            }
        }
        let inode = self.inode(inode_id);
        inode.live = inode.durable.clone();
        inode.exclusive = None;
        inode.shared.clear();
        let len = inode.durable.len() as u64;
        inode.synced_data_end = inode.synced_data_end.min(len);
    }

    /// Applies a surviving change, torn into pieces if the profile allows.
    fn survive(&mut self, inode_id: u64, change: &Pending, file: &str) {
        let Pending::Write { offset, bytes, seq } = change else {
            self.make_durable(inode_id, change);
            return;
        };
        if !self.config.torn_writes || !chance(&mut self.rng, 300_000) {
            self.make_durable(inode_id, change);
            return;
        }
        self.record(FaultKind::TornWrite, file, *offset);
        let piece_bytes = self.config.tear_piece_bytes;
        for (start, end) in pieces(*offset, bytes.len() as u64, piece_bytes) {
            let piece = match below(&mut self.rng, 100) {
                0..=49 => Piece::New,
                50..=84 => Piece::Old,
                _ => Piece::Garbage,
            };
            let slice = &bytes[(start - offset) as usize..(end - offset) as usize];
            let content = match piece {
                Piece::New => slice.to_vec(),
                Piece::Old => continue,
                Piece::Garbage => {
                    let mut garbage = vec![0u8; slice.len()];
                    self.rng.fill_bytes(&mut garbage);
                    garbage
                }
            };
            self.make_durable(
                inode_id,
                &Pending::Write {
                    offset: start,
                    bytes: content,
                    seq: *seq,
                },
            );
        }
    }

    /// Captures the state a power cut right now would start from, for exhaustive
    /// enumeration of crash images.
    pub fn capture(&self) -> CrashPoint {
        let files = self
            .durable_names
            .iter()
            .filter_map(|(path, id)| {
                let inode = self.inodes.get(id)?;
                Some(CapturedFile {
                    path: path.clone(),
                    durable: inode.durable.clone(),
                    pending: inode.pending.clone(),
                })
            })
            .collect();
        CrashPoint {
            files,
            directories: self.directories.clone(),
        }
    }
}

fn offset_of(change: &Pending) -> u64 {
    match change {
        Pending::Write { offset, .. } => *offset,
        Pending::SetLen(len) => *len,
    }
}

/// The aligned pieces `(start, end)` of a write of `len` bytes at `offset`.
fn pieces(offset: u64, len: u64, piece_bytes: u64) -> Vec<(u64, u64)> {
    let end = offset + len;
    let mut cuts = Vec::new();
    let mut start = offset;
    while start < end {
        let next = ((start / piece_bytes) + 1) * piece_bytes;
        let stop = next.min(end);
        cuts.push((start, stop));
        start = stop;
    }
    cuts
}

/// One file as captured at a crash point.
#[derive(Debug, Clone)]
pub struct CapturedFile {
    /// The file's durable name.
    pub path: PathBuf,
    /// Its durable image.
    pub durable: Vec<u8>,
    /// Its unsynced changes, in issue order.
    pub pending: Vec<Pending>,
}

/// Random subsets of the unsynced writes [`CrashPoint::images`] checks when there are too
/// many writes for every subset.
pub const RANDOM_SUBSETS: usize = 8;

/// The disk at a moment a power cut could happen: durable images plus unsynced changes.
#[derive(Debug, Clone)]
pub struct CrashPoint {
    /// Files with a durable name.
    pub files: Vec<CapturedFile>,
    /// Directories (always durable in this model).
    pub directories: BTreeSet<PathBuf>,
}

/// The contents of a disk after a power loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    /// File contents by path.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// Directories.
    pub directories: BTreeSet<PathBuf>,
}

/// Which unsynced changes one enumerated image keeps: per (file, change) a choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keep {
    Whole,
    Nothing,
    /// Only the first `n` pieces (a torn prefix).
    Prefix(usize),
    /// Every piece but piece `n` (a torn middle: old bytes there).
    AllBut(usize),
}

impl CrashPoint {
    /// Number of unsynced writes across files.
    pub fn pending_writes(&self) -> usize {
        self.changes().len()
    }

    fn changes(&self) -> Vec<(usize, usize)> {
        let mut changes = Vec::new();
        for (file_index, file) in self.files.iter().enumerate() {
            for (change_index, change) in file.pending.iter().enumerate() {
                if matches!(change, Pending::Write { .. }) {
                    changes.push((file_index, change_index));
                }
            }
        }
        changes
    }

    /// Every crash image up to `images_max`: each subset of the unsynced writes (when there
    /// are at most `subset_writes_max` of them; otherwise none, all, [`RANDOM_SUBSETS`]
    /// subsets drawn from `seed`, each write kept or lost by a coin, then each prefix in issue
    /// order), then, with all earlier writes kept, each write torn at each piece of
    /// `piece_bytes`: a prefix of its pieces, or all but one. Lengths follow the surviving
    /// writes; a truncation survives when every change before it does.
    ///
    /// The random subsets are what crash a checkpoint with any subset of its page writes
    /// persisted (a checkpoint writes many pages before its sync; prefixes alone would keep
    /// them in issue order).
    pub fn images(
        &self,
        subset_writes_max: usize,
        piece_bytes: u64,
        images_max: usize,
        seed: u64,
    ) -> Vec<Image> {
        let changes = self.changes();
        let mut choices: Vec<Vec<Keep>> = Vec::new();
        if changes.len() > subset_writes_max {
            use rand_chacha::rand_core::SeedableRng;
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            choices.push(vec![Keep::Nothing; changes.len()]);
            choices.push(vec![Keep::Whole; changes.len()]);
            for _ in 0..RANDOM_SUBSETS {
                choices.push(
                    (0..changes.len())
                        .map(|_| {
                            if below(&mut rng, 2) == 1 {
                                Keep::Whole
                            } else {
                                Keep::Nothing
                            }
                        })
                        .collect(),
                );
            }
        }
        if changes.len() <= subset_writes_max {
            for mask in 0u64..(1u64 << changes.len()) {
                choices.push(
                    (0..changes.len())
                        .map(|bit| {
                            if mask >> bit & 1 == 1 {
                                Keep::Whole
                            } else {
                                Keep::Nothing
                            }
                        })
                        .collect(),
                );
            }
        } else {
            for kept in 1..changes.len() {
                choices.push(
                    (0..changes.len())
                        .map(|index| {
                            if index < kept {
                                Keep::Whole
                            } else {
                                Keep::Nothing
                            }
                        })
                        .collect(),
                );
            }
        }
        for (index, &(file_index, change_index)) in changes.iter().enumerate() {
            let Pending::Write { offset, bytes, .. } =
                &self.files[file_index].pending[change_index]
            else {
                continue;
            };
            let count = pieces(*offset, bytes.len() as u64, piece_bytes).len();
            for piece in 1..count {
                for keep in [Keep::Prefix(piece), Keep::AllBut(piece - 1)] {
                    let mut choice = vec![Keep::Nothing; changes.len()];
                    for earlier in choice.iter_mut().take(index) {
                        *earlier = Keep::Whole;
                    }
                    choice[index] = keep;
                    choices.push(choice);
                }
            }
        }
        choices.truncate(images_max);
        choices
            .iter()
            .map(|choice| self.image(&changes, choice, piece_bytes))
            .collect()
    }

    fn image(&self, changes: &[(usize, usize)], choice: &[Keep], piece_bytes: u64) -> Image {
        let mut files = BTreeMap::new();
        for (file_index, file) in self.files.iter().enumerate() {
            let mut bytes = file.durable.clone();
            let mut all_kept = true;
            for (change_index, change) in file.pending.iter().enumerate() {
                let keep = changes
                    .iter()
                    .position(|&key| key == (file_index, change_index))
                    .map(|position| choice[position])
                    .unwrap_or(if all_kept { Keep::Whole } else { Keep::Nothing });
                if keep != Keep::Whole {
                    all_kept = false;
                }
                apply(&mut bytes, change, keep, piece_bytes);
            }
            files.insert(file.path.clone(), bytes);
        }
        Image {
            files,
            directories: self.directories.clone(),
        }
    }
}

fn apply(bytes: &mut Vec<u8>, change: &Pending, keep: Keep, piece_bytes: u64) {
    match change {
        Pending::SetLen(len) => {
            if keep == Keep::Whole {
                bytes.resize(*len as usize, 0);
            }
        }
        Pending::Write {
            offset, bytes: new, ..
        } => {
            for (index, (start, end)) in pieces(*offset, new.len() as u64, piece_bytes)
                .into_iter()
                .enumerate()
            {
                let kept = match keep {
                    Keep::Whole => true,
                    Keep::Nothing => false,
                    Keep::Prefix(count) => index < count,
                    Keep::AllBut(skipped) => index != skipped,
                };
                if !kept {
                    continue;
                }
                if bytes.len() < end as usize {
                    bytes.resize(end as usize, 0);
                }
                let source = &new[(start - offset) as usize..(end - offset) as usize];
                bytes[start as usize..end as usize].copy_from_slice(source);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_are_aligned_and_cover_the_write() {
        assert_eq!(
            pieces(100, 1000, 512),
            vec![(100, 512), (512, 1024), (1024, 1100)]
        );
        assert_eq!(pieces(0, 512, 512), vec![(0, 512)]);
        assert!(pieces(7, 0, 512).is_empty());
    }

    #[test]
    fn enumeration_covers_every_subset_and_tear() {
        let point = CrashPoint {
            files: vec![CapturedFile {
                path: PathBuf::from("/db/f"),
                durable: vec![0; 4],
                pending: vec![
                    Pending::Write {
                        offset: 0,
                        bytes: vec![1; 1024],
                        seq: 1,
                    },
                    Pending::Write {
                        offset: 1024,
                        bytes: vec![2; 512],
                        seq: 2,
                    },
                ],
            }],
            directories: BTreeSet::new(),
        };
        let images = point.images(8, 512, 1000, 0);
        // 4 subsets + first write torn two ways (2 pieces) + second write has 1 piece.
        assert_eq!(images.len(), 6);
        let lengths: BTreeSet<usize> = images
            .iter()
            .map(|image| image.files[&PathBuf::from("/db/f")].len())
            .collect();
        assert_eq!(lengths, BTreeSet::from([4, 512, 1024, 1536]));
    }
}
