//! The client: [`Channel`] (target parsing, lazy connect, reconnect with
//! backoff, connectivity) and [`ClientCall`] (all four call kinds as one
//! pull-based stream API).

mod call;
mod conn;
mod health_check;
mod lb;
mod resolver;
mod retry;
mod retry_stream;
pub mod service_config;
mod stream;
mod subchannel;
mod target;

pub use call::{CallHandle, ClientCall, UnaryResponse};
pub use lb::SubchannelInfo;
pub use resolver::{parse_address, ManualResolver};
pub use service_config::{
    CallConfig, HedgingPolicy, LbPolicy, MethodConfig, RetryPolicy, RetryThrottling, ServiceConfig,
};
pub use stream::{CallReceiver, CallSender};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::auth::CallCredentials;
use crate::codec::{Compression, DEFAULT_MAX_RECV_MESSAGE_SIZE, DEFAULT_MAX_SEND_MESSAGE_SIZE};
use crate::error::{Error, ErrorKind};
use crate::interceptor::ClientInterceptor;
use crate::metadata::Metadata;
use crate::status::Status;
use crate::telemetry::OpenTelemetry;
use crate::transport::{self, ClientTlsConfig};

/// Connectivity states (gRPC connectivity-semantics-and-api.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectivityState {
    /// No connection and none being made; the next call connects.
    Idle,
    /// Connecting.
    Connecting,
    /// Connected.
    Ready,
    /// The last attempt failed; waiting out the backoff.
    TransientFailure,
    /// The channel was closed.
    Shutdown,
}

/// Reconnect backoff parameters (defaults from connection-backoff.md).
#[derive(Clone, Debug)]
pub struct BackoffConfig {
    /// First delay (1 s).
    pub initial: Duration,
    /// Growth factor (1.6).
    pub multiplier: f64,
    /// Relative jitter (0.2).
    pub jitter: f64,
    /// Cap (120 s).
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { initial: Duration::from_secs(1), multiplier: 1.6, jitter: 0.2, max: Duration::from_secs(120) }
    }
}

/// Channel settings. Every default is written here.
#[derive(Clone, Debug)]
pub struct ChannelOptions {
    /// TLS; `None` is plaintext (h2c).
    pub tls: Option<ClientTlsConfig>,
    /// `:authority` to send; defaults to the TLS server-name override or the target's host:port.
    pub authority: Option<String>,
    /// Prefix for the `user-agent` header.
    pub user_agent: Option<String>,
    /// MIN_CONNECT_TIMEOUT: the least time one connection attempt gets (20 s).
    pub connect_timeout: Duration,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// Send HTTP/2 pings this often (off by default, like grpc-go).
    pub keepalive_time: Option<Duration>,
    /// Close the connection when a ping is not answered within this (20 s).
    pub keepalive_timeout: Duration,
    /// Ping even with no calls in flight (false).
    pub keepalive_permit_without_calls: bool,
    /// Largest message accepted (4 MiB).
    pub max_recv_message_size: usize,
    /// Largest message sent (unlimited).
    pub max_send_message_size: usize,
    /// Compression for every call unless the call says otherwise (none).
    pub default_compression: Option<Compression>,
    /// HTTP/2 stream window (4 MiB).
    pub initial_stream_window_size: u32,
    /// HTTP/2 connection window (16 MiB).
    pub initial_connection_window_size: u32,
    /// Largest response header list accepted (16 KiB).
    pub max_header_list_size: u32,
    /// Largest HTTP/2 frame accepted (4 MiB: a message that fits one frame is not copied).
    pub max_frame_size: u32,
    /// Interceptors run on every call, in order (none).
    pub interceptors: Vec<Arc<dyn ClientInterceptor>>,
    /// Credentials applied to every call, before the call's own (none).
    pub call_credentials: Option<CallCredentials>,
    /// Send call credentials over plaintext too (false: such calls fail
    /// with UNAUTHENTICATED, as in grpc-go). For tests and trusted local links.
    pub allow_insecure_call_credentials: bool,
    /// OpenTelemetry metrics and spans for every call (off); runs before
    /// the other interceptors.
    pub telemetry: Option<OpenTelemetry>,
    /// Service config JSON (service_config.md): load-balancing policy,
    /// per-method settings, retry throttling, health checking. Parsed and
    /// validated by `Channel::new`; invalid → an error there. None: pick_first.
    pub service_config: Option<String>,
    /// The resolver for a `manual:///name` target (required with one, refused otherwise).
    pub manual_resolver: Option<ManualResolver>,
    /// With no call for this long, the channel drops its connections and goes
    /// IDLE; the next call reconnects (30 min, as grpc-go). None or zero: never.
    pub idle_timeout: Option<Duration>,
    /// `dns:` targets are re-resolved this often (30 s), and also when a
    /// connection fails or drops (at most every 5 s).
    pub dns_refresh_interval: Duration,
    /// Request bytes one call keeps for replay while it may be retried
    /// (256 KiB, grpc-go's per-RPC buffer limit); a call that sends more is
    /// committed to its current attempt (gRFC A6).
    pub per_rpc_retry_buffer_size: usize,
    /// Request bytes all calls of the channel keep for replay together
    /// (16 MiB, grpc-go's `retryBufferSize`); beyond it calls commit.
    pub retry_buffer_size: usize,
    /// The tokio runtime every task of this channel is spawned on (its
    /// connections, resolver, load balancer, timers, retry drivers); None:
    /// the engine's runtime (`surface::handle()`). With a `current_thread`
    /// runtime here, a thread that runs a call with `Runtime::block_on`
    /// drives the connection's I/O itself (no hand-off to a runtime thread),
    /// but the channel then makes progress only while some thread is inside
    /// that runtime's `block_on`: keep one there (a driver thread) whenever
    /// no caller is.
    pub runtime: Option<tokio::runtime::Handle>,
}

