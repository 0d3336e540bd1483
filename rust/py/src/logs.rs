//! The engine's `tracing` events into Python's `logging`, under the `i6p` logger.
//!
//! Events are raised on tokio threads, which must never wait for the GIL. So a subscriber
//! formats each event into a bounded queue (full: the event is dropped and counted) and a
//! thread of its own takes the GIL to hand the queued records to `logging`; all draining happens
//! with the GIL held, so records reach Python in the order they were raised. Only events at the
//! level the `i6p` logger has enabled are formatted at all: that level is read from Python on
//! every engine call (`sync_level`, cheap) and by the drain, and tracing's callsite cache is
//! rebuilt when it changes, so a disabled event costs a load and a compare.
//!
//! A record's logger is the event's module path under `i6p` (`i6p_net::fetch` logs to
//! `i6p.net.fetch`); its time is when the event was raised. Only events of the engine's own
//! crates (`i6p_*`) are forwarded, not those of quinn or rustls.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;
use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tracing::field::{Field, Visit};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id, Record as SpanRecord};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};

/// Records waiting for the GIL, at most; past this events are dropped and counted.
const CAPACITY: usize = 1024;
/// How often the idle drain thread looks whether it should stop (it never takes the GIL then).
const IDLE_WAIT: Duration = Duration::from_millis(500);

/// The most verbose level forwarded: 0 off, then ERROR, WARN, INFO, DEBUG, TRACE.
static LEVEL: AtomicU8 = AtomicU8::new(0);
/// Events dropped because the queue was full, and how many of those Python was told about.
static DROPPED: AtomicU64 = AtomicU64::new(0);
static DROPS_REPORTED: AtomicU64 = AtomicU64::new(0);
/// Set at interpreter exit: the drain thread stops and is not started again.
static STOPPED: AtomicBool = AtomicBool::new(false);

struct Queue {
    records: Mutex<State>,
    ready: Condvar,
}

#[derive(Default)]
struct State {
    records: VecDeque<Record>,
    /// The process the drain thread runs in (it does not survive `fork()`).
    drain_pid: Option<u32>,
    drain: Option<std::thread::JoinHandle<()>>,
}

static QUEUE: Queue = Queue {
    records: Mutex::new(State {
        records: VecDeque::new(),
        drain_pid: None,
        drain: None,
    }),
    ready: Condvar::new(),
};

/// One formatted event.
struct Record {
    /// Python's level number.
    level: u8,
    target: &'static str,
    file: Option<&'static str>,
    line: Option<u32>,
    /// Seconds since the epoch when the event was raised.
    time: f64,
    message: String,
}

fn rank(level: Level) -> u8 {
    match level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// Python's level for a tracing level (TRACE becomes DEBUG: logging has nothing finer).
fn python_level(level: Level) -> u8 {
    match level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG | Level::TRACE => 10,
    }
}

/// The tracing rank enabled by a Python effective level (NOTSET and custom levels below
/// DEBUG enable TRACE).
fn rank_for(python: i64) -> u8 {
    match python {
        i64::MIN..=9 => 5,
        10 => 4,
        11..=20 => 3,
        21..=30 => 2,
        31..=40 => 1,
        _ => 0,
    }
}

fn ours(meta: &Metadata<'_>) -> bool {
    meta.target().starts_with("i6p")
}

/// `i6p_net::fetch` → `i6p.net.fetch`.
fn logger_name(target: &str) -> String {
    let rest = target.strip_prefix("i6p_").unwrap_or(target);
    format!("i6p.{}", rest.replace("::", "."))
}

/// The subscriber installed for the whole process.
struct Forward;

impl Subscriber for Forward {
    fn register_callsite(&self, meta: &'static Metadata<'static>) -> Interest {
        // "sometimes": `enabled` decides per event, since the level follows Python's.
        if ours(meta) && meta.is_event() {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }

    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.is_event() && ours(meta) && rank(*meta.level()) <= LEVEL.load(Ordering::Relaxed)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        Some(match LEVEL.load(Ordering::Relaxed) {
            0 => LevelFilter::OFF,
            1 => LevelFilter::ERROR,
            2 => LevelFilter::WARN,
            3 => LevelFilter::INFO,
            4 => LevelFilter::DEBUG,
            _ => LevelFilter::TRACE,
        })
    }

    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // Never called for a disabled span; spans are not forwarded, so any id will do.
        Id::from_u64(1)
    }

    fn record(&self, _: &Id, _: &SpanRecord<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        let time = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        push(Record {
            level: python_level(*meta.level()),
            target: meta.target(),
            file: meta.file(),
            line: meta.line(),
            time,
            message: text.0,
        });
    }

    fn enter(&self, _: &Id) {}

    fn exit(&self, _: &Id) {}
}

/// An event's message, then its fields as `name=value`.
#[derive(Default)]
struct Text(String);

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.add(field, format_args!("{value}"));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.add(field, format_args!("{value:?}"));
    }
}

impl Text {
    fn add(&mut self, field: &Field, value: std::fmt::Arguments<'_>) {
        if field.name() == "message" {
            let fields = std::mem::take(&mut self.0);
            let _ = write!(self.0, "{value}{fields}");
        } else {
            let _ = write!(self.0, " {}={value}", field.name());
        }
    }
}

