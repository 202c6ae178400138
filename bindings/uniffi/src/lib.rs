//! Swift and Kotlin bindings of `grpc_core::surface` (the client, and a
//! server of unary methods) and of the engine's telemetry, through UniFFI
//! proc-macros.
//!
//! Every async export spawns its work on the engine's runtime and awaits the
//! task from whatever executor the foreign side polls with (Kotlin coroutines,
//! Swift concurrency): no tokio context is needed there. Dropping the foreign
//! future (a cancelled coroutine or Task) aborts the spawned work. Calls also
//! have an explicit `cancel()`, since UniFFI has no cancellation of its own.

// UniFFI's scaffolding and derives generate items without docs and with
// `pub` visibility; they are the FFI surface, not Rust API.
#![allow(missing_docs, unreachable_pub)]

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use grpc_core::surface as core;
use tokio::sync::Mutex;

uniffi::setup_scaffolding!();

mod server;
mod telemetry;

pub use server::{Server, ServerCallContext, ServerOptions, ServerTlsOptions, UnaryHandler};
pub use telemetry::{
    AttributeValue, InstrumentKind, MetricAttribute, MetricRecord, MetricValue, SpanAttribute, SpanEvent, SpanKind,
    SpanRecord, SpanStatus, Telemetry, TelemetrySink,
};

/// The gRPC status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum StatusCode {
    Ok,
    Cancelled,
    Unknown,
    InvalidArgument,
    DeadlineExceeded,
    NotFound,
    AlreadyExists,
    PermissionDenied,
    ResourceExhausted,
    FailedPrecondition,
    Aborted,
    OutOfRange,
    Unimplemented,
    Internal,
    Unavailable,
    DataLoss,
    Unauthenticated,
}

impl From<core::Code> for StatusCode {
    fn from(c: core::Code) -> Self {
        use core::Code as C;
        match c {
            C::Ok => StatusCode::Ok,
            C::Cancelled => StatusCode::Cancelled,
            C::Unknown => StatusCode::Unknown,
            C::InvalidArgument => StatusCode::InvalidArgument,
            C::DeadlineExceeded => StatusCode::DeadlineExceeded,
            C::NotFound => StatusCode::NotFound,
            C::AlreadyExists => StatusCode::AlreadyExists,
            C::PermissionDenied => StatusCode::PermissionDenied,
            C::ResourceExhausted => StatusCode::ResourceExhausted,
            C::FailedPrecondition => StatusCode::FailedPrecondition,
            C::Aborted => StatusCode::Aborted,
            C::OutOfRange => StatusCode::OutOfRange,
            C::Unimplemented => StatusCode::Unimplemented,
            C::Internal => StatusCode::Internal,
            C::Unavailable => StatusCode::Unavailable,
            C::DataLoss => StatusCode::DataLoss,
            C::Unauthenticated => StatusCode::Unauthenticated,
        }
    }
}

/// A metadata value: text, or bytes for keys ending in `-bin`.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum MetadataValue {
    Ascii { value: String },
    Binary { value: Vec<u8> },
}

/// One metadata entry (keys are lower-case; `-bin` keys carry binary values).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct MetadataEntry {
    pub key: String,
    pub value: MetadataValue,
}

fn metadata_out(md: &core::Metadata) -> Vec<MetadataEntry> {
    md.iter()
        .map(|(k, v)| MetadataEntry {
            key: k.to_string(),
            value: match v {
                core::MetadataValue::Ascii(s) => MetadataValue::Ascii { value: s.clone() },
                core::MetadataValue::Binary(b) => MetadataValue::Binary { value: b.to_vec() },
            },
        })
        .collect()
}

fn metadata_in(entries: Vec<MetadataEntry>) -> Result<core::Metadata, GrpcError> {
    let mut md = core::Metadata::new();
    for e in entries {
        let r = match e.value {
            MetadataValue::Ascii { value } => md.insert(e.key, value),
            MetadataValue::Binary { value } => md.insert_bin(e.key, value),
        };
        r.map_err(api)?;
    }
    Ok(md)
}

/// How an RPC ended: code, message, details (a serialized
/// `google.rpc.Status` when the server sent one) and trailers.
#[derive(Clone, Debug, uniffi::Record)]
pub struct CallStatus {
    pub code: StatusCode,
    pub message: String,
    pub details: Vec<u8>,
    pub trailers: Vec<MetadataEntry>,
}

