//! Channels: options (TLS, authority, keepalive, limits, compression,
//! timeouts), creation, connectivity state, wait-for-ready, close.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use engine::surface::{Channel, ChannelOptions, ClientTlsConfig, Compression, ConnectivityState};

use crate::boundary::{bytes_arg, ffi_guard, grpc_core_result, str_arg, timeout_arg, FfiError, FfiResult, Out};
use crate::cq::{grpc_core_cq, grpc_core_op, Completion, CQS};
use crate::handle::{tag, Registry};

/// Channel settings, copied by `grpc_core_channel_new` (so one options
/// object can create many channels, and may be freed right after).
#[derive(Debug)]
pub struct grpc_core_channel_options {
    _private: [u8; 0],
}

/// A client channel to one target. Thread-safe. Connects lazily (on the
/// first call, `grpc_core_channel_ready`, or a state query with
/// `try_to_connect`) and reconnects with backoff.
#[derive(Debug)]
pub struct grpc_core_channel {
    _private: [u8; 0],
}

/// Message compression. Fixed numbers.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum grpc_core_compression {
    /// No choice here: for a call, the channel's default; for a channel or
    /// server default, none.
    GRPC_CORE_COMPRESSION_DEFAULT = 0,
    /// No compression (turns the channel default off for one call).
    GRPC_CORE_COMPRESSION_IDENTITY = 1,
    /// gzip.
    GRPC_CORE_COMPRESSION_GZIP = 2,
    /// deflate (zlib).
    GRPC_CORE_COMPRESSION_DEFLATE = 3,
    /// Zstandard.
    GRPC_CORE_COMPRESSION_ZSTD = 4,
}

/// Channel connectivity states. Fixed numbers.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum grpc_core_connectivity {
    /// No connection and none being made; the next call connects.
    GRPC_CORE_CONNECTIVITY_IDLE = 0,
    /// Connecting.
    GRPC_CORE_CONNECTIVITY_CONNECTING = 1,
    /// Connected.
    GRPC_CORE_CONNECTIVITY_READY = 2,
    /// The last attempt failed; waiting out the backoff.
    GRPC_CORE_CONNECTIVITY_TRANSIENT_FAILURE = 3,
    /// The channel was closed.
    GRPC_CORE_CONNECTIVITY_SHUTDOWN = 4,
}

/// TLS parts kept apart until the channel is built, so setters can come in any order.
#[derive(Default)]
pub(crate) struct ChannelOpts {
    base: ChannelOptions,
    tls: bool,
    roots: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
    server_name: Option<String>,
}

impl ChannelOpts {
    fn build(&self) -> ChannelOptions {
        let mut o = self.base.clone();
        o.tls = self.tls.then(|| ClientTlsConfig {
            root_certs_pem: self.roots.clone(),
            identity_pem: self.identity.clone(),
            server_name_override: self.server_name.clone(),
        });
        o
    }
}

pub(crate) struct ChannelObj {
    pub(crate) channel: Channel,
}

pub(crate) static CHANNEL_OPTIONS: Registry<Mutex<ChannelOpts>, grpc_core_channel_options> =
    Registry::new(tag::CHANNEL_OPTIONS, "channel_options");
pub(crate) static CHANNELS: Registry<ChannelObj, grpc_core_channel> = Registry::new(tag::CHANNEL, "channel");

/// Compression from C for a channel or server default.
pub(crate) fn default_compression_arg(c: i32) -> FfiResult<Option<Compression>> {
    Ok(match call_compression_arg(c)? {
        Some(Compression::Identity) | None => None,
        other => other,
    })
}

/// Compression from C for one call: `None` is "the channel's default".
pub(crate) fn call_compression_arg(c: i32) -> FfiResult<Option<Compression>> {
    Ok(match c {
        0 => None,
        1 => Some(Compression::Identity),
        2 => Some(Compression::Gzip),
        3 => Some(Compression::Deflate),
        4 => Some(Compression::Zstd),
        _ => return Err(FfiError::invalid(format!("compression {c} is not a grpc_core_compression"))),
    })
}

