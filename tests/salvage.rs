//! `salvage::salvage`: every record that can still be read and verified goes into a new
//! database; what could not be saved is reported with its file and offset; the source is
//! never changed.

use mentedb_storage::handle_page;
use mentedb_storage::record_id::HOME_SLOTS_PER_PAGE;
use mentedb_storage::salvage::{self, MAP_FILE_NAME, ProblemKind, SalvageReport};
use mentedb_storage::slotted::{self, SlotContent};
use mentedb_storage::vfs::{MemFs, Vfs};
use mentedb_storage::{
    AgentId, Error, MemoryNode, MemoryType, Options, PAGE_SIZE, PageId, PageType, RecordId,
    StorageEngine,
};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

const SOURCE: &str = "/db";

fn options(vfs: &MemFs) -> Options {
    Options::default()
        .vfs(Arc::new(vfs.clone()))
        .checkpoint_wal_bytes(0)
}

/// A node of about `size` bytes of content (over 16 KiB goes to an overflow chain).
fn node(label: &str, size: usize) -> MemoryNode {
    let mut node = MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("{label} {}", "s".repeat(size)),
        vec![0.5; 8],
    );
    node.tags = vec![label.to_string()];
    node
}

/// Every version each handle ever had, and the live records now.
#[derive(Debug, Default)]
struct Model {
    versions: BTreeMap<RecordId, Vec<MemoryNode>>,
    live: BTreeMap<RecordId, MemoryNode>,
}

impl Model {
    fn store(&mut self, engine: &StorageEngine, node: MemoryNode) -> RecordId {
        let id = engine.store_memory(&node).expect("store");
        self.versions.entry(id).or_default().push(node.clone());
        self.live.insert(id, node);
        id
    }

    fn update(&mut self, engine: &StorageEngine, id: RecordId, node: MemoryNode) {
        engine.update_memory(id, &node).expect("update");
        self.versions.entry(id).or_default().push(node.clone());
        self.live.insert(id, node);
    }

    fn delete(&mut self, engine: &StorageEngine, id: RecordId) {
        engine.delete_memory(id).expect("delete");
        self.live.remove(&id);
    }
}

/// A database with small and overflow records, updates and deletes, part checkpointed into
/// `pages.db` and part only in the WAL (the engine is dropped, not closed).
fn mixed_database(vfs: &MemFs) -> Model {
    let engine = StorageEngine::open_with(Path::new(SOURCE), options(vfs)).expect("open");
    let mut model = Model::default();
    let mut ids = Vec::new();
    for index in 0..40 {
        let size = if index % 9 == 4 {
            70_000
        } else {
            300 + index * 13
        };
        ids.push(model.store(&engine, node(&format!("first {index}"), size)));
    }
    engine.checkpoint().expect("checkpoint");
    for index in 0..25 {
        let size = if index % 8 == 3 {
            40_000
        } else {
            500 + index * 7
        };
        ids.push(model.store(&engine, node(&format!("second {index}"), size)));
    }
    for (turn, id) in ids.iter().enumerate().step_by(6) {
        let size = if turn % 4 == 0 { 30_000 } else { 900 };
        model.update(&engine, *id, node(&format!("updated {turn}"), size));
    }
    for id in ids.iter().skip(2).step_by(11) {
        model.delete(&engine, *id);
    }
    model
}

/// Every file of a directory with its bytes.
fn files(vfs: &MemFs, dir: &str) -> BTreeMap<String, Vec<u8>> {
    vfs.list_dir(Path::new(dir))
        .expect("list")
        .into_iter()
        .map(|path| {
            let bytes = vfs.file_bytes(&path).expect("file");
            (path.display().to_string(), bytes)
        })
        .collect()
}

