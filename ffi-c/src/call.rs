//! Client calls: one object for all four kinds. The call starts on
//! `grpc_core_call_new`; each operation then completes as one event. At
//! most one send-side operation (send message, half-close) and one
//! receive-side operation (initial metadata, message, status) are in
//! flight at a time, so their order is the order they were issued.

use std::ffi::{c_char, c_void};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use engine::surface::{CallHandle, CallOptions, CallReceiver, CallSender, Status};
use tokio::sync::{watch, Notify};

use crate::boundary::{bytes_arg, ffi_guard, grpc_core_result, str_arg, timeout_arg, FfiError, FfiResult, Out};
use crate::channel::{call_compression_arg, grpc_core_channel, CHANNELS};
use crate::cq::{grpc_core_cq, grpc_core_op, Completion, Cq, Op, CQS};
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

/// Send flag: this is the last message; half-close in the same frame.
pub const GRPC_CORE_SEND_LAST: u32 = 1;
/// Send flag: send this message uncompressed even if the call compresses.
pub const GRPC_CORE_SEND_NO_COMPRESS: u32 = 2;

enum Started {
    Running { sender: Box<tokio::sync::Mutex<CallSender>>, receiver: Box<tokio::sync::Mutex<CallReceiver>> },
    Failed(Status),
}

#[derive(Default)]
struct State {
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

impl ClientCallObj {
    fn cancel(&self) {
        let mut st = lock(&self.state);
        st.cancelled = true;
        match &st.handle {
            Some(h) => h.cancel(),
            None => self.cancel.notify_one(),
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
        Ok(started)
    }
}

/// Starts a call of any kind on `channel`.
///
/// - `method`, `method_len`: the full path `/package.Service/Method` (borrowed).
/// - `metadata`, `metadata_count`: request metadata (borrowed, copied; may be NULL if 0).
/// - `timeout_ms`: the deadline relative to now, sent as `grpc-timeout`;
///   negative for none. When it passes the call ends with DEADLINE_EXCEEDED.
/// - `flags`: `GRPC_CORE_CALL_WAIT_FOR_READY` or 0.
/// - `compression`: a `grpc_core_compression` for request messages
///   (DEFAULT: the channel's default).
/// - `cq`: where every operation of this call completes (borrowed; must
///   stay alive while operations are in flight).
///
/// The call starts at once (connecting if needed). A failure to start (no
/// connection, deadline) is reported by the operations: sends complete with
/// `success` 0, and `grpc_core_call_recv_status` gives the status. On
/// success `*call` is owned by the caller: free it with `grpc_core_call_free`.
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
        if flags & !GRPC_CORE_CALL_WAIT_FOR_READY != 0 {
            return Err(FfiError::invalid(format!("unknown call flags 0x{flags:x}")));
        }
        let compression = call_compression_arg(compression)?;
        let q = CQS.get(cq)?;
        q.check_open()?;
        let out = Out::new(call, "call")?;

        let opts = CallOptions {
            timeout: timeout_arg(timeout_ms),
            deadline: None,
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
        let channel = ch.channel.clone();
        let state = obj.state.clone();
        let cancel = obj.cancel.clone();
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
        out.write(CALLS.insert(Arc::new(obj)));
        Ok(())
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
