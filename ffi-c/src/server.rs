//! Servers and server calls. A server is built from options, gets its
//! methods registered (by path and kind) and/or a generic handler, binds,
//! starts, and hands incoming calls to whoever asked with
//! `grpc_core_server_request_call` (calls that arrive first wait in a
//! queue). Each server call is driven with one operation per function, on
//! the completion queue it was requested with.

use std::collections::VecDeque;
use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use engine::surface::{
    dispatch, CallInfo, HealthReporter, IncomingCall, MethodKind, Server, ServerBuilder, ServerOptions, ServerReceiver,
    ServerSender, ServerTlsConfig, ServingStatus, Status,
};
use engine::Address;

use crate::boundary::{
    bytes_arg, ffi_guard, grpc_core_result, optional_ms, str_arg, FfiError, FfiResult, Out, GRPC_CORE_NOT_FOUND,
    GRPC_CORE_OK,
};
use crate::channel::{call_compression_arg, default_compression_arg};
use crate::cq::{grpc_core_cq, grpc_core_op, Completion, Cq, Op, CQS};
use crate::handle::{tag, Registry};
use crate::values::{code_arg, grpc_core_metadata_entry, metadata_arg};

/// Server settings, copied by `grpc_core_server_new`.
#[derive(Debug)]
pub struct grpc_core_server_options {
    _private: [u8; 0],
}

/// A gRPC server. Thread-safe.
#[derive(Debug)]
pub struct grpc_core_server {
    _private: [u8; 0],
}

/// One call received by a server. Thread-safe: operations may be started
/// from any thread (one receive and one send-side operation in flight at a
/// time); the accessors may be called at any time until it is freed.
#[derive(Debug)]
pub struct grpc_core_server_call {
    _private: [u8; 0],
}

/// The kind of a registered method. Fixed numbers. For UNARY and
/// SERVER_STREAMING the server reads and checks the single request before
/// the call is handed out (more or fewer than one request ends the call
/// with INTERNAL).
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum grpc_core_method_kind {
    /// One request, one response.
    GRPC_CORE_METHOD_UNARY = 0,
    /// A stream of requests, one response.
    GRPC_CORE_METHOD_CLIENT_STREAMING = 1,
    /// One request, a stream of responses.
    GRPC_CORE_METHOD_SERVER_STREAMING = 2,
    /// Streams both ways.
    GRPC_CORE_METHOD_BIDI_STREAMING = 3,
}

/// A service's health (`grpc.health.v1.HealthCheckResponse.ServingStatus`). Fixed numbers.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum grpc_core_serving_status {
    /// UNKNOWN.
    GRPC_CORE_SERVING_STATUS_UNKNOWN = 0,
    /// SERVING.
    GRPC_CORE_SERVING_STATUS_SERVING = 1,
    /// NOT_SERVING.
    GRPC_CORE_SERVING_STATUS_NOT_SERVING = 2,
}

#[derive(Default)]
pub(crate) struct ServerOpts {
    base: ServerOptions,
    cert: Option<(Vec<u8>, Vec<u8>)>,
    client_ca: Option<Vec<u8>>,
    require_client_cert: bool,
}

impl ServerOpts {
    fn build(&self) -> FfiResult<ServerOptions> {
        let mut o = self.base.clone();
        match &self.cert {
            Some((cert, key)) => {
                o.tls = Some(ServerTlsConfig {
                    cert_chain_pem: cert.clone(),
                    private_key_pem: key.clone(),
                    client_ca_pem: self.client_ca.clone(),
                    require_client_cert: self.require_client_cert,
                })
            }
            None if self.client_ca.is_some() => {
                return Err(FfiError::invalid("client certificate verification needs a server certificate (set_tls)"))
            }
            None => {}
        }
        Ok(o)
    }
}

/// Calls that arrived and requests that wait for one.
#[derive(Default)]
struct Queue {
    waiting: VecDeque<IncomingCall>,
    requests: VecDeque<(Op, Arc<Cq>)>,
    shutdown: bool,
}

type SharedQueue = Arc<Mutex<Queue>>;

fn lockq(q: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    q.lock().unwrap_or_else(|e| e.into_inner())
}

fn unavailable() -> Status {
    Status::unavailable("the server is shutting down")
}

/// Hands an incoming call to a waiting request, or queues it. Never blocks.
fn deliver(queue: &Mutex<Queue>, mut call: IncomingCall) {
    let mut q = lockq(queue);
    if q.shutdown {
        drop(q);
        call.finish(unavailable());
        return;
    }
    match q.requests.pop_front() {
        Some((op, cq)) => {
            drop(q);
            complete_request(op, cq, call);
        }
        None => q.waiting.push_back(call),
    }
}

fn complete_request(op: Op, cq: Arc<Cq>, call: IncomingCall) {
    let obj = Arc::new(ServerCallObj::new(call, cq));
    let md = obj.info.metadata().clone();
    op.complete(Completion { call: Some(obj), metadata: Some(md), ..Completion::ok() });
}