/// The saved records, by their old handle, read back from the new database through the map.
fn saved(vfs: &MemFs, dest: &str) -> BTreeMap<RecordId, MemoryNode> {
    let map = vfs
        .file_bytes(&Path::new(dest).join(MAP_FILE_NAME))
        .expect("map file");
    let engine =
        StorageEngine::open_with(Path::new(dest), options(vfs).read_only()).expect("open dest");
    let mut records = BTreeMap::new();
    for line in String::from_utf8(map).expect("utf-8").lines() {
        let (old, new) = line.split_once(' ').expect("two handles");
        let old: RecordId = old.parse().expect("old handle");
        let new: RecordId = new.parse().expect("new handle");
        let node = engine.load_memory(new).expect("saved record loads");
        assert!(records.insert(old, node).is_none(), "{old} saved twice");
    }
    let scanned = engine.scan_memories().count();
    assert_eq!(scanned, records.len(), "the map names every record");
    records
}

fn run(vfs: &MemFs, dest: &str) -> SalvageReport {
    salvage::salvage(Path::new(SOURCE), Path::new(dest), options(vfs)).expect("salvage")
}

fn flip(vfs: &MemFs, file: &str, offset: usize) {
    let path = Path::new(SOURCE).join(file);
    let mut bytes = vfs.file_bytes(&path).expect("file");
    bytes[offset] ^= 0x5a;
    vfs.set_file_bytes(&path, bytes);
}

/// What the database holds now, page by page: for each live record, its record page and
/// overflow pages.
fn record_pages(vfs: &MemFs) -> BTreeMap<RecordId, BTreeSet<u64>> {
    let engine =
        StorageEngine::open_with(Path::new(SOURCE), options(vfs).read_only()).expect("open");
    let database = engine
        .scan_memories()
        .next()
        .expect("a record")
        .expect("reads")
        .0
        .database();
    let mut pages = BTreeMap::new();
    for raw in 2..engine.page_count() {
        let page = engine.read_page_image(PageId(raw)).expect("page");
        if page.page_type() != Some(PageType::Handles) {
            continue;
        }
        for slot in 0..HOME_SLOTS_PER_PAGE {
            let Some(home) = handle_page::read(&page, slot).expect("slot") else {
                continue;
            };
            let id = RecordId::new(database, PageId(raw), slot, home.serial).expect("handle");
            let record = engine
                .read_page_image(home.record_page)
                .expect("record page");
            let mut used = BTreeSet::from([home.record_page.0]);
            let content = slotted::read_slot(&record, home.record_slot).expect("slot");
            if let SlotContent::Overflow { first, .. } = content.content {
                let mut next = first;
                while next.0 != 0 {
                    used.insert(next.0);
                    next = engine.read_page_image(next).expect("chain page").next();
                }
            }
            pages.insert(id, used);
        }
    }
    pages
}

/// Pages the WAL holds committed versions of.
fn wal_pages(vfs: &MemFs) -> BTreeSet<u64> {
    let engine =
        StorageEngine::open_with(Path::new(SOURCE), options(vfs).read_only()).expect("open");
    let frames = engine.wal_frames().expect("frames");
    frames.frames[..frames.committed]
        .iter()
        .filter(|frame| frame.kind != mentedb_storage::WalEntryType::Commit)
        .map(|frame| frame.page.0)
        .collect()
}

#[test]
fn a_clean_database_salvages_every_record_with_equal_content_and_a_correct_map() {
    let vfs = MemFs::new();
    let model = mixed_database(&vfs);
    let before = files(&vfs, SOURCE);
    let report = run(&vfs, "/new");
    assert!(report.is_complete(), "nothing lost: {:#?}", report.lost);
    assert_eq!(report.records_saved, model.live.len() as u64);
    assert!(
        report.wal_frames > 0 && report.page_file_pages > 2,
        "{report:?}"
    );
    assert_eq!(saved(&vfs, "/new"), model.live);
    assert_eq!(files(&vfs, SOURCE), before, "the source is unchanged");
    let check = StorageEngine::open_with(Path::new("/new"), options(&vfs))
        .expect("open new")
        .check_integrity()
        .expect("check");
    assert!(check.problems.is_empty(), "{:?}", check.problems);
}

