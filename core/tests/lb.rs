//! Name resolution and load balancing against three real backends behind one
//! target: round_robin spreads calls and survives a backend going away and
//! coming back; pick_first sticks to one backend and fails over; the manual
//! resolver changes the address list at run time; client-side health
//! checking (gRFC A17) takes NOT_SERVING backends out of rotation; idle
//! timeout; dns: targets; ring_hash (gRFC A42/A76) keeps a request-hash
//! header's value on one backend and fails over when it goes away.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::client::{BackoffConfig, ManualResolver};
use grpc_core::health::{HealthReporter, ServingStatus};
use grpc_core::{
    Address, CallOptions, Channel, ChannelOptions, Code, ConnectivityState, MethodKind, Server, ServerCall,
    ServerOptions, Status,
};

const RR: &str = r#"{"loadBalancingConfig":[{"round_robin":{}}]}"#;

/// A backend that answers `/lb.S/Who` with its own address.
struct Backend {
    server: Server,
    addr: String,
    health: HealthReporter,
}

async fn backend_on(addr: &str) -> Backend {
    // Each backend answers with its own address, so pick the port first.
    let addr = if addr.ends_with(":0") {
        std::net::TcpListener::bind(addr).unwrap().local_addr().unwrap().to_string()
    } else {
        addr.to_string()
    };
    let (builder, health) = Server::builder(ServerOptions::default()).with_health();
    let me = addr.clone();
    let server = builder
        .register("/lb.S/Who", MethodKind::Unary, move |mut call: ServerCall| {
            let me = me.clone();
            async move {
                let _ = call.recv().await;
                match call.send(Bytes::from(me)).await {
                    Ok(()) => Status::ok(),
                    Err(s) => s,
                }
            }
        })
        .unwrap()
        .register("/lb.S/Stream", MethodKind::BidiStreaming, echo)
        .unwrap()
        .build()
        .unwrap();
    server.bind(&addr).await.unwrap();
    server.start();
    health.set("lb.S", ServingStatus::Serving);
    Backend { server, addr, health }
}

/// Three backends on 127.0.0.1 ephemeral ports.
async fn three() -> Vec<Backend> {
    let mut v = Vec::new();
    for _ in 0..3 {
        v.push(backend_on("127.0.0.1:0").await);
    }
    v
}

fn fast(opts: ChannelOptions) -> ChannelOptions {
    ChannelOptions {
        backoff: BackoffConfig {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(300),
            ..Default::default()
        },
        ..opts
    }
}

fn rr_opts() -> ChannelOptions {
    fast(ChannelOptions { service_config: Some(RR.into()), ..Default::default() })
}

fn ipv4_target(bs: &[Backend]) -> String {
    format!("ipv4:{}", bs.iter().map(|b| b.addr.as_str()).collect::<Vec<_>>().join(","))
}

async fn who(ch: &Channel) -> Result<String, Status> {
    let r = bounded("call", ch.unary("/lb.S/Who", Bytes::new(), CallOptions::default())).await?;
    Ok(String::from_utf8(r.message.to_vec()).unwrap())
}

/// Makes `n` calls; all must succeed. Returns calls per backend address.
async fn spread(ch: &Channel, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for i in 0..n {
        let w = who(ch).await.unwrap_or_else(|e| panic!("call {i} failed: {e}"));
        *m.entry(w).or_insert(0) += 1;
    }
    m
}

fn state_of(ch: &Channel, addr: &str) -> Option<ConnectivityState> {
    let a: std::net::SocketAddr = addr.parse().unwrap();
    ch.subchannels().into_iter().find(|s| s.address == Address::Tcp(a)).map(|s| s.state)
}

async fn wait_ready(ch: &Channel, addrs: &[&str]) {
    ch.connect();
    let what = format!("subchannels {addrs:?} READY");
    wait_until(&what, || addrs.iter().all(|a| state_of(ch, a) == Some(ConnectivityState::Ready))).await;
}

