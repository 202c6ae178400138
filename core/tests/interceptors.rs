//! Client and server interceptors: metadata changes, ordering, async work,
//! short-circuits, and observers that see every message and exactly one
//! final status (including cancellation and deadlines).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::auth::BoxFuture;
use grpc_core::interceptor::{CallObserver, ClientCallHead, ClientInterceptor, ServerCallHead, ServerInterceptor};
use grpc_core::server::ServerBuilder;
use grpc_core::{
    CallOptions, Channel, ChannelOptions, Code, Compression, Metadata, MethodKind, Server, ServerCall, ServerOptions,
    Status,
};

/// Records what one call did.
#[derive(Default)]
struct Log {
    events: Mutex<Vec<String>>,
    finishes: AtomicUsize,
}

impl CallObserver for Log {
    fn on_send_message(&self, m: &Bytes, wire_len: usize) {
        self.events.lock().unwrap().push(format!("send {} wire {wire_len}", m.len()));
    }
    fn on_initial_metadata(&self, md: &mut Metadata) {
        self.events.lock().unwrap().push("headers".into());
        md.insert("x-added-by-observer", "yes").unwrap();
    }
    fn on_recv_message(&self, m: &Bytes, wire_len: usize) {
        self.events.lock().unwrap().push(format!("recv {} wire {wire_len}", m.len()));
    }
    fn on_finish(&self, st: &Status) {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        self.events.lock().unwrap().push(format!("finish {:?}", st.code()));
    }
}

impl Log {
    fn events(&self) -> Vec<String> {
        self.events.lock().unwrap().clone()
    }
}

/// Adds `key: value` (after an await), records what it saw before, and
/// watches the call with a fresh [`Log`] kept in `logs`.
struct Tag {
    key: &'static str,
    value: &'static str,
    seen: Arc<Mutex<Vec<Vec<String>>>>,
    logs: Arc<Mutex<Vec<Arc<Log>>>>,
}

impl ClientInterceptor for Tag {
    fn start<'a>(
        &'a self,
        head: &'a mut ClientCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>> {
        Box::pin(async move {
            tokio::task::yield_now().await;
            self.seen.lock().unwrap().push(head.metadata.iter().map(|(k, _)| k.to_string()).collect());
            head.metadata.insert(self.key, self.value).unwrap();
            let log = Arc::new(Log::default());
            self.logs.lock().unwrap().push(log.clone());
            Ok(Some(log as Arc<dyn CallObserver>))
        })
    }
}

/// Refuses calls to methods that end in `Forbidden`.
struct Deny;

impl ClientInterceptor for Deny {
    fn start<'a>(
        &'a self,
        head: &'a mut ClientCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>> {
        Box::pin(async move {
            if head.method.ends_with("Forbidden") {
                Err(Status::new(Code::PermissionDenied, format!("{} denied on the client", head.method)))
            } else {
                Ok(None)
            }
        })
    }
}

/// Echo server that reports the `x-*` request metadata in its trailers.
fn echo_server(runs: Arc<AtomicUsize>) -> ServerBuilder {
    let r2 = runs.clone();
    Server::builder(ServerOptions::default())
        .register("/i.S/Echo", MethodKind::BidiStreaming, move |call: ServerCall| {
            runs.fetch_add(1, Ordering::SeqCst);
            async move {
                let mut t = Metadata::new();
                for (k, v) in call.metadata().iter() {
                    if k.starts_with("x-") {
                        t.insert(format!("echo-{k}"), v.as_str().unwrap_or("").to_string()).unwrap();
                    }
                }
                let st = echo(call).await;
                if st.is_ok() {
                    st.with_metadata(t)
                } else {
                    st
                }
            }
        })
        .unwrap()
        .register("/i.S/Forbidden", MethodKind::Unary, move |_call: ServerCall| {
            r2.fetch_add(1, Ordering::SeqCst);
            async { Status::ok() }
        })
        .unwrap()
        .register("/i.S/Fail", MethodKind::Unary, |mut call: ServerCall| async move {
            let _ = call.recv().await;
            Status::new(Code::FailedPrecondition, "no")
        })
        .unwrap()
        .register("/i.S/Hang", MethodKind::BidiStreaming, |call: ServerCall| async move {
            let _keep = call;
            tokio::time::sleep(Duration::from_secs(60)).await;
            Status::ok()
        })
        .unwrap()
}

