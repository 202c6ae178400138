//! One client call of any kind: send side and receive side, usable together
//! or split across tasks, cancellable from any thread, with the deadline
//! enforced by a timer that resets the stream on time.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request};
use std::task::{Poll, Waker};

use super::conn::Ready;
use super::retry_stream::Ctl;
use super::stream::{CallReceiver, CallSender};
use super::{CallConfig, CallOptions, ChannelInner};
use crate::auth::AuthMetadataContext;
use crate::codec::{accept_encoding_header, frame_parts, Compression, Decoder, Received};
use crate::h2io::{write_parts, WriteError};
use crate::interceptor::{ClientCallHead, Observers};
use crate::metadata::{encode_timeout, Metadata};
use crate::status::{code_from_http, Code, Status};
use crate::wire::{is_grpc_content_type, status_from_headers, CONTENT_TYPE};

/// The result of a unary call.
#[derive(Clone, Debug)]
pub struct UnaryResponse {
    /// The response message.
    pub message: Bytes,
    /// Response headers.
    pub initial_metadata: Metadata,
    /// Response trailers.
    pub trailing_metadata: Metadata,
    /// The server address that answered (`ip:port` or `unix:path`).
    pub peer: String,
}

#[derive(Debug)]
struct Shared {
    stream: Mutex<Option<h2::SendStream<Bytes>>>,
    cancelled: Mutex<Option<Status>>,
    is_cancelled: AtomicBool,
    done: AtomicBool,
    /// The tasks waiting in [`Shared::or_cancel`] on the send and on the
    /// receive side (each side has one waiter at a time), woken by a cancel.
    wakers: [Mutex<Option<Waker>>; 2],
    timer: Mutex<Option<tokio::task::AbortHandle>>,
    /// The call's deadline, to tell a server-side deadline reset from a cancel.
    deadline: Option<tokio::time::Instant>,
    conn: Ready,
    /// The server's GOAWAY(NO_ERROR) named a last stream below ours: it never
    /// processed this call, so the call may be retried on a new connection.
    unprocessed: AtomicBool,
    /// What the interceptors watch (none without interceptors).
    observers: Option<Arc<Observers>>,
    /// This attempt's end is the call's end (see [`AttemptInfo::last`]).
    last: AtomicBool,
}

impl Shared {
    fn cancel_with(&self, status: Status) {
        if self.done.load(Ordering::Acquire) || self.is_cancelled.swap(true, Ordering::AcqRel) {
            return;
        }
        *self.cancelled.lock().unwrap_or_else(|e| e.into_inner()) = Some(status);
        if let Some(s) = self.stream.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            s.send_reset(h2::Reason::CANCEL);
        }
        for slot in &self.wakers {
            if let Some(w) = slot.lock().unwrap_or_else(|e| e.into_inner()).take() {
                w.wake();
            }
        }
    }

    /// The status an h2 error ends the call with. A RST_STREAM(CANCEL) that
    /// arrives once our deadline has passed is the server enforcing that
    /// deadline: DEADLINE_EXCEEDED, as grpc-go and grpc-java report it.
    fn h2_status(&self, e: &h2::Error) -> Status {
        self.ended_status(Status::from_h2(e))
    }

    /// The status of a send on a stream that is already closed: the
    /// server reset it (its deadline enforcement races ours) or ended the
    /// call; like a RST_STREAM(CANCEL) (recv/finish tell how it ended).
    fn closed_status(&self) -> Status {
        self.ended_status(Status::cancelled("the stream is closed"))
    }

    /// Our cancel's status if there was one; a CANCELLED once the deadline
    /// passed is the deadline.
    fn ended_status(&self, st: Status) -> Status {
        if let Some(s) = self.cancel_status() {
            return s;
        }
        if st.code() == Code::Cancelled && self.deadline.is_some_and(|d| d <= tokio::time::Instant::now()) {
            return Status::deadline_exceeded("context deadline exceeded");
        }
        st
    }

    fn cancel_status(&self) -> Option<Status> {
        if !self.is_cancelled.load(Ordering::Acquire) {
            return None;
        }
        self.cancelled.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Runs `f` unless the call is (or gets) cancelled. `side`: [`SEND`] or
    /// [`RECV`], whose waker slot the cancel wakes. A waker slot rather than a
    /// `Notify`: registering in a `Notify` took its lock twice per wait
    /// (enable and drop), and every receive step waits.
    async fn or_cancel<F: Future>(&self, side: usize, f: F) -> Result<F::Output, Status> {
        let mut f = std::pin::pin!(f);
        std::future::poll_fn(|cx| {
            {
                let mut slot = self.wakers[side].lock().unwrap_or_else(|e| e.into_inner());
                match slot.as_ref() {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    _ => *slot = Some(cx.waker().clone()),
                }
            }
            // After registering: a cancel stores its status before it takes
            // the wakers, so either this sees the status or the cancel wakes us.
            if let Some(s) = self.cancel_status() {
                return Poll::Ready(Err(s));
            }
            f.as_mut().poll(cx).map(Ok)
        })
        .await
    }
}

