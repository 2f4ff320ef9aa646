//! Backups: round trips, a backup taken while other threads write, damaged backup files,
//! refusals, and crashes (SimFs) in the middle of a backup or a restore.

use mentedb_sim::simfs::{FaultConfig, SimFs};
use mentedb_storage::backup::{self, RESTORING_FILE_NAME};
use mentedb_storage::vfs::{MemFs, SharedVfs, Vfs};
use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, RecordId, StorageEngine};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

fn node(label: &str, size: usize) -> MemoryNode {
    let content = format!("{label} ") + &"m".repeat(size);
    MemoryNode::new(AgentId::new(), MemoryType::Semantic, content, vec![0.5; 48])
}

/// A node whose text LZ4 cannot shrink much (so the WAL grows by about its size).
fn noisy(label: &str, size: usize) -> MemoryNode {
    let mut state = label.len() as u64 * 0x9e37_79b9_7f4a_7c15 + size as u64;
    let content: String = (0..size)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (b'a' + (state >> 59) as u8) as char
        })
        .collect();
    MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        format!("{label} {content}"),
        vec![0.5; 48],
    )
}

fn options(vfs: SharedVfs) -> Options {
    Options::default().vfs(vfs).buffer_pool_pages(32)
}

fn contents(engine: &StorageEngine) -> BTreeMap<RecordId, MemoryNode> {
    engine
        .scan_memories()
        .map(|item| item.expect("scan"))
        .collect()
}

/// Stores nodes of every size class (overflow chains included), updates and deletes some,
/// and leaves part of it in the WAL (no checkpoint after the last writes).
fn populate(engine: &StorageEngine) -> BTreeMap<RecordId, MemoryNode> {
    let mut expected = BTreeMap::new();
    for index in 0..120 {
        let size = [20, 900, 5_000, 40_000][index % 4];
        let stored = node(&format!("node {index}"), size);
        expected.insert(engine.store_memory(&stored).expect("store"), stored);
        if index == 60 {
            engine.checkpoint().expect("checkpoint");
        }
    }
    let ids: Vec<RecordId> = expected.keys().copied().collect();
    for (index, id) in ids.iter().enumerate().step_by(7) {
        let grown = node(&format!("updated {index}"), 20_000);
        engine.update_memory(*id, &grown).expect("update");
        expected.insert(*id, grown);
    }
    for id in ids.iter().skip(3).step_by(11) {
        engine.delete_memory(*id).expect("delete");
        expected.remove(id);
    }
    expected
}