fn push(record: Record) {
    let mut state = QUEUE.records.lock().unwrap_or_else(|p| p.into_inner());
    if state.records.len() >= CAPACITY || STOPPED.load(Ordering::Relaxed) {
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return;
    }
    state.records.push_back(record);
    let pid = std::process::id();
    if state.drain_pid != Some(pid) {
        state.drain_pid = Some(pid);
        // A handle inherited across fork() names a thread that does not exist here.
        std::mem::forget(state.drain.take());
        state.drain = std::thread::Builder::new()
            .name("i6p-logs".into())
            .spawn(drain_thread)
            .ok();
    }
    drop(state);
    QUEUE.ready.notify_one();
}

fn drain_thread() {
    while !STOPPED.load(Ordering::Relaxed) {
        let state = QUEUE.records.lock().unwrap_or_else(|p| p.into_inner());
        let (state, _) = QUEUE
            .ready
            .wait_timeout_while(state, IDLE_WAIT, |s| {
                s.records.is_empty() && !STOPPED.load(Ordering::Relaxed)
            })
            .unwrap_or_else(|p| p.into_inner());
        let pending = !state.records.is_empty();
        // Never wait for the GIL while holding the queue: producers would wait behind it.
        drop(state);
        if pending && Python::try_attach(drain).is_none() {
            return;
        }
    }
}

/// Hands every queued record to `logging`. Runs with the GIL held.
pub(crate) fn drain(py: Python<'_>) {
    sync_level(py);
    let records = {
        let mut state = QUEUE.records.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut state.records)
    };
    for record in records {
        if let Err(e) = emit(py, &record) {
            // A broken handler must not stop the engine's logging, nor raise into it.
            e.write_unraisable(py, None);
        }
    }
    let dropped = DROPPED.load(Ordering::Relaxed);
    let reported = DROPS_REPORTED.swap(dropped, Ordering::Relaxed);
    if dropped > reported {
        let message = format!(
            "{} engine log records dropped: the log queue was full",
            dropped - reported
        );
        let _ = i6p_logger(py).and_then(|l| l.call_method1("warning", (message,)));
    }
}

fn emit(py: Python<'_>, r: &Record) -> PyResult<()> {
    let logging = py.import("logging")?;
    let name = logger_name(r.target);
    let logger = logging.call_method1("getLogger", (&name,))?;
    if !logger
        .call_method1("isEnabledFor", (r.level,))?
        .is_truthy()?
    {
        return Ok(());
    }
    let extra = PyDict::new(py);
    extra.set_item("i6p_target", r.target)?;
    let record = logger.call_method1(
        "makeRecord",
        (
            &name,
            r.level,
            r.file.unwrap_or("(engine)"),
            r.line.unwrap_or(0),
            &r.message,
            (),
            py.None(),
            py.None(),
            extra,
        ),
    )?;
    // The record was made now; it happened when the event was raised.
    record.setattr("created", r.time)?;
    record.setattr("msecs", (r.time.fract() * 1000.0).floor())?;
    logger.call_method1("handle", (record,))?;
    Ok(())
}

fn i6p_logger(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static LOGGER: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    LOGGER
        .get_or_try_init(py, || {
            Ok::<_, PyErr>(
                py.import("logging")?
                    .call_method1("getLogger", ("i6p",))?
                    .unbind(),
            )
        })
        .map(|l| l.bind(py))
}

/// Reads the level the `i6p` logger has enabled and forwards events from it on. Called on every
/// engine call, so a level set before a call applies to the events that call raises.
pub(crate) fn sync_level(py: Python<'_>) {
    let level = i6p_logger(py)
        .and_then(|l| l.call_method0("getEffectiveLevel"))
        .and_then(|l| l.extract::<i64>());
    let rank = level.map_or(0, rank_for);
    if LEVEL.swap(rank, Ordering::Relaxed) != rank {
        tracing::callsite::rebuild_interest_cache();
    }
}

/// Installs the subscriber (once per process; another one already installed wins).
pub(crate) fn install(py: Python<'_>) {
    sync_level(py);
    let _ = tracing::subscriber::set_global_default(Forward);
}

/// Stops forwarding at interpreter exit: the last records are handed over and the drain thread
/// is joined, so that it never tries to take the GIL of a finalizing interpreter.
pub(crate) fn shutdown(py: Python<'_>) {
    STOPPED.store(true, Ordering::Relaxed);
    let handle = {
        let mut state = QUEUE.records.lock().unwrap_or_else(|p| p.into_inner());
        let ours = state.drain_pid == Some(std::process::id());
        state.drain.take().filter(|_| ours)
    };
    QUEUE.ready.notify_all();
    if let Some(handle) = handle {
        py.detach(move || {
            let _ = handle.join();
        });
    }
    drain(py);
}

/// Events dropped so far because the queue was full.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_levels_enable_the_matching_tracing_levels() {
        assert_eq!(rank_for(0), rank(Level::TRACE));
        assert_eq!(rank_for(10), rank(Level::DEBUG));
        assert_eq!(rank_for(20), rank(Level::INFO));
        assert_eq!(rank_for(30), rank(Level::WARN));
        assert_eq!(rank_for(40), rank(Level::ERROR));
        assert_eq!(rank_for(50), 0);
    }

    #[test]
    fn module_paths_become_child_loggers_of_i6p() {
        assert_eq!(logger_name("i6p_net::fetch"), "i6p.net.fetch");
        assert_eq!(logger_name("i6p_core"), "i6p.core");
    }
}