pub(crate) fn connectivity(s: ConnectivityState) -> grpc_core_connectivity {
    use grpc_core_connectivity::*;
    match s {
        ConnectivityState::Idle => GRPC_CORE_CONNECTIVITY_IDLE,
        ConnectivityState::Connecting => GRPC_CORE_CONNECTIVITY_CONNECTING,
        ConnectivityState::Ready => GRPC_CORE_CONNECTIVITY_READY,
        ConnectivityState::TransientFailure => GRPC_CORE_CONNECTIVITY_TRANSIENT_FAILURE,
        ConnectivityState::Shutdown => GRPC_CORE_CONNECTIVITY_SHUTDOWN,
    }
}

fn connectivity_arg(v: i32) -> FfiResult<ConnectivityState> {
    Ok(match v {
        0 => ConnectivityState::Idle,
        1 => ConnectivityState::Connecting,
        2 => ConnectivityState::Ready,
        3 => ConnectivityState::TransientFailure,
        4 => ConnectivityState::Shutdown,
        _ => return Err(FfiError::invalid(format!("{v} is not a grpc_core_connectivity"))),
    })
}

fn size_arg(v: u64, what: &str) -> FfiResult<usize> {
    if v == 0 {
        return Err(FfiError::invalid(format!("{what} must be positive")));
    }
    Ok(usize::try_from(v).unwrap_or(usize::MAX))
}

fn with_opts(opts: *mut grpc_core_channel_options, f: impl FnOnce(&mut ChannelOpts)) -> FfiResult<()> {
    let o = CHANNEL_OPTIONS.get(opts)?;
    let mut g = o.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut g);
    Ok(())
}

/// Creates channel options with every default (plaintext, 4 MiB receive
/// limit, no keepalive, 20 s connect timeout). Owned by the caller: free
/// with `grpc_core_channel_options_free`. Not thread-safe to modify one
/// object from several threads at once (it is safe, but the last write wins).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_new(opts: *mut *mut grpc_core_channel_options) -> grpc_core_result {
    ffi_guard! {
        let out = Out::new(opts, "opts")?;
        out.write(CHANNEL_OPTIONS.insert(Arc::new(Mutex::new(ChannelOpts::default()))));
        Ok(())
    }
}

/// Frees channel options. Channels made from them are unaffected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_free(opts: *mut grpc_core_channel_options) -> grpc_core_result {
    ffi_guard! {
        CHANNEL_OPTIONS.remove(opts)?;
        Ok(())
    }
}

/// Turns TLS on, trusting the PEM root certificates `roots_pem`
/// (`roots_len` bytes, borrowed, copied), or the system's roots when
/// `roots_pem` is NULL. The PEM is parsed by `grpc_core_channel_new`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_tls(
    opts: *mut grpc_core_channel_options,
    roots_pem: *const u8,
    roots_len: usize,
) -> grpc_core_result {
    ffi_guard! {
        let roots = if roots_pem.is_null() { None } else { Some(bytes_arg(roots_pem, roots_len, "roots_pem")?.to_vec()) };
        with_opts(opts, |o| {
            o.tls = true;
            o.roots = roots;
        })
    }
}

/// Sets a client certificate chain and private key (PEM, borrowed, copied)
/// for mutual TLS; turns TLS on (system roots unless set).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_tls_identity(
    opts: *mut grpc_core_channel_options,
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
        with_opts(opts, |o| {
            o.tls = true;
            o.identity = Some((cert, key));
        })
    }
}

/// Verifies the server certificate against `name` (borrowed, copied)
/// instead of the target's host, sends it as SNI and makes it the default
/// `:authority`. Turns TLS on.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_server_name_override(
    opts: *mut grpc_core_channel_options,
    name: *const c_char,
    name_len: usize,
) -> grpc_core_result {
    ffi_guard! {
        let name = str_arg(name, name_len, "name")?;
        if name.is_empty() {
            return Err(FfiError::invalid("server name is empty"));
        }
        let name = name.to_string();
        with_opts(opts, |o| {
            o.tls = true;
            o.server_name = Some(name);
        })
    }
}