#[derive(Default)]
struct ServerState {
    builder: Option<ServerBuilder>,
    paths: std::collections::HashSet<String>,
    server: Option<Server>,
    health: Option<HealthReporter>,
    generic: bool,
    started: bool,
    shutdown: bool,
}

pub(crate) struct ServerObj {
    state: Mutex<ServerState>,
    queue: SharedQueue,
}

impl ServerObj {
    fn lock(&self) -> MutexGuard<'_, ServerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handler(&self) -> impl engine::surface::Handler {
        let q = self.queue.clone();
        dispatch(move |call| deliver(&q, call))
    }

    /// Builds the server on first need (bind or start); registration ends there.
    fn built(st: &mut ServerState) -> FfiResult<Server> {
        if let Some(s) = &st.server {
            return Ok(s.clone());
        }
        let b = st.builder.take().ok_or_else(|| FfiError::wrong_state("the server is not being built"))?;
        let s = b.build()?;
        st.server = Some(s.clone());
        Ok(s)
    }

    /// Stops taking calls: fails waiting requests, turns away queued calls.
    /// Returns the server to shut down, if it was built.
    fn begin_shutdown(&self, st: &mut ServerState) -> Option<Server> {
        st.shutdown = true;
        st.builder = None;
        let (requests, waiting) = {
            let mut q = lockq(&self.queue);
            q.shutdown = true;
            (std::mem::take(&mut q.requests), std::mem::take(&mut q.waiting))
        };
        for (op, _) in requests {
            op.complete(Completion::failed());
        }
        for mut c in waiting {
            c.finish(unavailable());
        }
        st.server.clone()
    }
}

pub(crate) static SERVER_OPTIONS: Registry<Mutex<ServerOpts>, grpc_core_server_options> =
    Registry::new(tag::SERVER_OPTIONS, "server_options");
pub(crate) static SERVERS: Registry<ServerObj, grpc_core_server> = Registry::new(tag::SERVER, "server");
pub(crate) static SERVER_CALLS: Registry<ServerCallObj, grpc_core_server_call> =
    Registry::new(tag::SERVER_CALL, "server_call");

fn with_opts(opts: *mut grpc_core_server_options, f: impl FnOnce(&mut ServerOpts)) -> FfiResult<()> {
    let o = SERVER_OPTIONS.get(opts)?;
    let mut g = o.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g);
    Ok(())
}

/// Creates server options with every default (plaintext, 4 MiB receive
/// limit, 100 concurrent streams per connection, keepalive ping every 2 h,
/// clients may ping at most every 5 min). Owned by the caller: free with
/// `grpc_core_server_options_free`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_new(opts: *mut *mut grpc_core_server_options) -> grpc_core_result {
    ffi_guard! {
        let out = Out::new(opts, "opts")?;
        out.write(SERVER_OPTIONS.insert(Arc::new(Mutex::new(ServerOpts::default()))));
        Ok(())
    }
}

/// Frees server options. Servers made from them are unaffected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_free(opts: *mut grpc_core_server_options) -> grpc_core_result {
    ffi_guard! {
        SERVER_OPTIONS.remove(opts)?;
        Ok(())
    }
}

/// Message size limits in bytes (both > 0): the largest request accepted
/// (default 4 MiB) and the largest response sent (default unlimited).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_message_limits(
    opts: *mut grpc_core_server_options,
    max_recv_message_size: u64,
    max_send_message_size: u64,
) -> grpc_core_result {
    ffi_guard! {
        if max_recv_message_size == 0 || max_send_message_size == 0 {
            return Err(FfiError::invalid("message size limits must be positive"));
        }
        let r = usize::try_from(max_recv_message_size).unwrap_or(usize::MAX);
        let s = usize::try_from(max_send_message_size).unwrap_or(usize::MAX);
        with_opts(opts, |o| {
            o.base.max_recv_message_size = r;
            o.base.max_send_message_size = s;
        })
    }
}

/// SETTINGS_MAX_CONCURRENT_STREAMS: calls per connection at once (default 100; > 0).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_max_concurrent_streams(
    opts: *mut grpc_core_server_options,
    streams: u32,
) -> grpc_core_result {
    ffi_guard! {
        if streams == 0 {
            return Err(FfiError::invalid("max_concurrent_streams must be positive"));
        }
        with_opts(opts, |o| o.base.max_concurrent_streams = streams)
    }
}

/// Server keepalive: ping an idle client every `time_ms` (0 or negative:
/// off) and close the connection if a ping is unanswered for `timeout_ms`
/// (0 or negative: keep the default 20 s).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_keepalive(
    opts: *mut grpc_core_server_options,
    time_ms: i64,
    timeout_ms: i64,
) -> grpc_core_result {
    ffi_guard! {
        with_opts(opts, |o| {
            o.base.keepalive_time = optional_ms(time_ms);
            if let Some(t) = optional_ms(timeout_ms) {
                o.base.keepalive_timeout = t;
            }
        })
    }
}