impl From<&core::Status> for CallStatus {
    fn from(s: &core::Status) -> Self {
        CallStatus {
            code: s.code().into(),
            message: s.message().to_string(),
            details: s.details().to_vec(),
            trailers: metadata_out(s.metadata()),
        }
    }
}

/// The one error type of the binding. `Status` is an RPC that ended with a
/// non-OK status; `Api` is local misuse (bad argument, wrong state, closed).
/// The field is `status_message`, not `message`, because Kotlin exceptions
/// already own `message`. `initial_metadata` holds the response headers of
/// a call that failed after the server sent them (empty for a trailers-only
/// failure), apart from the `trailers`, as grpcio's
/// `RpcError.initial_metadata()`; thrown by a server handler, they are sent
/// as the response headers before the status.
#[derive(Debug, uniffi::Error)]
pub enum GrpcError {
    Status {
        code: StatusCode,
        status_message: String,
        details: Vec<u8>,
        trailers: Vec<MetadataEntry>,
        initial_metadata: Vec<MetadataEntry>,
    },
    Api {
        reason: String,
    },
}

impl std::fmt::Display for GrpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GrpcError::Status { code, status_message, .. } => write!(f, "{code:?}: {status_message}"),
            GrpcError::Api { reason } => f.write_str(reason),
        }
    }
}

impl std::error::Error for GrpcError {}

/// A foreign callback threw something other than `GrpcException`.
impl From<uniffi::UnexpectedUniFFICallbackError> for GrpcError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        GrpcError::Api { reason: e.reason }
    }
}

impl From<core::Status> for GrpcError {
    fn from(s: core::Status) -> Self {
        let c = CallStatus::from(&s);
        GrpcError::Status {
            code: c.code,
            status_message: c.message,
            details: c.details,
            trailers: c.trailers,
            initial_metadata: metadata_out(s.initial_metadata()),
        }
    }
}

fn api(e: core::Error) -> GrpcError {
    GrpcError::Api { reason: e.to_string() }
}

/// Message encodings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Compression {
    Identity,
    Gzip,
    Deflate,
    Zstd,
}

impl From<Compression> for core::Compression {
    fn from(c: Compression) -> Self {
        match c {
            Compression::Identity => core::Compression::Identity,
            Compression::Gzip => core::Compression::Gzip,
            Compression::Deflate => core::Compression::Deflate,
            Compression::Zstd => core::Compression::Zstd,
        }
    }
}

/// Channel connectivity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ConnectivityState {
    Idle,
    Connecting,
    Ready,
    TransientFailure,
    Shutdown,
}

impl From<core::ConnectivityState> for ConnectivityState {
    fn from(s: core::ConnectivityState) -> Self {
        match s {
            core::ConnectivityState::Idle => ConnectivityState::Idle,
            core::ConnectivityState::Connecting => ConnectivityState::Connecting,
            core::ConnectivityState::Ready => ConnectivityState::Ready,
            core::ConnectivityState::TransientFailure => ConnectivityState::TransientFailure,
            core::ConnectivityState::Shutdown => ConnectivityState::Shutdown,
        }
    }
}

impl From<StatusCode> for core::Code {
    fn from(c: StatusCode) -> Self {
        use core::Code as C;
        match c {
            StatusCode::Ok => C::Ok,
            StatusCode::Cancelled => C::Cancelled,
            StatusCode::Unknown => C::Unknown,
            StatusCode::InvalidArgument => C::InvalidArgument,
            StatusCode::DeadlineExceeded => C::DeadlineExceeded,
            StatusCode::NotFound => C::NotFound,
            StatusCode::AlreadyExists => C::AlreadyExists,
            StatusCode::PermissionDenied => C::PermissionDenied,
            StatusCode::ResourceExhausted => C::ResourceExhausted,
            StatusCode::FailedPrecondition => C::FailedPrecondition,
            StatusCode::Aborted => C::Aborted,
            StatusCode::OutOfRange => C::OutOfRange,
            StatusCode::Unimplemented => C::Unimplemented,
            StatusCode::Internal => C::Internal,
            StatusCode::Unavailable => C::Unavailable,
            StatusCode::DataLoss => C::DataLoss,
            StatusCode::Unauthenticated => C::Unauthenticated,
        }
    }
}

