//! One server call: request validation (method, content-type, path,
//! timeout, encoding), the handler run under the deadline and the client's
//! cancellation, and the response (headers, messages, trailers or trailers-only).

use std::future::{poll_fn, Future};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use tokio::sync::Notify;

use super::{Handler, MethodKind, ServerInner};
use crate::auth::AuthContext;
use crate::codec::{
    accept_encoding_header, frame_parts, parse_accept_encoding, Compression, Decoder, MessageParts, Received,
};
use crate::h2io::{write_parts, WriteError};
use crate::interceptor::{Observers, ServerCallHead};
use crate::metadata::{decode_timeout, Metadata};
use crate::status::{Code, Status};
use crate::wire::{is_grpc_content_type, write_status, CONTENT_TYPE};

/// The peer of a connection: its address and TLS identity.
pub(crate) type Peer = AuthContext;

/// The response side: `respond` until headers go out, then `stream`; both
/// empty once the call is finished or reset.
struct Shared {
    respond: Mutex<Option<h2::server::SendResponse<Bytes>>>,
    stream: Mutex<Option<h2::SendStream<Bytes>>>,
    sending: AtomicBool,
    /// The reset watcher found a send in progress and waits for `send_done`.
    watcher_waiting: AtomicBool,
    send_done: Notify,
    cancelled: AtomicBool,
    /// What the interceptors watch, set before the handler runs.
    observers: std::sync::OnceLock<Arc<Observers>>,
    /// Small messages the handler sent during the current poll of its task,
    /// handed to h2 as one DATA frame when that poll ends (see [`Deferred`]).
    /// Locked after `stream` when both are held.
    out: Mutex<Out>,
}

/// Messages framed but not yet given to h2, and the send capacity h2
/// granted for them.
#[derive(Default)]
struct Out {
    pending: BytesMut,
    /// Capacity h2 reported minus what `pending` holds; re-read from h2
    /// when a message does not fit, and after each flush.
    credit: usize,
    /// Capacity beyond `pending` may be reserved in h2 (given back at the flush).
    reserved: bool,
}

impl Out {
    /// Frames `msg` into `pending`, within the credit (checked by the caller).
    fn append(&mut self, msg: &[u8]) {
        let need = 5 + msg.len();
        self.credit -= need;
        self.pending.reserve(need);
        self.pending.put_u8(0);
        self.pending.put_u32(msg.len() as u32);
        self.pending.extend_from_slice(msg);
    }
}

/// Largest message (framed) whose send is deferred to the end of the poll.
const DEFER_MAX: usize = 16 * 1024;
/// Send capacity asked of h2 at a time for deferred messages.
const DEFER_RESERVE: usize = 4 * 1024;
/// A deferred batch is handed to h2 before it grows past this.
const DEFER_BATCH: usize = 64 * 1024;