/// Keepalive enforcement: the least time between client pings
/// (`min_time_ms`, at least 0; default 5 min; more than two pings too soon
/// get GOAWAY ENHANCE_YOUR_CALM) and whether pings are allowed with no call
/// active.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_keepalive_policy(
    opts: *mut grpc_core_server_options,
    min_time_ms: i64,
    permit_without_calls: i32,
) -> grpc_core_result {
    ffi_guard! {
        if min_time_ms < 0 {
            return Err(FfiError::invalid("min_time_ms must not be negative"));
        }
        with_opts(opts, |o| {
            o.base.keepalive_min_time = Duration::from_millis(min_time_ms as u64);
            o.base.keepalive_permit_without_calls = permit_without_calls != 0;
        })
    }
}

/// Connection management (each 0 or negative: off, the default): close
/// connections idle this long, close connections older than `max_age_ms`
/// gracefully, giving their calls `max_age_grace_ms` more.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_connection_limits(
    opts: *mut grpc_core_server_options,
    max_idle_ms: i64,
    max_age_ms: i64,
    max_age_grace_ms: i64,
) -> grpc_core_result {
    ffi_guard! {
        with_opts(opts, |o| {
            o.base.max_connection_idle = optional_ms(max_idle_ms);
            o.base.max_connection_age = optional_ms(max_age_ms);
            o.base.max_connection_age_grace = optional_ms(max_age_grace_ms);
        })
    }
}

/// Compression of responses when the client accepts it (a
/// `grpc_core_compression`; DEFAULT/IDENTITY: none).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_default_compression(
    opts: *mut grpc_core_server_options,
    compression: i32,
) -> grpc_core_result {
    ffi_guard! {
        let c = default_compression_arg(compression)?;
        with_opts(opts, |o| o.base.default_compression = c)
    }
}

/// Records the engine's telemetry (A66 metrics, `Recv.` spans) for every
/// call of servers made from these options (`telemetry` borrowed; NULL
/// turns it off). See `grpc_core_telemetry_new`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_telemetry(
    opts: *mut grpc_core_server_options,
    telemetry: *const crate::telemetry::grpc_core_telemetry,
) -> grpc_core_result {
    ffi_guard! {
        let t = if telemetry.is_null() { None } else { Some((*crate::telemetry::TELEMETRY.get(telemetry)?).clone()) };
        with_opts(opts, |o| o.base.telemetry = t)
    }
}

/// Serves TLS with this PEM certificate chain and private key (borrowed,
/// copied; parsed when the server is built: errors show at bind/start as
/// `GRPC_CORE_ERROR_TLS`).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_tls(
    opts: *mut grpc_core_server_options,
    cert_pem: *const u8,
    cert_len: usize,
    key_pem: *const u8,
    key_len: usize,
) -> grpc_core_result {
    ffi_guard! {
        if cert_pem.is_null() || key_pem.is_null() {
            return Err(FfiError::null("cert_pem or key_pem"));
        }
        let cert = bytes_arg(cert_pem, cert_len, "cert_pem")?.to_vec();
        let key = bytes_arg(key_pem, key_len, "key_pem")?.to_vec();
        with_opts(opts, |o| o.cert = Some((cert, key)))
    }
}

/// Verifies client certificates against the PEM roots `ca_pem` (borrowed,
/// copied): mutual TLS. With `require_client_cert` non-zero, clients
/// without a certificate are rejected; otherwise they are let in. Needs
/// `grpc_core_server_options_set_tls`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_options_set_tls_client_ca(
    opts: *mut grpc_core_server_options,
    ca_pem: *const u8,
    ca_len: usize,
    require_client_cert: i32,
) -> grpc_core_result {
    ffi_guard! {
        if ca_pem.is_null() {
            return Err(FfiError::null("ca_pem"));
        }
        let ca = bytes_arg(ca_pem, ca_len, "ca_pem")?.to_vec();
        with_opts(opts, |o| {
            o.client_ca = Some(ca);
            o.require_client_cert = require_client_cert != 0;
        })
    }
}

/// Creates a server (`opts` borrowed and copied; NULL for defaults). Next:
/// register methods and/or a generic handler, bind, start. On success
/// `*server` is owned by the caller: free with `grpc_core_server_free`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_new(
    opts: *const grpc_core_server_options,
    server: *mut *mut grpc_core_server,
) -> grpc_core_result {
    ffi_guard! {
        let o = if opts.is_null() {
            ServerOptions::default()
        } else {
            SERVER_OPTIONS.get(opts)?.lock().unwrap_or_else(|e| e.into_inner()).build()?
        };
        let out = Out::new(server, "server")?;
        crate::ensure_runtime();
        let obj = ServerObj {
            state: Mutex::new(ServerState { builder: Some(Server::builder(o)), ..Default::default() }),
            queue: Arc::new(Mutex::new(Queue::default())),
        };
        out.write(SERVERS.insert(Arc::new(obj)));
        Ok(())
    }
}

