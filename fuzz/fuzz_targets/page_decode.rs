//! `cargo fuzz run page_decode corpus/page_decode` (from the repository root, with `--fuzz-dir fuzz`):
//! see `mentedb_sim::targets::page_decode` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::page_decode(data));
