//! The `mentedb-storage` command-line tool, run as a process on real directories.

use mentedb_storage::{AgentId, MemoryNode, MemoryType, RecordId, StorageEngine};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tool(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mentedb-storage"))
        .args(args)
        .output()
        .expect("run mentedb-storage")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A fresh scratch directory for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("mentedb-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A database with small, large (overflow) and deleted nodes, part of it only in the WAL.
fn database(dir: &Path) -> Vec<(RecordId, MemoryNode)> {
    let engine = StorageEngine::open(dir).expect("open");
    let mut stored = Vec::new();
    for index in 0..40 {
        let mut node = MemoryNode::new(
            AgentId::new(),
            MemoryType::Episodic,
            format!("memory {index} ") + &"x".repeat(if index % 10 == 3 { 30_000 } else { 400 }),
            vec![0.25; 16],
        );
        node.tags = vec!["cli".into(), format!("n{index}")];
        stored.push((engine.store_memory(&node).expect("store"), node));
        if index == 20 {
            engine.checkpoint().expect("checkpoint");
        }
    }
    engine.delete_memory(stored[5].0).expect("delete");
    stored.remove(5);
    stored
}

fn path(dir: &Path) -> &str {
    dir.to_str().expect("utf-8 path")
}

#[test]
fn verify_reports_clean_then_damage_with_exit_code_1() {
    let root = scratch("verify");
    let db = root.join("db");
    database(&db);
    let clean = tool(&["verify", path(&db)]);
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean.stderr));
    assert!(
        text(&clean.stdout).contains("clean"),
        "{}",
        text(&clean.stdout)
    );
    // Flip a byte in the middle of a data page written by the checkpoint.
    let pages = db.join("pages.db");
    let mut bytes = std::fs::read(&pages).expect("read");
    bytes[2 * 65_536 + 30_000] ^= 0xff;
    std::fs::write(&pages, bytes).expect("write");
    let damaged = tool(&["verify", path(&db), "--json"]);
    assert_eq!(damaged.status.code(), Some(1), "{}", text(&damaged.stderr));
    let out = text(&damaged.stdout);
    assert!(
        out.contains("\"clean\":false") && out.contains("pages.db"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn stats_and_dump_show_the_database() {
    let root = scratch("stats");
    let db = root.join("db");
    let stored = database(&db);
    let stats = tool(&["stats", path(&db)]);
    assert_eq!(stats.status.code(), Some(0), "{}", text(&stats.stderr));
    let out = text(&stats.stdout);
    for field in [
        "pages",
        "live records",
        "free space",
        "compact         would give back",
        "fill factor",
        "wal.log",
        "checkpoint LSN",
        "buffer pool",
    ] {
        assert!(out.contains(field), "stats lacks {field}: {out}");
    }
    assert!(
        out.contains(&format!("live records    {}", stored.len())),
        "{out}"
    );
    let json = text(&tool(&["stats", path(&db), "--json"]).stdout);
    assert!(
        json.contains(&format!("\"live_records\":{}", stored.len())),
        "{json}"
    );

    let wal = tool(&["dump", path(&db), "--wal"]);
    assert_eq!(wal.status.code(), Some(0), "{}", text(&wal.stderr));
    assert!(
        text(&wal.stdout).contains("commit"),
        "{}",
        text(&wal.stdout)
    );
    // Page 2 is the space map, 3 the first handle page, 4 the first record page.
    for (page, shows) in [
        ("2", "type SpaceMap"),
        ("3", "type Handles"),
        ("4", "type Data"),
        ("4", "of home slot 0 of page 3"),
    ] {
        let dump = tool(&["dump", path(&db), "--page", page]);
        assert!(text(&dump.stdout).contains(shows), "{}", text(&dump.stdout));
    }
    let (id, node) = &stored[0];
    let record = tool(&["dump", path(&db), "--record", &id.to_string(), "--json"]);
    assert_eq!(record.status.code(), Some(0), "{}", text(&record.stderr));
    let out = text(&record.stdout);
    assert!(
        out.contains(&node.content) && out.contains("\"tags\":[\"cli\",\"n0\"]"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn backup_restore_and_checkpoint_round_trip() {
    let root = scratch("backup");
    let db = root.join("db");
    let stored = database(&db);
    let file = root.join("db.mbak");
    let backup = tool(&["backup", path(&db), path(&file)]);
    assert_eq!(backup.status.code(), Some(0), "{}", text(&backup.stderr));
    assert!(
        text(&backup.stderr).is_empty(),
        "no progress bar when piped"
    );
    let verify = tool(&["verify", path(&file)]);
    assert_eq!(verify.status.code(), Some(0), "{}", text(&verify.stdout));
    let restored = root.join("restored");
    let restore = tool(&["restore", path(&file), path(&restored)]);
    assert_eq!(restore.status.code(), Some(0), "{}", text(&restore.stderr));
    let checkpoint = tool(&["checkpoint", path(&restored)]);
    assert_eq!(
        checkpoint.status.code(),
        Some(0),
        "{}",
        text(&checkpoint.stderr)
    );
    let engine = StorageEngine::open(&restored).expect("open restored");
    for (id, node) in &stored {
        assert_eq!(&engine.load_memory(*id).expect("load"), node);
    }
    // Restoring again into the now non-empty directory is refused.
    let again = tool(&["restore", path(&file), path(&restored)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        text(&again.stderr).contains("not empty"),
        "{}",
        text(&again.stderr)
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn user_mistakes_print_one_line_and_no_backtrace() {
    let root = scratch("mistakes");
    let missing = root.join("missing");
    for args in [
        vec!["verify", path(&missing)],
        vec!["stats", path(&missing)],
        vec!["dump", path(&missing), "--wal"],
        vec!["checkpoint", path(&missing)],
        vec!["restore", "/nonexistent/file.mbak", path(&root)],
    ] {
        let output = tool(&args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let err = text(&output.stderr);
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: "), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
    }
    assert!(
        !missing.exists(),
        "no command created the missing directory"
    );
    let db = root.join("db");
    database(&db);
    let bad_handle = tool(&["dump", path(&db), "--record", "nonsense"]);
    assert_eq!(bad_handle.status.code(), Some(2));
    assert!(text(&bad_handle.stderr).contains("a handle reads like"));
    let _ = std::fs::remove_dir_all(&root);
}
