//! From the repository root: `cargo fuzz run -s none engine_ops /tmp/work-engine_ops corpus/engine_ops`
//! (README, "Fuzzing"). The input format and what is checked: `mentedb_sim::targets::engine_ops`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::engine_ops(data));
