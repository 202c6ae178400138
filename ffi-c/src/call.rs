//! Client calls: one object for all four kinds. The call starts on
//! `grpc_core_call_new`; each operation then completes as one event. At
//! most one send-side operation (send message, half-close) and one
//! receive-side operation (initial metadata, message, status) are in
//! flight at a time, so their order is the order they were issued.
//!
//! A call made with `GRPC_CORE_CALL_DEFER_START` waits for its first
//! operation instead (gRPC core's calls start with their first batch); until
//! then `grpc_core_call_set_credentials` can give it its own call
//! credentials, which the engine applies after the channel's.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use engine::surface::{CallCredentials, CallHandle, CallOptions, CallReceiver, CallSender, Channel, Status};
use tokio::sync::{watch, Notify};

use crate::boundary::{bytes_arg, ffi_guard, grpc_core_result, str_arg, timeout_arg, FfiError, FfiResult, Out};
use crate::channel::{call_compression_arg, grpc_core_channel, CHANNELS};
use crate::cq::{grpc_core_cq, grpc_core_op, Completion, Cq, Op, CQS};
use crate::credentials::{grpc_core_call_credentials, CREDENTIALS};
use crate::handle::{tag, Registry};
use crate::values::{grpc_core_metadata_entry, metadata_arg};

/// A client call. Thread-safe: operations may be started from any thread
/// (one send-side and one receive-side operation in flight at a time), and
/// `grpc_core_call_cancel` may be called from any thread at any time.
#[derive(Debug)]
pub struct grpc_core_call {
    _private: [u8; 0],
}

/// `grpc_core_call_new` flag: queue the call while the channel is not ready
/// (connecting or in transient failure) instead of failing fast with UNAVAILABLE.
pub const GRPC_CORE_CALL_WAIT_FOR_READY: u32 = 1;

/// `grpc_core_call_new` flag: do not start the call yet; it starts with its
/// first operation (send, half-close or any receive), as a gRPC core call
/// starts with its first batch. Until then the call can be configured
/// (`grpc_core_call_set_credentials`). The deadline still counts from
/// `grpc_core_call_new`.
pub const GRPC_CORE_CALL_DEFER_START: u32 = 2;

/// Send flag: this is the last message; half-close in the same frame.
pub const GRPC_CORE_SEND_LAST: u32 = 1;
/// Send flag: send this message uncompressed even if the call compresses.
pub const GRPC_CORE_SEND_NO_COMPRESS: u32 = 2;

enum Started {
    Running { sender: Box<tokio::sync::Mutex<CallSender>>, receiver: Box<tokio::sync::Mutex<CallReceiver>> },
    Failed(Status),
}

/// A deferred call not started yet: what its start needs.
struct Pending {
    channel: Channel,
    method: String,
    opts: CallOptions,
    tx: watch::Sender<Option<Arc<Started>>>,
}

#[derive(Default)]
struct State {
    /// Set while a `GRPC_CORE_CALL_DEFER_START` call has not started.
    pending: Option<Box<Pending>>,
    send_busy: bool,
    send_closed: bool,
    recv_busy: bool,
    initial_md_requested: bool,
    status_requested: bool,
    cancelled: bool,
    handle: Option<CallHandle>,
}

pub(crate) struct ClientCallObj {
    cq: Arc<Cq>,
    state: Arc<Mutex<State>>,
    started: watch::Receiver<Option<Arc<Started>>>,
    cancel: Arc<Notify>,
}

pub(crate) static CALLS: Registry<ClientCallObj, grpc_core_call> = Registry::new(tag::CALL, "call");

