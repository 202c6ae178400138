//! Node binding of grpc-core (napi-rs). The JavaScript layer (`index.js`)
//! gives it the @grpc/grpc-js shape; this module only moves bytes.
//!
//! Every asynchronous operation runs on the core's runtime and completes as
//! an event on one process-wide queue. The first event of a batch wakes the
//! JS thread once through a weak threadsafe function, which drains the whole
//! queue in one crossing. Keeping the process alive while work is open is
//! the JS layer's job (a ref'd timer), so napi's own tokio runtime stays off.

#![allow(missing_debug_implementations)] // napi classes and Buffers have no Debug.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use grpc_core::surface::{
    self, AuthContext, AuthMetadataContext, CallCredentials, CallHandle, CallOptions, CallReceiver, CallSender,
    Channel, ChannelOptions, ClientTlsConfig, Code, Compression, HealthReporter, IncomingCall, ManualResolver,
    Metadata, MetadataValue, MethodKind, Server, ServerOptions, ServerReceiver, ServerSender, ServerTlsConfig,
    ServingStatus, Status,
};
use napi::bindgen_prelude::{Buffer, Either, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status as NapiStatus;
use napi_derive::napi;

pub mod logs;
pub mod telemetry;

type Tsfn = ThreadsafeFunction<(), (), Vec<JsEvent>, NapiStatus, false, true>;

/// Metadata as it crosses: `[key, value, key, value, ...]`, values are
/// strings or (for `-bin` keys) Buffers.
type MdList = Vec<Either<String, Buffer>>;

static WAKER: OnceLock<Tsfn> = OnceLock::new();
static QUEUE: Mutex<Vec<Event>> = Mutex::new(Vec::new());

/// One completion, built off the JS thread.
#[derive(Default)]
struct Event {
    id: u32,
    md: Option<Metadata>,
    msg: Option<Bytes>,
    /// Messages coalesced after `msg` (same id, posted while JS was busy).
    rest: Vec<Bytes>,
    status: Option<Status>,
    port: Option<u32>,
    more: bool,
    incoming: Option<Incoming>,
    auth: Option<AuthRequest>,
}

/// A call-credentials request for the JS generator.
struct AuthRequest {
    req: u32,
    ctx: AuthMetadataContext,
}

struct Incoming {
    call: ServerCallNative,
    method: String,
    deadline: Option<f64>,
    peer: String,
    traceparent: Option<String>,
}

/// One completion as JavaScript sees it.
#[napi(object, object_from_js = false)]
pub struct JsEvent {
    /// The operation (or server, or server call) it belongs to.
    pub id: u32,
    /// Metadata (response headers, or request metadata of an incoming call).
    pub md: Option<MdList>,
    /// A message.
    pub msg: Option<Buffer>,
    /// Several messages, in order (instead of `msg`), when they queued up
    /// while the JS thread was busy: one event per ready batch.
    pub msgs: Option<Vec<Buffer>>,
    /// Status code, when the event ends an operation with a status.
    pub code: Option<i32>,
    /// Status message.
    pub details: Option<String>,
    /// Trailing metadata of the status.
    pub trailers: Option<MdList>,
    /// The bound port.
    pub port: Option<u32>,
    /// A read batch used its whole credit: read again for more.
    pub more: Option<bool>,
    /// An incoming server call.
    pub call: Option<ServerCallNative>,
    /// Its method path.
    pub method: Option<String>,
    /// Its deadline (ms since the epoch).
    pub deadline: Option<f64>,
    /// Its peer.
    pub peer: Option<String>,
    /// Its server span as `traceparent`, when the server traces it.
    pub traceparent: Option<String>,
    /// A call-credentials request (for a credentials object's id).
    pub auth: Option<JsAuthRequest>,
}

/// What a metadata generator is asked for; answer with `credsReply(req, ...)`.
#[napi(object, object_from_js = false)]
pub struct JsAuthRequest {
    /// The request's id.
    pub req: u32,
    /// `https://<authority>/<package.Service>`.
    pub service_url: String,
    /// The method's short name.
    pub method_name: String,
    /// The full method path.
    pub method: String,
    /// The call's `:authority`.
    pub authority: String,
}

fn md_to_js(md: &Metadata) -> MdList {
    let mut out = Vec::with_capacity(md.len() * 2);
    for (k, v) in md.iter() {
        out.push(Either::A(k.to_string()));
        out.push(match v {
            MetadataValue::Ascii(s) => Either::A(s.clone()),
            MetadataValue::Binary(b) => Either::B(Buffer::from(b.to_vec())),
        });
    }
    out
}

fn md_from_js(list: Option<MdList>) -> napi::Result<Metadata> {
    let mut md = Metadata::new();
    let Some(list) = list else { return Ok(md) };
    let mut it = list.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        let Either::A(k) = k else { return Err(napi::Error::from_reason("metadata key must be a string")) };
        let r = match v {
            Either::A(s) => md.insert(k, s),
            Either::B(b) => md.insert_bin(k, Bytes::copy_from_slice(&b)),
        };
        r.map_err(|e| napi::Error::from_reason(e.message().to_string()))?;
    }
    Ok(md)
}

impl Event {
    fn into_js(self) -> JsEvent {
        let (code, details, trailers) = match &self.status {
            Some(s) => (Some(s.code().as_i32()), Some(s.message().to_string()), Some(md_to_js(s.metadata()))),
            None => (None, None, None),
        };
        let (call, method, deadline, peer, traceparent) = match self.incoming {
            Some(i) => (Some(i.call), Some(i.method), i.deadline, Some(i.peer), i.traceparent),
            None => (None, None, None, None, None),
        };
        let (msg, msgs) = match (self.msg, self.rest.is_empty()) {
            (Some(m), true) => (Some(Buffer::from(m.to_vec())), None),
            (Some(m), false) => {
                let mut all = Vec::with_capacity(self.rest.len() + 1);
                all.push(Buffer::from(m.to_vec()));
                all.extend(self.rest.into_iter().map(|b| Buffer::from(b.to_vec())));
                (None, Some(all))
            }
            (None, _) => (None, None),
        };
        JsEvent {
            id: self.id,
            md: self.md.as_ref().map(md_to_js),
            msg,
            msgs,
            code,
            details,
            trailers,
            port: self.port,
            more: self.more.then_some(true),
            call,
            method,
            deadline,
            peer,
            traceparent,
            auth: self.auth.map(|a| JsAuthRequest {
                req: a.req,
                service_url: a.ctx.service_url,
                method_name: a.ctx.method_name,
                method: a.ctx.method,
                authority: a.ctx.authority,
            }),
        }
    }
}

