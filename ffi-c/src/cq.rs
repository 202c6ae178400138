//! The completion queue: every asynchronous operation takes a `void *tag`
//! and completes as exactly one event on the queue it was started with.
//! `grpc_core_cq_next` blocks for the next event; `grpc_core_cq_fd` is an
//! eventfd that is readable while events wait (or once the queue is shut
//! down and drained), so an event loop can poll it instead of blocking.

use std::collections::VecDeque;
use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use engine::surface::{Metadata, Status};

use crate::boundary::{
    ffi_guard, grpc_core_result, timeout_arg, FfiError, FfiResult, Out, GRPC_CORE_ERROR_IO, GRPC_CORE_OK,
    GRPC_CORE_TIMEOUT,
};
use crate::handle::{tag, Registry};
use crate::server::{ServerCallObj, SERVER_CALLS};
use crate::values::{MetadataObj, BUFFERS, METADATA, STATUSES};

/// A completion queue. Thread-safe: any thread may start operations that
/// complete on it and any thread may call `grpc_core_cq_next`.
#[derive(Debug)]
pub struct grpc_core_cq {
    _private: [u8; 0],
}

/// Which operation an event completes. Fixed numbers.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum grpc_core_op {
    /// `grpc_core_call_send_message`. `success`: the message was handed to
    /// the transport (0: the call is over; see its status).
    GRPC_CORE_OP_CALL_SEND_MESSAGE = 1,
    /// `grpc_core_call_half_close`. `success` as for a send.
    GRPC_CORE_OP_CALL_HALF_CLOSE = 2,
    /// `grpc_core_call_recv_initial_metadata`. `success` 1: `metadata` holds
    /// the response headers (empty for a trailers-only response). 0: the call
    /// failed before headers; `metadata` is NULL.
    GRPC_CORE_OP_CALL_RECV_INITIAL_METADATA = 3,
    /// `grpc_core_call_recv_message`. `message` non-NULL: the next response
    /// (`value` is 1 if it arrived compressed). `message` NULL: no more
    /// messages; `success` is 1 if the call ended OK, 0 if it failed (then
    /// receive the status to learn why).
    GRPC_CORE_OP_CALL_RECV_MESSAGE = 4,
    /// `grpc_core_call_recv_status`. Always `success` 1: `status` holds the
    /// final status and `metadata` the trailing metadata.
    GRPC_CORE_OP_CALL_RECV_STATUS = 5,
    /// `grpc_core_channel_unary` (and the event `grpc_core_channel_unary_blocking`
    /// fills): a whole unary call. Always has `status` (owned). `success` 1:
    /// the status is OK and `message` holds the response. 0: the call failed
    /// (`message` NULL; see `status`). `initial_metadata` holds the response
    /// headers (also for a call that failed after the server sent them) and
    /// `metadata` the trailers, each NULL when there were none.
    GRPC_CORE_OP_CALL_UNARY = 6,
    /// `grpc_core_server_request_call`. `success` 1: `call` is a new server
    /// call and `metadata` its request metadata. 0: the server shut down.
    GRPC_CORE_OP_SERVER_REQUEST_CALL = 10,
    /// `grpc_core_server_shutdown`: every connection is closed. `success` 1.
    GRPC_CORE_OP_SERVER_SHUTDOWN = 11,
    /// `grpc_core_server_call_recv_message`. `message` non-NULL: the next
    /// request (`value` 1 if it arrived compressed). NULL with `success` 1:
    /// the client half-closed. NULL with `success` 0: the call is over
    /// (cancelled, deadline, or finished here) or the request was invalid.
    GRPC_CORE_OP_SERVER_CALL_RECV_MESSAGE = 12,
    /// `grpc_core_server_call_send_initial_metadata`. `success` 0: the call is over.
    GRPC_CORE_OP_SERVER_CALL_SEND_INITIAL_METADATA = 13,
    /// `grpc_core_server_call_send_message`. `success` 0: the call is over.
    GRPC_CORE_OP_SERVER_CALL_SEND_MESSAGE = 14,
    /// `grpc_core_server_call_finish`. `success` 1: the status goes out;
    /// 0: the call was already over (cancelled by the client or its deadline).
    GRPC_CORE_OP_SERVER_CALL_FINISH = 15,
    /// `grpc_core_server_call_recv_close`: the call is over. `value` is 1
    /// if it was cancelled (client cancel, deadline, forced shutdown) rather
    /// than finished here.
    GRPC_CORE_OP_SERVER_CALL_RECV_CLOSE = 16,
    /// `grpc_core_channel_watch_state`. `success` 1: the state changed
    /// (`value` is the new `grpc_core_connectivity`); 0: the timeout passed.
    GRPC_CORE_OP_CHANNEL_WATCH_STATE = 20,
    /// `grpc_core_channel_ready`. `success` 1: the channel is READY; 0: it
    /// was not ready within the timeout or it is shut down. `value` is the
    /// state at completion.
    GRPC_CORE_OP_CHANNEL_READY = 21,
    /// `grpc_core_cq_post`: a user event; `value` is the posted value.
    GRPC_CORE_OP_USER = 30,
}