fn lock(s: &Mutex<State>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// Spawns the task that starts the call and publishes how that went.
fn start(p: Pending, state: Arc<Mutex<State>>, cancel: Arc<Notify>) {
    let Pending { channel, method, opts, tx } = p;
    engine::surface::spawn(async move {
        let r = tokio::select! {
            r = channel.call(&method, opts) => r,
            _ = cancel.notified() => Err(Status::cancelled("call cancelled by the client")),
        };
        let started = match r {
            Ok(call) => {
                let h = call.handle();
                {
                    let mut st = lock(&state);
                    if st.cancelled {
                        h.cancel();
                    }
                    st.handle = Some(h);
                }
                let (s, r) = call.split();
                Started::Running {
                    sender: Box::new(tokio::sync::Mutex::new(s)),
                    receiver: Box::new(tokio::sync::Mutex::new(r)),
                }
            }
            Err(st) => Started::Failed(st),
        };
        let _ = tx.send(Some(Arc::new(started)));
    });
}

impl ClientCallObj {
    fn cancel(&self) {
        let mut st = lock(&self.state);
        st.cancelled = true;
        if let Some(p) = st.pending.take() {
            // Never started: it ends here, and its operations see CANCELLED.
            let _ = p.tx.send(Some(Arc::new(Started::Failed(Status::cancelled("call cancelled by the client")))));
            return;
        }
        match &st.handle {
            Some(h) => h.cancel(),
            None => self.cancel.notify_one(),
        }
    }

    /// Starts a deferred call on its first operation (the state locked).
    fn start_if_pending(&self, st: &mut State) {
        if let Some(p) = st.pending.take() {
            start(*p, self.state.clone(), self.cancel.clone());
        }
    }

    /// Waits for the call to have started (or failed to).
    async fn started(mut rx: watch::Receiver<Option<Arc<Started>>>) -> Arc<Started> {
        loop {
            if let Some(s) = rx.borrow_and_update().clone() {
                return s;
            }
            if rx.changed().await.is_err() {
                return Arc::new(Started::Failed(Status::internal("the call's start task ended")));
            }
        }
    }

    /// Starts a send-side operation (checks, then marks busy).
    fn begin_send(&self, op: grpc_core_op, tag: *mut c_void, closes: bool) -> FfiResult<Op> {
        let mut st = lock(&self.state);
        if st.send_closed {
            return Err(FfiError::wrong_state("the send side is already closed (last message sent or half-closed)"));
        }
        if st.send_busy {
            return Err(FfiError::busy("a send-side operation is already in flight on this call"));
        }
        let op = self.cq.begin(op, tag)?;
        st.send_busy = true;
        st.send_closed |= closes;
        self.start_if_pending(&mut st);
        Ok(op)
    }

    fn begin_recv(&self, op: grpc_core_op, tag: *mut c_void) -> FfiResult<Op> {
        let mut st = lock(&self.state);
        if st.status_requested {
            return Err(FfiError::wrong_state("the status was already requested; nothing follows it"));
        }
        if op == grpc_core_op::GRPC_CORE_OP_CALL_RECV_INITIAL_METADATA && st.initial_md_requested {
            return Err(FfiError::wrong_state("initial metadata was already requested"));
        }
        if st.recv_busy {
            return Err(FfiError::busy("a receive-side operation is already in flight on this call"));
        }
        let started = self.cq.begin(op, tag)?;
        st.recv_busy = true;
        match op {
            grpc_core_op::GRPC_CORE_OP_CALL_RECV_INITIAL_METADATA => st.initial_md_requested = true,
            grpc_core_op::GRPC_CORE_OP_CALL_RECV_STATUS => st.status_requested = true,
            _ => {}
        }
        self.start_if_pending(&mut st);
        Ok(started)
    }
}

/// Starts a call of any kind on `channel`.
///
/// - `method`, `method_len`: the full path `/package.Service/Method` (borrowed).
/// - `metadata`, `metadata_count`: request metadata (borrowed, copied; may be NULL if 0).
/// - `timeout_ms`: the deadline relative to now, sent as `grpc-timeout`;
///   negative for none. When it passes the call ends with DEADLINE_EXCEEDED.
/// - `flags`: `GRPC_CORE_CALL_WAIT_FOR_READY` and/or
///   `GRPC_CORE_CALL_DEFER_START`, or 0.
/// - `compression`: a `grpc_core_compression` for request messages
///   (DEFAULT: the channel's default).
/// - `cq`: where every operation of this call completes (borrowed; must
///   stay alive while operations are in flight).
///
/// The call starts at once (connecting if needed), or with
/// `GRPC_CORE_CALL_DEFER_START` at its first operation. A failure to start
/// (no connection, deadline, call credentials refused or failing) is
/// reported by the operations: sends complete with `success` 0, and
/// `grpc_core_call_recv_status` gives the status. On success `*call` is
/// owned by the caller: free it with `grpc_core_call_free`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_new(
    channel: *mut grpc_core_channel,
    method: *const c_char,
    method_len: usize,
    metadata: *const grpc_core_metadata_entry,
    metadata_count: usize,
    timeout_ms: i64,
    flags: u32,
    compression: i32,
    cq: *mut grpc_core_cq,
    call: *mut *mut grpc_core_call,
) -> grpc_core_result {
    ffi_guard! {
        let ch = CHANNELS.get(channel)?;
        if method.is_null() {
            return Err(FfiError::null("method"));
        }
        let method = str_arg(method, method_len, "method")?.to_string();
        if !method.starts_with('/') {
            return Err(FfiError::invalid(format!("method {method:?} must look like /package.Service/Method")));
        }
        let md = metadata_arg(metadata, metadata_count)?;
        if flags & !(GRPC_CORE_CALL_WAIT_FOR_READY | GRPC_CORE_CALL_DEFER_START) != 0 {
            return Err(FfiError::invalid(format!("unknown call flags 0x{flags:x}")));
        }
        let deferred = flags & GRPC_CORE_CALL_DEFER_START != 0;
        let compression = call_compression_arg(compression)?;
        let q = CQS.get(cq)?;
        q.check_open()?;
        let out = Out::new(call, "call")?;

        let mut timeout = timeout_arg(timeout_ms);
        let mut deadline = None;
        if deferred {
            // The deadline counts from now, not from the first operation.
            if let Some(d) = timeout.and_then(|t| std::time::Instant::now().checked_add(t)) {
                (timeout, deadline) = (None, Some(d));
            }
        }
        let opts = CallOptions {
            timeout,
            deadline,
            metadata: md,
            compression,
            wait_for_ready: flags & GRPC_CORE_CALL_WAIT_FOR_READY != 0,
            ..Default::default()
        };
        let (tx, rx) = watch::channel(None);
        let obj = ClientCallObj {
            cq: q,
            state: Arc::new(Mutex::new(State::default())),
            started: rx,
            cancel: Arc::new(Notify::new()),
        };
        let p = Pending { channel: ch.channel.clone(), method, opts, tx };
        if deferred {
            lock(&obj.state).pending = Some(Box::new(p));
        } else {
            start(p, obj.state.clone(), obj.cancel.clone());
        }
        out.write(CALLS.insert(Arc::new(obj)));
        Ok(())
    }
}

