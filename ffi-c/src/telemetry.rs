//! The engine's OpenTelemetry instrumentation, delivered to C callbacks:
//! the gRFC A66 metrics one measurement at a time and every finished,
//! sampled span (`Sent.<method>`, `Attempt.<method>`, `Recv.<method>`)
//! with its ids, so a C or C++ program can feed opentelemetry-cpp (or
//! anything else). Off until a telemetry object is set on channel or server
//! options.
//!
//! Tracing context: a call whose metadata carries a `traceparent` entry
//! takes it as its parent; a handler reads its server span with
//! `grpc_core_server_call_traceparent` and passes it on the same way.

use std::ffi::{c_char, c_void};
use std::sync::Arc;
use std::time::SystemTime;

use engine::telemetry::{
    AttributeValue, InstrumentKind, MetricRecord, MetricValue, OpenTelemetry, RecordSpanKind, RecordSpanStatus,
    SpanRecord, TelemetrySink,
};

use crate::boundary::{ffi_guard, grpc_core_result, FfiError, Out};
use crate::credentials::grpc_core_destroy_fn;
use crate::handle::{tag, Registry};

/// A telemetry configuration: callbacks for metrics and/or spans. Set it on
/// channel and server options; free it with `grpc_core_telemetry_free`
/// (options, channels and servers keep their own reference).
#[derive(Debug)]
pub struct grpc_core_telemetry {
    _private: [u8; 0],
}

/// A counter increment (`grpc.client.attempt.started`, `grpc.server.call.started`).
pub const GRPC_CORE_METRIC_COUNTER: i32 = 1;
/// A histogram sample (durations in seconds, sizes in bytes).
pub const GRPC_CORE_METRIC_HISTOGRAM: i32 = 2;

/// A span for one client call (`Sent.<method>`).
pub const GRPC_CORE_SPAN_CLIENT: i32 = 1;
/// A span for one server call (`Recv.<method>`).
pub const GRPC_CORE_SPAN_SERVER: i32 = 2;
/// A span inside the process (`Attempt.<method>`).
pub const GRPC_CORE_SPAN_INTERNAL: i32 = 3;

/// The span's status was not set (the call ended OK).
pub const GRPC_CORE_SPAN_STATUS_UNSET: i32 = 0;
/// The span's status is OK.
pub const GRPC_CORE_SPAN_STATUS_OK: i32 = 1;
/// The span failed; `status_message` says how (`CODE: message`).
pub const GRPC_CORE_SPAN_STATUS_ERROR: i32 = 2;

/// A borrowed key/value pair (UTF-8, not NUL-terminated). Span attribute
/// values are rendered as text (integers in decimal, `true`/`false`).
#[repr(C)]
#[derive(Debug)]
pub struct grpc_core_attribute {
    /// The key.
    pub key: *const c_char,
    /// Length of `key`.
    pub key_len: usize,
    /// The value.
    pub value: *const c_char,
    /// Length of `value`.
    pub value_len: usize,
}

/// One measurement, borrowed for the duration of the callback.
#[repr(C)]
#[derive(Debug)]
pub struct grpc_core_metric {
    /// The instrument (`grpc.client.attempt.duration`, ...).
    pub name: *const c_char,
    /// Length of `name`.
    pub name_len: usize,
    /// `GRPC_CORE_METRIC_COUNTER` or `GRPC_CORE_METRIC_HISTOGRAM`.
    pub kind: i32,
    /// Non-zero when the instrument records integers (`value_u64` is exact).
    pub is_integer: i32,
    /// The value as a double.
    pub value: f64,
    /// The value of an integer instrument.
    pub value_u64: u64,
    /// The instrument's UCUM unit (`s`, `By`, `{call}`).
    pub unit: *const c_char,
    /// Length of `unit`.
    pub unit_len: usize,
    /// The histogram's advised bucket boundaries (A66's), `boundaries_count` of them.
    pub boundaries: *const f64,
    /// Number of `boundaries`.
    pub boundaries_count: usize,
    /// `grpc.method`, `grpc.target`, `grpc.status` as applicable.
    pub attributes: *const grpc_core_attribute,
    /// Number of `attributes`.
    pub attributes_count: usize,
}

