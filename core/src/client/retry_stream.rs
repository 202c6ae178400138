//! Retries of streaming calls (gRFC A6), for methods with a `retryPolicy`.
//!
//! A task on the runtime (the driver) runs the attempts while the call is
//! not committed. The caller's halves ([`CallSender`], [`CallReceiver`])
//! talk to it: each message sent is kept (the replay buffer) and written to
//! the current attempt; `send` returns once it went out. When an attempt ends
//! with a retryable code before it commits, the driver waits out the backoff
//! (or the server's `grpc-retry-pushback-ms`), opens the next attempt with
//! `grpc-previous-rpc-attempts`, and replays the buffer and the half-close.
//! The decisions (codes, `maxAttempts`, throttling tokens, pushback,
//! backoff, deadline) are [`Retrier`]'s, the same as for unary calls.
//!
//! The call commits when response headers arrive (or a trailers-only OK),
//! or when the next message would take the buffer past
//! `per_rpc_retry_buffer_size` (or the channel's `retry_buffer_size`). Then
//! the buffer is dropped and the attempt's own halves are handed to the
//! caller's: from there on the call costs what an unretried one does, and
//! is never retried. A stream the server refused unprocessed (GOAWAY) is
//! retried once at once without counting as an attempt.
//!
//! The interceptors and call credentials run once for the call; their
//! observers hear of each attempt (`on_attempt_start` / `on_attempt_end`).
//! Hedging is not done for streaming calls: a method with a
//! `hedgingPolicy` gets a single attempt.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::call::{AttemptInfo, AttemptReceiver, AttemptSender, CallHandle, ClientCall, Prepared};
use super::retry::{buffer_limit, previous_attempts, Retrier};
use super::service_config::{CallConfig, RetryPolicy};
use super::stream::{CallReceiver, CallSender, RecvHandoff};
use super::{CallOptions, Channel};
use crate::status::Status;

/// One operation of the sending half.
#[derive(Debug)]
pub(crate) enum Op {
    Send { msg: Bytes, compress: bool, last: bool },
    Close,
}

async fn run_op(s: &mut AttemptSender, op: Op) -> Result<(), Status> {
    match op {
        Op::Send { msg, compress, last } => s.send_with(msg, compress, last).await,
        Op::Close => s.close_send().await,
    }
}

/// An operation for the driver, and where its result goes.
#[derive(Debug)]
struct Cmd {
    op: Op,
    done: oneshot::Sender<Result<(), Status>>,
}

/// What the sending half gets when the driver stops.
#[derive(Debug)]
enum SendHandoff {
    Attempt(AttemptSender),
    Ended(Status),
}

/// How [`RetrySender::relay`] went.
pub(crate) enum Relayed {
    /// The driver did it.
    Done(Result<(), Status>),
    /// The call committed: do `op` on this attempt, and use it from now on.
    Attempt(AttemptSender, Op),
    /// The call ended with this status.
    Ended(Status),
}

/// The sending half's line to the driver.
#[derive(Debug)]
pub(crate) struct RetrySender {
    cmds: mpsc::Sender<Cmd>,
    handoff: oneshot::Receiver<SendHandoff>,
}

impl RetrySender {
    pub(crate) async fn relay(&mut self, op: Op) -> Relayed {
        let (done, result) = oneshot::channel();
        let op = match self.cmds.send(Cmd { op, done }).await {
            Ok(()) => {
                return Relayed::Done(
                    result.await.unwrap_or_else(|_| Err(Status::internal("the retry driver stopped"))),
                )
            }
            Err(mpsc::error::SendError(cmd)) => cmd.op,
        };
        match (&mut self.handoff).await {
            Ok(SendHandoff::Attempt(a)) => Relayed::Attempt(a, op),
            Ok(SendHandoff::Ended(st)) => Relayed::Ended(st),
            Err(_) => Relayed::Ended(Status::internal("the retry driver stopped")),
        }
    }
}

/// What the driver and the caller's halves and handles share: cancellation
/// (of the current attempt) and the throttle's token for an OK end.
#[derive(Debug)]
pub(crate) struct Ctl {
    ch: Channel,
    state: Mutex<CtlState>,
    notify: Notify,
    credited: AtomicBool,
    halves: AtomicUsize,
}

#[derive(Debug, Default)]
struct CtlState {
    current: Option<CallHandle>,
    cancelled: Option<Status>,
}

