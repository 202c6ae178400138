//! Retries and hedging of unary calls (gRFC A6), driven by the method's
//! `retryPolicy` / `hedgingPolicy` in the service config, with the channel's
//! `retryThrottling` token bucket; and [`Retrier`], the retry decisions that
//! streaming calls (`retry_stream.rs`) share.
//!
//! - Retry: an attempt that ends with a code in `retryableStatusCodes`
//!   before the server sent response headers (a trailers-only answer: not
//!   committed) is tried again, up to `maxAttempts`, after
//!   `random(0, min(initialBackoff * multiplier^(n-1), maxBackoff))`. A
//!   `grpc-retry-pushback-ms` trailer overrides the delay (and resets the
//!   backoff); a negative or malformed one stops retrying.
//! - Hedging: the first attempt goes out at once, another every
//!   `hedgingDelay` while none has finished, up to `maxAttempts`. The first
//!   OK or fatal answer wins and the others are cancelled; a non-fatal code
//!   sends the next attempt at once (pushback delays or stops it).
//! - Throttling: every attempt failing with a retryable (or non-fatal) code
//!   takes a token, every OK call gives `tokenRatio` back; retries and extra
//!   hedges go out only while tokens > maxTokens / 2.
//! - The call's deadline covers all attempts. A stream the server refused
//!   unprocessed (GOAWAY) is retried transparently without counting.
//!
//! - A request larger than `per_rpc_retry_buffer_size` commits the call.
//!
//! Streaming calls: see `retry_stream.rs` (retries, no hedging).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::call::{AttemptInfo, Prepared};
use super::service_config::{CallConfig, HedgingPolicy, RetryPolicy, RetryThrottling};
use super::{CallOptions, Channel, UnaryResponse};
use crate::status::{Code, Status};

/// The channel's retry token bucket.
#[derive(Debug)]
pub(crate) struct Throttle {
    max: f64,
    ratio: f64,
    tokens: Mutex<f64>,
}

