//! Engine logs reach a callback sink, filtered by level, and stop when cleared.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::logging::{clear_log_sink, set_log_sink, LogLevel, LogRecord};
use grpc_core::{
    CallOptions, Channel, ChannelOptions, ConnectivityState, MethodKind, Server, ServerCall, ServerOptions, Status,
};

async fn fail_to_connect() {
    let ch = Channel::new(&format!("127.0.0.1:{}", dead_port()), ChannelOptions::default()).unwrap();
    ch.connect();
    bounded("transient failure", async {
        while ch.state() != ConnectivityState::TransientFailure {
            ch.wait_for_state_change(ch.state(), None).await;
        }
    })
    .await;
}

#[tokio::test]
async fn records_reach_the_sink_by_level_until_cleared() {
    let got: Arc<Mutex<Vec<LogRecord>>> = Default::default();
    let g = got.clone();
    set_log_sink(LogLevel::Debug, Arc::new(move |r: &LogRecord| g.lock().unwrap().push(r.clone()))).unwrap();
    fail_to_connect().await;
    let connect = got.lock().unwrap().iter().find(|r| r.message.starts_with("connect failed")).cloned();
    let connect = connect.unwrap_or_else(|| panic!("no 'connect failed' record in {:?}", got.lock().unwrap()));
    assert_eq!(connect.level, LogLevel::Debug);
    assert!(connect.target.starts_with("grpc_core::client::"), "{connect:?}");
    assert!(connect.fields.iter().any(|(k, v)| k == "error" && !v.is_empty()), "{connect:?}");

    // Warn and above only: the debug record no longer comes, the handler panic (ERROR) does.
    got.lock().unwrap().clear();
    set_log_sink(LogLevel::Warn, {
        let g = got.clone();
        Arc::new(move |r: &LogRecord| g.lock().unwrap().push(r.clone()))
    })
    .unwrap();
    fail_to_connect().await;
    let (server, addr) = start(
        Server::builder(ServerOptions::default())
            .register("/l.S/Panic", MethodKind::Unary, |_c: ServerCall| async {
                if true {
                    panic!("boom in handler");
                }
                Status::ok()
            })
            .unwrap(),
    )
    .await;
    let err = bounded("panic call", channel(&addr).unary("/l.S/Panic", Bytes::new(), CallOptions::default()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), grpc_core::Code::Internal);
    {
        let got = got.lock().unwrap();
        assert!(got.iter().all(|r| r.level <= LogLevel::Warn), "{got:?}");
        let p = got.iter().find(|r| r.message.contains("handler panicked")).expect("the panic is logged");
        assert_eq!(p.level, LogLevel::Error);
        assert!(p.message.contains("boom in handler"), "{p:?}");
    }

    // A sink that panics does not break the engine.
    set_log_sink(LogLevel::Debug, Arc::new(|_r: &LogRecord| panic!("sink panic"))).unwrap();
    fail_to_connect().await;

    // Cleared: nothing more arrives.
    got.lock().unwrap().clear();
    clear_log_sink();
    fail_to_connect().await;
    assert!(got.lock().unwrap().is_empty());
    server.shutdown(Duration::from_secs(1)).await;
}