#[test]
fn a_flipped_byte_in_a_data_page_loses_only_its_records_and_names_its_offset() {
    let vfs = MemFs::new();
    let model = mixed_database(&vfs);
    StorageEngine::open_with(Path::new(SOURCE), options(&vfs))
        .expect("open")
        .close()
        .expect("checkpoint and close");
    let pages = record_pages(&vfs);
    // The record page holding the most records.
    let mut by_page: BTreeMap<u64, Vec<RecordId>> = BTreeMap::new();
    for (id, used) in &pages {
        by_page
            .entry(*used.first().expect("page"))
            .or_default()
            .push(*id);
    }
    let (&victim, on_victim) = by_page
        .iter()
        .max_by_key(|(_, ids)| ids.len())
        .expect("a page");
    let before = files(&vfs, SOURCE);
    flip(&vfs, "pages.db", victim as usize * PAGE_SIZE + 20_000);
    let damaged = files(&vfs, SOURCE);
    let report = run(&vfs, "/new");
    let named = report.lost.iter().any(|lost| {
        lost.kind == ProblemKind::DamagedPage
            && lost.file == "pages.db"
            && lost.offset == victim * PAGE_SIZE as u64
    });
    assert!(named, "the damaged page is named: {:#?}", report.lost);
    for id in on_victim {
        assert!(
            report
                .lost
                .iter()
                .any(|lost| lost.record == Some(*id) && lost.kind == ProblemKind::RecordMissing),
            "{id} is reported missing: {:#?}",
            report.lost
        );
    }
    let saved = saved(&vfs, "/new");
    let expected: BTreeMap<RecordId, MemoryNode> = model
        .live
        .iter()
        .filter(|(id, _)| !on_victim.contains(id))
        .map(|(id, node)| (*id, node.clone()))
        .collect();
    assert_eq!(saved, expected, "every other record is saved, equal");
    assert_eq!(files(&vfs, SOURCE), damaged, "the source is unchanged");
    assert_ne!(damaged, before);
}

/// A database whose every commit is one store: `before` stores checkpointed, `after` only
/// in the WAL. Returns the handles in order and the WAL's committed length.
fn logged_database(vfs: &MemFs, before: usize, after: usize) -> (Model, Vec<RecordId>, u64) {
    let engine = StorageEngine::open_with(Path::new(SOURCE), options(vfs)).expect("open");
    let mut model = Model::default();
    let mut ids = Vec::new();
    for index in 0..before + after {
        if index == before {
            engine.checkpoint().expect("checkpoint");
        }
        let size = if index % 7 == 5 { 20_000 } else { 700 };
        ids.push(model.store(&engine, node(&format!("logged {index}"), size)));
    }
    let wal_bytes = engine.wal_bytes();
    (model, ids, wal_bytes)
}

/// Offsets of the commit frames in the WAL.
fn commit_offsets(vfs: &MemFs) -> Vec<u64> {
    let engine =
        StorageEngine::open_with(Path::new(SOURCE), options(vfs).read_only()).expect("open");
    let frames = engine.wal_frames().expect("frames");
    frames
        .frames
        .iter()
        .filter(|frame| frame.kind == mentedb_storage::WalEntryType::Commit)
        .map(|frame| frame.offset + u64::from(frame.total_len))
        .collect()
}

#[test]
fn a_cut_wal_saves_the_commits_before_the_cut_and_the_page_file_records() {
    let vfs = MemFs::new();
    let (model, ids, _) = logged_database(&vfs, 20, 20);
    let commits = commit_offsets(&vfs);
    // Cut in the middle of the eleventh commit after the checkpoint.
    let cut = (commits[9] + commits[10]) / 2;
    let wal = Path::new(SOURCE).join("wal.log");
    let mut bytes = vfs.file_bytes(&wal).expect("wal");
    bytes.truncate(cut as usize);
    vfs.set_file_bytes(&wal, bytes);
    let report = run(&vfs, "/new");
    let saved = saved(&vfs, "/new");
    let kept: BTreeMap<RecordId, MemoryNode> = ids[..30]
        .iter()
        .map(|id| (*id, model.live[id].clone()))
        .collect();
    assert_eq!(
        saved, kept,
        "the page file's 20 and the 10 commits before the cut"
    );
    // The cut lost commits that `wal.shm` records as durable: that is a loss.
    assert!(
        report
            .lost
            .iter()
            .any(|lost| lost.kind == ProblemKind::DamagedWal && lost.file == "wal.log"),
        "{:#?}",
        report.lost
    );
    // Without that record it is a torn tail, as a crash leaves: nothing is lost.
    vfs.remove_file(&Path::new(SOURCE).join("wal.shm"))
        .expect("remove wal.shm");
    let report = run(&vfs, "/again");
    assert!(report.is_complete(), "{:#?}", report.lost);
    assert_eq!(report.records_saved, 30);
}