/// [`Shared::or_cancel`]'s sides.
const SEND: usize = 0;
const RECV: usize = 1;

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(t) = self.timer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            t.abort();
        }
        self.conn.active_calls.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A thread-safe handle that cancels its call.
#[derive(Clone, Debug)]
pub struct CallHandle(HandleOf);

/// One attempt, or a call that may be retried (its current attempt).
#[derive(Clone, Debug)]
enum HandleOf {
    Attempt(Arc<Shared>),
    Retrying(Arc<Ctl>),
}

impl CallHandle {
    pub(crate) fn retrying(ctl: Arc<Ctl>) -> CallHandle {
        CallHandle(HandleOf::Retrying(ctl))
    }

    /// Cancels the call: RST_STREAM(CANCEL) goes out and every pending or
    /// later operation ends with CANCELLED. No effect once the call finished.
    pub fn cancel(&self) {
        match &self.0 {
            HandleOf::Attempt(s) => s.cancel_with(Status::cancelled("call cancelled by the client")),
            HandleOf::Retrying(c) => c.cancel(),
        }
    }
}

/// The sending half of one attempt (the public [`CallSender`] wraps it).
#[derive(Debug)]
pub(crate) struct AttemptSender {
    shared: Arc<Shared>,
    compression: Option<Compression>,
    max_send: usize,
    half_closed: bool,
    /// Something was written (the first write may skip the capacity wait, see `write_parts`).
    wrote: bool,
}

enum RecvState {
    Headers(h2::client::ResponseFuture),
    Body(h2::RecvStream),
    Done(Status),
}

impl std::fmt::Debug for RecvState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RecvState::Headers(_) => f.write_str("Headers"),
            RecvState::Body(_) => f.write_str("Body"),
            RecvState::Done(s) => write!(f, "Done({s})"),
        }
    }
}

/// The receiving half of one attempt (the public [`CallReceiver`] wraps it).
#[derive(Debug)]
pub(crate) struct AttemptReceiver {
    shared: Arc<Shared>,
    state: RecvState,
    decoder: Decoder,
    initial_metadata: Option<Metadata>,
    /// Messages read ahead while settling a failed send, for `recv` to return.
    early: std::collections::VecDeque<Received>,
    /// Response headers arrived (not a trailers-only response): the call is
    /// committed for retries (gRFC A6).
    headers_received: bool,
}

/// A client call: send messages, half-close, receive messages and the status.
#[derive(Debug)]
pub struct ClientCall {
    sender: CallSender,
    receiver: CallReceiver,
}

pub(super) async fn start(
    inner: &Arc<ChannelInner>,
    method: &str,
    opts: CallOptions,
    config: Arc<CallConfig>,
) -> Result<ClientCall, Status> {
    let p = prepare(inner, method, opts, config).await?;
    let info = AttemptInfo { previous: 0, transparent: false, last: true };
    open_attempt(inner, method, p.opts, p.observers, info, &p.config).await
}

