//! OpenTelemetry instrumentation, off until configured: the metrics of gRFC
//! A66 and per-call spans (gRFC A72 names) with W3C `traceparent`
//! propagation. Built on the interceptors: set
//! `ChannelOptions::telemetry` / `ServerOptions::telemetry` to one
//! [`OpenTelemetry`] made from your meter and tracer.
//!
//! Metrics (units and buckets per A66; attributes `grpc.method`, plus
//! `grpc.target` on the client and `grpc.status` on durations):
//! `grpc.client.attempt.started`, `grpc.client.attempt.duration`,
//! `grpc.client.attempt.sent_total_compressed_message_size`,
//! `grpc.client.attempt.rcvd_total_compressed_message_size`,
//! `grpc.client.call.duration`, `grpc.server.call.started`,
//! `grpc.server.call.duration`, `grpc.server.call.sent_total_compressed_message_size`,
//! `grpc.server.call.rcvd_total_compressed_message_size`.
//! `grpc.method` on the server is `other` for methods that are not
//! registered (the fallback handler), as A66 requires.
//!
//! Client metrics are per attempt (`grpc.client.attempt.*`: one per attempt
//! of a retried call, sizes counting replayed messages again) and per call
//! (`grpc.client.call.duration`: once), as A66 says.
//!
//! Spans: the client starts `Sent.<method>` (the call, a child of the
//! current [`opentelemetry::Context`]) and one `Attempt.<method>` under it
//! per attempt (attributes `previous-rpc-attempts` and `transparent-retry`,
//! A72), and sends the attempt's span context as `traceparent`. The server starts
//! `Recv.<method>` as the child of that remote parent; handlers get it with
//! [`server_context`] to parent their own calls (the next hop). Message
//! events carry `sequence-number`, `message-size` and
//! `message-size-compressed`. Hedged unary attempts are each a call of their
//! own (see [`crate::interceptor`]).
//!
//! Without a Rust OpenTelemetry SDK (the bindings), [`OpenTelemetry::with_sink`]
//! records the same metrics and spans into a [`TelemetrySink`]. A client
//! call whose metadata already carries a valid `traceparent` (and no current
//! span in the [`opentelemetry::Context`]) takes it as the parent of its
//! `Sent.` span: that is how a binding passes its language's current span.
//! [`server_traceparent`] gives a handler its `Recv.` span as `traceparent`.

mod sink;

pub use sink::{
    AttributeValue, Instrument, InstrumentKind, MetricRecord, MetricValue, SpanEvent, SpanKind as RecordSpanKind,
    SpanRecord, SpanStatus as RecordSpanStatus, TelemetrySink,
};

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use opentelemetry::global::{BoxedSpan, BoxedTracer};
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::trace::{
    Span, SpanContext, SpanId, SpanKind, Status as SpanStatus, TraceContextExt, TraceFlags, TraceId, TraceState, Tracer,
};
use opentelemetry::{Context, KeyValue};

use crate::auth::BoxFuture;
use crate::interceptor::{CallObserver, ClientCallHead, ClientInterceptor, ServerCallHead, ServerInterceptor};
use crate::server::CallInfo;
use crate::status::Status;

const LATENCY_BUCKETS: [f64; 41] = [
    0.0, 0.00001, 0.00005, 0.0001, 0.0003, 0.0006, 0.0008, 0.001, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01,
    0.013, 0.016, 0.02, 0.025, 0.03, 0.04, 0.05, 0.065, 0.08, 0.1, 0.13, 0.16, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8,
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0,
];
const SIZE_BUCKETS: [f64; 14] = [
    0.0,
    1024.0,
    2048.0,
    4096.0,
    16384.0,
    65536.0,
    262144.0,
    1048576.0,
    4194304.0,
    16777216.0,
    67108864.0,
    268435456.0,
    1073741824.0,
    4294967296.0,
];

struct Instruments {
    client_attempt_started: Counter<u64>,
    client_attempt_duration: Histogram<f64>,
    client_call_duration: Histogram<f64>,
    client_sent: Histogram<u64>,
    client_rcvd: Histogram<u64>,
    server_started: Counter<u64>,
    server_duration: Histogram<f64>,
    server_sent: Histogram<u64>,
    server_rcvd: Histogram<u64>,
}