/// An event on a span (`Outbound message`, `Inbound message`).
#[repr(C)]
#[derive(Debug)]
pub struct grpc_core_span_event {
    /// The event's name.
    pub name: *const c_char,
    /// Length of `name`.
    pub name_len: usize,
    /// When, in nanoseconds since the Unix epoch.
    pub time_unix_nanos: i64,
    /// `sequence-number`, `message-size`, `message-size-compressed`.
    pub attributes: *const grpc_core_attribute,
    /// Number of `attributes`.
    pub attributes_count: usize,
}

/// A finished span, borrowed for the duration of the callback.
#[repr(C)]
#[derive(Debug)]
pub struct grpc_core_span {
    /// `Sent.<method>`, `Attempt.<method>` or `Recv.<method>`.
    pub name: *const c_char,
    /// Length of `name`.
    pub name_len: usize,
    /// `GRPC_CORE_SPAN_*`.
    pub kind: i32,
    /// The trace id.
    pub trace_id: [u8; 16],
    /// This span's id.
    pub span_id: [u8; 8],
    /// The parent's span id (all zero when `has_parent` is 0).
    pub parent_span_id: [u8; 8],
    /// Non-zero when the span has a parent.
    pub has_parent: i32,
    /// Non-zero when the parent came from another process (a `traceparent`).
    pub parent_is_remote: i32,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_unix_nanos: i64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_unix_nanos: i64,
    /// `GRPC_CORE_SPAN_STATUS_*`.
    pub status: i32,
    /// The error description (empty unless the status is an error).
    pub status_message: *const c_char,
    /// Length of `status_message`.
    pub status_message_len: usize,
    /// Attributes (`rpc.grpc.status_code`, ...).
    pub attributes: *const grpc_core_attribute,
    /// Number of `attributes`.
    pub attributes_count: usize,
    /// Message events.
    pub events: *const grpc_core_span_event,
    /// Number of `events`.
    pub events_count: usize,
}

/// Called once per measurement.
pub type grpc_core_metric_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, metric: *const grpc_core_metric)>;
/// Called once per finished, sampled span.
pub type grpc_core_span_fn = Option<unsafe extern "C" fn(user_data: *mut c_void, span: *const grpc_core_span)>;

struct CSink {
    metric: grpc_core_metric_fn,
    span: grpc_core_span_fn,
    user_data: usize,
    destroy: grpc_core_destroy_fn,
}

impl Drop for CSink {
    fn drop(&mut self) {
        if let Some(d) = self.destroy {
            // SAFETY: the caller of grpc_core_telemetry_new promised `destroy`
            // callable from any thread; called once, when nothing can call
            // the callbacks again.
            unsafe { d(self.user_data as *mut c_void) };
        }
    }
}

