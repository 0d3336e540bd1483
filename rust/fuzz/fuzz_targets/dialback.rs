//! Fuzz target: see `i6p_core::fuzzing::dialback`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| i6p_core::fuzzing::dialback(data));
