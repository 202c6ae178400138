//! Telemetry for Kotlin and Swift: the engine's gRFC A66 metrics and its
//! per-call spans, handed to a foreign [`TelemetrySink`] (which feeds the
//! app's OpenTelemetry SDK, or anything else).
//!
//! The engine delivers records synchronously on the thread that ends a call
//! or a span, usually a tokio worker. Calling into Kotlin or Swift there would
//! run user code (and JNA thread attachment) on the engine's workers, so the
//! engine side only queues: each [`Telemetry`] has one dedicated thread
//! (`grpc-telemetry`) that converts the records and calls the sink, in order.
//! The queue is bounded ([`QUEUE_CAPACITY`] records): when the sink falls that
//! far behind, new records are dropped and counted ([`Telemetry::dropped`]),
//! never waited for. A sink that throws loses that one record; nothing
//! panics across the FFI.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use grpc_core::telemetry as tel;

use crate::GrpcError;

/// Records queued for the sink at most; more are dropped (and counted).
pub const QUEUE_CAPACITY: usize = 65_536;

/// The kind of an instrument.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum InstrumentKind {
    /// A monotonic sum (`grpc.*.started`): the value is an increment.
    Counter,
    /// A distribution (durations in seconds, sizes in bytes): the value is one sample.
    Histogram,
}

/// A measured value: integers for counts and sizes, floats for durations.
#[derive(Clone, Copy, Debug, PartialEq, uniffi::Enum)]
pub enum MetricValue {
    U64 { value: u64 },
    F64 { value: f64 },
}

/// A string attribute of a measurement (`grpc.method`, `grpc.target`, `grpc.status`).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MetricAttribute {
    pub key: String,
    pub value: String,
}

/// One measurement of one A66 instrument, with the instrument's description.
#[derive(Clone, Debug, uniffi::Record)]
pub struct MetricRecord {
    /// e.g. `grpc.client.attempt.duration`.
    pub name: String,
    pub kind: InstrumentKind,
    /// UCUM unit (`s`, `By`, `{attempt}`, `{call}`).
    pub unit: String,
    pub description: String,
    /// A66's advised bucket boundaries for a histogram; empty for counters.
    pub boundaries: Vec<f64>,
    pub value: MetricValue,
    pub attributes: Vec<MetricAttribute>,
}

/// A span or span-event attribute value.
#[derive(Clone, Debug, PartialEq, uniffi::Enum)]
pub enum AttributeValue {
    Bool { value: bool },
    I64 { value: i64 },
    F64 { value: f64 },
    Text { value: String },
}

/// A span or span-event attribute (`rpc.grpc.status_code`, `message-size`, ...).
#[derive(Clone, Debug, PartialEq, uniffi::Record)]
pub struct SpanAttribute {
    pub key: String,
    pub value: AttributeValue,
}

/// The kind of a span: `Sent.` is Client, `Recv.` is Server, `Attempt.` is Internal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SpanKind {
    Client,
    Server,
    Internal,
    Producer,
    Consumer,
}

/// A span's final status: Unset for an OK call, Error (`CODE: message`) otherwise.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SpanStatus {
    Unset,
    Ok,
    Error { description: String },
}

/// An event on a span (`Outbound message`, `Inbound message`).
#[derive(Clone, Debug, uniffi::Record)]
pub struct SpanEvent {
    pub name: String,
    /// Nanoseconds since the Unix epoch.
    pub time_unix_nano: u64,
    /// `sequence-number`, `message-size`, `message-size-compressed`.
    pub attributes: Vec<SpanAttribute>,
}

/// A finished, sampled span. Ids are lowercase hex as in `traceparent`
/// (32 digits for the trace, 16 for spans).
#[derive(Clone, Debug, uniffi::Record)]
pub struct SpanRecord {
    /// `Sent.<method>`, `Attempt.<method>` or `Recv.<method>` (method without the leading `/`).
    pub name: String,
    pub kind: SpanKind,
    pub trace_id: String,
    pub span_id: String,
    /// The parent's span id; null for a root span.
    pub parent_span_id: Option<String>,
    /// The parent came from another process (a `traceparent`).
    pub parent_is_remote: bool,
    /// Nanoseconds since the Unix epoch.
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub attributes: Vec<SpanAttribute>,
    pub events: Vec<SpanEvent>,
    pub status: SpanStatus,
}

