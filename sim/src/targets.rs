//! The fuzz targets as plain functions over bytes. `fuzz/` wraps each in a libFuzzer entry
//! point; `tests/corpus_replay.rs` runs every file of `corpus/<target>/` through the same
//! function on stable Rust. A target panics exactly when it found a bug: the engine
//! panicked, hung past a bound, or broke a rule of the oracle.
//!
//! | target | input | checks |
//! |---|---|---|
//! | `wal_recovery` | `u32` WAL length (high bit: reseal every checksum first), the WAL bytes, then the `pages.db` bytes | open on [`SimFs`] returns `Ok` or a clean error; if it opens, scan, integrity check, store and load work or fail cleanly |
//! | `page_decode` | bytes of one page (padded to 64 KiB) and of a delta | header, slotted, meta, allocation state and delta decoding never panic, sealed or not |
//! | `record_decode` | an encoded node | decoding never panics; what decodes re-encodes to a node that decodes equal |
//! | `engine_ops` | 8 bytes of fault seed, then the bytes that draw each operation | the simulator's runner and oracle: no violation |
//! | `backup_restore` | 1 flag byte (bit 0: reseal the backup's own checksums first), then a backup file | `verify` and `restore` return `Ok` or a clean error and agree (a clean verify ⇔ a restore that succeeds); a failed restore leaves no `pages.db`; a restored database opens or fails cleanly, and scans, checks and stores |

use crate::runner::{Outcome, RunConfig, run_with};
use crate::simfs::{FaultConfig, Image, SimFs};
use mentedb_storage::backup;
use mentedb_storage::memory::{decode_record, encoded_record};
use mentedb_storage::page::{Lsn, Page, PageId, apply_delta};
use mentedb_storage::pager::{AllocState, decode_meta_page};
use mentedb_storage::slotted::{check_data_page, read_slot, slot_count};
use mentedb_storage::wal::format::{
    ScanStart, WAL_HEADER_SIZE, decode_header, reseal_log, scan_frames,
};
use mentedb_storage::{AgentId, MemoryNode, MemoryType, Options, PAGE_SIZE, StorageEngine};
use rand_chacha::rand_core::RngCore;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A target: its name (the corpus directory) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 5] = [
    ("wal_recovery", wal_recovery),
    ("page_decode", page_decode),
    ("record_decode", record_decode),
    ("engine_ops", engine_ops),
    ("backup_restore", backup_restore),
];

/// Slots of a page the decoder walks at most (a page holds far fewer; a bound, not a
/// guess).
const SLOTS_WALKED_MAX: u32 = 8_192;
/// Operations an `engine_ops` input may drive.
const ENGINE_OPS_MAX: usize = 400;

/// Opens a database made of the input's WAL and page-file bytes.
/// The high bit of the WAL length asks for resealed checksums (see [`reseal`]).
pub const RESEAL_FLAG: u32 = 1 << 31;

pub fn wal_recovery(data: &[u8]) {
    let (wal, pages, resealed) = split_files(data);
    let (mut wal, mut pages) = (wal.to_vec(), pages.to_vec());
    if resealed {
        reseal(&mut wal, &mut pages);
    }
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("/db/wal.log"), wal);
    files.insert(PathBuf::from("/db/pages.db"), pages);
    let image = Image {
        files,
        directories: BTreeSet::from([PathBuf::from("/"), PathBuf::from("/db")]),
    };
    let fs = SimFs::from_image(&image, 0, FaultConfig::none());
    let options = Options::default().vfs(fs.process(0)).buffer_pool_pages(8);
    let Ok(engine) = StorageEngine::open_with(Path::new("/db"), options) else {
        return;
    };
    probe_opened(&engine, "recovery");
    let _ = engine.close();
}

/// What an opened database (however crafted) must survive: a scan, an integrity check, and
/// a store whose node then loads back equal (or the store fails cleanly).
fn probe_opened(engine: &StorageEngine, after: &str) {
    for item in engine.scan_memories() {
        if item.is_err() {
            break;
        }
    }
    let _ = engine.check_integrity();
    let node = MemoryNode::new(
        AgentId([1; 16]),
        MemoryType::Semantic,
        "probe".to_string(),
        vec![0.5; 4],
    );
    if let Ok(id) = engine.store_memory(&node) {
        match engine.load_memory(id) {
            Ok(loaded) => assert_eq!(
                loaded, node,
                "a node stored after {after} loads differently"
            ),
            Err(error) => assert!(
                !matches!(error, mentedb_storage::Error::NotFound),
                "a node stored after {after} is not found"
            ),
        }
    }
}