/// A call after [`prepare`]: what every attempt of it starts from.
#[derive(Debug)]
pub(crate) struct Prepared {
    /// The options, deadline made absolute, metadata as the interceptors
    /// and call credentials left it.
    pub(crate) opts: CallOptions,
    /// What the interceptors watch (none without interceptors).
    pub(crate) observers: Option<Arc<Observers>>,
    /// The service config's settings for the call, looked up once by
    /// `Channel::call`/`Channel::unary` (size limits, retry policy).
    pub(crate) config: Arc<CallConfig>,
}

/// Validates a call and runs the interceptors and call credentials, within
/// the deadline: once per call, however many attempts follow. `opts`
/// already carry `config` (its deadline and wait-for-ready).
pub(super) async fn prepare(
    inner: &Arc<ChannelInner>,
    method: &str,
    mut opts: CallOptions,
    config: Arc<CallConfig>,
) -> Result<Prepared, Status> {
    let deadline = opts.deadline();
    if let Some(d) = deadline {
        if d <= tokio::time::Instant::now() {
            return Err(Status::deadline_exceeded("context deadline exceeded"));
        }
    }
    if !method.starts_with('/') {
        return Err(Status::invalid_argument(format!("malformed method name {method:?}: must start with '/'")));
    }
    opts.deadline = deadline.map(tokio::time::Instant::into_std);
    opts.timeout = None;
    let has_creds = inner.opts.call_credentials.is_some() || opts.credentials.is_some();
    if inner.opts.interceptors.is_empty() && !has_creds {
        return Ok(Prepared { opts, observers: None, config });
    }
    let prelude = prelude(inner, method, opts, deadline);
    let (opts, observers) = match deadline {
        Some(d) => tokio::time::timeout_at(d, prelude)
            .await
            .map_err(|_| Status::deadline_exceeded("context deadline exceeded"))??,
        None => prelude.await?,
    };
    Ok(Prepared { opts, observers: (!observers.is_empty()).then(|| Arc::new(observers)), config })
}

/// An attempt of a call, for its observers.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AttemptInfo {
    /// Attempts before this one (`grpc-previous-rpc-attempts`).
    pub(crate) previous: u32,
    /// A transparent retry (the server refused the last one unprocessed).
    pub(crate) transparent: bool,
    /// The call's only attempt: its end is the call's end. Otherwise the
    /// retry code ends the call ([`AttemptReceiver::make_last`], `Observers::finish`).
    pub(crate) last: bool,
}

/// Opens one attempt of a call [`prepare`]d before.
pub(super) async fn open_attempt(
    inner: &Arc<ChannelInner>,
    method: &str,
    mut opts: CallOptions,
    observers: Option<Arc<Observers>>,
    info: AttemptInfo,
    config: &CallConfig,
) -> Result<ClientCall, Status> {
    if let Some(o) = &observers {
        o.attempt_start(info.previous, info.transparent, &mut opts.metadata);
    }
    let deadline = opts.deadline();
    let limits = (config.max_send_message_size, config.max_recv_message_size);
    let r = open(inner, method, opts, deadline, observers.clone(), info.last, limits).await;
    if let (Err(st), Some(o)) = (&r, &observers) {
        o.attempt_end(st);
        if info.last {
            o.finish(st);
        }
    }
    r
}

