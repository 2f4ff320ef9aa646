//! From the repository root: `cargo fuzz run -s none page_decode /tmp/work-page_decode corpus/page_decode`
//! (README, "Fuzzing"). The input format and what is checked: `mentedb_sim::targets::page_decode`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mentedb_sim::targets::page_decode(data));