/// Registers a method by full path (`/package.Service/Method`, borrowed)
/// and kind (`grpc_core_method_kind`). Calls to it are handed out through
/// `grpc_core_server_request_call`; calls to paths not registered get
/// UNIMPLEMENTED unless a generic handler is registered. Before the first
/// bind or start only (else WRONG_STATE); INVALID_ARGUMENT for a malformed
/// or duplicate path.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_register_method(
    server: *mut grpc_core_server,
    path: *const c_char,
    path_len: usize,
    kind: i32,
) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        if path.is_null() {
            return Err(FfiError::null("path"));
        }
        let path = str_arg(path, path_len, "path")?;
        let kind = match kind {
            0 => MethodKind::Unary,
            1 => MethodKind::ClientStreaming,
            2 => MethodKind::ServerStreaming,
            3 => MethodKind::BidiStreaming,
            _ => return Err(FfiError::invalid(format!("{kind} is not a grpc_core_method_kind"))),
        };
        let mut st = s.lock();
        if st.builder.is_none() {
            return Err(FfiError::wrong_state("methods must be registered before bind/start"));
        }
        // Checked here, as the core checks, so that a bad path changes nothing
        // (the core's `register` consumes the builder).
        let well_formed = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(svc, m)| !svc.is_empty() && !m.is_empty() && !m.contains('/'));
        if !well_formed {
            return Err(FfiError::invalid(format!("method path {path:?} must look like /package.Service/Method")));
        }
        if !st.paths.insert(path.to_string()) {
            return Err(FfiError::invalid(format!("method {path:?} is already registered")));
        }
        let b = st.builder.take().ok_or_else(|| FfiError::wrong_state("the server is not being built"))?;
        st.builder = Some(b.register(path, kind, s.handler())?);
        Ok(())
    }
}

/// Registers the generic handler: calls to every path not registered are
/// handed out too (as bidi streams). At most once, before the first bind or
/// start.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_register_generic(server: *mut grpc_core_server) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        let mut st = s.lock();
        if st.generic {
            return Err(FfiError::wrong_state("the generic handler is already registered"));
        }
        let b = st.builder.take().ok_or_else(|| FfiError::wrong_state("register the generic handler before bind/start"))?;
        st.builder = Some(b.fallback(s.handler()));
        st.generic = true;
        Ok(())
    }
}

/// Adds the standard health service, `grpc.health.v1.Health` (Check and
/// Watch), answered by the library itself: the server as a whole (service
/// `""`) is SERVING; set each service's status with
/// `grpc_core_server_set_serving_status`. On shutdown every service turns
/// NOT_SERVING. Once, before the first bind or start (WRONG_STATE
/// otherwise); INVALID_ARGUMENT if a health method was registered.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_enable_health(server: *mut grpc_core_server) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        let mut st = s.lock();
        if st.health.is_some() {
            return Err(FfiError::wrong_state("the health service is already enabled"));
        }
        if st.builder.is_none() {
            return Err(FfiError::wrong_state("enable the health service before bind/start"));
        }
        const PATHS: [&str; 2] = ["/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"];
        if let Some(p) = PATHS.iter().find(|p| st.paths.contains(**p)) {
            return Err(FfiError::invalid(format!("{p} is already registered")));
        }
        let b = st.builder.take().ok_or_else(|| FfiError::wrong_state("the server is not being built"))?;
        let (b, reporter) = b.with_health();
        st.builder = Some(b);
        st.health = Some(reporter);
        st.paths.extend(PATHS.iter().map(|p| p.to_string()));
        Ok(())
    }
}

/// Sets the health of `service` (`service_len` bytes, borrowed; `""` is the
/// server as a whole) to `status` (a `grpc_core_serving_status`); Check
/// answers it and Watch streams see the change. Services never set answer
/// NOT_FOUND to Check. Any time after `grpc_core_server_enable_health`
/// (WRONG_STATE before). Thread-safe.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_set_serving_status(
    server: *mut grpc_core_server,
    service: *const c_char,
    service_len: usize,
    status: i32,
) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        let name = str_arg(service, service_len, "service")?;
        let status = match status {
            0 => ServingStatus::Unknown,
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            _ => return Err(FfiError::invalid(format!("{status} is not a grpc_core_serving_status"))),
        };
        let reporter = s
            .lock()
            .health
            .clone()
            .ok_or_else(|| FfiError::wrong_state("the health service is not enabled (grpc_core_server_enable_health)"))?;
        reporter.set(name, status);
        Ok(())
    }
}

/// Listens on `address` (borrowed): `127.0.0.1:0`, `[::]:50051`,
/// `0.0.0.0:0`, `localhost:N`, or `unix:/path`. Writes the real TCP port
/// (the OS-chosen one for port 0; 0 for Unix sockets) to `*port` if `port`
/// is not NULL. May be called several times. Connections are served once
/// the server is started. Blocks until listening. Errors: IO (address in
/// use), INVALID_ARGUMENT, TLS (bad certificate or key), SHUTDOWN.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_bind(
    server: *mut grpc_core_server,
    address: *const c_char,
    address_len: usize,
    port: *mut i32,
) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        if address.is_null() {
            return Err(FfiError::null("address"));
        }
        let addr = str_arg(address, address_len, "address")?;
        let srv = {
            let mut st = s.lock();
            if st.shutdown {
                return Err(FfiError::shutdown("the server is shut down"));
            }
            ServerObj::built(&mut st)?
        };
        let bound = srv.bind_blocking(addr)?;
        if !port.is_null() {
            let p = match bound {
                Address::Tcp(a) => i32::from(a.port()),
                Address::Unix(_) => 0,
            };
            Out::new(port, "port")?.write(p);
        }
        Ok(())
    }
}

