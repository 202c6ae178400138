//! OpenTelemetry: the A66 metrics and the spans of a client → server →
//! second server hop, read back from the SDK's in-memory exporters.

mod common;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::client::UnaryResponse;
use grpc_core::server::CallInfo;
use grpc_core::telemetry::{
    server_context, server_traceparent, AttributeValue, InstrumentKind, MetricRecord, MetricValue, OpenTelemetry,
    RecordSpanKind, SpanRecord, TelemetrySink,
};
use grpc_core::{CallOptions, Channel, ChannelOptions, Code, MethodKind, Server, ServerCall, ServerOptions, Status};
use opentelemetry::context::FutureExt;
use opentelemetry::global::BoxedTracer;
use opentelemetry::metrics::MeterProvider;
use opentelemetry::trace::{SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};

/// One data point: its attributes, and its value (sum for counters; count
/// and sum for histograms).
#[derive(Debug, Clone, PartialEq)]
struct Point {
    attrs: Vec<(String, String)>,
    count: u64,
    sum: f64,
}

fn attrs<'a>(kv: impl Iterator<Item = &'a KeyValue>) -> Vec<(String, String)> {
    let mut v: Vec<_> = kv.map(|kv| (kv.key.to_string(), kv.value.to_string())).collect();
    v.sort();
    v
}

fn collect(exporter: &InMemoryMetricExporter) -> HashMap<String, (String, Vec<Point>)> {
    let mut out = HashMap::new();
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                let points: Vec<Point> = match m.data() {
                    AggregatedMetrics::U64(MetricData::Sum(s)) => s
                        .data_points()
                        .map(|p| Point { attrs: attrs(p.attributes()), count: p.value(), sum: p.value() as f64 })
                        .collect(),
                    AggregatedMetrics::U64(MetricData::Histogram(h)) => h
                        .data_points()
                        .map(|p| Point { attrs: attrs(p.attributes()), count: p.count(), sum: p.sum() as f64 })
                        .collect(),
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => h
                        .data_points()
                        .map(|p| Point { attrs: attrs(p.attributes()), count: p.count(), sum: p.sum() })
                        .collect(),
                    other => panic!("unexpected data for {}: {other:?}", m.name()),
                };
                out.insert(m.name().to_string(), (m.unit().to_string(), points));
            }
        }
    }
    out
}

/// The OpenTelemetry SDK with in-memory exporters for metrics and spans.
struct Sdk {
    metrics: InMemoryMetricExporter,
    meter_provider: SdkMeterProvider,
    spans: InMemorySpanExporter,
    tracer_provider: SdkTracerProvider,
}

impl Sdk {
    fn new() -> Sdk {
        let metrics = InMemoryMetricExporter::default();
        let meter_provider =
            SdkMeterProvider::builder().with_reader(PeriodicReader::builder(metrics.clone()).build()).build();
        let spans = InMemorySpanExporter::default();
        let tracer_provider = SdkTracerProvider::builder().with_simple_exporter(spans.clone()).build();
        Sdk { metrics, meter_provider, spans, tracer_provider }
    }
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    v.sort();
    v
}

