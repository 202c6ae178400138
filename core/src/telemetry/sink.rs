//! Telemetry without an OpenTelemetry SDK in the process: the engine's own
//! meter and tracer hand every measurement and every finished span to a
//! [`TelemetrySink`]. This is how the bindings (Python, Node, C, Kotlin)
//! feed their language's OpenTelemetry SDK: the engine decides what is
//! measured (the same instruments, names and spans as with a Rust SDK), the
//! binding only forwards records.
//!
//! Sampling is parent-based, always-on at the root (the SDK default): a span
//! whose parent is not sampled still gets a context (so `traceparent` keeps
//! propagating) but is not recorded. Trace and span ids come from a
//! per-process generator seeded randomly (ids must be unique, not secret).
//!
//! Records are delivered synchronously on the thread that ends the call or
//! the span (a tokio worker or the caller's thread): a sink must be quick and
//! must not block (queue and return).

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::{
    Counter, Histogram, HistogramBuilder, InstrumentBuilder, InstrumentProvider, Meter, SyncInstrument,
};
use opentelemetry::trace::{
    self, SpanContext, SpanId, Status as OtelStatus, TraceContextExt, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{Context, KeyValue, Value};

/// Where the engine's telemetry goes when no Rust OpenTelemetry SDK is used.
pub trait TelemetrySink: Send + Sync + 'static {
    /// One measurement of one instrument (a counter increment or a
    /// histogram sample), with its attributes.
    fn metric(&self, m: MetricRecord);
    /// A span that ended (only sampled spans are delivered).
    fn span(&self, s: SpanRecord);
}

/// The kind of an instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstrumentKind {
    /// A monotonic sum (`grpc.*.started`).
    Counter,
    /// A distribution (durations, sizes).
    Histogram,
}

/// What an instrument is: created once per instrument, shared by its records.
#[derive(Debug)]
pub struct Instrument {
    /// e.g. `grpc.client.attempt.duration`.
    pub name: Cow<'static, str>,
    /// Counter or histogram.
    pub kind: InstrumentKind,
    /// UCUM unit (`s`, `By`, `{attempt}`, `{call}`), empty if none.
    pub unit: Cow<'static, str>,
    /// A66's description.
    pub description: Cow<'static, str>,
    /// Explicit bucket boundaries advised for a histogram (A66's), empty for counters.
    pub boundaries: Vec<f64>,
}

/// A measured value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MetricValue {
    /// An integer (counts, sizes in bytes).
    U64(u64),
    /// A float (durations in seconds).
    F64(f64),
}

impl MetricValue {
    /// The value as a float, whatever its type.
    pub fn as_f64(self) -> f64 {
        match self {
            MetricValue::U64(v) => v as f64,
            MetricValue::F64(v) => v,
        }
    }
}

/// One measurement.
#[derive(Clone, Debug)]
pub struct MetricRecord {
    /// Which instrument.
    pub instrument: Arc<Instrument>,
    /// The measurement.
    pub value: MetricValue,
    /// Attribute key and value (A66 attributes are all strings; other values
    /// are rendered as text).
    pub attributes: Vec<(String, String)>,
}

/// An attribute value on a span or span event.
#[derive(Clone, Debug, PartialEq)]
pub enum AttributeValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    I64(i64),
    /// A float.
    F64(f64),
    /// Text (arrays are rendered as text too).
    String(String),
}

/// The kind of a span.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// The client call (`Sent.`).
    Client,
    /// The server call (`Recv.`).
    Server,
    /// Inside a process (`Attempt.`).
    Internal,
    /// Not used by the engine.
    Producer,
    /// Not used by the engine.
    Consumer,
}

/// A span's final status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpanStatus {
    /// Not set (a call that ended OK).
    Unset,
    /// Explicitly OK.
    Ok,
    /// Failed, with a description (`CODE: message`).
    Error(String),
}

/// An event on a span (`Outbound message`, `Inbound message`).
#[derive(Clone, Debug)]
pub struct SpanEvent {
    /// The event's name.
    pub name: String,
    /// When it happened.
    pub time: SystemTime,
    /// `sequence-number`, `message-size`, `message-size-compressed`.
    pub attributes: Vec<(String, AttributeValue)>,
}