#[test]
fn a_damaged_wal_frame_loses_what_it_held_and_the_frames_after_it_are_read() {
    let vfs = MemFs::new();
    // Enough commits after the damage that the pages they change are logged whole again
    // (a page gets a fresh image after a chain of deltas): a delta after damaged frames
    // cannot be applied (its base is unknown), an image can.
    let (model, ids, _) = logged_database(&vfs, 10, 70);
    let commits = commit_offsets(&vfs);
    // Damage the middle of the fifth commit after the checkpoint.
    let at = (commits[3] + commits[4]) / 2;
    flip(&vfs, "wal.log", at as usize);
    let before = files(&vfs, SOURCE);
    let report = run(&vfs, "/new");
    assert_eq!(files(&vfs, SOURCE), before, "the source is unchanged");
    let gap = report
        .lost
        .iter()
        .find(|lost| lost.kind == ProblemKind::DamagedWal)
        .expect("the damaged frames are reported");
    assert!(gap.offset <= at && gap.file == "wal.log", "{gap:?}");
    let saved = saved(&vfs, "/new");
    for id in &ids[..14] {
        assert_eq!(
            saved.get(id),
            Some(&model.live[id]),
            "{id} from before the damage"
        );
    }
    for (id, node) in &saved {
        assert!(
            model.versions[id].contains(node),
            "{id} is a stored version"
        );
    }
    // Records after the damage are read where their pages' frames allow it: more than the
    // read-only open (which stops at the damage) finds.
    let open = StorageEngine::open_with(Path::new(SOURCE), options(&vfs).read_only())
        .expect("read-only open")
        .scan_memories()
        .count();
    assert_eq!(open, 14, "the read-only open stops at the damage");
    assert!(
        saved.len() > 14,
        "frames after the damage were used: {}",
        saved.len()
    );
    for id in &ids[14..] {
        let reported = report.lost.iter().any(|lost| lost.record == Some(*id));
        assert!(saved.contains_key(id) || reported, "{id} saved or reported");
    }
}

#[test]
fn a_broken_overflow_chain_reports_that_record_and_saves_the_others() {
    let vfs = MemFs::new();
    let engine = StorageEngine::open_with(Path::new(SOURCE), options(&vfs)).expect("open");
    let mut model = Model::default();
    for index in 0..6 {
        model.store(&engine, node(&format!("small {index}"), 400));
    }
    let big = model.store(&engine, node("big", 200_000));
    model.store(&engine, node("after", 400));
    engine.close().expect("close");
    let chain = record_pages(&vfs)[&big].clone();
    assert!(chain.len() >= 4, "a record page and an overflow chain");
    // Relink the second overflow page to a page outside the chain, and reseal it: every
    // page still verifies, but the chain does not hold together.
    let second = *chain.iter().nth(2).expect("second chain page");
    let path = Path::new(SOURCE).join("pages.db");
    let mut bytes = vfs.file_bytes(&path).expect("pages.db");
    let start = second as usize * PAGE_SIZE;
    let mut page =
        mentedb_storage::Page::from_bytes(&bytes[start..start + PAGE_SIZE]).expect("page");
    page.set_next(PageId(2));
    page.seal();
    bytes[start..start + PAGE_SIZE].copy_from_slice(page.bytes());
    vfs.set_file_bytes(&path, bytes);
    let report = run(&vfs, "/new");
    let broken = report
        .lost
        .iter()
        .find(|lost| lost.record == Some(big))
        .expect("the record is reported");
    assert_eq!(broken.kind, ProblemKind::BrokenChain, "{broken:?}");
    let saved = saved(&vfs, "/new");
    let mut others = model.live.clone();
    others.remove(&big);
    assert_eq!(saved, others);
}