impl Default for ChannelOptions {
    fn default() -> Self {
        ChannelOptions {
            tls: None,
            authority: None,
            user_agent: None,
            connect_timeout: Duration::from_secs(20),
            backoff: BackoffConfig::default(),
            keepalive_time: None,
            keepalive_timeout: Duration::from_secs(20),
            keepalive_permit_without_calls: false,
            max_recv_message_size: DEFAULT_MAX_RECV_MESSAGE_SIZE,
            max_send_message_size: DEFAULT_MAX_SEND_MESSAGE_SIZE,
            default_compression: None,
            initial_stream_window_size: transport::DEFAULT_STREAM_WINDOW,
            initial_connection_window_size: transport::DEFAULT_CONNECTION_WINDOW,
            max_header_list_size: transport::DEFAULT_MAX_HEADER_LIST_SIZE,
            max_frame_size: transport::DEFAULT_MAX_FRAME_SIZE,
            interceptors: Vec::new(),
            call_credentials: None,
            allow_insecure_call_credentials: false,
            telemetry: None,
            service_config: None,
            manual_resolver: None,
            idle_timeout: Some(Duration::from_secs(30 * 60)),
            dns_refresh_interval: Duration::from_secs(30),
            per_rpc_retry_buffer_size: 256 * 1024,
            retry_buffer_size: 16 * 1024 * 1024,
            runtime: None,
        }
    }
}

impl ChannelOptions {
    /// Spawns one of the channel's tasks on its runtime ([`runtime`](Self::runtime)).
    pub(crate) fn spawn<F>(&self, fut: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.runtime {
            Some(h) => h.spawn(fut),
            None => crate::rt::spawn(fut),
        }
    }
}

/// Per-call options.
#[derive(Clone, Debug, Default)]
pub struct CallOptions {
    /// Relative deadline; sent as `grpc-timeout`.
    pub timeout: Option<Duration>,
    /// Absolute deadline (the earlier of this and `timeout` wins).
    pub deadline: Option<std::time::Instant>,
    /// Request metadata.
    pub metadata: Metadata,
    /// Compression of request messages; overrides the channel default.
    /// `Some(Identity)` turns compression off for this call.
    pub compression: Option<Compression>,
    /// Queue the call while the channel is not ready instead of failing fast.
    pub wait_for_ready: bool,
    /// Credentials for this call, applied after the channel's.
    pub credentials: Option<CallCredentials>,
}

