//! Retries of streaming calls (gRFC A6) from the service config: the
//! messages sent are replayed on each new attempt until the call commits.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use grpc_core::{
    CallOptions, Channel, ChannelOptions, Code, Metadata, MethodKind, Server, ServerCall, ServerOptions, Status,
};

/// One attempt as the server saw it: `grpc-previous-rpc-attempts` and the messages.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    previous: Option<String>,
    messages: Vec<Bytes>,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// What the server does on attempt `n` (0-based), after reading the request
/// messages: `Some(status)` ends the attempt with it, `None` answers.
type Plan = Arc<dyn Fn(usize) -> Option<Status> + Send + Sync>;

/// `/r.S/Sum` (client streaming): reads every message, then follows `plan`,
/// answering the concatenation. `/r.S/Feed` (server streaming): reads the
/// request, sends it back once, then follows `plan`.
async fn server(plan: Plan) -> (Server, String, Log) {
    let log: Log = Default::default();
    let (l1, l2, p1, p2) = (log.clone(), log.clone(), plan.clone(), plan);
    let b = Server::builder(ServerOptions::default())
        .register("/r.S/Sum", MethodKind::ClientStreaming, move |mut call: ServerCall| {
            let (log, plan) = (l1.clone(), p1.clone());
            async move {
                let previous = call.metadata().get("grpc-previous-rpc-attempts").map(str::to_string);
                let mut messages = Vec::new();
                while let Some(m) = call.recv().await.unwrap() {
                    messages.push(m);
                }
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(Seen { previous, messages: messages.clone() });
                    l.len() - 1
                };
                if let Some(st) = plan(n) {
                    return st;
                }
                call.send(messages.concat().into()).await.unwrap();
                Status::ok()
            }
        })
        .unwrap()
        .register("/r.S/Feed", MethodKind::ServerStreaming, move |mut call: ServerCall| {
            let (log, plan) = (l2.clone(), p2.clone());
            async move {
                let previous = call.metadata().get("grpc-previous-rpc-attempts").map(str::to_string);
                let m = call.recv().await.unwrap().unwrap();
                let n = {
                    let mut l = log.lock().unwrap();
                    l.push(Seen { previous, messages: vec![m.clone()] });
                    l.len() - 1
                };
                call.send(m).await.unwrap();
                plan(n).unwrap_or_else(Status::ok)
            }
        })
        .unwrap();
    let (s, addr) = start(b).await;
    (s, addr, log)
}

const RETRY: &str = r#""retryPolicy": {"maxAttempts": 4, "initialBackoff": "0.01s", "maxBackoff": "0.05s",
    "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE"]}"#;

