//! Retries, hedging and retry throttling of unary calls (gRFC A6) from the
//! service config, against real servers that fail on purpose.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_core::{
    CallOptions, Channel, ChannelOptions, Code, Metadata, MethodKind, Server, ServerCall, ServerOptions, Status,
};

/// What the server does on attempt `n` (0-based) of a call.
type Plan = Arc<dyn Fn(usize, &mut ServerCall) -> Option<Status> + Send + Sync>;

/// A server whose `/r.S/M` follows `plan`; returns it, its address, the
/// attempt count and the attempts' arrival times.
async fn planned(plan: Plan) -> (Server, String, Arc<AtomicUsize>, Arc<Mutex<Vec<Instant>>>) {
    let count = Arc::new(AtomicUsize::new(0));
    let times: Arc<Mutex<Vec<Instant>>> = Default::default();
    let (c, t) = (count.clone(), times.clone());
    let b = Server::builder(ServerOptions::default())
        .register("/r.S/M", MethodKind::Unary, move |mut call: ServerCall| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            t.lock().unwrap().push(Instant::now());
            let plan = plan.clone();
            async move {
                let req = call.recv().await.unwrap().unwrap();
                if let Some(st) = plan(n, &mut call) {
                    if call.metadata().get("x-send-headers-first").is_some() {
                        call.send_initial_metadata(Metadata::new()).await.unwrap();
                    }
                    return st;
                }
                call.send(req).await.unwrap();
                Status::ok()
            }
        })
        .unwrap();
    let (s, addr) = start(b).await;
    (s, addr, count, times)
}

