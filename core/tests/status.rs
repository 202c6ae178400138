//! Statuses end to end: every code with its message (trailers-only and after
//! messages), `grpc-message` percent-encoding, `grpc-status-details-bin`,
//! the HTTP-status mapping when `grpc-status` is missing, and a panicking
//! handler (INTERNAL, the server keeps serving).

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::{CallOptions, Code, MethodKind, Server, ServerCall, ServerOptions, Status};

/// The request is "<code> <send-first:0|1>"; the message is "message <code>".
async fn code(mut call: ServerCall) -> Status {
    let req = String::from_utf8(call.recv().await.unwrap().unwrap().to_vec()).unwrap();
    let (n, first) = req.split_once(' ').unwrap();
    let n: i32 = n.parse().unwrap();
    if first == "1" {
        if let Err(s) = call.send(Bytes::from_static(b"first")).await {
            return s;
        }
    }
    Status::new(Code::from_i32(n), format!("message {n}"))
}

const TRICKY: &str = "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n 100% %zz %41 done";
const DETAILS: [u8; 6] = [0x08, 0x03, 0x12, 0x00, 0xff, 0xfe];

fn builder() -> grpc_core::server::ServerBuilder {
    Server::builder(ServerOptions::default())
        .register("/s.S/Code", MethodKind::Unary, code)
        .unwrap()
        .register("/s.S/Tricky", MethodKind::Unary, |_call: ServerCall| async {
            Status::new(Code::InvalidArgument, TRICKY)
        })
        .unwrap()
        .register("/s.S/Details", MethodKind::Unary, |_call: ServerCall| async {
            Status::new(Code::FailedPrecondition, "with details").with_details(Bytes::from_static(&DETAILS))
        })
        .unwrap()
        .register("/s.S/Panic", MethodKind::Unary, |_call: ServerCall| async {
            if std::hint::black_box(true) {
                panic!("boom in the handler");
            }
            Status::ok()
        })
        .unwrap()
        .register("/s.S/PanicLater", MethodKind::BidiStreaming, |mut call: ServerCall| async move {
            let _ = call.send(Bytes::from_static(b"before")).await;
            tokio::task::yield_now().await;
            if std::hint::black_box(true) {
                panic!("boom after a message");
            }
            Status::ok()
        })
        .unwrap()
        .register("/s.S/Echo", MethodKind::Unary, echo)
        .unwrap()
}

