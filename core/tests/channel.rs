//! The channel: target forms, lazy connect, fail-fast versus wait-for-ready,
//! reconnect after a server restart, connectivity states, close().

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_core::client::BackoffConfig;
use grpc_core::{
    CallOptions, Channel, ChannelOptions, Code, ConnectivityState, MethodKind, Server, ServerCall, ServerOptions,
    Status,
};

async fn peer(mut call: ServerCall) -> Status {
    let _ = call.recv().await;
    match call.send(Bytes::from(call.peer().to_string())).await {
        Ok(()) => Status::ok(),
        Err(s) => s,
    }
}

fn server() -> Server {
    Server::builder(ServerOptions::default())
        .register("/ch.S/Peer", MethodKind::Unary, peer)
        .unwrap()
        .register("/ch.S/Stream", MethodKind::BidiStreaming, echo)
        .unwrap()
        .build()
        .unwrap()
}

async fn serve_on(addr: &str) -> (Server, String) {
    let s = server();
    let a = s.bind(addr).await.unwrap();
    s.start();
    (s, a.to_string())
}

async fn ping(ch: &Channel) -> Result<String, Status> {
    let r = bounded("call", ch.unary("/ch.S/Peer", Bytes::new(), CallOptions::default())).await?;
    Ok(String::from_utf8(r.message.to_vec()).unwrap())
}

