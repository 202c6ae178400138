//! Cancellation: a client cancel ends the call with CANCELLED and drops the
//! server's handler (also from another thread through a `CallHandle`), and a
//! server's RST_STREAM error codes map to statuses.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::{CallOptions, Code, Metadata, MethodKind, Server, ServerCall, ServerOptions, Status};

struct Fixture {
    server: Server,
    addr: String,
    started: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

/// `/c.S/Hang` sends headers then hangs; `/c.S/Quiet` hangs without sending
/// anything. Both set `started` and hold a guard that sets `dropped`.
async fn serve() -> Fixture {
    let (dropped, guard) = drop_flag();
    let started = Arc::new(AtomicBool::new(false));
    let (s1, s2) = (started.clone(), started.clone());
    let g2 = guard.clone();
    let builder = Server::builder(ServerOptions::default())
        .register("/c.S/Hang", MethodKind::BidiStreaming, move |mut call: ServerCall| {
            let g = guard();
            let s = s1.clone();
            async move {
                let _g = g;
                let mut md = Metadata::new();
                md.insert("x-started", "yes").unwrap();
                if let Err(st) = call.send_initial_metadata(md).await {
                    return st;
                }
                s.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Status::ok()
            }
        })
        .unwrap()
        .register("/c.S/Quiet", MethodKind::BidiStreaming, move |_call: ServerCall| {
            let g = g2();
            let s = s2.clone();
            async move {
                let _g = g;
                s.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_secs(60)).await;
                Status::ok()
            }
        })
        .unwrap()
        .register("/c.S/Echo", MethodKind::Unary, echo)
        .unwrap();
    let (server, addr) = start(builder).await;
    Fixture { server, addr, started, dropped }
}

#[tokio::test]
async fn client_cancel_is_cancelled_and_drops_the_handler() {
    let f = serve().await;
    let ch = channel(&f.addr);
    for method in ["/c.S/Hang", "/c.S/Quiet"] {
        f.started.store(false, Ordering::SeqCst);
        f.dropped.store(false, Ordering::SeqCst);
        let mut c = ch.call(method, CallOptions::default()).await.unwrap();
        c.send(Bytes::from_static(b"x")).await.unwrap();
        if method == "/c.S/Hang" {
            let md = bounded("headers", c.initial_metadata()).await.unwrap();
            assert_eq!(md.get("x-started"), Some("yes"));
        }
        wait_until("the handler runs", || f.started.load(Ordering::SeqCst)).await;
        assert!(!f.dropped.load(Ordering::SeqCst));
        c.cancel();
        let err = bounded("recv after cancel", c.recv()).await.unwrap_err();
        assert_eq!(err.code(), Code::Cancelled, "{method}: {err}");
        assert_eq!(c.finish().await.code(), Code::Cancelled);
        let err = c.send(Bytes::from_static(b"y")).await.unwrap_err();
        assert_eq!(err.code(), Code::Cancelled, "send after cancel");
        wait_until("the server drops the handler", || f.dropped.load(Ordering::SeqCst)).await;
    }
    // The connection is unharmed.
    let r = ch.unary("/c.S/Echo", Bytes::from_static(b"ok"), CallOptions::default()).await.unwrap();
    assert_eq!(r.message, "ok");
    f.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_from_another_thread() {
    let f = serve().await;
    let ch = channel(&f.addr);
    let mut c = ch.call("/c.S/Quiet", CallOptions::default()).await.unwrap();
    c.send(Bytes::from_static(b"x")).await.unwrap();
    let handle = c.handle();
    let started = f.started.clone();
    let t = std::thread::spawn(move || {
        let t0 = std::time::Instant::now();
        while !started.load(Ordering::SeqCst) && t0.elapsed() < BOUND {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(50));
        handle.cancel();
    });
    // recv is pending when the other thread cancels.
    let err = bounded("recv pending across the cancel", c.recv()).await.unwrap_err();
    assert_eq!(err.code(), Code::Cancelled, "{err}");
    assert_eq!(err.message(), "call cancelled by the client");
    t.join().unwrap();
    wait_until("the server drops the handler", || f.dropped.load(Ordering::SeqCst)).await;

    // Cancelling a finished call changes nothing.
    let mut c = ch.call("/c.S/Echo", CallOptions::default()).await.unwrap();
    c.send_last(Bytes::from_static(b"done")).await.unwrap();
    let r = c.recv_unary().await.unwrap();
    assert_eq!(r.message, "done");
    let handle = c.handle();
    std::thread::spawn(move || handle.cancel()).join().unwrap();
    assert_eq!(c.status().unwrap().code(), Code::Ok);
    assert_eq!(c.finish().await.code(), Code::Ok);
    f.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_rst_stream_codes_map_to_statuses() {
    let table = [
        ("CANCEL", h2::Reason::CANCEL, Code::Cancelled),
        ("REFUSED_STREAM", h2::Reason::REFUSED_STREAM, Code::Unavailable),
        ("ENHANCE_YOUR_CALM", h2::Reason::ENHANCE_YOUR_CALM, Code::ResourceExhausted),
        ("INTERNAL_ERROR", h2::Reason::INTERNAL_ERROR, Code::Internal),
        ("INADEQUATE_SECURITY", h2::Reason::INADEQUATE_SECURITY, Code::PermissionDenied),
        ("PROTOCOL_ERROR", h2::Reason::PROTOCOL_ERROR, Code::Internal),
    ];
    // `/r.S/<REASON>` resets at once; `/r.S/<REASON>/late` after response headers.
    let addr = raw_server(move |req, mut respond| {
        let path = req.uri().path().to_string();
        let mut parts = path.trim_start_matches("/r.S/").split('/');
        let name = parts.next().unwrap().to_string();
        let late = parts.next() == Some("late");
        let reason = table.iter().find(|(n, _, _)| *n == name).map(|(_, r, _)| *r).unwrap();
        if late {
            let mut s = respond.send_response(response(200, &[("content-type", "application/grpc")]), false).unwrap();
            s.send_reset(reason);
        } else {
            respond.send_reset(reason);
        }
    })
    .await;
    let ch = channel(&addr);
    for late in [false, true] {
        for (name, _, code) in table {
            let path = if late { format!("/r.S/{name}/late") } else { format!("/r.S/{name}") };
            let err = bounded("reset call", ch.unary(&path, Bytes::from_static(b"x"), CallOptions::default()))
                .await
                .unwrap_err();
            assert_eq!(err.code(), code, "{path}: {err}");
            assert!(err.message().contains(name), "{path}: the message names the reset code: {err}");
            // A streaming call sees the same.
            let mut c = ch.call(&path, CallOptions::default()).await.unwrap();
            let _ = c.send(Bytes::from_static(b"x")).await;
            assert_eq!(bounded("finish", c.finish()).await.code(), code, "{path} (streaming)");
        }
    }
}