/// A finished, sampled span.
#[derive(Clone, Debug)]
pub struct SpanRecord {
    /// `Sent.<method>`, `Attempt.<method>` or `Recv.<method>`.
    pub name: String,
    /// Client, server or internal.
    pub kind: SpanKind,
    /// The trace (shared by every span of the trace).
    pub trace_id: [u8; 16],
    /// This span.
    pub span_id: [u8; 8],
    /// The parent's span id, if the span has a parent.
    pub parent_span_id: Option<[u8; 8]>,
    /// The parent came from another process (`traceparent`).
    pub parent_is_remote: bool,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes (`rpc.grpc.status_code`, ...).
    pub attributes: Vec<(String, AttributeValue)>,
    /// Message events.
    pub events: Vec<SpanEvent>,
    /// Unset, or Error for a call that failed.
    pub status: SpanStatus,
}

impl SpanRecord {
    /// The trace id as 32 lowercase hex digits (as in `traceparent`).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }
    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        hex(&self.span_id)
    }
    /// The parent span id as 16 lowercase hex digits, if any.
    pub fn parent_span_id_hex(&self) -> Option<String> {
        self.parent_span_id.as_ref().map(|p| hex(p))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A meter whose instruments record into `sink`.
pub(crate) fn meter(sink: Arc<dyn TelemetrySink>) -> Meter {
    Meter::new(Arc::new(SinkInstruments { sink }))
}

/// A tracer whose spans end in `sink`.
pub(crate) fn tracer(sink: Arc<dyn TelemetrySink>) -> BoxedTracer {
    BoxedTracer::new(Box::new(SinkTracer { sink }))
}

struct SinkInstruments {
    sink: Arc<dyn TelemetrySink>,
}

fn describe(
    name: Cow<'static, str>,
    kind: InstrumentKind,
    unit: Option<Cow<'static, str>>,
    description: Option<Cow<'static, str>>,
    boundaries: Option<Vec<f64>>,
) -> Arc<Instrument> {
    Arc::new(Instrument {
        name,
        kind,
        unit: unit.unwrap_or_default(),
        description: description.unwrap_or_default(),
        boundaries: boundaries.unwrap_or_default(),
    })
}

impl InstrumentProvider for SinkInstruments {
    fn u64_counter(&self, b: InstrumentBuilder<'_, Counter<u64>>) -> Counter<u64> {
        let instrument = describe(b.name, InstrumentKind::Counter, b.unit, b.description, None);
        Counter::new(Arc::new(SinkInstrument { sink: self.sink.clone(), instrument }))
    }

    fn f64_counter(&self, b: InstrumentBuilder<'_, Counter<f64>>) -> Counter<f64> {
        let instrument = describe(b.name, InstrumentKind::Counter, b.unit, b.description, None);
        Counter::new(Arc::new(SinkInstrument { sink: self.sink.clone(), instrument }))
    }

    fn f64_histogram(&self, b: HistogramBuilder<'_, Histogram<f64>>) -> Histogram<f64> {
        let instrument = describe(b.name, InstrumentKind::Histogram, b.unit, b.description, b.boundaries);
        Histogram::new(Arc::new(SinkInstrument { sink: self.sink.clone(), instrument }))
    }

    fn u64_histogram(&self, b: HistogramBuilder<'_, Histogram<u64>>) -> Histogram<u64> {
        let instrument = describe(b.name, InstrumentKind::Histogram, b.unit, b.description, b.boundaries);
        Histogram::new(Arc::new(SinkInstrument { sink: self.sink.clone(), instrument }))
    }
}

struct SinkInstrument {
    sink: Arc<dyn TelemetrySink>,
    instrument: Arc<Instrument>,
}

impl SinkInstrument {
    fn record(&self, value: MetricValue, attributes: &[KeyValue]) {
        let attributes = attributes.iter().map(|kv| (kv.key.as_str().to_string(), kv.value.to_string())).collect();
        self.sink.metric(MetricRecord { instrument: self.instrument.clone(), value, attributes });
    }
}

impl SyncInstrument<u64> for SinkInstrument {
    fn measure(&self, v: u64, attributes: &[KeyValue]) {
        self.record(MetricValue::U64(v), attributes)
    }
}

impl SyncInstrument<f64> for SinkInstrument {
    fn measure(&self, v: f64, attributes: &[KeyValue]) {
        self.record(MetricValue::F64(v), attributes)
    }
}

/// A random-seeded splitmix64 stream: unique ids without a `rand` dependency.
fn next_id() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
        h.write_u32(std::process::id());
        h.finish()
    });
    let mut z = seed.wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn nonzero_id() -> u64 {
    loop {
        let v = next_id();
        if v != 0 {
            return v;
        }
    }
}

struct SinkTracer {
    sink: Arc<dyn TelemetrySink>,
}