#[test]
fn backup_then_restore_gives_the_same_nodes_and_a_clean_database() {
    let fs = MemFs::new();
    let vfs: SharedVfs = Arc::new(fs.clone());
    let engine = StorageEngine::open_with(Path::new("/db"), options(vfs.clone())).expect("open");
    let expected = populate(&engine);
    fs.create_dir_all(Path::new("/backups")).expect("mkdir");
    let summary = backup::backup(&engine, Path::new("/backups/one.mbak")).expect("backup");
    assert_eq!(summary.source_lsn, engine.last_lsn());
    assert!(
        !fs.exists(Path::new("/backups/one.mbak.partial"))
            .expect("stat")
    );
    let check = backup::verify(&*vfs, Path::new("/backups/one.mbak")).expect("verify");
    assert!(check.is_clean(), "{:?}", check.problems);
    assert_eq!(check.pages, summary.pages);

    let restored_summary = backup::restore(
        &*vfs,
        Path::new("/backups/one.mbak"),
        Path::new("/restored"),
    )
    .expect("restore");
    assert_eq!(restored_summary, summary);
    let restored =
        StorageEngine::open_with(Path::new("/restored"), options(vfs.clone())).expect("open");
    assert_eq!(contents(&restored), expected);
    let report = restored.check_integrity().expect("integrity");
    assert!(report.is_clean(), "{:?}", report.problems);
    // The restored database takes new writes.
    let more = node("after restore", 300);
    let id = restored.store_memory(&more).expect("store");
    assert_eq!(restored.load_memory(id).expect("load"), more);
    let report = backup::verify_database(Path::new("/restored"), options(vfs)).expect("verify db");
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn backup_and_restore_work_on_real_files() {
    let root = std::env::temp_dir().join(format!("mentedb-backup-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let engine = StorageEngine::open(&root.join("db")).expect("open");
    let expected = populate(&engine);
    let file = root.join("db.mbak");
    let summary = backup::backup(&engine, &file).expect("backup");
    let on_disk = std::fs::metadata(&file).expect("backup file").len();
    assert_eq!(on_disk, summary.backup_bytes);
    assert!(
        on_disk < summary.pages * 65_536 / 2,
        "LZ4 shrinks the mostly repetitive pages"
    );
    let real = mentedb_storage::vfs::RealFs::new();
    backup::restore(&real, &file, &root.join("restored")).expect("restore");
    let restored = StorageEngine::open(&root.join("restored")).expect("open restored");
    assert_eq!(contents(&restored), expected);
    drop((engine, restored));
    let _ = std::fs::remove_dir_all(&root);
}

/// Writers keep storing while the backup runs; each writer stores in sequence, so a backup
/// at one commit point holds, of each writer, every node acknowledged before the backup
/// began and then a prefix of the rest — never a later node without an earlier one.
#[test]
fn backup_during_concurrent_writes_is_one_commit_point() {
    let fs = MemFs::new();
    let vfs: SharedVfs = Arc::new(fs.clone());
    let engine = StorageEngine::open_with(
        Path::new("/db"),
        options(vfs.clone()).checkpoint_wal_bytes(256 * 1024),
    )
    .expect("open");
    for index in 0..200 {
        engine
            .store_memory(&node(&format!("base {index}"), 1_500))
            .expect("store");
    }
    let other_process =
        StorageEngine::open_with(Path::new("/db"), options(vfs.clone())).expect("second open");
    let (written, before_backup) = std::thread::scope(|scope| {
        let writers: Vec<_> = [&engine, &other_process]
            .into_iter()
            .enumerate()
            .map(|(writer, engine)| {
                scope.spawn(move || {
                    (0..1_500)
                        .map(|step| {
                            let stored = node(&format!("writer {writer} step {step}"), 1_200);
                            (engine.store_memory(&stored).expect("store"), stored)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let before_backup = contents(&engine);
        backup::backup(&engine, Path::new("/b.mbak")).expect("backup during writes");
        let written: Vec<_> = writers
            .into_iter()
            .map(|writer| writer.join().expect("writer"))
            .collect();
        (written, before_backup)
    });
    backup::restore(&*vfs, Path::new("/b.mbak"), Path::new("/r")).expect("restore");
    let restored = StorageEngine::open_with(Path::new("/r"), options(vfs)).expect("open");
    let restored_nodes = contents(&restored);
    for (id, stored) in &before_backup {
        assert_eq!(restored_nodes.get(id), Some(stored), "acknowledged before");
    }
    for sequence in &written {
        let present: Vec<bool> = sequence
            .iter()
            .map(|(id, stored)| match restored_nodes.get(id) {
                Some(found) => {
                    assert_eq!(found, stored);
                    true
                }
                None => false,
            })
            .collect();
        let prefix = present.iter().take_while(|present| **present).count();
        assert!(
            present[prefix..].iter().all(|present| !present),
            "a writer's later node without an earlier one: not one commit point"
        );
    }
    let known: BTreeMap<&RecordId, &MemoryNode> = before_backup
        .iter()
        .chain(written.iter().flatten().map(|(id, stored)| (id, stored)))
        .collect();
    assert!(
        restored_nodes.keys().all(|id| known.contains_key(id)),
        "a restored node nobody stored"
    );
    let report = restored.check_integrity().expect("integrity");
    assert!(report.is_clean(), "{:?}", report.problems);
}

#[test]
fn checkpoints_wait_for_an_open_snapshot_and_automatic_ones_skip() {
    let fs = MemFs::new();
    let vfs: SharedVfs = Arc::new(fs.clone());
    let engine = StorageEngine::open_with(
        Path::new("/db"),
        options(vfs.clone()).checkpoint_wal_bytes(64 * 1024),
    )
    .expect("open");
    engine.store_memory(&node("first", 100)).expect("store");
    let snapshot = engine.snapshot().expect("snapshot");
    let page_file_before = fs.file_bytes(Path::new("/db/pages.db"));
    for index in 0..200 {
        engine
            .store_memory(&noisy(&format!("n{index}"), 2_000))
            .expect("store while a snapshot is open");
    }
    assert!(
        engine.wal_bytes() > 64 * 1024,
        "automatic checkpoints skipped"
    );
    assert_eq!(fs.file_bytes(Path::new("/db/pages.db")), page_file_before);
    std::thread::scope(|scope| {
        let checkpoint = scope.spawn(|| engine.checkpoint());
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(
            !checkpoint.is_finished(),
            "the checkpoint waits for the snapshot"
        );
        drop(snapshot);
        checkpoint.join().expect("thread").expect("checkpoint");
    });
    assert!(engine.wal_bytes() < 64 * 1024);
}

#[test]
fn restore_refuses_a_non_empty_target_and_backup_an_existing_file() {
    let fs = MemFs::new();
    let vfs: SharedVfs = Arc::new(fs.clone());
    let engine = StorageEngine::open_with(Path::new("/db"), options(vfs.clone())).expect("open");
    engine.store_memory(&node("x", 10)).expect("store");
    backup::backup(&engine, Path::new("/b.mbak")).expect("backup");
    let again = backup::backup(&engine, Path::new("/b.mbak"));
    assert!(
        matches!(&again, Err(Error::InvalidArgument(message)) if message.contains("already exists")),
        "{again:?}"
    );
    let refused = backup::restore(&*vfs, Path::new("/b.mbak"), Path::new("/db"));
    assert!(
        matches!(&refused, Err(Error::InvalidArgument(message)) if message.contains("not empty")),
        "{refused:?}"
    );
    let missing = backup::restore(&*vfs, Path::new("/none.mbak"), Path::new("/t"));
    assert!(matches!(missing, Err(Error::Io { .. })), "{missing:?}");
    let not_a_db = backup::verify_database(Path::new("/nothing"), options(vfs.clone()));
    assert!(
        matches!(&not_a_db, Err(Error::InvalidArgument(message)) if message.contains("no database")),
        "{not_a_db:?}"
    );
    assert!(
        !fs.exists(Path::new("/nothing")).expect("stat"),
        "verify created nothing"
    );
}

#[test]
fn open_refuses_a_directory_left_by_an_interrupted_restore() {
    let fs = MemFs::new();
    let vfs: SharedVfs = Arc::new(fs.clone());
    fs.set_file_bytes(&Path::new("/half").join(RESTORING_FILE_NAME), vec![0; 100]);
    let opened = StorageEngine::open_with(Path::new("/half"), options(vfs));
    assert!(
        matches!(&opened, Err(Error::InvalidArgument(message)) if message.contains("unfinished restore")),
        "{opened:?}"
    );
}

/// Every truncation and a bit flip in every region of a backup: `verify` reports a problem
/// with the file and an offset, `restore` fails cleanly and leaves no `pages.db`.
#[test]
fn damaged_backups_are_reported_and_never_restored() {
    let fs = MemFs::new();
    let vfs: SharedVfs = Arc::new(fs.clone());
    let engine = StorageEngine::open_with(Path::new("/db"), options(vfs.clone())).expect("open");
    for index in 0..30 {
        engine
            .store_memory(&node(&format!("n{index}"), 3_000 + index * 500))
            .expect("store");
    }
    backup::backup(&engine, Path::new("/good.mbak")).expect("backup");
    let good = fs.file_bytes(Path::new("/good.mbak")).expect("bytes");
    let mut damaged_files = Vec::new();
    for cut in (0..good.len()).step_by(good.len() / 60 + 1) {
        damaged_files.push((format!("truncated at {cut}"), good[..cut].to_vec()));
    }
    for flip in (0..good.len()).step_by(good.len() / 80 + 1) {
        let mut bytes = good.clone();
        bytes[flip] ^= 0x04;
        damaged_files.push((format!("bit flip at {flip}"), bytes));
    }
    let mut extended = good.clone();
    extended.extend_from_slice(b"trailing");
    damaged_files.push(("trailing bytes".into(), extended));
    for (index, (what, bytes)) in damaged_files.into_iter().enumerate() {
        let path = format!("/bad{index}.mbak");
        fs.set_file_bytes(Path::new(&path), bytes);
        let check = backup::verify(&*vfs, Path::new(&path)).expect("verify runs");
        assert!(!check.is_clean(), "{what}: verify found nothing");
        assert!(check.problems.iter().all(|problem| problem.file == path));
        let target = format!("/target{index}");
        let restored = backup::restore(&*vfs, Path::new(&path), Path::new(&target));
        assert!(
            matches!(restored, Err(Error::Corruption { .. })),
            "{what}: {restored:?}"
        );
        assert!(
            !fs.exists(&Path::new(&target).join("pages.db"))
                .expect("stat"),
            "{what}: a pages.db was left"
        );
    }
}

/// A process killed at every I/O call of a backup, then of a restore (SimFs: memory lost,
/// page cache kept), and a power cut at every call or right after the end: the source
/// still has every node, a file under the backup's name is always complete, and a target
/// is either complete or refused by open.
#[test]
fn crashes_during_backup_or_restore_leave_the_source_whole_and_no_valid_looking_target() {
    let db = Path::new("/db");
    for crash_at in 1..80 {
        for power in [false, true] {
            // A power cut loses every write not synced yet: the harshest disk.
            let losing_unsynced_writes = FaultConfig {
                survive_ppm: 0,
                ..FaultConfig::none()
            };
            let fs = SimFs::new(crash_at, losing_unsynced_writes);
            fs.restart_process(0);
            let engine = StorageEngine::open_with(db, options(fs.process(0))).expect("open");
            let mut expected = BTreeMap::new();
            for index in 0..12 {
                let stored = node(&format!("n{index}"), 6_000);
                expected.insert(engine.store_memory(&stored).expect("store"), stored);
            }
            // Backup, crashing somewhere in it.
            arm(&fs, power, crash_at);
            let backed_up = backup::backup(&engine, Path::new("/b.mbak"));
            let crashed = disarm(&fs, power);
            fs.restart_process(0);
            let vfs = fs.process(0);
            drop(engine);
            let engine = StorageEngine::open_with(db, options(vfs.clone())).expect("reopen");
            assert_eq!(
                contents(&engine),
                expected,
                "source after a crash in backup"
            );
            drop(engine);
            let backup_exists = vfs.exists(Path::new("/b.mbak")).expect("stat");
            if backed_up.is_ok() && !crashed {
                assert!(backup_exists);
            }
            if !backup_exists {
                continue;
            }
            let check = backup::verify(&*vfs, Path::new("/b.mbak")).expect("verify");
            assert!(
                check.is_clean(),
                "crash at {crash_at}: a file named like a backup is incomplete: {:?}",
                check.problems
            );
            // Restore, crashing somewhere in it.
            arm(&fs, power, crash_at);
            let restored = backup::restore(&*vfs, Path::new("/b.mbak"), Path::new("/r"));
            let crashed = disarm(&fs, power);
            fs.restart_process(0);
            let vfs = fs.process(0);
            let has_page_file = vfs.exists(Path::new("/r/pages.db")).expect("stat");
            if restored.is_ok() && !crashed {
                assert!(has_page_file);
            }
            if has_page_file {
                let engine = StorageEngine::open_with(Path::new("/r"), options(vfs.clone()))
                    .expect("a restored pages.db opens");
                assert_eq!(
                    contents(&engine),
                    expected,
                    "restored after crash at {crash_at}"
                );
            } else if vfs.exists(Path::new("/r")).expect("stat")
                && vfs
                    .exists(&Path::new("/r").join(RESTORING_FILE_NAME))
                    .expect("stat")
            {
                assert!(StorageEngine::open_with(Path::new("/r"), options(vfs.clone())).is_err());
            }
        }
    }
}

fn arm(fs: &SimFs, power: bool, calls: u64) {
    if power {
        fs.cut_power_after(calls);
    } else {
        fs.kill_process_after(0, calls);
    }
}

/// Disarms the crash triggers; true if one fired. In the power-cut variant the power goes
/// out now if the armed cut did not fire: what an operation completed must survive it.
fn disarm(fs: &SimFs, power: bool) -> bool {
    let fired = fs.power_cut_fired() || fs.is_killed(0);
    fs.disarm();
    if power {
        fs.power_loss();
    }
    fired
}

/// Found by a new user: store X after taking a backup, restore the backup, store Y: Y got
/// X's handle, and X's handle (kept by the application) returned Y. A restore now makes a
/// new line of history (a new identity, the old one in its lineage), so handles taken
/// before the backup keep naming their records and handles taken after it stay `NotFound`.
/// (Without it the open would only skip the serials the backup had reserved: the source
/// used those and more, and slots freed the same way in both give the same home slot and
/// serial to different records, as built here.)
#[test]
fn a_handle_taken_after_a_backup_never_names_a_record_stored_after_the_restore() {
    let vfs = Arc::new(MemFs::new());
    let engine = StorageEngine::open_with(Path::new("/src"), options(vfs.clone())).expect("open");
    let before = engine.store_memory(&node("before", 300)).expect("store");
    backup::backup(&engine, Path::new("/snap.mbak")).expect("backup");
    // Use up the reservation the backup knew of, freeing every slot again...
    for index in 0..1_100 {
        let id = engine
            .store_memory(&node(&format!("gone {index}"), 30))
            .expect("store");
        engine.delete_memory(id).expect("delete");
    }
    // ...then the handle an application keeps: the lowest free slot, the next serial.
    let kept_after_backup = engine.store_memory(&node("x", 30)).expect("store");
    drop(engine);
    backup::restore(&*vfs, Path::new("/snap.mbak"), Path::new("/restored")).expect("restore");
    let restored =
        StorageEngine::open_with(Path::new("/restored"), options(vfs.clone())).expect("open");
    assert_eq!(
        restored
            .load_memory(before)
            .expect("a handle from before the backup")
            .content,
        node("before", 300).content
    );
    // The same pattern after the restore: each store takes the lowest free slot, each
    // delete frees it, until the serials pass the one the kept handle has.
    let mut new = Vec::new();
    for index in 0..2_500 {
        let id = restored
            .store_memory(&node(&format!("new {index}"), 30))
            .expect("store");
        new.push(id);
        if id.serial() > kept_after_backup.serial() {
            break;
        }
        restored.delete_memory(id).expect("delete");
    }
    assert!(
        !new.contains(&kept_after_backup),
        "{kept_after_backup} handed out again"
    );
    assert!(
        matches!(
            restored.load_memory(kept_after_backup),
            Err(Error::NotFound)
        ),
        "a handle taken after the backup loads a record stored after the restore"
    );
    assert!(new.iter().all(|id| id.database() != before.database()));
    assert!(restored.check_integrity().expect("check").is_clean());
}

/// Found by the simulator once it restored backups in the middle of runs: restoring one
/// backup twice gave both restores the same serial *epoch* (the fix before this one), so a
/// handle of a record stored after the first restore named a record stored after the
/// second. Two restores of one backup, and the database it came from going on, are three
/// lines of history: handles from before the backup are valid in all three (and a scan
/// gives them back unchanged), and a handle issued in one line is `NotFound` in the others.
#[test]
fn every_restore_of_one_backup_is_its_own_line_and_handles_never_cross() {
    let vfs = Arc::new(MemFs::new());
    let open =
        |dir: &str| StorageEngine::open_with(Path::new(dir), options(vfs.clone())).expect("open");
    let original = open("/src");
    let before = original.store_memory(&node("before", 300)).expect("store");
    backup::backup(&original, Path::new("/snap.mbak")).expect("backup");
    let lines = [
        ("/src", original),
        ("/one", open_restored(&vfs, "/one")),
        ("/two", open_restored(&vfs, "/two")),
    ];
    // The same pattern in each line: the same slots and serials come next in all three.
    let mut issued = Vec::new();
    for (dir, engine) in &lines {
        let mut ids = Vec::new();
        for index in 0..40 {
            let id = engine
                .store_memory(&node(&format!("{dir} {index}"), 30))
                .expect("store");
            ids.push(id);
        }
        issued.push(ids);
    }
    for (line, (dir, engine)) in lines.iter().enumerate() {
        assert_eq!(
            engine
                .load_memory(before)
                .expect("from before the backup")
                .content,
            node("before", 300).content,
            "{dir}"
        );
        let scanned: Vec<_> = engine
            .scan_memories()
            .map(|item| item.expect("scan").0)
            .collect();
        assert!(
            scanned.contains(&before),
            "{dir}: the scan renamed an old record"
        );
        for (other, ids) in issued.iter().enumerate() {
            for id in ids {
                let loaded = engine.load_memory(*id);
                if other == line {
                    assert!(loaded.is_ok(), "{dir}: its own {id}");
                } else {
                    assert!(
                        matches!(loaded, Err(Error::NotFound)),
                        "{dir}: {id} of another line gave {loaded:?}"
                    );
                }
            }
        }
        assert!(engine.check_integrity().expect("check").is_clean());
    }
    // A restore of a restored database keeps the whole line: the original's old handle
    // and the first restore's handles still name their records.
    backup::backup(&lines[1].1, Path::new("/one.mbak")).expect("backup of a restore");
    backup::restore(&*vfs, Path::new("/one.mbak"), Path::new("/grandchild")).expect("restore");
    let grandchild = open("/grandchild");
    assert!(grandchild.load_memory(before).is_ok());
    for id in &issued[1] {
        assert!(grandchild.load_memory(*id).is_ok(), "{id} of its parent");
    }
    for id in issued[0].iter().chain(&issued[2]) {
        assert!(matches!(grandchild.load_memory(*id), Err(Error::NotFound)));
    }
}

fn open_restored(vfs: &Arc<MemFs>, dir: &str) -> StorageEngine {
    backup::restore(&**vfs, Path::new("/snap.mbak"), Path::new(dir)).expect("restore");
    StorageEngine::open_with(Path::new(dir), options(vfs.clone())).expect("open restored")
}