impl From<ConnectivityState> for core::ConnectivityState {
    fn from(s: ConnectivityState) -> Self {
        match s {
            ConnectivityState::Idle => core::ConnectivityState::Idle,
            ConnectivityState::Connecting => core::ConnectivityState::Connecting,
            ConnectivityState::Ready => core::ConnectivityState::Ready,
            ConnectivityState::TransientFailure => core::ConnectivityState::TransientFailure,
            ConnectivityState::Shutdown => core::ConnectivityState::Shutdown,
        }
    }
}

/// TLS settings. With no `root_certs_pem` the system's roots are trusted.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct TlsOptions {
    #[uniffi(default = None)]
    pub root_certs_pem: Option<String>,
    #[uniffi(default = None)]
    pub client_cert_pem: Option<String>,
    #[uniffi(default = None)]
    pub client_key_pem: Option<String>,
    #[uniffi(default = None)]
    pub server_name_override: Option<String>,
}

/// Channel settings; every field is optional and defaults to the engine's.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct ChannelOptions {
    /// TLS; none means plaintext (h2c).
    #[uniffi(default = None)]
    pub tls: Option<TlsOptions>,
    #[uniffi(default = None)]
    pub authority: Option<String>,
    #[uniffi(default = None)]
    pub user_agent: Option<String>,
    #[uniffi(default = None)]
    pub max_recv_message_size: Option<u64>,
    #[uniffi(default = None)]
    pub max_send_message_size: Option<u64>,
    #[uniffi(default = None)]
    pub default_compression: Option<Compression>,
    /// Deadline of calls that set none, in milliseconds.
    #[uniffi(default = None)]
    pub default_timeout_ms: Option<u64>,
    #[uniffi(default = None)]
    pub keepalive_time_ms: Option<u64>,
    #[uniffi(default = None)]
    pub keepalive_timeout_ms: Option<u64>,
    #[uniffi(default = None)]
    pub connect_timeout_ms: Option<u64>,
    /// Credentials applied to every call, before the call's own.
    #[uniffi(default = None)]
    pub call_credentials: Option<Arc<CallCredentials>>,
    /// Send call credentials over plaintext too (refused with UNAUTHENTICATED otherwise).
    #[uniffi(default = false)]
    pub allow_insecure_call_credentials: bool,
    /// Service config JSON: `loadBalancingConfig`, per-method `timeout`,
    /// `waitForReady`, `retryPolicy`, `hedgingPolicy`, `retryThrottling`,
    /// `healthCheckConfig`. Invalid JSON fails the constructor.
    #[uniffi(default = None)]
    pub service_config: Option<String>,
    /// The resolver of a `manual:///name` target (required with one, refused otherwise).
    #[uniffi(default = None)]
    pub manual_resolver: Option<Arc<ManualResolver>>,
    /// With no call for this long the channel drops its connections and goes
    /// IDLE (30 min by default); 0 means never.
    #[uniffi(default = None)]
    pub idle_timeout_ms: Option<u64>,
    /// A66 metrics and `Sent.`/`Attempt.` spans of every call (see `Telemetry`).
    #[uniffi(default = None)]
    pub telemetry: Option<Arc<Telemetry>>,
}

/// Per-call settings.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct CallOptions {
    /// Deadline relative to the call's start, in milliseconds.
    #[uniffi(default = None)]
    pub timeout_ms: Option<u64>,
    #[uniffi(default = [])]
    pub metadata: Vec<MetadataEntry>,
    /// Request compression; overrides the channel's default.
    #[uniffi(default = None)]
    pub compression: Option<Compression>,
    /// Wait for the channel to be ready instead of failing fast.
    #[uniffi(default = false)]
    pub wait_for_ready: bool,
    /// Credentials for this call, applied after the channel's.
    #[uniffi(default = None)]
    pub credentials: Option<Arc<CallCredentials>>,
}

/// What a call credentials provider is told about the call.
#[derive(Clone, Debug, uniffi::Record)]
pub struct AuthContextInfo {
    /// `https://<authority>/<package.Service>`.
    pub service_url: String,
    /// The method's short name (`SayHello`).
    pub method_name: String,
    /// The full method path (`/package.Service/Method`).
    pub method: String,
    /// The call's `:authority`.
    pub authority: String,
}

