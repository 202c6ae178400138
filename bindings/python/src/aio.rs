//! asyncio without a thread per call: each operation runs as a task on the
//! core's runtime and its result lands in a [`CompletionQueue`], one per
//! event loop. The queue's socket becomes readable when its first result of
//! a batch arrives (one byte per batch, as grpcio's aio poller does); the
//! loop's reader callback (`loop.add_reader(cq.fileno(), cq.drain)`) then
//! resolves every asyncio future that is ready in one pass, with the GIL
//! taken once. No Python thread waits on the engine. Results produced in a
//! turn of a loop-driven runtime on the loop's own thread (the aio server's,
//! `looprt`) skip the socket: the turn's caller resolves them right after
//! ([`Inline`]).
//!
//! The operations are free functions (`channel_unary(cq, fut, channel, ...)`)
//! rather than methods: a pyclass has one `#[pymethods]` block.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use pyo3::exceptions::PyRuntimeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use tokio::task::AbortHandle;

use super::auth::NativeCallCredentials;
use super::{
    call_options, md_from_py, md_to_py, status_err, status_tuple, CallQueue, CallerRt, NativeCall, NativeChannel,
    NativeServerCall, QueueInner,
};
use grpc_core::surface::{IncomingCall, Status};

/// Turns an operation's result into the Python value (or exception) its
/// future gets; runs in `drain`, with the GIL.
type Convert = Box<dyn FnOnce(Python<'_>) -> PyResult<Py<PyAny>> + Send>;

/// Who gets a result: an asyncio future (`set_result` / `set_exception`,
/// skipped if it is already done, e.g. cancelled) or a callback.
enum Target {
    Future(Py<PyAny>),
    Callback(Arc<Py<PyAny>>),
}

struct Item {
    target: Target,
    value: Convert,
}

/// Where an attached server queue delivers calls: a loop's queue and the
/// Python callback that takes each `NativeServerCall`.
pub(crate) type Sink = (Arc<CqInner>, Arc<Py<PyAny>>);

/// The results waiting for the loop, and the socket pair that wakes it.
pub(crate) struct CqInner {
    items: Mutex<Vec<Item>>,
    /// The CPU the loop thread last drained on (-1: unknown).
    loop_cpu: AtomicI32,
    tx: UnixStream,
    rx: UnixStream,
}

impl std::fmt::Debug for CqInner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CqInner").field("fd", &self.rx.as_raw_fd()).finish_non_exhaustive()
    }
}

/// A runtime turn on an asyncio loop's thread (`looprt`): the results
/// pushed to a completion queue from this thread meanwhile write no wake-up
/// byte; [`finish`](Self::finish) processes them right after the turn (and
/// a turn that unwinds writes the bytes after all).
pub(crate) struct Inline(());

thread_local! {
    static INLINE: std::cell::RefCell<Option<Vec<Arc<CqInner>>>> = const { std::cell::RefCell::new(None) };
}

impl Inline {
    pub(crate) fn begin() -> Inline {
        INLINE.with(|c| *c.borrow_mut() = Some(Vec::new()));
        Inline(())
    }

    /// Ends the turn's collection and resolves what it collected.
    pub(crate) fn finish(self, py: Python<'_>) -> usize {
        let cqs = INLINE.with(|c| c.borrow_mut().take()).unwrap_or_default();
        std::mem::forget(self);
        cqs.iter().map(|cq| cq.process(py)).sum()
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        for cq in INLINE.try_with(|c| c.borrow_mut().take()).ok().flatten().unwrap_or_default() {
            let _ = (&cq.tx).write(&[1]);
        }
    }
}

impl CqInner {
    fn push(self: &Arc<Self>, item: Item) {
        let first = {
            let mut g = self.items.lock().unwrap_or_else(|e| e.into_inner());
            g.push(item);
            g.len() == 1
        };
        // Only the first result of a batch writes: the loop reads the byte
        // before it takes the batch, so no result is ever left unannounced.
        // A push from a turn on the loop's thread is processed after the turn.
        let collected = first
            && INLINE
                .try_with(|c| match c.borrow_mut().as_mut() {
                    Some(v) => {
                        v.push(self.clone());
                        true
                    }
                    None => false,
                })
                .unwrap_or(false);
        if first && !collected {
            let _ = (&self.tx).write(&[1]);
            // The loop thread just woken waits for this CPU if it last ran
            // here: let it run now (see `yield_to`).
            super::yield_to(self.loop_cpu.load(Ordering::Relaxed));
        }
    }