impl CallOptions {
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let from_timeout = self.timeout.map(|t| Instant::now() + t);
        let abs = self.deadline.map(Instant::from_std);
        match (from_timeout, abs) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[derive(Debug)]
pub(crate) struct ChannelInner {
    pub(crate) connector: Arc<conn::Connector>,
    pub(crate) opts: Arc<ChannelOptions>,
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) authority: http::uri::Authority,
    /// The headers every call sends (content-type, te, user-agent,
    /// grpc-accept-encoding), built once: a call clones this map instead of
    /// parsing and hashing each name again.
    pub(crate) base_headers: http::HeaderMap,
    /// The service config's `retryThrottling` bucket.
    pub(crate) throttle: Option<retry::Throttle>,
    /// Request bytes held for replay by this channel's streaming calls.
    pub(crate) retry_buffered: std::sync::atomic::AtomicUsize,
}

impl Drop for ChannelInner {
    fn drop(&mut self) {
        self.connector.close();
    }
}

/// A client channel to one target. Cheap to clone; all clones share one
/// connection. Connects lazily on the first call (or [`Channel::connect`]).
#[derive(Clone, Debug)]
pub struct Channel {
    inner: Arc<ChannelInner>,
}

impl Channel {
    /// Creates a channel; nothing connects until a call needs it.
    pub fn new(target: &str, mut opts: ChannelOptions) -> Result<Channel, Error> {
        if let Some(t) = &opts.telemetry {
            opts.interceptors.insert(0, t.client_interceptor(target));
        }
        let (target, default_authority) = target::Target::parse(target)?;
        let tls = opts.tls.as_ref().map(|t| t.build()).transpose()?;
        let server_name = opts
            .tls
            .as_ref()
            .and_then(|t| t.server_name_override.clone())
            .unwrap_or_else(|| host_of(&default_authority));
        let authority = opts
            .authority
            .clone()
            .or_else(|| opts.tls.as_ref().and_then(|t| t.server_name_override.clone()))
            .unwrap_or(default_authority);
        let authority: http::uri::Authority =
            authority.parse().map_err(|e| Error::invalid(format!("invalid authority {authority:?}: {e}")))?;
        let ua = match &opts.user_agent {
            Some(p) => format!("{p} grpc-core-rust/{}", crate::VERSION),
            None => format!("grpc-core-rust/{}", crate::VERSION),
        };
        let user_agent = http::HeaderValue::from_str(&ua).map_err(|_| Error::invalid("invalid user agent"))?;
        let scheme = if tls.is_some() { http::uri::Scheme::HTTPS } else { http::uri::Scheme::HTTP };
        let opts = Arc::new(opts);
        let connector = conn::Connector::new(
            target,
            opts.clone(),
            tls,
            server_name,
            scheme.clone(),
            authority.clone(),
            user_agent.clone(),
        )?;
        let throttle = connector.service_config().retry_throttling().map(retry::Throttle::new);
        Ok(Channel {
            inner: Arc::new(ChannelInner {
                connector,
                opts,
                scheme,
                authority,
                base_headers: call::base_headers(&user_agent),
                throttle,
                retry_buffered: Default::default(),
            }),
        })
    }

    /// The current connectivity state.
    pub fn state(&self) -> ConnectivityState {
        self.inner.connector.state()
    }

    /// Starts connecting if IDLE.
    pub fn connect(&self) {
        self.inner.connector.connect();
    }

    /// Waits until the state differs from `from`; false if `deadline` passed first.
    pub async fn wait_for_state_change(&self, from: ConnectivityState, deadline: Option<std::time::Instant>) -> bool {
        let mut rx = self.inner.connector.subscribe();
        let wait = rx.wait_for(|s| s.state != from);
        match deadline {
            Some(d) => matches!(tokio::time::timeout_at(Instant::from_std(d), wait).await, Ok(Ok(_))),
            None => wait.await.is_ok(),
        }
    }

    /// Connects and waits until READY (wait-for-ready semantics).
    pub async fn ready(&self, deadline: Option<std::time::Instant>) -> Result<(), Status> {
        self.inner.connector.pick(true, deadline.map(Instant::from_std), None).await.map(|_| ())
    }

    /// Closes the channel: the connection is dropped and new calls fail.
    pub fn close(&self) {
        self.inner.connector.close();
    }

