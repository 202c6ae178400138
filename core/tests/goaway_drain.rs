//! A call in flight when the server starts a graceful shutdown finishes OK,
//! even when the client tries new calls on the draining connection.

use std::time::Duration;

use bytes::Bytes;
use grpc_core::{CallOptions, Channel, ChannelOptions, MethodKind, Server, ServerCall, ServerOptions, Status};

async fn slow(mut call: ServerCall) -> Status {
    let m = call.recv().await.ok().flatten().unwrap_or_default();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let _ = call.send(m).await;
    Status::ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_call_survives_goaway_and_new_calls() {
    let server = Server::builder(ServerOptions::default())
        .register("/g.S/Slow", MethodKind::Unary, slow)
        .unwrap()
        .build()
        .unwrap();
    let addr = server.bind("127.0.0.1:0").await.unwrap();
    server.start();
    let ch = Channel::new(&addr.to_string(), ChannelOptions::default()).unwrap();
    ch.ready(None).await.unwrap();
    let c2 = ch.clone();
    let in_flight =
        tokio::spawn(async move { c2.unary("/g.S/Slow", Bytes::from_static(b"a"), CallOptions::default()).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let s2 = server.clone();
    let shutdown = tokio::spawn(async move { s2.shutdown(Duration::from_secs(10)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A new call during the drain must not take the in-flight one down with it.
    let late = ch.unary("/g.S/Slow", Bytes::from_static(b"b"), CallOptions::default()).await;
    assert!(late.is_err(), "the server no longer accepts calls");
    let r = in_flight.await.unwrap().expect("in-flight call completes during graceful shutdown");
    assert_eq!(r.message, "a");
    shutdown.await.unwrap();
}
