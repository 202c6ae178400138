//! The engine's metrics and spans, for Python's OpenTelemetry SDK
//! (`grpc_core.observability`).
//!
//! A [`NativeTelemetry`] is one plugin's `OpenTelemetry::with_sink`: channels
//! and servers made with it hand every measurement and finished span to its
//! sink, on engine threads that never take the GIL. The sink only queues
//! (bounded; records beyond it are counted and dropped). One Python daemon
//! thread per plugin takes them in batches with `next`, which waits with the
//! GIL released, and records them into the meter and tracer providers.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use grpc_core::telemetry::{
    AttributeValue, InstrumentKind, MetricRecord, MetricValue, OpenTelemetry, RecordSpanKind, RecordSpanStatus,
    SpanRecord, TelemetrySink,
};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use super::{detach, duration_from};

const MAX_QUEUED: usize = 100_000;

enum Record {
    Metric(MetricRecord),
    Span(Box<SpanRecord>),
}

#[derive(Default)]
struct State {
    records: VecDeque<Record>,
    dropped: u64,
    /// Every record the engine handed over (queued or dropped).
    received: u64,
    closed: bool,
}

#[derive(Default)]
struct Queue {
    state: Mutex<State>,
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, r: Record) {
        let mut s = self.lock();
        s.received += 1;
        if s.closed {
            return;
        }
        if s.records.len() >= MAX_QUEUED {
            s.dropped += 1;
            return;
        }
        let was_empty = s.records.is_empty();
        s.records.push_back(r);
        drop(s);
        if was_empty {
            self.ready.notify_all();
        }
    }
}

struct Sink(Arc<Queue>);

impl TelemetrySink for Sink {
    fn metric(&self, m: MetricRecord) {
        self.0.push(Record::Metric(m));
    }

    fn span(&self, s: SpanRecord) {
        self.0.push(Record::Span(Box::new(s)));
    }
}

/// One plugin's sink: pass it as `telemetry=` to channels and servers.
#[pyclass(frozen, module = "grpc_core._native")]
pub(crate) struct NativeTelemetry {
    pub(crate) otel: OpenTelemetry,
    queue: Arc<Queue>,
}

impl std::fmt::Debug for NativeTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeTelemetry").field("otel", &self.otel).finish()
    }
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn attr_value<'py>(py: Python<'py>, v: &AttributeValue) -> PyResult<Bound<'py, PyAny>> {
    Ok(match v {
        AttributeValue::Bool(b) => b.into_pyobject(py)?.to_owned().into_any(),
        AttributeValue::I64(i) => i.into_pyobject(py)?.into_any(),
        AttributeValue::F64(f) => f.into_pyobject(py)?.into_any(),
        AttributeValue::String(s) => s.into_pyobject(py)?.into_any(),
    })
}

fn attrs<'py>(py: Python<'py>, a: &[(String, AttributeValue)]) -> PyResult<Bound<'py, PyList>> {
    let items = a.iter().map(|(k, v)| Ok((k.as_str(), attr_value(py, v)?))).collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// `("m", name, kind, unit, description, boundaries, value, [(key, value)])`,
/// kind 0 counter / 1 histogram, value an int or a float.
fn metric_to_py<'py>(py: Python<'py>, m: &MetricRecord) -> PyResult<Bound<'py, PyTuple>> {
    let i = &m.instrument;
    let kind = match i.kind {
        InstrumentKind::Counter => 0u8,
        InstrumentKind::Histogram => 1,
    };
    let value = match m.value {
        MetricValue::U64(v) => v.into_pyobject(py)?.into_any(),
        MetricValue::F64(v) => v.into_pyobject(py)?.into_any(),
    };
    let a = PyList::new(py, m.attributes.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    ("m", i.name.as_ref(), kind, i.unit.as_ref(), i.description.as_ref(), i.boundaries.clone(), value, a)
        .into_pyobject(py)
}

