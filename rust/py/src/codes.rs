//! Application codes from Python, checked once: close, reset and stop codes are 0 or at
//! least `FIRST_APPLICATION_CODE` (the codes below are I6P's own) and within what the wire
//! carries; anything else is an `InvalidCode` (an `I6PError` and a `ValueError`).

use crate::errors::invalid_code;
use i6p_core::codes::{FIRST_APPLICATION_CODE, MAX_CLOSE_CODE, MAX_RESET_CODE};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyInt;

/// A close code: 0 or `FIRST_APPLICATION_CODE ..= 2^32 - 1` (the CLOSE frame's field).
pub(crate) fn close_code(code: &Bound<'_, PyAny>) -> PyResult<u32> {
    let code = app_code(code, "close", MAX_CLOSE_CODE)?;
    u32::try_from(code).map_err(|_| invalid_code(format!("close code {code} is out of range")))
}

/// A stream reset or stop code: 0 or `FIRST_APPLICATION_CODE ..= 2^62 - 1` (QUIC's range).
pub(crate) fn reset_code(code: &Bound<'_, PyAny>, what: &str) -> PyResult<u64> {
    app_code(code, what, MAX_RESET_CODE)
}

fn app_code(code: &Bound<'_, PyAny>, what: &str, max: u64) -> PyResult<u64> {
    let first = FIRST_APPLICATION_CODE;
    let range = format!("0 or {first}..={max}");
    if !code.is_instance_of::<PyInt>() {
        return Err(PyTypeError::new_err(format!(
            "{what} code must be an int ({range})"
        )));
    }
    let Ok(value) = code.extract::<u64>() else {
        return Err(invalid_code(format!(
            "{what} code {code} is out of range: use {range}"
        )));
    };
    if value != 0 && value < u64::from(first) {
        return Err(invalid_code(format!(
            "{what} code {value} is reserved for i6p (1..={}): use {range}",
            first - 1
        )));
    }
    if value > max {
        return Err(invalid_code(format!(
            "{what} code {value} is out of range: use {range}"
        )));
    }
    Ok(value)
}
