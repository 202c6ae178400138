//! Deadlines: the client gives up on time with DEADLINE_EXCEEDED, the server
//! sees the deadline, drops the handler at the deadline and resets the stream
//! with CANCEL, a malformed `grpc-timeout` is INTERNAL, and an expired
//! deadline fails before anything is sent.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_core::{CallOptions, Code, ConnectivityState, MethodKind, Server, ServerCall, ServerOptions, Status};

struct Fixture {
    server: Server,
    addr: String,
    dropped: Arc<std::sync::atomic::AtomicBool>,
    calls: Arc<AtomicUsize>,
}

async fn serve() -> Fixture {
    let (dropped, guard) = drop_flag();
    let calls = Arc::new(AtomicUsize::new(0));
    let c1 = calls.clone();
    let c2 = calls.clone();
    let builder = Server::builder(ServerOptions::default())
        .register("/d.S/Sleep", MethodKind::Unary, move |_call: ServerCall| {
            let g = guard();
            c1.fetch_add(1, Ordering::SeqCst);
            async move {
                let _g = g;
                tokio::time::sleep(Duration::from_secs(30)).await;
                Status::ok()
            }
        })
        .unwrap()
        .register("/d.S/Remaining", MethodKind::Unary, move |mut call: ServerCall| {
            c2.fetch_add(1, Ordering::SeqCst);
            async move {
                let _ = call.recv().await;
                let reply = match (call.deadline(), call.time_remaining()) {
                    (Some(d), Some(left)) => {
                        let from_deadline = d.saturating_duration_since(Instant::now());
                        format!("{} {}", left.as_millis(), from_deadline.as_millis())
                    }
                    (None, None) => "none".to_string(),
                    other => format!("inconsistent {other:?}"),
                };
                match call.send(Bytes::from(reply)).await {
                    Ok(()) => Status::ok(),
                    Err(s) => s,
                }
            }
        })
        .unwrap();
    let (server, addr) = start(builder).await;
    Fixture { server, addr, dropped, calls }
}

