//! The engine's metrics and spans, for @opentelemetry/* (`telemetry.js`).
//!
//! A [`TelemetryNative`] is one `OpenTelemetryPlugin`'s
//! `OpenTelemetry::with_sink`: channels and servers made with it hand every
//! measurement and finished span to its sink, on engine threads. The sink
//! never waits for JavaScript: a record goes into a bounded queue (dropped,
//! and counted, when it is full), and the first record of a batch wakes the
//! JS thread once through a weak threadsafe function, which takes the whole
//! queue (as the log records do, `logs.rs`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use grpc_core::telemetry::{
    AttributeValue, InstrumentKind, MetricRecord, MetricValue, OpenTelemetry, RecordSpanKind, RecordSpanStatus,
    SpanRecord, TelemetrySink,
};
use napi::bindgen_prelude::{Either3, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status as NapiStatus;
use napi_derive::napi;

type BatchTsfn = ThreadsafeFunction<(), (), JsTelemetryBatch, NapiStatus, false, true>;

/// Records waiting for the JS thread at most; more are dropped and counted.
const QUEUE_MAX: usize = 100_000;

enum Record {
    Metric(MetricRecord),
    Span(Box<SpanRecord>),
}

#[derive(Default)]
struct Queue {
    records: Vec<Record>,
    dropped: u64,
    /// Every record the engine handed over (queued or dropped).
    received: u64,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    waker: BatchTsfn,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, r: Record) {
        // Held for a push only: the engine thread never waits on JavaScript.
        let first = {
            let mut q = self.lock();
            q.received += 1;
            if q.closed {
                return;
            }
            if q.records.len() >= QUEUE_MAX {
                q.dropped += 1;
                return;
            }
            q.records.push(r);
            q.records.len() == 1
        };
        if first {
            self.waker.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

struct Sink(Arc<Shared>);

impl TelemetrySink for Sink {
    fn metric(&self, m: MetricRecord) {
        self.0.push(Record::Metric(m));
    }

    fn span(&self, s: SpanRecord) {
        self.0.push(Record::Span(Box::new(s)));
    }
}

/// One measurement, as JavaScript sees it.
#[napi(object, object_from_js = false)]
pub struct JsMetricRecord {
    /// The instrument (`grpc.client.attempt.duration`...).
    pub name: String,
    /// 0 counter, 1 histogram.
    pub kind: u32,
    /// UCUM unit.
    pub unit: String,
    /// A66's description.
    pub description: String,
    /// A66's bucket boundaries (histograms).
    pub boundaries: Vec<f64>,
    /// The value.
    pub value: f64,
    /// `grpc.method`, `grpc.target`, `grpc.status`.
    pub attributes: HashMap<String, String>,
}

/// A span or event attribute.
#[napi(object, object_from_js = false)]
pub struct JsAttribute {
    /// Its key.
    pub key: String,
    /// Its value.
    pub value: Either3<bool, f64, String>,
}

/// A span event.
#[napi(object, object_from_js = false)]
pub struct JsSpanEvent {
    /// `Outbound message`, `Inbound message`.
    pub name: String,
    /// `[seconds, nanoseconds]` since the epoch (an OpenTelemetry HrTime).
    pub time: Vec<f64>,
    /// Its attributes.
    pub attributes: Vec<JsAttribute>,
}

/// A finished span, as JavaScript sees it.
#[napi(object, object_from_js = false)]
pub struct JsSpanRecord {
    /// `Sent.<method>`, `Attempt.<method>`, `Recv.<method>`.
    pub name: String,
    /// @opentelemetry/api's SpanKind: 0 internal, 1 server, 2 client, 3 producer, 4 consumer.
    pub kind: u32,
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits, when the span has a parent.
    pub parent_span_id: Option<String>,
    /// The parent came from a `traceparent`.
    pub parent_is_remote: bool,
    /// HrTime.
    pub start: Vec<f64>,
    /// HrTime.
    pub end: Vec<f64>,
    /// Its attributes.
    pub attributes: Vec<JsAttribute>,
    /// Its events.
    pub events: Vec<JsSpanEvent>,
    /// @opentelemetry/api's SpanStatusCode: 0 unset, 1 ok, 2 error.
    pub status_code: u32,
    /// The error's description.
    pub status_message: Option<String>,
}

/// What one wake-up of the JS thread delivers.
#[napi(object, object_from_js = false)]
pub struct JsTelemetryBatch {
    /// Measurements, in order.
    pub metrics: Vec<JsMetricRecord>,
    /// Finished spans, in order.
    pub spans: Vec<JsSpanRecord>,
    /// Records dropped since the last batch (the queue was full).
    pub dropped: f64,
}

fn hrtime(t: SystemTime) -> Vec<f64> {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    vec![d.as_secs() as f64, d.subsec_nanos() as f64]
}

fn attrs(a: &[(String, AttributeValue)]) -> Vec<JsAttribute> {
    a.iter()
        .map(|(k, v)| JsAttribute {
            key: k.clone(),
            value: match v {
                AttributeValue::Bool(b) => Either3::A(*b),
                AttributeValue::I64(i) => Either3::B(*i as f64),
                AttributeValue::F64(f) => Either3::B(*f),
                AttributeValue::String(s) => Either3::C(s.clone()),
            },
        })
        .collect()
}

fn metric_to_js(m: MetricRecord) -> JsMetricRecord {
    let i = &m.instrument;
    JsMetricRecord {
        name: i.name.to_string(),
        kind: match i.kind {
            InstrumentKind::Counter => 0,
            InstrumentKind::Histogram => 1,
        },
        unit: i.unit.to_string(),
        description: i.description.to_string(),
        boundaries: i.boundaries.clone(),
        value: match m.value {
            MetricValue::U64(v) => v as f64,
            MetricValue::F64(v) => v,
        },
        attributes: m.attributes.into_iter().collect(),
    }
}

fn span_to_js(s: SpanRecord) -> JsSpanRecord {
    let (status_code, status_message) = match &s.status {
        RecordSpanStatus::Unset => (0, None),
        RecordSpanStatus::Ok => (1, None),
        RecordSpanStatus::Error(d) => (2, Some(d.clone())),
    };
    JsSpanRecord {
        kind: match s.kind {
            RecordSpanKind::Internal => 0,
            RecordSpanKind::Server => 1,
            RecordSpanKind::Client => 2,
            RecordSpanKind::Producer => 3,
            RecordSpanKind::Consumer => 4,
        },
        trace_id: s.trace_id_hex(),
        span_id: s.span_id_hex(),
        parent_span_id: s.parent_span_id_hex(),
        parent_is_remote: s.parent_is_remote,
        start: hrtime(s.start),
        end: hrtime(s.end),
        attributes: attrs(&s.attributes),
        events: s
            .events
            .iter()
            .map(|e| JsSpanEvent { name: e.name.clone(), time: hrtime(e.time), attributes: attrs(&e.attributes) })
            .collect(),
        status_code,
        status_message,
        name: s.name,
    }
}

/// One plugin's sink: hand it to channels and servers.
#[napi]
pub struct TelemetryNative {
    pub(crate) otel: OpenTelemetry,
    shared: Arc<Shared>,
}

#[napi]
impl TelemetryNative {
    /// Records metrics when `metrics`, spans when `tracing`; each batch of
    /// records goes to `callback` on the JS thread.
    #[napi(constructor)]
    pub fn new(metrics: bool, tracing: bool, callback: Function<'_, JsTelemetryBatch, ()>) -> napi::Result<Self> {
        let slot: Arc<Mutex<Option<std::sync::Weak<Shared>>>> = Arc::new(Mutex::new(None));
        let from = slot.clone();
        let waker: BatchTsfn = callback
            .build_threadsafe_function::<()>()
            .callee_handled::<false>()
            .weak::<true>()
            .build_callback(move |_ctx| {
                let shared = from.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|w| w.upgrade());
                let (records, dropped) = match shared {
                    Some(s) => {
                        let mut q = s.lock();
                        (std::mem::take(&mut q.records), std::mem::take(&mut q.dropped))
                    }
                    None => (Vec::new(), 0),
                };
                let mut batch = JsTelemetryBatch { metrics: Vec::new(), spans: Vec::new(), dropped: dropped as f64 };
                for r in records {
                    match r {
                        Record::Metric(m) => batch.metrics.push(metric_to_js(m)),
                        Record::Span(s) => batch.spans.push(span_to_js(*s)),
                    }
                }
                Ok(batch)
            })?;
        let shared = Arc::new(Shared { queue: Mutex::new(Queue::default()), waker });
        *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::downgrade(&shared));
        let otel = OpenTelemetry::with_sink(Arc::new(Sink(shared.clone())), metrics, tracing);
        Ok(TelemetryNative { otel, shared })
    }

    /// How many records the engine handed over so far (queued or dropped).
    #[napi]
    pub fn received(&self) -> f64 {
        self.shared.lock().received as f64
    }

    /// Drops what is queued and every later record.
    #[napi]
    pub fn close(&self) {
        let mut q = self.shared.lock();
        q.closed = true;
        q.records.clear();
    }
}