impl Ctl {
    fn lock(&self) -> std::sync::MutexGuard<'_, CtlState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Cancels the call: its current attempt, and any later one.
    pub(crate) fn cancel(&self) {
        self.cancel_with(Status::cancelled("call cancelled by the client"));
    }

    fn cancel_with(&self, st: Status) {
        let current = {
            let mut s = self.lock();
            if s.cancelled.is_some() {
                return;
            }
            s.cancelled = Some(st);
            s.current.clone()
        };
        if let Some(h) = current {
            h.cancel();
        }
        self.notify.notify_one();
    }

    fn set_current(&self, h: CallHandle) {
        let cancelled = {
            let mut s = self.lock();
            s.current = Some(h.clone());
            s.cancelled.is_some()
        };
        if cancelled {
            h.cancel();
        }
    }

    fn cancelled_status(&self) -> Option<Status> {
        self.lock().cancelled.clone()
    }

    async fn cancelled(&self) -> Status {
        loop {
            if let Some(st) = self.cancelled_status() {
                return st;
            }
            self.notify.notified().await;
        }
    }

    /// The call ended OK: the throttle gets its token (once).
    pub(crate) fn succeeded(&self) {
        if !self.credited.swap(true, Ordering::AcqRel) {
            if let Some(t) = &self.ch.inner.throttle {
                t.success();
            }
        }
    }
}

/// A half's hold on the [`Ctl`]: when both halves are gone, the call is cancelled.
#[derive(Debug)]
pub(crate) struct Half(Arc<Ctl>);

impl Half {
    pub(crate) fn handle(&self) -> CallHandle {
        CallHandle::retrying(self.0.clone())
    }

    pub(crate) fn ctl(&self) -> &Ctl {
        &self.0
    }
}

impl Drop for Half {
    fn drop(&mut self) {
        if self.0.halves.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.cancel_with(Status::cancelled("call dropped before it finished"));
            self.0.lock().current = None;
        }
    }
}

/// Starts a retried streaming call: the driver runs on the runtime.
pub(crate) fn start(
    ch: &Channel,
    method: &str,
    opts: CallOptions,
    policy: &RetryPolicy,
    config: Arc<CallConfig>,
) -> ClientCall {
    let ctl = Arc::new(Ctl {
        ch: ch.clone(),
        state: Default::default(),
        notify: Notify::new(),
        credited: AtomicBool::new(false),
        halves: AtomicUsize::new(2),
    });
    let (cmd_tx, cmds) = mpsc::channel(1);
    let (send_tx, send_rx) = oneshot::channel();
    let (recv_tx, recv_rx) = oneshot::channel();
    let driver = Driver {
        ch: ch.clone(),
        method: method.to_string(),
        retrier: Retrier::new(ch, policy, opts.deadline.map(Instant::from_std)),
        opts,
        config,
        ctl: ctl.clone(),
        buffer: Vec::new(),
        buffered: 0,
        closed: false,
        pending: None,
        cmds,
        cmds_open: true,
        transparent_used: false,
    };
    ch.inner.opts.spawn(driver.run(send_tx, recv_tx));
    ClientCall::from_halves(
        CallSender::retrying(RetrySender { cmds: cmd_tx, handoff: send_rx }, Half(ctl.clone())),
        CallReceiver::retrying(recv_rx, Half(ctl)),
    )
}

type WriteFut = Pin<Box<dyn Future<Output = (AttemptSender, Result<(), Status>)> + Send>>;

/// The current attempt's sending half: idle, or writing one operation.
enum Writer {
    Idle(AttemptSender),
    Busy(WriteFut),
    Taken,
}

impl Writer {
    fn is_idle(&self) -> bool {
        matches!(self, Writer::Idle(_))
    }

    fn start(&mut self, op: Op) {
        let Writer::Idle(mut s) = std::mem::replace(self, Writer::Taken) else {
            unreachable!("start on a busy writer")
        };
        *self = Writer::Busy(Box::pin(async move {
            let r = run_op(&mut s, op).await;
            (s, r)
        }));
    }

    /// The end of the write in flight (pending while idle).
    async fn wait(&mut self) -> Result<(), Status> {
        match self {
            Writer::Busy(f) => {
                let (s, r) = f.await;
                *self = Writer::Idle(s);
                r
            }
            _ => std::future::pending().await,
        }
    }

    async fn finish(self) -> (AttemptSender, Result<(), Status>) {
        match self {
            Writer::Idle(s) => (s, Ok(())),
            Writer::Busy(f) => f.await,
            Writer::Taken => unreachable!("the writer is never left taken"),
        }
    }
}

