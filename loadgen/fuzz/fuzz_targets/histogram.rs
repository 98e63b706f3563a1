//! Fuzz target: ringload::fuzz::histogram on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringload::fuzz::histogram(data));