#[test]
fn a_zero_length_or_garbage_page_file_without_a_wal_is_a_clear_error() {
    for garbage in [
        Vec::new(),
        (0..3 * PAGE_SIZE).map(|i| (i * 7 + 3) as u8).collect(),
    ] {
        let vfs = MemFs::new();
        vfs.set_file_bytes(&Path::new(SOURCE).join("pages.db"), garbage.clone());
        let result = salvage::salvage(Path::new(SOURCE), Path::new("/new"), options(&vfs));
        match result {
            Err(Error::Corruption { detail, .. }) => {
                assert!(detail.contains("nothing here verifies"), "{detail}");
            }
            other => panic!("expected a clear error, got {other:?}"),
        }
        assert!(!vfs.exists(Path::new("/new/pages.db")).expect("stat"));
        assert_eq!(
            vfs.file_bytes(&Path::new(SOURCE).join("pages.db")),
            Some(garbage)
        );
    }
}

#[test]
fn a_database_whose_page_file_was_emptied_is_rebuilt_from_its_wal() {
    let vfs = MemFs::new();
    let engine = StorageEngine::open_with(Path::new(SOURCE), options(&vfs)).expect("open");
    let mut model = Model::default();
    for index in 0..12 {
        model.store(&engine, node(&format!("logged {index}"), 2_000));
    }
    drop(engine);
    vfs.set_file_bytes(&Path::new(SOURCE).join("pages.db"), Vec::new());
    let report = run(&vfs, "/new");
    assert_eq!(saved(&vfs, "/new"), model.live, "{report:#?}");
}

#[test]
fn a_destination_that_is_not_empty_or_is_the_source_is_refused() {
    let vfs = MemFs::new();
    mixed_database(&vfs);
    vfs.set_file_bytes(Path::new("/busy/note.txt"), b"keep".to_vec());
    for dest in ["/busy", SOURCE] {
        let result = salvage::salvage(Path::new(SOURCE), Path::new(dest), options(&vfs));
        assert!(
            matches!(result, Err(Error::InvalidArgument(_))),
            "{dest}: {result:?}"
        );
    }
    assert_eq!(files(&vfs, "/busy").len(), 1);
    let missing = salvage::salvage(Path::new("/nothing"), Path::new("/new"), options(&vfs));
    assert!(matches!(missing, Err(Error::InvalidArgument(_))));
}

#[test]
fn an_empty_database_salvages_into_an_empty_database() {
    let vfs = MemFs::new();
    StorageEngine::open_with(Path::new(SOURCE), options(&vfs))
        .expect("open")
        .close()
        .expect("close");
    let report = run(&vfs, "/new");
    assert!(report.is_complete(), "{:#?}", report.lost);
    assert_eq!(report.records_saved, 0);
    assert!(saved(&vfs, "/new").is_empty());
}

/// The first handle page of the database, whose only version is in `pages.db`.
fn handle_page(vfs: &MemFs) -> u64 {
    let engine =
        StorageEngine::open_with(Path::new(SOURCE), options(vfs).read_only()).expect("open");
    (2..engine.page_count())
        .find(|raw| {
            engine
                .read_page_image(PageId(*raw))
                .expect("page")
                .page_type()
                == Some(PageType::Handles)
        })
        .expect("a handle page")
}