/// Sets call credentials for this call only, mirroring gRPC core's
/// `grpc_call_set_credentials`: the call must have been made with
/// `GRPC_CORE_CALL_DEFER_START` and not have started yet (no operation
/// issued, not cancelled); otherwise `GRPC_CORE_ERROR_WRONG_STATE` and
/// nothing changes.
///
/// `creds` is borrowed: the call keeps its own reference, so the caller may
/// free the handle right after. NULL clears credentials set earlier; a
/// second call replaces the first's (as in gRPC core).
///
/// They compose with the channel's call credentials
/// (`grpc_core_channel_options_set_call_credentials`) as gRPC core and
/// grpc-go do: the channel's metadata first, then this call's, all sent.
/// Like the channel's, they are refused on a plaintext channel (the call
/// ends with UNAUTHENTICATED before anything is sent) unless the channel
/// allows it (`grpc_core_channel_options_set_allow_insecure_call_credentials`).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_set_credentials(
    call: *mut grpc_core_call,
    creds: *const grpc_core_call_credentials,
) -> grpc_core_result {
    ffi_guard! {
        let c = CALLS.get(call)?;
        let creds: Option<CallCredentials> =
            if creds.is_null() { None } else { Some(CallCredentials::clone(&*CREDENTIALS.get(creds)?)) };
        let mut st = lock(&c.state);
        let cancelled = st.cancelled;
        match st.pending.as_mut() {
            Some(p) => {
                p.opts.credentials = creds;
                Ok(())
            }
            None if cancelled => Err(FfiError::wrong_state("the call was cancelled")),
            None => Err(FfiError::wrong_state(
                "the call has started: credentials can only be set on a call made with GRPC_CORE_CALL_DEFER_START, \
                 before its first operation",
            )),
        }
    }
}