/// One completed operation, filled by `grpc_core_cq_next`.
///
/// Ownership: `message`, `metadata`, `status`, `call` and
/// `initial_metadata` are owned by the caller when non-NULL; free each with its `_free` function, or all at once
/// with `grpc_core_event_release`. `message_data`/`message_len` are borrowed
/// from `message` (valid until it is freed). `tag` is the caller's own pointer,
/// returned as given.
#[repr(C)]
#[derive(Debug)]
pub struct grpc_core_event {
    /// The operation that completed.
    pub op: grpc_core_op,
    /// The tag the operation was started with.
    pub tag: *mut c_void,
    /// 1 if the operation did what it was asked, 0 if not (see `grpc_core_op`).
    pub success: i32,
    /// An operation-specific value (see `grpc_core_op`), else 0.
    pub value: i32,
    /// A received message (owned), or NULL.
    pub message: *mut grpc_core_buffer,
    /// The bytes of `message` (borrowed from it), or NULL.
    pub message_data: *const u8,
    /// The length of `message`, or 0.
    pub message_len: usize,
    /// Received metadata (owned), or NULL.
    pub metadata: *mut grpc_core_metadata,
    /// A final status (owned), or NULL.
    pub status: *mut grpc_core_status,
    /// A new server call (owned), or NULL.
    pub call: *mut grpc_core_server_call,
    /// Response headers (owned) of a `GRPC_CORE_OP_CALL_UNARY`, else NULL.
    pub initial_metadata: *mut grpc_core_metadata,
}

use crate::server::grpc_core_server_call;
use crate::values::{grpc_core_buffer, grpc_core_metadata, grpc_core_status};

/// A completion before it is handed to C: Rust values, registered as
/// handles only when delivered (so discarded events free everything).
#[derive(Default)]
pub(crate) struct Completion {
    pub(crate) success: bool,
    pub(crate) value: i32,
    pub(crate) message: Option<Bytes>,
    pub(crate) metadata: Option<Metadata>,
    pub(crate) status: Option<Status>,
    pub(crate) call: Option<Arc<ServerCallObj>>,
    pub(crate) initial_metadata: Option<Metadata>,
}

impl Completion {
    pub(crate) fn ok() -> Completion {
        Completion { success: true, ..Default::default() }
    }
    pub(crate) fn failed() -> Completion {
        Completion::default()
    }
    pub(crate) fn with_value(mut self, v: i32) -> Completion {
        self.value = v;
        self
    }
}

struct Event {
    op: grpc_core_op,
    tag: usize,
    c: Completion,
}

