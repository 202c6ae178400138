//! The server: listeners (TCP, Unix, TLS), dispatch by method path to
//! handlers of the four kinds, limits, keepalive, graceful shutdown.

mod call;
mod conn;

pub use call::{CallInfo, ServerCall, ServerReceiver, ServerSender};

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::codec::{Compression, DEFAULT_MAX_RECV_MESSAGE_SIZE, DEFAULT_MAX_SEND_MESSAGE_SIZE};
use crate::error::{Error, ErrorKind};
use crate::health::HealthReporter;
use crate::interceptor::ServerInterceptor;
use crate::status::Status;
use crate::transport::{self, Address, Listener, ServerTlsConfig};

/// The four call kinds. Unary and server-streaming methods get exactly one
/// request: the server enforces it (INTERNAL otherwise) before the handler runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MethodKind {
    /// One request, one response.
    Unary,
    /// A stream of requests, one response.
    ClientStreaming,
    /// One request, a stream of responses.
    ServerStreaming,
    /// Streams both ways.
    BidiStreaming,
}

/// The future a handler returns: the call's final status (with trailers).
pub type HandlerFuture = Pin<Box<dyn Future<Output = Status> + Send + 'static>>;

/// A call handler. Implemented for every `Fn(ServerCall) -> impl Future<Output = Status>`.
pub trait Handler: Send + Sync + 'static {
    /// Handles one call; the returned status ends it. Dropped if the client
    /// cancels or the deadline passes.
    fn call(&self, call: ServerCall) -> HandlerFuture;
}

impl<F, Fut> Handler for F
where
    F: Fn(ServerCall) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Status> + Send + 'static,
{
    fn call(&self, call: ServerCall) -> HandlerFuture {
        Box::pin(self(call))
    }
}

/// Server settings. Every default is written here.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// TLS; `None` serves plaintext (h2c).
    pub tls: Option<ServerTlsConfig>,
    /// Largest request message accepted (4 MiB).
    pub max_recv_message_size: usize,
    /// Largest response message sent (unlimited).
    pub max_send_message_size: usize,
    /// SETTINGS_MAX_CONCURRENT_STREAMS, which also bounds running handlers per connection (100).
    pub max_concurrent_streams: u32,
    /// Largest request header list (16 KiB).
    pub max_header_list_size: u32,
    /// HTTP/2 stream window (4 MiB).
    pub initial_stream_window_size: u32,
    /// HTTP/2 connection window (16 MiB).
    pub initial_connection_window_size: u32,
    /// Largest HTTP/2 frame accepted (4 MiB: a message that fits one frame is not copied).
    pub max_frame_size: u32,
    /// Streams reset by the client before we accepted them, tolerated at once (20, h2's default).
    pub max_pending_accept_reset_streams: usize,
    /// Streams we reset for protocol errors before the connection is closed (1024).
    pub max_local_error_reset_streams: Option<usize>,
    /// Time allowed for the TLS and HTTP/2 handshakes (120 s, as grpc-go).
    pub handshake_timeout: Duration,
    /// Ping an idle client this often (2 h, as grpc-go); `None` disables.
    pub keepalive_time: Option<Duration>,
    /// Close the connection if a ping is unanswered this long (20 s).
    pub keepalive_timeout: Duration,
    /// Keepalive enforcement: the least time between client pings (5 min, as
    /// grpc-go). More than two pings too soon → GOAWAY ENHANCE_YOUR_CALM.
    pub keepalive_min_time: Duration,
    /// Keepalive enforcement: allow pings while no call is active (false).
    pub keepalive_permit_without_calls: bool,
    /// Close connections idle (no calls) this long (off).
    pub max_connection_idle: Option<Duration>,
    /// Close connections older than this, gracefully (off).
    pub max_connection_age: Option<Duration>,
    /// Time in-flight calls get after max_connection_age (off = unlimited).
    pub max_connection_age_grace: Option<Duration>,
    /// Compression for responses when the client accepts it (none).
    pub default_compression: Option<Compression>,
    /// OpenTelemetry metrics and spans for every call (off); runs before
    /// the other interceptors.
    pub telemetry: Option<crate::telemetry::OpenTelemetry>,
    /// The tokio runtime the server's tasks run on (its accept loops, and
    /// under them every connection and handler task); None: the engine's
    /// runtime (`surface::handle()`). With a `current_thread` runtime here
    /// the server makes progress only while some thread is inside that
    /// runtime's `block_on`: the threads that wait for calls can drive it
    /// themselves (the Python binding's sync server does), with one thread
    /// there whenever none is.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            tls: None,
            max_recv_message_size: DEFAULT_MAX_RECV_MESSAGE_SIZE,
            max_send_message_size: DEFAULT_MAX_SEND_MESSAGE_SIZE,
            max_concurrent_streams: 100,
            max_header_list_size: transport::DEFAULT_MAX_HEADER_LIST_SIZE,
            initial_stream_window_size: transport::DEFAULT_STREAM_WINDOW,
            initial_connection_window_size: transport::DEFAULT_CONNECTION_WINDOW,
            max_frame_size: transport::DEFAULT_MAX_FRAME_SIZE,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: Some(1024),
            handshake_timeout: Duration::from_secs(120),
            keepalive_time: Some(Duration::from_secs(2 * 3600)),
            keepalive_timeout: Duration::from_secs(20),
            keepalive_min_time: Duration::from_secs(300),
            keepalive_permit_without_calls: false,
            max_connection_idle: None,
            max_connection_age: None,
            max_connection_age_grace: None,
            default_compression: None,
            telemetry: None,
            runtime: None,
        }
    }
}

