//! Runs every seed and regression input in `corpus/<target>/` through its fuzz target's
//! function (`mentedb_sim::targets`) on stable Rust: what the fuzzers found stays fixed.
//! The corpus is made by `cargo run --release -p mentedb-sim --example make_corpus`;
//! crashing inputs found by `cargo fuzz` are added to the same directories.

use mentedb_sim::targets::TARGETS;
use std::fs;
use std::path::Path;

#[test]
fn every_corpus_file_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, run) in TARGETS {
        let dir = root.join(target);
        let mut entries: Vec<_> = fs::read_dir(&dir)
            .unwrap_or_else(|error| panic!("{}: {error}", dir.display()))
            .map(|entry| entry.expect("corpus entry").path())
            .collect();
        entries.sort();
        assert!(!entries.is_empty(), "the {target} corpus is empty");
        for path in entries {
            let data = fs::read(&path).expect("corpus file");
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(
                outcome.is_ok(),
                "{target}: {} fails (replay with `cargo fuzz run {target} {}`)",
                path.display(),
                path.display()
            );
        }
    }
}