fn assert_even(m: &HashMap<String, usize>, addrs: &[&str], each: usize) {
    let lo = each - each / 5;
    let hi = each + each / 5;
    for a in addrs {
        let n = m.get(*a).copied().unwrap_or(0);
        assert!((lo..=hi).contains(&n), "{a} got {n} calls, want {each}±20%: {m:?}");
    }
    assert_eq!(m.len(), addrs.len(), "calls reached other backends: {m:?}");
}

#[tokio::test]
async fn round_robin_spreads_survives_a_loss_and_takes_the_backend_back() {
    let mut bs = three().await;
    let addrs: Vec<String> = bs.iter().map(|b| b.addr.clone()).collect();
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let ch = Channel::new(&ipv4_target(&bs), rr_opts()).unwrap();
    wait_ready(&ch, &all).await;
    assert_eq!(ch.state(), ConnectivityState::Ready);
    assert_even(&spread(&ch, 300).await, &all, 100);

    // Kill the second backend; once the policy saw it go, no call fails.
    bs[1].server.shutdown(Duration::from_secs(1)).await;
    wait_until("backend 2 leaves READY", || state_of(&ch, &addrs[1]) != Some(ConnectivityState::Ready)).await;
    let rest = [all[0], all[2]];
    assert_even(&spread(&ch, 300).await, &rest, 150);
    assert_eq!(ch.state(), ConnectivityState::Ready);

    // Restart it on the same port: it rejoins (reconnected in the background).
    bs[1] = backend_on(&addrs[1]).await;
    wait_ready(&ch, &all).await;
    assert_even(&spread(&ch, 300).await, &all, 100);

    // All gone: fail fast with UNAVAILABLE once every subchannel failed.
    for b in &bs {
        b.server.shutdown(Duration::from_secs(1)).await;
    }
    wait_until("channel TRANSIENT_FAILURE", || ch.state() == ConnectivityState::TransientFailure).await;
    assert_eq!(who(&ch).await.unwrap_err().code(), Code::Unavailable);
}