#[tokio::test]
async fn every_code_round_trips_with_its_message() {
    let (server, addr) = start(builder()).await;
    let ch = channel(&addr);
    for n in 0..=16 {
        for first in [0, 1] {
            let mut c = ch.call("/s.S/Code", CallOptions::default()).await.unwrap();
            c.send_last(Bytes::from(format!("{n} {first}"))).await.unwrap();
            let st = bounded("finish", c.finish()).await;
            assert_eq!(st.code().as_i32(), n, "code {n} (message first: {first})");
            assert_eq!(st.code(), Code::from_i32(n));
            assert_eq!(st.message(), format!("message {n}"));
        }
        let r = ch.unary("/s.S/Code", Bytes::from(format!("{n} 1")), CallOptions::default()).await;
        match r {
            Ok(resp) => {
                assert_eq!(n, 0);
                assert_eq!(resp.message, "first");
            }
            Err(st) => assert_eq!((st.code().as_i32(), st.message()), (n, format!("message {n}").as_str())),
        }
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn grpc_message_percent_encoding() {
    let (server, addr) = start(builder()).await;
    let ch = channel(&addr);
    let err = ch.unary("/s.S/Tricky", Bytes::new(), CallOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.message(), TRICKY);

    // On the wire: printable ASCII except '%', everything else %XX (UTF-8 bytes).
    let raw = raw_connect(&addr).await;
    let r = raw_call(&raw, grpc_request("/s.S/Tricky").body(()).unwrap(), vec![frame(0, b"")], true).await.unwrap();
    let wire = r.status_headers().get("grpc-message").unwrap().to_str().unwrap().to_string();
    assert!(wire.bytes().all(|b| (0x20..=0x7e).contains(&b)), "{wire}");
    assert!(wire.starts_with("%09%0Atest with whitespace%0D%0Aand Unicode BMP %E2%98%BA and non-BMP %F0%9F%98%88"));
    assert!(wire.ends_with("%09%0A 100%25 %25zz %2541 done"), "{wire}");

    // From a peer: valid escapes decode, invalid ones are kept, bad UTF-8 is replaced.
    let cases = [
        ("hello%20world%E2%98%BA", "hello world☺"),
        ("50% off %zz %4", "50% off %zz %4"),
        ("cut %E2%98", "cut \u{fffd}"),
        ("plain", "plain"),
    ];
    let peer = raw_server(move |req, mut respond| {
        let i: usize = req.uri().path().trim_start_matches("/p.S/").parse().unwrap();
        let resp =
            response(200, &[("content-type", "application/grpc"), ("grpc-status", "9"), ("grpc-message", cases[i].0)]);
        let _ = respond.send_response(resp, true);
    })
    .await;
    let pch = channel(&peer);
    for (i, (_, want)) in cases.iter().enumerate() {
        let err = pch.unary(&format!("/p.S/{i}"), Bytes::new(), CallOptions::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::FailedPrecondition);
        assert_eq!(err.message(), *want);
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn status_details_bin_passed_through() {
    let (server, addr) = start(builder()).await;
    let ch = channel(&addr);
    let err = ch.unary("/s.S/Details", Bytes::new(), CallOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "with details");
    assert_eq!(err.details().as_ref(), &DETAILS);
    assert!(err.metadata().get_bin("grpc-status-details-bin").is_none(), "details are not metadata");

    // From a peer, padded or not.
    let peer = raw_server(|req, mut respond| {
        let v = match req.uri().path() {
            "/p.S/exact" => "CAMSAP/+",
            "/p.S/unpadded" => "CAMSAP/+AQ",
            _ => "CAMSAP/+AQ==",
        };
        let resp = response(
            200,
            &[("content-type", "application/grpc"), ("grpc-status", "3"), ("grpc-status-details-bin", v)],
        );
        let _ = respond.send_response(resp, true);
    })
    .await;
    let pch = channel(&peer);
    let err = pch.unary("/p.S/exact", Bytes::new(), CallOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert_eq!(err.details().as_ref(), &DETAILS);
    for path in ["/p.S/unpadded", "/p.S/padded"] {
        let err = pch.unary(path, Bytes::new(), CallOptions::default()).await.unwrap_err();
        assert_eq!(err.details().as_ref(), &[0x08, 0x03, 0x12, 0x00, 0xff, 0xfe, 0x01], "{path}");
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn http_status_maps_to_code_without_grpc_status() {
    let table = [
        (400, Code::Internal),
        (401, Code::Unauthenticated),
        (403, Code::PermissionDenied),
        (404, Code::Unimplemented),
        (429, Code::Unavailable),
        (502, Code::Unavailable),
        (503, Code::Unavailable),
        (504, Code::Unavailable),
        (500, Code::Unknown),
    ];
    // `/h.S/<status>` answers headers only; `/h.S/<status>/body` adds an HTML body.
    let peer = raw_server(|req, mut respond| {
        let path = req.uri().path().to_string();
        let mut it = path.trim_start_matches("/h.S/").split('/');
        let status: u16 = it.next().unwrap().parse().unwrap();
        if it.next() == Some("body") {
            let mut s = respond.send_response(response(status, &[("content-type", "text/html")]), false).unwrap();
            let _ = s.send_data(Bytes::from_static(b"<html>proxy error</html>"), true);
        } else {
            let _ = respond.send_response(response(status, &[]), true);
        }
    })
    .await;
    let ch = channel(&peer);
    for body in [false, true] {
        for (http, code) in table {
            let path = if body { format!("/h.S/{http}/body") } else { format!("/h.S/{http}") };
            let err = bounded("call", ch.unary(&path, Bytes::new(), CallOptions::default())).await.unwrap_err();
            assert_eq!(err.code(), code, "HTTP {http} (body: {body}): {err}");
            assert!(err.message().contains(&http.to_string()), "the message names HTTP {http}: {err}");
        }
    }
}

#[tokio::test]
async fn handler_panic_is_internal_and_server_keeps_serving() {
    let (server, addr) = start(builder()).await;
    let ch = channel(&addr);
    for _ in 0..3 {
        let err = bounded("panic", ch.unary("/s.S/Panic", Bytes::new(), CallOptions::default())).await.unwrap_err();
        assert_eq!(err.code(), Code::Internal, "{err}");
        assert!(err.message().contains("boom in the handler"), "{err}");
        let r = ch.unary("/s.S/Echo", Bytes::from_static(b"still here"), CallOptions::default()).await.unwrap();
        assert_eq!(r.message, "still here");
    }
    // A panic after headers and a message went out ends the call INTERNAL too.
    let mut c = ch.call("/s.S/PanicLater", CallOptions::default()).await.unwrap();
    assert_eq!(bounded("message", c.recv()).await.unwrap().unwrap(), "before");
    let st = bounded("finish", c.finish()).await;
    assert_eq!(st.code(), Code::Internal, "{st}");
    // New connections are served too.
    let ch2 = channel(&addr);
    let r = ch2.unary("/s.S/Echo", Bytes::from_static(b"new"), CallOptions::default()).await.unwrap();
    assert_eq!(r.message, "new");
    server.shutdown(Duration::from_secs(1)).await;
}