struct State {
    events: VecDeque<Event>,
    /// Operations started and not yet completed.
    pending: usize,
    shutdown: bool,
    freed: bool,
    /// Whether the queue is "readable" (events wait, or shut down and drained).
    fd_readable: bool,
    /// Whether `grpc_core_cq_fd` was ever asked for: until then the eventfd
    /// is not written or read, which saves two system calls per event for
    /// programs that only use `grpc_core_cq_next`.
    fd_armed: bool,
}

pub(crate) struct Cq {
    state: Mutex<State>,
    cv: Condvar,
    fd: OwnedFd,
}

pub(crate) static CQS: Registry<Cq, grpc_core_cq> = Registry::new(tag::CQ, "cq");

impl Cq {
    fn new() -> FfiResult<Cq> {
        // SAFETY: eventfd has no memory arguments; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(FfiError::new(GRPC_CORE_ERROR_IO, format!("eventfd: {}", std::io::Error::last_os_error())));
        }
        // SAFETY: `fd` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Cq {
            state: Mutex::new(State {
                events: VecDeque::new(),
                pending: 0,
                shutdown: false,
                freed: false,
                fd_readable: false,
                fd_armed: false,
            }),
            cv: Condvar::new(),
            fd,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_readable(&self, st: &mut State, readable: bool) {
        if st.fd_readable == readable {
            return;
        }
        st.fd_readable = readable;
        if !st.fd_armed {
            return;
        }
        self.write_fd(readable);
    }

    fn write_fd(&self, readable: bool) {
        let fd = self.fd.as_raw_fd();
        if readable {
            let one: u64 = 1;
            // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
            let _ = unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
        } else {
            let mut v: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our own (non-blocking) eventfd.
            let _ = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
        }
    }

    /// Starts an operation that will complete on this queue: fails (and
    /// counts nothing) once the queue is shut down.
    pub(crate) fn begin(self: &Arc<Self>, op: grpc_core_op, tag: *mut c_void) -> FfiResult<Op> {
        let mut st = self.lock();
        if st.shutdown {
            return Err(FfiError::shutdown("the completion queue is shut down"));
        }
        st.pending += 1;
        Ok(Op { cq: Some(self.clone()), op, tag: tag as usize })
    }

    /// Checks that an operation could start now (for callers that must
    /// validate everything before changing anything).
    pub(crate) fn check_open(&self) -> FfiResult<()> {
        if self.lock().shutdown {
            return Err(FfiError::shutdown("the completion queue is shut down"));
        }
        Ok(())
    }

    fn push(&self, ev: Event) {
        let mut st = self.lock();
        st.pending = st.pending.saturating_sub(1);
        if st.freed {
            return; // dropped (with its outputs) after the lock is released
        }
        st.events.push_back(ev);
        self.set_readable(&mut st, true);
        drop(st);
        self.cv.notify_one();
    }

    /// Starts keeping the eventfd in step with the queue (on first `grpc_core_cq_fd`).
    fn arm_fd(&self) -> i32 {
        let mut st = self.lock();
        if !st.fd_armed {
            st.fd_armed = true;
            if st.fd_readable {
                self.write_fd(true);
            }
        }
        self.fd.as_raw_fd()
    }

    fn next(&self, timeout: Option<Duration>) -> FfiResult<Option<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut st = self.lock();
        loop {
            if st.freed {
                return Err(FfiError::shutdown("the completion queue was freed"));
            }
            if let Some(ev) = st.events.pop_front() {
                let drained = st.shutdown && st.pending == 0;
                if st.events.is_empty() && !drained {
                    self.set_readable(&mut st, false);
                }
                return Ok(Some(ev));
            }
            if st.shutdown && st.pending == 0 {
                return Err(FfiError::shutdown("the completion queue is shut down and drained"));
            }
            match deadline {
                None => st = self.cv.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(d) => {
                    let now = Instant::now();
                    if now >= d {
                        return Ok(None);
                    }
                    st = self.cv.wait_timeout(st, d - now).unwrap_or_else(|e| e.into_inner()).0;
                }
            }
        }
    }

    fn shutdown(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        if st.pending == 0 {
            self.set_readable(&mut st, true);
        }
        drop(st);
        self.cv.notify_all();
    }

    fn free(&self) {
        let mut st = self.lock();
        st.shutdown = true;
        st.freed = true;
        let events = std::mem::take(&mut st.events);
        drop(st);
        self.cv.notify_all();
        drop(events);
    }
}

