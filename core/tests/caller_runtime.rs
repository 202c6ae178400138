//! `ChannelOptions::runtime`: a channel on a `current_thread` runtime that
//! the calling thread drives with `block_on` (the connection's I/O then runs
//! on the caller's thread) makes unary and streaming calls, also from
//! several threads at once, and keeps working across calls with no thread
//! inside the runtime in between.

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
