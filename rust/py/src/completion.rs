//! Completing asyncio futures from the engine on the event loop's own thread.
//!
//! pyo3-async-runtimes completes a future from a blocking-pool thread: that thread waits for
//! the GIL (while the loop runs Python, up to the interpreter's switch interval), converts the
//! result to Python, then schedules it with `call_soon_threadsafe`. A cancel that reaches the
//! awaiting task between the conversion and the scheduled call drops the converted value: bytes
//! taken off a stream, or copied into a caller's buffer, were lost that way.
//!
//! Here an engine task that finishes puts its result in its loop's queue and, when the queue
//! was empty, writes one byte to a socket the loop watches (`add_reader`): the engine never
//! waits for the GIL, and results that finish together cost one wake-up. The loop drains the
//! queue on its own thread, where cancellation happens too, so "cancelled? else convert and
//! deliver" cannot be interleaved with a cancel: a result is delivered or dropped unconverted,
//! and the values that matter give themselves back when dropped (`handoff`).

use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyCFunction;
use pyo3::IntoPyObjectExt;
use std::future::Future;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// Whether stream calls complete through the loop's bell; off only in benchmarks that measure
/// what it saves against pyo3-async-runtimes (`i6p._core.testing.set_stream_bell`).
static BELL: AtomicBool = AtomicBool::new(true);

/// Turns completion through the bell on or off (benchmarks only).
pub(crate) fn set_bell(on: bool) {
    BELL.store(on, Ordering::Relaxed);
}

/// A finished engine call waiting to be delivered on its loop's thread.
trait Finished: Send {
    /// Completes `future` unless it was cancelled; otherwise drops the result unconverted.
    fn deliver(self: Box<Self>, py: Python<'_>);
}

/// One event loop's queue of finished calls and the socket pair that wakes it.
#[pyclass(frozen, module = "i6p._core")]
pub(crate) struct Bell {
    queue: Mutex<Vec<Box<dyn Finished>>>,
    ring: UnixStream,
    listen: UnixStream,
}

impl Bell {
    fn new() -> PyResult<Self> {
        let (ring, listen) = UnixStream::pair().map_err(runtime_error)?;
        ring.set_nonblocking(true).map_err(runtime_error)?;
        listen.set_nonblocking(true).map_err(runtime_error)?;
        Ok(Self {
            queue: Mutex::new(Vec::new()),
            ring,
            listen,
        })
    }

    /// Queues `done`; wakes the loop when nothing was queued before (else a wake-up is due).
    fn push(&self, done: Box<dyn Finished>) {
        let was_empty = {
            let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            queue.push(done);
            queue.len() == 1
        };
        if was_empty {
            // A full socket means unread wake-ups: one more is not needed.
            let _ = (&self.ring).write(&[1]);
        }
    }
}

#[pymethods]
impl Bell {
    /// The loop's reader callback: takes the wake-up bytes, then everything queued (in this
    /// order, so a result queued after the take rings again), and delivers it.
    fn __call__(&self, py: Python<'_>) {
        let mut sink = [0u8; 64];
        while matches!((&self.listen).read(&mut sink), Ok(n) if n > 0) {}
        let done = std::mem::take(&mut *self.queue.lock().unwrap_or_else(|p| p.into_inner()));
        for one in done {
            one.deliver(py);
        }
    }
}

fn runtime_error(e: std::io::Error) -> PyErr {
    PyRuntimeError::new_err(format!("cannot set up the engine's wake-up socket: {e}"))
}

/// The running loop and its bell, made and registered (`add_reader`) on first use. Bells are
/// kept in a `WeakKeyDictionary`, so a loop that goes away takes its bell with it.
fn loop_bell<'py>(py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, Py<Bell>)> {
    static BELLS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static RUNNING: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let running = RUNNING.get_or_try_init(py, || {
        PyResult::Ok(py.import("asyncio")?.getattr("get_running_loop")?.unbind())
    })?;
    let event_loop = running.bind(py).call0()?;
    let bells = BELLS
        .get_or_try_init(py, || {
            PyResult::Ok(
                py.import("weakref")?
                    .call_method0("WeakKeyDictionary")?
                    .unbind(),
            )
        })?
        .bind(py);
    if let Some(bell) = bells
        .call_method1("get", (&event_loop,))?
        .extract::<Option<Py<Bell>>>()?
    {
        return Ok((event_loop, bell));
    }
    let bell = Py::new(py, Bell::new()?)?;
    let fd = bell.get().listen.as_raw_fd();
    event_loop.call_method1("add_reader", (fd, bell.clone_ref(py)))?;
    bells.set_item(&event_loop, bell.clone_ref(py))?;
    Ok((event_loop, bell))
}

