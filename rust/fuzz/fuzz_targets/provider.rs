//! Fuzz target: see `i6p_net::fuzzing::provider`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| i6p_net::fuzzing::provider(data));