fn attr(k: &str, v: &str) -> grpc_core_attribute {
    grpc_core_attribute { key: k.as_ptr().cast(), key_len: k.len(), value: v.as_ptr().cast(), value_len: v.len() }
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn texts(attrs: &[(String, AttributeValue)]) -> Vec<(&str, String)> {
    attrs
        .iter()
        .map(|(k, v)| {
            let v = match v {
                AttributeValue::Bool(b) => b.to_string(),
                AttributeValue::I64(i) => i.to_string(),
                AttributeValue::F64(f) => f.to_string(),
                AttributeValue::String(s) => s.clone(),
            };
            (k.as_str(), v)
        })
        .collect()
}

impl TelemetrySink for CSink {
    fn metric(&self, m: MetricRecord) {
        let Some(f) = self.metric else { return };
        let attrs: Vec<_> = m.attributes.iter().map(|(k, v)| attr(k, v)).collect();
        let (is_integer, value_u64) = match m.value {
            MetricValue::U64(v) => (1, v),
            MetricValue::F64(v) => (0, v as u64),
        };
        let i = &m.instrument;
        let c = grpc_core_metric {
            name: i.name.as_ptr().cast(),
            name_len: i.name.len(),
            kind: match i.kind {
                InstrumentKind::Counter => GRPC_CORE_METRIC_COUNTER,
                InstrumentKind::Histogram => GRPC_CORE_METRIC_HISTOGRAM,
            },
            is_integer,
            value: m.value.as_f64(),
            value_u64,
            unit: i.unit.as_ptr().cast(),
            unit_len: i.unit.len(),
            boundaries: i.boundaries.as_ptr(),
            boundaries_count: i.boundaries.len(),
            attributes: attrs.as_ptr(),
            attributes_count: attrs.len(),
        };
        // SAFETY: `c` and everything it points to live until the callback
        // returns; the callback's contract is on grpc_core_telemetry_new.
        unsafe { f(self.user_data as *mut c_void, &c) };
    }

    fn span(&self, s: SpanRecord) {
        let Some(f) = self.span else { return };
        let attr_text = texts(&s.attributes);
        let attrs: Vec<_> = attr_text.iter().map(|(k, v)| attr(k, v)).collect();
        let event_text: Vec<Vec<(&str, String)>> = s.events.iter().map(|e| texts(&e.attributes)).collect();
        let event_attrs: Vec<Vec<grpc_core_attribute>> =
            event_text.iter().map(|t| t.iter().map(|(k, v)| attr(k, v)).collect()).collect();
        let events: Vec<_> = s
            .events
            .iter()
            .zip(&event_attrs)
            .map(|(e, a)| grpc_core_span_event {
                name: e.name.as_ptr().cast(),
                name_len: e.name.len(),
                time_unix_nanos: nanos(e.time),
                attributes: a.as_ptr(),
                attributes_count: a.len(),
            })
            .collect();
        let (status, message) = match &s.status {
            RecordSpanStatus::Unset => (GRPC_CORE_SPAN_STATUS_UNSET, ""),
            RecordSpanStatus::Ok => (GRPC_CORE_SPAN_STATUS_OK, ""),
            RecordSpanStatus::Error(m) => (GRPC_CORE_SPAN_STATUS_ERROR, m.as_str()),
        };
        let c = grpc_core_span {
            name: s.name.as_ptr().cast(),
            name_len: s.name.len(),
            kind: match s.kind {
                RecordSpanKind::Client => GRPC_CORE_SPAN_CLIENT,
                RecordSpanKind::Server => GRPC_CORE_SPAN_SERVER,
                _ => GRPC_CORE_SPAN_INTERNAL,
            },
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id.unwrap_or_default(),
            has_parent: s.parent_span_id.is_some() as i32,
            parent_is_remote: s.parent_is_remote as i32,
            start_unix_nanos: nanos(s.start),
            end_unix_nanos: nanos(s.end),
            status,
            status_message: message.as_ptr().cast(),
            status_message_len: message.len(),
            attributes: attrs.as_ptr(),
            attributes_count: attrs.len(),
            events: events.as_ptr(),
            events_count: events.len(),
        };
        // SAFETY: as in `metric`.
        unsafe { f(self.user_data as *mut c_void, &c) };
    }
}

pub(crate) static TELEMETRY: Registry<OpenTelemetry, grpc_core_telemetry> = Registry::new(tag::TELEMETRY, "telemetry");

/// Creates a telemetry configuration: `metric` (may be NULL: no metrics)
/// receives every A66 measurement, `span` (may be NULL: no tracing) every
/// finished sampled span; at least one is required. Both run on library
/// threads, possibly several at once, synchronously as calls end: they must
/// be thread-safe, return quickly (queue, aggregate) and not call into the
/// library. Everything they are given is borrowed for the duration of the
/// callback. `user_data` is passed through; `destroy` (may be NULL) is
/// called once with it when nothing uses the configuration any more. On
/// success `*telemetry` is the caller's: free with `grpc_core_telemetry_free`.
/// On failure `destroy` is not called.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_telemetry_new(
    metric: grpc_core_metric_fn,
    span: grpc_core_span_fn,
    user_data: *mut c_void,
    destroy: grpc_core_destroy_fn,
    telemetry: *mut *mut grpc_core_telemetry,
) -> grpc_core_result {
    ffi_guard! {
        if metric.is_none() && span.is_none() {
            return Err(FfiError::null("metric and span"));
        }
        let out = Out::new(telemetry, "telemetry")?;
        let sink = Arc::new(CSink { metric, span, user_data: user_data as usize, destroy });
        let otel = OpenTelemetry::with_sink(sink, metric.is_some(), span.is_some());
        out.write(TELEMETRY.insert(Arc::new(otel)));
        Ok(())
    }
}

/// Frees the handle; options, channels and servers it was set on keep
/// using it. Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_telemetry_free(telemetry: *mut grpc_core_telemetry) -> grpc_core_result {
    ffi_guard! {
        TELEMETRY.remove(telemetry)?;
        Ok(())
    }
}