/// Starts serving on every bound address. Once; WRONG_STATE after that,
/// SHUTDOWN after shutdown.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_start(server: *mut grpc_core_server) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        let mut st = s.lock();
        if st.shutdown {
            return Err(FfiError::shutdown("the server is shut down"));
        }
        if st.started {
            return Err(FfiError::wrong_state("the server is already started"));
        }
        let srv = ServerObj::built(&mut st)?;
        srv.start();
        st.started = true;
        Ok(())
    }
}

/// Asks for the next incoming call: completes `tag` on `cq`
/// (`GRPC_CORE_OP_SERVER_REQUEST_CALL`) with the call and its request
/// metadata, or with `success` 0 when the server shuts down. Every
/// operation of that call also completes on `cq`. Request as many calls
/// ahead as you like; calls that arrive with no request waiting are queued.
/// SHUTDOWN after `grpc_core_server_shutdown`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_request_call(
    server: *mut grpc_core_server,
    cq: *mut grpc_core_cq,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        let q = CQS.get(cq)?;
        let mut queue = lockq(&s.queue);
        if queue.shutdown {
            return Err(FfiError::shutdown("the server is shut down"));
        }
        let op = q.begin(grpc_core_op::GRPC_CORE_OP_SERVER_REQUEST_CALL, tag)?;
        match queue.waiting.pop_front() {
            Some(call) => {
                drop(queue);
                complete_request(op, q, call);
            }
            None => queue.requests.push_back((op, q)),
        }
        Ok(())
    }
}

/// Graceful shutdown: stops listening, fails pending call requests
/// (`success` 0), sends GOAWAY, lets calls in flight run for `grace_ms`
/// (negative or 0: cancel them at once), then cancels the rest; completes
/// `tag` on `cq` (`GRPC_CORE_OP_SERVER_SHUTDOWN`) when every connection is
/// closed. Once (WRONG_STATE after). Server calls still held stay valid;
/// their operations fail once the calls are cancelled.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_shutdown(
    server: *mut grpc_core_server,
    grace_ms: i64,
    cq: *mut grpc_core_cq,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.get(server)?;
        let q = CQS.get(cq)?;
        let mut st = s.lock();
        if st.shutdown {
            return Err(FfiError::wrong_state("the server is already shut down"));
        }
        let op = q.begin(grpc_core_op::GRPC_CORE_OP_SERVER_SHUTDOWN, tag)?;
        let srv = s.begin_shutdown(&mut st);
        drop(st);
        let grace = optional_ms(grace_ms).unwrap_or_default();
        match srv {
            Some(srv) => {
                engine::surface::spawn(async move {
                    srv.shutdown(grace).await;
                    op.complete(Completion::ok());
                });
            }
            None => op.complete(Completion::ok()),
        }
        Ok(())
    }
}

/// Frees the server. One not shut down is shut down now without grace (no
/// event). Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_free(server: *mut grpc_core_server) -> grpc_core_result {
    ffi_guard! {
        let s = SERVERS.remove(server)?;
        let mut st = s.lock();
        if !st.shutdown {
            if let Some(srv) = s.begin_shutdown(&mut st) {
                engine::surface::spawn(async move { srv.shutdown(Duration::ZERO).await });
            }
        }
        Ok(())
    }
}

// ------------------------------------------------------------ server calls

#[derive(Default)]
struct CallState {
    recv_busy: bool,
    send_busy: bool,
    headers_sent: bool,
    finished: bool,
    finish_ok: bool,
    close_requested: bool,
}

pub(crate) struct ServerCallObj {
    cq: Arc<Cq>,
    pub(crate) info: Arc<CallInfo>,
    incoming: Mutex<IncomingCall>,
    state: Arc<Mutex<CallState>>,
    receiver: Arc<tokio::sync::Mutex<ServerReceiver>>,
    sender: Arc<tokio::sync::Mutex<ServerSender>>,
    /// The auth context's properties, computed on first use.
    props: std::sync::OnceLock<Vec<(&'static str, Vec<u8>)>>,
    /// The server span as `traceparent`, computed on first use.
    traceparent: std::sync::OnceLock<Option<String>>,
}

fn lockc(s: &Mutex<CallState>) -> MutexGuard<'_, CallState> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

impl ServerCallObj {
    fn new(mut call: IncomingCall, cq: Arc<Cq>) -> ServerCallObj {
        let receiver = call.take_receiver().expect("a fresh call has its receiver");
        let sender = call.take_sender().expect("a fresh call has its sender");
        ServerCallObj {
            cq,
            info: call.info().clone(),
            incoming: Mutex::new(call),
            state: Arc::new(Mutex::new(CallState::default())),
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            sender: Arc::new(tokio::sync::Mutex::new(sender)),
            props: std::sync::OnceLock::new(),
            traceparent: std::sync::OnceLock::new(),
        }
    }

