//! Fuzz target: see `i6p_core::fuzzing::dht_record`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| i6p_core::fuzzing::dht_record(data));
