use super::*;
use mentedb_storage::vfs::LockMode;

fn open(fs: &SimFs, pid: Pid, path: &str) -> Box<dyn VfsFile> {
    let vfs = fs.process(pid);
    vfs.create_dir_all(Path::new("/db")).expect("dir");
    vfs.open_file(Path::new(path), OpenMode::CreateOrOpen)
        .expect("open")
}

fn config_losing_everything() -> FaultConfig {
    FaultConfig {
        survive_ppm: 0,
        ..FaultConfig::none()
    }
}

#[test]
fn synced_data_survives_power_loss_and_unsynced_data_does_not() {
    let fs = SimFs::new(1, config_losing_everything());
    let file = open(&fs, 0, "/db/f");
    fs.process(0).sync_dir(Path::new("/db")).expect("sync dir");
    file.write_all_at(b"durable", 0).expect("write");
    file.sync_data().expect("sync");
    file.write_all_at(b"LOST", 0).expect("write");
    assert_eq!(fs.file_bytes(Path::new("/db/f")).expect("file"), b"LOSTble");
    fs.power_loss();
    assert_eq!(fs.file_bytes(Path::new("/db/f")).expect("file"), b"durable");
    assert!(
        file.read_at(&mut [0; 4], 0).is_err(),
        "old handles die with the power"
    );
}

#[test]
fn a_name_is_durable_only_after_a_directory_sync() {
    let fs = SimFs::new(2, FaultConfig::none());
    let file = open(&fs, 0, "/db/f");
    file.write_all_at(b"x", 0).expect("write");
    file.sync_data().expect("sync");
    fs.power_loss();
    assert!(fs.file_bytes(Path::new("/db/f")).is_none());
}

#[test]
fn a_killed_process_loses_its_handles_and_locks_but_not_the_page_cache() {
    let fs = SimFs::new(3, FaultConfig::none());
    let first = open(&fs, 0, "/db/wal");
    let second = open(&fs, 1, "/db/wal");
    assert!(first.try_lock(LockMode::Exclusive).expect("lock"));
    assert!(!second.try_lock(LockMode::Exclusive).expect("try"));
    let error = second.lock(LockMode::Exclusive).expect_err("would block");
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    first.write_all_at(b"cached", 0).expect("write");
    fs.kill_process(0);
    assert!(first.write_at(b"z", 0).is_err());
    assert!(
        second
            .try_lock(LockMode::Exclusive)
            .expect("lock after kill")
    );
    let mut buf = [0u8; 6];
    second.read_exact_at(&mut buf, 0).expect("read");
    assert_eq!(&buf, b"cached");
}

#[test]
fn an_armed_kill_fires_at_the_counted_call() {
    let fs = SimFs::new(4, FaultConfig::none());
    let file = open(&fs, 0, "/db/f");
    fs.kill_process_after(0, 2);
    file.write_all_at(b"a", 0).expect("first call");
    assert!(file.write_all_at(b"b", 1).is_err());
    assert!(fs.is_killed(0));
    fs.restart_process(0);
    assert!(
        file.write_all_at(b"c", 2).is_err(),
        "handles of the old life stay dead"
    );
    let file = open(&fs, 0, "/db/f");
    file.write_all_at(b"c", 1).expect("new life");
}

#[test]
fn a_failed_sync_reports_once_and_may_lose_what_the_cache_shows() {
    let config = FaultConfig {
        sync_error_ppm: 1_000_000,
        ..config_losing_everything()
    };
    let mut lost_somewhere = false;
    for seed in 0..16 {
        let fs = SimFs::new(seed, config.clone());
        let file = open(&fs, 0, "/db/f");
        fs.process(0).sync_dir(Path::new("/db")).expect("sync dir");
        for index in 0..8u64 {
            file.write_all_at(&[index as u8 + 1], index).expect("write");
        }
        assert!(file.sync_data().is_err());
        fs.set_faults_active(false);
        file.sync_data()
            .expect("a retry succeeds: the pages were marked clean");
        fs.power_loss();
        let durable = fs.file_bytes(Path::new("/db/f")).expect("file");
        lost_somewhere |= durable.contains(&0) || durable.len() < 8;
    }
    assert!(
        lost_somewhere,
        "some failed sync lost data the cache had shown"
    );
}

