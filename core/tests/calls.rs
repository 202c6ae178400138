//! Call kinds end to end against an in-process server: unary, client and
//! server streaming, interleaved bidi, empty, many and large messages, flow
//! control under a slow reader, and split halves used from two tasks.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::server::ServerBuilder;
use grpc_core::{CallOptions, Channel, ChannelOptions, Code, MethodKind, Server, ServerCall, ServerOptions, Status};

const MIB: usize = 1024 * 1024;

/// Client streaming: replies "<count>:<concatenation>".
async fn collect(mut call: ServerCall) -> Status {
    let mut n = 0;
    let mut all = Vec::new();
    loop {
        match call.recv().await {
            Ok(Some(m)) => {
                n += 1;
                all.extend_from_slice(&m);
            }
            Ok(None) => break,
            Err(s) => return s,
        }
    }
    let mut reply = format!("{n}:").into_bytes();
    reply.extend_from_slice(&all);
    match call.send(Bytes::from(reply)).await {
        Ok(()) => Status::ok(),
        Err(s) => s,
    }
}

/// Server streaming: the request is "<count> <size>"; replies `count`
/// messages of `size` bytes, message i filled with byte i.
async fn fan_out(mut call: ServerCall) -> Status {
    let req = match call.recv().await {
        Ok(Some(m)) => String::from_utf8(m.to_vec()).unwrap(),
        Ok(None) => return Status::internal("no request"),
        Err(s) => return s,
    };
    let mut it = req.split(' ').map(|x| x.parse::<usize>().unwrap());
    let (count, size) = (it.next().unwrap(), it.next().unwrap());
    for i in 0..count {
        if let Err(s) = call.send(Bytes::from(vec![i as u8; size])).await {
            return s;
        }
    }
    Status::ok()
}

/// Bidi that ends early: reads one request, sends three replies, returns OK
/// while the client may still be sending.
async fn early_end(mut call: ServerCall) -> Status {
    if let Err(s) = call.recv().await {
        return s;
    }
    for i in 0..3 {
        if let Err(s) = call.send(Bytes::from(format!("r{i}"))).await {
            return s;
        }
    }
    Status::ok()
}

fn builder(opts: ServerOptions) -> ServerBuilder {
    Server::builder(opts)
        .register("/t.S/Unary", MethodKind::Unary, echo)
        .unwrap()
        .register("/t.S/Collect", MethodKind::ClientStreaming, collect)
        .unwrap()
        .register("/t.S/FanOut", MethodKind::ServerStreaming, fan_out)
        .unwrap()
        .register("/t.S/Bidi", MethodKind::BidiStreaming, echo)
        .unwrap()
        .register("/t.S/EarlyEnd", MethodKind::BidiStreaming, early_end)
        .unwrap()
}

async fn serve() -> (Server, Channel) {
    let (server, addr) = start(builder(ServerOptions::default())).await;
    (server, channel(&addr))
}