impl Event {
    /// Only a message (and maybe the end-of-credit mark).
    fn is_bare_message(&self) -> bool {
        self.msg.is_some()
            && self.md.is_none()
            && self.status.is_none()
            && self.port.is_none()
            && self.incoming.is_none()
            && self.auth.is_none()
    }
}

/// Queues an event; the first of a batch wakes the JS thread. A message
/// that follows a queued message of the same operation joins that event,
/// so a stream's ready messages cross into JS as one event.
fn post(ev: Event) {
    let first = {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        if ev.is_bare_message() {
            if let Some(last) = q
                .last_mut()
                .filter(|l| l.id == ev.id && l.msg.is_some() && l.status.is_none() && l.incoming.is_none() && !l.more)
            {
                last.rest.extend(ev.msg);
                last.more = ev.more;
                return;
            }
        }
        q.push(ev);
        q.len() == 1
    };
    if first {
        if let Some(w) = WAKER.get() {
            w.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

fn post_status(id: u32, status: Status) {
    post(Event { id, status: Some(status), ..Default::default() });
}

/// Installs the function that receives every batch of events (once).
#[napi]
pub fn init(callback: Function<'_, Vec<JsEvent>, ()>) -> napi::Result<()> {
    if WAKER.get().is_some() {
        return Ok(());
    }
    let tsfn: Tsfn =
        callback.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build_callback(|_ctx| {
            let batch = std::mem::take(&mut *QUEUE.lock().unwrap_or_else(|e| e.into_inner()));
            Ok(batch.into_iter().map(Event::into_js).collect::<Vec<_>>())
        })?;
    let _ = WAKER.set(tsfn);
    Ok(())
}

// ---------------------------------------------------------------- call credentials

type CredsReply = tokio::sync::oneshot::Sender<Result<Metadata, Status>>;

/// Generator requests waiting for JS's answer, by request id.
static CREDS_PENDING: Mutex<Option<HashMap<u32, CredsReply>>> = Mutex::new(None);
static NEXT_CREDS_REQ: AtomicU32 = AtomicU32::new(1);

fn pending() -> std::sync::MutexGuard<'static, Option<HashMap<u32, CredsReply>>> {
    CREDS_PENDING.lock().unwrap_or_else(|e| e.into_inner())
}

/// Forgets a request whose call went away before JS answered.
struct PendingGuard(u32);

impl Drop for PendingGuard {
    fn drop(&mut self) {
        if let Some(m) = pending().as_mut() {
            m.remove(&self.0);
        }
    }
}

/// Tells JS (an OK status under the generator's id) that the engine dropped
/// the last reference to a generator's provider: no request can come any
/// more, so JS forgets the generator.
struct Released(u32);

impl Drop for Released {
    fn drop(&mut self) {
        post_status(self.0, Status::ok());
    }
}

/// Call credentials: the engine's `CallCredentials`, whose providers are JS
/// metadata generators. The engine runs them for each call (after refusing
/// plaintext channels); each run is an event under the generator's `id`, and
/// JS answers with [`creds_reply`].
#[napi]
pub struct CallCredsNative {
    creds: CallCredentials,
}

#[napi]
impl CallCredsNative {
    /// Credentials from the JS generator registered under event id `id`.
    #[napi(constructor)]
    pub fn new(id: u32) -> Self {
        let released = Released(id);
        let creds = CallCredentials::from_fn(move |ctx: &AuthMetadataContext| {
            let _owner = &released;
            let (tx, rx) = tokio::sync::oneshot::channel();
            let req = NEXT_CREDS_REQ.fetch_add(1, Ordering::Relaxed);
            pending().get_or_insert_with(HashMap::new).insert(req, tx);
            post(Event { id, auth: Some(AuthRequest { req, ctx: ctx.clone() }), ..Default::default() });
            async move {
                let _guard = PendingGuard(req);
                match rx.await {
                    Ok(r) => r,
                    Err(_) => Err(Status::unavailable("call credentials: the generator went away")),
                }
            }
        });
        CallCredsNative { creds }
    }

    /// `authorization: Bearer <token>` on every call.
    #[napi(factory)]
    pub fn access_token(token: String) -> napi::Result<Self> {
        let creds =
            CallCredentials::access_token(&token).map_err(|e| napi::Error::from_reason(e.message().to_string()))?;
        Ok(CallCredsNative { creds })
    }

    /// Both: this one's metadata, then `other`'s.
    #[napi]
    pub fn compose(&self, other: &CallCredsNative) -> CallCredsNative {
        CallCredsNative { creds: self.creds.compose(&other.creds) }
    }
}

/// Answers generator request `req`: metadata, or (when `code` is non-zero)
/// the error status. Unknown or answered requests are ignored.
#[napi]
pub fn creds_reply(req: u32, md: Option<MdList>, code: i32, details: String) {
    let Some(tx) = pending().as_mut().and_then(|m| m.remove(&req)) else { return };
    let r = if code != 0 {
        Err(Status::new(Code::from_i32(code), details))
    } else {
        md_from_js(md).map_err(|e| Status::internal(format!("call credentials: {}", e.reason)))
    };
    let _ = tx.send(r);
}

fn compression_from(n: Option<u32>) -> Option<Compression> {
    match n {
        Some(1) => Some(Compression::Deflate),
        Some(2) => Some(Compression::Gzip),
        Some(3) => Some(Compression::Zstd),
        Some(0) => Some(Compression::Identity),
        _ => None,
    }
}

fn timeout_from(ms: Option<f64>) -> Option<Duration> {
    ms.filter(|m| m.is_finite()).map(|m| Duration::from_secs_f64(m.max(0.0) / 1000.0))
}

/// Channel settings from the JS layer.
#[napi(object)]
#[derive(Default)]
pub struct ChannelConfig {
    /// Use TLS.
    pub secure: bool,
    /// PEM roots (TLS).
    pub root_certs: Option<Buffer>,
    /// PEM private key (mTLS).
    pub private_key: Option<Buffer>,
    /// PEM certificate chain (mTLS).
    pub cert_chain: Option<Buffer>,
    /// `grpc.ssl_target_name_override`.
    pub server_name_override: Option<String>,
    /// `grpc.default_authority`.
    pub authority: Option<String>,
    /// `grpc.primary_user_agent`.
    pub user_agent: Option<String>,
    /// `grpc.max_receive_message_length` (-1 unlimited).
    pub max_recv: Option<i64>,
    /// `grpc.max_send_message_length` (-1 unlimited).
    pub max_send: Option<i64>,
    /// `grpc.default_compression_algorithm` (0 identity, 1 deflate, 2 gzip, 3 zstd).
    pub compression: Option<u32>,
    /// Send call credentials over plaintext too.
    pub allow_insecure_creds: Option<bool>,
    /// Service config JSON (`grpc.service_config`, with the JS layer's
    /// `grpc.lb_policy_name` / `grpc.enable_retries` folded in).
    pub service_config: Option<String>,
    /// `grpc.client_idle_timeout_ms` (0: never).
    pub idle_timeout_ms: Option<f64>,
    /// `grpc.dns_min_time_between_resolutions_ms`: the `dns:` refresh period.
    pub dns_refresh_ms: Option<f64>,
}

/// A resolver the user feeds addresses to, for `manual:///name` targets.
#[napi]
pub struct ManualResolverNative {
    r: ManualResolver,
}

#[napi]
impl ManualResolverNative {
    /// A resolver with no addresses yet (calls wait, or fail fast).
    #[napi(constructor)]
    #[allow(clippy::new_without_default)] // a napi constructor
    pub fn new() -> Self {
        ManualResolverNative { r: ManualResolver::new() }
    }

    /// Replaces the address list (`ip:port`, `[ipv6]:port`, `unix:/path`).
    #[napi]
    pub fn update(&self, addrs: Vec<String>) -> napi::Result<()> {
        self.r.update_from_strs(addrs).map_err(|e| napi::Error::from_reason(e.message().to_string()))
    }

    /// Reports a resolution error: calls fail fast with UNAVAILABLE and this message.
    #[napi]
    pub fn report_error(&self, message: String) {
        self.r.report_error(message);
    }
}

fn size_limit(v: Option<i64>, default: usize) -> usize {
    match v {
        Some(n) if n < 0 => usize::MAX,
        Some(n) => n as usize,
        None => default,
    }
}

/// A client channel.
#[napi]
pub struct ChannelNative {
    ch: Channel,
}

#[napi]
impl ChannelNative {
    /// Creates a channel (connects lazily).
    #[napi(constructor)]
    pub fn new(
        target: String,
        config: Option<ChannelConfig>,
        creds: Option<&CallCredsNative>,
        resolver: Option<&ManualResolverNative>,
        telemetry: Option<&telemetry::TelemetryNative>,
    ) -> napi::Result<Self> {
        let c = config.unwrap_or_default();
        let mut o = ChannelOptions {
            telemetry: telemetry.map(|t| t.otel.clone()),
            call_credentials: creds.map(|c| c.creds.clone()),
            allow_insecure_call_credentials: c.allow_insecure_creds.unwrap_or(false),
            ..Default::default()
        };
        if c.secure {
            o.tls = Some(ClientTlsConfig {
                root_certs_pem: c.root_certs.map(|b| b.to_vec()),
                identity_pem: match (c.cert_chain, c.private_key) {
                    (Some(cert), Some(key)) => Some((cert.to_vec(), key.to_vec())),
                    _ => None,
                },
                server_name_override: c.server_name_override,
            });
        }
        o.authority = c.authority;
        o.user_agent = c.user_agent;
        o.max_recv_message_size = size_limit(c.max_recv, o.max_recv_message_size);
        o.max_send_message_size = size_limit(c.max_send, o.max_send_message_size);
        o.default_compression = compression_from(c.compression);
        o.service_config = c.service_config;
        o.manual_resolver = resolver.map(|r| r.r.clone());
        if let Some(ms) = c.idle_timeout_ms {
            o.idle_timeout = timeout_from(Some(ms)).filter(|d| !d.is_zero());
        }
        if let Some(d) = timeout_from(c.dns_refresh_ms).filter(|d| !d.is_zero()) {
            o.dns_refresh_interval = d;
        }
        let ch = Channel::new(&target, o).map_err(|e| napi::Error::from_reason(e.message().to_string()))?;
        Ok(ChannelNative { ch })
    }

    /// Closes the channel.
    #[napi]
    pub fn close(&self) {
        self.ch.close();
    }

    /// Connectivity state: 0 idle, 1 connecting, 2 ready, 3 transient failure, 4 shutdown.
    #[napi]
    pub fn state(&self, try_to_connect: bool) -> u32 {
        if try_to_connect {
            self.ch.connect();
        }
        use surface::ConnectivityState as S;
        match self.ch.state() {
            S::Idle => 0,
            S::Connecting => 1,
            S::Ready => 2,
            S::TransientFailure => 3,
            S::Shutdown => 4,
        }
    }

    /// Waits until the state differs from `from` (a `state` number);
    /// completes `id` with OK, or DEADLINE_EXCEEDED if `timeout_ms` passed first.
    #[napi]
    pub fn watch_state(&self, id: u32, from: u32, timeout_ms: Option<f64>) {
        use surface::ConnectivityState as S;
        let from = match from {
            0 => S::Idle,
            1 => S::Connecting,
            2 => S::Ready,
            3 => S::TransientFailure,
            _ => S::Shutdown,
        };
        let ch = self.ch.clone();
        let deadline = timeout_from(timeout_ms).map(|t| std::time::Instant::now() + t);
        surface::spawn(async move {
            let changed = ch.wait_for_state_change(from, deadline).await;
            post_status(id, if changed { Status::ok() } else { Status::deadline_exceeded("deadline passed") });
        });
    }

    /// Connects and waits until ready; completes `id` with a status.
    #[napi]
    pub fn wait_ready(&self, id: u32, timeout_ms: Option<f64>) {
        let ch = self.ch.clone();
        let deadline = timeout_from(timeout_ms).map(|t| std::time::Instant::now() + t);
        surface::spawn(async move {
            let st = match ch.ready(deadline).await {
                Ok(()) => Status::ok(),
                Err(s) => s,
            };
            post_status(id, st);
        });
    }

    /// A unary call in one crossing each way: completes `id` with the
    /// response headers, message and status.
    #[napi]
    #[allow(clippy::too_many_arguments)] // one crossing per call: everything comes at once
    pub fn unary(
        &self,
        id: u32,
        method: String,
        msg: Buffer,
        md: Option<MdList>,
        timeout_ms: Option<f64>,
        wait_for_ready: bool,
        creds: Option<&CallCredsNative>,
    ) -> napi::Result<CallNative> {
        let opts = call_options(md, timeout_ms, wait_for_ready, creds)?;
        let msg = Bytes::copy_from_slice(&msg);
        let state = Arc::new(ClientState::default());
        let st = state.clone();
        let ch = self.ch.clone();
        // The engine's unary path (service-config retries and hedging);
        // cancel aborts this task, which drops the attempts (RST_STREAM).
        let task = surface::spawn(async move {
            let r = ch.unary(&method, msg, opts).await;
            if st.done.swap(true, Ordering::AcqRel) {
                return;
            }
            match r {
                Ok(resp) => post(Event {
                    id: st.set_peer(resp.peer, id),
                    md: Some(resp.initial_metadata),
                    msg: Some(resp.message),
                    status: Some(Status::ok().with_metadata(resp.trailing_metadata)),
                    ..Default::default()
                }),
                // A failure after the response headers reports them first
                // ('metadata' before the error, as grpc-js); a trailers-only
                // failure has none.
                Err(s) => {
                    let md = Some(s.initial_metadata().clone()).filter(|m| !m.is_empty());
                    post(Event { id, md, status: Some(s), ..Default::default() })
                }
            }
        });
        state.unary_id.store(id, Ordering::Release);
        *state.abort.lock().unwrap_or_else(|e| e.into_inner()) = Some(task.abort_handle());
        Ok(CallNative { state })
    }

    /// Starts a streaming call; drive it with the returned object.
    #[napi]
    pub fn start(
        &self,
        method: String,
        md: Option<MdList>,
        timeout_ms: Option<f64>,
        wait_for_ready: bool,
        creds: Option<&CallCredsNative>,
    ) -> napi::Result<CallNative> {
        let opts = call_options(md, timeout_ms, wait_for_ready, creds)?;
        let state = Arc::new(ClientState::default());
        let send_guard = state.sender.clone().try_lock_owned().expect("fresh lock");
        let recv_guard = state.receiver.clone().try_lock_owned().expect("fresh lock");
        let st = state.clone();
        let ch = self.ch.clone();
        surface::spawn(async move {
            let (mut send_guard, mut recv_guard) = (send_guard, recv_guard);
            match ch.call(&method, opts).await {
                Ok(call) => {
                    if !st.attach(call.handle()) {
                        call.cancel();
                    }
                    let (s, r) = call.split();
                    *st.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(r.peer().to_string());
                    *send_guard = Some(s);
                    *recv_guard = Some(r);
                }
                Err(s) => *st.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(s),
            }
        });
        Ok(CallNative { state })
    }
}

fn call_options(
    md: Option<MdList>,
    timeout_ms: Option<f64>,
    wait_for_ready: bool,
    creds: Option<&CallCredsNative>,
) -> napi::Result<CallOptions> {
    Ok(CallOptions {
        metadata: md_from_js(md)?,
        timeout: timeout_from(timeout_ms),
        wait_for_ready,
        credentials: creds.map(|c| c.creds.clone()),
        ..Default::default()
    })
}

#[derive(Default)]
struct ClientState {
    handle: Mutex<Option<CallHandle>>,
    cancelled: AtomicBool,
    failed: Mutex<Option<Status>>,
    sender: Arc<tokio::sync::Mutex<Option<CallSender>>>,
    receiver: Arc<tokio::sync::Mutex<Option<CallReceiver>>>,
    got_headers: AtomicBool,
    /// The connected server address, once a streaming call started.
    peer: Mutex<Option<String>>,
    /// Unary calls: the engine task, its completion id, and whether it was reported.
    abort: Mutex<Option<tokio::task::AbortHandle>>,
    unary_id: AtomicU32,
    done: AtomicBool,
}

impl ClientState {
    /// Records the answering server (for `getPeer()`); passes `id` through.
    fn set_peer(&self, peer: String, id: u32) -> u32 {
        *self.peer.lock().unwrap_or_else(|e| e.into_inner()) = Some(peer);
        id
    }

    /// Keeps the cancel handle; false if the call was cancelled already.
    fn attach(&self, h: CallHandle) -> bool {
        let mut slot = self.handle.lock().unwrap_or_else(|e| e.into_inner());
        *slot = Some(h);
        !self.cancelled.load(Ordering::Acquire)
    }

    fn failed(&self) -> Status {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .unwrap_or_else(|| Status::internal("call not started"))
    }
}

/// A client call.
#[napi]
pub struct CallNative {
    state: Arc<ClientState>,
}

#[napi]
impl CallNative {
    /// Cancels the call (CANCELLED); no effect once it ended.
    #[napi]
    pub fn cancel(&self) {
        self.state.cancelled.store(true, Ordering::Release);
        if let Some(h) = self.state.handle.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            h.cancel();
        }
        if let Some(task) = self.state.abort.lock().unwrap_or_else(|e| e.into_inner()).take() {
            if !self.state.done.swap(true, Ordering::AcqRel) {
                task.abort();
                post_status(self.state.unary_id.load(Ordering::Acquire), Status::cancelled("Cancelled on client"));
            }
        }
    }

    /// The server address the call went to (`ip:port`), once known.
    #[napi]
    pub fn peer(&self) -> Option<String> {
        self.state.peer.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Sends a message (`last` half-closes with it); completes `id` (if
    /// non-zero) with an OK status or the error.
    #[napi]
    pub fn write(&self, id: u32, msg: Buffer, last: bool) {
        let msg = Bytes::copy_from_slice(&msg);
        let sender = self.state.sender.clone();
        surface::spawn(async move {
            let mut guard = sender.lock().await;
            let st = match guard.as_mut() {
                Some(s) => match s.send_with(msg, true, last).await {
                    Ok(()) => Status::ok(),
                    Err(e) => e,
                },
                None => Status::cancelled("call not started"),
            };
            if id != 0 {
                post_status(id, st);
            }
        });
    }

    /// Sends several messages in order (`last` half-closes with the last);
    /// completes `id` once, with OK or the first error.
    #[napi]
    pub fn write_many(&self, id: u32, msgs: Vec<Buffer>, last: bool) {
        let msgs: Vec<Bytes> = msgs.iter().map(|b| Bytes::copy_from_slice(b)).collect();
        let sender = self.state.sender.clone();
        surface::spawn(async move {
            let mut guard = sender.lock().await;
            let st = match guard.as_mut() {
                Some(s) => {
                    let n = msgs.len();
                    let mut st = Status::ok();
                    for (i, m) in msgs.into_iter().enumerate() {
                        if let Err(e) = s.send_with(m, true, last && i + 1 == n).await {
                            st = e;
                            break;
                        }
                    }
                    st
                }
                None => Status::cancelled("call not started"),
            };
            post_status(id, st);
        });
    }

    /// Half-closes; completes `id` (if non-zero).
    #[napi]
    pub fn writes_done(&self, id: u32) {
        let sender = self.state.sender.clone();
        surface::spawn(async move {
            let mut guard = sender.lock().await;
            let st = match guard.as_mut() {
                Some(s) => match s.close_send().await {
                    Ok(()) => Status::ok(),
                    Err(e) => e,
                },
                None => Status::cancelled("call not started"),
            };
            if id != 0 {
                post_status(id, st);
            }
        });
    }

    /// Reads up to `max` messages, each its own event under `id`: the
    /// response headers come with the first, the status ends the call, and
    /// an event with `more` set says the credit is used up.
    #[napi]
    pub fn read(&self, id: u32, max: u32) {
        let state = self.state.clone();
        surface::spawn(async move {
            let mut guard = state.receiver.lock().await;
            let Some(r) = guard.as_mut() else { return post_status(id, state.failed()) };
            let mut md = None;
            if !state.got_headers.swap(true, Ordering::AcqRel) {
                match r.initial_metadata().await {
                    // A trailers-only response has no headers to report (as in grpc-js).
                    Ok(m) if r.headers_received() => md = Some(m),
                    Ok(_) => {}
                    Err(s) => return post_status(id, s),
                }
            }
            let max = max.max(1);
            for i in 0..max {
                let mut ev = Event { id, md: md.take(), ..Default::default() };
                match r.recv().await {
                    Ok(Some(m)) => {
                        ev.msg = Some(m);
                        ev.more = i + 1 == max;
                        post(ev);
                    }
                    Ok(None) => {
                        ev.status = Some(r.status().cloned().unwrap_or_else(Status::ok));
                        return post(ev);
                    }
                    Err(s) => {
                        ev.status = Some(s);
                        return post(ev);
                    }
                }
            }
        });
    }

    /// Reads one response and the status (client streaming): completes `id`
    /// with headers, message and status in one event.
    #[napi]
    pub fn read_unary(&self, id: u32) {
        let state = self.state.clone();
        surface::spawn(async move {
            let mut guard = state.receiver.lock().await;
            let Some(r) = guard.as_mut() else { return post_status(id, state.failed()) };
            let mut ev = Event { id, ..Default::default() };
            match r.initial_metadata().await {
                Ok(md) => ev.md = Some(md),
                Err(s) => {
                    ev.status = Some(s);
                    return post(ev);
                }
            }
            match r.recv().await {
                Ok(Some(m)) => ev.msg = Some(m),
                Ok(None) => {
                    ev.status = Some(Status::internal("cardinality violation: expected a response message, got none"));
                    return post(ev);
                }
                Err(s) => {
                    ev.status = Some(s);
                    return post(ev);
                }
            }
            ev.status = Some(match r.recv().await {
                Ok(None) => r.status().cloned().unwrap_or_else(Status::ok),
                Ok(Some(_)) => {
                    r.handle().cancel();
                    Status::internal("cardinality violation: received more than one response message")
                }
                Err(s) => s,
            });
            post(ev);
        });
    }
}

/// TLS settings of a server.
#[napi(object)]
pub struct ServerTls {
    /// PEM certificate chain.
    pub cert_chain: Buffer,
    /// PEM private key.
    pub private_key: Buffer,
    /// PEM roots for client certificates.
    pub root_certs: Option<Buffer>,
    /// Reject clients without a certificate.
    pub require_client_cert: bool,
}

/// Server settings from the JS layer.
#[napi(object)]
#[derive(Default)]
pub struct ServerConfig {
    /// `grpc.max_receive_message_length` (-1 unlimited).
    pub max_recv: Option<i64>,
    /// `grpc.max_send_message_length` (-1 unlimited).
    pub max_send: Option<i64>,
    /// Response compression (0 identity, 1 deflate, 2 gzip, 3 zstd).
    pub compression: Option<u32>,
    /// Encoded `FileDescriptorSet`s to serve server reflection from.
    pub reflection: Option<Vec<Buffer>>,
    /// Serve the engine's `grpc.health.v1.Health` (Check and Watch).
    pub health: Option<bool>,
}

/// A server. Methods are registered before the first bind.
#[napi]
pub struct ServerNative {
    id: u32,
    config: ServerConfig,
    methods: Vec<(String, MethodKind)>,
    tls: Option<ServerTlsConfig>,
    server: Option<Server>,
    /// The engine's health reporter, once built with `health`.
    health: Option<HealthReporter>,
    /// Statuses set before the build, applied in order by it.
    health_init: Vec<(String, ServingStatus)>,
    /// An OpenTelemetryPlugin's sink, for the build.
    telemetry: Option<grpc_core::telemetry::OpenTelemetry>,
}

#[napi]
impl ServerNative {
    /// A server whose incoming calls are events with this `id`.
    #[napi(constructor)]
    pub fn new(id: u32, config: Option<ServerConfig>) -> Self {
        ServerNative {
            id,
            config: config.unwrap_or_default(),
            methods: Vec::new(),
            tls: None,
            server: None,
            health: None,
            health_init: Vec::new(),
            telemetry: None,
        }
    }

    /// Records this server's calls into an OpenTelemetryPlugin (before the first bind).
    #[napi]
    pub fn set_telemetry(&mut self, telemetry: &telemetry::TelemetryNative) {
        self.telemetry = Some(telemetry.otel.clone());
    }

    /// Sets a service's health (0 UNKNOWN, 1 SERVING, 2 NOT_SERVING,
    /// 3 SERVICE_UNKNOWN: forgotten, Check answers NOT_FOUND). Before the
    /// first bind the status is kept for the build; ignored on a server
    /// without the health service.
    #[napi]
    pub fn health_set(&mut self, service: String, status: u32) -> napi::Result<()> {
        let status = match status {
            0 => ServingStatus::Unknown,
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            3 => ServingStatus::ServiceUnknown,
            n => return Err(napi::Error::from_reason(format!("unknown serving status {n}"))),
        };
        match &self.health {
            Some(r) => r.set(&service, status),
            None if self.server.is_none() => {
                self.health_init.retain(|(s, _)| *s != service);
                self.health_init.push((service, status));
            }
            None => {}
        }
        Ok(())
    }

    /// Registers a method: kind 0 unary, 1 client streaming, 2 server streaming, 3 bidi.
    #[napi]
    pub fn add_method(&mut self, path: String, kind: u32) {
        let kind = match kind {
            0 => MethodKind::Unary,
            1 => MethodKind::ClientStreaming,
            2 => MethodKind::ServerStreaming,
            _ => MethodKind::BidiStreaming,
        };
        self.methods.retain(|(p, _)| *p != path);
        self.methods.push((path, kind));
    }

    /// Removes a method (before the first bind).
    #[napi]
    pub fn remove_method(&mut self, path: String) {
        self.methods.retain(|(p, _)| *p != path);
    }

    /// Listens on `addr` (and starts serving); completes `id` with the port or an error.
    #[napi]
    pub fn bind(&mut self, id: u32, addr: String, tls: Option<ServerTls>) -> napi::Result<()> {
        let tls = tls.map(|t| ServerTlsConfig {
            cert_chain_pem: t.cert_chain.to_vec(),
            private_key_pem: t.private_key.to_vec(),
            client_ca_pem: t.root_certs.map(|b| b.to_vec()),
            require_client_cert: t.require_client_cert,
        });
        if self.server.is_none() {
            self.tls = tls;
            self.server = Some(self.build()?);
        } else if tls.is_some() != self.tls.is_some() {
            return Err(napi::Error::from_reason("every port of one server must use the same credentials kind"));
        }
        let server = self.server.clone().expect("built");
        surface::spawn(async move {
            match server.bind(&addr).await {
                Ok(a) => {
                    server.start();
                    let port = match a {
                        surface::Address::Tcp(s) => s.port() as u32,
                        surface::Address::Unix(_) => 0,
                    };
                    post(Event { id, port: Some(port), ..Default::default() })
                }
                Err(e) => post_status(id, Status::unavailable(e.message().to_string())),
            }
        });
        Ok(())
    }

    fn build(&mut self) -> napi::Result<Server> {
        let mut o = ServerOptions {
            tls: self.tls.clone(),
            default_compression: compression_from(self.config.compression),
            telemetry: self.telemetry.clone(),
            ..Default::default()
        };
        o.max_recv_message_size = size_limit(self.config.max_recv, o.max_recv_message_size);
        o.max_send_message_size = size_limit(self.config.max_send, o.max_send_message_size);
        let mut b = Server::builder(o);
        let mut health = None;
        if self.config.health == Some(true) {
            let (with, reporter) = b.with_health();
            b = with;
            // As grpc-health-check: only the services given a status are known,
            // the whole server ("") included.
            if !self.health_init.iter().any(|(s, _)| s.is_empty()) {
                reporter.set("", ServingStatus::ServiceUnknown);
            }
            for (service, status) in &self.health_init {
                reporter.set(service, *status);
            }
            health = Some(reporter);
        }
        for set in self.config.reflection.iter().flatten() {
            b = b.with_reflection(set).map_err(|e| napi::Error::from_reason(e.message().to_string()))?;
        }
        for (path, kind) in &self.methods {
            let server_id = self.id;
            let kind = *kind;
            let handler = surface::dispatch(move |call| deliver(server_id, kind, call));
            b = b.register(path, kind, handler).map_err(|e| napi::Error::from_reason(e.message().to_string()))?;
        }
        let server = b.build().map_err(|e| napi::Error::from_reason(e.message().to_string()))?;
        self.health = health;
        self.health_init.clear();
        Ok(server)
    }

    /// Shuts down: in-flight calls get `grace_ms` (0 cancels them now);
    /// completes `id` once every connection is closed.
    #[napi]
    pub fn shutdown(&mut self, id: u32, grace_ms: f64) {
        let server = self.server.clone();
        surface::spawn(async move {
            if let Some(s) = server {
                s.shutdown(Duration::from_secs_f64(grace_ms.max(0.0) / 1000.0)).await;
            }
            post_status(id, Status::ok());
        });
    }
}

/// Server-call tokens live above 2^31; the JS layer's operation ids below.
static NEXT_CALL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn epoch_ms(at: std::time::Instant) -> f64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0;
    now + at.saturating_duration_since(std::time::Instant::now()).as_secs_f64() * 1000.0
}

/// Hands an incoming call to JS: unary and server-streaming calls with
/// their one request already read.
fn deliver(server_id: u32, kind: MethodKind, mut call: IncomingCall) {
    let info = call.info().clone();
    let receiver = call.take_receiver();
    let sender = call.take_sender();
    let token = NEXT_CALL.fetch_add(1, Ordering::Relaxed) | 0x8000_0000;
    let done = call.done();
    let shared = Arc::new(ServerShared {
        call: Mutex::new(call),
        finish_requested: AtomicBool::new(false),
        completed: AtomicBool::new(false),
        pending_md: Mutex::new(None),
        sender: Arc::new(tokio::sync::Mutex::new(sender)),
        receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
        writer: Mutex::new(None),
        auth: info.auth_context().clone(),
    });
    // Reports a cancellation (client cancel, deadline, forced shutdown):
    // the call ended without our status reaching it. `completed` is set
    // under the call's lock in the same step as the finish, so this check
    // cannot run between the two.
    let watch = shared.clone();
    let streaming = kind != MethodKind::Unary;
    surface::spawn(async move {
        done.await;
        let completed = {
            let _call = watch.call.lock().unwrap_or_else(|e| e.into_inner());
            watch.completed.load(Ordering::Acquire)
        };
        if !completed {
            post_status(token, Status::cancelled("cancelled"));
        } else if streaming {
            // Streaming calls keep their JS handler until the end either way.
            post_status(token, Status::ok());
        }
    });
    let native = ServerCallNative { shared: shared.clone(), token };
    let mut ev = Event {
        id: server_id,
        md: Some(info.metadata().clone()),
        incoming: Some(Incoming {
            call: native,
            method: info.method().to_string(),
            deadline: info.deadline().map(epoch_ms),
            peer: info.peer().to_string(),
            traceparent: grpc_core::telemetry::server_traceparent(&info),
        }),
        ..Default::default()
    };
    if matches!(kind, MethodKind::Unary | MethodKind::ServerStreaming) {
        surface::spawn(async move {
            let mut r = shared.receiver.lock().await;
            let m = match r.as_mut() {
                Some(r) => r.recv().await,
                None => Ok(None),
            };
            match m {
                Ok(Some(m)) => {
                    ev.msg = Some(m);
                    drop(r);
                    post(ev);
                }
                Ok(None) | Err(_) => {
                    drop(r);
                    // The core already validated cardinality; nothing to deliver.
                    shared.finish_requested.store(true, Ordering::Release);
                    shared.finish(Status::internal("failed to read the request"));
                }
            }
        });
    } else {
        post(ev);
    }
}

struct ServerShared {
    call: Mutex<IncomingCall>,
    /// JS asked to finish (once).
    finish_requested: AtomicBool,
    /// Our status reached the call (set under `call`'s lock).
    completed: AtomicBool,
    pending_md: Mutex<Option<Metadata>>,
    sender: Arc<tokio::sync::Mutex<Option<ServerSender>>>,
    receiver: Arc<tokio::sync::Mutex<Option<ServerReceiver>>>,
    /// Ordered writes and the finish, once the first write started the writer task.
    writer: Mutex<Option<tokio::sync::mpsc::UnboundedSender<WriteCmd>>>,
    /// The peer's identity.
    auth: Arc<AuthContext>,
}

enum WriteCmd {
    Write(Bytes, u32),
    WriteMany(Vec<Bytes>, u32),
    Finish(Status, Option<Bytes>),
}

impl ServerShared {
    /// Queues a command for this call's writer task (started on first use),
    /// which runs them in order until the finish or the end of the call.
    fn command(self: &Arc<Self>, cmd: WriteCmd) {
        let mut slot = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let tx = slot.get_or_insert_with(|| {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let shared = self.clone();
            surface::spawn(async move {
                let done = shared.done();
                tokio::pin!(done);
                loop {
                    let cmd = tokio::select! {
                        c = rx.recv() => c,
                        _ = &mut done => None,
                    };
                    match cmd {
                        Some(WriteCmd::Write(m, id)) => {
                            let st = match shared.send(Some(m)).await {
                                Ok(()) => Status::ok(),
                                Err(s) => s,
                            };
                            post_status(id, st);
                        }
                        Some(WriteCmd::WriteMany(msgs, id)) => {
                            let st = match shared.send_many(msgs).await {
                                Ok(()) => Status::ok(),
                                Err(s) => s,
                            };
                            post_status(id, st);
                        }
                        Some(WriteCmd::Finish(st, msg)) => {
                            shared.finish_with(st, msg).await;
                            break;
                        }
                        None => break,
                    }
                }
                // Writes still queued after the end complete with the end.
                rx.close();
                while let Ok(cmd) = rx.try_recv() {
                    if let WriteCmd::Write(_, id) | WriteCmd::WriteMany(_, id) = cmd {
                        post_status(id, Status::cancelled("call is over"));
                    }
                }
            });
            tx
        });
        if let Err(e) = tx.send(cmd) {
            if let WriteCmd::Write(_, id) | WriteCmd::WriteMany(_, id) = e.0 {
                post_status(id, Status::cancelled("call is over"));
            }
        }
    }

    /// Sends the last message (for an OK status) and the status.
    async fn finish_with(&self, st: Status, msg: Option<Bytes>) {
        let failed = self.send(if st.code() == Code::Ok { msg } else { None }).await.err();
        self.finish(failed.unwrap_or(st));
    }

    fn finish(&self, st: Status) {
        let mut call = self.call.lock().unwrap_or_else(|e| e.into_inner());
        if call.finish(st) {
            self.completed.store(true, Ordering::Release);
        }
    }

    fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.call.lock().unwrap_or_else(|e| e.into_inner()).done()
    }

    async fn flush_md(&self, s: &mut ServerSender) -> Result<(), Status> {
        let md = self.pending_md.lock().unwrap_or_else(|e| e.into_inner()).take();
        match md {
            Some(md) => s.send_initial_metadata(md).await,
            None => Ok(()),
        }
    }

    /// Sends `msgs` in order under one lock, racing the call's end.
    async fn send_many(&self, msgs: Vec<Bytes>) -> Result<(), Status> {
        let done = self.done();
        let mut guard = self.sender.lock().await;
        let Some(s) = guard.as_mut() else { return Err(Status::cancelled("call is over")) };
        let work = async {
            self.flush_md(s).await?;
            for m in msgs {
                s.send(m).await?;
            }
            Ok(())
        };
        tokio::select! {
            r = work => r,
            _ = done => Err(Status::cancelled("call is over")),
        }
    }

    /// Sends `msg` (if any), racing the call's end.
    async fn send(&self, msg: Option<Bytes>) -> Result<(), Status> {
        let done = self.done();
        let mut guard = self.sender.lock().await;
        let Some(s) = guard.as_mut() else { return Err(Status::cancelled("call is over")) };
        let work = async {
            self.flush_md(s).await?;
            match msg {
                Some(m) => s.send(m).await,
                None => Ok(()),
            }
        };
        tokio::select! {
            r = work => r,
            _ = done => Err(Status::cancelled("call is over")),
        }
    }
}

/// A server call's auth context, as the engine sees it.
#[napi(object, object_from_js = false)]
pub struct JsAuthContext {
    /// The peer's address.
    pub peer: String,
    /// `ssl` or `insecure`.
    pub transport_security_type: String,
    /// The negotiated TLS version.
    pub tls_version: Option<String>,
    /// The verified client certificate chain (DER, leaf first).
    pub peer_certificates: Vec<Buffer>,
    /// The client certificate's subject (RFC 4514).
    pub subject: Option<String>,
    /// Its common name.
    pub common_name: Option<String>,
    /// Its subject alternative names.
    pub subject_alt_names: Vec<String>,
    /// The SANs if any, else the CN.
    pub peer_identity: Vec<String>,
    /// `x509_subject_alternative_name` or `x509_common_name`.
    pub peer_identity_property_name: Option<String>,
    /// gRPC core's properties, flat: `[name, value, ...]`.
    pub properties: Vec<String>,
}

/// An incoming server call.
#[napi]
pub struct ServerCallNative {
    shared: Arc<ServerShared>,
    token: u32,
}

#[napi]
impl ServerCallNative {
    /// The id of this call's `cancelled` event.
    #[napi(getter)]
    pub fn token(&self) -> u32 {
        self.token
    }

    /// Queues response headers (sent with the first message or the status).
    #[napi]
    pub fn send_metadata(&self, md: Option<MdList>) -> napi::Result<()> {
        let md = md_from_js(md)?;
        let mut slot = self.shared.pending_md.lock().unwrap_or_else(|e| e.into_inner());
        match slot.as_mut() {
            Some(m) => m.extend(md),
            None => *slot = Some(md),
        }
        Ok(())
    }

    /// Sends a message (in order with the other writes and the finish);
    /// completes `id` with OK or the error.
    #[napi]
    pub fn write(&self, id: u32, msg: Buffer) {
        self.shared.command(WriteCmd::Write(Bytes::copy_from_slice(&msg), id));
    }

    /// Sends several messages in order (with the other writes and the
    /// finish); completes `id` once, with OK or the error.
    #[napi]
    pub fn write_many(&self, id: u32, msgs: Vec<Buffer>) {
        let msgs = msgs.iter().map(|b| Bytes::copy_from_slice(b)).collect();
        self.shared.command(WriteCmd::WriteMany(msgs, id));
    }

    /// Reads up to `max` requests, each its own event under `id`; a status
    /// ends them (OK at the end of the requests, CANCELLED if the call is
    /// over), and an event with `more` set says the credit is used up.
    #[napi]
    pub fn read(&self, id: u32, max: u32) {
        let shared = self.shared.clone();
        surface::spawn(async move {
            let done = shared.done();
            tokio::pin!(done);
            let mut guard = shared.receiver.lock().await;
            let Some(r) = guard.as_mut() else { return post_status(id, Status::ok()) };
            let max = max.max(1);
            for i in 0..max {
                let m = tokio::select! {
                    m = r.recv() => m,
                    _ = &mut done => Err(Status::cancelled("call is over")),
                };
                match m {
                    Ok(Some(m)) => post(Event { id, msg: Some(m), more: i + 1 == max, ..Default::default() }),
                    Ok(None) => return post_status(id, Status::ok()),
                    Err(s) => return post_status(id, s),
                }
            }
        });
    }

    /// Ends the call: an optional last message, then the status with trailers.
    #[napi]
    pub fn finish(
        &self,
        code: i32,
        details: String,
        trailers: Option<MdList>,
        msg: Option<Buffer>,
    ) -> napi::Result<()> {
        let trailers = md_from_js(trailers)?;
        let msg = msg.map(|b| Bytes::copy_from_slice(&b));
        if self.shared.finish_requested.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let st = Status::new(Code::from_i32(code), details).with_metadata(trailers);
        let has_writer = self.shared.writer.lock().unwrap_or_else(|e| e.into_inner()).is_some();
        if has_writer {
            self.shared.command(WriteCmd::Finish(st, msg));
        } else {
            let shared = self.shared.clone();
            surface::spawn(async move { shared.finish_with(st, msg).await });
        }
        Ok(())
    }

    /// The peer's auth context (address, TLS, verified client certificate).
    #[napi]
    pub fn auth_context(&self) -> JsAuthContext {
        let a = &self.shared.auth;
        let mut properties = Vec::new();
        for (k, v) in a.properties() {
            properties.push(k.to_string());
            properties.push(String::from_utf8_lossy(&v).into_owned());
        }
        JsAuthContext {
            peer: a.peer().to_string(),
            transport_security_type: a.transport_security_type().to_string(),
            tls_version: a.tls_version().map(str::to_string),
            peer_certificates: a.peer_certificates().iter().map(|c| Buffer::from(c.clone())).collect(),
            subject: a.subject().map(str::to_string),
            common_name: a.common_name().map(str::to_string),
            subject_alt_names: a.subject_alt_names().to_vec(),
            peer_identity: a.peer_identity().into_iter().map(str::to_string).collect(),
            peer_identity_property_name: a.peer_identity_property_name().map(str::to_string),
            properties,
        }
    }

    /// True once the call is over (finished or cancelled).
    #[napi]
    pub fn is_done(&self) -> bool {
        self.shared.call.lock().unwrap_or_else(|e| e.into_inner()).is_done()
    }
}