/// The first hop: `/hop.S/Mid` hands its request to `forward` with a channel
/// to `leaf_addr` and answers with what comes back.
async fn start_mid<F, Fut>(otel: &OpenTelemetry, leaf_addr: String, forward: F) -> (Server, String)
where
    F: Fn(Channel, Bytes, Arc<CallInfo>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<UnaryResponse, Status>> + Send + 'static,
{
    let options = || ChannelOptions { telemetry: Some(otel.clone()), ..Default::default() };
    let next = Channel::new(&leaf_addr, options()).unwrap();
    let forward = Arc::new(forward);
    let mid = Server::builder(ServerOptions { telemetry: Some(otel.clone()), ..Default::default() })
        .register("/hop.S/Mid", MethodKind::Unary, move |mut call: ServerCall| {
            let (next, forward) = (next.clone(), forward.clone());
            async move {
                let m = call.recv().await.unwrap().unwrap();
                match forward(next, m, call.info().clone()).await {
                    Ok(r) => {
                        call.send(r.message).await.unwrap();
                        Status::ok()
                    }
                    Err(s) => s,
                }
            }
        })
        .unwrap();
    start(mid).await
}

#[tokio::test]
async fn metrics_and_spans_across_two_hops() {
    let Sdk { metrics, meter_provider, spans, tracer_provider } = Sdk::new();
    let tracer = || BoxedTracer::new(Box::new(tracer_provider.tracer("grpc-core")));
    let otel = OpenTelemetry::new(Some(&meter_provider.meter("grpc-core")), Some(tracer()));

    // The second server: Leaf answers, Fail fails, anything else goes to the fallback.
    let leaf = Server::builder(ServerOptions { telemetry: Some(otel.clone()), ..Default::default() })
        .register("/hop.S/Leaf", MethodKind::Unary, |mut call: ServerCall| async move {
            let m = call.recv().await.unwrap().unwrap();
            call.send(Bytes::from(vec![b'r'; m.len() * 2])).await.unwrap();
            Status::ok()
        })
        .unwrap()
        .register("/hop.S/Fail", MethodKind::Unary, |_call: ServerCall| async {
            Status::new(Code::FailedPrecondition, "no")
        })
        .unwrap()
        .fallback(|_call: ServerCall| async { Status::ok() });
    let (leaf, leaf_addr) = start(leaf).await;

    // The first server: Mid calls Leaf on the second, under its own server span.
    let (mid, mid_addr) = start_mid(&otel, leaf_addr.clone(), |next, m, info| async move {
        let cx = server_context(&info).expect("the server span's context");
        next.unary("/hop.S/Leaf", m, CallOptions::default()).with_context(cx).await
    })
    .await;

    let ch = Channel::new(&mid_addr, ChannelOptions { telemetry: Some(otel.clone()), ..Default::default() }).unwrap();
    let root_tracer = tracer();
    let root = root_tracer.start("root");
    let root_cx = Context::current_with_span(root);
    let r = bounded("Mid", ch.unary("/hop.S/Mid", Bytes::from(vec![b'q'; 10]), CallOptions::default()))
        .with_context(root_cx.clone())
        .await
        .unwrap();
    assert_eq!(r.message.len(), 20);
    root_cx.span().end();
    // A failure and an unregistered method, straight to the second server.
    let ch2 = Channel::new(&leaf_addr, ChannelOptions { telemetry: Some(otel.clone()), ..Default::default() }).unwrap();
    let err = bounded("Fail", ch2.unary("/hop.S/Fail", Bytes::new(), CallOptions::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    bounded("Other", ch2.unary("/hop.S/Unregistered", Bytes::new(), CallOptions::default())).await.unwrap_err();
    mid.shutdown(Duration::from_secs(1)).await;
    leaf.shutdown(Duration::from_secs(1)).await;

    // ---- metrics ----
    meter_provider.force_flush().unwrap();
    let m = collect(&metrics);
    let point = |name: &str, a: &[(&str, &str)]| -> Point {
        let (_, points) = m.get(name).unwrap_or_else(|| panic!("no metric {name}; have {:?}", m.keys()));
        points.iter().find(|p| p.attrs == kv(a)).cloned().unwrap_or_else(|| panic!("{name}: no {a:?} in {points:?}"))
    };
    let unit = |name: &str| m[name].0.clone();
    let (mid_t, leaf_t) = (mid_addr.as_str(), leaf_addr.as_str());
    // Client side.
    assert_eq!(point("grpc.client.attempt.started", &[("grpc.method", "hop.S/Mid"), ("grpc.target", mid_t)]).count, 1);
    assert_eq!(
        point("grpc.client.attempt.started", &[("grpc.method", "hop.S/Leaf"), ("grpc.target", leaf_t)]).count,
        1
    );
    let ok_mid = [("grpc.method", "hop.S/Mid"), ("grpc.target", mid_t), ("grpc.status", "OK")];
    for name in ["grpc.client.attempt.duration", "grpc.client.call.duration"] {
        let p = point(name, &ok_mid);
        assert_eq!(p.count, 1, "{name}");
        assert!(p.sum > 0.0 && p.sum < 20.0, "{name}: {p:?}");
        assert_eq!(unit(name), "s");
    }
    assert_eq!(point("grpc.client.attempt.sent_total_compressed_message_size", &ok_mid).sum, 10.0);
    assert_eq!(point("grpc.client.attempt.rcvd_total_compressed_message_size", &ok_mid).sum, 20.0);
    assert_eq!(unit("grpc.client.attempt.sent_total_compressed_message_size"), "By");
    let failed = [("grpc.method", "hop.S/Fail"), ("grpc.target", leaf_t), ("grpc.status", "FAILED_PRECONDITION")];
    assert_eq!(point("grpc.client.call.duration", &failed).count, 1);
    // Server side.
    assert_eq!(point("grpc.server.call.started", &[("grpc.method", "hop.S/Mid")]).count, 1);
    assert_eq!(point("grpc.server.call.started", &[("grpc.method", "hop.S/Leaf")]).count, 1);
    assert_eq!(point("grpc.server.call.started", &[("grpc.method", "other")]).count, 1, "unregistered → other");
    let ok_leaf = [("grpc.method", "hop.S/Leaf"), ("grpc.status", "OK")];
    assert_eq!(point("grpc.server.call.duration", &ok_leaf).count, 1);
    assert_eq!(point("grpc.server.call.rcvd_total_compressed_message_size", &ok_leaf).sum, 10.0);
    assert_eq!(point("grpc.server.call.sent_total_compressed_message_size", &ok_leaf).sum, 20.0);
    assert_eq!(
        point("grpc.server.call.duration", &[("grpc.method", "hop.S/Fail"), ("grpc.status", "FAILED_PRECONDITION")])
            .count,
        1
    );
    assert_eq!(point("grpc.server.call.duration", &[("grpc.method", "other"), ("grpc.status", "OK")]).count, 1);

    // ---- spans ----
    let all = spans.get_finished_spans().unwrap();
    let span = |name: &str| -> SpanData {
        let found: Vec<_> = all.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one span named {name}; all: {:?}", all.iter().map(|s| &s.name).collect::<Vec<_>>());
        found[0].clone()
    };
    let root = span("root");
    let chain = [
        "Sent.hop.S/Mid",
        "Attempt.hop.S/Mid",
        "Recv.hop.S/Mid",
        "Sent.hop.S/Leaf",
        "Attempt.hop.S/Leaf",
        "Recv.hop.S/Leaf",
    ];
    let mut parent = root.clone();
    for name in chain {
        let s = span(name);
        assert_eq!(s.span_context.trace_id(), root.span_context.trace_id(), "{name} is in the root's trace");
        assert_eq!(s.parent_span_id, parent.span_context.span_id(), "{name}'s parent is {}", parent.name);
        assert_eq!(s.parent_span_is_remote, name.starts_with("Recv."), "{name}: remote parent only across the wire");
        parent = s;
    }
    assert_eq!(span("Sent.hop.S/Mid").span_kind, SpanKind::Client);
    assert_eq!(span("Recv.hop.S/Leaf").span_kind, SpanKind::Server);
    let attempt = span("Attempt.hop.S/Mid");
    let out: Vec<_> = attempt.events.iter().filter(|e| e.name == "Outbound message").collect();
    assert_eq!(out.len(), 1);
    assert!(out[0].attributes.contains(&KeyValue::new("message-size", 10i64)), "{:?}", out[0].attributes);
    let fail = span("Recv.hop.S/Fail");
    assert!(matches!(fail.status, opentelemetry::trace::Status::Error { .. }), "{:?}", fail.status);
    assert!(fail.attributes.contains(&KeyValue::new("rpc.grpc.status_code", 9i64)));
}

#[tokio::test]
async fn a_retried_call_records_each_attempt_and_the_call_once() {
    let Sdk { metrics, meter_provider, spans, tracer_provider } = Sdk::new();
    let tracer = BoxedTracer::new(Box::new(tracer_provider.tracer("grpc-core")));
    let otel = OpenTelemetry::new(Some(&meter_provider.meter("grpc-core")), Some(tracer));

    // Fails the first two attempts of each call (after reading the request).
    let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let r2 = runs.clone();
    let b = Server::builder(ServerOptions::default())
        .register("/r.S/M", MethodKind::Unary, move |mut call: ServerCall| {
            let n = r2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                let m = call.recv().await.unwrap().unwrap();
                if n % 3 < 2 {
                    return Status::unavailable("flaky");
                }
                call.send(m).await.unwrap();
                Status::ok()
            }
        })
        .unwrap();
    let (server, addr) = start(b).await;
    let cfg = r#"{"methodConfig": [{"name": [{"service": "r.S"}], "retryPolicy": {"maxAttempts": 3,
        "initialBackoff": "0.01s", "maxBackoff": "0.01s", "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;
    let ch = Channel::new(
        &addr,
        ChannelOptions { service_config: Some(cfg.into()), telemetry: Some(otel), ..Default::default() },
    )
    .unwrap();
    let r = bounded("retried", ch.unary("/r.S/M", Bytes::from_static(b"12345"), CallOptions::default())).await;
    assert_eq!(r.unwrap().message, "12345");
    server.shutdown(Duration::from_secs(1)).await;

    meter_provider.force_flush().unwrap();
    let m = collect(&metrics);
    let points = |name: &str| m.get(name).unwrap_or_else(|| panic!("no metric {name}")).1.clone();
    let base = [("grpc.method", "r.S/M"), ("grpc.target", addr.as_str())];
    let with = |code: &str| {
        let mut v = base.to_vec();
        v.push(("grpc.status", code));
        kv(&v)
    };
    let started = points("grpc.client.attempt.started");
    assert_eq!(started.len(), 1);
    assert_eq!((started[0].attrs.clone(), started[0].count), (kv(&base), 3), "three attempts");
    let mut durations = points("grpc.client.attempt.duration");
    durations.sort_by_key(|p| p.count);
    assert_eq!(
        durations.iter().map(|p| (p.attrs.clone(), p.count)).collect::<Vec<_>>(),
        vec![(with("OK"), 1), (with("UNAVAILABLE"), 2)]
    );
    let sent = points("grpc.client.attempt.sent_total_compressed_message_size");
    let ok_sent = sent.iter().find(|p| p.attrs == with("OK")).unwrap();
    assert_eq!((ok_sent.count, ok_sent.sum), (1, 5.0), "per attempt, not summed over the call");
    let calls = points("grpc.client.call.duration");
    assert_eq!(calls.iter().map(|p| (p.attrs.clone(), p.count)).collect::<Vec<_>>(), vec![(with("OK"), 1)]);

    let all = spans.get_finished_spans().unwrap();
    let sent_spans: Vec<_> = all.iter().filter(|s| s.name == "Sent.r.S/M").collect();
    assert_eq!(sent_spans.len(), 1, "one call span");
    let call_id = sent_spans[0].span_context.span_id();
    let mut attempts: Vec<_> = all.iter().filter(|s| s.name == "Attempt.r.S/M").collect();
    assert_eq!(attempts.len(), 3, "one span per attempt");
    let previous = |s: &SpanData| {
        s.attributes.iter().find(|kv| kv.key.as_str() == "previous-rpc-attempts").map(|kv| kv.value.to_string())
    };
    attempts.sort_by_key(|s| previous(s));
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a.parent_span_id, call_id, "attempt {i} is under the call span");
        assert_eq!(previous(a), Some(i.to_string()));
        assert!(a.attributes.contains(&KeyValue::new("transparent-retry", false)));
        let failed = matches!(a.status, opentelemetry::trace::Status::Error { .. });
        assert_eq!(failed, i < 2, "attempt {i}: {:?}", a.status);
    }
}