#[tokio::test]
async fn unary() {
    let (server, ch) = serve().await;
    let r =
        bounded("unary", ch.unary("/t.S/Unary", Bytes::from_static(b"hello"), CallOptions::default())).await.unwrap();
    assert_eq!(r.message, "hello");
    // The same call through the general API ends with OK and no more messages.
    let mut c = ch.call("/t.S/Unary", CallOptions::default()).await.unwrap();
    c.send_last(Bytes::from_static(b"again")).await.unwrap();
    assert_eq!(bounded("recv", c.recv()).await.unwrap().unwrap(), "again");
    assert_eq!(c.recv().await.unwrap(), None);
    assert_eq!(c.status().unwrap().code(), Code::Ok);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn client_streaming() {
    let (server, ch) = serve().await;
    let mut c = ch.call("/t.S/Collect", CallOptions::default()).await.unwrap();
    for i in 0..10 {
        c.send(Bytes::from(format!("m{i},"))).await.unwrap();
    }
    c.close_send().await.unwrap();
    let r = bounded("client streaming", c.recv_unary()).await.unwrap();
    assert_eq!(r.message, "10:m0,m1,m2,m3,m4,m5,m6,m7,m8,m9,");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_streaming() {
    let (server, ch) = serve().await;
    let mut c = ch.call("/t.S/FanOut", CallOptions::default()).await.unwrap();
    c.send_last(Bytes::from_static(b"5 3")).await.unwrap();
    for i in 0..5u8 {
        assert_eq!(bounded("recv", c.recv()).await.unwrap().unwrap(), vec![i; 3]);
    }
    assert_eq!(c.recv().await.unwrap(), None);
    assert!(c.finish().await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn bidi_interleaved() {
    let (server, ch) = serve().await;
    let mut c = ch.call("/t.S/Bidi", CallOptions::default()).await.unwrap();
    // Lock-step: each reply must arrive before the next request is sent, so
    // a server that buffered until half-close would hang (and time out).
    for i in 0..50 {
        c.send(Bytes::from(format!("ping {i}"))).await.unwrap();
        let got = bounded("interleaved reply", c.recv()).await.unwrap().unwrap();
        assert_eq!(got, format!("ping {i}"));
    }
    c.close_send().await.unwrap();
    assert_eq!(bounded("end", c.recv()).await.unwrap(), None);
    assert!(c.finish().await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn empty_messages() {
    let (server, ch) = serve().await;
    let r = ch.unary("/t.S/Unary", Bytes::new(), CallOptions::default()).await.unwrap();
    assert!(r.message.is_empty());

    let mut c = ch.call("/t.S/Bidi", CallOptions::default()).await.unwrap();
    for _ in 0..3 {
        c.send(Bytes::new()).await.unwrap();
        assert_eq!(bounded("empty reply", c.recv()).await.unwrap().unwrap(), Bytes::new());
    }
    c.close_send().await.unwrap();
    assert_eq!(c.recv().await.unwrap(), None);

    let mut c = ch.call("/t.S/FanOut", CallOptions::default()).await.unwrap();
    c.send_last(Bytes::from_static(b"4 0")).await.unwrap();
    for _ in 0..4 {
        assert_eq!(bounded("empty stream message", c.recv()).await.unwrap().unwrap(), Bytes::new());
    }
    assert_eq!(c.recv().await.unwrap(), None);

    let mut c = ch.call("/t.S/Collect", CallOptions::default()).await.unwrap();
    c.close_send().await.unwrap();
    assert_eq!(bounded("zero requests", c.recv_unary()).await.unwrap().message, "0:");
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn many_messages() {
    const N: usize = 10_000;
    let (server, ch) = serve().await;
    let c = ch.call("/t.S/Bidi", CallOptions::default()).await.unwrap();
    let (mut tx, mut rx) = c.split();
    let sender = tokio::spawn(async move {
        for i in 0..N {
            tx.send(Bytes::from(i.to_string())).await.unwrap();
        }
        tx.close_send().await.unwrap();
    });
    let received = bounded("10k echoes", async {
        let mut i = 0;
        while let Some(m) = rx.recv().await.unwrap() {
            assert_eq!(m, i.to_string());
            i += 1;
        }
        i
    })
    .await;
    assert_eq!(received, N);
    sender.await.unwrap();
    assert!(rx.finish().await.is_ok());

    let mut c = ch.call("/t.S/FanOut", CallOptions::default()).await.unwrap();
    c.send_last(Bytes::from(format!("{N} 1"))).await.unwrap();
    let mut n = 0;
    while let Some(m) = bounded("fan out", c.recv()).await.unwrap() {
        assert_eq!(m[0], n as u8);
        n += 1;
    }
    assert_eq!(n, N);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn large_messages_with_raised_limits() {
    let opts = ServerOptions { max_recv_message_size: 16 * MIB, ..Default::default() };
    let (server, addr) = start(builder(opts)).await;
    let ch = Channel::new(&addr, ChannelOptions { max_recv_message_size: 16 * MIB, ..Default::default() }).unwrap();
    let big: Bytes = (0..8 * MIB).map(|i| (i % 251) as u8).collect::<Vec<u8>>().into();
    let r = bounded("8 MiB unary", ch.unary("/t.S/Unary", big.clone(), CallOptions::default())).await.unwrap();
    assert_eq!(r.message.len(), 8 * MIB);
    assert!(r.message == big, "8 MiB echo differs");

    // Both ways on one bidi stream, twice.
    let mut c = ch.call("/t.S/Bidi", CallOptions::default()).await.unwrap();
    for _ in 0..2 {
        c.send(big.clone()).await.unwrap();
        let m = bounded("8 MiB bidi", c.recv()).await.unwrap().unwrap();
        assert!(m == big, "8 MiB bidi echo differs");
    }
    c.close_send().await.unwrap();
    assert!(bounded("finish", c.finish()).await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_slow_reader() {
    // 50 MiB streamed to a client that reads slowly and pauses: the server's
    // sends wait for window instead of failing or buffering without bound,
    // and other calls on the same connection keep working meanwhile.
    let (server, ch) = serve().await;
    let mut c = ch.call("/t.S/FanOut", CallOptions::default()).await.unwrap();
    c.send_last(Bytes::from(format!("50 {MIB}"))).await.unwrap();
    let mut total = 0usize;
    let mut i = 0usize;
    bounded("50 MiB to a slow reader", async {
        while let Some(m) = c.recv().await.unwrap() {
            assert_eq!(m.len(), MIB);
            assert!(m.iter().all(|b| *b == i as u8), "message {i} corrupted");
            total += m.len();
            i += 1;
            if i == 2 {
                // A long pause with the stream window full.
                tokio::time::sleep(Duration::from_millis(500)).await;
                let r =
                    bounded("unary while a stream is stalled", ch.unary("/t.S/Unary", "x".into(), Default::default()))
                        .await
                        .unwrap();
                assert_eq!(r.message, "x");
            } else {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    })
    .await;
    assert_eq!(total, 50 * MIB);
    assert!(c.finish().await.is_ok());
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn split_halves_from_two_tasks() {
    let (server, ch) = serve().await;
    let c = ch.call("/t.S/Bidi", CallOptions::default()).await.unwrap();
    let (mut tx, mut rx) = c.split();
    let sender = tokio::spawn(async move {
        for i in 0..200 {
            tx.send(Bytes::from(format!("s{i}"))).await.unwrap();
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        tx.close_send().await.unwrap();
        tx
    });
    let receiver = tokio::spawn(async move {
        let mut got = Vec::new();
        while let Some(m) = rx.recv().await.unwrap() {
            got.push(String::from_utf8(m.to_vec()).unwrap());
        }
        (got, rx.status().cloned())
    });
    let (got, status) = bounded("receiver task", receiver).await.unwrap();
    bounded("sender task", sender).await.unwrap();
    assert_eq!(got, (0..200).map(|i| format!("s{i}")).collect::<Vec<_>>());
    assert_eq!(status.unwrap().code(), Code::Ok);
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_ends_before_client_half_closes() {
    // The server finishes (trailers, then RST_STREAM(NO_ERROR)) while the
    // client has not half-closed: closing the send side afterwards is not an
    // error, and every reply and the OK status are still delivered.
    let (server, ch) = serve().await;
    for _ in 0..20 {
        let mut c = ch.call("/t.S/EarlyEnd", CallOptions::default()).await.unwrap();
        c.send(Bytes::from_static(b"a")).await.unwrap();
        assert_eq!(bounded("first reply", c.recv()).await.unwrap().unwrap(), "r0");
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.close_send().await.expect("half-close after the server finished");
        assert_eq!(c.recv().await.unwrap().unwrap(), "r1");
        assert_eq!(c.recv().await.unwrap().unwrap(), "r2");
        assert_eq!(c.recv().await.unwrap(), None);
        assert_eq!(c.status().unwrap().code(), Code::Ok);
    }
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn send_after_server_finished_keeps_replies() {
    // A send that fails because the server already ended the call must not
    // swallow the replies the server sent before its OK status.
    let (server, ch) = serve().await;
    let mut c = ch.call("/t.S/EarlyEnd", CallOptions::default()).await.unwrap();
    c.send(Bytes::from_static(b"a")).await.unwrap();
    assert_eq!(bounded("first reply", c.recv()).await.unwrap().unwrap(), "r0");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(c.send(Bytes::from_static(b"b")).await.is_err(), "the call is over");
    assert_eq!(bounded("second reply", c.recv()).await.unwrap().unwrap(), "r1");
    assert_eq!(c.recv().await.unwrap().unwrap(), "r2");
    assert_eq!(c.recv().await.unwrap(), None);
    assert_eq!(c.status().unwrap().code(), Code::Ok);
    server.shutdown(Duration::from_secs(1)).await;
}