#[test]
fn a_damaged_handle_page_loses_nothing_records_keep_their_handles() {
    let vfs = MemFs::new();
    let model = mixed_database(&vfs);
    StorageEngine::open_with(Path::new(SOURCE), options(&vfs))
        .expect("open")
        .close()
        .expect("checkpoint and close");
    let page = handle_page(&vfs);
    flip(&vfs, "pages.db", page as usize * PAGE_SIZE + 100);
    let report = run(&vfs, "/new");
    assert!(report.is_complete(), "{:#?}", report.lost);
    assert!(
        report
            .notes
            .iter()
            .any(|note| note.kind == ProblemKind::DamagedPage
                && note.offset == page * PAGE_SIZE as u64),
        "the damage is noted: {:#?}",
        report.notes
    );
    assert_eq!(saved(&vfs, "/new"), model.live);
}

#[test]
fn a_damaged_wal_header_still_gives_its_frames() {
    let vfs = MemFs::new();
    let model = mixed_database(&vfs);
    flip(&vfs, "wal.log", 2);
    let report = run(&vfs, "/new");
    assert!(report.is_complete(), "{:#?}", report.lost);
    assert_eq!(saved(&vfs, "/new"), model.live);
}

#[test]
fn a_compacted_database_salvages_whole() {
    let vfs = MemFs::new();
    let mut model = mixed_database(&vfs);
    let engine = StorageEngine::open_with(Path::new(SOURCE), options(&vfs)).expect("open");
    let doomed: Vec<RecordId> = model.live.keys().copied().step_by(2).collect();
    for id in doomed {
        model.delete(&engine, id);
    }
    engine.compact().expect("compact");
    let extra = model.store(&engine, node("after compaction", 25_000));
    drop(engine);
    let report = run(&vfs, "/new");
    assert!(report.is_complete(), "{:#?}", report.lost);
    let saved = saved(&vfs, "/new");
    assert_eq!(saved, model.live);
    assert!(saved.contains_key(&extra));
}

#[test]
fn frames_of_a_transaction_that_never_committed_are_not_saved() {
    let vfs = MemFs::new();
    let (model, ids, _) = logged_database(&vfs, 5, 5);
    let commits = commit_offsets(&vfs);
    let last_commit_start = {
        let engine =
            StorageEngine::open_with(Path::new(SOURCE), options(&vfs).read_only()).expect("open");
        let frames = engine.wal_frames().expect("frames");
        frames
            .frames
            .iter()
            .rfind(|frame| frame.kind == mentedb_storage::WalEntryType::Commit)
            .expect("a commit")
            .offset
    };
    assert_eq!(commits.len(), 5);
    let wal = Path::new(SOURCE).join("wal.log");
    let mut bytes = vfs.file_bytes(&wal).expect("wal");
    bytes.truncate(last_commit_start as usize);
    vfs.set_file_bytes(&wal, bytes);
    vfs.remove_file(&Path::new(SOURCE).join("wal.shm"))
        .expect("no durable record: a crash before the sync");
    let report = run(&vfs, "/new");
    assert!(report.is_complete(), "{:#?}", report.lost);
    assert!(
        report
            .notes
            .iter()
            .any(|note| note.detail.contains("never committed")),
        "{:#?}",
        report.notes
    );
    let expected: BTreeMap<RecordId, MemoryNode> = ids[..9]
        .iter()
        .map(|id| (*id, model.live[id].clone()))
        .collect();
    assert_eq!(saved(&vfs, "/new"), expected);
}