/// Splits a `wal_recovery` input: a little-endian `u32` WAL length (its high bit:
/// [`RESEAL_FLAG`]), the WAL, the rest.
pub fn split_files(data: &[u8]) -> (&[u8], &[u8], bool) {
    let Some((length, rest)) = data.split_first_chunk::<4>() else {
        return (&[], data, false);
    };
    let length = u32::from_le_bytes(*length);
    let wal_len = ((length & !RESEAL_FLAG) as usize).min(rest.len());
    let (wal, pages) = rest.split_at(wal_len);
    (wal, pages, length & RESEAL_FLAG != 0)
}

/// Makes every checksum of a crafted database hold (each whole page of the page file
/// sealed for its place, the WAL's header and frame chain resealed), so the fuzzer reaches
/// the decoders behind the checksums: what a buggy writer or a malicious file could present.
pub fn reseal(wal: &mut [u8], pages: &mut [u8]) {
    reseal_log(wal);
    for (index, chunk) in pages.chunks_exact_mut(PAGE_SIZE).enumerate() {
        if let Ok(mut page) = Page::from_bytes(chunk) {
            if page.id().0 as usize != index {
                continue;
            }
            page.seal();
            chunk.copy_from_slice(page.bytes());
        }
    }
}

/// The inverse of [`split_files`], for building corpus files.
pub fn join_files(wal: &[u8], pages: &[u8], resealed: bool) -> Vec<u8> {
    let mut data = Vec::with_capacity(4 + wal.len() + pages.len());
    let flag = if resealed { RESEAL_FLAG } else { 0 };
    data.extend_from_slice(&(wal.len() as u32 | flag).to_le_bytes());
    data.extend_from_slice(wal);
    data.extend_from_slice(pages);
    data
}

/// Decodes the input as a page (as stored, and sealed so the checksum passes and the
/// content decoders run), as a delta applied to it, as a meta page, an allocation state, a
/// WAL header and a run of WAL frames.
pub fn page_decode(data: &[u8]) {
    let (page_bytes, delta) = data.split_at(data.len().min(PAGE_SIZE));
    let mut bytes = vec![0u8; PAGE_SIZE];
    bytes[..page_bytes.len()].copy_from_slice(page_bytes);
    let Ok(mut page) = Page::from_bytes(&bytes) else {
        return;
    };
    let id = page.id();
    decode_page(&page, id);
    page.seal();
    decode_page(&page, id);
    if apply_delta(&mut page, delta).is_ok() {
        page.seal();
        decode_page(&page, id);
    }
    let _ = AllocState::decode(data);
    let _ = decode_header(data);
    if let Ok(header) = decode_header(data) {
        let frames = data.get(WAL_HEADER_SIZE..).unwrap_or(&[]);
        let start = ScanStart {
            offset: WAL_HEADER_SIZE as u64,
            prev_crc: header.crc,
            lsn: header.base_lsn,
        };
        let _ = scan_frames(frames, header.salt, start);
    }
    let start = ScanStart {
        offset: 0,
        prev_crc: 0,
        lsn: Lsn(0),
    };
    let _ = scan_frames(data, 0, start);
}

fn decode_page(page: &Page, id: PageId) {
    let _ = page.verify(id);
    let _ = page.header();
    let _ = decode_meta_page(page, id);
    if check_data_page(page).is_ok() {
        for index in 0..slot_count(page).min(SLOTS_WALKED_MAX) {
            let _ = read_slot(page, index);
        }
    }
}

/// Decodes the input as a record; what decodes must round-trip.
pub fn record_decode(data: &[u8]) {
    let Ok(node) = decode_record(data) else {
        return;
    };
    let Ok(encoded) = encoded_record(&node) else {
        return;
    };
    let again = decode_record(&encoded).expect("a re-encoded node decodes");
    assert!(
        again == node || has_nan(&node),
        "a node does not round-trip"
    );
}

/// NaN scores or embedding values compare unequal to themselves; the bytes still match.
fn has_nan(node: &MemoryNode) -> bool {
    node.salience.is_nan()
        || node.confidence.is_nan()
        || node.embedding.iter().any(|value| value.is_nan())
}

/// Runs the simulator with its workload drawn from the input (faults from its first eight
/// bytes) and fails on any broken rule.
pub fn engine_ops(data: &[u8]) {
    let (seed_bytes, ops) = data.split_at(data.len().min(8));
    let mut seed = [0u8; 8];
    seed[..seed_bytes.len()].copy_from_slice(seed_bytes);
    let seed = u64::from_le_bytes(seed);
    let config = RunConfig {
        ops: (ops.len() / 4).clamp(1, ENGINE_OPS_MAX),
        processes: None,
        faults: "swarm".to_string(),
        explore: false,
        tail: 32,
        check_every_step: false,
        concurrency_ppm: None,
        ..RunConfig::default()
    };
    let report = run_with(seed, &config, Box::new(ByteRng::new(ops)));
    if let Outcome::Failed(failure) = report.outcome {
        panic!(
            "engine_ops: {} at step {}\n{}",
            failure.violation,
            failure.step,
            failure.tail.join("\n")
        );
    }
}