/// A per-call metadata provider implemented in Kotlin or Swift (an OAuth
/// token source, a request signer). Called for every call attempt, on the
/// engine's side as a suspend / async function. Throwing
/// `GrpcException.Status` ends the call with that status (codes a control
/// plane must not produce become INTERNAL, gRFC A54); any other exception
/// ends it with UNAVAILABLE.
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait CallCredentialsProvider: Send + Sync {
    async fn metadata(&self, context: AuthContextInfo) -> Result<Vec<MetadataEntry>, GrpcError>;
}

/// Call credentials: metadata added to each call. Never sent over a
/// plaintext channel unless `ChannelOptions.allowInsecureCallCredentials`.
#[derive(Debug, uniffi::Object)]
pub struct CallCredentials {
    inner: core::CallCredentials,
}

#[uniffi::export]
impl CallCredentials {
    /// Credentials from a provider of your own.
    #[uniffi::constructor]
    pub fn from_provider(provider: Arc<dyn CallCredentialsProvider>) -> Arc<CallCredentials> {
        let inner = core::CallCredentials::from_fn(move |ctx: &core::AuthMetadataContext| {
            let provider = provider.clone();
            let info = AuthContextInfo {
                service_url: ctx.service_url.clone(),
                method_name: ctx.method_name.clone(),
                method: ctx.method.clone(),
                authority: ctx.authority.clone(),
            };
            async move {
                match provider.metadata(info).await {
                    Ok(entries) => metadata_in(entries).map_err(|e| {
                        core::Status::new(core::Code::Internal, format!("call credentials returned bad metadata: {e}"))
                    }),
                    Err(GrpcError::Status { code, status_message, .. }) => {
                        Err(core::Status::new(code.into(), status_message))
                    }
                    Err(GrpcError::Api { reason }) => {
                        Err(core::Status::unavailable(format!("call credentials failed: {reason}")))
                    }
                }
            }
        });
        Arc::new(CallCredentials { inner })
    }

    /// `authorization: Bearer <token>` on every call.
    #[uniffi::constructor]
    pub fn access_token(token: String) -> Result<Arc<CallCredentials>, GrpcError> {
        Ok(Arc::new(CallCredentials { inner: core::CallCredentials::access_token(&token).map_err(api)? }))
    }

    /// Both: this one's metadata, then `other`'s.
    pub fn compose(&self, other: Arc<CallCredentials>) -> Arc<CallCredentials> {
        Arc::new(CallCredentials { inner: self.inner.compose(&other.inner) })
    }
}

/// A resolver whose addresses the application sets, for `manual:///name`
/// targets (give it to `ChannelOptions.manualResolver`). Until the first
/// `update` the channel has no addresses: calls wait or stay queued.
#[derive(Debug, uniffi::Object)]
pub struct ManualResolver {
    inner: core::ManualResolver,
}

#[uniffi::export]
impl ManualResolver {
    #[uniffi::constructor]
    pub fn new() -> Arc<ManualResolver> {
        Arc::new(ManualResolver { inner: core::ManualResolver::new() })
    }

    /// Replaces the address list (`ip:port`, `[ipv6]:port`, `unix:/path`);
    /// channels using this resolver move their calls to the new addresses.
    pub fn update(&self, addresses: Vec<String>) -> Result<(), GrpcError> {
        self.inner.update_from_strs(addresses).map_err(api)
    }

    /// Reports a resolution error: fail-fast calls with no usable address
    /// fail with UNAVAILABLE and this message.
    pub fn report_error(&self, message: String) {
        self.inner.report_error(message);
    }

    /// The current addresses (empty before the first update or after an error).
    pub fn addresses(&self) -> Vec<String> {
        self.inner.addresses().unwrap_or_default().iter().map(ToString::to_string).collect()
    }

    /// How often a channel asked for re-resolution (a connection failed or dropped).
    pub fn resolve_now_count(&self) -> u64 {
        self.inner.resolve_now_count()
    }
}

/// One subchannel of a channel's load-balancing policy.
#[derive(Clone, Debug, uniffi::Record)]
pub struct SubchannelInfo {
    pub address: String,
    pub state: ConnectivityState,
}

/// A unary (or client-streaming) response.
#[derive(Clone, Debug, uniffi::Record)]
pub struct UnaryResponse {
    pub message: Vec<u8>,
    pub initial_metadata: Vec<MetadataEntry>,
    pub trailing_metadata: Vec<MetadataEntry>,
}