fn with_config(addr: &str, method_config: &str, throttling: &str) -> Channel {
    let cfg = format!(r#"{{"methodConfig": [{{"name": [{{"service": "r.S"}}], {method_config}}}] {throttling}}}"#);
    Channel::new(addr, ChannelOptions { service_config: Some(cfg), ..Default::default() }).unwrap()
}

const RETRY: &str = r#""retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"]}"#;

fn unavailable_with_pushback(ms: &str) -> Status {
    let mut md = Metadata::new();
    md.insert("grpc-retry-pushback-ms", ms).unwrap();
    Status::unavailable("try later").with_metadata(md)
}

async fn call(ch: &Channel, method: &str, body: &'static [u8]) -> Result<Bytes, Status> {
    bounded("call", ch.unary(method, Bytes::from_static(body), CallOptions::default())).await.map(|r| r.message)
}

#[tokio::test]
async fn retries_retryable_codes_until_success() {
    let (s, addr, count, _) = planned(Arc::new(|n, _| (n < 2).then(|| Status::unavailable("flaky")))).await;
    let ch = with_config(&addr, RETRY, "");
    assert_eq!(call(&ch, "/r.S/M", b"hi").await.unwrap(), "hi");
    assert_eq!(count.load(Ordering::SeqCst), 3, "two failures, then success");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn gives_up_after_max_attempts_and_never_retries_other_codes() {
    let (s, addr, count, _) = planned(Arc::new(|_, _| Some(Status::unavailable("down")))).await;
    let ch = with_config(&addr, RETRY, "");
    let err = call(&ch, "/r.S/M", b"x").await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unavailable, "down"));
    assert_eq!(count.load(Ordering::SeqCst), 4, "maxAttempts");
    s.shutdown(Duration::from_secs(1)).await;

    let (s, addr, count, _) = planned(Arc::new(|_, _| Some(Status::internal("bug")))).await;
    let ch = with_config(&addr, RETRY, "");
    assert_eq!(call(&ch, "/r.S/M", b"x").await.unwrap_err().code(), Code::Internal);
    assert_eq!(count.load(Ordering::SeqCst), 1, "INTERNAL is not retryable here");
    s.shutdown(Duration::from_secs(1)).await;

    // No retry policy: one attempt.
    let (s, addr, count, _) = planned(Arc::new(|_, _| Some(Status::unavailable("down")))).await;
    assert_eq!(call(&channel(&addr), "/r.S/M", b"x").await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_committed_call_is_not_retried() {
    // Headers went out before the failure: the call is committed.
    let mut md = Metadata::new();
    md.insert("x-send-headers-first", "1").unwrap();
    let (s, addr, count, _) = planned(Arc::new(move |_, _| Some(Status::unavailable("after headers")))).await;
    let ch = with_config(&addr, RETRY, "");
    let opts = CallOptions { metadata: md, ..Default::default() };
    let err = bounded("committed", ch.unary("/r.S/M", Bytes::from_static(b"x"), opts)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(count.load(Ordering::SeqCst), 1);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn server_pushback_sets_the_delay_or_stops_retries() {
    let (s, addr, count, times) = planned(Arc::new(|n, _| (n == 0).then(|| unavailable_with_pushback("300")))).await;
    let ch = with_config(&addr, RETRY, "");
    assert_eq!(call(&ch, "/r.S/M", b"x").await.unwrap(), "x");
    assert_eq!(count.load(Ordering::SeqCst), 2);
    let t = times.lock().unwrap().clone();
    assert!(t[1] - t[0] >= Duration::from_millis(300), "the retry waited the pushback: {:?}", t[1] - t[0]);
    s.shutdown(Duration::from_secs(1)).await;

    let (s, addr, count, _) = planned(Arc::new(|_, _| Some(unavailable_with_pushback("-1")))).await;
    let ch = with_config(&addr, RETRY, "");
    assert_eq!(call(&ch, "/r.S/M", b"x").await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(count.load(Ordering::SeqCst), 1, "negative pushback: no retry");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_deadline_covers_every_attempt() {
    let (s, addr, _, _) = planned(Arc::new(|_, _| Some(unavailable_with_pushback("10000")))).await;
    let ch = with_config(&addr, RETRY, "");
    let t0 = Instant::now();
    let opts = CallOptions { timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let err = bounded("deadline", ch.unary("/r.S/M", Bytes::from_static(b"x"), opts)).await.unwrap_err();
    assert_eq!(err.code(), Code::DeadlineExceeded);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn throttling_stops_retries_when_the_bucket_is_half_empty() {
    let (s, addr, count, _) = planned(Arc::new(|_, _| Some(Status::unavailable("down")))).await;
    let ch = with_config(&addr, RETRY, r#", "retryThrottling": {"maxTokens": 3, "tokenRatio": 0.5}"#);
    assert_eq!(ch.retry_tokens(), Some(3.0));
    // 3 → 2 (> 1.5, retry) → 1 (stop): two attempts.
    assert_eq!(call(&ch, "/r.S/M", b"x").await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(count.load(Ordering::SeqCst), 2);
    // 1 → 0: no retry at all.
    assert_eq!(call(&ch, "/r.S/M", b"x").await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(count.load(Ordering::SeqCst), 3);
    assert_eq!(ch.retry_tokens(), Some(0.0));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn hedging_sends_parallel_attempts_and_cancels_the_losers() {
    let hedge =
        r#""hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.1s", "nonFatalStatusCodes": ["UNAVAILABLE"]}"#;
    let cfg = format!(r#"{{"methodConfig": [{{"name": [{{"service": "r.S"}}], {hedge}}}]}}"#);
    let hung = Arc::new(AtomicUsize::new(0));
    let h = hung.clone();
    let leaf = Server::builder(ServerOptions::default())
        .register("/r.S/H", MethodKind::Unary, move |mut call: ServerCall| {
            let n = h.fetch_add(1, Ordering::SeqCst);
            async move {
                let req = call.recv().await.unwrap().unwrap();
                if n == 0 {
                    // The first attempt never answers; the hedge must win.
                    let (flag, guard) = drop_flag();
                    let _g = guard();
                    CANCELLED.lock().unwrap().push(flag);
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                call.send(req).await.unwrap();
                Status::ok()
            }
        })
        .unwrap()
        .register("/r.S/F", MethodKind::Unary, |_call: ServerCall| async {
            Status::new(Code::PermissionDenied, "fatal")
        })
        .unwrap();
    let (leaf, leaf_addr) = start(leaf).await;
    let ch =
        Channel::new(&leaf_addr, ChannelOptions { service_config: Some(cfg.clone()), ..Default::default() }).unwrap();
    let t0 = Instant::now();
    assert_eq!(call(&ch, "/r.S/H", b"hedged").await.unwrap(), "hedged");
    assert!(t0.elapsed() >= Duration::from_millis(100), "the hedge waited hedgingDelay");
    assert_eq!(hung.load(Ordering::SeqCst), 2, "one hedge was enough");
    let flag = CANCELLED.lock().unwrap()[0].clone();
    wait_until("the losing attempt is cancelled on the server", || flag.load(Ordering::SeqCst)).await;
    // A fatal code ends the hedged call at once.
    assert_eq!(call(&ch, "/r.S/F", b"x").await.unwrap_err().code(), Code::PermissionDenied);
    leaf.shutdown(Duration::from_secs(1)).await;

    // Non-fatal codes send the next hedge at once, up to maxAttempts.
    let (s2, addr2, count, _) = planned(Arc::new(|n, _| (n < 2).then(|| Status::unavailable("busy")))).await;
    let ch = Channel::new(&addr2, ChannelOptions { service_config: Some(cfg), ..Default::default() }).unwrap();
    assert_eq!(call(&ch, "/r.S/M", b"third time").await.unwrap(), "third time");
    assert_eq!(count.load(Ordering::SeqCst), 3);
    s2.shutdown(Duration::from_secs(1)).await;
}

static CANCELLED: Mutex<Vec<Arc<std::sync::atomic::AtomicBool>>> = Mutex::new(Vec::new());