/// Runs the client interceptors and the call credentials; gives back the
/// options with the final metadata, and the observers of the call.
async fn prelude(
    inner: &Arc<ChannelInner>,
    method: &str,
    mut opts: CallOptions,
    deadline: Option<tokio::time::Instant>,
) -> Result<(CallOptions, Observers), Status> {
    let mut watchers = Vec::new();
    if !inner.opts.interceptors.is_empty() {
        let mut head = ClientCallHead {
            method: method.to_string(),
            authority: inner.authority.to_string(),
            metadata: std::mem::take(&mut opts.metadata),
            deadline: deadline.map(|d| d.into_std()),
        };
        for i in &inner.opts.interceptors {
            match i.start(&mut head).await {
                Ok(Some(o)) => watchers.push(o),
                Ok(None) => {}
                Err(st) => {
                    Observers::new(watchers).finish(&st);
                    return Err(st);
                }
            }
        }
        opts.metadata = head.metadata;
    }
    let observers = Observers::new(watchers);
    let creds = match (&inner.opts.call_credentials, &opts.credentials) {
        (Some(a), Some(b)) => Some(a.compose(b)),
        (a, b) => a.clone().or_else(|| b.clone()),
    };
    if let Some(creds) = creds {
        if inner.scheme != http::uri::Scheme::HTTPS && !inner.opts.allow_insecure_call_credentials {
            let st = Status::new(
                Code::Unauthenticated,
                "transport: cannot send secure credentials on an insecure connection",
            );
            observers.finish(&st);
            return Err(st);
        }
        let ctx = AuthMetadataContext::new(inner.scheme.as_str(), inner.authority.as_str(), method);
        match creds.metadata(&ctx).await {
            Ok(md) => opts.metadata.extend(md),
            Err(st) => {
                observers.finish(&st);
                return Err(st);
            }
        }
    }
    Ok((opts, observers))
}

/// Opens the stream: headers built, a connection picked, HEADERS sent.
async fn open(
    inner: &Arc<ChannelInner>,
    method: &str,
    opts: CallOptions,
    deadline: Option<tokio::time::Instant>,
    observers: Option<Arc<Observers>>,
    last: bool,
    (max_send, max_recv): (usize, usize),
) -> Result<ClientCall, Status> {
    let path = http::uri::PathAndQuery::try_from(method)
        .map_err(|e| Status::invalid_argument(format!("malformed method name {method:?}: {e}")))?;
    let compression = opts.compression.or(inner.opts.default_compression).filter(|c| *c != Compression::Identity);
    // Built per try (the first try almost always opens the stream): no copy
    // of the request kept for the retry below.
    let request = || {
        let mut headers = inner.base_headers.clone();
        if let Some(c) = compression {
            headers.insert("grpc-encoding", HeaderValue::from_static(c.name()));
        }
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(tokio::time::Instant::now());
            headers.insert("grpc-timeout", HeaderValue::from_str(&encode_timeout(left)).expect("ascii"));
        }
        opts.metadata.write_to(&mut headers);
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(inner.scheme.clone());
        parts.authority = Some(inner.authority.clone());
        parts.path_and_query = Some(path.clone());
        let mut req = Request::new(());
        *req.method_mut() = Method::POST;
        *req.uri_mut() = http::Uri::from_parts(parts).expect("valid uri parts");
        *req.headers_mut() = headers;
        req
    };

    let open = async {
        // A connection that turns out dead before the stream opens is
        // replaced once, transparently: the request never reached a server.
        let mut tries = 0;
        let hash = inner.connector.request_hash(&opts.metadata);
        loop {
            tries += 1;
            let mut conn = inner.connector.pick(opts.wait_for_ready, deadline, hash).await?;
            // Readiness on the picked connection's own handle (no second
            // `SendRequest` clone: each one locks h2's stream store).
            let opened = match std::future::poll_fn(|cx| conn.send.poll_ready(cx)).await {
                Ok(()) => conn.send.send_request(request(), false),
                Err(e) => Err(e),
            };
            match opened {
                Ok((resp, stream)) => return Ok((conn, resp, stream)),
                Err(e) => {
                    inner.connector.invalidate(conn.generation);
                    if tries >= 2 {
                        return Err(Status::unavailable(format!("failed to open stream: {e}")));
                    }
                }
            }
        }
    };
    let (conn, resp, stream) = match deadline {
        Some(d) => tokio::time::timeout_at(d, open)
            .await
            .map_err(|_| Status::deadline_exceeded("context deadline exceeded"))??,
        None => open.await?,
    };
    conn.active_calls.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::new(Shared {
        stream: Mutex::new(Some(stream)),
        cancelled: Mutex::new(None),
        is_cancelled: AtomicBool::new(false),
        done: AtomicBool::new(false),
        wakers: Default::default(),
        timer: Mutex::new(None),
        deadline,
        conn,
        unprocessed: AtomicBool::new(false),
        observers,
        last: AtomicBool::new(last),
    });
    if let Some(d) = deadline {
        let weak = Arc::downgrade(&shared);
        let t = inner.opts.spawn(async move {
            tokio::time::sleep_until(d).await;
            if let Some(s) = weak.upgrade() {
                s.cancel_with(Status::deadline_exceeded("context deadline exceeded"));
            }
        });
        *shared.timer.lock().unwrap_or_else(|e| e.into_inner()) = Some(t.abort_handle());
    }
    Ok(ClientCall {
        sender: CallSender::of_attempt(AttemptSender {
            shared: shared.clone(),
            compression,
            max_send,
            half_closed: false,
            wrote: false,
        }),
        receiver: CallReceiver::of_attempt(AttemptReceiver {
            shared,
            state: RecvState::Headers(resp),
            decoder: Decoder::new(max_recv, None),
            headers_received: false,
            initial_metadata: None,
            early: Default::default(),
        }),
    })
}

