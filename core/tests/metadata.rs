//! Metadata end to end: ASCII and `-bin` request metadata reach the handler,
//! initial metadata and trailers reach the client (also on trailers-only
//! responses), a call that fails after the response headers keeps them on
//! its status, reserved keys are refused, and binary values sent padded or
//! unpadded by a raw HTTP/2 client are decoded.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::{
    CallOptions, Code, ErrorKind, Metadata, MetadataValue, MethodKind, Server, ServerCall, ServerOptions, Status,
};

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Replies with one line per request metadata entry (`key=value`, binary
/// values as `key=hex:...`), after initial metadata; trailers on the status.
async fn show(mut call: ServerCall) -> Status {
    let _ = call.recv().await;
    let mut lines = Vec::new();
    for (k, v) in call.metadata().iter() {
        match v {
            MetadataValue::Ascii(s) => lines.push(format!("{k}={s}")),
            MetadataValue::Binary(b) => lines.push(format!("{k}=hex:{}", hex(b))),
        }
    }
    let mut init = Metadata::new();
    init.insert("x-init", "initial value").unwrap();
    init.insert_bin("x-init-bin", vec![0u8, 1, 2, 0xff]).unwrap();
    if let Err(s) = call.send_initial_metadata(init).await {
        return s;
    }
    if let Err(s) = call.send(Bytes::from(lines.join("\n"))).await {
        return s;
    }
    let mut trailers = Metadata::new();
    trailers.insert("x-trail", "trailing value").unwrap();
    trailers.insert_bin("x-trail-bin", vec![0xfeu8, 0xed]).unwrap();
    Status::ok().with_metadata(trailers)
}

/// Fails at once, without sending anything: a trailers-only response.
async fn fail_early(_call: ServerCall) -> Status {
    let mut trailers = Metadata::new();
    trailers.insert("x-reason", "quota").unwrap();
    trailers.insert_bin("x-detail-bin", vec![9u8, 8, 7]).unwrap();
    Status::new(Code::NotFound, "no such thing").with_metadata(trailers)
}

/// Sends response headers, then fails with trailers (not trailers-only).
async fn headers_then_fail(mut call: ServerCall) -> Status {
    let _ = call.recv().await;
    let mut init = Metadata::new();
    init.insert("x-init", "sent before failing").unwrap();
    init.insert_bin("x-init-bin", vec![4u8, 2]).unwrap();
    if let Err(s) = call.send_initial_metadata(init).await {
        return s;
    }
    let mut trailers = Metadata::new();
    trailers.insert("x-reason", "out of stock").unwrap();
    Status::new(Code::FailedPrecondition, "cannot do it").with_metadata(trailers)
}

async fn serve() -> (Server, String) {
    start(
        Server::builder(ServerOptions::default())
            .register("/m.S/Show", MethodKind::Unary, show)
            .unwrap()
            .register("/m.S/ShowStream", MethodKind::BidiStreaming, show)
            .unwrap()
            .register("/m.S/Fail", MethodKind::BidiStreaming, fail_early)
            .unwrap()
            .register("/m.S/HeadersThenFail", MethodKind::Unary, headers_then_fail)
            .unwrap()
            .register("/m.S/HeadersThenFailStream", MethodKind::BidiStreaming, headers_then_fail)
            .unwrap(),
    )
    .await
}

#[tokio::test]
async fn request_metadata_reaches_handler() {
    let (server, addr) = serve().await;
    let ch = channel(&addr);
    let mut md = Metadata::new();
    md.insert("x-ascii", "hello world").unwrap();
    md.insert("x-multi", "one").unwrap();
    md.insert("x-multi", "two").unwrap();
    md.insert_bin("x-data-bin", vec![0u8, 1, 2, 0x7f, 0x80, 0xff]).unwrap();
    md.insert_bin("x-empty-bin", Vec::<u8>::new()).unwrap();
    let opts = CallOptions { metadata: md, ..Default::default() };
    let r = bounded("unary", ch.unary("/m.S/Show", Bytes::from_static(b"x"), opts)).await.unwrap();
    let text = String::from_utf8(r.message.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for want in ["x-ascii=hello world", "x-multi=one", "x-multi=two", "x-data-bin=hex:0001027f80ff", "x-empty-bin=hex:"]
    {
        assert!(lines.contains(&want), "handler did not see {want:?}; saw {lines:?}");
    }
    let multi: Vec<&&str> = lines.iter().filter(|l| l.starts_with("x-multi=")).collect();
    assert_eq!(multi, [&"x-multi=one", &"x-multi=two"], "repeated keys keep their order");
    for l in &lines {
        assert!(
            !l.starts_with("grpc-") && !l.starts_with(':') && !l.starts_with("content-type") && !l.starts_with("te="),
            "reserved header {l:?} reported as metadata"
        );
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn initial_metadata_and_trailers_reach_client() {
    let (server, addr) = serve().await;
    let ch = channel(&addr);
    let r = bounded("unary", ch.unary("/m.S/Show", Bytes::from_static(b"x"), CallOptions::default())).await.unwrap();
    assert_eq!(r.initial_metadata.get("x-init"), Some("initial value"));
    assert_eq!(r.initial_metadata.get_bin("x-init-bin").unwrap().as_ref(), &[0u8, 1, 2, 0xff]);
    assert_eq!(r.trailing_metadata.get("x-trail"), Some("trailing value"));
    assert_eq!(r.trailing_metadata.get_bin("x-trail-bin").unwrap().as_ref(), &[0xfeu8, 0xed]);
    assert!(r.initial_metadata.get("x-trail").is_none() && r.trailing_metadata.get("x-init").is_none());
    assert!(r.trailing_metadata.get("grpc-status").is_none(), "grpc-status is not metadata");

    // Streaming: headers before the first message, trailers with the status.
    let mut c = ch.call("/m.S/ShowStream", CallOptions::default()).await.unwrap();
    c.send(Bytes::from_static(b"x")).await.unwrap();
    let init = bounded("initial metadata", c.initial_metadata()).await.unwrap();
    assert_eq!(init.get("x-init"), Some("initial value"));
    assert!(c.recv().await.unwrap().is_some());
    c.close_send().await.unwrap();
    let st = bounded("finish", c.finish()).await;
    assert_eq!(st.code(), Code::Ok);
    assert_eq!(st.metadata().get("x-trail"), Some("trailing value"));
    assert_eq!(st.metadata().get_bin("x-trail-bin").unwrap().as_ref(), &[0xfeu8, 0xed]);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_call_failing_after_headers_keeps_headers_and_trailers() {
    let (server, addr) = serve().await;
    let ch = channel(&addr);
    let err = bounded("unary", ch.unary("/m.S/HeadersThenFail", Bytes::from_static(b"x"), CallOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.message(), "cannot do it");
    assert_eq!(err.initial_metadata().get("x-init"), Some("sent before failing"));
    assert_eq!(err.initial_metadata().get_bin("x-init-bin").unwrap().as_ref(), &[4u8, 2]);
    assert_eq!(err.metadata().get("x-reason"), Some("out of stock"));
    // Headers and trailers stay apart.
    assert!(err.initial_metadata().get("x-reason").is_none() && err.metadata().get("x-init").is_none());

    // The same through a streaming call: recv's error and finish's status.
    let mut c = ch.call("/m.S/HeadersThenFailStream", CallOptions::default()).await.unwrap();
    c.send_last(Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(
        bounded("initial metadata", c.initial_metadata()).await.unwrap().get("x-init"),
        Some("sent before failing")
    );
    let st = bounded("recv", c.recv()).await.unwrap_err();
    assert_eq!(st.code(), Code::FailedPrecondition);
    assert_eq!(st.initial_metadata().get("x-init"), Some("sent before failing"));
    assert_eq!(st.metadata().get("x-reason"), Some("out of stock"));
    let st = bounded("finish", c.finish()).await;
    assert_eq!(st.initial_metadata().get("x-init"), Some("sent before failing"));

    // With a retry policy for the code, the failure after headers is
    // committed (gRFC A6) and still carries them.
    let sc = r#"{"methodConfig":[{"name":[{"service":"m.S"}],"retryPolicy":{"maxAttempts":3,
        "initialBackoff":"0.01s","maxBackoff":"0.01s","backoffMultiplier":1,
        "retryableStatusCodes":["FAILED_PRECONDITION"]}}]}"#;
    let opts = grpc_core::ChannelOptions { service_config: Some(sc.into()), ..Default::default() };
    let ch = grpc_core::Channel::new(&addr, opts).unwrap();
    let err = bounded("unary", ch.unary("/m.S/HeadersThenFail", Bytes::from_static(b"x"), CallOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    assert_eq!(err.initial_metadata().get("x-init"), Some("sent before failing"));
    assert_eq!(err.metadata().get("x-reason"), Some("out of stock"));
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn trailers_only_response_carries_trailers() {
    let (server, addr) = serve().await;
    let ch = channel(&addr);
    let err =
        bounded("unary", ch.unary("/m.S/Fail", Bytes::from_static(b"x"), CallOptions::default())).await.unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    assert_eq!(err.message(), "no such thing");
    assert_eq!(err.metadata().get("x-reason"), Some("quota"));
    assert_eq!(err.metadata().get_bin("x-detail-bin").unwrap().as_ref(), &[9u8, 8, 7]);
    assert!(err.initial_metadata().is_empty(), "trailers-only: no headers, got {:?}", err.initial_metadata());

    // Streaming: no headers (initial metadata is empty), then the status
    // with its trailers.
    let mut c = ch.call("/m.S/Fail", CallOptions::default()).await.unwrap();
    assert!(bounded("initial metadata", c.initial_metadata()).await.unwrap().is_empty());
    let st = bounded("recv", c.recv()).await.unwrap_err();
    assert_eq!(st.code(), Code::NotFound);
    assert_eq!(st.metadata().get("x-reason"), Some("quota"));
    assert_eq!(c.status().unwrap().metadata().get_bin("x-detail-bin").unwrap().as_ref(), &[9u8, 8, 7]);

    // On the wire: one HEADERS frame with END_STREAM holding status and trailers.
    let raw = raw_connect(&addr).await;
    let r = raw_call(&raw, grpc_request("/m.S/Fail").body(()).unwrap(), vec![frame(0, b"")], true).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.trailers.is_none() && r.body.is_empty(), "not trailers-only: {r:?}");
    assert_eq!(r.headers.get("grpc-status").unwrap(), "5");
    assert_eq!(r.headers.get("x-reason").unwrap(), "quota");
    assert_eq!(r.headers.get("content-type").unwrap(), "application/grpc");
    server.shutdown(Duration::from_secs(1)).await;
}

#[test]
fn reserved_keys_rejected_by_insert() {
    let mut md = Metadata::new();
    for key in [
        "grpc-status",
        "grpc-message",
        "grpc-timeout",
        "grpc-encoding",
        "grpc-custom",
        ":path",
        ":authority",
        ":status",
        "content-type",
        "te",
        "connection",
        "host",
        "transfer-encoding",
        "keep-alive",
        "upgrade",
        "proxy-connection",
        "Grpc-Status",
        "Content-Type",
    ] {
        let e = md.insert(key, "v").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{key}");
    }
    for key in ["grpc-status-details-bin", "grpc-trace-bin"] {
        assert_eq!(md.insert_bin(key, vec![1u8]).unwrap_err().kind(), ErrorKind::InvalidArgument, "{key}");
    }
    assert!(md.is_empty(), "nothing reserved was stored");
    // Ordinary keys are fine (and lower-cased).
    md.insert("x-Fine", "v").unwrap();
    md.insert_bin("x-fine-bin", vec![1u8]).unwrap();
    assert_eq!(md.get("x-fine"), Some("v"));
}

#[tokio::test]
async fn raw_binary_values_padded_and_unpadded_are_decoded() {
    let (server, addr) = serve().await;
    let raw = raw_connect(&addr).await;
    let req = grpc_request("/m.S/Show")
        .header("x-pad-bin", "AQIDBA==") // [1,2,3,4], padded
        .header("x-nopad-bin", "AQIDBA") // [1,2,3,4], unpadded
        .header("x-pad1-bin", "AQIDBAU=") // [1,2,3,4,5], one pad char
        .header("x-list-bin", "AQID,BA==") // two values in one header
        .header("x-text", "plain")
        .body(())
        .unwrap();
    let r = bounded("raw call", raw_call(&raw, req, vec![frame(0, b"x")], true)).await.unwrap();
    assert_eq!(r.grpc_status(), Some(0), "{r:?}");
    let frames = r.frames();
    assert_eq!(frames.len(), 1);
    let text = String::from_utf8(frames[0].1.to_vec()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for want in [
        "x-pad-bin=hex:01020304",
        "x-nopad-bin=hex:01020304",
        "x-pad1-bin=hex:0102030405",
        "x-list-bin=hex:010203",
        "x-list-bin=hex:04",
        "x-text=plain",
    ] {
        assert!(lines.contains(&want), "handler did not see {want:?}; saw {lines:?}");
    }
    // The server sends binary values unpadded.
    assert_eq!(r.header("x-init-bin").as_deref(), Some("AAEC/w"));
    server.shutdown(Duration::from_secs(1)).await;
}