/// Plaintext HTTP/2 (h2c): turns TLS off and forgets any TLS setting. The default.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_insecure(
    opts: *mut grpc_core_channel_options,
) -> grpc_core_result {
    ffi_guard! {
        with_opts(opts, |o| {
            o.tls = false;
            o.roots = None;
            o.identity = None;
            o.server_name = None;
        })
    }
}

/// Sets the `:authority` sent with every call (borrowed, copied).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_authority(
    opts: *mut grpc_core_channel_options,
    authority: *const c_char,
    authority_len: usize,
) -> grpc_core_result {
    ffi_guard! {
        let a = str_arg(authority, authority_len, "authority")?.to_string();
        if a.is_empty() {
            return Err(FfiError::invalid("authority is empty"));
        }
        with_opts(opts, |o| o.base.authority = Some(a))
    }
}

/// Sets the service config (JSON, borrowed and copied): load-balancing
/// policy (`pick_first`, `round_robin`), per-method timeout, waitForReady,
/// message size limits, retry/hedging policies (applied to
/// `grpc_core_channel_unary*`), retry throttling, `healthCheckConfig`.
/// Checked here (INVALID_ARGUMENT with the reason in `grpc_core_last_error`)
/// and applied by `grpc_core_channel_new`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_service_config(
    opts: *mut grpc_core_channel_options,
    json: *const c_char,
    json_len: usize,
) -> grpc_core_result {
    ffi_guard! {
        let j = str_arg(json, json_len, "json")?.to_string();
        engine::client::ServiceConfig::parse(&j).map_err(|e| FfiError::invalid(e.message().to_string()))?;
        with_opts(opts, |o| o.base.service_config = Some(j))
    }
}

/// Sets a prefix for the `user-agent` header (borrowed, copied).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_user_agent(
    opts: *mut grpc_core_channel_options,
    user_agent: *const c_char,
    user_agent_len: usize,
) -> grpc_core_result {
    ffi_guard! {
        let ua = str_arg(user_agent, user_agent_len, "user_agent")?.to_string();
        with_opts(opts, |o| o.base.user_agent = Some(ua))
    }
}

/// Keepalive: ping every `time_ms` (0 or negative: off, the default), close
/// the connection if a ping is unanswered for `timeout_ms` (0 or negative:
/// keep the default 20 s), and ping even with no call in flight if
/// `permit_without_calls` is non-zero.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_keepalive(
    opts: *mut grpc_core_channel_options,
    time_ms: i64,
    timeout_ms: i64,
    permit_without_calls: i32,
) -> grpc_core_result {
    ffi_guard! {
        with_opts(opts, |o| {
            o.base.keepalive_time = crate::boundary::optional_ms(time_ms);
            if let Some(t) = crate::boundary::optional_ms(timeout_ms) {
                o.base.keepalive_timeout = t;
            }
            o.base.keepalive_permit_without_calls = permit_without_calls != 0;
        })
    }
}

/// The largest response message accepted, in bytes (default 4 MiB; must be > 0).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_max_recv_message_size(
    opts: *mut grpc_core_channel_options,
    bytes: u64,
) -> grpc_core_result {
    ffi_guard! {
        let n = size_arg(bytes, "max_recv_message_size")?;
        with_opts(opts, |o| o.base.max_recv_message_size = n)
    }
}

/// The largest request message sent, in bytes (default unlimited; must be > 0).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_max_send_message_size(
    opts: *mut grpc_core_channel_options,
    bytes: u64,
) -> grpc_core_result {
    ffi_guard! {
        let n = size_arg(bytes, "max_send_message_size")?;
        with_opts(opts, |o| o.base.max_send_message_size = n)
    }
}