    pub(crate) fn push_call(
        self: &Arc<Self>,
        callback: &Arc<Py<PyAny>>,
        call: IncomingCall,
        crt: Option<Arc<CallerRt>>,
    ) {
        self.push(Item {
            target: Target::Callback(callback.clone()),
            value: Box::new(move |py| Ok(Py::new(py, NativeServerCall::new(call, crt))?.into_any())),
        });
    }
}

/// The completion queue of one asyncio event loop, and (`loop_driven`) the
/// runtime the aio channels made in that loop share, driven by its turns
/// (`looprt`).
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug)]
pub(crate) struct CompletionQueue {
    inner: Arc<CqInner>,
    crt: Option<Arc<CallerRt>>,
    /// A weak reference to the loop's queue of ready callbacks (asyncio's
    /// `BaseEventLoop._ready` deque), when it has one: see [`submit`]. Weak:
    /// the deque's handles refer to the loop, and the loop's completion
    /// queue must not keep it alive (`_CQS` is keyed weakly by the loop).
    ready: Option<Py<PyAny>>,
}

impl CompletionQueue {
    /// The loop's runtime, if it has one.
    pub(crate) fn runtime(&self) -> Option<Arc<CallerRt>> {
        self.crt.clone()
    }

    /// Whether the loop has more callbacks to run before it looks at its
    /// descriptors again (false when that cannot be known).
    fn more_ready(&self, py: Python<'_>) -> bool {
        let Some(Ok(q)) = self.ready.as_ref().map(|r| r.bind(py).call0()) else { return false };
        !q.is_none() && q.len().is_ok_and(|n| n > 0)
    }
}

/// The loop is gone: its runtime stops (from a plain thread: this one may
/// hold the GIL, which a task there may wait for).
impl Drop for CompletionQueue {
    fn drop(&mut self) {
        if let Some(c) = self.crt.take() {
            c.shutdown_elsewhere();
        }
    }
}

#[pymethods]
impl CompletionQueue {
    /// `ready`: a weak reference to the loop's deque of ready callbacks
    /// (`loop._ready` of asyncio's own loops), or None.
    #[new]
    #[pyo3(signature = (loop_driven=false, ready=None))]
    fn new(loop_driven: bool, ready: Option<Py<PyAny>>) -> PyResult<Self> {
        let (tx, rx) = UnixStream::pair().map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        tx.set_nonblocking(true).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        rx.set_nonblocking(true).map_err(|e| PyRuntimeError::new_err(e.to_string()))?;
        let loop_cpu = AtomicI32::new(super::current_cpu());
        let crt = if loop_driven { Some(super::CallerRt::new("aio", true)?) } else { None };
        Ok(CompletionQueue { inner: Arc::new(CqInner { items: Mutex::new(Vec::new()), loop_cpu, tx, rx }), crt, ready })
    }

    /// The loop runtime's descriptor, for `loop.add_reader(fd, cq.drive)`;
    /// None: no loop runtime (or its descriptor was not found: its driver
    /// thread runs it alone).
    fn runtime_fd(&self) -> Option<i32> {
        super::looprt::raw(&self.crt.as_ref()?.epfd)
    }

    /// A turn of the loop runtime on the loop's thread (see `CallQueue.drive`).
    fn drive(&self, py: Python<'_>) -> usize {
        self.crt.as_ref().map_or(0, |c| c.drive_from_loop(py))
    }

    /// The descriptor that is readable while results wait.
    fn fileno(&self) -> i32 {
        self.inner.rx.as_raw_fd()
    }

