//! From the repository root: `cargo fuzz run -s none backup_restore /tmp/work-backup_restore corpus/backup_restore`
//! (README, "Fuzzing"). The input format and what is checked: `mentedb_sim::targets::backup_restore`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::backup_restore(data));