/// `("s", name, kind, trace_id, span_id, parent_id|None, parent_is_remote,
/// start_ns, end_ns, [(key, value)], [(name, time_ns, [(key, value)])],
/// status_code, status_description)`: ids in hex, kind 0 internal / 1 server
/// / 2 client / 3 producer / 4 consumer (OpenTelemetry's SpanKind values),
/// status 0 unset / 1 ok / 2 error (its StatusCode values).
fn span_to_py<'py>(py: Python<'py>, s: &SpanRecord) -> PyResult<Bound<'py, PyTuple>> {
    let kind = match s.kind {
        RecordSpanKind::Internal => 0u8,
        RecordSpanKind::Server => 1,
        RecordSpanKind::Client => 2,
        RecordSpanKind::Producer => 3,
        RecordSpanKind::Consumer => 4,
    };
    let (code, desc) = match &s.status {
        RecordSpanStatus::Unset => (0u8, String::new()),
        RecordSpanStatus::Ok => (1, String::new()),
        RecordSpanStatus::Error(d) => (2, d.clone()),
    };
    let events = s
        .events
        .iter()
        .map(|e| Ok((e.name.as_str(), nanos(e.time), attrs(py, &e.attributes)?)))
        .collect::<PyResult<Vec<_>>>()?;
    let items: Vec<Bound<'py, PyAny>> = vec![
        "s".into_pyobject(py)?.into_any(),
        s.name.as_str().into_pyobject(py)?.into_any(),
        kind.into_pyobject(py)?.into_any(),
        s.trace_id_hex().into_pyobject(py)?.into_any(),
        s.span_id_hex().into_pyobject(py)?.into_any(),
        s.parent_span_id_hex().into_pyobject(py)?.into_any(),
        s.parent_is_remote.into_pyobject(py)?.to_owned().into_any(),
        nanos(s.start).into_pyobject(py)?.into_any(),
        nanos(s.end).into_pyobject(py)?.into_any(),
        attrs(py, &s.attributes)?.into_any(),
        PyList::new(py, events)?.into_any(),
        code.into_pyobject(py)?.into_any(),
        desc.into_pyobject(py)?.into_any(),
    ];
    PyTuple::new(py, items)
}

#[pymethods]
impl NativeTelemetry {
    /// Records metrics when `metrics`, spans when `tracing`.
    #[new]
    fn new(metrics: bool, tracing: bool) -> Self {
        let queue = Arc::new(Queue::default());
        let otel = OpenTelemetry::with_sink(Arc::new(Sink(queue.clone())), metrics, tracing);
        NativeTelemetry { otel, queue }
    }

    /// The records queued so far as `([record], dropped)` (see `metric_to_py`
    /// and `span_to_py`), waiting up to `timeout` seconds for the first (GIL
    /// released). Empty once closed.
    #[pyo3(signature = (timeout=None))]
    fn next<'py>(&self, py: Python<'py>, timeout: Option<f64>) -> PyResult<(Bound<'py, PyList>, u64)> {
        let deadline = duration_from(timeout).map(|d| Instant::now() + d);
        let q = self.queue.clone();
        let (records, dropped) = detach(py, move || {
            let mut s = q.lock();
            loop {
                if !s.records.is_empty() || s.dropped > 0 || s.closed {
                    let records: Vec<Record> = s.records.drain(..).collect();
                    return (records, std::mem::take(&mut s.dropped));
                }
                let wait = match deadline {
                    Some(d) => match d.checked_duration_since(Instant::now()) {
                        Some(left) => left,
                        None => return (Vec::new(), 0),
                    },
                    None => Duration::from_secs(3600),
                };
                s = q.ready.wait_timeout(s, wait).unwrap_or_else(|e| e.into_inner()).0;
            }
        });
        let items = records
            .iter()
            .map(|r| match r {
                Record::Metric(m) => metric_to_py(py, m),
                Record::Span(s) => span_to_py(py, s),
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok((PyList::new(py, items)?, dropped))
    }

    /// How many records the engine handed over so far (queued or dropped).
    fn received(&self) -> u64 {
        self.queue.lock().received
    }

    /// Drops what is queued and every later record; wakes `next`.
    fn close(&self) {
        let mut s = self.queue.lock();
        s.closed = true;
        s.records.clear();
        drop(s);
        self.queue.ready.notify_all();
    }

    /// Whether `close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.queue.lock().closed
    }
}