/// Compression of request messages for every call that does not choose
/// (a `grpc_core_compression`; DEFAULT or IDENTITY: none).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_default_compression(
    opts: *mut grpc_core_channel_options,
    compression: i32,
) -> grpc_core_result {
    ffi_guard! {
        let c = default_compression_arg(compression)?;
        with_opts(opts, |o| o.base.default_compression = c)
    }
}

/// The least time one connection attempt gets (default 20 s; must be > 0).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_connect_timeout(
    opts: *mut grpc_core_channel_options,
    timeout_ms: i64,
) -> grpc_core_result {
    ffi_guard! {
        let t = crate::boundary::optional_ms(timeout_ms)
            .ok_or_else(|| FfiError::invalid("connect timeout must be positive"))?;
        with_opts(opts, |o| o.base.connect_timeout = t)
    }
}

/// Reconnect backoff: the first delay and the cap (defaults 1 s and 120 s;
/// both > 0, `initial_ms` <= `max_ms`).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_backoff(
    opts: *mut grpc_core_channel_options,
    initial_ms: i64,
    max_ms: i64,
) -> grpc_core_result {
    ffi_guard! {
        if initial_ms <= 0 || max_ms < initial_ms {
            return Err(FfiError::invalid("backoff needs 0 < initial_ms <= max_ms"));
        }
        with_opts(opts, |o| {
            o.base.backoff.initial = Duration::from_millis(initial_ms as u64);
            o.base.backoff.max = Duration::from_millis(max_ms as u64);
        })
    }
}

/// Sets the call credentials of every call on channels made from these
/// options (`creds` borrowed: the options keep their own reference; NULL
/// removes them). They run for each call attempt, with the call's method
/// and authority, and are refused on a plaintext channel: such calls fail
/// with UNAUTHENTICATED unless
/// `grpc_core_channel_options_set_allow_insecure_call_credentials` allows it.
/// A call's own credentials (`grpc_core_call_set_credentials`,
/// `grpc_core_channel_unary_ex`) are added to these, not put in their place.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_call_credentials(
    opts: *mut grpc_core_channel_options,
    creds: *const crate::credentials::grpc_core_call_credentials,
) -> grpc_core_result {
    ffi_guard! {
        let c = if creds.is_null() { None } else { Some((*crate::credentials::CREDENTIALS.get(creds)?).clone()) };
        with_opts(opts, |o| o.base.call_credentials = c)
    }
}

/// Records the engine's telemetry (A66 metrics, spans) for every call of
/// channels made from these options (`telemetry` borrowed: the options keep
/// their own reference; NULL turns it off). See `grpc_core_telemetry_new`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_telemetry(
    opts: *mut grpc_core_channel_options,
    telemetry: *const crate::telemetry::grpc_core_telemetry,
) -> grpc_core_result {
    ffi_guard! {
        let t = if telemetry.is_null() { None } else { Some((*crate::telemetry::TELEMETRY.get(telemetry)?).clone()) };
        with_opts(opts, |o| o.base.telemetry = t)
    }
}

/// With `allow` non-zero, call credentials are sent over plaintext too (for
/// tests and trusted local links; the default 0 refuses them there with
/// UNAUTHENTICATED, as grpc-go does).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_options_set_allow_insecure_call_credentials(
    opts: *mut grpc_core_channel_options,
    allow: i32,
) -> grpc_core_result {
    ffi_guard! {
        with_opts(opts, |o| o.base.allow_insecure_call_credentials = allow != 0)
    }
}

/// Creates a channel to `target` (`target_len` bytes, borrowed): `host:port`,
/// `dns:host:port`, `ipv4:1.2.3.4:5`, `unix:/path`, ... `opts` is borrowed
/// and copied; NULL means defaults. Nothing connects yet. On success `*channel`
/// is owned by the caller: free with `grpc_core_channel_free`.
/// Errors: INVALID_ARGUMENT (target, authority), TLS (bad PEM).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_new(
    target: *const c_char,
    target_len: usize,
    opts: *const grpc_core_channel_options,
    channel: *mut *mut grpc_core_channel,
) -> grpc_core_result {
    ffi_guard! {
        if target.is_null() {
            return Err(FfiError::null("target"));
        }
        let target = str_arg(target, target_len, "target")?;
        let out = Out::new(channel, "channel")?;
        let o = if opts.is_null() {
            ChannelOptions::default()
        } else {
            CHANNEL_OPTIONS.get(opts)?.lock().unwrap_or_else(|e| e.into_inner()).build()
        };
        crate::ensure_runtime();
        let ch = Channel::new(target, o)?;
        out.write(CHANNELS.insert(Arc::new(ChannelObj { channel: ch })));
        Ok(())
    }
}

