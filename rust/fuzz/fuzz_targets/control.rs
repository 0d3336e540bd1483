//! Fuzz target: see `i6p_core::fuzzing::control`.

#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| i6p_core::fuzzing::control(data));
