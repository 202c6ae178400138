//! The server: graceful shutdown (in-flight calls finish within the grace,
//! new connections are refused, what is left after the grace is cancelled),
//! the fallback handler, the health service (Check and Watch), and method
//! registration rules.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_core::health::{HealthCheckRequest, HealthCheckResponse, ServingStatus};
use grpc_core::typed::{decode, encode};
use grpc_core::{CallOptions, Channel, Code, ErrorKind, MethodKind, Server, ServerCall, ServerOptions, Status};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_in_flight_calls_finish() {
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let (server, addr) = start(
        Server::builder(ServerOptions::default())
            .register("/sv.S/Slow", MethodKind::Unary, move |mut call: ServerCall| {
                let st = st.clone();
                async move {
                    let m = call.recv().await.unwrap().unwrap();
                    st.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    match call.send(m).await {
                        Ok(()) => Status::ok(),
                        Err(s) => s,
                    }
                }
            })
            .unwrap(),
    )
    .await;
    let ch = channel(&addr);
    let ch2 = ch.clone();
    let in_flight =
        tokio::spawn(async move { ch2.unary("/sv.S/Slow", Bytes::from_static(b"a"), Default::default()).await });
    wait_until("the handler runs", || started.load(Ordering::SeqCst) == 1).await;
    let t0 = Instant::now();
    let s2 = server.clone();
    let shutdown = tokio::spawn(async move { s2.shutdown(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // New connections are refused while draining.
    let late = channel(&addr);
    let err = bounded("a new connection", late.unary("/sv.S/Slow", Bytes::from_static(b"b"), Default::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(!shutdown.is_finished(), "shutdown waits for the in-flight call");
    // The in-flight call completes normally, then shutdown returns.
    let r = bounded("in-flight call", in_flight).await.unwrap().expect("in-flight call finishes OK");
    assert_eq!(r.message, "a");
    bounded("shutdown", shutdown).await.unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(5), "shutdown took {took:?} for a 0.5 s call");
    assert_eq!(started.load(Ordering::SeqCst), 1, "the late call never reached a handler");
    // Once shut down, nothing is served and binding again is refused.
    let err = bounded("after shutdown", channel(&addr).unary("/sv.S/Slow", Bytes::new(), Default::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(server.bind("127.0.0.1:0").await.unwrap_err().kind(), ErrorKind::Shutdown);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_grace_remaining_calls_are_cancelled() {
    let (dropped, guard) = drop_flag();
    let started = Arc::new(AtomicUsize::new(0));
    let st = started.clone();
    let (server, addr) = start(
        Server::builder(ServerOptions::default())
            .register("/sv.S/Forever", MethodKind::BidiStreaming, move |_call: ServerCall| {
                let g = guard();
                st.fetch_add(1, Ordering::SeqCst);
                async move {
                    let _g = g;
                    tokio::time::sleep(Duration::from_secs(120)).await;
                    Status::ok()
                }
            })
            .unwrap(),
    )
    .await;
    let ch = channel(&addr);
    let mut c = ch.call("/sv.S/Forever", CallOptions::default()).await.unwrap();
    c.send(Bytes::from_static(b"x")).await.unwrap();
    wait_until("the handler runs", || started.load(Ordering::SeqCst) == 1).await;
    let t0 = Instant::now();
    bounded("shutdown with a 300 ms grace", server.shutdown(Duration::from_millis(300))).await;
    let took = t0.elapsed();
    assert!(took >= Duration::from_millis(290), "the grace was not given: {took:?}");
    assert!(took < Duration::from_secs(5), "shutdown hung: {took:?}");
    wait_until("the handler is dropped", || dropped.load(Ordering::SeqCst)).await;
    let st = bounded("the client sees the end", c.finish()).await;
    assert_eq!(st.code(), Code::Unavailable, "{st}");
}

#[tokio::test]
async fn fallback_handler_sees_unknown_paths() {
    let (server, addr) = start(
        Server::builder(ServerOptions::default())
            .register("/sv.S/Known", MethodKind::Unary, |mut call: ServerCall| async move {
                let _ = call.recv().await;
                let _ = call.send(Bytes::from_static(b"known")).await;
                Status::ok()
            })
            .unwrap()
            .fallback(|mut call: ServerCall| async move {
                // A generic handler: the raw stream, like a bidi method.
                let mut n = 0;
                while let Ok(Some(m)) = call.recv().await {
                    n += 1;
                    if call.send(m).await.is_err() {
                        break;
                    }
                }
                let reply = format!("fallback {} after {n}", call.method());
                match call.send(Bytes::from(reply)).await {
                    Ok(()) => Status::ok(),
                    Err(s) => s,
                }
            }),
    )
    .await;
    let ch = channel(&addr);
    for path in ["/any.Svc/Whatever", "/sv.S/Unknown", "/a/b"] {
        let mut c = ch.call(path, CallOptions::default()).await.unwrap();
        for i in 0..3 {
            c.send(Bytes::from(format!("m{i}"))).await.unwrap();
            assert_eq!(bounded("echo", c.recv()).await.unwrap().unwrap(), format!("m{i}"));
        }
        c.close_send().await.unwrap();
        assert_eq!(bounded("last", c.recv()).await.unwrap().unwrap(), format!("fallback {path} after 3"));
        assert_eq!(c.recv().await.unwrap(), None);
    }
    let r = ch.unary("/sv.S/Known", Bytes::new(), CallOptions::default()).await.unwrap();
    assert_eq!(r.message, "known", "registered methods still win");
    // A malformed path is not a method, fallback or not.
    let err = ch.unary("/nope", Bytes::new(), CallOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unimplemented);
    assert_eq!(err.message(), "malformed method name: \"/nope\"");
    server.shutdown(Duration::from_secs(1)).await;
}

async fn check(ch: &Channel, service: &str) -> Result<ServingStatus, Status> {
    let req = HealthCheckRequest { service: service.to_string() };
    let r = bounded("Check", ch.unary("/grpc.health.v1.Health/Check", encode(&req), CallOptions::default())).await?;
    let resp: HealthCheckResponse = decode(&r.message)?;
    Ok(ServingStatus::try_from(resp.status).unwrap())
}

async fn next_watch(c: &mut grpc_core::ClientCall) -> ServingStatus {
    let m = bounded("Watch update", c.recv()).await.unwrap().expect("a Watch update");
    let resp: HealthCheckResponse = decode(&m).unwrap();
    ServingStatus::try_from(resp.status).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_check_and_watch() {
    let (builder, reporter) = Server::builder(ServerOptions::default())
        .register("/sv.S/Echo", MethodKind::Unary, echo)
        .unwrap()
        .with_health();
    let (server, addr) = start(builder).await;
    assert!(server.health().is_some());
    let ch = channel(&addr);
    // The whole server is SERVING; unknown services are NOT_FOUND.
    assert_eq!(check(&ch, "").await.unwrap(), ServingStatus::Serving);
    let err = check(&ch, "no.such.Service").await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{err}");
    reporter.set("svc.A", ServingStatus::Serving);
    assert_eq!(check(&ch, "svc.A").await.unwrap(), ServingStatus::Serving);
    reporter.set("svc.A", ServingStatus::NotServing);
    assert_eq!(check(&ch, "svc.A").await.unwrap(), ServingStatus::NotServing);

    // Watch: the current status first, then every change.
    let mut w = ch.call("/grpc.health.v1.Health/Watch", CallOptions::default()).await.unwrap();
    w.send_last(encode(&HealthCheckRequest { service: "svc.A".into() })).await.unwrap();
    assert_eq!(next_watch(&mut w).await, ServingStatus::NotServing);
    reporter.set("svc.A", ServingStatus::Serving);
    assert_eq!(next_watch(&mut w).await, ServingStatus::Serving);
    reporter.set("svc.A", ServingStatus::NotServing);
    assert_eq!(next_watch(&mut w).await, ServingStatus::NotServing);
    // Watching an unknown service: SERVICE_UNKNOWN, then its status once set.
    let mut u = ch.call("/grpc.health.v1.Health/Watch", CallOptions::default()).await.unwrap();
    u.send_last(encode(&HealthCheckRequest { service: "svc.Later".into() })).await.unwrap();
    assert_eq!(next_watch(&mut u).await, ServingStatus::ServiceUnknown);
    reporter.set("svc.Later", ServingStatus::Serving);
    assert_eq!(next_watch(&mut u).await, ServingStatus::Serving);
    // Shutting down marks everything NOT_SERVING for the watchers.
    let s2 = server.clone();
    let shutdown = tokio::spawn(async move { s2.shutdown(Duration::from_millis(500)).await });
    assert_eq!(next_watch(&mut u).await, ServingStatus::NotServing);
    bounded("shutdown", shutdown).await.unwrap();
    drop(w);
}

#[test]
fn registration_rejects_bad_paths_and_duplicates() {
    let b = || Server::builder(ServerOptions::default());
    for bad in ["", "/", "nope", "s/m", "/s", "/s/", "//m", "/s/m/x", "/s/m/"] {
        let e = b().register(bad, MethodKind::Unary, echo).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{bad:?}");
    }
    let e = b()
        .register("/pkg.S/M", MethodKind::Unary, echo)
        .unwrap()
        .register("/pkg.S/M", MethodKind::BidiStreaming, echo)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(e.message().contains("already registered"), "{e}");
    let (with_health, _) = b().with_health();
    let e = with_health.register("/grpc.health.v1.Health/Check", MethodKind::Unary, echo).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    // Same method name in different services, and the other kinds, are fine.
    b().register("/pkg.S/M", MethodKind::Unary, echo)
        .unwrap()
        .register("/pkg.T/M", MethodKind::ClientStreaming, echo)
        .unwrap()
        .register("/pkg.S/N", MethodKind::ServerStreaming, echo)
        .unwrap()
        .build()
        .unwrap();
}

/// `max_connection_idle` counts from the moment the last call ends: a
/// connection with a call in flight longer than the idle time is kept, and
/// one left without calls is closed (the next call comes on a new connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_connection_idle_counts_only_time_without_calls() {
    let opts = ServerOptions { max_connection_idle: Some(Duration::from_millis(300)), ..Default::default() };
    let (server, addr) = start(
        Server::builder(opts)
            .register("/sv.S/Peer", MethodKind::Unary, |call: ServerCall| async move {
                let peer = call.peer().to_string();
                let mut call = call;
                match call.send(Bytes::from(peer)).await {
                    Ok(()) => Status::ok(),
                    Err(s) => s,
                }
            })
            .unwrap()
            .register("/sv.S/Slow", MethodKind::Unary, |mut call: ServerCall| async move {
                tokio::time::sleep(Duration::from_millis(900)).await;
                let _ = call.send(Bytes::from_static(b"slow")).await;
                Status::ok()
            })
            .unwrap(),
    )
    .await;
    let ch = channel(&addr);
    let peer = |ch: Channel| async move {
        let r = bounded("peer call", ch.unary("/sv.S/Peer", Bytes::new(), CallOptions::default())).await.unwrap();
        String::from_utf8(r.message.to_vec()).unwrap()
    };
    let first = peer(ch.clone()).await;
    // Three idle periods long, but a call is in flight the whole time.
    let slow = bounded("slow call", ch.unary("/sv.S/Slow", Bytes::new(), CallOptions::default())).await.unwrap();
    assert_eq!(slow.message, "slow");
    let second = peer(ch.clone()).await;
    assert_eq!(second, first, "the connection was closed while a call was in flight");
    // Now idle for well over the limit: the server closes the connection.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let third = peer(ch.clone()).await;
    assert_ne!(third, first, "an idle connection was kept past max_connection_idle");
    server.shutdown(Duration::from_secs(1)).await;
}