/// A started operation. Completing it pushes its event; dropping it
/// uncompleted (e.g. a task cut short) pushes a failed event, so every
/// accepted operation yields exactly one event.
pub(crate) struct Op {
    cq: Option<Arc<Cq>>,
    op: grpc_core_op,
    tag: usize,
}

impl Op {
    pub(crate) fn complete(mut self, c: Completion) {
        if let Some(cq) = self.cq.take() {
            cq.push(Event { op: self.op, tag: self.tag, c });
        }
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        if let Some(cq) = self.cq.take() {
            cq.push(Event { op: self.op, tag: self.tag, c: Completion::failed() });
        }
    }
}

impl Event {
    /// Registers the outputs as handles and fills the C event.
    fn into_c(self) -> grpc_core_event {
        let Event { op, tag, c } = self;
        event_c(op, tag, c)
    }
}

/// A completion as a C event, its outputs registered as handles (also used
/// by the blocking unary call, which fills an event without a queue).
pub(crate) fn event_c(op: grpc_core_op, tag: usize, c: Completion) -> grpc_core_event {
    let mut ev = grpc_core_event {
        op,
        tag: tag as *mut c_void,
        success: i32::from(c.success),
        value: c.value,
        message: std::ptr::null_mut(),
        message_data: std::ptr::null(),
        message_len: 0,
        metadata: std::ptr::null_mut(),
        status: std::ptr::null_mut(),
        call: std::ptr::null_mut(),
        initial_metadata: std::ptr::null_mut(),
    };
    if let Some(md) = c.initial_metadata {
        ev.initial_metadata = METADATA.insert(Arc::new(MetadataObj::new(&md)));
    }
    if let Some(m) = c.message {
        let m = Arc::new(m);
        ev.message_data = m.as_ptr();
        ev.message_len = m.len();
        ev.message = BUFFERS.insert(m);
    }
    if let Some(md) = c.metadata {
        ev.metadata = METADATA.insert(Arc::new(MetadataObj::new(&md)));
    }
    if let Some(s) = c.status {
        ev.status = STATUSES.insert(Arc::new(s));
    }
    if let Some(call) = c.call {
        ev.call = SERVER_CALLS.insert(call);
    }
    ev
}

/// Creates a completion queue. On success `*cq` is a new queue owned by the
/// caller: free it with `grpc_core_cq_free`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_cq_new(cq: *mut *mut grpc_core_cq) -> grpc_core_result {
    ffi_guard! {
        let out = Out::new(cq, "cq")?;
        out.write(CQS.insert(Arc::new(Cq::new()?)));
        Ok(())
    }
}

/// Waits for the next event and writes it to `*event`.
///
/// `timeout_ms`: negative waits forever, 0 polls. Returns `GRPC_CORE_OK`
/// with an event, `GRPC_CORE_TIMEOUT` if none came in time, or
/// `GRPC_CORE_ERROR_SHUTDOWN` once the queue is shut down and every
/// operation started on it has been delivered (or if it was freed).
/// `*event` is written only on `GRPC_CORE_OK`.
///
/// Threading: any number of threads may wait on one queue; each event goes
/// to exactly one of them.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_cq_next(
    cq: *mut grpc_core_cq,
    timeout_ms: i64,
    event: *mut grpc_core_event,
) -> grpc_core_result {
    ffi_guard! {
        let q = CQS.get(cq)?;
        let out = Out::new(event, "event")?;
        match q.next(timeout_arg(timeout_ms))? {
            Some(ev) => {
                out.write(ev.into_c());
                Ok(GRPC_CORE_OK)
            }
            None => Ok(GRPC_CORE_TIMEOUT),
        }
    }
}

