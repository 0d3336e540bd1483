//! Fuzz target: see `i6p_core::fuzzing::relay`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| i6p_core::fuzzing::relay(data));
