//! The service config: load-balancing policy selection, per-method timeout,
//! waitForReady and message size limits, retry/hedging/throttling parsing
//! (gRFC A6), and clear errors for invalid configs.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use grpc_core::client::{LbPolicy, ServiceConfig};
use grpc_core::{CallOptions, Channel, ChannelOptions, Code, MethodKind, Server, ServerCall, ServerOptions, Status};

async fn slow(mut call: ServerCall) -> Status {
    let _ = call.recv().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = call.send(Bytes::from_static(b"late")).await;
    Status::ok()
}

fn with_config(json: &str) -> ChannelOptions {
    ChannelOptions { service_config: Some(json.into()), ..Default::default() }
}

const METHODS: &str = r#"{
  "methodConfig": [
    {"name": [{"service": "sc.S", "method": "Slow"}], "timeout": "0.2s"},
    {"name": [{"service": "sc.S"}], "timeout": "10s", "maxRequestMessageBytes": 1024, "maxResponseMessageBytes": "2048"},
    {"name": [{"service": "sc.Wait"}], "waitForReady": true, "timeout": "0.5s"},
    {"name": [{"service": "sc.NoWait"}], "waitForReady": false}
  ]
}"#;

#[tokio::test]
async fn per_method_timeout_and_wait_for_ready_apply() {
    let (s, addr) = start(
        Server::builder(ServerOptions::default())
            .register("/sc.S/Slow", MethodKind::Unary, slow)
            .unwrap()
            .register("/sc.S/Echo", MethodKind::Unary, echo)
            .unwrap(),
    )
    .await;
    let ch = Channel::new(&addr, with_config(METHODS)).unwrap();
    // The method's 0.2 s timeout cuts the 3 s handler short.
    let t0 = Instant::now();
    let e = bounded("slow", ch.unary("/sc.S/Slow", Bytes::new(), CallOptions::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
    assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
    // A shorter timeout of the call's own wins.
    let t0 = Instant::now();
    let opts = CallOptions { timeout: Some(Duration::from_millis(50)), ..Default::default() };
    let e = ch.unary("/sc.S/Slow", Bytes::new(), opts).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded);
    assert!(t0.elapsed() < Duration::from_millis(190), "{:?}", t0.elapsed());
    // Other methods of the service are unaffected by the Slow entry.
    let r = ch.unary("/sc.S/Echo", Bytes::from_static(b"hi"), CallOptions::default()).await.unwrap();
    assert_eq!(&r.message[..], b"hi");

    // waitForReady from the config: a call to a dead port waits (until the
    // config's timeout) instead of failing fast with UNAVAILABLE.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let ch = Channel::new(&dead.to_string(), with_config(METHODS)).unwrap();
    let t0 = Instant::now();
    let e = bounded("wait", ch.unary("/sc.Wait/M", Bytes::new(), CallOptions::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::DeadlineExceeded, "{e}");
    assert!(t0.elapsed() >= Duration::from_millis(450), "{:?}", t0.elapsed());
    // A method without config fails fast.
    let e = bounded("fail fast", ch.unary("/other.S/M", Bytes::new(), CallOptions::default())).await.unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    s.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn per_method_message_size_limits() {
    let opts = ChannelOptions { max_recv_message_size: 1000, ..with_config(METHODS) };
    let ch = Channel::new("127.0.0.1:1", opts).unwrap();
    // The smaller of the channel's and the method's limits.
    let c = ch.call_config("/sc.S/Echo", &CallOptions::default());
    assert_eq!(c.max_send_message_size, 1024);
    assert_eq!(c.max_recv_message_size, 1000);
    assert!(c.deadline.is_some());
    assert!(!c.wait_for_ready);
    let c = ch.call_config("/sc.Wait/M", &CallOptions::default());
    assert!(c.wait_for_ready);
    // The call's own wait-for-ready wins over the config's false (grpc-go).
    let wfr = CallOptions { wait_for_ready: true, ..Default::default() };
    assert!(ch.call_config("/sc.NoWait/M", &wfr).wait_for_ready);
    assert!(!ch.call_config("/sc.NoWait/M", &CallOptions::default()).wait_for_ready);
    assert_eq!(c.max_send_message_size, usize::MAX);
    let c = ch.call_config("/x.Y/Z", &CallOptions::default());
    assert!(c.deadline.is_none() && c.method_config.is_none());
    let mc = ch.service_config().method_config("/sc.S/Echo").unwrap();
    assert_eq!(mc.max_response_message_bytes, Some(2048));
    assert_eq!(mc.timeout, Some(Duration::from_secs(10)));
}

#[test]
fn lb_policy_selection() {
    let p = |j: &str| ServiceConfig::parse(j).unwrap().lb_policy().clone();
    assert_eq!(p("{}"), LbPolicy::PickFirst { shuffle_address_list: false });
    assert_eq!(p(r#"{"loadBalancingConfig":[{"round_robin":{}}]}"#), LbPolicy::RoundRobin);
    // The first supported policy wins; unknown ones are skipped.
    assert_eq!(
        p(r#"{"loadBalancingConfig":[{"grpclb":{}},{"pick_first":{}},{"round_robin":{}}]}"#),
        LbPolicy::default()
    );
    assert_eq!(
        p(r#"{"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":true}}]}"#),
        LbPolicy::PickFirst { shuffle_address_list: true }
    );
    assert_eq!(p(r#"{"loadBalancingPolicy":"ROUND_ROBIN"}"#), LbPolicy::RoundRobin);
    // loadBalancingConfig wins over the legacy field.
    assert_eq!(
        p(r#"{"loadBalancingPolicy":"round_robin","loadBalancingConfig":[{"pick_first":{}}]}"#),
        LbPolicy::default()
    );
    let sc = ServiceConfig::parse(r#"{"healthCheckConfig":{"serviceName":"a.B"}}"#).unwrap();
    assert_eq!(sc.health_check_service(), Some("a.B"));
}

#[test]
fn retry_hedging_and_throttling_parse() {
    let sc = ServiceConfig::parse(
        r#"{
      "methodConfig": [
        {"name": [{"service": "r.S"}],
         "retryPolicy": {"maxAttempts": 7, "initialBackoff": "0.1s", "maxBackoff": "1s",
                         "backoffMultiplier": 2, "retryableStatusCodes": ["UNAVAILABLE", 10, "unavailable"]}},
        {"name": [{"service": "h.S"}],
         "hedgingPolicy": {"maxAttempts": 3, "hedgingDelay": "0.05s", "nonFatalStatusCodes": ["UNAVAILABLE"]}}
      ],
      "retryThrottling": {"maxTokens": 10, "tokenRatio": 0.12345}
    }"#,
    )
    .unwrap();
    let r = sc.method_config("/r.S/M").unwrap().retry_policy.clone().unwrap();
    assert_eq!(r.max_attempts, 5, "capped at 5");
    assert_eq!(r.initial_backoff, Duration::from_millis(100));
    assert_eq!(r.max_backoff, Duration::from_secs(1));
    assert_eq!(r.backoff_multiplier, 2.0);
    assert_eq!(r.retryable_status_codes, vec![Code::Unavailable, Code::Aborted]);
    let h = sc.method_config("/h.S/M").unwrap().hedging_policy.clone().unwrap();
    assert_eq!((h.max_attempts, h.hedging_delay), (3, Duration::from_millis(50)));
    assert_eq!(h.non_fatal_status_codes, vec![Code::Unavailable]);
    let t = sc.retry_throttling().unwrap();
    assert_eq!((t.max_tokens, t.token_ratio), (10.0, 0.123));
}

#[test]
fn invalid_configs_are_rejected_with_a_clear_message() {
    let cases = [
        ("not json", "not JSON"),
        ("[]", "JSON object"),
        (r#"{"loadBalancingConfig":[{"weird":{}}]}"#, "no supported policy"),
        (r#"{"loadBalancingConfig":{"round_robin":{}}}"#, "must be an array"),
        (r#"{"loadBalancingPolicy":"nope"}"#, "unsupported loadBalancingPolicy"),
        (r#"{"methodConfig":[{"name":[{"method":"M"}]}]}"#, "needs a service name"),
        (r#"{"methodConfig":[{"name":[{"service":"a"}]},{"name":[{"service":"a"}]}]}"#, "duplicate name"),
        (r#"{"methodConfig":[{"name":[{}]},{"name":[{"service":""}]}]}"#, "duplicate name"),
        (r#"{"methodConfig":[{"name":[{"service":"a"}],"timeout":"1m"}]}"#, "timeout"),
        (r#"{"methodConfig":[{"name":[{"service":"a"}],"timeout":5}]}"#, "timeout"),
        (r#"{"methodConfig":[{"name":[{"service":"a"}],"waitForReady":"yes"}]}"#, "waitForReady"),
        (r#"{"methodConfig":[{"name":[{"service":"a"}],"maxRequestMessageBytes":-1}]}"#, "maxRequestMessageBytes"),
        (
            r#"{"methodConfig":[{"name":[{"service":"a"}],"retryPolicy":{"maxAttempts":1,"initialBackoff":"1s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}"#,
            "maxAttempts",
        ),
        (
            r#"{"methodConfig":[{"name":[{"service":"a"}],"retryPolicy":{"maxAttempts":2,"initialBackoff":"0s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]}}]}"#,
            "initialBackoff",
        ),
        (
            r#"{"methodConfig":[{"name":[{"service":"a"}],"retryPolicy":{"maxAttempts":2,"initialBackoff":"1s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":[]}}]}"#,
            "retryableStatusCodes",
        ),
        (
            r#"{"methodConfig":[{"name":[{"service":"a"}],"retryPolicy":{"maxAttempts":2,"initialBackoff":"1s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["NOPE"]}}]}"#,
            "unknown status code",
        ),
        (
            r#"{"methodConfig":[{"name":[{"service":"a"}],"retryPolicy":{"maxAttempts":2,"initialBackoff":"1s","maxBackoff":"1s","backoffMultiplier":2,"retryableStatusCodes":["UNAVAILABLE"]},"hedgingPolicy":{"maxAttempts":2}}]}"#,
            "not both",
        ),
        (r#"{"retryThrottling":{"maxTokens":0,"tokenRatio":1}}"#, "maxTokens"),
        (r#"{"retryThrottling":{"maxTokens":1001,"tokenRatio":1}}"#, "maxTokens"),
        (r#"{"retryThrottling":{"maxTokens":10,"tokenRatio":0}}"#, "tokenRatio"),
        (r#"{"healthCheckConfig":{"serviceName":3}}"#, "serviceName"),
    ];
    for (json, want) in cases {
        let e = Channel::new("127.0.0.1:1", with_config(json)).expect_err(json);
        assert_eq!(e.kind(), grpc_core::ErrorKind::InvalidArgument);
        assert!(e.message().contains("invalid service config") && e.message().contains(want), "{json}: {e}");
    }
}