pub(crate) struct Method {
    pub(crate) kind: MethodKind,
    pub(crate) handler: Arc<dyn Handler>,
}

pub(crate) struct ServerInner {
    pub(crate) opts: ServerOptions,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
    pub(crate) methods: HashMap<String, Method>,
    pub(crate) services: std::collections::HashSet<String>,
    pub(crate) fallback: Option<Arc<dyn Handler>>,
    /// false → running; true → graceful shutdown requested.
    pub(crate) draining: watch::Sender<bool>,
    /// true → cancel everything now.
    pub(crate) force: watch::Sender<bool>,
    pub(crate) started: watch::Sender<bool>,
    pub(crate) connections: AtomicUsize,
    pub(crate) conn_done: Notify,
    listeners: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    health: Option<HealthReporter>,
    pub(crate) interceptors: Vec<Arc<dyn ServerInterceptor>>,
}

impl std::fmt::Debug for ServerInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("methods", &self.methods.keys().collect::<Vec<_>>()).finish()
    }
}

/// Collects methods, then builds a [`Server`].
pub struct ServerBuilder {
    opts: ServerOptions,
    methods: HashMap<String, Method>,
    fallback: Option<Arc<dyn Handler>>,
    health: Option<HealthReporter>,
    interceptors: Vec<Arc<dyn ServerInterceptor>>,
    reflection: Option<crate::reflection::Index>,
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder").field("methods", &self.methods.keys().collect::<Vec<_>>()).finish()
    }
}

impl ServerBuilder {
    /// Registers a handler for a full method path `/package.Service/Method`.
    pub fn register(mut self, path: &str, kind: MethodKind, handler: impl Handler) -> Result<Self, Error> {
        let ok = path
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .is_some_and(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'));
        if !ok {
            return Err(Error::invalid(format!("method path {path:?} must look like /package.Service/Method")));
        }
        if self.methods.contains_key(path) {
            return Err(Error::invalid(format!("method {path:?} is already registered")));
        }
        self.methods.insert(path.to_string(), Method { kind, handler: Arc::new(handler) });
        Ok(self)
    }

    /// A handler for every path not registered (a generic handler; it sees
    /// the raw stream like a bidi method).
    pub fn fallback(mut self, handler: impl Handler) -> Self {
        self.fallback = Some(Arc::new(handler));
        self
    }

    /// Serves `grpc.reflection.v1` and `v1alpha` from an encoded
    /// `FileDescriptorSet` (call again to add more sets); see [`crate::reflection`].
    pub fn with_reflection(mut self, file_descriptor_set: &[u8]) -> Result<Self, Error> {
        self.reflection.get_or_insert_with(Default::default).add_set(file_descriptor_set)?;
        Ok(self)
    }

    /// Adds a server interceptor; interceptors run in the order added, on
    /// every call (registered, fallback and health methods alike).
    pub fn intercept(mut self, interceptor: impl ServerInterceptor) -> Self {
        self.interceptors.push(Arc::new(interceptor));
        self
    }

    /// Adds the `grpc.health.v1.Health` service; returns the builder and the
    /// reporter that sets each service's status.
    pub fn with_health(mut self) -> (Self, HealthReporter) {
        let reporter = HealthReporter::new();
        for (path, kind, h) in crate::health::handlers(&reporter) {
            self.methods.insert(path.to_string(), Method { kind, handler: h });
        }
        self.health = Some(reporter.clone());
        (self, reporter)
    }

    /// Builds the server. Nothing listens until [`Server::bind`].
    pub fn build(mut self) -> Result<Server, Error> {
        if let Some(t) = &self.opts.telemetry {
            self.interceptors.insert(0, Arc::new(t.server_interceptor()));
        }
        let mut services: std::collections::HashSet<String> = self
            .methods
            .keys()
            .filter_map(|p| p.strip_prefix('/').and_then(|p| p.split_once('/')).map(|(s, _)| s.to_string()))
            .collect();
        if let Some(index) = self.reflection.take() {
            let reflection = [crate::reflection::SERVICE_V1, crate::reflection::SERVICE_V1ALPHA];
            services.extend(reflection.map(str::to_string));
            let mut names: Vec<String> = services.iter().cloned().collect();
            names.sort();
            let (index, names) = (Arc::new(index), Arc::new(names));
            for svc in reflection {
                let h = crate::reflection::handler(index.clone(), names.clone());
                self.methods.insert(
                    format!("/{svc}/ServerReflectionInfo"),
                    Method { kind: MethodKind::BidiStreaming, handler: Arc::new(h) },
                );
            }
        }
        let tls = self.opts.tls.as_ref().map(|t| t.build()).transpose()?;
        Ok(Server {
            inner: Arc::new(ServerInner {
                opts: self.opts,
                tls,
                methods: self.methods,
                services,
                fallback: self.fallback,
                draining: watch::channel(false).0,
                force: watch::channel(false).0,
                started: watch::channel(false).0,
                connections: AtomicUsize::new(0),
                conn_done: Notify::new(),
                listeners: Mutex::new(Vec::new()),
                health: self.health,
                interceptors: self.interceptors,
            }),
        })
    }
}

/// A gRPC server. Clone to share; [`Server::shutdown`] stops it.
#[derive(Clone, Debug)]
pub struct Server {
    inner: Arc<ServerInner>,
}

impl Server {
    /// A builder with these options.
    pub fn builder(opts: ServerOptions) -> ServerBuilder {
        ServerBuilder {
            opts,
            methods: HashMap::new(),
            fallback: None,
            health: None,
            interceptors: Vec::new(),
            reflection: None,
        }
    }