    fn props(&self) -> &[(&'static str, Vec<u8>)] {
        self.props.get_or_init(|| self.info.auth_context().properties())
    }

    fn incoming(&self) -> MutexGuard<'_, IncomingCall> {
        self.incoming.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        self.incoming().done()
    }

    fn begin_send(&self, op: grpc_core_op, tag: *mut c_void) -> FfiResult<Op> {
        let mut st = lockc(&self.state);
        if st.finished {
            return Err(FfiError::wrong_state("the call is already finished"));
        }
        if op == grpc_core_op::GRPC_CORE_OP_SERVER_CALL_SEND_INITIAL_METADATA && st.headers_sent {
            return Err(FfiError::wrong_state("the initial metadata was already sent (or a message was)"));
        }
        if st.send_busy {
            return Err(FfiError::busy("a send-side operation is already in flight on this call"));
        }
        let started = self.cq.begin(op, tag)?;
        st.send_busy = true;
        st.headers_sent = true;
        Ok(started)
    }

    /// Frees the C handle: a call not finished is ended (UNKNOWN), which
    /// also completes its pending operations.
    pub(crate) fn release(&self) {
        let mut st = lockc(&self.state);
        if !st.finished {
            st.finished = true;
            self.incoming()
                .finish(Status::new(engine::Code::Unknown, "the server freed the call without finishing it"));
        }
    }
}

/// Borrows the call's full method path (`/package.Service/Method`; not
/// NUL-terminated): valid until the call is freed.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_method(
    call: *const grpc_core_server_call,
    method: *mut *const c_char,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let (method, len) = (Out::new(method, "method")?, Out::new(len, "len")?);
        method.write(c.info.method().as_ptr().cast());
        len.write(c.info.method().len());
        Ok(())
    }
}

/// Borrows the peer's address (`ip:port` or `unix:path`; not
/// NUL-terminated): valid until the call is freed.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_peer(
    call: *const grpc_core_server_call,
    peer: *mut *const c_char,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let (peer, len) = (Out::new(peer, "peer")?, Out::new(len, "len")?);
        peer.write(c.info.peer().as_ptr().cast());
        len.write(c.info.peer().len());
        Ok(())
    }
}

/// Borrows the call's server span as a W3C `traceparent` value (valid until
/// the call is freed; not NUL-terminated), to put in the metadata of calls
/// the handler makes so they join the trace. `GRPC_CORE_NOT_FOUND`
/// (out-parameters untouched) when the server records no spans.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_traceparent(
    call: *const grpc_core_server_call,
    value: *mut *const c_char,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let (value, len) = (Out::new(value, "value")?, Out::new(len, "len")?);
        let tp = c.traceparent.get_or_init(|| engine::telemetry::server_traceparent(&c.info));
        let Some(tp) = tp.as_deref() else { return Ok(GRPC_CORE_NOT_FOUND) };
        value.write(tp.as_ptr().cast());
        len.write(tp.len());
        Ok(GRPC_CORE_OK)
    }
}

/// Looks up the `index`-th (0-based) auth-context property named `name`
/// (`name_len` bytes, borrowed) of the call, under gRPC core's names:
/// `transport_security_type` ("ssl" or "insecure"), `security_level`,
/// `x509_common_name`, `x509_subject`, `x509_subject_alternative_name` (one
/// per SAN), `x509_pem_cert` (the verified client certificate). On
/// `GRPC_CORE_OK`, `*value`/`*value_len` are borrowed from the call (valid
/// until it is freed; not NUL-terminated). `GRPC_CORE_NOT_FOUND`
/// (out-parameters untouched) when there is no such property.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_auth_property(
    call: *const grpc_core_server_call,
    name: *const c_char,
    name_len: usize,
    index: usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        if name.is_null() {
            return Err(FfiError::null("name"));
        }
        let name = str_arg(name, name_len, "name")?;
        let (value, value_len) = (Out::new(value, "value")?, Out::new(value_len, "value_len")?);
        match c.props().iter().filter(|(k, _)| *k == name).nth(index) {
            Some((_, v)) => {
                value.write(v.as_ptr());
                value_len.write(v.len());
                Ok(GRPC_CORE_OK)
            }
            None => Ok(GRPC_CORE_NOT_FOUND),
        }
    }
}

/// Enumerates the call's auth-context properties: writes the `index`-th
/// (0-based) one's name and value, both borrowed from the call (valid until
/// it is freed; not NUL-terminated). `GRPC_CORE_NOT_FOUND` past the end.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_auth_property_at(
    call: *const grpc_core_server_call,
    index: usize,
    name: *mut *const c_char,
    name_len: *mut usize,
    value: *mut *const u8,
    value_len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let (name, name_len) = (Out::new(name, "name")?, Out::new(name_len, "name_len")?);
        let (value, value_len) = (Out::new(value, "value")?, Out::new(value_len, "value_len")?);
        match c.props().get(index) {
            Some((k, v)) => {
                name.write(k.as_ptr().cast());
                name_len.write(k.len());
                value.write(v.as_ptr());
                value_len.write(v.len());
                Ok(GRPC_CORE_OK)
            }
            None => Ok(GRPC_CORE_NOT_FOUND),
        }
    }
}