/// How an attempt ended for the driver.
enum End {
    /// Committed: hand over `r` at once; finish the replay from `next` (and
    /// the half-close unless `close_sent`) and `over` (the message that did
    /// not fit), then hand over the sender.
    Committed { w: Writer, r: AttemptReceiver, next: usize, close_sent: bool, over: Option<Cmd> },
    /// Failed before committing (`r` is `None` when it never opened).
    Failed { r: Option<AttemptReceiver>, st: Status, unprocessed: bool },
}

struct Driver {
    ch: Channel,
    method: String,
    opts: CallOptions,
    /// The service config's settings for the call (looked up once).
    config: Arc<CallConfig>,
    retrier: Retrier,
    ctl: Arc<Ctl>,
    /// The messages sent so far, with their compress flags.
    buffer: Vec<(Bytes, bool)>,
    /// Their bytes (counted in the channel's `retry_buffered` too).
    buffered: usize,
    /// The caller half-closed.
    closed: bool,
    /// The reply for the caller's operation in progress.
    pending: Option<oneshot::Sender<Result<(), Status>>>,
    cmds: mpsc::Receiver<Cmd>,
    cmds_open: bool,
    /// The one transparent retry was made.
    transparent_used: bool,
}

impl Drop for Driver {
    fn drop(&mut self) {
        self.release();
    }
}

impl Driver {
    async fn run(mut self, send_tx: oneshot::Sender<SendHandoff>, recv_tx: oneshot::Sender<RecvHandoff>) {
        // The interceptors and call credentials: once for the call.
        let prepared = tokio::select! {
            p = self.ch.prepare(&self.method, self.opts.clone(), self.config.clone()) => p,
            st = self.ctl.cancelled() => Err(st),
        };
        let Prepared { opts, observers, config } = match prepared {
            Ok(p) => p,
            Err(st) => {
                let _ = recv_tx.send(RecvHandoff::Ended(st.clone()));
                return self.fail(&st, send_tx);
            }
        };
        let mut transparent = false;
        loop {
            let previous = self.retrier.previous();
            let info = AttemptInfo { previous, transparent, last: false };
            let attempt = self.ch.open_attempt(
                &self.method,
                previous_attempts(&opts, previous),
                observers.clone(),
                info,
                &config,
            );
            let opened = tokio::select! {
                c = attempt => c,
                st = self.ctl.cancelled() => Err(st),
            };
            let end = match opened.map(ClientCall::into_attempt) {
                Err(st) => End::Failed { r: None, st, unprocessed: false },
                Ok(None) => {
                    End::Failed { r: None, st: Status::internal("an attempt cannot retry"), unprocessed: false }
                }
                Ok(Some((s, r))) => {
                    self.ctl.set_current(r.handle());
                    self.attempt(s, r).await
                }
            };
            let (r, st, unprocessed) = match end {
                End::Committed { w, r, next, close_sent, over } => {
                    r.make_last();
                    let _ = recv_tx.send(RecvHandoff::Attempt(r));
                    let s = self.finish_writes(w, next, close_sent, over).await;
                    self.cmds.close();
                    let mut s = s;
                    while let Ok(Cmd { op, done }) = self.cmds.try_recv() {
                        let _ = done.send(run_op(&mut s, op).await);
                    }
                    let _ = send_tx.send(SendHandoff::Attempt(s));
                    return;
                }
                End::Failed { r, st, unprocessed } => (r, st, unprocessed),
            };
            transparent = false;
            let next = if self.ctl.cancelled_status().is_some() {
                Err(st)
            } else if unprocessed && !self.transparent_used {
                self.transparent_used = true;
                transparent = true;
                Ok(())
            } else {
                tokio::select! {
                    next = self.retrier.after_failure(st, false) => next,
                    st = self.ctl.cancelled() => Err(st),
                }
            };
            if let Err(st) = next {
                self.release();
                if let Some(o) = &observers {
                    o.finish(&st);
                }
                // The last attempt's receiver carries the trailers, unless the
                // call ended for another reason (deadline during backoff, cancel).
                let same = |a: &Status| a.code() == st.code() && a.message() == st.message();
                let _ = match r {
                    Some(r) if r.status().is_some_and(same) => recv_tx.send(RecvHandoff::Attempt(r)),
                    _ => recv_tx.send(RecvHandoff::Ended(st.clone())),
                };
                return self.fail(&st, send_tx);
            }
        }
    }