fn with_config(addr: &str, method_config: &str, extra: &str, opts: ChannelOptions) -> Channel {
    let cfg = format!(r#"{{"methodConfig": [{{"name": [{{"service": "r.S"}}], {method_config}}}] {extra}}}"#);
    Channel::new(addr, ChannelOptions { service_config: Some(cfg), ..opts }).unwrap()
}

/// A client-streaming call of `msgs`; the response or the status.
async fn sum(ch: &Channel, msgs: &[&'static str]) -> Result<Bytes, Status> {
    bounded("client streaming call", async {
        let mut call = ch.call("/r.S/Sum", CallOptions::default()).await?;
        for m in msgs {
            call.send(Bytes::from_static(m.as_bytes())).await?;
        }
        call.close_send().await?;
        Ok(call.recv_unary().await?.message)
    })
    .await
}

fn seen(previous: Option<&str>, msgs: &[&'static str]) -> Seen {
    Seen {
        previous: previous.map(str::to_string),
        messages: msgs.iter().map(|m| Bytes::from_static(m.as_bytes())).collect(),
    }
}

#[tokio::test]
async fn client_streaming_replays_the_messages_on_each_attempt() {
    let (s, addr, log) = server(Arc::new(|n| (n < 2).then(|| Status::unavailable("flaky")))).await;
    let ch = with_config(&addr, RETRY, "", Default::default());
    assert_eq!(sum(&ch, &["a", "bb", "ccc"]).await.unwrap(), "abbccc");
    let msgs = ["a", "bb", "ccc"];
    assert_eq!(*log.lock().unwrap(), vec![seen(None, &msgs), seen(Some("1"), &msgs), seen(Some("2"), &msgs)]);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn split_halves_retry_too_and_the_last_status_comes_through() {
    // Always UNAVAILABLE: maxAttempts attempts, then the server's status, on split halves.
    let (s, addr, log) = server(Arc::new(|_| Some(Status::unavailable("down")))).await;
    let ch = with_config(&addr, RETRY, "", Default::default());
    let call = ch.call("/r.S/Sum", CallOptions::default()).await.unwrap();
    let (mut tx, mut rx) = call.split();
    let sender = tokio::spawn(async move {
        tx.send(Bytes::from_static(b"x")).await.unwrap();
        tx.close_send().await.unwrap();
    });
    let err = bounded("recv", rx.recv()).await.unwrap_err();
    assert_eq!((err.code(), err.message()), (Code::Unavailable, "down"));
    assert_eq!(rx.status().map(Status::code), Some(Code::Unavailable));
    sender.await.unwrap();
    assert_eq!(log.lock().unwrap().len(), 4, "maxAttempts");
    assert!(log.lock().unwrap().iter().all(|a| a.messages == [Bytes::from_static(b"x")]));
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_response_message_commits_a_server_streaming_call() {
    let (s, addr, log) = server(Arc::new(|_| Some(Status::unavailable("after a message")))).await;
    let ch = with_config(&addr, RETRY, "", Default::default());
    let mut call = ch.call("/r.S/Feed", CallOptions::default()).await.unwrap();
    call.send_last(Bytes::from_static(b"once")).await.unwrap();
    assert_eq!(bounded("first message", call.recv()).await.unwrap().unwrap(), "once");
    let err = bounded("end", call.recv()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(log.lock().unwrap().len(), 1, "committed: not retried");
    assert!(!call.peer().is_empty(), "the committed attempt's peer");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn messages_beyond_the_buffer_limit_commit_the_call() {
    let (s, addr, log) = server(Arc::new(|_| Some(Status::unavailable("down")))).await;
    let opts = ChannelOptions { per_rpc_retry_buffer_size: 10, ..Default::default() };
    let ch = with_config(&addr, RETRY, "", opts);
    // 4 + 4 fit; the third message takes the buffer past 10 bytes: committed.
    let err = sum(&ch, &["1234", "5678", "9abc"]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(*log.lock().unwrap(), vec![seen(None, &["1234", "5678", "9abc"])], "one attempt, every message");
    // Under the limit the same call is retried.
    let err = sum(&ch, &["1234"]).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert_eq!(log.lock().unwrap().len(), 1 + 4);
    // The channel-wide limit commits too (and the buffers are given back:
    // the second call buffers as much as the first).
    let opts = ChannelOptions { retry_buffer_size: 10, ..Default::default() };
    let ch = with_config(&addr, RETRY, "", opts);
    for _ in 0..2 {
        log.lock().unwrap().clear();
        assert_eq!(sum(&ch, &["1234", "5678", "9abc"]).await.unwrap_err().code(), Code::Unavailable);
        assert_eq!(log.lock().unwrap().len(), 1, "committed by the channel's limit");
        assert_eq!(sum(&ch, &["1234"]).await.unwrap_err().code(), Code::Unavailable);
        assert_eq!(log.lock().unwrap().len(), 1 + 4, "within it: retried");
    }
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn other_codes_are_not_retried_and_no_policy_means_one_attempt() {
    let (s, addr, log) = server(Arc::new(|_| Some(Status::internal("bug")))).await;
    let ch = with_config(&addr, RETRY, "", Default::default());
    assert_eq!(sum(&ch, &["x"]).await.unwrap_err().code(), Code::Internal);
    assert_eq!(log.lock().unwrap().len(), 1, "INTERNAL is not retryable here");
    s.shutdown(Duration::from_secs(1)).await;

    let (s, addr, log) = server(Arc::new(|_| Some(Status::unavailable("down")))).await;
    assert_eq!(sum(&channel(&addr), &["x"]).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(log.lock().unwrap().len(), 1, "no retryPolicy");
    // A hedgingPolicy on a streaming method: one attempt (not hedged).
    let hedge = r#""hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0s", "nonFatalStatusCodes": ["UNAVAILABLE"]}"#;
    let ch = with_config(&addr, hedge, "", Default::default());
    assert_eq!(sum(&ch, &["x"]).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(log.lock().unwrap().len(), 2, "hedging is not applied to streaming calls");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn throttling_and_pushback_apply_to_streaming_calls() {
    let (s, addr, log) = server(Arc::new(|_| Some(Status::unavailable("down")))).await;
    let ch =
        with_config(&addr, RETRY, r#", "retryThrottling": {"maxTokens": 3, "tokenRatio": 0.5}"#, Default::default());
    // 3 → 2 (> 1.5, retry) → 1 (stop): two attempts; then 1 → 0: one.
    assert_eq!(sum(&ch, &["x"]).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(log.lock().unwrap().len(), 2);
    assert_eq!(sum(&ch, &["x"]).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(log.lock().unwrap().len(), 3);
    assert_eq!(ch.retry_tokens(), Some(0.0));
    s.shutdown(Duration::from_secs(1)).await;

    // A successful retried call gives a token back.
    let (s, addr, _) = server(Arc::new(|n| (n == 0).then(|| Status::unavailable("once")))).await;
    let ch =
        with_config(&addr, RETRY, r#", "retryThrottling": {"maxTokens": 4, "tokenRatio": 0.5}"#, Default::default());
    assert_eq!(sum(&ch, &["x"]).await.unwrap(), "x");
    assert_eq!(ch.retry_tokens(), Some(3.5), "one failure, one success");
    s.shutdown(Duration::from_secs(1)).await;

    // A negative pushback stops the retries.
    let (s, addr, log) = server(Arc::new(|_| {
        let mut md = Metadata::new();
        md.insert("grpc-retry-pushback-ms", "-1").unwrap();
        Some(Status::unavailable("go away").with_metadata(md))
    }))
    .await;
    let ch = with_config(&addr, RETRY, "", Default::default());
    assert_eq!(sum(&ch, &["x"]).await.unwrap_err().code(), Code::Unavailable);
    assert_eq!(log.lock().unwrap().len(), 1);
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn cancel_and_deadline_end_a_call_waiting_to_retry() {
    // The server asks for a 10 s pause; a cancel ends the call at once.
    let (s, addr, log) = server(Arc::new(|_| {
        let mut md = Metadata::new();
        md.insert("grpc-retry-pushback-ms", "10000").unwrap();
        Some(Status::unavailable("later").with_metadata(md))
    }))
    .await;
    let ch = with_config(&addr, RETRY, "", Default::default());
    let mut call = ch.call("/r.S/Sum", CallOptions::default()).await.unwrap();
    call.send_last(Bytes::from_static(b"x")).await.unwrap();
    wait_until("the first attempt ran", || log.lock().unwrap().len() == 1).await;
    call.cancel();
    assert_eq!(bounded("cancelled", call.recv()).await.unwrap_err().code(), Code::Cancelled);
    // The deadline covers the attempts and the pauses.
    let opts = CallOptions { timeout: Some(Duration::from_millis(300)), ..Default::default() };
    let mut call = ch.call("/r.S/Sum", opts).await.unwrap();
    call.send_last(Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(bounded("deadline", call.recv()).await.unwrap_err().code(), Code::DeadlineExceeded);
    assert_eq!(log.lock().unwrap().len(), 2);
    s.shutdown(Duration::from_secs(1)).await;
}
