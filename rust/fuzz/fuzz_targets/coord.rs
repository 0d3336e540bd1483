//! Fuzz target: see `i6p_core::fuzzing::coord`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| i6p_core::fuzzing::coord(data));
