//! Fuzz target: ringload::fuzz::result_document on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringload::fuzz::result_document(data));