/// Writes to `*fd` a file descriptor (an eventfd) that is readable while
/// events wait on the queue, and stays readable once the queue is shut down
/// and drained. Borrowed: owned by the queue, closed by `grpc_core_cq_free`;
/// do not read, write or close it. Poll it with epoll/poll/libuv/asyncio,
/// then call `grpc_core_cq_next(cq, 0, ...)` until `GRPC_CORE_TIMEOUT`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_cq_fd(cq: *mut grpc_core_cq, fd: *mut i32) -> grpc_core_result {
    ffi_guard! {
        let q = CQS.get(cq)?;
        let out = Out::new(fd, "fd")?;
        out.write(q.arm_fd());
        Ok(())
    }
}

/// Posts a user event (`GRPC_CORE_OP_USER`, `success` 1, `value`) with
/// `tag`: wakes a thread blocked in `grpc_core_cq_next` from any thread.
/// `GRPC_CORE_ERROR_SHUTDOWN` after `grpc_core_cq_shutdown`.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_cq_post(cq: *mut grpc_core_cq, tag: *mut c_void, value: i32) -> grpc_core_result {
    ffi_guard! {
        let q = CQS.get(cq)?;
        q.begin(grpc_core_op::GRPC_CORE_OP_USER, tag)?.complete(Completion::ok().with_value(value));
        Ok(())
    }
}

/// Shuts the queue down: new operations naming it fail with
/// `GRPC_CORE_ERROR_SHUTDOWN`; operations already started still deliver
/// their events; then `grpc_core_cq_next` returns `GRPC_CORE_ERROR_SHUTDOWN`.
/// Idempotent.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_cq_shutdown(cq: *mut grpc_core_cq) -> grpc_core_result {
    ffi_guard! {
        CQS.get(cq)?.shutdown();
        Ok(())
    }
}

/// Frees a queue. Shut it down and drain it first to receive every event;
/// events not yet delivered are discarded (their outputs freed) and later
/// completions of operations started on it are dropped, so their tags are
/// never reported. Freeing twice is detected.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_cq_free(cq: *mut grpc_core_cq) -> grpc_core_result {
    ffi_guard! {
        CQS.remove(cq)?.free();
        Ok(())
    }
}

/// Frees every owned output of `event` (`message`, `metadata`, `status`,
/// `call`, `initial_metadata`) that is non-NULL and sets those fields to NULL. Take ownership
/// of an output first by copying its pointer and NULLing the field.
#[no_mangle]
pub unsafe extern "C" fn grpc_core_event_release(event: *mut grpc_core_event) -> grpc_core_result {
    ffi_guard! {
        if event.is_null() {
            return Err(FfiError::null("event"));
        }
        // SAFETY: non-NULL; the caller passes an event it owns (header contract).
        let ev = unsafe { &mut *event };
        let mut first_err: FfiResult<()> = Ok(());
        let mut note = |r: FfiResult<()>| {
            if first_err.is_ok() {
                first_err = r;
            }
        };
        if !ev.message.is_null() {
            note(BUFFERS.remove(ev.message).map(drop));
            ev.message = std::ptr::null_mut();
            ev.message_data = std::ptr::null();
            ev.message_len = 0;
        }
        if !ev.metadata.is_null() {
            note(METADATA.remove(ev.metadata).map(drop));
            ev.metadata = std::ptr::null_mut();
        }
        if !ev.status.is_null() {
            note(STATUSES.remove(ev.status).map(drop));
            ev.status = std::ptr::null_mut();
        }
        if !ev.initial_metadata.is_null() {
            note(METADATA.remove(ev.initial_metadata).map(drop));
            ev.initial_metadata = std::ptr::null_mut();
        }
        if !ev.call.is_null() {
            note(SERVER_CALLS.remove(ev.call).map(|c| c.release()));
            ev.call = std::ptr::null_mut();
        }
        first_err
    }
}
