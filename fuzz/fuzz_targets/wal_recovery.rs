//! `cargo fuzz run wal_recovery corpus/wal_recovery` (from the repository root, with `--fuzz-dir fuzz`):
//! see `mentedb_sim::targets::wal_recovery` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::wal_recovery(data));
