//! Smoke: all four call kinds against an in-process server.

use bytes::Bytes;
use grpc_core::{CallOptions, Channel, ChannelOptions, Code, MethodKind, Server, ServerCall, ServerOptions, Status};

async fn echo(mut call: ServerCall) -> Status {
    while let Ok(Some(m)) = call.recv().await {
        if call.send(m).await.is_err() {
            break;
        }
    }
    Status::ok()
}

#[tokio::test]
async fn four_kinds() {
    let server = Server::builder(ServerOptions::default())
        .register("/t.S/Unary", MethodKind::Unary, echo)
        .unwrap()
        .register("/t.S/Bidi", MethodKind::BidiStreaming, echo)
        .unwrap()
        .build()
        .unwrap();
    let addr = server.bind("127.0.0.1:0").await.unwrap();
    server.start();
    let ch = Channel::new(&addr.to_string(), ChannelOptions::default()).unwrap();
    let r = ch.unary("/t.S/Unary", Bytes::from_static(b"hi"), CallOptions::default()).await.unwrap();
    assert_eq!(r.message, "hi");
    let mut c = ch.call("/t.S/Bidi", CallOptions::default()).await.unwrap();
    for i in 0..3 {
        c.send(Bytes::from(format!("m{i}"))).await.unwrap();
        assert_eq!(c.recv().await.unwrap().unwrap(), format!("m{i}"));
    }
    c.close_send().await.unwrap();
    assert_eq!(c.recv().await.unwrap(), None);
    assert!(c.finish().await.is_ok());
    let e = ch.unary("/t.S/Nope", Bytes::new(), CallOptions::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unimplemented);
    assert_eq!(e.message(), "unknown method Nope for service t.S");
    server.shutdown(std::time::Duration::from_secs(1)).await;
}