thread_local! {
    /// The call whose handler is being polled on this thread (see [`Deferred`]).
    static POLLING: std::cell::Cell<*const Shared> = const { std::cell::Cell::new(std::ptr::null()) };
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn reset(&self, reason: h2::Reason, why: Status) {
        self.cancelled.store(true, Ordering::Release);
        if let Some(o) = self.observers.get() {
            o.finish(&why);
        }
        let mut respond = lock(&self.respond);
        let mut stream = lock(&self.stream);
        if let Some(mut r) = respond.take() {
            r.send_reset(reason);
        }
        if let Some(mut s) = stream.take() {
            s.send_reset(reason);
        }
        *lock(&self.out) = Out::default();
    }

    /// Hands the deferred messages to h2 (one DATA frame). Called with the
    /// `stream` lock held.
    fn flush_locked(&self, stream: &mut Option<h2::SendStream<Bytes>>) -> Result<(), WriteError> {
        let mut out = lock(&self.out);
        out.credit = 0;
        let Some(s) = stream.as_mut() else {
            let lost = !out.pending.is_empty();
            out.pending.clear();
            return if lost { Err(WriteError::Closed) } else { Ok(()) };
        };
        let r = if out.pending.is_empty() {
            Ok(())
        } else {
            s.send_data(out.pending.split().freeze(), false).map_err(WriteError::H2)
        };
        if std::mem::take(&mut out.reserved) {
            // Back to what is buffered: the rest of the window stays free
            // for the connection's other streams.
            s.reserve_capacity(0);
        }
        r
    }

    /// True inside this call's own handler poll (see [`Deferred`]).
    fn is_polling(&self) -> bool {
        POLLING.with(|p| std::ptr::eq(p.get(), self))
    }

    /// Hands the deferred messages to h2, if any. An error here is the
    /// stream's end (reset or closed); the handler learns it from its next
    /// send or from the reset watcher.
    fn flush(&self) {
        let mut stream = lock(&self.stream);
        let _ = self.flush_locked(&mut stream);
    }

    /// Defers a small message sent from inside this call's own handler poll:
    /// it is framed into `out` if h2 granted the capacity, and goes out with
    /// the others when the poll ends. `Some(result)` when handled here,
    /// `None` to take the normal path.
    fn try_defer(&self, msg: &[u8]) -> Option<Result<(), Status>> {
        if !self.is_polling() {
            return None;
        }
        let need = 5 + msg.len();
        {
            // Credit is granted under the `stream` lock and zeroed under it
            // before the stream goes (finish, reset), so a message within
            // it needs only this lock.
            let mut out = lock(&self.out);
            if out.pending.len() + need > DEFER_BATCH {
                // The normal path flushes the batch first.
                return None;
            }
            if out.credit >= need {
                out.append(msg);
                return Some(Ok(()));
            }
        }
        let mut stream = lock(&self.stream);
        let Some(s) = stream.as_mut() else {
            return Some(Err(Status::cancelled("the call is finished")));
        };
        let mut out = lock(&self.out);
        if out.pending.len() + need > DEFER_BATCH {
            return None;
        }
        if out.credit < need {
            // Ask for room for a few more messages too, so that a batch
            // asks h2 once; the excess goes back at the flush.
            let want = out.pending.len() + need;
            s.reserve_capacity(out.pending.len() + need.max(DEFER_RESERVE));
            out.reserved = true;
            let cap = s.capacity();
            if cap < want {
                return None;
            }
            out.credit = cap - out.pending.len();
        }
        out.append(msg);
        Some(Ok(()))
    }

    /// Polls for the client resetting the stream; `None` while a send is in
    /// progress (then wait for `send_done` and poll again).
    fn poll_reset(&self, cx: &mut Context<'_>) -> Option<Poll<()>> {
        let mut respond = lock(&self.respond);
        if let Some(r) = respond.as_mut() {
            return Some(r.poll_reset(cx).map(|_| ()));
        }
        let mut stream = lock(&self.stream);
        if self.sending.load(Ordering::SeqCst) {
            self.watcher_waiting.store(true, Ordering::SeqCst);
            return None;
        }
        match stream.as_mut() {
            Some(s) => Some(s.poll_reset(cx).map(|_| ())),
            None => Some(Poll::Pending),
        }
    }

    /// Resolves when the client resets the stream.
    async fn reset_by_peer(&self) {
        loop {
            match poll_fn(|cx| match self.poll_reset(cx) {
                Some(Poll::Ready(())) => Poll::Ready(true),
                Some(Poll::Pending) => Poll::Pending,
                None => Poll::Ready(false),
            })
            .await
            {
                true => return,
                // `notify_one` leaves a permit when nobody waits yet, so
                // the wake-up of a send that ended just now is not lost.
                false => self.send_done.notified().await,
            }
        }
    }

    /// Ends the call with `status`: trailers, or a trailers-only response
    /// when no headers were sent.
    fn finish(&self, status: &Status) {
        self.cancelled.store(true, Ordering::Release);
        if let Some(o) = self.observers.get() {
            o.finish(status);
        }
        let mut respond = lock(&self.respond);
        let mut stream = lock(&self.stream);
        let _ = self.flush_locked(&mut stream);
        if let Some(r) = respond.take() {
            respond_early(r, StatusCode::OK, status);
        } else if let Some(mut s) = stream.take() {
            let mut t = HeaderMap::new();
            write_status(status, &mut t);
            let _ = s.send_trailers(t);
        }
    }
}