/// Sends one request message (`len` bytes at `data`, borrowed, copied
/// before return) and completes `tag` (`GRPC_CORE_OP_CALL_SEND_MESSAGE`).
/// `flags`: `GRPC_CORE_SEND_LAST` (half-close with it) and/or
/// `GRPC_CORE_SEND_NO_COMPRESS`. WRONG_STATE after the send side closed;
/// BUSY while another send-side operation is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_send_message(
    call: *mut grpc_core_call,
    data: *const u8,
    len: usize,
    flags: u32,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = CALLS.get(call)?;
        let msg = Bytes::copy_from_slice(bytes_arg(data, len, "data")?);
        if flags & !(GRPC_CORE_SEND_LAST | GRPC_CORE_SEND_NO_COMPRESS) != 0 {
            return Err(FfiError::invalid(format!("unknown send flags 0x{flags:x}")));
        }
        let last = flags & GRPC_CORE_SEND_LAST != 0;
        let compress = flags & GRPC_CORE_SEND_NO_COMPRESS == 0;
        let op = c.begin_send(grpc_core_op::GRPC_CORE_OP_CALL_SEND_MESSAGE, tag, last)?;
        let (rx, state) = (c.started.clone(), c.state.clone());
        engine::surface::spawn(async move {
            let ok = match &*ClientCallObj::started(rx).await {
                Started::Running { sender, .. } => sender.lock().await.send_with(msg, compress, last).await.is_ok(),
                Started::Failed(_) => false,
            };
            lock(&state).send_busy = false;
            op.complete(if ok { Completion::ok() } else { Completion::failed() });
        });
        Ok(())
    }
}

/// Half-closes the call (no more request messages) and completes `tag`
/// (`GRPC_CORE_OP_CALL_HALF_CLOSE`). WRONG_STATE if already closed; BUSY
/// while another send-side operation is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_half_close(call: *mut grpc_core_call, tag: *mut c_void) -> grpc_core_result {
    ffi_guard! {
        let c = CALLS.get(call)?;
        let op = c.begin_send(grpc_core_op::GRPC_CORE_OP_CALL_HALF_CLOSE, tag, true)?;
        let (rx, state) = (c.started.clone(), c.state.clone());
        engine::surface::spawn(async move {
            let ok = match &*ClientCallObj::started(rx).await {
                Started::Running { sender, .. } => sender.lock().await.close_send().await.is_ok(),
                Started::Failed(_) => false,
            };
            lock(&state).send_busy = false;
            op.complete(if ok { Completion::ok() } else { Completion::failed() });
        });
        Ok(())
    }
}