#[tokio::test]
async fn client_interceptors_change_metadata_in_order_and_observe_the_call() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (server, addr) = start(echo_server(runs.clone())).await;
    let seen: Arc<Mutex<Vec<Vec<String>>>> = Default::default();
    let logs: Arc<Mutex<Vec<Arc<Log>>>> = Default::default();
    let first = Tag { key: "x-first", value: "1", seen: seen.clone(), logs: logs.clone() };
    let second = Tag { key: "x-second", value: "2", seen: seen.clone(), logs: logs.clone() };
    let ch = Channel::new(
        &addr,
        ChannelOptions { interceptors: vec![Arc::new(first), Arc::new(second)], ..Default::default() },
    )
    .unwrap();
    let mut md = Metadata::new();
    md.insert("x-app", "a").unwrap();
    let mut call =
        bounded("start", ch.call("/i.S/Echo", CallOptions { metadata: md, ..Default::default() })).await.unwrap();
    call.send(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(bounded("recv", call.recv()).await.unwrap().unwrap(), "hello");
    call.send(Bytes::from(vec![b'z'; 40_000])).await.unwrap();
    assert_eq!(bounded("recv", call.recv()).await.unwrap().unwrap().len(), 40_000);
    call.close_send().await.unwrap();
    let headers = bounded("headers", call.initial_metadata()).await.unwrap();
    assert_eq!(headers.get("x-added-by-observer"), Some("yes"), "observers may change response headers");
    let st = bounded("finish", call.finish()).await;
    assert!(st.is_ok(), "{st}");
    // The second interceptor saw the first one's header; both reached the server.
    assert_eq!(seen.lock().unwrap()[0], ["x-app"]);
    assert_eq!(seen.lock().unwrap()[1], ["x-app", "x-first"]);
    assert_eq!(st.metadata().get("echo-x-first"), Some("1"));
    assert_eq!(st.metadata().get("echo-x-second"), Some("2"));
    assert_eq!(st.metadata().get("echo-x-app"), Some("a"));
    drop(call);
    for log in logs.lock().unwrap().iter() {
        assert_eq!(
            log.events(),
            [
                "send 5 wire 5",
                "headers",
                "recv 5 wire 5",
                "send 40000 wire 40000",
                "recv 40000 wire 40000",
                "finish Ok"
            ]
        );
        assert_eq!(log.finishes.load(Ordering::SeqCst), 1, "exactly one finish");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_client_interceptor_short_circuits_without_touching_the_network() {
    let runs = Arc::new(AtomicUsize::new(0));
    let (server, addr) = start(echo_server(runs.clone())).await;
    let logs: Arc<Mutex<Vec<Arc<Log>>>> = Default::default();
    let tag = Tag { key: "x-t", value: "t", seen: Default::default(), logs: logs.clone() };
    let ch =
        Channel::new(&addr, ChannelOptions { interceptors: vec![Arc::new(tag), Arc::new(Deny)], ..Default::default() })
            .unwrap();
    let err = bounded("denied", ch.unary("/i.S/Forbidden", Bytes::new(), CallOptions::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert_eq!(err.message(), "/i.S/Forbidden denied on the client");
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_eq!(ch.state(), grpc_core::ConnectivityState::Idle, "no connection was made");
    // The earlier interceptor's observer learns how the call ended.
    assert_eq!(logs.lock().unwrap()[0].events(), ["finish PermissionDenied"]);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn client_observers_see_errors_cancellation_and_compressed_sizes() {
    let (server, addr) = start(echo_server(Default::default())).await;
    let logs: Arc<Mutex<Vec<Arc<Log>>>> = Default::default();
    let tag = Tag { key: "x-t", value: "t", seen: Default::default(), logs: logs.clone() };
    let ch = Channel::new(&addr, ChannelOptions { interceptors: vec![Arc::new(tag)], ..Default::default() }).unwrap();
    // A failing call.
    let err =
        bounded("fail", ch.unary("/i.S/Fail", Bytes::from_static(b"x"), CallOptions::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    // A cancelled call.
    let mut call = bounded("hang", ch.call("/i.S/Hang", CallOptions::default())).await.unwrap();
    call.send(Bytes::from_static(b"x")).await.unwrap();
    call.cancel();
    assert_eq!(bounded("cancelled", call.finish()).await.code(), Code::Cancelled);
    // A call dropped mid-way.
    let call = bounded("hang", ch.call("/i.S/Hang", CallOptions::default())).await.unwrap();
    drop(call);
    // Compressed: the wire size is what went over the network.
    let opts = CallOptions { compression: Some(Compression::Gzip), ..Default::default() };
    let mut call = bounded("gzip", ch.call("/i.S/Echo", opts)).await.unwrap();
    call.send_last(Bytes::from(vec![b'a'; 10_000])).await.unwrap();
    assert!(bounded("finish", call.finish()).await.is_ok());
    drop(call);
    let logs = logs.lock().unwrap().clone();
    assert_eq!(logs.len(), 4);
    assert_eq!(logs[0].events().last().unwrap(), "finish FailedPrecondition");
    assert_eq!(logs[1].events().last().unwrap(), "finish Cancelled");
    assert_eq!(logs[2].events(), ["finish Cancelled"], "a dropped call still finishes once");
    let gz = logs[3].events();
    let wire: usize = gz[0].rsplit(' ').next().unwrap().parse().unwrap();
    assert!(gz[0].starts_with("send 10000 wire ") && wire < 1000, "{gz:?}");
    for l in logs.iter() {
        assert_eq!(l.finishes.load(Ordering::SeqCst), 1);
    }
    server.shutdown(Duration::from_secs(1)).await;
}

/// Server side: tags the metadata, counts traffic into a shared log, and
/// rejects calls without `x-allow`.
struct Gate {
    logs: Arc<Mutex<Vec<Arc<Log>>>>,
}

impl ServerInterceptor for Gate {
    fn intercept<'a>(
        &'a self,
        head: &'a mut ServerCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if head.metadata.get("x-allow").is_none() {
                return Err(Status::new(Code::Unauthenticated, format!("{} needs x-allow", head.method)));
            }
            head.metadata.insert("x-from-interceptor", head.auth.transport_security_type().to_string()).unwrap();
            let log = Arc::new(Log::default());
            self.logs.lock().unwrap().push(log.clone());
            Ok(Some(log as Arc<dyn CallObserver>))
        })
    }
}

#[tokio::test]
async fn server_interceptors_gate_calls_change_metadata_and_observe() {
    let runs = Arc::new(AtomicUsize::new(0));
    let logs: Arc<Mutex<Vec<Arc<Log>>>> = Default::default();
    let (server, addr) = start(echo_server(runs.clone()).intercept(Gate { logs: logs.clone() })).await;
    let ch = channel(&addr);
    // Rejected: trailers-only, the handler never runs.
    let err = bounded("rejected", ch.unary("/i.S/Forbidden", Bytes::new(), CallOptions::default())).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unauthenticated, "/i.S/Forbidden needs x-allow"));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let allow = || {
        let mut md = Metadata::new();
        md.insert("x-allow", "1").unwrap();
        md
    };
    // Allowed: the handler sees the interceptor's metadata; the observer sees the traffic.
    let mut call =
        bounded("echo", ch.call("/i.S/Echo", CallOptions { metadata: allow(), ..Default::default() })).await.unwrap();
    call.send(Bytes::from_static(b"abc")).await.unwrap();
    assert_eq!(bounded("recv", call.recv()).await.unwrap().unwrap(), "abc");
    call.close_send().await.unwrap();
    let st = bounded("finish", call.finish()).await;
    assert!(st.is_ok());
    assert_eq!(st.metadata().get("echo-x-from-interceptor"), Some("insecure"));
    // Deadline and client cancellation reach the server-side observer.
    let opts = CallOptions { metadata: allow(), timeout: Some(Duration::from_millis(100)), ..Default::default() };
    let mut call = bounded("hang", ch.call("/i.S/Hang", opts)).await.unwrap();
    assert_eq!(bounded("deadline", call.finish()).await.code(), Code::DeadlineExceeded);
    let mut call =
        bounded("hang", ch.call("/i.S/Hang", CallOptions { metadata: allow(), ..Default::default() })).await.unwrap();
    call.send(Bytes::from_static(b"x")).await.unwrap();
    wait_until("the hang call is observed", || logs.lock().unwrap().len() == 3).await;
    call.cancel();
    let mut fail = CallOptions { metadata: allow(), ..Default::default() };
    fail.metadata.insert("x-y", "z").unwrap();
    assert_eq!(
        bounded("fail", ch.unary("/i.S/Fail", Bytes::from_static(b"q"), fail)).await.unwrap_err().code(),
        Code::FailedPrecondition
    );
    wait_until("every server call finished", || {
        let l = logs.lock().unwrap();
        l.len() == 4 && l.iter().all(|l| l.finishes.load(Ordering::SeqCst) == 1)
    })
    .await;
    let logs = logs.lock().unwrap().clone();
    assert_eq!(logs[0].events(), ["recv 3 wire 3", "send 3 wire 3", "finish Ok"]);
    // The server's deadline timer and the client's RST_STREAM (sent by the
    // client's own timer for the same deadline) race: either ends it.
    let ev = logs[1].events();
    assert!(ev == ["finish DeadlineExceeded"] || ev == ["finish Cancelled"], "{ev:?}");
    assert_eq!(logs[2].events().last().unwrap(), "finish Cancelled");
    assert_eq!(logs[3].events(), ["recv 1 wire 1", "finish FailedPrecondition"]);
    server.shutdown(Duration::from_secs(1)).await;
}

/// Logs the call-level and attempt-level events of every call.
#[derive(Default)]
struct Attempts {
    starts: AtomicUsize,
    events: Arc<Mutex<Vec<String>>>,
}

struct AttemptLog(Arc<Mutex<Vec<String>>>);

impl CallObserver for AttemptLog {
    fn on_attempt_start(&self, previous: u32, transparent: bool, md: &mut Metadata) {
        self.0.lock().unwrap().push(format!("attempt {previous} {transparent}"));
        md.insert("x-attempt", previous.to_string()).unwrap();
    }
    fn on_attempt_end(&self, st: &Status) {
        self.0.lock().unwrap().push(format!("attempt end {}", st.code().name()));
    }
    fn on_finish(&self, st: &Status) {
        self.0.lock().unwrap().push(format!("finish {}", st.code().name()));
    }
}

impl ClientInterceptor for Attempts {
    fn start<'a>(
        &'a self,
        _head: &'a mut ClientCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        let log = AttemptLog(self.events.clone());
        Box::pin(async move { Ok(Some(Arc::new(log) as Arc<dyn CallObserver>)) })
    }
}