#[test]
fn a_record_deleted_after_damaged_wal_frames_is_not_brought_back() {
    let vfs = MemFs::new();
    let engine = StorageEngine::open_with(Path::new(SOURCE), options(&vfs)).expect("open");
    let mut model = Model::default();
    let ids: Vec<RecordId> = (0..10)
        .map(|index| model.store(&engine, node(&format!("kept {index}"), 800)))
        .collect();
    engine.checkpoint().expect("checkpoint");
    let start = engine.wal_bytes();
    model.delete(&engine, ids[3]);
    for index in 0..5 {
        model.store(&engine, node(&format!("later {index}"), 800));
    }
    drop(engine);
    // Damage the delete's frame of the record page (its first change since the checkpoint:
    // a full image).
    let record_page = *record_pages(&vfs)[&ids[4]].first().expect("record page");
    let frame = {
        let engine =
            StorageEngine::open_with(Path::new(SOURCE), options(&vfs).read_only()).expect("open");
        engine
            .wal_frames()
            .expect("frames")
            .frames
            .into_iter()
            .find(|frame| frame.offset >= start && frame.page.0 == record_page)
            .expect("the delete's frame of the record page")
    };
    assert_eq!(frame.kind, mentedb_storage::WalEntryType::PageImage);
    flip(&vfs, "wal.log", frame.offset as usize + 60);
    let report = run(&vfs, "/new");
    let saved = saved(&vfs, "/new");
    assert!(
        !saved.contains_key(&ids[3]),
        "the deleted record stays deleted"
    );
    for id in ids.iter().filter(|id| **id != ids[3]) {
        assert_eq!(saved.get(id), Some(&model.live[id]), "{id}");
    }
    assert!(
        report
            .lost
            .iter()
            .any(|lost| lost.kind == ProblemKind::DamagedWal),
        "{:#?}",
        report.lost
    );
}

/// `MemFs` that refuses, and counts, every change asked of the source directory: opening one
/// of its files for writing, creating, removing or renaming in it, syncing it.
#[derive(Debug)]
struct GuardedFs {
    inner: MemFs,
    refused: Arc<std::sync::atomic::AtomicUsize>,
}

impl GuardedFs {
    fn guard(&self, path: &Path) -> std::io::Result<()> {
        if path.starts_with(SOURCE) {
            self.refused
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            return Err(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!("{} is the source (test)", path.display()),
            ));
        }
        Ok(())
    }
}