impl AttemptSender {
    /// Sends a message; `compress: false` sends this one uncompressed even if
    /// the call compresses; `last: true` half-closes in the same frame.
    pub(crate) async fn send_with(&mut self, msg: Bytes, compress: bool, last: bool) -> Result<(), Status> {
        if self.half_closed {
            return Err(Status::internal("send after the send side was closed"));
        }
        let observed = self.shared.observers.as_ref().map(|o| (o.clone(), msg.clone()));
        let (head, body) = match frame_parts(msg, if compress { self.compression } else { None }, self.max_send) {
            Ok(f) => f,
            Err(st) => {
                // grpc-go: an oversized send fails the whole call.
                self.shared.cancel_with(st.clone());
                return Err(st);
            }
        };
        if let Some((o, m)) = observed {
            o.send(&m, crate::codec::wire_len(&head, &body));
        }
        self.half_closed = last;
        self.write(head, body, last).await
    }

    /// Half-closes: no more messages will be sent. Like grpc-go's CloseSend,
    /// it fails only if the call was cancelled here (cancel, deadline, a
    /// local error): when the server already ended the call (its trailers
    /// and RST_STREAM(NO_ERROR) may arrive before our END_STREAM goes out),
    /// recv/finish report how the call ended.
    pub(crate) async fn close_send(&mut self) -> Result<(), Status> {
        if self.half_closed {
            return Ok(());
        }
        self.half_closed = true;
        match self.write(Bytes::new(), None, true).await {
            Err(_) if self.shared.cancel_status().is_none() => Ok(()),
            r => r,
        }
    }

    async fn write(&mut self, head: Bytes, body: Option<Bytes>, end: bool) -> Result<(), Status> {
        let eager = !std::mem::replace(&mut self.wrote, true);
        match self.shared.or_cancel(SEND, write_parts(&self.shared.stream, head, body, end, eager)).await? {
            Ok(()) => Ok(()),
            Err(WriteError::Closed) => Err(self.shared.closed_status()),
            Err(WriteError::H2(e)) => Err(self.shared.h2_status(&e)),
        }
    }

    /// A handle to cancel the call from anywhere.
    pub(crate) fn handle(&self) -> CallHandle {
        CallHandle(HandleOf::Attempt(self.shared.clone()))
    }
}

impl AttemptReceiver {
    /// The server address this call went to (`ip:port` or `unix:path`).
    pub(crate) fn peer(&self) -> &str {
        &self.shared.conn.peer
    }

    /// The call committed to this attempt: its end is the call's end.
    pub(crate) fn make_last(&self) {
        self.shared.last.store(true, Ordering::Release);
        if let (Some(o), RecvState::Done(st)) = (&self.shared.observers, &self.state) {
            o.finish(st);
        }
    }

    /// See [`ClientCall::unprocessed`].
    pub(crate) fn unprocessed(&self) -> bool {
        self.shared.unprocessed.load(Ordering::Acquire)
    }

    /// True once response headers arrived; false for a trailers-only
    /// response (whose `initial_metadata` is empty) and before headers.
    pub(crate) fn headers_received(&self) -> bool {
        self.headers_received
    }

