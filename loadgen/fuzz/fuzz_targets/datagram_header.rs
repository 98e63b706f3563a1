//! Fuzz target: ringload::fuzz::datagram_header on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringload::fuzz::datagram_header(data));