/// Facts about a call: method, request metadata, deadline, peer.
#[derive(Debug)]
pub struct CallInfo {
    method: String,
    metadata: Metadata,
    deadline: Option<std::time::Instant>,
    peer: Arc<Peer>,
    extensions: http::Extensions,
}

impl CallInfo {
    /// The full method path, `/package.Service/Method`.
    pub fn method(&self) -> &str {
        &self.method
    }
    /// The request metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// The deadline from `grpc-timeout`, if any.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.deadline
    }
    /// Time left before the deadline.
    pub fn time_remaining(&self) -> Option<Duration> {
        self.deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()))
    }
    /// The peer's address (`ip:port` or `unix:path`).
    pub fn peer(&self) -> &str {
        self.peer.peer()
    }
    /// The negotiated TLS version (`TLSv1_3`), when over TLS.
    pub fn tls_version(&self) -> Option<&str> {
        self.peer.tls_version()
    }
    /// The client's certificate chain (DER), when it presented one.
    pub fn peer_certificates(&self) -> &[Vec<u8>] {
        self.peer.peer_certificates()
    }
    /// Values the server interceptors attached to the call.
    pub fn extensions(&self) -> &http::Extensions {
        &self.extensions
    }
    /// The peer's address, transport security and verified certificate identity.
    pub fn auth_context(&self) -> &Arc<AuthContext> {
        &self.peer
    }
}

/// The receiving half of a server call.
#[derive(Debug)]
pub struct ServerReceiver {
    body: Option<h2::RecvStream>,
    decoder: Decoder,
    /// For unary and server-streaming methods, the request read up front.
    preread: Option<Received>,
    observers: Option<Arc<Observers>>,
}

impl ServerReceiver {
    /// The next request message; `Ok(None)` when the client half-closed.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// The next request message and whether it was compressed on the wire.
    pub async fn recv_message(&mut self) -> Result<Option<Received>, Status> {
        poll_fn(|cx| self.poll_message(cx)).await
    }

    fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Bytes>, Status>> {
        self.poll_message(cx).map_ok(|m| m.map(|m| m.data))
    }

    /// A poll function rather than nested `async fn`s: each layer of those
    /// moved the large `Result<Option<Received>, Status>` once more per
    /// message.
    fn poll_message(&mut self, cx: &mut Context<'_>) -> Poll<Result<Option<Received>, Status>> {
        if let Some(m) = self.preread.take() {
            return Poll::Ready(Ok(Some(m)));
        }
        loop {
            if let Some(m) = self.decoder.next()? {
                if let Some(o) = &self.observers {
                    o.recv(&m.data, m.wire_len);
                }
                return Poll::Ready(Ok(Some(m)));
            }
            let Some(b) = self.body.as_mut() else { return Poll::Ready(Ok(None)) };
            match std::task::ready!(b.poll_data(cx)) {
                Some(Ok(chunk)) => {
                    let _ = b.flow_control().release_capacity(chunk.len());
                    self.decoder.push(chunk);
                }
                Some(Err(e)) => return Poll::Ready(Err(Status::from_h2(&e))),
                None => {
                    self.body = None;
                    self.decoder.finish()?;
                    return Poll::Ready(Ok(None));
                }
            }
        }
    }
}

/// The sending half of a server call.
pub struct ServerSender {
    shared: Arc<Shared>,
    response_compression: Option<Compression>,
    accepted: Vec<Compression>,
    max_send: usize,
    /// The response headers went out (checked again only on the slow path).
    opened: bool,
}

impl std::fmt::Debug for ServerSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSender").field("compression", &self.response_compression).finish()
    }
}

/// Marks a send in progress so the stream task's reset watcher does not
/// poll h2 at the same time (both would share h2's one send-side waker slot);
/// the watcher is woken when the send ends.
struct SendingGuard<'a>(&'a Shared);

impl<'a> SendingGuard<'a> {
    fn new(shared: &'a Shared) -> SendingGuard<'a> {
        let _slot = lock(&shared.stream);
        shared.sending.store(true, Ordering::SeqCst);
        SendingGuard(shared)
    }
}

impl Drop for SendingGuard<'_> {
    fn drop(&mut self) {
        let waiting = {
            let _slot = lock(&self.0.stream);
            self.0.sending.store(false, Ordering::SeqCst);
            self.0.watcher_waiting.swap(false, Ordering::SeqCst)
        };
        if waiting {
            self.0.send_done.notify_one();
        }
    }
}