#[tokio::test]
async fn pick_first_sticks_to_one_backend_and_fails_over() {
    let bs = three().await;
    let ch = Channel::new(&ipv4_target(&bs), fast(ChannelOptions::default())).unwrap();
    // Sticks to the first address.
    let m = spread(&ch, 50).await;
    assert_eq!(m.get(&bs[0].addr), Some(&50), "{m:?}");
    // Only one connection.
    let ready = ch.subchannels().iter().filter(|s| s.state == ConnectivityState::Ready).count();
    assert_eq!(ready, 1, "{:?}", ch.subchannels());

    // The first backend goes away: once the channel noticed, calls go to the next one.
    bs[0].server.shutdown(Duration::from_secs(1)).await;
    bounded("channel leaves READY", ch.wait_for_state_change(ConnectivityState::Ready, None)).await;
    let m = spread(&ch, 50).await;
    assert_eq!(m.get(&bs[1].addr), Some(&50), "{m:?}");

    // Sticky: the first backend coming back does not move the channel.
    let b0 = backend_on(&bs[0].addr).await;
    let m = spread(&ch, 20).await;
    assert_eq!(m.get(&bs[1].addr), Some(&20), "{m:?}");
    for b in [&b0, &bs[1], &bs[2]] {
        b.server.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn pick_first_skips_dead_addresses_in_order() {
    let dead: Vec<String> =
        (0..2).map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string()).collect();
    let b = backend_on("127.0.0.1:0").await;
    let target = format!("ipv4:{},{},{}", dead[0], dead[1], b.addr);
    let ch = Channel::new(&target, ChannelOptions::default()).unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(who(&ch).await.unwrap(), b.addr);
    assert!(t0.elapsed() < Duration::from_secs(2), "took {:?}", t0.elapsed());
    b.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn manual_resolver_feeds_addresses_at_run_time() {
    let bs = three().await;
    let addrs: Vec<String> = bs.iter().map(|b| b.addr.clone()).collect();
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let r = ManualResolver::new();
    let opts = ChannelOptions { manual_resolver: Some(r.clone()), ..rr_opts() };
    let ch = Channel::new("manual:///my-service", opts).unwrap();
    // No addresses yet: a wait-for-ready call waits, then succeeds once fed.
    let ch2 = ch.clone();
    let waiting = tokio::spawn(async move {
        let opts = CallOptions { wait_for_ready: true, timeout: Some(BOUND), ..Default::default() };
        ch2.unary("/lb.S/Who", Bytes::new(), opts).await
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!waiting.is_finished());
    r.update_from_strs(&all).unwrap();
    assert!(bounded("the waiting call", waiting).await.unwrap().is_ok());
    wait_ready(&ch, &all).await;
    assert_even(&spread(&ch, 300).await, &all, 100);

    // Drop the third address: it gets no more calls.
    r.update_from_strs(&all[..2]).unwrap();
    wait_until("two subchannels", || ch.subchannels().len() == 2).await;
    assert_even(&spread(&ch, 200).await, &all[..2], 100);
    // Back to three.
    r.update_from_strs(&all).unwrap();
    wait_ready(&ch, &all).await;
    assert_even(&spread(&ch, 300).await, &all, 100);
    assert!(r.addresses().is_some());

    // A manual: target needs the resolver, and the resolver a manual: target.
    assert!(Channel::new("manual:///x", ChannelOptions::default()).is_err());
    let opts = ChannelOptions { manual_resolver: Some(r.clone()), ..Default::default() };
    assert!(Channel::new(all[0], opts).is_err());
    for b in &bs {
        b.server.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn health_checking_takes_not_serving_backends_out_of_rotation() {
    let bs = three().await;
    let addrs: Vec<String> = bs.iter().map(|b| b.addr.clone()).collect();
    let all: Vec<&str> = addrs.iter().map(String::as_str).collect();
    let sc = r#"{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":"lb.S"}}"#;
    let opts = ChannelOptions { service_config: Some(sc.into()), ..rr_opts() };
    let ch = Channel::new(&ipv4_target(&bs), opts).unwrap();
    wait_ready(&ch, &all).await;
    assert_even(&spread(&ch, 300).await, &all, 100);

    bs[1].health.set("lb.S", ServingStatus::NotServing);
    wait_until("backend 2 unhealthy", || state_of(&ch, &addrs[1]) == Some(ConnectivityState::TransientFailure)).await;
    let rest = [all[0], all[2]];
    assert_even(&spread(&ch, 300).await, &rest, 150);

    bs[1].health.set("lb.S", ServingStatus::Serving);
    wait_ready(&ch, &all).await;
    assert_even(&spread(&ch, 300).await, &all, 100);

    // All NOT_SERVING: TRANSIENT_FAILURE, calls fail fast.
    for b in &bs {
        b.health.set("lb.S", ServingStatus::NotServing);
    }
    wait_until("channel TRANSIENT_FAILURE", || ch.state() == ConnectivityState::TransientFailure).await;
    let e = who(&ch).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable);
    assert!(e.message().contains("NOT_SERVING"), "{e}");
    for b in &bs {
        b.server.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn health_checking_treats_a_server_without_the_health_service_as_healthy() {
    // A backend without grpc.health.v1.Health answers UNIMPLEMENTED (gRFC A17: healthy).
    let s = Server::builder(ServerOptions::default())
        .register("/lb.S/Who", MethodKind::Unary, |mut call: ServerCall| async move {
            let _ = call.recv().await;
            match call.send(Bytes::from_static(b"plain")).await {
                Ok(()) => Status::ok(),
                Err(s) => s,
            }
        })
        .unwrap()
        .build()
        .unwrap();
    let addr = s.bind("127.0.0.1:0").await.unwrap().to_string();
    s.start();
    let sc = r#"{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":"x"}}"#;
    let ch = Channel::new(&addr, ChannelOptions { service_config: Some(sc.into()), ..Default::default() }).unwrap();
    assert_eq!(who(&ch).await.unwrap(), "plain");
    // A service the health server does not know (SERVICE_UNKNOWN) is not healthy.
    let b = backend_on("127.0.0.1:0").await;
    let sc = r#"{"loadBalancingConfig":[{"round_robin":{}}],"healthCheckConfig":{"serviceName":"nope"}}"#;
    let ch = Channel::new(&b.addr, ChannelOptions { service_config: Some(sc.into()), ..Default::default() }).unwrap();
    ch.connect();
    wait_until("TRANSIENT_FAILURE", || ch.state() == ConnectivityState::TransientFailure).await;
    assert_eq!(who(&ch).await.unwrap_err().code(), Code::Unavailable);
    s.shutdown(Duration::from_secs(1)).await;
    b.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn dns_targets_resolve_localhost() {
    let b = backend_on("127.0.0.1:0").await;
    let port = b.addr.rsplit(':').next().unwrap();
    for (t, opts) in [
        (format!("dns:///localhost:{port}"), ChannelOptions::default()),
        (format!("dns:localhost:{port}"), rr_opts()),
        (format!("localhost:{port}"), rr_opts()),
    ] {
        let ch = Channel::new(&t, opts).unwrap();
        assert_eq!(who(&ch).await.unwrap_or_else(|e| panic!("{t}: {e}")), b.addr, "{t}");
    }
    // A name that does not resolve: UNAVAILABLE, fast.
    let ch = Channel::new("dns:///no-such-host.invalid:1", ChannelOptions::default()).unwrap();
    let e = bounded("unresolvable", who(&ch)).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    b.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn idle_timeout_drops_connections_and_the_next_call_reconnects() {
    let b = backend_on("127.0.0.1:0").await;
    let opts = ChannelOptions { idle_timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let ch = Channel::new(&b.addr, opts).unwrap();
    who(&ch).await.unwrap();
    assert_eq!(ch.state(), ConnectivityState::Ready);
    // A call in flight keeps the channel out of IDLE.
    let mut call = ch.call("/lb.S/Who", CallOptions::default()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    assert_eq!(ch.state(), ConnectivityState::Ready, "a call in flight is activity");
    call.send_last(Bytes::new()).await.unwrap();
    call.recv_unary().await.unwrap();
    drop(call);
    bounded("IDLE after the idle timeout", async {
        while ch.state() != ConnectivityState::Idle {
            ch.wait_for_state_change(ch.state(), None).await;
        }
    })
    .await;
    assert!(ch.subchannels().is_empty());
    who(&ch).await.unwrap();
    assert_eq!(ch.state(), ConnectivityState::Ready);
    // idle_timeout None: stays READY.
    let ch = Channel::new(&b.addr, ChannelOptions { idle_timeout: None, ..Default::default() }).unwrap();
    who(&ch).await.unwrap();
    assert!(
        !ch.wait_for_state_change(
            ConnectivityState::Ready,
            Some(std::time::Instant::now() + Duration::from_millis(500))
        )
        .await
    );
    b.server.shutdown(Duration::from_secs(1)).await;
}

/// A listener whose accept queue is full: connection attempts to it hang
/// (the kernel drops the SYNs), like an unreachable host.
fn blackhole() -> (socket2::Socket, Vec<std::net::TcpStream>, String) {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    s.bind(&"127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap().into()).unwrap();
    s.listen(0).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    // Fill the queue (never accepted); more connects then hang.
    let mut fill = Vec::new();
    for _ in 0..4 {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            Ok(c) => fill.push(c),
            Err(_) => break,
        }
    }
    (s, fill, addr.to_string())
}

#[tokio::test]
async fn pick_first_happy_eyeballs_starts_the_next_address_after_250ms() {
    let (_hole, _fill, hole_addr) = blackhole();
    // Make sure the hole really hangs here; otherwise the test proves nothing.
    let probe = tokio::time::timeout(Duration::from_millis(500), tokio::net::TcpStream::connect(&hole_addr)).await;
    if probe.is_ok() {
        println!("note: could not make a hanging address on this machine; skipping");
        return;
    }
    let b = backend_on("127.0.0.1:0").await;
    let ch = Channel::new(&format!("ipv4:{hole_addr},{}", b.addr), ChannelOptions::default()).unwrap();
    let t0 = std::time::Instant::now();
    assert_eq!(who(&ch).await.unwrap(), b.addr);
    let took = t0.elapsed();
    // The second address is started after the 250 ms attempt delay, long
    // before the first attempt's 20 s connect timeout.
    assert!(took >= Duration::from_millis(200) && took < Duration::from_secs(3), "took {took:?}");
    // The winner's connection is the only one left; the hanging attempt is dropped.
    let b_addr: std::net::SocketAddr = b.addr.parse().unwrap();
    wait_until("only the winner connected", || {
        ch.subchannels().iter().all(|s| {
            let want =
                if s.address == Address::Tcp(b_addr) { ConnectivityState::Ready } else { ConnectivityState::Idle };
            s.state == want
        })
    })
    .await;
    b.server.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_removed_address_lets_its_calls_in_flight_finish() {
    let bs = three().await;
    let all: Vec<&str> = bs.iter().map(|b| b.addr.as_str()).collect();
    let r = ManualResolver::new();
    let ch = Channel::new("manual:///drain", ChannelOptions { manual_resolver: Some(r.clone()), ..rr_opts() }).unwrap();
    r.update_from_strs(&all[..1]).unwrap();
    // A stream open on the only backend...
    let mut call = bounded("open", ch.call("/lb.S/Stream", CallOptions::default())).await.unwrap();
    call.send(Bytes::from_static(b"one")).await.unwrap();
    assert_eq!(&bounded("recv", call.recv()).await.unwrap().unwrap()[..], b"one");
    // ...survives its address leaving the list; new calls go to the new list.
    r.update_from_strs(&all[1..]).unwrap();
    wait_until("old subchannel removed", || ch.subchannels().len() == 2 && state_of(&ch, all[0]).is_none()).await;
    wait_ready(&ch, &all[1..]).await;
    assert_even(&spread(&ch, 100).await, &all[1..], 50);
    call.send(Bytes::from_static(b"two")).await.unwrap();
    assert_eq!(&bounded("recv", call.recv()).await.unwrap().unwrap()[..], b"two");
    call.close_send().await.unwrap();
    assert!(bounded("finish", call.finish()).await.is_ok());
    for b in &bs {
        b.server.shutdown(Duration::from_secs(1)).await;
    }
}

const RING: &str = r#"{"loadBalancingConfig":[{"ring_hash":{"requestHashHeader":"x-user"}}]}"#;

/// `/lb.S/Who` with `x-user: user` (none: no header).
async fn who_as(ch: &Channel, user: Option<&str>) -> Result<String, Status> {
    let mut opts = CallOptions::default();
    if let Some(u) = user {
        opts.metadata.insert("x-user", u).unwrap();
    }
    let r = bounded("call", ch.unary("/lb.S/Who", Bytes::new(), opts)).await?;
    Ok(String::from_utf8(r.message.to_vec()).unwrap())
}

#[tokio::test]
async fn ring_hash_keeps_a_key_on_one_backend_and_fails_over() {
    let bs = three().await;
    let addrs: Vec<String> = bs.iter().map(|b| b.addr.clone()).collect();
    let opts = fast(ChannelOptions { service_config: Some(RING.into()), ..Default::default() });
    let ch = Channel::new(&ipv4_target(&bs), opts).unwrap();

    // Subchannels connect on demand: none before a call.
    ch.connect();
    wait_until("three IDLE subchannels", || {
        let scs = ch.subchannels();
        scs.len() == 3 && scs.iter().all(|s| s.state == ConnectivityState::Idle)
    })
    .await;
    assert_eq!(ch.state(), ConnectivityState::Idle);
    // One keyed call connects only the backend it goes to.
    let first = who_as(&ch, Some("user-0")).await.unwrap();
    wait_until("its subchannel READY", || state_of(&ch, &first) == Some(ConnectivityState::Ready)).await;
    let others: Vec<_> = ch.subchannels().into_iter().filter(|s| s.address.to_string() != first).collect();
    assert!(others.iter().all(|s| s.state == ConnectivityState::Idle), "{others:?}");

    // The same key always lands on the same backend; keys spread.
    let mut home: HashMap<String, String> = HashMap::new();
    for k in 0..30 {
        let key = format!("user-{k}");
        let b = who_as(&ch, Some(&key)).await.unwrap();
        for _ in 0..5 {
            assert_eq!(who_as(&ch, Some(&key)).await.unwrap(), b, "{key} moved");
        }
        home.insert(key, b);
    }
    assert_eq!(home["user-0"], first);
    let used: std::collections::HashSet<&String> = home.values().collect();
    assert!(used.len() > 1, "30 keys all on one backend: {home:?}");
    assert!(used.iter().all(|b| addrs.contains(b)));

    // Without the header (a random hash per call, A76), calls succeed.
    for i in 0..20 {
        let b = who_as(&ch, None).await.unwrap_or_else(|e| panic!("header-less call {i}: {e}"));
        assert!(addrs.contains(&b), "{b}");
    }

    // Kill user-0's backend: its calls move to one other backend and stay
    // there; keys of the other backends do not move.
    let victim = bs.iter().position(|b| b.addr == first).unwrap();
    bs[victim].server.shutdown(Duration::from_secs(1)).await;
    wait_until("the victim leaves READY", || state_of(&ch, &first) != Some(ConnectivityState::Ready)).await;
    let moved = who_as(&ch, Some("user-0")).await.unwrap();
    assert_ne!(moved, first);
    for _ in 0..10 {
        assert_eq!(who_as(&ch, Some("user-0")).await.unwrap(), moved);
    }
    for (key, b) in &home {
        let now = who_as(&ch, Some(key)).await.unwrap_or_else(|e| panic!("{key}: {e}"));
        if *b == first {
            assert_ne!(now, first, "{key}");
        } else {
            assert_eq!(now, *b, "{key} moved although its backend is up");
        }
    }
    for i in 0..20 {
        let b = who_as(&ch, None).await.unwrap_or_else(|e| panic!("header-less call {i}: {e}"));
        assert_ne!(b, first);
    }
    for (i, b) in bs.iter().enumerate() {
        if i != victim {
            b.server.shutdown(Duration::from_secs(1)).await;
        }
    }
}

#[tokio::test]
async fn ring_hash_without_a_header_config_and_with_every_backend_gone() {
    let bs = three().await;
    let sc = r#"{"loadBalancingConfig":[{"ring_hash":{"minRingSize":64,"maxRingSize":128}}]}"#;
    let opts = fast(ChannelOptions { service_config: Some(sc.into()), ..Default::default() });
    let ch = Channel::new(&ipv4_target(&bs), opts).unwrap();
    // No requestHashHeader: every call takes a random hash (A76) and the
    // picks connect backends as they need them.
    who_as(&ch, None).await.unwrap();
    wait_until("a READY subchannel", || ch.subchannels().iter().any(|s| s.state == ConnectivityState::Ready)).await;
    // A header is ignored; calls succeed.
    for i in 0..20 {
        let user = (i % 2 == 0).then_some("same");
        who_as(&ch, user).await.unwrap_or_else(|e| panic!("call {i}: {e}"));
    }
    for b in &bs {
        b.server.shutdown(Duration::from_secs(1)).await;
    }
    // Every backend gone: TRANSIENT_FAILURE, and calls fail fast with UNAVAILABLE.
    // (The servers are gone: no call can succeed.)
    let e = who_as(&ch, None).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    wait_until("channel TRANSIENT_FAILURE", || ch.state() == ConnectivityState::TransientFailure).await;
    assert_eq!(who_as(&ch, None).await.unwrap_err().code(), Code::Unavailable);
}