impl Instruments {
    fn new(m: &Meter) -> Instruments {
        let latency = |name: &'static str, desc: &'static str| {
            m.f64_histogram(name)
                .with_unit("s")
                .with_description(desc)
                .with_boundaries(LATENCY_BUCKETS.to_vec())
                .build()
        };
        let size = |name: &'static str, desc: &'static str| {
            m.u64_histogram(name).with_unit("By").with_description(desc).with_boundaries(SIZE_BUCKETS.to_vec()).build()
        };
        Instruments {
            client_attempt_started: m
                .u64_counter("grpc.client.attempt.started")
                .with_unit("{attempt}")
                .with_description("Number of client call attempts started")
                .build(),
            client_attempt_duration: latency(
                "grpc.client.attempt.duration",
                "End-to-end time taken to complete a client call attempt",
            ),
            client_call_duration: latency(
                "grpc.client.call.duration",
                "Time taken by gRPC to complete an RPC from application's perspective",
            ),
            client_sent: size(
                "grpc.client.attempt.sent_total_compressed_message_size",
                "Compressed message bytes sent per client call attempt",
            ),
            client_rcvd: size(
                "grpc.client.attempt.rcvd_total_compressed_message_size",
                "Compressed message bytes received per call attempt",
            ),
            server_started: m
                .u64_counter("grpc.server.call.started")
                .with_unit("{call}")
                .with_description("Number of server calls started")
                .build(),
            server_duration: latency(
                "grpc.server.call.duration",
                "End-to-end time taken to complete a call from server transport's perspective",
            ),
            server_sent: size(
                "grpc.server.call.sent_total_compressed_message_size",
                "Compressed message bytes sent per server call",
            ),
            server_rcvd: size(
                "grpc.server.call.rcvd_total_compressed_message_size",
                "Compressed message bytes received per server call",
            ),
        }
    }
}

struct Inner {
    metrics: Option<Instruments>,
    tracer: Option<BoxedTracer>,
}

/// The OpenTelemetry plugin: give it a meter, a tracer or both.
#[derive(Clone)]
pub struct OpenTelemetry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for OpenTelemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenTelemetry")
            .field("metrics", &self.inner.metrics.is_some())
            .field("tracing", &self.inner.tracer.is_some())
            .finish()
    }
}

impl OpenTelemetry {
    /// Records A66 metrics with `meter` (if any) and spans with `tracer` (if any).
    pub fn new(meter: Option<&Meter>, tracer: Option<BoxedTracer>) -> OpenTelemetry {
        OpenTelemetry { inner: Arc::new(Inner { metrics: meter.map(Instruments::new), tracer }) }
    }

    /// Records into `sink` instead of an OpenTelemetry SDK: metrics when
    /// `metrics`, spans when `tracing`.
    pub fn with_sink(sink: Arc<dyn TelemetrySink>, metrics: bool, tracing: bool) -> OpenTelemetry {
        let meter = metrics.then(|| sink::meter(sink.clone()));
        OpenTelemetry::new(meter.as_ref(), tracing.then(|| sink::tracer(sink)))
    }

    /// The client interceptor for a channel to `target` (added for you when
    /// `ChannelOptions::telemetry` is set).
    pub fn client_interceptor(&self, target: &str) -> Arc<dyn ClientInterceptor> {
        Arc::new(ClientOtel { otel: self.clone(), target: target.to_string() })
    }

    /// The server interceptor (added for you when `ServerOptions::telemetry` is set).
    pub fn server_interceptor(&self) -> impl ServerInterceptor {
        ServerOtel { otel: self.clone() }
    }
}

/// The server span's context of a call, to parent spans and calls the
/// handler makes (`future.with_context(cx)` or `cx.attach()`).
pub fn server_context(info: &CallInfo) -> Option<Context> {
    info.extensions().get::<Context>().cloned()
}

/// The server span of a call as a `traceparent` value, to parent the
/// handler's own spans and calls (bindings use this; Rust code can use
/// [`server_context`]).
pub fn server_traceparent(info: &CallInfo) -> Option<String> {
    let cx = server_context(info)?;
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| traceparent(&sc))
}

/// `traceparent` for a span context (W3C Trace Context, version 00).
pub fn traceparent(sc: &SpanContext) -> String {
    format!("00-{:032x}-{:016x}-{:02x}", sc.trace_id(), sc.span_id(), sc.trace_flags())
}