impl ServerSender {
    /// Sets the response compression. Applied only if the client accepts
    /// it (its `grpc-accept-encoding`), and only before headers go out.
    pub fn set_compression(&mut self, c: Compression) {
        if lock(&self.shared.respond).is_none() {
            // Headers are out: the call's grpc-encoding is fixed.
            return;
        }
        self.response_compression =
            if c == Compression::Identity || !self.accepted.contains(&c) { None } else { Some(c) };
    }

    /// True once the client cancelled, the deadline passed or the call ended.
    pub fn is_cancelled(&self) -> bool {
        self.shared.cancelled.load(Ordering::Acquire)
    }

    /// Sends the response headers with this metadata (at most once; later
    /// calls add nothing).
    pub async fn send_initial_metadata(&mut self, md: Metadata) -> Result<(), Status> {
        self.open(md)
    }

    fn open(&mut self, md: Metadata) -> Result<(), Status> {
        let mut respond = lock(&self.shared.respond);
        let Some(mut r) = respond.take() else {
            return if lock(&self.shared.stream).is_some() {
                self.opened = true;
                Ok(())
            } else {
                Err(Status::cancelled("the call is finished"))
            };
        };
        let mut resp = grpc_response(StatusCode::OK);
        let h = resp.headers_mut();
        if let Some(c) = self.response_compression {
            h.insert("grpc-encoding", HeaderValue::from_static(c.name()));
        }
        md.write_to(h);
        match r.send_response(resp, false) {
            Ok(stream) => {
                *lock(&self.shared.stream) = Some(stream);
                self.opened = true;
                Ok(())
            }
            Err(e) => Err(Status::from_h2(&e)),
        }
    }

    /// Sends one response message (compressed if the call compresses).
    pub async fn send(&mut self, msg: Bytes) -> Result<(), Status> {
        self.send_with(msg, true).await
    }

    /// Sends one message; `compress: false` sends it uncompressed even when the call compresses.
    pub async fn send_with(&mut self, msg: Bytes, compress: bool) -> Result<(), Status> {
        // The synchronous part is kept out of this future, which is moved
        // into the caller's state on every send.
        let Some((head, body)) = self.prepare(msg, compress)? else { return Ok(()) };
        let _sending = SendingGuard::new(&self.shared);
        write_parts(&self.shared.stream, head, body, false, false).await.map_err(write_error)
    }

    /// Sends one response message given as segments (see
    /// [`crate::typed::encode_parts`]): uncompressed, each large segment goes
    /// to h2 as it is, without being copied into one buffer. A compressed call,
    /// a small message or one observed by telemetry is joined and sent as
    /// [`send`](Self::send) would.
    pub async fn send_parts(&mut self, msg: MessageParts) -> Result<(), Status> {
        let zero_copy = msg.segments() > 1
            && msg.len() > DEFER_MAX
            && !matches!(self.response_compression, Some(c) if c != Compression::Identity)
            && self.shared.observers.get().is_none();
        if zero_copy {
            // Boxed: large messages only, and it keeps this future (moved
            // into the caller's state on every send) the size of `send_with`'s.
            Box::pin(self.send_segments(msg)).await
        } else {
            self.send_with(msg.into_bytes(), true).await
        }
    }

    async fn send_segments(&mut self, msg: MessageParts) -> Result<(), Status> {
        self.open(Metadata::new())?;
        self.shared.flush();
        let (head, rest) = crate::codec::frame_segments(msg, self.max_send)?;
        let _sending = SendingGuard::new(&self.shared);
        let mut rest = rest.into_iter();
        write_parts(&self.shared.stream, head, rest.next(), false, false).await.map_err(write_error)?;
        for b in rest {
            write_parts(&self.shared.stream, b, None, false, false).await.map_err(write_error)?;
        }
        Ok(())
    }