#[tokio::test]
async fn a_retried_call_is_one_call_with_several_attempts_to_interceptors() {
    // The server fails the first two attempts; it sees the per-attempt metadata.
    let seen: Arc<Mutex<Vec<String>>> = Default::default();
    let s2 = seen.clone();
    let b = Server::builder(ServerOptions::default())
        .register("/i.S/Flaky", MethodKind::ClientStreaming, move |mut call: ServerCall| {
            let x = call.metadata().get("x-attempt").unwrap_or("").to_string();
            let n = {
                let mut s = s2.lock().unwrap();
                s.push(x);
                s.len()
            };
            async move {
                while call.recv().await.unwrap().is_some() {}
                if n < 3 {
                    return Status::unavailable("flaky");
                }
                call.send(Bytes::from_static(b"ok")).await.unwrap();
                Status::ok()
            }
        })
        .unwrap();
    let (server, addr) = start(b).await;
    let cfg = r#"{"methodConfig": [{"name": [{"service": "i.S"}], "retryPolicy": {"maxAttempts": 3,
        "initialBackoff": "0.01s", "maxBackoff": "0.01s", "backoffMultiplier": 1, "retryableStatusCodes": ["UNAVAILABLE"]}}]}"#;
    let icpt = Arc::new(Attempts::default());
    let ch = Channel::new(
        &addr,
        ChannelOptions { service_config: Some(cfg.into()), interceptors: vec![icpt.clone()], ..Default::default() },
    )
    .unwrap();
    let expect = |end: &str| {
        vec![
            "attempt 0 false".to_string(),
            "attempt end UNAVAILABLE".into(),
            "attempt 1 false".into(),
            "attempt end UNAVAILABLE".into(),
            "attempt 2 false".into(),
            format!("attempt end {end}"),
            format!("finish {end}"),
        ]
    };
    // Unary.
    let r = bounded("unary", ch.unary("/i.S/Flaky", Bytes::from_static(b"x"), CallOptions::default())).await;
    assert_eq!(r.unwrap().message, "ok");
    assert_eq!(icpt.starts.load(Ordering::SeqCst), 1, "the interceptor runs once per call");
    assert_eq!(*icpt.events.lock().unwrap(), expect("OK"));
    assert_eq!(*seen.lock().unwrap(), ["0", "1", "2"]);
    // Client streaming.
    icpt.events.lock().unwrap().clear();
    seen.lock().unwrap().clear();
    let mut call = ch.call("/i.S/Flaky", CallOptions::default()).await.unwrap();
    call.send(Bytes::from_static(b"a")).await.unwrap();
    call.close_send().await.unwrap();
    assert_eq!(bounded("streaming", call.recv_unary()).await.unwrap().message, "ok");
    assert_eq!(icpt.starts.load(Ordering::SeqCst), 2);
    assert_eq!(*icpt.events.lock().unwrap(), expect("OK"));
    assert_eq!(*seen.lock().unwrap(), ["0", "1", "2"]);
    server.shutdown(Duration::from_secs(1)).await;
}