/// Where a channel's or server's telemetry goes, implemented in Kotlin or
/// Swift. Called on the `grpc-telemetry` thread of its [`Telemetry`], one
/// record at a time, in the order the engine produced them; never on an
/// engine thread. A slow sink only delays (and at worst drops) records. An
/// exception thrown here is ignored (that record is lost).
#[uniffi::export(with_foreign)]
pub trait TelemetrySink: Send + Sync {
    /// One measurement (a counter increment or a histogram sample).
    fn on_metric(&self, record: MetricRecord) -> Result<(), GrpcError>;
    /// One finished span.
    fn on_span(&self, record: SpanRecord) -> Result<(), GrpcError>;
}

enum Item {
    Metric(tel::MetricRecord),
    Span(tel::SpanRecord),
    Flush(mpsc::Sender<()>),
}

/// The engine-side sink: queues, never blocks.
struct Forwarder {
    tx: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
}

impl Forwarder {
    fn push(&self, item: Item) {
        if self.tx.try_send(item).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl tel::TelemetrySink for Forwarder {
    fn metric(&self, m: tel::MetricRecord) {
        self.push(Item::Metric(m));
    }

    fn span(&self, s: tel::SpanRecord) {
        self.push(Item::Span(s));
    }
}

/// Telemetry settings for `ChannelOptions.telemetry` and
/// `ServerOptions.telemetry`: the engine's A66 metrics (when `metrics`) and
/// spans (when `tracing`), delivered to `sink` on a dedicated thread. One
/// `Telemetry` may serve any number of channels and servers (one thread and
/// one queue for all of them); the thread ends once the `Telemetry` and every
/// channel and server using it are gone.
///
/// Spans: a client call whose `CallOptions.metadata` carries a valid
/// `traceparent` entry uses it as the parent of its `Sent.` span (pass your
/// current span that way); a server handler gets its `Recv.` span as
/// `ServerCallContext.traceparent`, to parent the calls it makes.
#[derive(uniffi::Object)]
pub struct Telemetry {
    pub(crate) otel: tel::OpenTelemetry,
    tx: SyncSender<Item>,
    dropped: Arc<AtomicU64>,
    thread: std::thread::ThreadId,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").field("otel", &self.otel).field("dropped", &self.dropped()).finish()
    }
}

#[uniffi::export]
impl Telemetry {
    /// Records metrics (when `metrics`) and spans (when `tracing`) into `sink`.
    #[uniffi::constructor]
    pub fn new(sink: Arc<dyn TelemetrySink>, metrics: bool, tracing: bool) -> Result<Arc<Telemetry>, GrpcError> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_CAPACITY);
        let thread = std::thread::Builder::new()
            .name("grpc-telemetry".into())
            .spawn(move || deliver(rx, sink))
            .map_err(|e| GrpcError::Api { reason: format!("cannot start the telemetry thread: {e}") })?;
        let dropped = Arc::new(AtomicU64::new(0));
        let forwarder = Arc::new(Forwarder { tx: tx.clone(), dropped: dropped.clone() });
        let otel = tel::OpenTelemetry::with_sink(forwarder, metrics, tracing);
        Ok(Arc::new(Telemetry { otel, tx, dropped, thread: thread.thread().id() }))
    }

    /// Waits (at most `timeout_ms`) until every record queued so far has been
    /// handed to the sink; false on timeout, or when called from the sink
    /// itself. Blocks the calling thread.
    pub fn flush(&self, timeout_ms: u64) -> bool {
        if std::thread::current().id() == self.thread {
            return false;
        }
        let deadline = Instant::now() + Duration::from_millis(timeout_ms);
        let (done_tx, done_rx) = mpsc::channel();
        let mut item = Item::Flush(done_tx);
        loop {
            match self.tx.try_send(item) {
                Ok(()) => break,
                Err(TrySendError::Full(back)) if Instant::now() < deadline => {
                    item = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(_) => return false,
            }
        }
        done_rx.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }

    /// Records dropped because the queue was full (the sink fell behind).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The delivery thread: until every sender is gone.
fn deliver(rx: Receiver<Item>, sink: Arc<dyn TelemetrySink>) {
    for item in rx {
        // The sink's errors are its own; a panic (a bug in the conversions or
        // UniFFI) must not end the thread or cross the FFI.
        let _ = catch_unwind(AssertUnwindSafe(|| match item {
            Item::Metric(m) => {
                let _ = sink.on_metric(metric_out(m));
            }
            Item::Span(s) => {
                let _ = sink.on_span(span_out(s));
            }
            Item::Flush(done) => {
                let _ = done.send(());
            }
        }));
    }
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)).unwrap_or(0)
}

