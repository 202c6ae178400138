//! Compression: gzip, deflate and zstd per call in both directions, the
//! per-message opt-out, `grpc-accept-encoding` negotiation, and an unknown
//! `grpc-encoding` → UNIMPLEMENTED listing what is supported.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::{CallOptions, Code, Compression, Metadata, MethodKind, Server, ServerCall, ServerOptions, Status};

/// Echoes each request as `[compressed-flag-seen] + data`. Request metadata:
/// `x-respond-with` sets the response compression; `x-plain-every` = n sends
/// every n-th reply with `compress: false`.
async fn echo_flags(mut call: ServerCall) -> Status {
    if let Some(name) = call.metadata().get("x-respond-with").map(str::to_string) {
        call.set_compression(Compression::from_name(&name).unwrap());
    }
    let plain_every: usize = call.metadata().get("x-plain-every").map(|v| v.parse().unwrap()).unwrap_or(0);
    let mut i = 0;
    loop {
        match call.recv_message().await {
            Ok(Some(m)) => {
                let mut out = vec![m.compressed as u8];
                out.extend_from_slice(&m.data);
                let compress = !(plain_every > 0 && i % plain_every == 0);
                if let Err(s) = call.send_with(Bytes::from(out), compress).await {
                    return s;
                }
                i += 1;
            }
            Ok(None) => return Status::ok(),
            Err(s) => return s,
        }
    }
}

fn payload() -> Bytes {
    Bytes::from("compressible payload ".repeat(500))
}

async fn serve(opts: ServerOptions) -> (Server, String) {
    start(
        Server::builder(opts)
            .register("/z.S/Echo", MethodKind::BidiStreaming, echo_flags)
            .unwrap()
            .register("/z.S/Unary", MethodKind::Unary, echo_flags)
            .unwrap(),
    )
    .await
}

fn opts(send: Option<Compression>, respond: Option<Compression>, plain_every: usize) -> CallOptions {
    let mut md = Metadata::new();
    if let Some(r) = respond {
        md.insert("x-respond-with", r.name()).unwrap();
    }
    if plain_every > 0 {
        md.insert("x-plain-every", plain_every.to_string()).unwrap();
    }
    CallOptions { compression: send, metadata: md, ..Default::default() }
}