impl Throttle {
    pub(crate) fn new(t: &RetryThrottling) -> Throttle {
        Throttle { max: t.max_tokens, ratio: t.token_ratio, tokens: Mutex::new(t.max_tokens) }
    }
    fn failure(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = (*t - 1.0).max(0.0);
    }
    pub(super) fn success(&self) {
        let mut t = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        *t = (*t + self.ratio).min(self.max);
    }
    fn allows_retry(&self) -> bool {
        *self.tokens.lock().unwrap_or_else(|e| e.into_inner()) > self.max / 2.0
    }
    /// The current token count (for tests).
    pub(crate) fn tokens(&self) -> f64 {
        *self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How one attempt ended.
struct Attempt {
    result: Result<UnaryResponse, Status>,
    /// Response headers arrived before the end: committed.
    committed: bool,
}

/// One attempt (`previous` came before), with the transparent retry of a
/// stream refused unprocessed.
async fn attempt(ch: &Channel, method: &str, request: &Bytes, call: &Prepared, previous: u32) -> Attempt {
    let mut transparent = false;
    loop {
        let opts = previous_attempts(&call.opts, previous);
        let info = AttemptInfo { previous, transparent, last: false };
        let mut c = match ch.open_attempt(method, opts, call.observers.clone(), info, &call.config).await {
            Ok(c) => c,
            Err(st) => return Attempt { result: Err(st), committed: false },
        };
        let r = match c.send_last(request.clone()).await {
            Ok(()) => c.recv_unary().await,
            Err(e) => Err(e),
        };
        if r.is_err() && !transparent && c.unprocessed() {
            transparent = true;
            continue;
        }
        return Attempt { committed: c.headers_received(), result: r };
    }
}

/// Tells the observers how the call ended (after its last attempt).
fn finish(call: &Prepared, result: &Result<UnaryResponse, Status>) {
    if let Some(o) = &call.observers {
        match result {
            Ok(r) => o.finish(&Status::ok().with_metadata(r.trailing_metadata.clone())),
            Err(st) => o.finish(st),
        }
    }
}

/// The options of attempt `n + 1`: `grpc-previous-rpc-attempts: n` on retries (A6).
pub(crate) fn previous_attempts(opts: &CallOptions, n: u32) -> CallOptions {
    let mut o = opts.clone();
    if n > 0 {
        o.metadata.remove("grpc-previous-rpc-attempts");
        let _ = o.metadata.insert("grpc-previous-rpc-attempts", n.to_string());
    }
    o
}

/// A unary call without a retry policy: one attempt (plus the transparent retry).
pub(crate) async fn unary_once(
    ch: &Channel,
    method: &str,
    request: Bytes,
    opts: CallOptions,
    config: Arc<CallConfig>,
) -> Result<UnaryResponse, Status> {
    let call = ch.prepare(method, opts, config).await?;
    let r = attempt(ch, method, &request, &call, 0).await.result;
    finish(&call, &r);
    r
}

/// What the server's `grpc-retry-pushback-ms` says: `None` (absent),
/// `Some(None)` (do not retry), `Some(Some(delay))`.
fn pushback(st: &Status) -> Option<Option<Duration>> {
    let v = st.metadata().get("grpc-retry-pushback-ms")?;
    Some(v.trim().parse::<i64>().ok().filter(|ms| *ms >= 0).map(|ms| Duration::from_millis(ms as u64)))
}

fn jitter(max: Duration) -> Duration {
    max.mul_f64(super::conn::rand_unit())
}

/// Sleeps `d`, unless the deadline comes first: then DEADLINE_EXCEEDED.
async fn backoff(d: Duration, deadline: Option<Instant>) -> Result<(), Status> {
    let until = Instant::now() + d;
    match deadline {
        Some(dl) if dl <= until => {
            tokio::time::sleep_until(dl).await;
            Err(Status::deadline_exceeded("context deadline exceeded"))
        }
        _ => {
            tokio::time::sleep_until(until).await;
            Ok(())
        }
    }
}

/// The retry decisions of one call (gRFC A6), shared by unary calls and
/// streaming calls (`retry_stream.rs`): which failures are retried, the
/// throttling tokens, the server's pushback, the backoff and the deadline.
#[derive(Debug)]
pub(crate) struct Retrier {
    ch: Channel,
    policy: RetryPolicy,
    deadline: Option<Instant>,
    next_backoff: Duration,
    /// Attempts that ended (transparent retries do not count).
    done: u32,
}

impl Retrier {
    pub(crate) fn new(ch: &Channel, policy: &RetryPolicy, deadline: Option<Instant>) -> Retrier {
        Retrier { ch: ch.clone(), policy: policy.clone(), deadline, next_backoff: policy.initial_backoff, done: 0 }
    }

    fn throttle(&self) -> Option<&Throttle> {
        self.ch.inner.throttle.as_ref()
    }

    /// How many attempts came before the next one (`grpc-previous-rpc-attempts`).
    pub(crate) fn previous(&self) -> u32 {
        self.done
    }

    /// The call ended OK: a token back.
    pub(crate) fn succeeded(&self) {
        if let Some(t) = self.throttle() {
            t.success();
        }
    }

    /// An attempt failed with `st`. `Ok(())` once the backoff (or the
    /// server's pushback) has passed and the next attempt may start;
    /// `Err(status)`, the call's final status, when it may not: the code is
    /// not retryable, the call is committed, `maxAttempts` is reached, the
    /// throttle is below half, the pushback says stop, or the deadline comes
    /// first (DEADLINE_EXCEEDED).
    pub(crate) async fn after_failure(&mut self, st: Status, committed: bool) -> Result<(), Status> {
        self.done += 1;
        let retryable = self.policy.retryable_status_codes.contains(&st.code());
        if retryable {
            if let Some(t) = self.throttle() {
                t.failure();
            }
        }
        if !retryable || committed || self.done >= self.policy.max_attempts || st.code() == Code::DeadlineExceeded {
            return Err(st);
        }
        if self.throttle().is_some_and(|t| !t.allows_retry()) {
            return Err(st);
        }
        let delay = match pushback(&st) {
            Some(None) => return Err(st),
            Some(Some(d)) => {
                self.next_backoff = self.policy.initial_backoff;
                d
            }
            None => {
                let d = jitter(self.next_backoff);
                self.next_backoff =
                    self.next_backoff.mul_f64(self.policy.backoff_multiplier).min(self.policy.max_backoff);
                d
            }
        };
        backoff(delay, self.deadline).await
    }
}

/// The largest message (unary request, or the sum of a stream's requests)
/// kept for replay: beyond it the call is committed (A6; grpc-go's
/// `perRPCBufferLimit`).
pub(crate) fn buffer_limit(ch: &Channel) -> usize {
    ch.inner.opts.per_rpc_retry_buffer_size
}

pub(crate) async fn unary_with_retry(
    ch: &Channel,
    method: &str,
    request: Bytes,
    opts: CallOptions,
    policy: &RetryPolicy,
    config: Arc<CallConfig>,
) -> Result<UnaryResponse, Status> {
    let call = ch.prepare(method, opts, config).await?;
    let mut r = Retrier::new(ch, policy, call.opts.deadline.map(Instant::from_std));
    // A request too large to keep commits the call: one attempt.
    let too_big = request.len() > buffer_limit(ch);
    let result = loop {
        let a = attempt(ch, method, &request, &call, r.previous()).await;
        match a.result {
            Ok(resp) => {
                r.succeeded();
                break Ok(resp);
            }
            Err(st) => {
                if let Err(st) = r.after_failure(st, a.committed || too_big).await {
                    break Err(st);
                }
            }
        }
    };
    finish(&call, &result);
    result
}

pub(crate) async fn unary_hedged(
    ch: &Channel,
    method: &str,
    request: Bytes,
    opts: CallOptions,
    policy: &HedgingPolicy,
    throttle: Option<&Throttle>,
    config: Arc<CallConfig>,
) -> Result<UnaryResponse, Status> {
    let deadline = opts.deadline.map(Instant::from_std);
    let mut running = tokio::task::JoinSet::new();
    // Each hedge is a call of its own to the interceptors (they run in its task).
    let spawn = |running: &mut tokio::task::JoinSet<Attempt>, sent: u32| {
        let (ch, method, request, opts) = (ch.clone(), method.to_string(), request.clone(), opts.clone());
        let config = config.clone();
        running.spawn(async move {
            let call = match ch.prepare(&method, opts, config).await {
                Ok(c) => c,
                Err(st) => return Attempt { result: Err(st), committed: false },
            };
            let a = attempt(&ch, &method, &request, &call, sent).await;
            finish(&call, &a.result);
            a
        });
    };
    spawn(&mut running, 0);
    let mut sent = 1;
    let mut next_at = Some(Instant::now() + policy.hedging_delay);
    let mut last: Option<Status> = None;
    loop {
        let can_hedge = sent < policy.max_attempts && !throttle.is_some_and(|t| !t.allows_retry());
        let timer = async {
            match next_at {
                Some(t) if can_hedge => tokio::time::sleep_until(t).await,
                _ => std::future::pending().await,
            }
        };
        let dl = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            done = running.join_next(), if !running.is_empty() => {
                let a = match done {
                    None => return Err(last.unwrap_or_else(|| Status::internal("hedging: no attempt ran"))),
                    Some(Ok(a)) => a,
                    Some(Err(e)) => Attempt { result: Err(Status::internal(format!("hedged attempt failed: {e}"))), committed: false },
                };
                match a.result {
                    Ok(r) => {
                        if let Some(t) = throttle {
                            t.success();
                        }
                        return Ok(r); // dropping `running` cancels the other attempts
                    }
                    Err(st) => {
                        let non_fatal = policy.non_fatal_status_codes.contains(&st.code());
                        if !non_fatal || a.committed {
                            return Err(st);
                        }
                        if let Some(t) = throttle {
                            t.failure();
                        }
                        match pushback(&st) {
                            Some(None) => next_at = None,
                            Some(Some(d)) => next_at = Some(Instant::now() + d),
                            None => next_at = Some(Instant::now()),
                        }
                        last = Some(st);
                        if running.is_empty() && (next_at.is_none() || sent >= policy.max_attempts || throttle.is_some_and(|t| !t.allows_retry())) {
                            return Err(last.take().unwrap_or_else(|| Status::internal("hedging failed")));
                        }
                    }
                }
            }
            _ = timer => {
                spawn(&mut running, sent);
                sent += 1;
                next_at = Some(Instant::now() + policy.hedging_delay);
            }
            _ = dl => return Err(Status::deadline_exceeded("context deadline exceeded")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushback_values() {
        let with = |v: &str| {
            let mut md = crate::Metadata::new();
            md.insert("grpc-retry-pushback-ms", v).unwrap();
            Status::unavailable("x").with_metadata(md)
        };
        assert_eq!(pushback(&Status::unavailable("x")), None);
        assert_eq!(pushback(&with("250")), Some(Some(Duration::from_millis(250))));
        assert_eq!(pushback(&with("-1")), Some(None));
        assert_eq!(pushback(&with("soon")), Some(None));
    }

    #[test]
    fn jitter_stays_in_range_and_throttle_counts() {
        for _ in 0..1000 {
            assert!(jitter(Duration::from_millis(10)) < Duration::from_millis(10));
        }
        let t = Throttle::new(&RetryThrottling { max_tokens: 4.0, token_ratio: 0.5 });
        assert!(t.allows_retry());
        t.failure();
        assert!(t.allows_retry(), "3 > 2");
        t.failure();
        assert!(!t.allows_retry(), "2 is not > 2");
        t.success();
        assert!(t.allows_retry(), "2.5 > 2");
        for _ in 0..10 {
            t.success();
        }
        assert_eq!(t.tokens(), 4.0, "capped at max");
    }
}