/// Parses a `traceparent` header; `None` when malformed or all-zero.
pub fn parse_traceparent(v: &str) -> Option<SpanContext> {
    let mut parts = v.trim().split('-');
    let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if !hex(version, 2) || version == "ff" || !hex(trace, 32) || !hex(span, 16) || !hex(flags, 2) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()? & TraceFlags::SAMPLED.to_u8();
    Some(SpanContext::new(trace_id, span_id, TraceFlags::new(flags), true, TraceState::NONE))
}

fn method_attr(path: &str) -> String {
    path.strip_prefix('/').unwrap_or(path).to_string()
}

/// Per-call state: timers, byte counts, spans.
struct CallState {
    otel: OpenTelemetry,
    client: bool,
    attrs: Vec<KeyValue>,
    start: Instant,
    /// This attempt's (client) or the call's (server) counts.
    counts: Mutex<Counts>,
    /// The attempt (client) or server span; on the client also the call span.
    spans: Mutex<(Option<BoxedSpan>, Option<BoxedSpan>)>,
    /// Client: the method (for span names), the call span's context (the
    /// parent of the attempt spans), and when the current attempt started.
    method: String,
    call_cx: Option<Context>,
    attempt: Mutex<Option<Instant>>,
}

/// Messages and wire bytes one way.
#[derive(Clone, Copy, Default)]
struct Tally {
    messages: u64,
    bytes: u64,
}

/// Sent, received.
#[derive(Default)]
struct Counts {
    sent: Tally,
    rcvd: Tally,
}

impl CallState {
    /// Counts one message one way and adds its span event.
    fn message(&self, name: &'static str, sent: bool, m: &Bytes, wire_len: usize) {
        let seq = {
            let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
            let t = if sent { &mut c.sent } else { &mut c.rcvd };
            t.bytes += wire_len as u64;
            t.messages += 1;
            t.messages - 1
        };
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = spans.0.as_mut() {
            s.add_event(
                name,
                vec![
                    KeyValue::new("sequence-number", seq as i64),
                    KeyValue::new("message-size", m.len() as i64),
                    KeyValue::new("message-size-compressed", wire_len as i64),
                ],
            );
        }
    }
}

impl CallObserver for CallState {
    fn on_send_message(&self, m: &Bytes, wire_len: usize) {
        self.message("Outbound message", true, m, wire_len);
    }

    fn on_recv_message(&self, m: &Bytes, wire_len: usize) {
        self.message("Inbound message", false, m, wire_len);
    }

    fn on_attempt_start(&self, previous: u32, transparent: bool, md: &mut crate::Metadata) {
        if let Some(m) = &self.otel.inner.metrics {
            m.client_attempt_started.add(1, &self.attrs);
        }
        *self.counts.lock().unwrap_or_else(|e| e.into_inner()) = Counts::default();
        *self.attempt.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        if let (Some(t), Some(cx)) = (&self.otel.inner.tracer, &self.call_cx) {
            let attempt = t
                .span_builder(format!("Attempt.{}", self.method))
                .with_kind(SpanKind::Internal)
                .with_attributes([
                    KeyValue::new("previous-rpc-attempts", previous as i64),
                    KeyValue::new("transparent-retry", transparent),
                ])
                .start_with_context(t, cx);
            let sc = attempt.span_context();
            if sc.is_valid() {
                md.remove("traceparent");
                let _ = md.insert("traceparent", traceparent(sc));
            }
            self.spans.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(attempt);
        }
    }

    fn on_attempt_end(&self, st: &Status) {
        let Some(start) = self.attempt.lock().unwrap_or_else(|e| e.into_inner()).take() else { return };
        let (sent, rcvd) = self.bytes();
        if let Some(m) = &self.otel.inner.metrics {
            let with_status = self.with_status(st);
            m.client_attempt_duration.record(start.elapsed().as_secs_f64(), &with_status);
            m.client_sent.record(sent, &with_status);
            m.client_rcvd.record(rcvd, &with_status);
        }
        let span = self.spans.lock().unwrap_or_else(|e| e.into_inner()).0.take();
        end_span(span, st);
    }