    /// Opens the response if needed and defers a small message (see
    /// [`Shared::try_defer`]); otherwise frames it for `write_parts`, after
    /// flushing the deferred ones. `None` when the message was deferred.
    fn prepare(&mut self, msg: Bytes, compress: bool) -> Result<Option<(Bytes, Option<Bytes>)>, Status> {
        if !self.opened {
            self.open(Metadata::new())?;
        }
        if (!compress || self.response_compression.is_none()) && msg.len() <= DEFER_MAX.min(self.max_send) {
            if let Some(r) = self.shared.try_defer(&msg) {
                if let (Ok(()), Some(o)) = (&r, self.shared.observers.get()) {
                    o.send(&msg, msg.len());
                }
                return r.map(|()| None);
            }
        }
        self.open(Metadata::new())?;
        let observed = self.shared.observers.get().map(|o| (o.clone(), msg.clone()));
        let (head, body) = frame_parts(msg, if compress { self.response_compression } else { None }, self.max_send)?;
        if let Some((o, m)) = observed {
            o.send(&m, crate::codec::wire_len(&head, &body));
        }
        self.shared.flush();
        Ok(Some((head, body)))
    }
}

fn write_error(e: WriteError) -> Status {
    match e {
        WriteError::Closed => Status::cancelled("the call is closed"),
        WriteError::H2(e) => Status::from_h2(&e),
    }
}

impl ServerSender {
    /// Ends the call now with `status` (its metadata are the trailers), from
    /// this half: trailers, or a trailers-only response if nothing was sent.
    /// The status the handler returns later changes nothing. Lets a binding
    /// finish without waking the handler task (one fewer hop per call).
    pub fn finish(&mut self, status: &Status) {
        self.shared.finish(status);
    }

    /// Sends the last message and the status back to back (a unary or
    /// client-streaming reply in one step); see [`ServerSender::finish`].
    pub async fn send_and_finish(&mut self, msg: Bytes, status: &Status) -> Result<(), Status> {
        self.send(msg).await?;
        self.finish(status);
        Ok(())
    }
}

/// A call as the handler sees it: [`CallInfo`] (method, metadata, deadline,
/// peer), receive requests, send headers and messages; the status the
/// handler returns becomes the trailers. [`split`](Self::split) gives halves
/// that can be used from different tasks or threads.
#[derive(Debug)]
pub struct ServerCall {
    info: Arc<CallInfo>,
    receiver: ServerReceiver,
    sender: ServerSender,
}

impl std::ops::Deref for ServerCall {
    type Target = CallInfo;
    fn deref(&self) -> &CallInfo {
        &self.info
    }
}

impl ServerCall {
    /// The call's facts, shareable.
    pub fn info(&self) -> &Arc<CallInfo> {
        &self.info
    }
    /// Sets the response compression; see [`ServerSender::set_compression`].
    pub fn set_compression(&mut self, c: Compression) {
        self.sender.set_compression(c)
    }
    /// True once the client cancelled, the deadline passed or the call ended.
    pub fn is_cancelled(&self) -> bool {
        self.sender.is_cancelled()
    }
    /// The next request message; `Ok(None)` when the client half-closed.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        poll_fn(|cx| self.receiver.poll_recv(cx)).await
    }
    /// The next request message and whether it was compressed on the wire.
    pub async fn recv_message(&mut self) -> Result<Option<Received>, Status> {
        poll_fn(|cx| self.receiver.poll_message(cx)).await
    }
    /// Sends the response headers (at most once).
    pub async fn send_initial_metadata(&mut self, md: Metadata) -> Result<(), Status> {
        self.sender.send_initial_metadata(md).await
    }
    /// Sends one response message.
    pub async fn send(&mut self, msg: Bytes) -> Result<(), Status> {
        self.sender.send_with(msg, true).await
    }
    /// Sends one message, optionally uncompressed.
    pub async fn send_with(&mut self, msg: Bytes, compress: bool) -> Result<(), Status> {
        self.sender.send_with(msg, compress).await
    }
    /// Sends one message given as segments; see [`ServerSender::send_parts`].
    pub async fn send_parts(&mut self, msg: MessageParts) -> Result<(), Status> {
        self.sender.send_parts(msg).await
    }
    /// Splits into the call's facts and its two halves.
    pub fn split(self) -> (Arc<CallInfo>, ServerReceiver, ServerSender) {
        (self.info, self.receiver, self.sender)
    }
}