/// A sink that keeps every record (what a binding forwards to its SDK).
#[derive(Default)]
struct Collected {
    metrics: std::sync::Mutex<Vec<MetricRecord>>,
    spans: std::sync::Mutex<Vec<SpanRecord>>,
}

impl TelemetrySink for Collected {
    fn metric(&self, m: MetricRecord) {
        self.metrics.lock().unwrap().push(m);
    }
    fn span(&self, s: SpanRecord) {
        self.spans.lock().unwrap().push(s);
    }
}

/// The binding path: no SDK, records into a sink; the caller's span arrives
/// as a `traceparent` in the call's metadata and the handler passes its
/// server span on the same way.
#[tokio::test]
async fn a_sink_gets_the_same_metrics_and_a_linked_span_tree() {
    let sink = std::sync::Arc::new(Collected::default());
    let otel = OpenTelemetry::with_sink(sink.clone(), true, true);
    let leaf = Server::builder(ServerOptions { telemetry: Some(otel.clone()), ..Default::default() })
        .register("/hop.S/Leaf", MethodKind::Unary, |mut call: ServerCall| async move {
            let m = call.recv().await.unwrap().unwrap();
            let seen = call.info().metadata().get("traceparent").unwrap_or_default().to_string();
            call.send(Bytes::from(seen)).await.unwrap();
            drop(m);
            Status::ok()
        })
        .unwrap();
    let (leaf, leaf_addr) = start(leaf).await;
    let (mid, mid_addr) = start_mid(&otel, leaf_addr, |next, m, info| async move {
        let mut opts = CallOptions::default();
        let tp = server_traceparent(&info).expect("the server span as traceparent");
        opts.metadata.insert("traceparent", tp).unwrap();
        next.unary("/hop.S/Leaf", m, opts).await
    })
    .await;
    let ch = Channel::new(&mid_addr, ChannelOptions { telemetry: Some(otel.clone()), ..Default::default() }).unwrap();
    let (trace, root) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    let mut opts = CallOptions::default();
    opts.metadata.insert("traceparent", format!("00-{trace}-{root}-01")).unwrap();
    let r = bounded("Mid", ch.unary("/hop.S/Mid", Bytes::from(vec![b'q'; 10]), opts)).await.unwrap();
    let at_leaf = String::from_utf8(r.message.to_vec()).unwrap();
    assert!(at_leaf.starts_with(&format!("00-{trace}-")) && at_leaf.ends_with("-01"), "{at_leaf}");

    // Not sampled upstream: the context still propagates, nothing is recorded.
    let mut opts = CallOptions::default();
    opts.metadata.insert("traceparent", format!("00-{trace}-{root}-00")).unwrap();
    let before = sink.spans.lock().unwrap().len();
    let r = bounded("unsampled", ch.unary("/hop.S/Mid", Bytes::new(), opts)).await.unwrap();
    let at_leaf = String::from_utf8(r.message.to_vec()).unwrap();
    assert!(at_leaf.starts_with(&format!("00-{trace}-")) && at_leaf.ends_with("-00"), "{at_leaf}");
    mid.shutdown(Duration::from_secs(1)).await;
    leaf.shutdown(Duration::from_secs(1)).await;

    // ---- spans: root → Sent → Attempt → Recv → Sent → Attempt → Recv ----
    let spans = sink.spans.lock().unwrap().clone();
    assert_eq!(spans.len(), before, "unsampled calls record no span: {:?}", &spans[before..]);
    let span = |name: &str| -> SpanRecord {
        let found: Vec<_> = spans.iter().filter(|s| s.name == name).collect();
        assert_eq!(found.len(), 1, "one {name}; all: {:?}", spans.iter().map(|s| &s.name).collect::<Vec<_>>());
        found[0].clone()
    };
    let mut parent = root.to_string();
    for name in [
        "Sent.hop.S/Mid",
        "Attempt.hop.S/Mid",
        "Recv.hop.S/Mid",
        "Sent.hop.S/Leaf",
        "Attempt.hop.S/Leaf",
        "Recv.hop.S/Leaf",
    ] {
        let s = span(name);
        assert_eq!(s.trace_id_hex(), trace, "{name}");
        assert_eq!(s.parent_span_id_hex().as_deref(), Some(parent.as_str()), "{name}'s parent");
        let remote = name.starts_with("Recv.") || name.starts_with("Sent.");
        assert_eq!(s.parent_is_remote, remote, "{name}: parent from a traceparent");
        assert!(s.end >= s.start, "{name}");
        parent = s.span_id_hex();
    }
    assert_eq!(span("Sent.hop.S/Mid").kind, RecordSpanKind::Client);
    assert_eq!(span("Recv.hop.S/Leaf").kind, RecordSpanKind::Server);
    assert!(span("Recv.hop.S/Leaf").attributes.contains(&("rpc.grpc.status_code".into(), AttributeValue::I64(0))));
    let attempt = span("Attempt.hop.S/Mid");
    let out: Vec<_> = attempt.events.iter().filter(|e| e.name == "Outbound message").collect();
    assert_eq!(out.len(), 1);
    assert!(out[0].attributes.contains(&("message-size".into(), AttributeValue::I64(10))), "{:?}", out[0].attributes);

    // ---- metrics: the A66 instruments, one record per measurement ----
    let metrics = sink.metrics.lock().unwrap().clone();
    let find = |name: &str, method: &str| -> Vec<MetricRecord> {
        metrics
            .iter()
            .filter(|m| {
                m.instrument.name == name && m.attributes.iter().any(|(k, v)| k == "grpc.method" && v == method)
            })
            .cloned()
            .collect()
    };
    let started = find("grpc.client.attempt.started", "hop.S/Mid");
    assert_eq!(started.len(), 2, "two calls");
    assert_eq!(started[0].instrument.kind, InstrumentKind::Counter);
    assert_eq!(started[0].value, MetricValue::U64(1));
    assert!(started[0].attributes.contains(&("grpc.target".into(), mid_addr.clone())));
    let dur = find("grpc.client.call.duration", "hop.S/Mid");
    assert_eq!(dur.len(), 2);
    assert_eq!((dur[0].instrument.kind, dur[0].instrument.unit.as_ref()), (InstrumentKind::Histogram, "s"));
    assert_eq!(dur[0].instrument.boundaries.len(), 41, "A66 latency buckets");
    assert!(dur[0].attributes.contains(&("grpc.status".into(), "OK".into())));
    assert!(dur.iter().all(|d| d.value.as_f64() > 0.0 && d.value.as_f64() < 20.0));
    let sent = find("grpc.client.attempt.sent_total_compressed_message_size", "hop.S/Mid");
    assert_eq!(sent.iter().map(|m| m.value).collect::<Vec<_>>(), vec![MetricValue::U64(10), MetricValue::U64(0)]);
    assert_eq!(find("grpc.server.call.started", "hop.S/Leaf").len(), 2);
    assert_eq!(find("grpc.server.call.duration", "hop.S/Leaf").len(), 2);
}
