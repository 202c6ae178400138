//! Server keepalive enforcement: a client pinging faster than the server's
//! minimum ping interval is sent GOAWAY ENHANCE_YOUR_CALM (too_many_pings),
//! and one within the policy keeps its connection.

use std::time::Duration;

use bytes::Bytes;
use grpc_core::{CallOptions, Channel, ChannelOptions, Code, MethodKind, Server, ServerCall, ServerOptions, Status};

async fn slow(mut call: ServerCall) -> Status {
    let _ = call.recv().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let _ = call.send(Bytes::from_static(b"done")).await;
    Status::ok()
}

async fn serve(min_time: Duration) -> (Server, String) {
    let opts = ServerOptions { keepalive_min_time: min_time, ..Default::default() };
    let server = Server::builder(opts).register("/k.S/Slow", MethodKind::Unary, slow).unwrap().build().unwrap();
    let addr = server.bind("127.0.0.1:0").await.unwrap();
    server.start();
    (server, addr.to_string())
}

fn pinging_client(addr: &str) -> Channel {
    let opts = ChannelOptions {
        keepalive_time: Some(Duration::from_millis(50)),
        keepalive_permit_without_calls: true,
        ..Default::default()
    };
    Channel::new(addr, opts).unwrap()
}

#[tokio::test]
async fn too_many_pings_gets_goaway() {
    let (server, addr) = serve(Duration::from_secs(300)).await;
    let ch = pinging_client(&addr);
    let err = ch.unary("/k.S/Slow", Bytes::from_static(b"x"), CallOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    // The same call succeeds under a lenient policy (the test below), so the
    // failure is the server enforcing its ping policy.
    server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn pings_within_policy_are_fine() {
    let (server, addr) = serve(Duration::from_millis(10)).await;
    let ch = pinging_client(&addr);
    let r = ch.unary("/k.S/Slow", Bytes::from_static(b"x"), CallOptions::default()).await.unwrap();
    assert_eq!(r.message, "done");
    server.shutdown(Duration::from_secs(1)).await;
}