impl trace::Tracer for SinkTracer {
    type Span = SinkSpan;

    fn build_with_context(&self, b: trace::SpanBuilder, parent_cx: &Context) -> SinkSpan {
        let parent = parent_cx.has_active_span().then(|| parent_cx.span().span_context().clone());
        let parent = parent.filter(|p| p.is_valid());
        let trace_id = b
            .trace_id
            .or(parent.as_ref().map(|p| p.trace_id()))
            .unwrap_or_else(|| TraceId::from_bytes(((nonzero_id() as u128) << 64 | next_id() as u128).to_be_bytes()));
        let span_id = b.span_id.unwrap_or_else(|| SpanId::from_bytes(nonzero_id().to_be_bytes()));
        let sampled = !matches!(&parent, Some(p) if !p.is_sampled());
        let flags = if sampled { TraceFlags::SAMPLED } else { TraceFlags::default() };
        let cx = SpanContext::new(trace_id, span_id, flags, false, TraceState::NONE);
        let data = sampled.then(|| SpanRecord {
            name: b.name.into_owned(),
            kind: match b.span_kind.unwrap_or(trace::SpanKind::Internal) {
                trace::SpanKind::Client => SpanKind::Client,
                trace::SpanKind::Server => SpanKind::Server,
                trace::SpanKind::Producer => SpanKind::Producer,
                trace::SpanKind::Consumer => SpanKind::Consumer,
                trace::SpanKind::Internal => SpanKind::Internal,
            },
            trace_id: trace_id.to_bytes(),
            span_id: span_id.to_bytes(),
            parent_span_id: parent.as_ref().map(|p| p.span_id().to_bytes()),
            parent_is_remote: parent.as_ref().is_some_and(|p| p.is_remote()),
            start: b.start_time.unwrap_or_else(SystemTime::now),
            end: SystemTime::UNIX_EPOCH,
            attributes: b.attributes.unwrap_or_default().iter().map(attribute).collect(),
            events: Vec::new(),
            status: status(&b.status),
        });
        SinkSpan { cx, data, sink: self.sink.clone() }
    }
}

fn attribute(kv: &KeyValue) -> (String, AttributeValue) {
    let v = match &kv.value {
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::I64(i) => AttributeValue::I64(*i),
        Value::F64(f) => AttributeValue::F64(*f),
        other => AttributeValue::String(other.to_string()),
    };
    (kv.key.as_str().to_string(), v)
}

fn status(s: &OtelStatus) -> SpanStatus {
    match s {
        OtelStatus::Unset => SpanStatus::Unset,
        OtelStatus::Ok => SpanStatus::Ok,
        OtelStatus::Error { description } => SpanStatus::Error(description.to_string()),
    }
}

/// A span of the sink tracer; recorded (delivered on end or drop) only when sampled.
pub(crate) struct SinkSpan {
    cx: SpanContext,
    data: Option<SpanRecord>,
    sink: Arc<dyn TelemetrySink>,
}

impl trace::Span for SinkSpan {
    fn add_event_with_timestamp<T>(&mut self, name: T, time: SystemTime, attributes: Vec<KeyValue>)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(d) = &mut self.data {
            d.events.push(SpanEvent {
                name: name.into().into_owned(),
                time,
                attributes: attributes.iter().map(attribute).collect(),
            });
        }
    }

    fn span_context(&self) -> &SpanContext {
        &self.cx
    }

    fn is_recording(&self) -> bool {
        self.data.is_some()
    }

    fn set_attribute(&mut self, kv: KeyValue) {
        if let Some(d) = &mut self.data {
            let (k, v) = attribute(&kv);
            match d.attributes.iter_mut().find(|(key, _)| *key == k) {
                Some(slot) => slot.1 = v,
                None => d.attributes.push((k, v)),
            }
        }
    }

    fn set_status(&mut self, s: OtelStatus) {
        if let Some(d) = &mut self.data {
            // As the API says: Ok is final, Error replaces Unset or Error.
            if d.status != SpanStatus::Ok {
                d.status = status(&s);
            }
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(d) = &mut self.data {
            d.name = new_name.into().into_owned();
        }
    }

    fn add_link(&mut self, _span_context: SpanContext, _attributes: Vec<KeyValue>) {}

    fn end_with_timestamp(&mut self, time: SystemTime) {
        if let Some(mut d) = self.data.take() {
            d.end = time;
            self.sink.span(d);
        }
    }
}

impl Drop for SinkSpan {
    fn drop(&mut self) {
        trace::Span::end(self);
    }
}