/// Borrows the negotiated TLS version of the call's connection (`TLSv1_3`,
/// `TLSv1_2`; valid until the call is freed, not NUL-terminated).
/// `GRPC_CORE_NOT_FOUND` on a plaintext connection.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_tls_version(
    call: *const grpc_core_server_call,
    version: *mut *const c_char,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let (version, len) = (Out::new(version, "version")?, Out::new(len, "len")?);
        match c.info.auth_context().tls_version() {
            Some(v) => {
                version.write(v.as_ptr().cast());
                len.write(v.len());
                Ok(GRPC_CORE_OK)
            }
            None => Ok(GRPC_CORE_NOT_FOUND),
        }
    }
}

/// Borrows the `index`-th (0-based) peer identity of the call, as gRPC core
/// defines it: the verified client certificate's subject alternative names
/// if it has any, else its common name. Valid until the call is freed; not
/// NUL-terminated. `GRPC_CORE_NOT_FOUND` past the end (at once when the
/// client presented no certificate). See also
/// `grpc_core_server_call_is_peer_authenticated`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_peer_identity(
    call: *const grpc_core_server_call,
    index: usize,
    identity: *mut *const c_char,
    len: *mut usize,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let (identity, len) = (Out::new(identity, "identity")?, Out::new(len, "len")?);
        match c.info.auth_context().peer_identity().get(index) {
            Some(v) => {
                identity.write(v.as_ptr().cast());
                len.write(v.len());
                Ok(GRPC_CORE_OK)
            }
            None => Ok(GRPC_CORE_NOT_FOUND),
        }
    }
}

/// Writes 1 to `*authenticated` if the client presented a certificate the
/// server verified (mutual TLS), else 0.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_is_peer_authenticated(
    call: *const grpc_core_server_call,
    authenticated: *mut i32,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        Out::new(authenticated, "authenticated")?.write(i32::from(c.info.auth_context().is_peer_authenticated()));
        Ok(())
    }
}

/// Writes the time left before the call's deadline in milliseconds to
/// `*remaining_ms` (0 once passed), or -1 if the client set no deadline.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_deadline(
    call: *const grpc_core_server_call,
    remaining_ms: *mut i64,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let out = Out::new(remaining_ms, "remaining_ms")?;
        out.write(match c.info.time_remaining() {
            Some(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            None => -1,
        });
        Ok(())
    }
}

/// Writes 1 to `*cancelled` if the call is over without having been
/// finished here (client cancel, deadline, forced shutdown), else 0.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_is_cancelled(
    call: *const grpc_core_server_call,
    cancelled: *mut i32,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let out = Out::new(cancelled, "cancelled")?;
        let st = lockc(&c.state);
        out.write(i32::from(c.incoming().is_done() && !st.finish_ok));
        Ok(())
    }
}

/// Chooses the compression of response messages (a
/// `grpc_core_compression`), applied only if the client accepts it. Before
/// the headers are sent (else WRONG_STATE) and with no send in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_set_compression(
    call: *mut grpc_core_server_call,
    compression: i32,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let comp = call_compression_arg(compression)?.unwrap_or(engine::Compression::Identity);
        let st = lockc(&c.state);
        if st.headers_sent || st.finished {
            return Err(FfiError::wrong_state("compression must be chosen before the headers are sent"));
        }
        let mut s = c.sender.try_lock().map_err(|_| FfiError::busy("a send is in flight"))?;
        s.set_compression(comp);
        Ok(())
    }
}

/// Receives the next request message and completes `tag`
/// (`GRPC_CORE_OP_SERVER_CALL_RECV_MESSAGE`; `message` owned by the caller,
/// NULL at the end). BUSY while another receive is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_recv_message(
    call: *mut grpc_core_server_call,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let op = {
            let mut st = lockc(&c.state);
            if st.recv_busy {
                return Err(FfiError::busy("a receive is already in flight on this call"));
            }
            let op = c.cq.begin(grpc_core_op::GRPC_CORE_OP_SERVER_CALL_RECV_MESSAGE, tag)?;
            st.recv_busy = true;
            op
        };
        let (receiver, state, done) = (c.receiver.clone(), c.state.clone(), c.done());
        engine::surface::spawn(async move {
            let r = tokio::select! {
                // Once the call is over nothing more is delivered, even
                // messages that arrived before.
                biased;
                _ = done => None,
                r = async { receiver.lock().await.recv_message().await } => Some(r),
            };
            let completion = match r {
                Some(Ok(Some(m))) => {
                    Completion { message: Some(m.data), value: i32::from(m.compressed), ..Completion::ok() }
                }
                Some(Ok(None)) => Completion::ok(),
                Some(Err(_)) | None => Completion::failed(),
            };
            lockc(&state).recv_busy = false;
            op.complete(completion);
        });
        Ok(())
    }
}

