//! Fuzz target: ringload::fuzz::interval_log on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringload::fuzz::interval_log(data));
