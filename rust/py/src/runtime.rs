//! The engine's tokio runtime, owned by this module and bridged to asyncio.
//!
//! It starts lazily, is shut down explicitly (atexit, without the GIL), and is rebuilt in a
//! child after `fork()`, since tokio's threads do not survive a fork. Futures are handed to
//! `pyo3-async-runtimes` through its generic runtime traits, which completes the asyncio future
//! from a blocking-pool thread (never a tokio worker waiting for the GIL) and drops the Rust
//! future when the asyncio one is cancelled.

use pyo3::exceptions::PyStopIteration;
use pyo3::prelude::*;
use pyo3_async_runtimes::generic::{self, ContextExt, JoinError, Runtime};
use pyo3_async_runtimes::TaskLocals;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;
use tokio::runtime::{Builder, Handle};

struct Owned {
    pid: u32,
    runtime: tokio::runtime::Runtime,
}

static RUNTIME: Mutex<Option<Owned>> = Mutex::new(None);

/// A handle to the runtime, building it on first use or after a fork.
pub(crate) fn handle() -> Handle {
    let pid = std::process::id();
    let mut guard = RUNTIME.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(owned) = guard.as_ref() {
        if owned.pid == pid {
            return owned.runtime.handle().clone();
        }
    }
    if let Some(stale) = guard.take() {
        // Inherited across fork(): its threads do not exist here, so it cannot be dropped.
        std::mem::forget(stale);
    }
    let runtime = Builder::new_multi_thread()
        .thread_name("i6p-engine")
        .enable_all()
        .max_blocking_threads(32)
        .thread_keep_alive(Duration::from_secs(5))
        .build()
        .unwrap_or_else(|e| panic!("cannot start the i6p runtime: {e}"));
    let handle = runtime.handle().clone();
    *guard = Some(Owned { pid, runtime });
    handle
}

/// Stops the runtime (running engine tasks are dropped), then the forwarding of its logs.
/// Called at interpreter exit.
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>) {
    stop_runtime(py);
    crate::logs::shutdown(py);
}

fn stop_runtime(py: Python<'_>) {
    let owned = RUNTIME.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(owned) = owned {
        if owned.pid == std::process::id() {
            py.detach(move || owned.runtime.shutdown_timeout(Duration::from_secs(2)));
        } else {
            std::mem::forget(owned);
        }
    }
}

/// The marker type through which `pyo3-async-runtimes` spawns onto our runtime.
pub(crate) struct Engine;

/// A tokio join error as `pyo3-async-runtimes` wants it.
pub(crate) struct EngineJoinError(tokio::task::JoinError);

impl JoinError for EngineJoinError {
    fn is_panic(&self) -> bool {
        self.0.is_panic()
    }
    fn into_panic(self) -> Box<dyn std::any::Any + Send + 'static> {
        self.0.into_panic()
    }
}

tokio::task_local! {
    static TASK_LOCALS: TaskLocals;
}

type Joined = Pin<Box<dyn Future<Output = Result<(), EngineJoinError>> + Send>>;

impl Runtime for Engine {
    type JoinError = EngineJoinError;
    type JoinHandle = Joined;

    fn spawn<F>(fut: F) -> Self::JoinHandle
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let task = handle().spawn(fut);
        Box::pin(async move { task.await.map_err(EngineJoinError) })
    }

    fn spawn_blocking<F>(f: F) -> Self::JoinHandle
    where
        F: FnOnce() + Send + 'static,
    {
        let task = handle().spawn_blocking(f);
        Box::pin(async move { task.await.map_err(EngineJoinError) })
    }
}

impl ContextExt for Engine {
    fn scope<F, R>(locals: TaskLocals, fut: F) -> Pin<Box<dyn Future<Output = R> + Send>>
    where
        F: Future<Output = R> + Send + 'static,
    {
        Box::pin(TASK_LOCALS.scope(locals, fut))
    }

    fn get_task_locals() -> Option<TaskLocals> {
        TASK_LOCALS.try_with(|l| l.clone()).ok()
    }
}

/// Runs `fut` on the engine and returns an asyncio awaitable for its result.
pub(crate) fn future<'py, F, T>(py: Python<'py>, fut: F) -> PyResult<Bound<'py, PyAny>>
where
    F: Future<Output = PyResult<T>> + Send + 'static,
    T: for<'a> IntoPyObject<'a> + Send + 'static,
{
    // Every engine call passes here: a good moment to pick up a changed log level.
    crate::logs::sync_level(py);
    generic::future_into_py::<Engine, F, T>(py, fut)
}

/// An awaitable that is complete already. A call that finished without waiting (the bytes
/// were there, the stream took the write) returns one, so its `await` costs neither a task on
/// the engine's runtime nor a wake-up of the asyncio loop from another thread.
#[pyclass(module = "i6p._core")]
pub(crate) struct Ready(Option<Py<PyAny>>);

#[pymethods]
impl Ready {
    fn __await__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__(&mut self, py: Python<'_>) -> PyResult<()> {
        // `await` ends with StopIteration carrying the result (PEP 492).
        let value = self.0.take().unwrap_or_else(|| py.None());
        Err(PyStopIteration::new_err((value,)))
    }
}

/// An awaitable whose result is `value`, with no trip through the runtime.
pub(crate) fn ready<'py, T>(py: Python<'py>, value: T) -> PyResult<Bound<'py, PyAny>>
where
    T: IntoPyObject<'py>,
{
    let value = pyo3::IntoPyObjectExt::into_py_any(value, py)?;
    Ok(Bound::new(py, Ready(Some(value)))?.into_any())
}