/// A response head with the gRPC content-type and our accepted encodings.
fn grpc_response(http: StatusCode) -> Response<()> {
    let mut resp = Response::new(());
    *resp.status_mut() = http;
    let h = resp.headers_mut();
    h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    h.insert("grpc-accept-encoding", HeaderValue::from_static(accept_encoding_header()));
    resp
}

/// Answers with one HEADERS frame carrying the status (trailers-only), with
/// an HTTP error status for requests that never reach a handler.
fn respond_early(mut respond: h2::server::SendResponse<Bytes>, http: StatusCode, status: &Status) {
    let mut resp = grpc_response(http);
    write_status(status, resp.headers_mut());
    let _ = respond.send_response(resp, true);
}

/// Polls a call's handler with the call marked as the one being polled on
/// this thread, so its small sends are only framed (`Shared::try_defer`),
/// then hands them to h2 as one DATA frame when the poll ends: h2's cost per
/// DATA frame is larger than a small message's own, and the connection task
/// cannot write them before this poll yields anyway (on a single worker; on
/// several it may start sooner, one message at a time).
struct Deferred<F> {
    inner: F,
    shared: Arc<Shared>,
    /// Off for methods with one response (nothing to batch).
    on: bool,
}

impl<F: Future + Unpin> Future for Deferred<F> {
    type Output = F::Output;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        struct Restore(*const Shared);
        impl Drop for Restore {
            fn drop(&mut self) {
                POLLING.with(|p| p.set(self.0));
            }
        }
        let this = &mut *self;
        if !this.on {
            return Pin::new(&mut this.inner).poll(cx);
        }
        let r = {
            let _restore = Restore(POLLING.with(|p| p.replace(Arc::as_ptr(&this.shared))));
            Pin::new(&mut this.inner).poll(cx)
        };
        this.shared.flush();
        r
    }
}

/// Polls a future, turning a panic into an error message.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = &mut self.0;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(p) => {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown panic".into());
                Poll::Ready(Err(msg))
            }
        }
    }
}