    /// The response headers (waits for them). Empty for a trailers-only response.
    pub(crate) async fn initial_metadata(&mut self) -> Result<Metadata, Status> {
        while self.initial_metadata.is_none() {
            match &self.state {
                RecvState::Done(s) if s.is_ok() => return Ok(Metadata::new()),
                RecvState::Done(s) => return Err(s.clone()),
                _ => self.step().await,
            }
        }
        Ok(self.initial_metadata.clone().unwrap_or_default())
    }

    /// Like [`recv`](Self::recv), also telling whether the message was compressed.
    pub(crate) async fn recv_message(&mut self) -> Result<Option<Received>, Status> {
        if let Some(m) = self.early.pop_front() {
            return Ok(Some(m));
        }
        self.next_message().await
    }

    /// Reads to the end of the call, keeping the messages for `recv`, and
    /// returns the final status.
    pub(crate) async fn settle(&mut self) -> Status {
        loop {
            match self.next_message().await {
                Ok(Some(m)) => self.early.push_back(m),
                Ok(None) => return self.status().cloned().unwrap_or_else(Status::ok),
                Err(s) => return s,
            }
        }
    }

    async fn next_message(&mut self) -> Result<Option<Received>, Status> {
        loop {
            match &self.state {
                RecvState::Done(s) if s.is_ok() => return Ok(None),
                RecvState::Done(s) => return Err(s.clone()),
                RecvState::Body(_) => match self.decoder.next() {
                    Ok(Some(m)) => {
                        if let Some(o) = &self.shared.observers {
                            o.recv(&m.data, m.wire_len);
                        }
                        return Ok(Some(m));
                    }
                    Ok(None) => {}
                    Err(st) => {
                        self.fail(st.clone());
                        return Err(st);
                    }
                },
                RecvState::Headers(_) => {}
            }
            self.step().await;
        }
    }

    /// Reads (and drops) any remaining messages and returns the final status
    /// with the trailing metadata.
    pub(crate) async fn finish(&mut self) -> Status {
        loop {
            match self.recv_message().await {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(s) => return s,
            }
        }
        match &self.state {
            RecvState::Done(s) => s.clone(),
            _ => Status::internal("call not finished"),
        }
    }

    /// The status if the call has ended (after `recv` returned `None` or an error).
    pub(crate) fn status(&self) -> Option<&Status> {
        match &self.state {
            RecvState::Done(s) => Some(s),
            _ => None,
        }
    }

    /// A handle to cancel the call from anywhere.
    pub(crate) fn handle(&self) -> CallHandle {
        CallHandle(HandleOf::Attempt(self.shared.clone()))
    }

    pub(crate) fn fail(&mut self, st: Status) {
        // A local failure (bad frame, unknown encoding) ends the call and resets the stream.
        self.shared.cancel_with(st.clone());
        self.complete(st);
    }

    fn complete(&mut self, mut st: Status) {
        self.shared.done.store(true, Ordering::Release);
        // A failure after the response headers keeps them (grpc-go's
        // `grpc.Header`, grpcio's `RpcError.initial_metadata()`).
        if !st.is_ok() && self.headers_received {
            if let Some(md) = self.initial_metadata.as_ref().filter(|m| !m.is_empty()) {
                st = st.with_initial_metadata(md.clone());
            }
        }
        if let Some(o) = &self.shared.observers {
            o.attempt_end(&st);
            if self.shared.last.load(Ordering::Acquire) {
                o.finish(&st);
            }
        }
        self.state = RecvState::Done(st);
    }