impl Vfs for GuardedFs {
    fn open_file(
        &self,
        path: &Path,
        mode: mentedb_storage::vfs::OpenMode,
    ) -> std::io::Result<Box<dyn mentedb_storage::vfs::VfsFile>> {
        if mode != mentedb_storage::vfs::OpenMode::ReadOnly {
            self.guard(path)?;
        }
        self.inner.open_file(path, mode)
    }
    fn create_dir_all(&self, path: &Path) -> std::io::Result<()> {
        self.guard(path)?;
        self.inner.create_dir_all(path)
    }
    fn remove_file(&self, path: &Path) -> std::io::Result<()> {
        self.guard(path)?;
        self.inner.remove_file(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        self.guard(from)?;
        self.guard(to)?;
        self.inner.rename(from, to)
    }
    fn list_dir(&self, path: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
        self.inner.list_dir(path)
    }
    fn sync_dir(&self, path: &Path) -> std::io::Result<()> {
        self.guard(path)?;
        self.inner.sync_dir(path)
    }
    fn exists(&self, path: &Path) -> std::io::Result<bool> {
        self.inner.exists(path)
    }
}

#[test]
fn salvage_asks_for_no_change_to_the_source() {
    let vfs = MemFs::new();
    let model = mixed_database(&vfs);
    flip(&vfs, "wal.log", 5000);
    let refused = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let guarded = GuardedFs {
        inner: vfs.clone(),
        refused: Arc::clone(&refused),
    };
    let options = Options::default().vfs(Arc::new(guarded));
    let report = salvage::salvage(Path::new(SOURCE), Path::new("/new"), options)
        .expect("salvage through a file system that refuses changes to the source");
    assert_eq!(refused.load(std::sync::atomic::Ordering::SeqCst), 0);
    for (id, node) in saved(&vfs, "/new") {
        assert!(model.versions[&id].contains(&node), "{id}");
    }
    assert!(report.records_saved > 0);
}

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        mixed ^ (mixed >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

#[test]
fn random_single_byte_damage_never_panics_never_saves_garbage_and_keeps_undamaged_pages() {
    let vfs = MemFs::new();
    let model = mixed_database(&vfs);
    let pages = record_pages(&vfs);
    let logged = wal_pages(&vfs);
    let wal_used = {
        let engine =
            StorageEngine::open_with(Path::new(SOURCE), options(&vfs).read_only()).expect("open");
        engine.wal_bytes()
    };
    let original = files(&vfs, SOURCE);
    let rounds = std::env::var("SALVAGE_ROUNDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(120u64);
    let mut rng = Rng(0x5a17_a6e0);
    for round in 0..rounds {
        for (name, bytes) in &original {
            vfs.set_file_bytes(Path::new(name), bytes.clone());
        }
        let in_wal = rng.below(2) == 0;
        let (file, offset) = if in_wal {
            ("wal.log", rng.below(wal_used) as usize)
        } else {
            let len = original[&format!("{SOURCE}/pages.db")].len() as u64;
            ("pages.db", rng.below(len) as usize)
        };
        flip(&vfs, file, offset);
        let dest = format!("/dest-{round}");
        let report = salvage::salvage(Path::new(SOURCE), Path::new(&dest), options(&vfs))
            .unwrap_or_else(|error| panic!("round {round} ({file} byte {offset}): {error}"));
        let saved = saved(&vfs, &dest);
        for (id, node) in &saved {
            let stored = model.versions.get(id).is_some_and(|all| all.contains(node));
            assert!(
                stored,
                "round {round} ({file} byte {offset}): {id} is not a stored version"
            );
        }
        for (id, node) in &model.live {
            let used = &pages[id];
            let undamaged = if in_wal {
                used.is_disjoint(&logged)
            } else {
                let page = (offset / PAGE_SIZE) as u64;
                !used.contains(&page) || logged.contains(&page)
            };
            if undamaged {
                assert_eq!(
                    saved.get(id),
                    Some(node),
                    "round {round} ({file} byte {offset}): {id} is on undamaged pages: {:#?}",
                    report.lost
                );
            }
        }
        let path = Path::new(&dest);
        for entry in vfs.list_dir(path).expect("list") {
            vfs.remove_file(&entry).expect("clean up");
        }
    }
}

fn tool(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_mentedb-storage"))
        .args(args)
        .output()
        .expect("run mentedb-storage")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_salvage_command_exits_0_when_nothing_is_lost_1_when_something_is_and_2_on_errors() {
    let root = std::env::temp_dir().join(format!("mentedb-salvage-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let db = root.join("db");
    let engine = StorageEngine::open(&db).expect("open");
    for index in 0..30 {
        let size = if index == 7 { 50_000 } else { 600 };
        engine
            .store_memory(&node(&format!("cli {index}"), size))
            .expect("store");
    }
    engine.close().expect("close");
    let path = |dir: &Path| dir.to_str().expect("utf-8 path").to_string();
    let clean = tool(&["salvage", &path(&db), &path(&root.join("clean"))]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    let out = text(&clean.stdout);
    assert!(
        out.contains("salvaged 30 records") && out.contains("nothing was lost"),
        "{out}"
    );
    let map = std::fs::read_to_string(root.join("clean").join(MAP_FILE_NAME)).expect("map");
    assert_eq!(map.lines().count(), 30);
    // Damage the record page (close checkpointed it: pages.db holds its only version).
    let pages = db.join("pages.db");
    let mut bytes = std::fs::read(&pages).expect("read");
    bytes[4 * PAGE_SIZE + 30_000] ^= 0xff;
    std::fs::write(&pages, &bytes).expect("write");
    let damaged = tool(&[
        "salvage",
        &path(&db),
        &path(&root.join("damaged")),
        "--json",
    ]);
    assert_eq!(damaged.status.code(), Some(1), "{}", text(&damaged.stderr));
    let out = text(&damaged.stdout);
    assert!(
        out.contains("\"complete\":false") && out.contains("\"kind\":\"damaged-page\""),
        "{out}"
    );
    assert_eq!(
        std::fs::read(&pages).expect("read"),
        bytes,
        "source unchanged"
    );
    let refused = tool(&["salvage", &path(&db), &path(&root.join("clean"))]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        text(&refused.stderr).contains("not empty"),
        "{}",
        text(&refused.stderr)
    );
    let help = tool(&["salvage", "--help"]);
    assert!(
        text(&help.stdout).contains("salvage-map.txt"),
        "{}",
        text(&help.stdout)
    );
    let _ = std::fs::remove_dir_all(&root);
}
