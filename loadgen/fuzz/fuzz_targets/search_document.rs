//! Fuzz target: ringload::fuzz::search_document, a search ringload wrote edited by the bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringload::fuzz::search_document(data));