/// Aborts a spawned task when the awaiting (foreign) future is dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs `fut` on the engine's runtime and awaits it from any executor.
async fn run<F, T>(fut: F) -> Result<T, GrpcError>
where
    F: Future<Output = Result<T, GrpcError>> + Send + 'static,
    T: Send + 'static,
{
    let mut task = AbortOnDrop(core::spawn(fut));
    match (&mut task.0).await {
        Ok(r) => r,
        Err(e) => Err(GrpcError::Api { reason: format!("task failed: {e}") }),
    }
}

fn ms(v: Option<u64>) -> Option<Duration> {
    v.map(Duration::from_millis)
}

/// A channel to one target. Connects lazily on the first call.
#[derive(Debug, uniffi::Object)]
pub struct Channel {
    inner: core::Channel,
    default_timeout: Option<Duration>,
}

impl Channel {
    fn call_options(&self, o: CallOptions) -> Result<core::CallOptions, GrpcError> {
        Ok(core::CallOptions {
            timeout: ms(o.timeout_ms).or(self.default_timeout),
            deadline: None,
            metadata: metadata_in(o.metadata)?,
            compression: o.compression.map(Into::into),
            wait_for_ready: o.wait_for_ready,
            credentials: o.credentials.map(|c| c.inner.clone()),
        })
    }
}

