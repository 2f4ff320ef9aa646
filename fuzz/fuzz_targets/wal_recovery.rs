//! From the repository root: `cargo fuzz run -s none wal_recovery /tmp/work-wal_recovery corpus/wal_recovery`
//! (README, "Fuzzing"). The input format and what is checked: `mentedb_sim::targets::wal_recovery`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::wal_recovery(data));
