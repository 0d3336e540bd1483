//! Fuzz target: see `i6p_net::fuzzing::journal`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| i6p_net::fuzzing::journal(data));