fn fast_backoff() -> ChannelOptions {
    ChannelOptions {
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn target_forms() {
    let (s, addr) = serve_on("127.0.0.1:0").await;
    let port = addr.rsplit(':').next().unwrap().to_string();
    let dead = dead_port();
    let mut targets = vec![
        addr.clone(),
        format!("localhost:{port}"),
        format!("dns:///localhost:{port}"),
        format!("dns:localhost:{port}"),
        format!("ipv4:127.0.0.1:{port}"),
        // A dead first address, then a live one (pick_first moves on).
        format!("ipv4:127.0.0.1:{dead},127.0.0.1:{port}"),
    ];
    let v6 = if std::net::TcpListener::bind("[::1]:0").is_ok() {
        let (s6, a6) = serve_on("[::1]:0").await;
        let p6 = a6.rsplit(':').next().unwrap().to_string();
        targets.push(format!("ipv6:[::1]:{p6}"));
        targets.push(format!("[::1]:{p6}"));
        Some(s6)
    } else {
        println!("note: no IPv6 loopback on this machine; skipping the ipv6: targets");
        None
    };
    for t in &targets {
        let ch = Channel::new(t, ChannelOptions::default()).unwrap_or_else(|e| panic!("{t}: {e}"));
        let p = ping(&ch).await.unwrap_or_else(|e| panic!("{t}: {e}"));
        assert!(!p.is_empty(), "{t}");
    }
    // Unix sockets: unix:path and unix:///abs/path.
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let path = std::env::temp_dir().join(format!("grpc-core-channel-{}-{nanos}.sock", std::process::id()));
    let (su, _) = serve_on(&format!("unix:{}", path.display())).await;
    for t in [format!("unix:{}", path.display()), format!("unix://{}", path.display())] {
        let ch = Channel::new(&t, ChannelOptions::default()).unwrap();
        assert!(ping(&ch).await.unwrap().starts_with("unix:"), "{t}");
    }
    // Malformed targets are refused up front.
    for bad in ["", "http://x:1", "ipv4:", "ipv6:127.0.0.1:1", "unix:", "host:notaport"] {
        assert!(Channel::new(bad, ChannelOptions::default()).is_err(), "{bad:?}");
    }
    s.shutdown(Duration::from_secs(1)).await;
    su.shutdown(Duration::from_secs(1)).await;
    if let Some(s6) = v6 {
        s6.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn lazy_connect() {
    let (s, addr) = serve_on("127.0.0.1:0").await;
    let ch = channel(&addr);
    assert_eq!(ch.state(), ConnectivityState::Idle);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(ch.state(), ConnectivityState::Idle, "nothing connects before a call");
    assert!(
        !ch.wait_for_state_change(ConnectivityState::Idle, Some(Instant::now() + Duration::from_millis(200))).await
    );
    ping(&ch).await.unwrap();
    assert_eq!(ch.state(), ConnectivityState::Ready);
    // connect() leaves IDLE without a call.
    let ch2 = channel(&addr);
    ch2.connect();
    wait_state(&ch2, ConnectivityState::Ready).await;
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn refused_fails_fast_and_wait_for_ready_waits_for_the_server() {
    let port = dead_port();
    let addr = format!("127.0.0.1:{port}");
    let ch = channel(&addr);
    let t0 = Instant::now();
    let err = ping(&ch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(2), "fail-fast took {:?}", t0.elapsed());
    assert_eq!(ch.state(), ConnectivityState::TransientFailure);
    // Still failing fast while in TRANSIENT_FAILURE.
    let t0 = Instant::now();
    assert_eq!(ping(&ch).await.unwrap_err().code(), Code::Unavailable);
    assert!(t0.elapsed() < Duration::from_millis(500));

    // wait_for_ready: the call waits; the server appears later on that port.
    let ch = channel(&addr);
    let ch2 = ch.clone();
    let waiting = tokio::spawn(async move {
        let opts = CallOptions { wait_for_ready: true, timeout: Some(Duration::from_secs(15)), ..Default::default() };
        ch2.unary("/ch.S/Peer", Bytes::new(), opts).await
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(!waiting.is_finished(), "a wait-for-ready call must not fail while the server is down");
    let (s, _) = serve_on(&addr).await;
    let r = bounded("the waiting call", waiting).await.unwrap();
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(ch.state(), ConnectivityState::Ready);
    // wait_for_ready still honours the deadline.
    let ch = channel(&format!("127.0.0.1:{}", dead_port()));
    let t0 = Instant::now();
    let opts = CallOptions { wait_for_ready: true, timeout: Some(Duration::from_millis(500)), ..Default::default() };
    let err = ch.unary("/ch.S/Peer", Bytes::new(), opts).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded, "{err}");
    assert!(t0.elapsed() < Duration::from_secs(3));
    s.shutdown(Duration::from_secs(1)).await;
}

async fn wait_state(ch: &Channel, want: ConnectivityState) {
    bounded(&format!("state {want:?}"), async {
        while ch.state() != want {
            ch.wait_for_state_change(ch.state(), None).await;
        }
    })
    .await
}

#[tokio::test]
async fn reconnects_after_server_restart_on_the_same_port() {
    let (mut s, addr) = serve_on("127.0.0.1:0").await;
    let ch = Channel::new(&addr, fast_backoff()).unwrap();
    let mut last = ping(&ch).await.unwrap();
    for round in 0..3 {
        s.shutdown(Duration::from_secs(1)).await;
        bounded("the channel notices", ch.wait_for_state_change(ConnectivityState::Ready, None)).await;
        // While the server is down calls fail fast.
        assert_eq!(ping(&ch).await.unwrap_err().code(), Code::Unavailable, "round {round}");
        assert_eq!(ch.state(), ConnectivityState::TransientFailure);
        s = serve_on(&addr).await.0;
        // The channel reconnects on its own after the backoff...
        wait_state(&ch, ConnectivityState::Ready).await;
        // ...and calls go over the new connection.
        let p = ping(&ch).await.unwrap();
        assert_ne!(p, last, "round {round}: a new connection");
        last = p;
    }
    // A wait-for-ready call issued while the server is down rides out the restart.
    s.shutdown(Duration::from_secs(1)).await;
    bounded("the channel notices", ch.wait_for_state_change(ConnectivityState::Ready, None)).await;
    let ch2 = ch.clone();
    let waiting = tokio::spawn(async move {
        let opts = CallOptions { wait_for_ready: true, timeout: Some(Duration::from_secs(15)), ..Default::default() };
        ch2.unary("/ch.S/Peer", Bytes::new(), opts).await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = serve_on(&addr).await;
    assert!(bounded("wait-for-ready across a restart", waiting).await.unwrap().is_ok());
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn connectivity_states_and_wait_for_state_change() {
    let (s, addr) = serve_on("127.0.0.1:0").await;
    let ch = channel(&addr);
    let soon = || Some(Instant::now() + Duration::from_millis(300));
    assert_eq!(ch.state(), ConnectivityState::Idle);
    assert!(!ch.wait_for_state_change(ConnectivityState::Idle, soon()).await, "no change while idle");
    // A watcher started now sees Idle → (Connecting →) Ready.
    let ch2 = ch.clone();
    let watcher = tokio::spawn(async move {
        let mut seen = vec![ConnectivityState::Idle];
        let mut cur = ConnectivityState::Idle;
        while cur != ConnectivityState::Ready {
            assert!(ch2.wait_for_state_change(cur, Some(Instant::now() + BOUND)).await);
            cur = ch2.state();
            seen.push(cur);
        }
        seen
    });
    tokio::task::yield_now().await;
    ch.connect();
    let seen = bounded("watcher", watcher).await.unwrap();
    assert_eq!(seen.first(), Some(&ConnectivityState::Idle));
    assert_eq!(seen.last(), Some(&ConnectivityState::Ready));
    assert!(
        seen.iter()
            .all(|s| matches!(s, ConnectivityState::Idle | ConnectivityState::Connecting | ConnectivityState::Ready)),
        "{seen:?}"
    );
    assert!(!ch.wait_for_state_change(ConnectivityState::Ready, soon()).await, "stays ready");
    // The server goes away: READY → IDLE (the next call reconnects).
    s.shutdown(Duration::from_secs(1)).await;
    assert!(ch.wait_for_state_change(ConnectivityState::Ready, Some(Instant::now() + BOUND)).await);
    assert_eq!(ch.state(), ConnectivityState::Idle);
    // Connecting to a dead port: → TRANSIENT_FAILURE, then CONNECTING again after the backoff.
    let ch = Channel::new(&format!("127.0.0.1:{}", dead_port()), fast_backoff()).unwrap();
    ch.connect();
    wait_state(&ch, ConnectivityState::TransientFailure).await;
    assert!(ch.wait_for_state_change(ConnectivityState::TransientFailure, Some(Instant::now() + BOUND)).await);
    // It left TRANSIENT_FAILURE: it retries after the backoff. A refused
    // attempt ends within microseconds (addresses are resolved once, not per
    // attempt), so by the time we look it may be TRANSIENT_FAILURE again.
    let st = ch.state();
    assert!(
        matches!(st, ConnectivityState::Connecting | ConnectivityState::TransientFailure),
        "retries after the backoff: {st:?}"
    );
    // A shutdown channel: SHUTDOWN is final.
    ch.close();
    assert_eq!(ch.state(), ConnectivityState::Shutdown, "SHUTDOWN as soon as close returns");
    assert!(!ch.wait_for_state_change(ConnectivityState::Shutdown, soon()).await);
}

#[tokio::test]
async fn close_fails_new_calls() {
    let (s, addr) = serve_on("127.0.0.1:0").await;
    for round in 0..10 {
        let ch = channel(&addr);
        ping(&ch).await.unwrap();
        ch.close();
        // Right away, without waiting for the state to change.
        let err = bounded("call after close", ch.unary("/ch.S/Peer", Bytes::new(), CallOptions::default()))
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::Cancelled, "round {round}: {err}");
        let err = ch.call("/ch.S/Stream", CallOptions::default()).await.unwrap_err();
        assert_eq!(err.code(), Code::Cancelled, "round {round}: {err}");
        assert_eq!(ch.state(), ConnectivityState::Shutdown, "round {round}");
        // wait_for_ready does not wait on a closed channel.
        let opts = CallOptions { wait_for_ready: true, ..Default::default() };
        let err = bounded("wait-for-ready after close", ch.unary("/ch.S/Peer", Bytes::new(), opts)).await.unwrap_err();
        assert_eq!(err.code(), Code::Cancelled);
        // A closed idle channel, too.
        let idle = channel(&addr);
        idle.close();
        assert_eq!(bounded("idle closed", ping(&idle)).await.unwrap_err().code(), Code::Cancelled);
    }
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn calls_know_their_peer_and_whether_headers_came() {
    let (s, addr) = serve_on("127.0.0.1:0").await;
    let ch = channel(&addr);
    let mut call = bounded("start", ch.call("/ch.S/Stream", CallOptions::default())).await.unwrap();
    assert_eq!(call.peer(), addr, "the address the call went to");
    call.send(Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(bounded("echo", call.recv()).await.unwrap().unwrap(), "x");
    call.close_send().await.unwrap();
    let (_tx, rx) = call.split();
    assert!(rx.headers_received(), "a normal response has headers");
    let r = bounded("unary", ch.unary("/ch.S/Peer", Bytes::new(), CallOptions::default())).await.unwrap();
    assert_eq!(r.peer, addr, "a unary response names the server that answered");
    assert_eq!(rx.peer(), addr);
    // Trailers-only (unknown method): no headers.
    let mut call = bounded("start", ch.call("/ch.S/Nope", CallOptions::default())).await.unwrap();
    assert_eq!(bounded("finish", call.finish()).await.code(), Code::Unimplemented);
    let (_tx, rx) = call.split();
    assert!(!rx.headers_received(), "trailers-only");
    s.shutdown(Duration::from_secs(1)).await;
}