#[uniffi::export]
impl Channel {
    /// Creates a channel to `target` (`host:port`, `dns:///host:port`, `unix:path`).
    #[uniffi::constructor]
    pub fn new(target: String, options: ChannelOptions) -> Result<Arc<Channel>, GrpcError> {
        let mut o = core::ChannelOptions::default();
        if let Some(t) = options.tls {
            let identity = match (t.client_cert_pem, t.client_key_pem) {
                (Some(c), Some(k)) => Some((c.into_bytes(), k.into_bytes())),
                (None, None) => None,
                _ => return Err(GrpcError::Api { reason: "client cert and key go together".into() }),
            };
            o.tls = Some(core::ClientTlsConfig {
                root_certs_pem: t.root_certs_pem.map(String::into_bytes),
                identity_pem: identity,
                server_name_override: t.server_name_override,
            });
        }
        o.authority = options.authority;
        o.user_agent = options.user_agent;
        if let Some(n) = options.max_recv_message_size {
            o.max_recv_message_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = options.max_send_message_size {
            o.max_send_message_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        o.default_compression = options.default_compression.map(Into::into);
        o.keepalive_time = ms(options.keepalive_time_ms);
        if let Some(t) = ms(options.keepalive_timeout_ms) {
            o.keepalive_timeout = t;
        }
        if let Some(t) = ms(options.connect_timeout_ms) {
            o.connect_timeout = t;
        }
        o.call_credentials = options.call_credentials.map(|c| c.inner.clone());
        o.allow_insecure_call_credentials = options.allow_insecure_call_credentials;
        o.service_config = options.service_config;
        o.manual_resolver = options.manual_resolver.map(|r| r.inner.clone());
        if let Some(t) = options.idle_timeout_ms {
            o.idle_timeout = (t > 0).then(|| Duration::from_millis(t));
        }
        o.telemetry = options.telemetry.map(|t| t.otel.clone());
        let inner = core::Channel::new(&target, o).map_err(api)?;
        Ok(Arc::new(Channel { inner, default_timeout: ms(options.default_timeout_ms) }))
    }

    /// The current connectivity state.
    pub fn state(&self) -> ConnectivityState {
        self.inner.state().into()
    }

    /// The subchannels of the load-balancing policy (one per address) and
    /// their states; empty while the channel is idle. May lag `state()` briefly.
    pub fn subchannels(&self) -> Vec<SubchannelInfo> {
        self.inner
            .subchannels()
            .into_iter()
            .map(|s| SubchannelInfo { address: s.address.to_string(), state: s.state.into() })
            .collect()
    }

    /// Tokens left in the service config's `retryThrottling` bucket (null without throttling).
    pub fn retry_tokens(&self) -> Option<f64> {
        self.inner.retry_tokens()
    }

    /// Starts connecting if idle.
    pub fn connect(&self) {
        self.inner.connect();
    }

    /// Connects and waits until ready, or fails once `timeout_ms` passed.
    pub async fn ready(&self, timeout_ms: Option<u64>) -> Result<(), GrpcError> {
        let ch = self.inner.clone();
        let deadline = ms(timeout_ms).map(|t| std::time::Instant::now() + t);
        run(async move { ch.ready(deadline).await.map_err(Into::into) }).await
    }

    /// Waits until the state differs from `from`; false if `timeout_ms` passed first.
    pub async fn wait_for_state_change(&self, from: ConnectivityState, timeout_ms: Option<u64>) -> bool {
        let ch = self.inner.clone();
        let deadline = ms(timeout_ms).map(|t| std::time::Instant::now() + t);
        run(async move { Ok(ch.wait_for_state_change(from.into(), deadline).await) }).await.unwrap_or(false)
    }

    /// Closes the channel: the connection drops and new calls fail. (Named
    /// `shutdown` because Kotlin's `close()` frees the handle itself.)
    pub fn shutdown(&self) {
        self.inner.close();
    }

    /// A unary call on `method` (`/package.Service/Method`).
    pub async fn unary(
        &self,
        method: String,
        request: Vec<u8>,
        options: CallOptions,
    ) -> Result<UnaryResponse, GrpcError> {
        let ch = self.inner.clone();
        let opts = self.call_options(options)?;
        run(async move {
            let r = ch.unary(&method, Bytes::from(request), opts).await?;
            Ok(UnaryResponse {
                message: r.message.to_vec(),
                initial_metadata: metadata_out(&r.initial_metadata),
                trailing_metadata: metadata_out(&r.trailing_metadata),
            })
        })
        .await
    }

    /// Starts a streaming call of any kind (server-, client- or bidi-streaming).
    pub async fn start_call(&self, method: String, options: CallOptions) -> Result<Arc<Call>, GrpcError> {
        let ch = self.inner.clone();
        let opts = self.call_options(options)?;
        run(async move {
            let call = ch.call(&method, opts).await?;
            let handle = call.handle();
            let (tx, rx) = call.split();
            Ok(Arc::new(Call { handle, sender: Arc::new(Mutex::new(tx)), receiver: Arc::new(Mutex::new(rx)) }))
        })
        .await
    }
}

/// A streaming call: `send`, `close_send`, `receive` (null at the end of an
/// OK call, an error otherwise), `initial_metadata`, `finish` and `cancel`.
/// Sending and receiving may run concurrently.
#[derive(Debug, uniffi::Object)]
pub struct Call {
    handle: core::CallHandle,
    sender: Arc<Mutex<core::CallSender>>,
    receiver: Arc<Mutex<core::CallReceiver>>,
}

#[uniffi::export]
impl Call {
    /// Sends one message (waits for flow control). After a failed send,
    /// `receive` or `finish` tell how the call ended.
    pub async fn send(&self, message: Vec<u8>) -> Result<(), GrpcError> {
        let s = self.sender.clone();
        run(async move { s.lock().await.send(Bytes::from(message)).await.map_err(Into::into) }).await
    }

    /// Half-closes: no more messages will be sent.
    pub async fn close_send(&self) -> Result<(), GrpcError> {
        let s = self.sender.clone();
        run(async move { s.lock().await.close_send().await.map_err(Into::into) }).await
    }

    /// The next response message; null once the call ended OK.
    pub async fn receive(&self) -> Result<Option<Vec<u8>>, GrpcError> {
        let r = self.receiver.clone();
        run(async move { Ok(r.lock().await.recv().await?.map(|b| b.to_vec())) }).await
    }

    /// The response headers (waits for them).
    pub async fn initial_metadata(&self) -> Result<Vec<MetadataEntry>, GrpcError> {
        let r = self.receiver.clone();
        run(async move { Ok(metadata_out(&r.lock().await.initial_metadata().await?)) }).await
    }

    /// Drops any remaining responses and returns the final status with trailers.
    pub async fn finish(&self) -> CallStatus {
        let r = self.receiver.clone();
        match run(async move { Ok(CallStatus::from(&r.lock().await.finish().await)) }).await {
            Ok(s) => s,
            Err(e) => CallStatus {
                code: StatusCode::Internal,
                message: e.to_string(),
                details: Vec::new(),
                trailers: Vec::new(),
            },
        }
    }

    /// The final status if the call already ended (never waits).
    pub fn status(&self) -> Option<CallStatus> {
        self.receiver.try_lock().ok().and_then(|r| r.status().map(CallStatus::from))
    }

    /// Cancels the call: pending and later operations fail with CANCELLED.
    pub fn cancel(&self) {
        self.handle.cancel();
    }
}

/// The engine's version.
#[uniffi::export]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
