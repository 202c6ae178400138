//! Fused unary calls: one function, one completion. `grpc_core_channel_unary`
//! runs the core's `Channel::unary` as a single task and completes one
//! `GRPC_CORE_OP_CALL_UNARY` event with the response, the status and both
//! metadata; `grpc_core_channel_unary_blocking` runs the same task and
//! hands the result straight to the blocked caller (no queue), filling an
//! event in place. The `_ex` forms add per-call credentials (new functions,
//! so the existing ones keep their ABI).
//!
//! Why: a unary call through the per-operation API costs four crossings,
//! four tasks and three events (send, receive, status); this is one. The
//! cost that remains over the Rust API is the argument copies, the handle
//! registrations of the outputs and, for the queued form, the queue's
//! mutex and wakeup (see ffi-c/README.md, "Unary calls").

use std::ffi::{c_char, c_void};
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use engine::surface::{CallOptions, Metadata, Status, UnaryResponse};

use crate::boundary::{bytes_arg, ffi_guard, grpc_core_result, str_arg, timeout_arg, FfiError, FfiResult, Out};
use crate::call::GRPC_CORE_CALL_WAIT_FOR_READY;
use crate::channel::{call_compression_arg, grpc_core_channel, CHANNELS};
use crate::cq::{event_c, grpc_core_cq, grpc_core_event, grpc_core_op, Completion, CQS};
use crate::credentials::{grpc_core_call_credentials, CREDENTIALS};
use crate::values::{grpc_core_metadata_entry, metadata_arg};

/// The checked arguments of a unary call.
struct UnaryArgs {
    method: String,
    request: Bytes,
    opts: CallOptions,
}

#[allow(clippy::too_many_arguments)]
unsafe fn unary_args(
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    creds: *const grpc_core_call_credentials,
) -> FfiResult<UnaryArgs> {
    if method.is_null() {
        return Err(FfiError::null("method"));
    }
    // SAFETY: forwarded from the export's caller (header contract).
    let m = unsafe { str_arg(method, method_len, "method")? };
    if !m.starts_with('/') {
        return Err(FfiError::invalid(format!("method {m:?} must look like /package.Service/Method")));
    }
    // SAFETY: as above.
    let md = unsafe { metadata_arg(metadata, metadata_count)? };
    // SAFETY: as above.
    let req = unsafe { bytes_arg(request, request_len, "request")? };
    if flags & !GRPC_CORE_CALL_WAIT_FOR_READY != 0 {
        return Err(FfiError::invalid(format!("unknown call flags 0x{flags:x}")));
    }
    let compression = call_compression_arg(compression)?;
    let credentials =
        if creds.is_null() { None } else { Some(engine::surface::CallCredentials::clone(&*CREDENTIALS.get(creds)?)) };
    Ok(UnaryArgs {
        method: m.to_string(),
        request: Bytes::copy_from_slice(req),
        opts: CallOptions {
            timeout: timeout_arg(timeout_ms),
            metadata: md,
            compression,
            wait_for_ready: flags & GRPC_CORE_CALL_WAIT_FOR_READY != 0,
            credentials,
            ..Default::default()
        },
    })
}

fn non_empty(md: Metadata) -> Option<Metadata> {
    (!md.is_empty()).then_some(md)
}

fn completion(r: Result<UnaryResponse, Status>) -> Completion {
    match r {
        Ok(resp) => Completion {
            message: Some(resp.message),
            initial_metadata: non_empty(resp.initial_metadata),
            metadata: non_empty(resp.trailing_metadata),
            status: Some(Status::ok()),
            ..Completion::ok()
        },
        Err(st) => Completion {
            initial_metadata: non_empty(st.initial_metadata().clone()),
            metadata: non_empty(st.metadata().clone()),
            status: Some(st),
            ..Completion::failed()
        },
    }
}

/// A one-shot result slot that a runtime task fills and a blocked C thread
/// takes (a mutex and a park/unpark: cheaper than a channel).
struct Slot<T> {
    value: std::sync::Mutex<Option<T>>,
    waiter: std::thread::Thread,
}

/// Runs `fut` as one task on the engine's runtime and blocks the calling
/// thread until it is done. (Driving the future on the calling thread
/// instead, with the runtime entered, was measured slower: each await on
/// the connection then wakes this thread across threads, about 30 µs more
/// CPU per unary call than one hop at the end.)
fn run_blocking<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let slot = Arc::new(Slot { value: std::sync::Mutex::new(None), waiter: std::thread::current() });
    let filler = slot.clone();
    engine::surface::spawn(async move {
        let v = fut.await;
        *filler.value.lock().unwrap_or_else(|e| e.into_inner()) = Some(v);
        filler.waiter.unpark();
    });
    loop {
        if let Some(v) = slot.value.lock().unwrap_or_else(|e| e.into_inner()).take() {
            return v;
        }
        // Spurious wakeups only cost one more look.
        std::thread::park();
    }
}

