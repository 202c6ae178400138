//! The binding path: `surface::dispatch` hands calls to plain OS threads,
//! which drive receive and send halves concurrently and finish the call.

use std::sync::mpsc;
use std::time::Duration;

use bytes::Bytes;
use grpc_core::surface::{self, block_on, IncomingCall};
use grpc_core::{CallOptions, Channel, ChannelOptions, Code, Metadata, Server, ServerOptions, Status};

fn serve_threads(rx: mpsc::Receiver<IncomingCall>) {
    std::thread::spawn(move || {
        for mut call in rx {
            std::thread::spawn(move || {
                let method = call.info().method().to_string();
                let mut receiver = call.take_receiver().unwrap();
                let mut sender = call.take_sender().unwrap();
                if method.ends_with("/Drop") {
                    drop(call);
                    return;
                }
                if method.ends_with("/Reply") {
                    // The fused reply: message and trailers from the sender, no handler hop.
                    let req = block_on(async move { receiver.recv().await }).unwrap().unwrap();
                    let mut t = Metadata::new();
                    t.insert("x-fused", "yes").unwrap();
                    let st = Status::ok().with_metadata(t);
                    let (r, sender) = block_on(async move {
                        let r = sender.send_and_finish(req, &st).await;
                        (r, sender)
                    });
                    r.unwrap();
                    assert!(sender.is_cancelled(), "the call is over for the sender");
                    // The status given to the handler afterwards changes nothing.
                    call.finish(Status::internal("too late"));
                    return;
                }
                if method.ends_with("/FinishOnly") {
                    sender.finish(&Status::new(Code::NotFound, "nothing here"));
                    call.finish(Status::internal("too late"));
                    return;
                }
                if method.ends_with("/Wait") {
                    // Hold the call until the client cancels it.
                    while !sender.is_cancelled() {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let err = block_on(async move { sender.send(Bytes::from_static(b"late")).await });
                    assert!(err.is_err());
                    return;
                }
                // Echo: the receive half on this thread, the send half on another.
                let (tx, rx) = mpsc::channel::<Bytes>();
                let reader = std::thread::spawn(move || loop {
                    let m = block_on(async move {
                        let r = receiver.recv().await;
                        (r, receiver)
                    });
                    let (r, back) = m;
                    receiver = back;
                    match r {
                        Ok(Some(b)) => tx.send(b).unwrap(),
                        _ => break,
                    }
                });
                block_on(async move {
                    let mut md = Metadata::new();
                    md.insert("x-from", "thread").unwrap();
                    sender.send_initial_metadata(md).await.unwrap();
                    while let Ok(b) = tokio::task::block_in_place(|| rx.recv()) {
                        sender.send(b).await.unwrap();
                    }
                });
                reader.join().unwrap();
                let mut trailers = Metadata::new();
                trailers.insert("x-done", "yes").unwrap();
                assert!(call.finish(Status::ok().with_metadata(trailers)));
            });
        }
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn threads_drive_calls() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = Server::builder(ServerOptions::default())
        .fallback(surface::dispatch(move |c| tx.lock().unwrap().send(c).unwrap()))
        .build()
        .unwrap();
    let addr = server.bind("127.0.0.1:0").await.unwrap();
    server.start();
    serve_threads(rx);
    let ch = Channel::new(&addr.to_string(), ChannelOptions::default()).unwrap();

    let mut call = ch.call("/t.S/Echo", CallOptions::default()).await.unwrap();
    assert_eq!(call.initial_metadata().await.unwrap().get("x-from"), Some("thread"));
    for i in 0..20 {
        call.send(Bytes::from(format!("m{i}"))).await.unwrap();
        assert_eq!(call.recv().await.unwrap().unwrap(), format!("m{i}"));
    }
    call.close_send().await.unwrap();
    assert_eq!(call.recv().await.unwrap(), None);
    let st = call.finish().await;
    assert!(st.is_ok());
    assert_eq!(st.metadata().get("x-done"), Some("yes"));

    for i in 0..20 {
        let r = ch.unary("/t.S/Reply", Bytes::from(format!("r{i}")), CallOptions::default()).await.unwrap();
        assert_eq!(r.message, format!("r{i}"));
        assert_eq!(r.trailing_metadata.get("x-fused"), Some("yes"));
    }
    let err = ch.unary("/t.S/FinishOnly", Bytes::from_static(b"q"), CallOptions::default()).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::NotFound, "nothing here"));

    let err = ch.unary("/t.S/Drop", Bytes::new(), CallOptions::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unknown);
    assert_eq!(err.message(), "handler dropped the call without a status");

    let call = ch.call("/t.S/Wait", CallOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    call.cancel();
    let mut call = call;
    assert_eq!(call.finish().await.code(), Code::Cancelled);
    server.shutdown(Duration::from_secs(2)).await;
}