    fn on_finish(&self, st: &Status) {
        let elapsed = self.start.elapsed().as_secs_f64();
        if self.client {
            // An attempt still open (a dropped call) ends with the call.
            self.on_attempt_end(st);
            if let Some(m) = &self.otel.inner.metrics {
                m.client_call_duration.record(elapsed, &self.with_status(st));
            }
            let call = self.spans.lock().unwrap_or_else(|e| e.into_inner()).1.take();
            end_span(call, st);
            return;
        }
        let (sent, rcvd) = self.bytes();
        if let Some(m) = &self.otel.inner.metrics {
            let with_status = self.with_status(st);
            m.server_duration.record(elapsed, &with_status);
            m.server_sent.record(sent, &with_status);
            m.server_rcvd.record(rcvd, &with_status);
        }
        let span = self.spans.lock().unwrap_or_else(|e| e.into_inner()).0.take();
        end_span(span, st);
    }
}

impl CallState {
    fn bytes(&self) -> (u64, u64) {
        let c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        (c.sent.bytes, c.rcvd.bytes)
    }

    fn with_status(&self, st: &Status) -> Vec<KeyValue> {
        let mut v = self.attrs.clone();
        v.push(KeyValue::new("grpc.status", st.code().name()));
        v
    }
}

/// Ends a span with the call's (or attempt's) status.
fn end_span(span: Option<BoxedSpan>, st: &Status) {
    if let Some(mut s) = span {
        s.set_attribute(KeyValue::new("rpc.grpc.status_code", st.code().as_i32() as i64));
        if !st.is_ok() {
            s.set_status(SpanStatus::error(format!("{}: {}", st.code().name(), st.message())));
        }
        s.end();
    }
}

struct ClientOtel {
    otel: OpenTelemetry,
    target: String,
}

impl ClientInterceptor for ClientOtel {
    fn start<'a>(
        &'a self,
        head: &'a mut ClientCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>> {
        let method = method_attr(&head.method);
        let attrs =
            vec![KeyValue::new("grpc.method", method.clone()), KeyValue::new("grpc.target", self.target.clone())];
        // The call span now; attempts (and their metrics) in on_attempt_start.
        let mut spans = (None, None);
        let mut call_cx = None;
        if let Some(t) = &self.otel.inner.tracer {
            let mut parent = Context::current();
            if !parent.has_active_span() {
                if let Some(sc) = head.metadata.get("traceparent").and_then(parse_traceparent) {
                    parent = parent.with_remote_span_context(sc);
                }
            }
            let call =
                t.span_builder(format!("Sent.{method}")).with_kind(SpanKind::Client).start_with_context(t, &parent);
            call_cx = Some(parent.with_remote_span_context(call.span_context().clone()));
            spans = (None, Some(call));
        }
        let state = CallState {
            otel: self.otel.clone(),
            client: true,
            attrs,
            start: Instant::now(),
            counts: Default::default(),
            spans: Mutex::new(spans),
            method,
            call_cx,
            attempt: Mutex::new(None),
        };
        Box::pin(async move { Ok(Some(Arc::new(state) as Arc<dyn CallObserver>)) })
    }
}

struct ServerOtel {
    otel: OpenTelemetry,
}

impl ServerInterceptor for ServerOtel {
    fn intercept<'a>(
        &'a self,
        head: &'a mut ServerCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>> {
        let method = if head.registered { method_attr(&head.method) } else { "other".to_string() };
        let attrs = vec![KeyValue::new("grpc.method", method.clone())];
        if let Some(m) = &self.otel.inner.metrics {
            m.server_started.add(1, &attrs);
        }
        let mut spans = (None, None);
        if let Some(t) = &self.otel.inner.tracer {
            let parent = match head.metadata.get("traceparent").and_then(parse_traceparent) {
                Some(sc) => Context::new().with_remote_span_context(sc),
                None => Context::new(),
            };
            let span = t
                .span_builder(format!("Recv.{}", method_attr(&head.method)))
                .with_kind(SpanKind::Server)
                .start_with_context(t, &parent);
            head.extensions.insert(parent.with_remote_span_context(span.span_context().clone()));
            spans = (Some(span), None);
        }
        let state = CallState {
            otel: self.otel.clone(),
            client: false,
            attrs,
            start: Instant::now(),
            counts: Default::default(),
            spans: Mutex::new(spans),
            method: String::new(),
            call_cx: None,
            attempt: Mutex::new(None),
        };
        Box::pin(async move { Ok(Some(Arc::new(state) as Arc<dyn CallObserver>)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(v).unwrap();
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(traceparent(&sc), v);
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
        // A later version may carry more fields.
        assert!(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x").is_some());
    }
}