    /// Resolves every future whose result is ready; returns how many.
    fn drain(&self, py: Python<'_>) -> usize {
        // One read: a batch writes one byte (see `push`), so a short read
        // emptied the socket; a byte left over only costs one empty drain.
        self.inner.loop_cpu.store(super::current_cpu(), Ordering::Relaxed);
        let mut buf = [0u8; 256];
        if matches!((&self.inner.rx).read(&mut buf), Ok(n) if n == buf.len()) {
            while matches!((&self.inner.rx).read(&mut buf), Ok(n) if n > 0) {}
        }
        self.inner.process(py)
    }
}

impl CqInner {
    /// Resolves every result waiting (with the GIL); returns how many.
    pub(crate) fn process(&self, py: Python<'_>) -> usize {
        let items = std::mem::take(&mut *self.items.lock().unwrap_or_else(|e| e.into_inner()));
        let n = items.len();
        for item in items {
            let value = (item.value)(py);
            let r = match item.target {
                Target::Future(fut) => {
                    let fut = fut.bind(py);
                    match fut.call_method0(intern!(py, "done")).and_then(|d| d.is_truthy()) {
                        Ok(false) => match value {
                            Ok(v) => fut.call_method1(intern!(py, "set_result"), (v,)).map(drop),
                            Err(e) => fut.call_method1(intern!(py, "set_exception"), (e.into_value(py),)).map(drop),
                        },
                        Ok(true) => Ok(()),
                        Err(e) => Err(e),
                    }
                }
                Target::Callback(cb) => value.and_then(|v| cb.bind(py).call1((v,)).map(drop)),
            };
            if let Err(e) = r {
                e.write_unraisable(py, None);
            }
        }
        n
    }
}

/// A running operation; `cancel()` drops it (a call it was making is reset).
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug)]
pub(crate) struct NativeOp {
    cancel: Arc<Cancel>,
}

#[pymethods]
impl NativeOp {
    fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// How an operation is cancelled: the abort handle of its task, once it
/// has one. An operation queued for the next turn has none yet: cancelled
/// then, its task is aborted as it is spawned (dropped before it runs).
#[derive(Debug, Default)]
pub(crate) struct Cancel(Mutex<(bool, Option<AbortHandle>)>);

impl Cancel {
    fn cancel(&self) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = true;
        if let Some(a) = &g.1 {
            a.abort();
        }
    }

    /// The operation's task (None: it ended in the turn that started it).
    fn started(&self, task: Option<AbortHandle>) {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let (true, Some(a)) = (g.0, &task) {
            a.abort();
        }
        g.1 = task;
    }
}

/// Operations started while their loop had more callbacks ready, waiting
/// for the runtime's next turn (see [`submit`]), with how each is cancelled.
#[derive(Clone, Default)]
pub(crate) struct Queued(Arc<Mutex<Vec<QueuedOp>>>);

/// An operation waiting for a turn, and how it is cancelled.
type QueuedOp = (super::Deferred, Arc<Cancel>);

impl std::fmt::Debug for Queued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queued").field("len", &self.lock().len()).finish()
    }
}