#[tokio::test]
async fn per_call_compression_both_directions() {
    let (server, addr) = serve(ServerOptions::default()).await;
    let ch = channel(&addr);
    for c in [Compression::Gzip, Compression::Deflate, Compression::Zstd] {
        let mut call = ch.call("/z.S/Echo", opts(Some(c), Some(c), 0)).await.unwrap();
        for _ in 0..3 {
            call.send(payload()).await.unwrap();
            let m = bounded("reply", call.recv_message()).await.unwrap().unwrap();
            assert!(m.compressed, "{c:?}: the response was not compressed");
            assert_eq!(m.data[0], 1, "{c:?}: the request was not compressed");
            assert_eq!(&m.data[1..], &payload()[..]);
        }
        call.close_send().await.unwrap();
        assert!(bounded("finish", call.finish()).await.is_ok());

        // Only one direction compressed.
        let r = ch.unary("/z.S/Unary", payload(), opts(Some(c), None, 0)).await.unwrap();
        assert_eq!(r.message[0], 1, "{c:?} request");
        let mut call = ch.call("/z.S/Unary", opts(None, Some(c), 0)).await.unwrap();
        call.send_last(payload()).await.unwrap();
        let m = call.recv_message().await.unwrap().unwrap();
        assert!(m.compressed && m.data[0] == 0, "{c:?} response only");
    }
    // Identity and no compression: nothing compressed.
    for send in [None, Some(Compression::Identity)] {
        let mut call = ch.call("/z.S/Unary", opts(send, Some(Compression::Identity), 0)).await.unwrap();
        call.send_last(payload()).await.unwrap();
        let m = call.recv_message().await.unwrap().unwrap();
        assert!(!m.compressed && m.data[0] == 0);
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn channel_default_and_server_default_compression() {
    let (server, addr) =
        serve(ServerOptions { default_compression: Some(Compression::Zstd), ..Default::default() }).await;
    let ch = grpc_core::Channel::new(
        &addr,
        grpc_core::ChannelOptions { default_compression: Some(Compression::Deflate), ..Default::default() },
    )
    .unwrap();
    let mut call = ch.call("/z.S/Unary", CallOptions::default()).await.unwrap();
    call.send_last(payload()).await.unwrap();
    let m = bounded("reply", call.recv_message()).await.unwrap().unwrap();
    assert!(m.compressed, "the server's default compression applies");
    assert_eq!(m.data[0], 1, "the channel's default compression applies");
    // A call can turn the channel default off.
    let r = ch.unary("/z.S/Unary", payload(), opts(Some(Compression::Identity), None, 0)).await.unwrap();
    assert_eq!(r.message[0], 0);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn per_message_opt_out() {
    let (server, addr) = serve(ServerOptions::default()).await;
    let ch = channel(&addr);
    let mut call = ch.call("/z.S/Echo", opts(Some(Compression::Gzip), Some(Compression::Gzip), 2)).await.unwrap();
    for i in 0..6 {
        let compress = i % 3 != 1;
        call.send_with(payload(), compress, false).await.unwrap();
        let m = bounded("reply", call.recv_message()).await.unwrap().unwrap();
        assert_eq!(m.data[0] == 1, compress, "message {i}: the server saw compressed={}", m.data[0]);
        assert_eq!(m.compressed, i % 2 != 0, "reply {i}: the server opts out of every second one");
        assert_eq!(&m.data[1..], &payload()[..]);
    }
    call.close_send().await.unwrap();
    assert!(bounded("finish", call.finish()).await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_only_uses_encodings_the_client_accepts() {
    let (server, addr) = serve(ServerOptions::default()).await;
    let (dserver, daddr) =
        serve(ServerOptions { default_compression: Some(Compression::Gzip), ..Default::default() }).await;
    for (addr, respond_with) in [(&addr, Some("gzip")), (&daddr, None)] {
        let raw = raw_connect(addr).await;
        for (accept, expect) in [
            (Some("identity"), None),
            (None, None),
            (Some("deflate, zstd"), None),
            (Some("identity,gzip"), Some("gzip")),
        ] {
            let mut req = grpc_request("/z.S/Unary");
            if let Some(a) = accept {
                req = req.header("grpc-accept-encoding", a);
            }
            if let Some(r) = respond_with {
                req = req.header("x-respond-with", r);
            }
            let r = bounded("raw call", raw_call(&raw, req.body(()).unwrap(), vec![frame(0, b"hello")], true))
                .await
                .unwrap();
            assert_eq!(r.grpc_status(), Some(0), "{r:?}");
            let frames = r.frames();
            assert_eq!(frames.len(), 1);
            match expect {
                None => {
                    assert!(
                        matches!(r.header("grpc-encoding").as_deref(), None | Some("identity")),
                        "accept {accept:?}: got grpc-encoding {:?}",
                        r.header("grpc-encoding")
                    );
                    assert_eq!(frames[0].0, 0, "accept {accept:?}: a compressed frame");
                    assert_eq!(&frames[0].1[..], b"\x00hello");
                }
                Some(enc) => {
                    assert_eq!(r.header("grpc-encoding").as_deref(), Some(enc));
                    assert_eq!(frames[0].0, 1);
                }
            }
        }
    }
    server.shutdown(Duration::from_secs(1)).await;
    dserver.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn unknown_encoding_is_unimplemented_with_supported_list() {
    let (server, addr) = serve(ServerOptions::default()).await;
    let raw = raw_connect(&addr).await;
    let req = grpc_request("/z.S/Unary").header("grpc-encoding", "snappy").body(()).unwrap();
    let r = bounded("raw call", raw_call(&raw, req, vec![frame(1, b"whatever")], true)).await.unwrap();
    assert_eq!(r.grpc_status(), Some(Code::Unimplemented as i32), "{r:?}");
    let msg = r.grpc_message();
    assert!(msg.contains("\"snappy\""), "{msg}");
    for name in ["identity", "gzip", "deflate", "zstd"] {
        assert!(msg.contains(name), "the message lists {name}: {msg}");
    }
    let accept: BTreeSet<String> = r
        .status_headers()
        .get("grpc-accept-encoding")
        .expect("grpc-accept-encoding on the error")
        .to_str()
        .unwrap()
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let want: BTreeSet<String> = ["identity", "gzip", "deflate", "zstd"].iter().map(|s| s.to_string()).collect();
    assert_eq!(accept, want);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn corrupt_compressed_message_is_internal() {
    let (server, addr) = serve(ServerOptions::default()).await;
    let raw = raw_connect(&addr).await;
    let req = grpc_request("/z.S/Unary").header("grpc-encoding", "gzip").body(()).unwrap();
    let r = bounded("raw call", raw_call(&raw, req, vec![frame(1, b"not gzip at all")], true)).await.unwrap();
    assert_eq!(r.grpc_status(), Some(Code::Internal as i32), "{r:?}");
    server.shutdown(Duration::from_secs(1)).await;
}