/// A random source that replays input bytes, then zeros: the fuzzer's mutations map
/// directly onto the workload's choices.
#[derive(Debug)]
pub struct ByteRng {
    bytes: Vec<u8>,
    position: usize,
}

impl ByteRng {
    /// Replays `bytes`.
    pub fn new(bytes: &[u8]) -> ByteRng {
        ByteRng {
            bytes: bytes.to_vec(),
            position: 0,
        }
    }
}

impl RngCore for ByteRng {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, destination: &mut [u8]) {
        for byte in destination {
            *byte = self.bytes.get(self.position).copied().unwrap_or(0);
            self.position = self.position.saturating_add(1);
        }
    }
}

/// Verifies and restores the input as a backup file (see the table above).
pub fn backup_restore(data: &[u8]) {
    let Some((flags, file)) = data.split_first() else {
        return;
    };
    let mut file = file.to_vec();
    if flags & 1 != 0 {
        reseal_backup(&mut file);
    }
    let mut files = BTreeMap::new();
    files.insert(PathBuf::from("/in.mbak"), file);
    let image = Image {
        files,
        directories: BTreeSet::from([PathBuf::from("/")]),
    };
    let fs = SimFs::from_image(&image, 0, FaultConfig::none());
    let vfs = fs.process(0);
    let backup_path = Path::new("/in.mbak");
    let clean = match backup::verify(&*vfs, backup_path) {
        Ok(check) => check.is_clean(),
        Err(_) => false,
    };
    let restored = backup::restore(&*vfs, backup_path, Path::new("/restored"));
    assert_eq!(
        clean,
        restored.is_ok(),
        "verify and restore disagree: {restored:?}"
    );
    let page_file = Path::new("/restored/pages.db");
    if restored.is_err() {
        assert!(
            !vfs.exists(page_file).unwrap_or(false),
            "a failed restore left a pages.db"
        );
        return;
    }
    let options = Options::default().vfs(vfs).buffer_pool_pages(8);
    let Ok(engine) = StorageEngine::open_with(Path::new("/restored"), options) else {
        return;
    };
    probe_opened(&engine, "restore");
}

/// Makes the backup file's own checksums hold (header, each chunk header and body, the
/// manifest with the CRC of the pages as they decode), so the fuzzer reaches the checks
/// behind them. Walks the structure as far as it parses.
pub fn reseal_backup(file: &mut [u8]) {
    use mentedb_storage::backup::format::{CHUNK_HEADER_BYTES, HEADER_BYTES, MANIFEST_BYTES};
    let Some(header) = file.get_mut(..HEADER_BYTES) else {
        return;
    };
    let crc = crc32fast::hash(&header[..36]);
    header[36..40].copy_from_slice(&crc.to_le_bytes());
    let page_count = u64::from_le_bytes(header[16..24].try_into().unwrap_or([0; 8]));
    let mut offset = HEADER_BYTES;
    let mut pages_crc = crc32fast::Hasher::new();
    let mut page = vec![0u8; PAGE_SIZE];
    for _ in 0..page_count.min(1 << 16) {
        let Some(chunk) = file.get(offset..offset + CHUNK_HEADER_BYTES) else {
            return;
        };
        let stored = u32::from_le_bytes(chunk[12..16].try_into().unwrap_or([0; 4])) as usize;
        let body_start = offset + CHUNK_HEADER_BYTES;
        let Some(body) = file.get(body_start..body_start.saturating_add(stored)) else {
            return;
        };
        let body_crc = crc32fast::hash(body);
        if lz4_flex::block::decompress_into(body, &mut page).is_ok() {
            pages_crc.update(&page);
        }
        let chunk = &mut file[offset..offset + CHUNK_HEADER_BYTES];
        chunk[16..20].copy_from_slice(&body_crc.to_le_bytes());
        let crc = crc32fast::hash(&chunk[..20]);
        chunk[20..24].copy_from_slice(&crc.to_le_bytes());
        offset = body_start + stored;
    }
    let Some(manifest) = file.get_mut(offset..offset + MANIFEST_BYTES) else {
        return;
    };
    manifest[40..44].copy_from_slice(&pages_crc.finalize().to_le_bytes());
    let crc = crc32fast::hash(&manifest[..60]);
    manifest[60..64].copy_from_slice(&crc.to_le_bytes());
}
