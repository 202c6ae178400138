//! The engine's logs, for Python's `logging`: off until `log_enable`.
//!
//! The engine's sink runs on engine threads, which never take the GIL: it
//! only queues the record (a bounded queue; records beyond it are counted
//! and dropped). One Python daemon thread (`grpc_core._logs`) takes them in
//! batches with `log_next`, which waits with the GIL released, and hands
//! them to `logging`. At interpreter exit that thread parks like every
//! other waiter (see `detach`).

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use grpc_core::logging::{self, LogLevel, LogRecord};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;

use super::{detach, duration_from};

const MAX_QUEUED: usize = 10_000;

/// `(python level, target, message, fields)`.
type Entry = (u8, String, String, Vec<(String, String)>);

#[derive(Default)]
struct Queue {
    records: VecDeque<Entry>,
    dropped: u64,
}

static QUEUE: Mutex<Queue> = Mutex::new(Queue { records: VecDeque::new(), dropped: 0 });
static READY: Condvar = Condvar::new();

fn python_level(l: LogLevel) -> u8 {
    match l {
        LogLevel::Error => 40,
        LogLevel::Warn => 30,
        LogLevel::Info => 20,
        LogLevel::Debug => 10,
        LogLevel::Trace => 5,
    }
}

fn engine_level(py_level: i64) -> LogLevel {
    match py_level {
        i64::MIN..=5 => LogLevel::Trace,
        6..=10 => LogLevel::Debug,
        11..=20 => LogLevel::Info,
        21..=30 => LogLevel::Warn,
        _ => LogLevel::Error,
    }
}

fn sink(rec: &LogRecord) {
    let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
    if q.records.len() >= MAX_QUEUED {
        q.dropped += 1;
        return;
    }
    let was_empty = q.records.is_empty();
    q.records.push_back((python_level(rec.level), rec.target.clone(), rec.message.clone(), rec.fields.clone()));
    drop(q);
    if was_empty {
        READY.notify_all();
    }
}

/// Sends the engine's records at Python level `level` (10 DEBUG, 20 INFO...)
/// and above to the queue `log_next` reads.
#[pyfunction]
pub(crate) fn log_enable(level: i64) -> PyResult<()> {
    logging::set_log_sink(engine_level(level), Arc::new(sink))
        .map_err(|e| PyRuntimeError::new_err(e.message().to_string()))
}

/// Stops the engine's records; wakes `log_next`.
#[pyfunction]
pub(crate) fn log_disable() {
    logging::clear_log_sink();
    READY.notify_all();
}

type Batch = (Vec<Entry>, u64);

/// The records queued so far, `([(level, target, message, fields)], dropped)`,
/// waiting up to `timeout` seconds for the first (GIL released).
#[pyfunction]
#[pyo3(signature = (timeout=None))]
pub(crate) fn log_next(py: Python<'_>, timeout: Option<f64>) -> Batch {
    let deadline = duration_from(timeout).map(|d| Instant::now() + d);
    detach(py, move || {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if !q.records.is_empty() || q.dropped > 0 {
                let records = q.records.drain(..).collect();
                return (records, std::mem::take(&mut q.dropped));
            }
            let wait = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) => left,
                    None => return (Vec::new(), 0),
                },
                None => Duration::from_secs(3600),
            };
            q = READY.wait_timeout(q, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    })
}
