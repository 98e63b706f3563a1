//! Fuzz target: ringload::results::fuzz::histogram on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringload::results::fuzz::histogram(data));