#[tokio::test]
async fn client_deadline_exceeded_on_time() {
    let f = serve().await;
    let ch = channel(&f.addr);
    ch.ready(None).await.unwrap();
    let t0 = Instant::now();
    let opts = CallOptions { timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let err = bounded("deadline", ch.unary("/d.S/Sleep", Bytes::from_static(b"x"), opts)).await.unwrap_err();
    let took = t0.elapsed();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(took >= Duration::from_millis(290), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(3), "gave up late: {took:?}");

    // The absolute form works the same.
    let opts = CallOptions { deadline: Some(Instant::now() + Duration::from_millis(200)), ..Default::default() };
    let err = bounded("deadline", ch.unary("/d.S/Sleep", Bytes::from_static(b"x"), opts)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    f.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_sees_the_deadline() {
    let f = serve().await;
    let ch = channel(&f.addr);
    let opts = CallOptions { timeout: Some(Duration::from_secs(5)), ..Default::default() };
    let r = bounded("unary", ch.unary("/d.S/Remaining", Bytes::from_static(b"x"), opts)).await.unwrap();
    let text = String::from_utf8(r.message.to_vec()).unwrap();
    let ms: Vec<u128> = text.split(' ').map(|x| x.parse().unwrap()).collect();
    for left in ms {
        assert!(left <= 5000, "more time than the client gave: {left} ms");
        assert!(left > 2000, "far less time than the client gave: {left} ms");
    }
    // No deadline: none on the server.
    let r = ch.unary("/d.S/Remaining", Bytes::from_static(b"x"), CallOptions::default()).await.unwrap();
    assert_eq!(r.message, "none");

    // A raw client's grpc-timeout is what the server sees.
    let raw = raw_connect(&f.addr).await;
    let req = grpc_request("/d.S/Remaining").header("grpc-timeout", "3S").body(()).unwrap();
    let r = raw_call(&raw, req, vec![frame(0, b"")], true).await.unwrap();
    assert_eq!(r.grpc_status(), Some(0));
    let text = String::from_utf8(r.frames()[0].1.to_vec()).unwrap();
    let left: u128 = text.split(' ').next().unwrap().parse().unwrap();
    assert!(left <= 3000 && left > 1000, "{left} ms left of 3 s");
    f.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_drops_handler_and_resets_with_cancel_at_deadline() {
    let f = serve().await;
    let raw = raw_connect(&f.addr).await;
    let req = grpc_request("/d.S/Sleep").header("grpc-timeout", "200m").body(()).unwrap();
    let t0 = Instant::now();
    let err = bounded("server reset", raw_call(&raw, req, vec![frame(0, b"x")], true)).await.unwrap_err();
    let took = t0.elapsed();
    assert_eq!(err.reason(), Some(h2::Reason::CANCEL), "{err}");
    assert!(err.is_reset() && err.is_remote(), "a RST_STREAM from the server: {err}");
    assert!(took >= Duration::from_millis(190), "reset before the deadline: {took:?}");
    assert_eq!(f.calls.load(Ordering::SeqCst), 1);
    wait_until("the handler is dropped", || f.dropped.load(Ordering::SeqCst)).await;

    // The engine's own client sees DEADLINE_EXCEEDED, and the handler is dropped too.
    f.dropped.store(false, Ordering::SeqCst);
    let ch = channel(&f.addr);
    let opts = CallOptions { timeout: Some(Duration::from_millis(200)), ..Default::default() };
    let err = bounded("deadline", ch.unary("/d.S/Sleep", Bytes::from_static(b"x"), opts)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    wait_until("the handler is dropped", || f.dropped.load(Ordering::SeqCst)).await;
    f.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn malformed_grpc_timeout_is_internal() {
    let f = serve().await;
    let raw = raw_connect(&f.addr).await;
    for bad in ["", "1", "S", "1x", "-1S", "1.5S", "123456789S", "abcS", "1 S"] {
        let req = grpc_request("/d.S/Remaining").header("grpc-timeout", bad).body(()).unwrap();
        let r = bounded("raw call", raw_call(&raw, req, vec![frame(0, b"")], true)).await.unwrap();
        assert_eq!(r.grpc_status(), Some(Code::Internal as i32), "grpc-timeout {bad:?}: {r:?}");
        assert!(r.grpc_message().starts_with("malformed grpc-timeout"), "{bad:?}: {}", r.grpc_message());
    }
    assert_eq!(f.calls.load(Ordering::SeqCst), 0, "no handler ran");
    // Every unit parses.
    for good in ["1H", "1M", "10S", "10000m", "10000000u", "99999999n"] {
        let req = grpc_request("/d.S/Remaining").header("grpc-timeout", good).body(()).unwrap();
        let r = bounded("raw call", raw_call(&raw, req, vec![frame(0, b"")], true)).await.unwrap();
        assert_eq!(r.grpc_status(), Some(0), "grpc-timeout {good:?}: {r:?}");
    }
    f.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn expired_deadline_fails_without_a_round_trip() {
    let f = serve().await;
    let ch = channel(&f.addr);
    let past = Instant::now().checked_sub(Duration::from_millis(5)).unwrap_or_else(Instant::now);
    for opts in [
        CallOptions { deadline: Some(past), ..Default::default() },
        CallOptions { timeout: Some(Duration::ZERO), ..Default::default() },
    ] {
        let t0 = Instant::now();
        let err = ch.unary("/d.S/Remaining", Bytes::from_static(b"x"), opts).await.unwrap_err();
        assert_eq!(err.code(), Code::DeadlineExceeded);
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
    // Nothing was sent: the lazy channel did not even connect.
    assert_eq!(ch.state(), ConnectivityState::Idle);
    // And on a connected channel the server never sees it.
    ch.unary("/d.S/Remaining", Bytes::from_static(b"x"), CallOptions::default()).await.unwrap();
    let before = f.calls.load(Ordering::SeqCst);
    let opts = CallOptions { deadline: Some(past), ..Default::default() };
    assert_eq!(ch.call("/d.S/Remaining", opts).await.unwrap_err().code(), Code::DeadlineExceeded);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(f.calls.load(Ordering::SeqCst), before);
    f.server.shutdown(Duration::from_secs(1)).await;
}