impl Queued {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<QueuedOp>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// How many queued operations wait for one turn before the one that made
/// them so many starts them at once: as many as the runtime has operations
/// in flight (the server has that much work while this batch waits),
/// within these bounds. A batch big enough to share one write and one
/// wake-up of the server, small enough that the server starts on it while
/// the loop starts the rest. Measured (aio client, unary calls in flight):
/// with no limit the whole pass went in one write and the two sides took
/// turns (32 in flight: 17-19 CPU-µs per call, 35-39k calls/s); a fixed 16:
/// 14-17 µs and 59-71k at 32, but at 8 in flight one batch per pass again
/// (24-29 µs, 22-28k); this rule: 14-15 µs and 66-71k at 32, 22-24 µs and
/// 42-45k at 8, the same as 16 at 64.
const QUEUED_MIN: usize = 4;
const QUEUED_MAX: usize = 16;

/// Queues `op` for `crt`'s next turn; returns how many wait. The first of
/// a batch spawns the task that starts them all: from inside the runtime,
/// so they go to its local queue in order, and the connection task they
/// wake runs after the last of them (one write for the batch). That task
/// dropped unrun (the runtime shut down) drops them too: their futures end
/// CANCELLED.
fn queue(crt: &CallerRt, op: super::Deferred, cancel: Arc<Cancel>) -> usize {
    let n = {
        let mut q = crt.queued.lock();
        q.push((op, cancel));
        q.len()
    };
    if n != 1 {
        return n;
    }
    struct Starter {
        queued: Queued,
        ran: bool,
    }
    impl Starter {
        fn take(&self) -> Vec<QueuedOp> {
            std::mem::take(&mut *self.queued.lock())
        }
    }
    impl Drop for Starter {
        fn drop(&mut self) {
            if !self.ran {
                drop(self.take());
            }
        }
    }
    let mut starter = Starter { queued: crt.queued.clone(), ran: false };
    drop(crt.handle.spawn(async move {
        starter.ran = true;
        for (op, cancel) in starter.take() {
            cancel.started(Some(tokio::spawn(op).abort_handle()));
        }
    }));
    n
}

/// Runs `op` as a task; its output, through `convert`, resolves `fut`. The
/// task runs on the engine's runtime, or on `crt` (a loop-driven runtime,
/// `looprt`): from its loop's thread a turn runs at once, so the operation
/// starts (a request written) before this returns; unless the loop has more
/// callbacks ready in this pass (other tasks, which may start operations
/// too): then the task is only queued ([`queue`]), and the next turn (the
/// one the last of them to start an operation runs, or the loop's own as it
/// looks at its descriptors next: the queued task made the runtime's
/// descriptor readable) starts them all, their requests written together.
/// Many calls started at once (a `gather`) so cost one turn and one write,
/// not one each; a lone call (nothing else ready) still starts at once. A
/// queued call starts after the rest of the loop's pass (its deadline, from
/// a timeout, counts from its start): the callbacks of that pass would hold
/// its response back as long anyway.
fn submit<F, T, C>(
    py: Python<'_>,
    crt: Option<&Arc<CallerRt>>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    op: F,
    convert: C,
) -> Arc<Cancel>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    // A task dropped unfinished (its runtime shut down with a loop-driven
    // channel's close, or the operation aborted) still resolves `fut`:
    // CANCELLED (skipped if `fut` is already done).
    struct Resolve {
        cq: Arc<CqInner>,
        fut: Option<Py<PyAny>>,
    }
    impl Drop for Resolve {
        fn drop(&mut self) {
            if let Some(fut) = self.fut.take() {
                let st = Status::cancelled("the call's runtime is gone");
                self.cq.push(Item { target: Target::Future(fut), value: Box::new(move |py| Err(status_err(py, &st))) });
            }
        }
    }
    let mut resolve = Resolve { cq: cq.inner.clone(), fut: Some(fut) };
    let crt = crt.filter(|c| c.epfd.is_some());
    /// Counts the operation in its runtime's `inflight` while its task lives.
    struct Flight(Option<Arc<std::sync::atomic::AtomicUsize>>);
    impl Drop for Flight {
        fn drop(&mut self) {
            if let Some(n) = &self.0 {
                n.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }
    let flight = Flight(crt.map(|c| {
        c.inflight.fetch_add(1, Ordering::Relaxed);
        c.inflight.clone()
    }));
    let task = async move {
        let _flight = flight;
        let v = op.await;
        if let Some(fut) = resolve.fut.take() {
            resolve.cq.push(Item { target: Target::Future(fut), value: Box::new(move |py| convert(py, v)) });
        }
    };
    let cancel = Arc::new(Cancel::default());
    // A runtime already shut down needs no check here: the starter task
    // spawned on it is dropped at once, and with it the queued operations.
    if let Some(c) = crt.filter(|c| c.on_loop()) {
        let more = cq.more_ready(py);
        if more || !c.queued.lock().is_empty() {
            let n = queue(c, Box::pin(task), cancel.clone());
            if !more || n >= c.inflight.load(Ordering::Relaxed).clamp(QUEUED_MIN, QUEUED_MAX) {
                // The last of a batch: a turn starts them all now.
                let _ = super::start_on(py, crt, Box::pin(async {}));
            }
            return cancel;
        }
    }
    // From the loop's thread: started in a turn right here (spawned from
    // inside it if it has to wait: no wake-up of the runtime).
    cancel.started(super::start_on(py, crt, Box::pin(task)));
    cancel
}

/// Like [`submit`], but polls `op` once here first, with the GIL: the
/// server-call and send operations are often ready at once (a request that
/// was read with the headers, a message that fits h2's send buffer), and
/// then `fut` is resolved before this returns: no task, no loop wake-up.
/// Only an operation that has to wait goes to the runtime.
fn submit_now<F, T, C>(
    py: Python<'_>,
    crt: Option<&Arc<CallerRt>>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    op: F,
    convert: C,
) -> PyResult<()>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
    C: FnOnce(Python<'_>, T) -> PyResult<Py<PyAny>> + Send + 'static,
{
    let crt = crt.filter(|c| c.epfd.is_some());
    let mut op = Box::pin(op);
    match super::poll_once(crt, op.as_mut()) {
        std::task::Poll::Ready(v) => {
            let f = fut.bind(py);
            match convert(py, v) {
                Ok(obj) => f.call_method1(intern!(py, "set_result"), (obj,))?,
                Err(e) => f.call_method1(intern!(py, "set_exception"), (e.into_value(py),))?,
            };
        }
        std::task::Poll::Pending => {
            submit(py, crt, cq, fut, op, convert);
        }
    }
    Ok(())
}

fn none(py: Python<'_>) -> Py<PyAny> {
    py.None()
}

fn unit_or_status(py: Python<'_>, r: Result<(), Status>) -> PyResult<Py<PyAny>> {
    r.map(|()| none(py)).map_err(|st| status_err(py, &st))
}

fn message_or_status(py: Python<'_>, r: Result<Option<Bytes>, Status>) -> PyResult<Py<PyAny>> {
    match r {
        Ok(Some(b)) => Ok(PyBytes::new(py, &b).into_any().unbind()),
        Ok(None) => Ok(none(py)),
        Err(st) => Err(status_err(py, &st)),
    }
}

/// A unary call: `(response, initial_metadata, trailing_metadata)` or `RpcStatus`.
#[pyfunction]
#[pyo3(signature = (cq, fut, channel, method, request, timeout=None, metadata=None, compression=None, wait_for_ready=false,
    credentials=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn channel_unary(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    channel: &NativeChannel,
    method: String,
    request: &[u8],
    timeout: Option<f64>,
    metadata: Option<&Bound<'_, PyAny>>,
    compression: Option<u8>,
    wait_for_ready: bool,
    credentials: Option<PyRef<'_, NativeCallCredentials>>,
) -> PyResult<NativeOp> {
    let o = call_options(timeout, metadata, compression, wait_for_ready, credentials)?;
    let req = Bytes::copy_from_slice(request);
    let ch = channel.ch.clone();
    let abort =
        submit(py, channel.crt.as_ref(), cq, fut, async move { ch.unary(&method, req, o).await }, |py, r| match r {
            Ok(resp) => Ok((
                PyBytes::new(py, &resp.message),
                md_to_py(py, &resp.initial_metadata)?,
                md_to_py(py, &resp.trailing_metadata)?,
            )
                .into_pyobject(py)?
                .into_any()
                .unbind()),
            Err(st) => Err(status_err(py, &st)),
        });
    Ok(NativeOp { cancel: abort })
}

/// Starts a call of any kind: a `NativeCall` or `RpcStatus`. With `first`,
/// that message is sent too (and the send side closed, for a unary-stream
/// call), in the same task; a failed send shows in the call's status.
#[pyfunction]
#[pyo3(signature = (cq, fut, channel, method, timeout=None, metadata=None, compression=None, wait_for_ready=false, first=None,
    credentials=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn channel_start(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    channel: &NativeChannel,
    method: String,
    timeout: Option<f64>,
    metadata: Option<&Bound<'_, PyAny>>,
    compression: Option<u8>,
    wait_for_ready: bool,
    first: Option<&[u8]>,
    credentials: Option<PyRef<'_, NativeCallCredentials>>,
) -> PyResult<NativeOp> {
    let o = call_options(timeout, metadata, compression, wait_for_ready, credentials)?;
    let ch = channel.ch.clone();
    let first = first.map(Bytes::copy_from_slice);
    let op = async move {
        let mut call = ch.call(&method, o).await?;
        if let Some(m) = first {
            let _ = call.send_with(m, true, true).await;
        }
        Ok(call)
    };
    let crt = channel.crt.clone();
    let abort = submit(py, channel.crt.as_ref(), cq, fut, op, move |py, r: Result<_, Status>| match r {
        Ok(call) => Ok(Py::new(py, NativeCall::from_call(call, crt))?.into_any()),
        Err(st) => Err(status_err(py, &st)),
    });
    Ok(NativeOp { cancel: abort })
}

/// Sends one message (`last` half-closes too): True, or False if the call is over.
#[pyfunction]
#[pyo3(signature = (cq, fut, call, message, last=false))]
pub(crate) fn call_send(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    call: &NativeCall,
    message: &[u8],
    last: bool,
) -> PyResult<()> {
    let msg = Bytes::copy_from_slice(message);
    let s = call.sender.clone();
    submit_now(
        py,
        call.crt.as_ref(),
        cq,
        fut,
        async move { s.lock().await.send_with(msg, true, last).await.is_ok() },
        |py, ok| Ok(pyo3::types::PyBool::new(py, ok).to_owned().into_any().unbind()),
    )
}

/// Half-closes: True, or False if the call is over.
#[pyfunction]
pub(crate) fn call_close_send(py: Python<'_>, cq: &CompletionQueue, fut: Py<PyAny>, call: &NativeCall) -> PyResult<()> {
    let s = call.sender.clone();
    submit_now(py, call.crt.as_ref(), cq, fut, async move { s.lock().await.close_send().await.is_ok() }, |py, ok| {
        Ok(pyo3::types::PyBool::new(py, ok).to_owned().into_any().unbind())
    })
}

/// The response headers, or `RpcStatus` if the call failed first.
#[pyfunction]
pub(crate) fn call_initial_metadata(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    call: &NativeCall,
) -> PyResult<()> {
    let r = call.receiver.clone();
    submit_now(
        py,
        call.crt.as_ref(),
        cq,
        fut,
        async move { r.lock().await.initial_metadata().await },
        |py, r| match r {
            Ok(md) => Ok(md_to_py(py, &md)?.into_any().unbind()),
            Err(st) => Err(status_err(py, &st)),
        },
    )
}

/// The next message, None at the end of an OK call, or `RpcStatus`.
#[pyfunction]
pub(crate) fn call_recv(py: Python<'_>, cq: &CompletionQueue, fut: Py<PyAny>, call: &NativeCall) -> PyResult<()> {
    let r = call.receiver.clone();
    submit_now(py, call.crt.as_ref(), cq, fut, async move { r.lock().await.recv().await }, message_or_status)
}

/// Drains the responses: `(code, details, trailing_metadata)`.
#[pyfunction]
pub(crate) fn call_finish(py: Python<'_>, cq: &CompletionQueue, fut: Py<PyAny>, call: &NativeCall) -> PyResult<()> {
    let r = call.receiver.clone();
    submit_now(py, call.crt.as_ref(), cq, fut, async move { r.lock().await.finish().await }, |py, st| {
        Ok(status_tuple(py, &st)?.into_pyobject(py)?.into_any().unbind())
    })
}

/// From now on, calls arriving at `queue` go to `callback(NativeServerCall)` on
/// `cq`'s loop (calls already queued first), not to `CallQueue.next`.
#[pyfunction]
pub(crate) fn queue_attach(queue: &CallQueue, cq: &CompletionQueue, callback: Py<PyAny>) {
    let q: &QueueInner = &queue.inner;
    let cb = Arc::new(callback);
    let mut g = q.calls.lock().unwrap_or_else(|e| e.into_inner());
    for c in g.calls.drain(..) {
        cq.inner.push_call(&cb, c, q.crt.clone());
    }
    *q.sink.lock().unwrap_or_else(|e| e.into_inner()) = Some((cq.inner.clone(), cb));
}

/// The next request; None once the client half-closed; `RpcStatus` if the call is over.
#[pyfunction]
pub(crate) fn scall_recv(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    call: &NativeServerCall,
) -> PyResult<()> {
    let r = call.receiver.clone();
    let op = call.guarded(async move {
        match r.lock().await.as_mut() {
            Some(r) => r.recv().await,
            None => Ok(None),
        }
    });
    submit_now(py, call.crt.as_ref(), cq, fut, op, message_or_status)
}

/// Sends one response; `RpcStatus` if the call is over.
#[pyfunction]
#[pyo3(signature = (cq, fut, call, message, compress=true))]
pub(crate) fn scall_send(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    call: &NativeServerCall,
    message: &[u8],
    compress: bool,
) -> PyResult<()> {
    let msg = Bytes::copy_from_slice(message);
    let s = call.sender.clone();
    let op = call.guarded(async move {
        match s.lock().await.as_mut() {
            Some(s) => s.send_with(msg, compress).await,
            None => Err(Status::internal("no sender")),
        }
    });
    submit_now(py, call.crt.as_ref(), cq, fut, op, unit_or_status)
}

/// Sends the response headers.
#[pyfunction]
pub(crate) fn scall_send_initial_metadata(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    call: &NativeServerCall,
    metadata: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let md = md_from_py(Some(metadata))?;
    let s = call.sender.clone();
    let op = call.guarded(async move {
        match s.lock().await.as_mut() {
            Some(s) => s.send_initial_metadata(md).await,
            None => Err(Status::internal("no sender")),
        }
    });
    submit_now(py, call.crt.as_ref(), cq, fut, op, unit_or_status)
}

/// Sends the one response of a unary call and ends it OK, as one task on the
/// runtime (`NativeServerCall::spawn_reply`: message and trailers in one
/// flush); `fut` resolves at once, True.
#[pyfunction]
#[pyo3(signature = (cq, fut, call, message, compress=true, trailing_metadata=None))]
pub(crate) fn scall_reply(
    py: Python<'_>,
    cq: &CompletionQueue,
    fut: Py<PyAny>,
    call: &NativeServerCall,
    message: &[u8],
    compress: bool,
    trailing_metadata: Option<&Bound<'_, PyAny>>,
) -> PyResult<()> {
    let _ = cq;
    let md = md_from_py(trailing_metadata)?;
    call.spawn_reply(py, message, compress, md);
    fut.bind(py).call_method1(intern!(py, "set_result"), (true,))?;
    Ok(())
}

/// Resolves (None) once the call is over.
#[pyfunction]
pub(crate) fn scall_wait_done(py: Python<'_>, cq: &CompletionQueue, fut: Py<PyAny>, call: &NativeServerCall) {
    let done = call.lock_call().done();
    submit(py, call.crt.as_ref(), cq, fut, done, |py, ()| Ok(none(py)));
}

/// Adds the asyncio functions and classes to `_native`.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<CompletionQueue>()?;
    m.add_class::<NativeOp>()?;
    m.add_function(wrap_pyfunction!(channel_unary, m)?)?;
    m.add_function(wrap_pyfunction!(channel_start, m)?)?;
    m.add_function(wrap_pyfunction!(call_send, m)?)?;
    m.add_function(wrap_pyfunction!(call_close_send, m)?)?;
    m.add_function(wrap_pyfunction!(call_initial_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(call_recv, m)?)?;
    m.add_function(wrap_pyfunction!(call_finish, m)?)?;
    m.add_function(wrap_pyfunction!(queue_attach, m)?)?;
    m.add_function(wrap_pyfunction!(scall_recv, m)?)?;
    m.add_function(wrap_pyfunction!(scall_send, m)?)?;
    m.add_function(wrap_pyfunction!(scall_send_initial_metadata, m)?)?;
    m.add_function(wrap_pyfunction!(scall_reply, m)?)?;
    m.add_function(wrap_pyfunction!(scall_wait_done, m)?)?;
    Ok(())
}