pub(super) async fn handle_stream(
    inner: Arc<ServerInner>,
    peer: Arc<Peer>,
    req: Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
) {
    let (parts, body) = req.into_parts();
    if parts.method != http::Method::POST {
        let msg = format!("invalid gRPC request method {:?}: must be POST", parts.method.as_str());
        return respond_early(respond, StatusCode::METHOD_NOT_ALLOWED, &Status::internal(msg));
    }
    if !is_grpc_content_type(parts.headers.get(http::header::CONTENT_TYPE)) {
        let ct =
            parts.headers.get(http::header::CONTENT_TYPE).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let msg = format!("invalid gRPC request content-type {:?}", ct.unwrap_or_default());
        return respond_early(respond, StatusCode::UNSUPPORTED_MEDIA_TYPE, &Status::invalid_argument(msg));
    }
    let path = parts.uri.path().to_string();
    let (kind, handler, registered): (MethodKind, Arc<dyn Handler>, bool) = match inner.methods.get(&path) {
        Some(m) => (m.kind, m.handler.clone(), true),
        None => {
            let parsed = path.strip_prefix('/').and_then(|p| p.rsplit_once('/'));
            match (&inner.fallback, parsed) {
                (Some(f), Some(_)) => (MethodKind::BidiStreaming, f.clone(), false),
                (_, None) => {
                    return respond_early(
                        respond,
                        StatusCode::OK,
                        &Status::unimplemented(format!("malformed method name: {path:?}")),
                    );
                }
                (None, Some((service, method))) => {
                    let msg = if inner.services.contains(service) {
                        format!("unknown method {method} for service {service}")
                    } else {
                        format!("unknown service {service}")
                    };
                    return respond_early(respond, StatusCode::OK, &Status::unimplemented(msg));
                }
            }
        }
    };
    let timeout = match parts.headers.get("grpc-timeout") {
        None => None,
        Some(v) => match decode_timeout(&String::from_utf8_lossy(v.as_bytes())) {
            Ok(d) => Some(d),
            Err(e) => {
                return respond_early(
                    respond,
                    StatusCode::OK,
                    &Status::internal(format!("malformed grpc-timeout: {e}")),
                )
            }
        },
    };
    let encoding = match parts.headers.get("grpc-encoding").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    {
        None => None,
        Some(name) => match Compression::from_name(&name) {
            Some(Compression::Identity) => None,
            Some(c) => Some(c),
            None => {
                let msg = format!(
                    "grpc: Decompressor is not installed for grpc-encoding {name:?}; supported: {}",
                    accept_encoding_header()
                );
                return respond_early(respond, StatusCode::OK, &Status::unimplemented(msg));
            }
        },
    };
    let accepted = parts
        .headers
        .get("grpc-accept-encoding")
        .map(|v| parse_accept_encoding(&String::from_utf8_lossy(v.as_bytes())))
        .unwrap_or_default();
    let now = tokio::time::Instant::now();
    let deadline = timeout.map(|t| now + t);
    let shared = Arc::new(Shared {
        respond: Mutex::new(Some(respond)),
        stream: Mutex::new(None),
        sending: AtomicBool::new(false),
        watcher_waiting: AtomicBool::new(false),
        send_done: Notify::new(),
        cancelled: AtomicBool::new(false),
        observers: Default::default(),
        out: Default::default(),
    });
    let metadata = Metadata::from_headers(&parts.headers);
    let mut receiver = ServerReceiver {
        body: Some(body),
        decoder: Decoder::new(inner.opts.max_recv_message_size, encoding),
        preread: None,
        observers: None,
    };
    let mut sender = ServerSender {
        shared: shared.clone(),
        response_compression: None,
        accepted,
        max_send: inner.opts.max_send_message_size,
        opened: false,
    };
    if let Some(c) = inner.opts.default_compression {
        sender.set_compression(c);
    }
    let call_shared = shared.clone();
    let run = async move {
        let mut head = ServerCallHead {
            method: path,
            metadata,
            deadline: deadline.map(|d| d.into_std()),
            auth: peer,
            registered,
            extensions: http::Extensions::new(),
        };
        if !inner.interceptors.is_empty() {
            let mut watchers = Vec::new();
            for i in &inner.interceptors {
                match i.intercept(&mut head).await {
                    Ok(Some(o)) => watchers.push(o),
                    Ok(None) => {}
                    Err(st) => {
                        Observers::new(watchers).finish(&st);
                        return st;
                    }
                }
            }
            if !watchers.is_empty() {
                let o = Arc::new(Observers::new(watchers));
                receiver.observers = Some(o.clone());
                let _ = call_shared.observers.set(o);
            }
        }
        let info = Arc::new(CallInfo {
            method: head.method,
            metadata: head.metadata,
            deadline: head.deadline,
            peer: head.auth,
            extensions: head.extensions,
        });
        if matches!(kind, MethodKind::Unary | MethodKind::ServerStreaming) {
            let first = match receiver.recv_message().await {
                Ok(Some(m)) => m,
                Ok(None) => {
                    return Status::internal("grpc: server received no request message for a non-client-streaming RPC")
                }
                Err(s) => return s,
            };
            match receiver.recv_message().await {
                Ok(None) => {}
                Ok(Some(_)) => {
                    return Status::internal(
                        "grpc: server received more than one request message for a non-client-streaming RPC",
                    )
                }
                Err(s) => return s,
            }
            receiver.preread = Some(first);
        }
        handler.call(ServerCall { info, receiver, sender }).await
    };
    let on = matches!(kind, MethodKind::ServerStreaming | MethodKind::BidiStreaming);
    let run = Deferred { inner: CatchUnwind(Box::pin(run)), shared: shared.clone(), on };
    let deadline_sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        biased;
        r = run => match r {
            Ok(status) => shared.finish(&status),
            Err(panic) => {
                tracing::error!(panic = %panic, "handler panicked");
                shared.finish(&Status::new(Code::Internal, format!("handler panicked: {panic}")))
            }
        },
        _ = deadline_sleep => shared.reset(h2::Reason::CANCEL, Status::deadline_exceeded("deadline exceeded")),
        _ = shared.reset_by_peer() => shared.reset(h2::Reason::CANCEL, Status::cancelled("cancelled by the client")),
    }
}