/// Sends the response headers with `metadata` (borrowed, copied) and
/// completes `tag` (`GRPC_CORE_OP_SERVER_CALL_SEND_INITIAL_METADATA`).
/// Optional: the first message or the finish sends them otherwise. Before
/// any message (else WRONG_STATE); BUSY while a send is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_send_initial_metadata(
    call: *mut grpc_core_server_call,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let md = metadata_arg(metadata, metadata_count)?;
        let op = c.begin_send(grpc_core_op::GRPC_CORE_OP_SERVER_CALL_SEND_INITIAL_METADATA, tag)?;
        let (sender, state, done) = (c.sender.clone(), c.state.clone(), c.done());
        engine::surface::spawn(async move {
            let ok = tokio::select! {
                biased;
                _ = done => false,
                r = async { sender.lock().await.send_initial_metadata(md).await } => r.is_ok(),
            };
            lockc(&state).send_busy = false;
            op.complete(if ok { Completion::ok() } else { Completion::failed() });
        });
        Ok(())
    }
}

/// Sends one response message (`len` bytes at `data`, borrowed, copied)
/// and completes `tag` (`GRPC_CORE_OP_SERVER_CALL_SEND_MESSAGE`). `flags`:
/// 0 or `GRPC_CORE_SEND_NO_COMPRESS`. WRONG_STATE after finish; BUSY while
/// a send is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_send_message(
    call: *mut grpc_core_server_call,
    data: *const u8,
    len: usize,
    flags: u32,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let msg = Bytes::copy_from_slice(bytes_arg(data, len, "data")?);
        if flags & !crate::call::GRPC_CORE_SEND_NO_COMPRESS != 0 {
            return Err(FfiError::invalid(format!("unsupported send flags 0x{flags:x} for a server call")));
        }
        let compress = flags & crate::call::GRPC_CORE_SEND_NO_COMPRESS == 0;
        let op = c.begin_send(grpc_core_op::GRPC_CORE_OP_SERVER_CALL_SEND_MESSAGE, tag)?;
        let (sender, state, done) = (c.sender.clone(), c.state.clone(), c.done());
        engine::surface::spawn(async move {
            let ok = tokio::select! {
                biased;
                _ = done => false,
                r = async { sender.lock().await.send_with(msg, compress).await } => r.is_ok(),
            };
            lockc(&state).send_busy = false;
            op.complete(if ok { Completion::ok() } else { Completion::failed() });
        });
        Ok(())
    }
}

/// Ends the call with a status: `code` (0..=16), `message` (UTF-8,
/// borrowed; may be NULL if 0), `details` (`grpc-status-details-bin`
/// bytes, borrowed; may be NULL if 0) and trailing `metadata` (borrowed);
/// everything is copied. Completes `tag` (`GRPC_CORE_OP_SERVER_CALL_FINISH`)
/// at once. Once (WRONG_STATE after); BUSY while a send is in flight
/// (wait for it, so the status follows the last message).
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_finish(
    call: *mut grpc_core_server_call,
    code: i32,
    message: *const c_char,
    message_len: usize,
    details: *const u8,
    details_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let code = code_arg(code)?;
        let message = str_arg(message, message_len, "message")?;
        let details = bytes_arg(details, details_len, "details")?;
        let md = metadata_arg(metadata, metadata_count)?;
        let mut st = lockc(&c.state);
        if st.finished {
            return Err(FfiError::wrong_state("the call is already finished"));
        }
        if st.send_busy {
            return Err(FfiError::busy("a send is in flight; finish after it completes"));
        }
        let op = c.cq.begin(grpc_core_op::GRPC_CORE_OP_SERVER_CALL_FINISH, tag)?;
        let mut status = Status::new(code, message).with_metadata(md);
        if !details.is_empty() {
            status = status.with_details(Bytes::copy_from_slice(details));
        }
        st.finished = true;
        st.headers_sent = true;
        let ok = c.incoming().finish(status);
        st.finish_ok = ok;
        drop(st);
        op.complete(if ok { Completion::ok() } else { Completion::failed() });
        Ok(())
    }
}

/// Completes `tag` (`GRPC_CORE_OP_SERVER_CALL_RECV_CLOSE`) when the call
/// is over: `value` 1 if it was cancelled (client cancel, deadline, forced
/// shutdown), 0 if it was finished here. Once per call (WRONG_STATE after).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_recv_close(
    call: *mut grpc_core_server_call,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = SERVER_CALLS.get(call)?;
        let op = {
            let mut st = lockc(&c.state);
            if st.close_requested {
                return Err(FfiError::wrong_state("recv_close was already requested"));
            }
            let op = c.cq.begin(grpc_core_op::GRPC_CORE_OP_SERVER_CALL_RECV_CLOSE, tag)?;
            st.close_requested = true;
            op
        };
        let (state, done) = (c.state.clone(), c.done());
        engine::surface::spawn(async move {
            done.await;
            let cancelled = !lockc(&state).finish_ok;
            op.complete(Completion::ok().with_value(i32::from(cancelled)));
        });
        Ok(())
    }
}

/// Frees the server call. A call not finished is ended with UNKNOWN
/// ("the server freed the call without finishing it"); operations in
/// flight still complete. Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_server_call_free(call: *mut grpc_core_server_call) -> grpc_core_result {
    ffi_guard! {
        SERVER_CALLS.remove(call)?.release();
        Ok(())
    }
}
