//! What a new user's mistakes get: a clear error that says what is wrong and where, and
//! nothing created or changed on disk.

use mentedb_storage::{AgentId, Error, MemoryNode, MemoryType, Options, StorageEngine};
use std::path::{Path, PathBuf};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "mentedb-clear-errors-{name}-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn an_empty_path_is_refused_and_creates_nothing() {
    match StorageEngine::open(Path::new("")) {
        Err(Error::InvalidArgument(detail)) => assert!(detail.contains("empty"), "{detail}"),
        other => panic!("open(\"\") gave {:?}", other.map(|_| ())),
    }
}

#[test]
fn a_regular_file_is_refused_and_left_alone() {
    let dir = temp_dir("file");
    let file = dir.join("notes.txt");
    std::fs::write(&file, b"not a database").expect("write");
    match StorageEngine::open(&file) {
        Err(Error::InvalidArgument(detail)) => {
            assert!(
                detail.contains("notes.txt") && detail.contains("not a directory"),
                "{detail}"
            )
        }
        other => panic!("opening a file gave {:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read(&file).expect("read"), b"not a database");
    assert_eq!(entries(&dir), vec!["notes.txt"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// mentedb-storage 0.45 kept `records.db` and `records.wal`: opening such a directory used
/// to create a new, empty database beside them.
#[test]
fn a_directory_of_another_engine_is_refused_and_left_alone() {
    let dir = temp_dir("v045");
    std::fs::write(dir.join("records.db"), b"old engine data").expect("write");
    std::fs::write(dir.join("records.wal"), b"old engine log").expect("write");
    match StorageEngine::open(&dir) {
        Err(Error::InvalidArgument(detail)) => {
            assert!(
                detail.contains("records.db") && detail.contains("0.45"),
                "{detail}"
            )
        }
        other => panic!("opening a 0.45 directory gave {:?}", other.map(|_| ())),
    }
    assert_eq!(entries(&dir), vec!["records.db", "records.wal"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn absurd_buffer_pool_sizes_are_refused() {
    let dir = temp_dir("pool");
    for pages in [usize::MAX, usize::MAX / 2, 1 << 40] {
        match StorageEngine::open_with(&dir.join("db"), Options::default().buffer_pool_pages(pages))
        {
            Err(Error::InvalidArgument(detail)) => {
                assert!(detail.contains("buffer pool"), "{detail}")
            }
            other => panic!("a pool of {pages} pages gave {:?}", other.map(|_| ())),
        }
    }
    assert!(
        entries(&dir).is_empty(),
        "nothing created: {:?}",
        entries(&dir)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_batch_too_large_for_one_transaction_says_its_size_before_encoding_anything() {
    let dir = temp_dir("batch");
    let engine = StorageEngine::open(&dir.join("db")).expect("open");
    let big = MemoryNode::new(
        AgentId::new(),
        MemoryType::Semantic,
        "b".repeat(30 << 20),
        vec![],
    );
    let nodes = vec![big; 10];
    match engine.store_memory_batch(&nodes) {
        Err(Error::TooLarge { what, size, limit }) => {
            assert!(what.contains("transaction"), "{what}");
            assert!(
                size >= 300 << 20 && size > limit,
                "size {size}, limit {limit}"
            );
        }
        other => panic!("a 300 MiB batch gave {:?}", other.map(|ids| ids.len())),
    }
    assert_eq!(engine.scan_memories().count(), 0);
    drop(engine);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn an_open_error_names_the_database_directory() {
    let dir = temp_dir("named");
    let db = dir.join("db");
    let engine = StorageEngine::open(&db).expect("open");
    drop(engine);
    let mut bytes = std::fs::read(db.join("pages.db")).expect("read");
    for page in [0, 1] {
        bytes[page * 65_536 + 200] ^= 0xff;
    }
    std::fs::write(db.join("pages.db"), bytes).expect("write");
    match StorageEngine::open(&db) {
        Err(error) => assert!(
            error.to_string().contains(&db.display().to_string()),
            "{error}"
        ),
        Ok(_) => panic!("a database without a valid meta page opened"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}