/// A result on its way to its asyncio future. Dropped before delivery (the engine task
/// panicked, or the runtime shut down), it still completes the future, with an error.
struct Outcome<T: for<'py> IntoPyObject<'py> + Send + 'static> {
    future: Option<Py<PyAny>>,
    result: Option<PyResult<T>>,
    bell: Py<Bell>,
}

impl<T: for<'py> IntoPyObject<'py> + Send + 'static> Outcome<T> {
    fn send(mut self, result: PyResult<T>) {
        self.result = Some(result);
        let done = Box::new(Delivery {
            future: self.future.take(),
            result: self.result.take(),
        });
        self.bell.get().push(done);
    }
}

impl<T: for<'py> IntoPyObject<'py> + Send + 'static> Drop for Outcome<T> {
    fn drop(&mut self) {
        if self.future.is_some() {
            let done: Box<Delivery<T>> = Box::new(Delivery {
                future: self.future.take(),
                result: Some(Err(PyRuntimeError::new_err(
                    "the engine's call ended without a result (runtime shut down or panic)",
                ))),
            });
            self.bell.get().push(done);
        }
    }
}

struct Delivery<T> {
    future: Option<Py<PyAny>>,
    result: Option<PyResult<T>>,
}

impl<T: for<'py> IntoPyObject<'py> + Send + 'static> Finished for Delivery<T> {
    fn deliver(mut self: Box<Self>, py: Python<'_>) {
        let (Some(future), Some(result)) = (self.future.take(), self.result.take()) else {
            return;
        };
        let future = future.bind(py);
        // A future already done (cancelled) keeps nothing: `result` drops unconverted here.
        if future
            .call_method0("done")
            .and_then(|d| d.is_truthy())
            .unwrap_or(true)
        {
            return;
        }
        let outcome = match result.and_then(|v| v.into_py_any(py)) {
            Ok(value) => future.call_method1("set_result", (value,)),
            Err(e) => future.call_method1("set_exception", (e.into_value(py),)),
        };
        if let Err(e) = outcome {
            e.write_unraisable(py, Some(future));
        }
    }
}

/// Runs `fut` on the engine and returns an asyncio future for its result, completed on the
/// running loop's thread. Cancelling the future drops `fut`.
pub(crate) fn on_loop<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    if !BELL.load(Ordering::Relaxed) {
        return crate::runtime::future(py, fut);
    }
    let Ok((event_loop, bell)) = loop_bell(py) else {
        // No running loop (the same error follows), or one without `add_reader` or weak
        // references: completed as the rest of the engine's calls are.
        return crate::runtime::future(py, fut);
    };
    crate::logs::sync_level(py);
    let future = event_loop.call_method0("create_future")?;
    let (cancel, cancelled) = oneshot::channel::<()>();
    let cancel = Mutex::new(Some(cancel));
    let on_done = PyCFunction::new_closure(py, None, None, move |_, _| {
        if let Some(cancel) = cancel.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = cancel.send(());
        }
    })?;
    future.call_method1("add_done_callback", (on_done,))?;
    let outcome = Outcome {
        future: Some(future.clone().unbind()),
        result: None,
        bell,
    };
    crate::runtime::handle().spawn(async move {
        tokio::select! {
            biased;
            result = fut => outcome.send(result),
            // Cancelled: the future is done, `outcome` is delivered as a no-op.
            _ = cancelled => drop(outcome),
        }
    });
    Ok(future)
}