#[test]
fn the_same_seed_injects_the_same_faults() {
    let run = |seed| {
        let config = FaultConfig {
            write_error_ppm: 100_000,
            short_io_ppm: 100_000,
            torn_writes: true,
            survive_ppm: 500_000,
            ..FaultConfig::none()
        };
        let fs = SimFs::new(seed, config);
        let file = open(&fs, 0, "/db/f");
        for index in 0..200u64 {
            let _ = file.write_at(&[index as u8; 1000], index * 700);
        }
        fs.power_loss();
        (fs.faults(), fs.file_bytes(Path::new("/db/f")))
    };
    assert_eq!(run(9), run(9));
    assert_ne!(run(9).0, run(10).0);
}

#[test]
fn torn_writes_mix_old_new_and_garbage_pieces() {
    let config = FaultConfig {
        persistence: Persistence::Strict,
        survive_ppm: 1_000_000,
        torn_writes: true,
        tear_piece_bytes: 512,
        ..FaultConfig::none()
    };
    let mut torn = false;
    for seed in 0..32 {
        let fs = SimFs::new(seed, config.clone());
        let file = open(&fs, 0, "/db/f");
        fs.process(0).sync_dir(Path::new("/db")).expect("sync dir");
        file.write_all_at(&[1u8; 8192], 0).expect("write");
        file.sync_data().expect("sync");
        file.write_all_at(&[2u8; 8192], 0).expect("write");
        fs.power_loss();
        let bytes = fs.file_bytes(Path::new("/db/f")).expect("file");
        let pieces: Vec<u8> = bytes.chunks(512).map(|piece| piece[0]).collect();
        torn |= pieces.contains(&1) && pieces.contains(&2);
    }
    assert!(torn);
}

#[test]
fn crash_images_start_from_a_captured_point() {
    let fs = SimFs::new(5, FaultConfig::none());
    let file = open(&fs, 0, "/db/f");
    fs.process(0).sync_dir(Path::new("/db")).expect("sync dir");
    file.write_all_at(&[7u8; 600], 0).expect("write");
    let point = fs.capture();
    assert_eq!(point.pending_writes(), 1);
    let images = point.images(8, 512, 100, 0);
    let fresh = SimFs::from_image(&images[1], 5, FaultConfig::none());
    assert_eq!(
        fresh.file_bytes(Path::new("/db/f")).expect("file"),
        vec![7u8; 600]
    );
}

/// A misdirected page write is damage where it landed and at the page it was meant for
/// (which keeps its old bytes); a power loss that drops the write drops both.
#[test]
fn a_misdirected_write_damages_both_pages_until_a_power_loss_drops_it() {
    const PAGE: u64 = mentedb_storage::PAGE_SIZE as u64;
    for synced in [true, false] {
        let fs = SimFs::new(
            7,
            FaultConfig {
                misdirect_ppm: 1_000_000,
                survive_ppm: 0,
                ..FaultConfig::none()
            },
        );
        let file = open(&fs, 0, "/db/pages.db");
        fs.process(0).sync_dir(Path::new("/db")).expect("sync dir");
        file.write_all_at(&vec![1u8; 3 * PAGE as usize], 0)
            .expect("write three pages at once (not one page: never misdirected)");
        file.sync_data().expect("sync");
        file.write_all_at(&vec![2u8; PAGE as usize], PAGE)
            .expect("write page 1");
        let mut offsets: Vec<u64> = fs.damage().iter().map(|damage| damage.offset).collect();
        offsets.sort_unstable();
        assert_eq!(offsets.len(), 2, "{offsets:?}");
        assert!(
            offsets.contains(&PAGE),
            "the page it was meant for: {offsets:?}"
        );
        if synced {
            file.sync_data().expect("sync");
        }
        fs.power_loss();
        assert_eq!(fs.damage().len(), if synced { 2 } else { 0 });
    }
}
