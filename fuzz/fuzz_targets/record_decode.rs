//! `cargo fuzz run record_decode corpus/record_decode` (from the repository root, with `--fuzz-dir fuzz`):
//! see `mentedb_sim::targets::record_decode` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::record_decode(data));
