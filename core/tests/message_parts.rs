//! Messages sent as segments (`ServerCall::send_parts`, `typed::encode_parts`):
//! what the client receives is the segments concatenated, in order, with the
//! call's compression and send limit applied as for one buffer.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::server::ServerBuilder;
use grpc_core::{
    CallOptions, Channel, ChannelOptions, Code, Compression, MessageParts, Metadata, MethodKind, Server, ServerCall,
    ServerOptions, Status,
};

/// Segment `i` of the sizes list is `size` bytes of value `i + 1`.
fn parts_of(sizes: &[usize]) -> MessageParts {
    let mut p = MessageParts::new();
    for (i, &n) in sizes.iter().enumerate() {
        p.push(Bytes::from(vec![i as u8 + 1; n]));
    }
    p
}

fn joined(sizes: &[usize]) -> Vec<u8> {
    sizes.iter().enumerate().flat_map(|(i, &n)| std::iter::repeat(i as u8 + 1).take(n)).collect()
}

fn parse(b: &[u8]) -> Vec<usize> {
    std::str::from_utf8(b).unwrap().split(',').filter(|s| !s.is_empty()).map(|s| s.parse().unwrap()).collect()
}

/// Request "n,n,...": replies with those segments via `send_parts`;
/// metadata `x-gzip` compresses the reply.
async fn parts(mut call: ServerCall) -> Status {
    if call.metadata().get("x-gzip").is_some() {
        call.set_compression(Compression::Gzip);
    }
    let sizes = parse(&call.recv().await.unwrap().unwrap());
    match call.send_parts(parts_of(&sizes)).await {
        Ok(()) => Status::ok(),
        Err(s) => s,
    }
}

/// Each request "n,n,..." is answered with that message in parts, then a
/// small plain message "ok", so parts and whole sends interleave.
async fn bidi(mut call: ServerCall) -> Status {
    while let Some(m) = call.recv().await.unwrap() {
        if let Err(s) = call.send_parts(parts_of(&parse(&m))).await {
            return s;
        }
        if let Err(s) = call.send(Bytes::from_static(b"ok")).await {
            return s;
        }
    }
    Status::ok()
}

fn builder(opts: ServerOptions) -> ServerBuilder {
    Server::builder(opts)
        .register("/p.S/Parts", MethodKind::Unary, parts)
        .unwrap()
        .register("/p.S/Bidi", MethodKind::BidiStreaming, bidi)
        .unwrap()
}

const CASES: &[&[usize]] =
    &[&[5, 100_000, 7, 200_000, 3], &[300_000], &[17_000, 17_000], &[10, 20, 30], &[], &[2, 5 * 1024 * 1024]];

#[tokio::test]
async fn segments_arrive_joined_in_order() {
    let (server, addr) = start(builder(ServerOptions::default())).await;
    let ch = Channel::new(&addr, ChannelOptions { max_recv_message_size: 8 << 20, ..Default::default() }).unwrap();
    for gzip in [false, true] {
        for sizes in CASES {
            let spec = sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
            let mut md = Metadata::new();
            if gzip {
                md.insert("x-gzip", "1").unwrap();
            }
            let opts = CallOptions { metadata: md, ..Default::default() };
            let r = bounded("parts", ch.unary("/p.S/Parts", Bytes::from(spec.clone()), opts)).await;
            let r = r.unwrap_or_else(|e| panic!("{spec} gzip={gzip}: {e}"));
            assert!(r.message == joined(sizes), "{spec} gzip={gzip}: {} bytes back", r.message.len());
        }
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn parts_and_whole_messages_keep_their_order_on_a_stream() {
    let (server, addr) = start(builder(ServerOptions::default())).await;
    let ch = channel(&addr);
    let mut c = ch.call("/p.S/Bidi", CallOptions::default()).await.unwrap();
    for sizes in [&[3, 70_000, 4][..], &[40_000, 40_000], &[1]] {
        let spec = sizes.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",");
        c.send(Bytes::from(spec)).await.unwrap();
        assert_eq!(bounded("parts", c.recv()).await.unwrap().unwrap(), joined(sizes));
        assert_eq!(bounded("ok", c.recv()).await.unwrap().unwrap(), Bytes::from_static(b"ok"));
    }
    c.close_send().await.unwrap();
    assert_eq!(bounded("end", c.recv()).await.unwrap(), None);
    assert!(c.finish().await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_send_limit_applies_to_the_whole_message() {
    let opts = ServerOptions { max_send_message_size: 100_000, ..Default::default() };
    let (server, addr) = start(builder(opts)).await;
    let ch = channel(&addr);
    let err = bounded("too big", ch.unary("/p.S/Parts", Bytes::from_static(b"10,60000,50000"), Default::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err}");
    assert_eq!(err.message(), "grpc: trying to send message larger than max (110010 vs. 100000)");
    // Exactly at the limit it goes through.
    let r = bounded("at limit", ch.unary("/p.S/Parts", Bytes::from_static(b"40000,60000"), Default::default()));
    assert_eq!(r.await.unwrap().message, joined(&[40_000, 60_000]));
    server.shutdown(Duration::from_secs(1)).await;
}

#[derive(Clone, PartialEq, prost::Message)]
struct Blob {
    #[prost(string, tag = "1")]
    name: String,
    #[prost(bytes = "bytes", tag = "2")]
    data: Bytes,
    #[prost(uint32, tag = "3")]
    n: u32,
    #[prost(bytes = "vec", tag = "4")]
    vec: Vec<u8>,
}

/// `typed::unary_handler` replies with `encode_parts`: a large received
/// `Bytes` field echoed back goes out by reference and arrives intact.
#[tokio::test]
async fn typed_unary_handler_echoes_large_fields() {
    let b = Server::builder(ServerOptions::default())
        .register(
            "/p.S/Blob",
            MethodKind::Unary,
            grpc_core::typed::unary_handler(|b: Blob, _md| async move { Ok(Blob { n: b.n + 1, ..b }) }),
        )
        .unwrap();
    let (server, addr) = start(b).await;
    let ch = channel(&addr);
    for (size, vec) in [(0, 0), (10, 10), (1 << 20, 0), (300_000, 70_000)] {
        let req = Blob { name: "x".repeat(size % 97), data: Bytes::from(vec![9u8; size]), n: 41, vec: vec![3; vec] };
        let resp: Blob =
            bounded("typed", grpc_core::typed::unary(&ch, "/p.S/Blob", &req, Default::default())).await.unwrap();
        assert_eq!(resp, Blob { n: 42, ..req });
    }
    server.shutdown(Duration::from_secs(1)).await;
}