    /// Advances the receive state machine by one event.
    async fn step(&mut self) {
        let shared = self.shared.clone();
        match &mut self.state {
            RecvState::Done(_) => {}
            RecvState::Headers(fut) => match shared.or_cancel(RECV, fut).await {
                Err(st) => self.complete(st),
                Ok(Err(e)) => {
                    // h2 fails a stream with the peer's graceful GOAWAY only when
                    // its id is above the GOAWAY's last stream id (streams the
                    // server took see the connection's end instead).
                    if e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR) {
                        shared.unprocessed.store(true, Ordering::Release);
                    }
                    let st = shared.h2_status(&e);
                    self.complete(st)
                }
                Ok(Ok(resp)) => self.on_headers(resp),
            },
            RecvState::Body(body) => {
                let r = shared.or_cancel(RECV, body.data()).await;
                match r {
                    Err(st) => self.complete(st),
                    Ok(Some(Ok(chunk))) => {
                        let _ = body.flow_control().release_capacity(chunk.len());
                        self.decoder.push(chunk);
                    }
                    Ok(Some(Err(e))) => {
                        let st = shared.h2_status(&e);
                        self.complete(st)
                    }
                    Ok(None) => {
                        if let Err(st) = self.decoder.finish() {
                            self.fail(st);
                            return;
                        }
                        let st = match shared.or_cancel(RECV, body.trailers()).await {
                            Err(st) => st,
                            Ok(Ok(Some(t))) => status_from_headers(&t).unwrap_or_else(|| {
                                Status::internal("server closed the stream without sending grpc-status")
                            }),
                            Ok(Ok(None)) => Status::internal("server closed the stream without sending trailers"),
                            Ok(Err(e)) => shared.h2_status(&e),
                        };
                        self.complete(st)
                    }
                }
            }
        }
    }

    fn on_headers(&mut self, resp: http::Response<h2::RecvStream>) {
        let (parts, body) = resp.into_parts();
        let http_status = parts.status.as_u16();
        if body.is_end_stream() {
            // Trailers-only.
            let st = status_from_headers(&parts.headers).unwrap_or_else(|| {
                if http_status != 200 {
                    http_status_error(http_status)
                } else {
                    Status::internal("server closed the stream without sending trailers")
                }
            });
            self.initial_metadata = Some(Metadata::new());
            self.complete(st);
            return;
        }
        if http_status != 200 {
            let st = http_status_error(http_status);
            self.fail(st);
            return;
        }
        if !is_grpc_content_type(parts.headers.get(http::header::CONTENT_TYPE)) {
            let ct = parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            self.fail(Status::new(Code::Unknown, format!("malformed header: unexpected HTTP content-type {ct:?}")));
            return;
        }
        if let Some(enc) = parts.headers.get("grpc-encoding") {
            let name = String::from_utf8_lossy(enc.as_bytes()).into_owned();
            match Compression::from_name(&name) {
                Some(c) => self.decoder.set_encoding(Some(c)),
                None => {
                    self.fail(Status::internal(format!(
                        "grpc: Decompressor is not installed for grpc-encoding {name:?}"
                    )));
                    return;
                }
            }
        }
        self.headers_received = true;
        let mut md = Metadata::from_headers(&parts.headers);
        if let Some(o) = &self.shared.observers {
            o.initial_metadata(&mut md);
        }
        self.initial_metadata = Some(md);
        self.state = RecvState::Body(body);
    }
}

/// The headers every call of a channel sends, in the order calls send them.
pub(super) fn base_headers(user_agent: &HeaderValue) -> http::HeaderMap {
    let mut h = http::HeaderMap::with_capacity(8);
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert(http::header::TE, HeaderValue::from_static("trailers"));
    h.insert(http::header::USER_AGENT, user_agent.clone());
    h.insert("grpc-accept-encoding", HeaderValue::from_static(accept_encoding_header()));
    h
}

fn http_status_error(code: u16) -> Status {
    let reason = http::StatusCode::from_u16(code).ok().and_then(|s| s.canonical_reason()).unwrap_or("");
    Status::new(code_from_http(code), format!("unexpected HTTP status code received from server: {code} ({reason})"))
}

impl ClientCall {
    /// Sends one message.
    pub async fn send(&mut self, msg: Bytes) -> Result<(), Status> {
        let r = self.sender.send(msg).await;
        self.send_result(r).await
    }

    /// Sends a message with per-message options; see [`CallSender::send_with`].
    pub async fn send_with(&mut self, msg: Bytes, compress: bool, last: bool) -> Result<(), Status> {
        let r = self.sender.send_with(msg, compress, last).await;
        self.send_result(r).await
    }