/// Writes the channel's connectivity state (`grpc_core_connectivity`) to
/// `*state`; if `try_to_connect` is non-zero and the channel is IDLE, starts
/// connecting.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_state(
    channel: *mut grpc_core_channel,
    try_to_connect: i32,
    state: *mut grpc_core_connectivity,
) -> grpc_core_result {
    ffi_guard! {
        let c = CHANNELS.get(channel)?;
        let out = Out::new(state, "state")?;
        if try_to_connect != 0 {
            c.channel.connect();
        }
        out.write(connectivity(c.channel.state()));
        Ok(())
    }
}

/// Completes `tag` on `cq` (`GRPC_CORE_OP_CHANNEL_WATCH_STATE`) when the
/// state differs from `last_observed` (`value`: the new state) or after
/// `timeout_ms` (negative: no limit; then `success` 0).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_watch_state(
    channel: *mut grpc_core_channel,
    last_observed: i32,
    timeout_ms: i64,
    cq: *mut grpc_core_cq,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = CHANNELS.get(channel)?;
        let from = connectivity_arg(last_observed)?;
        let q = CQS.get(cq)?;
        let op = q.begin(grpc_core_op::GRPC_CORE_OP_CHANNEL_WATCH_STATE, tag)?;
        let ch = c.channel.clone();
        let deadline = timeout_arg(timeout_ms).map(|t| std::time::Instant::now() + t);
        engine::surface::spawn(async move {
            let changed = ch.wait_for_state_change(from, deadline).await;
            let mut done = if changed { Completion::ok() } else { Completion::failed() };
            done.value = connectivity(ch.state()) as i32;
            op.complete(done);
        });
        Ok(())
    }
}

/// Connects if needed and completes `tag` on `cq`
/// (`GRPC_CORE_OP_CHANNEL_READY`) once the channel is READY (`success` 1),
/// or with `success` 0 when `timeout_ms` passes first (negative: no limit)
/// or the channel is closed. Wait-for-ready semantics: transient failures
/// are retried until then.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_ready(
    channel: *mut grpc_core_channel,
    timeout_ms: i64,
    cq: *mut grpc_core_cq,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = CHANNELS.get(channel)?;
        let q = CQS.get(cq)?;
        let op = q.begin(grpc_core_op::GRPC_CORE_OP_CHANNEL_READY, tag)?;
        let ch = c.channel.clone();
        let deadline = timeout_arg(timeout_ms).map(|t| std::time::Instant::now() + t);
        engine::surface::spawn(async move {
            let ok = ch.ready(deadline).await.is_ok();
            let done = if ok { Completion::ok() } else { Completion::failed() };
            op.complete(done.with_value(connectivity(ch.state()) as i32));
        });
        Ok(())
    }
}

/// Closes the channel: new calls fail at once with CANCELLED ("the client
/// connection is closing", as grpc-go), the connection is dropped (calls in
/// flight fail) and the state becomes SHUTDOWN shortly after. The handle
/// stays valid until freed.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_close(channel: *mut grpc_core_channel) -> grpc_core_result {
    ffi_guard! {
        CHANNELS.get(channel)?.channel.close();
        Ok(())
    }
}

/// Frees the channel handle. Calls already started keep the connection
/// until they end; when the last one does, the connection closes. Freeing
/// twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_free(channel: *mut grpc_core_channel) -> grpc_core_result {
    ffi_guard! {
        CHANNELS.remove(channel)?;
        Ok(())
    }
}
