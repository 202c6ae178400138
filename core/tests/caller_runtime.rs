//! `ChannelOptions::runtime`: a channel on a `current_thread` runtime that
//! the calling thread drives with `block_on` (the connection's I/O then runs
//! on the caller's thread) makes unary and streaming calls, also from
//! several threads at once, and keeps working across calls with no thread
//! inside the runtime in between. `ServerOptions::runtime`: a server whose
//! connections and handlers run on such a runtime, on the thread inside it.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use grpc_core::{CallOptions, Channel, ChannelOptions, Code, MethodKind, Server, ServerOptions};

fn serve() -> (Server, String) {
    let s = Server::builder(ServerOptions::default())
        .register("/rt.S/Echo", MethodKind::Unary, echo)
        .unwrap()
        .register("/rt.S/Stream", MethodKind::BidiStreaming, echo)
        .unwrap()
        .build()
        .unwrap();
    // The server runs on the engine's own runtime.
    let addr = grpc_core::surface::block_on({
        let s = s.clone();
        async move { s.bind("127.0.0.1:0").await.unwrap() }
    });
    s.start();
    (s, addr.to_string())
}

fn caller_runtime() -> Arc<tokio::runtime::Runtime> {
    Arc::new(tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap())
}

#[test]
fn unary_and_streaming_calls_on_a_runtime_the_caller_drives() {
    let (server, addr) = serve();
    let rt = caller_runtime();
    let ch = {
        let _g = rt.enter();
        Channel::new(&addr, ChannelOptions { runtime: Some(rt.handle().clone()), ..Default::default() }).unwrap()
    };
    for i in 0..50u32 {
        let msg = Bytes::from(i.to_string());
        let r = rt.block_on(bounded("unary", ch.unary("/rt.S/Echo", msg.clone(), CallOptions::default()))).unwrap();
        assert_eq!(r.message, msg);
    }
    let got = rt.block_on(bounded("stream", async {
        let mut call = ch.call("/rt.S/Stream", CallOptions::default()).await.unwrap();
        let mut got = Vec::new();
        for i in 0..10u32 {
            call.send(Bytes::from(i.to_string())).await.unwrap();
            got.push(call.recv().await.unwrap().unwrap());
        }
        call.close_send().await.unwrap();
        assert_eq!(call.recv().await.unwrap(), None);
        assert_eq!(call.finish().await.code(), Code::Ok);
        got
    }));
    assert_eq!(got.len(), 10);

    // Several threads block_on the same runtime: one drives, the others are woken.
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (rt, ch) = (rt.clone(), ch.clone());
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    let msg = Bytes::from(format!("{t}:{i}"));
                    let r = rt
                        .block_on(bounded("unary", ch.unary("/rt.S/Echo", msg.clone(), CallOptions::default())))
                        .unwrap();
                    assert_eq!(r.message, msg);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    ch.close();
    drop(ch);
    grpc_core::surface::block_on(async move { server.shutdown(std::time::Duration::ZERO).await });
}

#[test]
fn a_server_runs_on_the_runtime_its_options_name() {
    let rt = caller_runtime();
    let handler_threads = Arc::new(std::sync::Mutex::new(std::collections::HashSet::new()));
    let seen = handler_threads.clone();
    let record = move |call: grpc_core::ServerCall| {
        seen.lock().unwrap().insert(std::thread::current().id());
        echo(call)
    };
    let server = Server::builder(ServerOptions { runtime: Some(rt.handle().clone()), ..Default::default() })
        .register("/rt.S/Echo", MethodKind::Unary, record.clone())
        .unwrap()
        .register("/rt.S/Stream", MethodKind::BidiStreaming, record)
        .unwrap()
        .build()
        .unwrap();
    // Bound from the engine's runtime: the listener still belongs to `rt`.
    let addr = grpc_core::surface::block_on({
        let s = server.clone();
        async move { s.bind("127.0.0.1:0").await.unwrap() }
    });
    server.start();

    // This thread drives the server's runtime until the client is done.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let client = std::thread::spawn(move || {
        let ch = Channel::new(&addr.to_string(), ChannelOptions::default()).unwrap();
        grpc_core::surface::block_on(bounded("calls", async move {
            for i in 0..20u32 {
                let msg = Bytes::from(i.to_string());
                assert_eq!(ch.unary("/rt.S/Echo", msg.clone(), CallOptions::default()).await.unwrap().message, msg);
            }
            let mut call = ch.call("/rt.S/Stream", CallOptions::default()).await.unwrap();
            for i in 0..10u32 {
                call.send(Bytes::from(i.to_string())).await.unwrap();
                assert_eq!(call.recv().await.unwrap().unwrap(), Bytes::from(i.to_string()));
            }
            call.close_send().await.unwrap();
            assert_eq!(call.recv().await.unwrap(), None);
            assert_eq!(call.finish().await.code(), Code::Ok);
        }));
        let _ = done_tx.send(());
    });
    rt.block_on(bounded("client", done_rx)).unwrap();
    client.join().unwrap();
    // Every handler ran here, on the thread inside the server's runtime.
    let threads = handler_threads.lock().unwrap().clone();
    assert_eq!(threads, [std::thread::current().id()].into_iter().collect());

    // Shutdown closes the connections, which live on `rt`: it completes
    // with this thread driving them.
    let s = server.clone();
    rt.block_on(bounded("shutdown", async move { s.shutdown(std::time::Duration::ZERO).await }));
}