/// Starts a whole unary call on `channel` and completes `tag` on `cq` with
/// ONE event (`GRPC_CORE_OP_CALL_UNARY`): the response message, the final
/// status and the response headers and trailers. The per-operation API
/// (`grpc_core_call_new` ...) needs three events for the same call.
///
/// - `method`, `method_len`: `/package.Service/Method` (borrowed).
/// - `metadata`, `metadata_count`: request metadata (borrowed, copied; NULL if 0).
/// - `request`, `request_len`: the request message (borrowed, copied before
///   return; NULL if 0).
/// - `timeout_ms`: deadline relative to now (negative: none).
/// - `flags`: `GRPC_CORE_CALL_WAIT_FOR_READY` or 0.
/// - `compression`: a `grpc_core_compression` (DEFAULT: the channel's).
/// - `cq`, `tag`: where and how the call completes (the queue is borrowed
///   and must stay alive until the event is delivered).
///
/// Event ownership is that of every event: `message`, `status`, `metadata`
/// and `initial_metadata` are the caller's (free them with
/// `grpc_core_event_release`). There is no call handle: the deadline and
/// `grpc_core_channel_close` are the ways to end such a call early.
/// Thread-safe; any number may be in flight on one channel.
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_unary(
    channel: *mut grpc_core_channel,
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    cq: *mut grpc_core_cq,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        unary_queued(channel, method, method_len, metadata, metadata_count, request, request_len, timeout_ms, flags,
            compression, std::ptr::null(), cq, tag)
    }
}

/// `grpc_core_channel_unary` with call credentials for this call only:
/// `creds` (borrowed; the call keeps its own reference, so it may be freed
/// at once; NULL: none, exactly `grpc_core_channel_unary`). They compose
/// with the channel's call credentials (the channel's metadata first, then
/// these, all sent) and, like them, are refused on a plaintext channel
/// (the event's status is UNAUTHENTICATED, nothing is sent) unless the
/// channel allows it. Everything else is as `grpc_core_channel_unary`.
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_unary_ex(
    channel: *mut grpc_core_channel,
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    creds: *const grpc_core_call_credentials,
    cq: *mut grpc_core_cq,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        unary_queued(channel, method, method_len, metadata, metadata_count, request, request_len, timeout_ms, flags,
            compression, creds, cq, tag)
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn unary_queued(
    channel: *mut grpc_core_channel,
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    creds: *const grpc_core_call_credentials,
    cq: *mut grpc_core_cq,
    tag: *mut c_void,
) -> FfiResult<()> {
    let ch = CHANNELS.get(channel)?;
    // SAFETY: forwarded from the export's caller (header contract).
    let a = unsafe {
        unary_args(
            method,
            method_len,
            metadata,
            metadata_count,
            request,
            request_len,
            timeout_ms,
            flags,
            compression,
            creds,
        )?
    };
    let q = CQS.get(cq)?;
    let op = q.begin(grpc_core_op::GRPC_CORE_OP_CALL_UNARY, tag)?;
    engine::surface::spawn(async move {
        let r = ch.channel.unary(&a.method, a.request, a.opts).await;
        op.complete(completion(r));
    });
    Ok(())
}

/// The same unary call as `grpc_core_channel_unary`, run to completion on
/// the calling thread: blocks until the call ends, then fills `*result`
/// exactly as the `GRPC_CORE_OP_CALL_UNARY` event would be (`tag` NULL;
/// the caller owns its outputs: `grpc_core_event_release(result)`).
///
/// Returns `GRPC_CORE_OK` whenever the call ran, whatever its status (see
/// `result->success` and `result->status`); an error code only for bad
/// arguments, with `*result` untouched. No queue: the call runs as one
/// task and hands its result straight to the waiting thread.
///
/// Threading: any number of threads may call it at once. It must not be
/// called from a thread of the library's runtime (a credentials callback,
/// for instance): that returns `GRPC_CORE_ERROR_WRONG_STATE`.
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_unary_blocking(
    channel: *mut grpc_core_channel,
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    result: *mut grpc_core_event,
) -> grpc_core_result {
    ffi_guard! {
        unary_blocking(channel, method, method_len, metadata, metadata_count, request, request_len, timeout_ms, flags,
            compression, std::ptr::null(), result)
    }
}

/// `grpc_core_channel_unary_blocking` with call credentials for this call
/// only: `creds` as in `grpc_core_channel_unary_ex` (borrowed, may be freed
/// at once; NULL: none; composed after the channel's; refused on plaintext
/// with UNAUTHENTICATED in `result->status` unless the channel allows it).
#[allow(clippy::too_many_arguments)]
#[no_mangle]
pub unsafe extern "C" fn grpc_core_channel_unary_blocking_ex(
    channel: *mut grpc_core_channel,
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    creds: *const grpc_core_call_credentials,
    result: *mut grpc_core_event,
) -> grpc_core_result {
    ffi_guard! {
        unary_blocking(channel, method, method_len, metadata, metadata_count, request, request_len, timeout_ms, flags,
            compression, creds, result)
    }
}

#[allow(clippy::too_many_arguments)]
unsafe fn unary_blocking(
    channel: *mut grpc_core_channel,
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    request: *const u8,
    request_len: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    creds: *const grpc_core_call_credentials,
    result: *mut grpc_core_event,
) -> FfiResult<()> {
    let ch = CHANNELS.get(channel)?;
    // SAFETY: forwarded from the export's caller (header contract).
    let a = unsafe {
        unary_args(
            method,
            method_len,
            metadata,
            metadata_count,
            request,
            request_len,
            timeout_ms,
            flags,
            compression,
            creds,
        )?
    };
    // SAFETY: as above.
    let out = unsafe { Out::new(result, "result")? };
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(FfiError::wrong_state(
            "grpc_core_channel_unary_blocking must not be called from a thread of the library's runtime",
        ));
    }
    let r = run_blocking(async move { ch.channel.unary(&a.method, a.request, a.opts).await });
    out.write(event_c(grpc_core_op::GRPC_CORE_OP_CALL_UNARY, 0, completion(r)));
    Ok(())
}
