//! `cargo fuzz run engine_ops corpus/engine_ops` (from the repository root, with `--fuzz-dir fuzz`):
//! see `mentedb_sim::targets::engine_ops` for the input format and what is checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::engine_ops(data));