    /// Starts a call of any kind on `method` (`/package.Service/Method`).
    /// The service config's `timeout` and `waitForReady` for the method apply.
    ///
    /// With a `retryPolicy` for the method (gRFC A6, see
    /// `client/retry_stream.rs`), the call is retried until it commits:
    /// the messages sent are kept (up to `per_rpc_retry_buffer_size`) and
    /// replayed, with the half-close, on each new attempt. The call then
    /// returns at once and the attempts run in the background; a failure to
    /// start them shows in `recv`/`finish` (and `send`) instead of here.
    /// A `hedgingPolicy` is not applied to streaming calls: they make one
    /// attempt.
    pub async fn call(&self, method: &str, opts: CallOptions) -> Result<ClientCall, Status> {
        // The service config is looked up once per call; the attempts get the result.
        let config = Arc::new(self.call_config(method, &opts));
        let opts = config.apply(opts);
        if let Some(p) = config.method_config.as_ref().and_then(|m| m.retry_policy.as_ref()) {
            return Ok(retry_stream::start(self, method, opts, p, config.clone()));
        }
        call::start(&self.inner, method, opts, config).await
    }

    /// The once-per-call part of a call that may have several attempts:
    /// validation, interceptors and call credentials. `opts` already carry
    /// `config`, the service config's settings (`call` and `unary` look
    /// them up and apply them once).
    pub(crate) async fn prepare(
        &self,
        method: &str,
        opts: CallOptions,
        config: Arc<CallConfig>,
    ) -> Result<call::Prepared, Status> {
        call::prepare(&self.inner, method, opts, config).await
    }

    /// One attempt of a [`prepare`](Self::prepare)d call.
    pub(crate) async fn open_attempt(
        &self,
        method: &str,
        opts: CallOptions,
        observers: Option<Arc<crate::interceptor::Observers>>,
        info: call::AttemptInfo,
        config: &CallConfig,
    ) -> Result<ClientCall, Status> {
        call::open_attempt(&self.inner, method, opts, observers, info, config).await
    }

    /// The channel's service config (empty when none was given).
    pub fn service_config(&self) -> &ServiceConfig {
        self.inner.connector.service_config()
    }

    /// What the service config and channel options make of a call on
    /// `method` with `opts`: deadline, wait-for-ready, message size limits.
    pub fn call_config(&self, method: &str, opts: &CallOptions) -> CallConfig {
        service_config::call_config(&self.inner, method, opts)
    }

    /// The current subchannels (one per address of the LB policy) and their
    /// states; empty while the channel is IDLE. Updated by the channel's
    /// control task right after each change, so it may lag `state()` briefly.
    pub fn subchannels(&self) -> Vec<SubchannelInfo> {
        self.inner.connector.subchannels()
    }

    /// A unary call: one request, one response. The method's `retryPolicy`
    /// or `hedgingPolicy` from the service config applies (gRFC A6, see
    /// `client/retry.rs`), under the channel's `retryThrottling`. A call the
    /// server refused unprocessed while going away (GOAWAY raced with the
    /// request) is retried once on a new connection, within the same
    /// deadline, without counting as an attempt.
    pub async fn unary(&self, method: &str, request: Bytes, opts: CallOptions) -> Result<UnaryResponse, Status> {
        // The service config is looked up once per call; the attempts get the result.
        let cfg = Arc::new(self.call_config(method, &opts));
        let opts = cfg.apply(opts);
        let throttle = self.inner.throttle.as_ref();
        match cfg.method_config.as_deref() {
            Some(MethodConfig { retry_policy: Some(p), .. }) => {
                retry::unary_with_retry(self, method, request, opts, p, cfg.clone()).await
            }
            Some(MethodConfig { hedging_policy: Some(p), .. }) => {
                retry::unary_hedged(self, method, request, opts, p, throttle, cfg.clone()).await
            }
            _ => retry::unary_once(self, method, request, opts, cfg.clone()).await,
        }
    }

    /// Tokens left in the `retryThrottling` bucket (None without throttling).
    pub fn retry_tokens(&self) -> Option<f64> {
        self.inner.throttle.as_ref().map(retry::Throttle::tokens)
    }
}

fn host_of(authority: &str) -> String {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or_default().to_string();
    }
    authority.rsplit_once(':').map(|(h, _)| h).unwrap_or(authority).to_string()
}

impl From<Error> for Status {
    fn from(e: Error) -> Status {
        let code = match e.kind() {
            ErrorKind::InvalidArgument => crate::Code::InvalidArgument,
            ErrorKind::Shutdown => crate::Code::Unavailable,
            _ => crate::Code::Internal,
        };
        Status::new(code, e.message().to_string())
    }
}