    /// Sends the last message and half-closes in one frame.
    pub async fn send_last(&mut self, msg: Bytes) -> Result<(), Status> {
        self.send_with(msg, true, true).await
    }

    /// Half-closes the send side.
    pub async fn close_send(&mut self) -> Result<(), Status> {
        let r = self.sender.close_send().await;
        self.send_result(r).await
    }

    /// A failed send means the call is over; report how it ended when the
    /// server already said so (e.g. it failed the call before reading).
    async fn send_result(&mut self, r: Result<(), Status>) -> Result<(), Status> {
        match r {
            Ok(()) => Ok(()),
            Err(e) => {
                let Ok(receiver) = self.receiver.attempt().await else { return Err(e) };
                if let Some(st) = receiver.shared.cancel_status() {
                    return Err(st);
                }
                let st = tokio::time::timeout(std::time::Duration::from_secs(1), receiver.settle()).await;
                match st {
                    Ok(st) if !st.is_ok() => Err(st),
                    _ => Err(e),
                }
            }
        }
    }

    /// Response headers.
    pub async fn initial_metadata(&mut self) -> Result<Metadata, Status> {
        self.receiver.initial_metadata().await
    }

    /// The next message, `Ok(None)` at the end of an OK call.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        self.receiver.recv().await
    }

    /// The next message with its compressed flag.
    pub async fn recv_message(&mut self) -> Result<Option<Received>, Status> {
        self.receiver.recv_message().await
    }

    /// Drains the responses and returns the final status.
    pub async fn finish(&mut self) -> Status {
        self.receiver.finish().await
    }

    /// The final status once known.
    pub fn status(&self) -> Option<&Status> {
        self.receiver.status()
    }

    /// Reads exactly one response and the OK status (unary and client-streaming).
    pub async fn recv_unary(&mut self) -> Result<UnaryResponse, Status> {
        let message = match self.recv().await? {
            Some(m) => m,
            None => return Err(Status::internal("cardinality violation: expected a response message, got none")),
        };
        if self.recv().await?.is_some() {
            let st =
                Status::internal("cardinality violation: received more than one response message for a unary call");
            if let Some(r) = self.receiver.attempt_mut() {
                r.fail(st.clone());
            }
            return Err(st);
        }
        let trailing_metadata = self.receiver.status().map(|s| s.metadata().clone()).unwrap_or_default();
        Ok(UnaryResponse {
            message,
            initial_metadata: self.receiver.attempt_ref().and_then(|r| r.initial_metadata.clone()).unwrap_or_default(),
            trailing_metadata,
            peer: self.peer().to_string(),
        })
    }

    /// The server address this call went to (`ip:port` or `unix:path`).
    pub fn peer(&self) -> &str {
        self.receiver.peer()
    }

    /// True once response headers arrived (a trailers-only answer does not count).
    pub(crate) fn headers_received(&self) -> bool {
        self.receiver.headers_received()
    }

    /// True if the call failed because the server refused its stream
    /// unprocessed (graceful GOAWAY): safe to retry as a new call.
    pub(crate) fn unprocessed(&self) -> bool {
        self.receiver.attempt_ref().is_some_and(AttemptReceiver::unprocessed)
    }

    /// Cancels the call (CANCELLED).
    pub fn cancel(&self) {
        self.handle().cancel();
    }

    /// A thread-safe cancel handle.
    pub fn handle(&self) -> CallHandle {
        self.sender.handle()
    }

    /// Splits into halves that can be used from different tasks.
    pub fn split(self) -> (CallSender, CallReceiver) {
        (self.sender, self.receiver)
    }

    pub(crate) fn from_halves(sender: CallSender, receiver: CallReceiver) -> ClientCall {
        ClientCall { sender, receiver }
    }

    /// The halves of a call that is one attempt (not retrying).
    pub(crate) fn into_attempt(self) -> Option<(AttemptSender, AttemptReceiver)> {
        Some((self.sender.into_attempt()?, self.receiver.into_attempt()?))
    }
}