    /// Listens on `addr` (`127.0.0.1:0`, `[::1]:0`, `0.0.0.0:50051`,
    /// `unix:/path`) and returns the real address (the OS-chosen port for
    /// port 0). Connections are served once [`Server::start`] is called.
    pub async fn bind(&self, addr: &str) -> Result<Address, Error> {
        if *self.inner.draining.borrow() {
            return Err(Error::new(ErrorKind::Shutdown, "server is shut down"));
        }
        let address = parse_listen_addr(addr)?;
        // The socket is registered with the runtime that accepts on it.
        let listener = {
            let _rt = self.inner.opts.runtime.as_ref().map(|rt| rt.enter());
            Listener::bind(&address)
        }
        .map_err(|e| Error::new(ErrorKind::Io, format!("bind {addr}: {e}")))?;
        let local = listener.local_addr()?;
        let inner = self.inner.clone();
        let accept = conn::accept_loop(inner, listener);
        let task = match &self.inner.opts.runtime {
            Some(rt) => rt.spawn(accept),
            None => crate::rt::spawn(accept),
        };
        self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        Ok(local)
    }

    /// Blocking-free variant of [`Server::bind`] for callers outside async code.
    pub fn bind_blocking(&self, addr: &str) -> Result<Address, Error> {
        let s = self.clone();
        let addr = addr.to_string();
        crate::rt::block_on(async move { s.bind(&addr).await })
    }

    /// Starts serving on every bound address.
    pub fn start(&self) {
        self.inner.started.send_replace(true);
    }

    /// The health reporter, if the server has the health service.
    pub fn health(&self) -> Option<&HealthReporter> {
        self.inner.health.as_ref()
    }

    /// Graceful shutdown: stop accepting, send GOAWAY, let in-flight calls
    /// finish for up to `grace`, then cancel what is left. Resolves when every
    /// connection is closed.
    pub async fn shutdown(&self, grace: Duration) {
        self.inner.draining.send_replace(true);
        self.inner.started.send_replace(true);
        for l in self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            l.abort();
        }
        if let Some(h) = &self.inner.health {
            h.shutdown();
        }
        if tokio::time::timeout(grace, self.wait_connections()).await.is_err() {
            self.inner.force.send_replace(true);
            self.wait_connections().await;
        }
    }

    async fn wait_connections(&self) {
        loop {
            let n = self.inner.conn_done.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.inner.connections.load(Ordering::Acquire) == 0 {
                return;
            }
            n.await;
        }
    }
}

fn parse_listen_addr(addr: &str) -> Result<Address, Error> {
    if let Some(p) = addr.strip_prefix("unix:") {
        let p = p.strip_prefix("//").unwrap_or(p);
        if p.is_empty() {
            return Err(Error::invalid("empty unix socket path"));
        }
        return Ok(Address::Unix(p.into()));
    }
    let a = addr.strip_prefix("ipv4:").or_else(|| addr.strip_prefix("ipv6:")).unwrap_or(addr);
    if let Some(port) = a.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| Error::invalid(format!("invalid port in {addr:?}")))?;
        return Ok(Address::Tcp(std::net::SocketAddr::from(([127, 0, 0, 1], port))));
    }
    a.parse()
        .map(Address::Tcp)
        .map_err(|_| Error::invalid(format!("invalid listen address {addr:?}: expected ip:port or unix:path")))
}
