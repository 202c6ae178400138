//! Client and server interceptors.
//!
//! An interceptor runs once when a call starts. It sees the method and the
//! metadata (and may change the metadata), may end the call at once with a
//! status (short-circuit), and may return a [`CallObserver`] that is then
//! told about every message and the final status of that call. Interceptors
//! run in the order they were added; each sees the changes of the ones
//! before it. They are async: an interceptor may await (a token lookup, a
//! policy check) before the call goes out or the handler runs.
//!
//! Client interceptors run once per call, before the call credentials and
//! before a connection is picked; a short-circuited call never touches the
//! network. A call that is retried (gRFC A6) is still one call to them, as a
//! grpc-java `ClientInterceptor` is: `start` and `on_finish` come once, and
//! [`CallObserver::on_attempt_start`] / [`CallObserver::on_attempt_end`]
//! mark each attempt (what grpc-java's per-attempt `ClientStreamTracer`
//! sees; the telemetry uses them for A66's attempt metrics and A72's
//! attempt spans). Message events are reported per attempt, as the messages
//! go on the wire: a message replayed on a retry is reported again. The
//! exception is hedging: each hedged attempt runs the interceptors as a call
//! of its own.
//! Server interceptors run after the request head is validated and before the
//! handler; a rejection is sent as a trailers-only response.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::auth::{AuthContext, BoxFuture};
use crate::metadata::Metadata;
use crate::status::Status;

/// Told about one call's traffic. Every method has an empty default.
/// `on_finish` is called exactly once per call that the interceptor let
/// through, including calls that are cancelled or dropped.
pub trait CallObserver: Send + Sync + 'static {
    /// A message is going out; `wire_len` is its size on the wire (compressed).
    fn on_send_message(&self, _message: &Bytes, _wire_len: usize) {}
    /// Response headers arrived (client side); may be changed before the caller sees them.
    fn on_initial_metadata(&self, _metadata: &mut Metadata) {}
    /// A message arrived; `wire_len` is its size on the wire (compressed).
    fn on_recv_message(&self, _message: &Bytes, _wire_len: usize) {}
    /// The call ended with this status (its trailers in `status.metadata()`).
    fn on_finish(&self, _status: &Status) {}
    /// Client side: an attempt of the call starts; `previous_attempts` came
    /// before it (retries), `transparent` is a transparent retry of a stream
    /// the server refused unprocessed. `metadata` is the attempt's request
    /// metadata (e.g. for a per-attempt trace context). Every call that goes
    /// to the network has at least one attempt.
    fn on_attempt_start(&self, _previous_attempts: u32, _transparent: bool, _metadata: &mut Metadata) {}
    /// Client side: the current attempt ended with this status (the call
    /// may go on with another attempt; `on_finish` follows the last).
    fn on_attempt_end(&self, _status: &Status) {}
}

/// A call as a client interceptor sees it before it starts.
#[derive(Debug)]
pub struct ClientCallHead {
    /// The full method path `/package.Service/Method`.
    pub method: String,
    /// The `:authority`.
    pub authority: String,
    /// The request metadata; changes go on the wire.
    pub metadata: Metadata,
    /// The call's deadline, if any.
    pub deadline: Option<Instant>,
}

/// A client interceptor: see the module docs.
pub trait ClientInterceptor: Send + Sync + 'static {
    /// Runs before the call starts. `Err(status)` ends the call with that
    /// status; `Ok(Some(observer))` watches the call.
    fn start<'a>(
        &'a self,
        head: &'a mut ClientCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>>;
}

impl std::fmt::Debug for dyn ClientInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientInterceptor")
    }
}

/// A call as a server interceptor sees it before the handler runs.
#[derive(Debug)]
pub struct ServerCallHead {
    /// The full method path `/package.Service/Method`.
    pub method: String,
    /// The request metadata; the handler sees the changes.
    pub metadata: Metadata,
    /// The deadline from `grpc-timeout`, if any.
    pub deadline: Option<Instant>,
    /// The peer and its TLS identity.
    pub auth: Arc<AuthContext>,
    /// True for a registered method; false for calls the fallback handler
    /// takes. (Changing `method` does not re-route the call.)
    pub registered: bool,
    /// Values for the handler ([`CallInfo::extensions`](crate::server::CallInfo::extensions)),
    /// e.g. the tracing context or an authenticated principal.
    pub extensions: http::Extensions,
}

/// A server interceptor: see the module docs.
pub trait ServerInterceptor: Send + Sync + 'static {
    /// Runs before the handler. `Err(status)` answers the call with that
    /// status (e.g. UNAUTHENTICATED, PERMISSION_DENIED) without running it.
    fn intercept<'a>(
        &'a self,
        head: &'a mut ServerCallHead,
    ) -> BoxFuture<'a, Result<Option<Arc<dyn CallObserver>>, Status>>;
}

impl std::fmt::Debug for dyn ServerInterceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerInterceptor")
    }
}

/// The observers of one call; empty (and free) when nothing intercepts.
#[derive(Default)]
pub(crate) struct Observers {
    list: Vec<Arc<dyn CallObserver>>,
    finished: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for Observers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Observers({})", self.list.len())
    }
}

impl Observers {
    pub(crate) fn new(list: Vec<Arc<dyn CallObserver>>) -> Observers {
        Observers { list, finished: Default::default() }
    }
    pub(crate) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    pub(crate) fn send(&self, m: &Bytes, wire_len: usize) {
        for o in &self.list {
            o.on_send_message(m, wire_len);
        }
    }
    pub(crate) fn recv(&self, m: &Bytes, wire_len: usize) {
        for o in &self.list {
            o.on_recv_message(m, wire_len);
        }
    }
    pub(crate) fn initial_metadata(&self, md: &mut Metadata) {
        for o in &self.list {
            o.on_initial_metadata(md);
        }
    }
    pub(crate) fn attempt_start(&self, previous: u32, transparent: bool, md: &mut Metadata) {
        for o in &self.list {
            o.on_attempt_start(previous, transparent, md);
        }
    }
    pub(crate) fn attempt_end(&self, st: &Status) {
        for o in &self.list {
            o.on_attempt_end(st);
        }
    }
    /// Reports the final status once; later calls do nothing.
    pub(crate) fn finish(&self, st: &Status) {
        if self.list.is_empty() || self.finished.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        for o in &self.list {
            o.on_finish(st);
        }
    }
}

impl Drop for Observers {
    fn drop(&mut self) {
        self.finish(&Status::cancelled("call dropped before it finished"));
    }
}