fn hex(b: &[u8]) -> String {
    const D: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        s.push(D[usize::from(x >> 4)] as char);
        s.push(D[usize::from(x & 15)] as char);
    }
    s
}

fn metric_out(m: tel::MetricRecord) -> MetricRecord {
    let i = &m.instrument;
    MetricRecord {
        name: i.name.to_string(),
        kind: match i.kind {
            tel::InstrumentKind::Counter => InstrumentKind::Counter,
            tel::InstrumentKind::Histogram => InstrumentKind::Histogram,
        },
        unit: i.unit.to_string(),
        description: i.description.to_string(),
        boundaries: i.boundaries.clone(),
        value: match m.value {
            tel::MetricValue::U64(value) => MetricValue::U64 { value },
            tel::MetricValue::F64(value) => MetricValue::F64 { value },
        },
        attributes: m.attributes.into_iter().map(|(key, value)| MetricAttribute { key, value }).collect(),
    }
}

fn attributes_out(a: Vec<(String, tel::AttributeValue)>) -> Vec<SpanAttribute> {
    a.into_iter()
        .map(|(key, v)| SpanAttribute {
            key,
            value: match v {
                tel::AttributeValue::Bool(value) => AttributeValue::Bool { value },
                tel::AttributeValue::I64(value) => AttributeValue::I64 { value },
                tel::AttributeValue::F64(value) => AttributeValue::F64 { value },
                tel::AttributeValue::String(value) => AttributeValue::Text { value },
            },
        })
        .collect()
}

fn span_out(s: tel::SpanRecord) -> SpanRecord {
    SpanRecord {
        name: s.name,
        kind: match s.kind {
            tel::RecordSpanKind::Client => SpanKind::Client,
            tel::RecordSpanKind::Server => SpanKind::Server,
            tel::RecordSpanKind::Internal => SpanKind::Internal,
            tel::RecordSpanKind::Producer => SpanKind::Producer,
            tel::RecordSpanKind::Consumer => SpanKind::Consumer,
        },
        trace_id: hex(&s.trace_id),
        span_id: hex(&s.span_id),
        parent_span_id: s.parent_span_id.as_ref().map(|p| hex(p)),
        parent_is_remote: s.parent_is_remote,
        start_time_unix_nano: unix_nanos(s.start),
        end_time_unix_nano: unix_nanos(s.end),
        attributes: attributes_out(s.attributes),
        events: s
            .events
            .into_iter()
            .map(|e| SpanEvent {
                name: e.name,
                time_unix_nano: unix_nanos(e.time),
                attributes: attributes_out(e.attributes),
            })
            .collect(),
        status: match s.status {
            tel::RecordSpanStatus::Unset => SpanStatus::Unset,
            tel::RecordSpanStatus::Ok => SpanStatus::Ok,
            tel::RecordSpanStatus::Error(description) => SpanStatus::Error { description },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_lowercase_hex() {
        assert_eq!(hex(&[0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]), "00f067aa0ba902b7");
    }

    #[test]
    fn times_are_unix_nanos() {
        assert_eq!(unix_nanos(SystemTime::UNIX_EPOCH + Duration::new(2, 5)), 2_000_000_005);
        assert_eq!(unix_nanos(SystemTime::UNIX_EPOCH), 0);
    }
}