    /// The call failed with `st`: the caller's operations fail with it.
    fn fail(&mut self, st: &Status, send_tx: oneshot::Sender<SendHandoff>) {
        if let Some(p) = self.pending.take() {
            let _ = p.send(Err(st.clone()));
        }
        self.cmds.close();
        while let Ok(Cmd { done, .. }) = self.cmds.try_recv() {
            let _ = done.send(Err(st.clone()));
        }
        let _ = send_tx.send(SendHandoff::Ended(st.clone()));
    }

    /// Runs one attempt until it commits or fails: replays the buffer, then
    /// takes the caller's operations, keeping each message for replay.
    async fn attempt(&mut self, s: AttemptSender, mut r: AttemptReceiver) -> End {
        let mut w = Writer::Idle(s);
        let mut next = 0;
        let mut close_sent = false;
        let mut broken = false;
        loop {
            if !broken && w.is_idle() {
                if next < self.buffer.len() {
                    let (msg, compress) = self.buffer[next].clone();
                    next += 1;
                    let last = self.closed && next == self.buffer.len();
                    close_sent |= last;
                    w.start(Op::Send { msg, compress, last });
                } else if self.closed && !close_sent {
                    close_sent = true;
                    w.start(Op::Close);
                } else if let Some(p) = self.pending.take() {
                    let _ = p.send(Ok(()));
                }
            }
            let take = self.cmds_open && !broken && w.is_idle() && self.pending.is_none();
            tokio::select! {
                biased;
                _ = r.initial_metadata() => {
                    // Response headers (or a trailers-only OK): committed.
                    // Otherwise the attempt failed.
                    if r.headers_received() || r.status().is_some_and(Status::is_ok) {
                        return End::Committed { w, r, next, close_sent, over: None };
                    }
                    let st = r.status().cloned().unwrap_or_else(|| Status::internal("attempt ended without a status"));
                    return End::Failed { unprocessed: r.unprocessed(), r: Some(r), st };
                }
                res = w.wait() => broken = res.is_err(),
                cmd = self.cmds.recv(), if take => match cmd {
                    None => self.cmds_open = false,
                    Some(Cmd { op: Op::Close, done }) => {
                        if self.closed {
                            let _ = done.send(Ok(()));
                        } else {
                            self.closed = true;
                            self.pending = Some(done);
                        }
                    }
                    Some(Cmd { op: Op::Send { msg, compress, last }, done }) => {
                        if self.closed {
                            let _ = done.send(Err(Status::internal("send after the send side was closed")));
                        } else if !self.reserve(msg.len()) {
                            let over = Some(Cmd { op: Op::Send { msg, compress, last }, done });
                            return End::Committed { w, r, next, close_sent, over };
                        } else {
                            self.buffer.push((msg, compress));
                            self.closed = last;
                            self.pending = Some(done);
                        }
                    }
                },
            }
        }
    }

    /// After the commit: the rest of the replay, the half-close, the message
    /// that did not fit; the caller's operation in progress gets its result.
    async fn finish_writes(&mut self, w: Writer, next: usize, close_sent: bool, over: Option<Cmd>) -> AttemptSender {
        let (mut s, mut res) = w.finish().await;
        let mut close_sent = close_sent;
        let n = self.buffer.len();
        for i in next..n {
            if res.is_err() {
                break;
            }
            let (msg, compress) = self.buffer[i].clone();
            let last = self.closed && i + 1 == n;
            close_sent |= last;
            res = s.send_with(msg, compress, last).await;
        }
        if res.is_ok() && self.closed && !close_sent {
            res = s.close_send().await;
        }
        // Committed: the buffer goes (before the caller hears back).
        self.release();
        if let Some(p) = self.pending.take() {
            let _ = p.send(res);
        }
        if let Some(Cmd { op, done }) = over {
            let _ = done.send(run_op(&mut s, op).await);
        }
        s
    }

    /// Takes `n` more bytes into the buffer, if both limits allow.
    fn reserve(&mut self, n: usize) -> bool {
        if self.buffered + n > buffer_limit(&self.ch) {
            return false;
        }
        let total = &self.ch.inner.retry_buffered;
        if total.fetch_add(n, Ordering::AcqRel) + n > self.ch.inner.opts.retry_buffer_size {
            total.fetch_sub(n, Ordering::AcqRel);
            return false;
        }
        self.buffered += n;
        true
    }

    /// Drops the buffer (after the commit, or at the end).
    fn release(&mut self) {
        self.ch.inner.retry_buffered.fetch_sub(self.buffered, Ordering::AcqRel);
        self.buffered = 0;
        self.buffer = Vec::new();
    }
}
