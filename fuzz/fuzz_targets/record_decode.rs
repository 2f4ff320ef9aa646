//! From the repository root: `cargo fuzz run -s none record_decode /tmp/work-record_decode corpus/record_decode`
//! (README, "Fuzzing"). The input format and what is checked: `mentedb_sim::targets::record_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::record_decode(data));