/// Receives the response headers and completes `tag`
/// (`GRPC_CORE_OP_CALL_RECV_INITIAL_METADATA`; `metadata` owned by the
/// caller). At most once per call, before the status is requested; BUSY
/// while another receive-side operation is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_recv_initial_metadata(
    call: *mut grpc_core_call,
    tag: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {
        let c = CALLS.get(call)?;
        let op = c.begin_recv(grpc_core_op::GRPC_CORE_OP_CALL_RECV_INITIAL_METADATA, tag)?;
        let (rx, state) = (c.started.clone(), c.state.clone());
        engine::surface::spawn(async move {
            let done = match &*ClientCallObj::started(rx).await {
                Started::Running { receiver, .. } => match receiver.lock().await.initial_metadata().await {
                    Ok(md) => Completion { metadata: Some(md), ..Completion::ok() },
                    Err(_) => Completion::failed(),
                },
                Started::Failed(_) => Completion::failed(),
            };
            lock(&state).recv_busy = false;
            op.complete(done);
        });
        Ok(())
    }
}

/// Receives the next response message and completes `tag`
/// (`GRPC_CORE_OP_CALL_RECV_MESSAGE`; `message` owned by the caller, NULL
/// at the end). WRONG_STATE after the status was requested; BUSY while
/// another receive-side operation is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_recv_message(call: *mut grpc_core_call, tag: *mut c_void) -> grpc_core_result {
    ffi_guard! {
        let c = CALLS.get(call)?;
        let op = c.begin_recv(grpc_core_op::GRPC_CORE_OP_CALL_RECV_MESSAGE, tag)?;
        let (rx, state) = (c.started.clone(), c.state.clone());
        engine::surface::spawn(async move {
            let done = match &*ClientCallObj::started(rx).await {
                Started::Running { receiver, .. } => match receiver.lock().await.recv_message().await {
                    Ok(Some(m)) => Completion {
                        message: Some(m.data),
                        value: i32::from(m.compressed),
                        ..Completion::ok()
                    },
                    Ok(None) => Completion::ok(),
                    Err(_) => Completion::failed(),
                },
                Started::Failed(_) => Completion::failed(),
            };
            lock(&state).recv_busy = false;
            op.complete(done);
        });
        Ok(())
    }
}

/// Receives the final status and completes `tag`
/// (`GRPC_CORE_OP_CALL_RECV_STATUS`; `status` and `metadata` (the
/// trailers) owned by the caller). Response messages not yet received are
/// read and dropped. Once per call; BUSY while another receive-side
/// operation is in flight.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_recv_status(call: *mut grpc_core_call, tag: *mut c_void) -> grpc_core_result {
    ffi_guard! {
        let c = CALLS.get(call)?;
        let op = c.begin_recv(grpc_core_op::GRPC_CORE_OP_CALL_RECV_STATUS, tag)?;
        let (rx, state) = (c.started.clone(), c.state.clone());
        engine::surface::spawn(async move {
            let status = match &*ClientCallObj::started(rx).await {
                Started::Running { receiver, .. } => receiver.lock().await.finish().await,
                Started::Failed(st) => st.clone(),
            };
            lock(&state).recv_busy = false;
            let trailers = status.metadata().clone();
            op.complete(Completion { status: Some(status), metadata: Some(trailers), ..Completion::ok() });
        });
        Ok(())
    }
}

/// Cancels the call: RST_STREAM(CANCEL) goes out, operations in flight and
/// later complete (sends and receives with `success` 0) and the status is
/// CANCELLED. No effect once the call has ended. Thread-safe: may be
/// called from any thread, concurrently with any operation.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_cancel(call: *mut grpc_core_call) -> grpc_core_result {
    ffi_guard! {
        CALLS.get(call)?.cancel();
        Ok(())
    }
}

/// Frees the call. A call that has not ended is cancelled; operations
/// still in flight complete on the call's queue (with `success` 0), so
/// their tags are always delivered. Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_call_free(call: *mut grpc_core_call) -> grpc_core_result {
    ffi_guard! {
        CALLS.remove(call)?.cancel();
        Ok(())
    }
}
