//! Python binding of grpc-core (PyO3). The Python package `grpc_core`
//! (bindings/python/python/grpc_core) gives it grpcio's shape; this module
//! only moves bytes, metadata and statuses across.
//!
//! Every wait runs on the core's runtime (`surface::block_on`) with the GIL
//! released (`Python::detach`), so Python threads keep running while a call
//! waits on the network. A call that ends with a non-OK status raises
//! `RpcStatus(code, details, trailing_metadata, initial_metadata)`; local misuse raises
//! `ValueError` or `RuntimeError`.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use grpc_core::surface::{
    self, CallHandle, CallInfo, CallOptions, CallReceiver, CallSender, Channel, ChannelOptions, ClientTlsConfig, Code,
    Compression, ConnectivityState, HealthReporter, IncomingCall, ManualResolver, Metadata, MetadataValue, MethodKind,
    Server, ServerOptions, ServerReceiver, ServerSender, ServerTlsConfig, ServingStatus, Status, UnaryResponse,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

mod aio;
mod auth;
mod logs;
mod looprt;
mod telemetry;

create_exception!(
    _native,
    RpcStatus,
    PyException,
    "A call ended with a non-OK status: (code, details, trailing, initial)."
);

/// Metadata as Python sees it: a list of `(key, value)` tuples, values are
/// `str`, or `bytes` for `-bin` keys.
fn md_to_py<'py>(py: Python<'py>, md: &Metadata) -> PyResult<Bound<'py, PyTuple>> {
    let items: Vec<Bound<'py, PyTuple>> = md
        .iter()
        .map(|(k, v)| {
            let key = PyString::new(py, k).into_any();
            let value = match v {
                MetadataValue::Ascii(s) => PyString::new(py, s).into_any(),
                MetadataValue::Binary(b) => PyBytes::new(py, b).into_any(),
            };
            PyTuple::new(py, [key, value])
        })
        .collect::<PyResult<_>>()?;
    PyTuple::new(py, items)
}

fn md_from_py(md: Option<&Bound<'_, PyAny>>) -> PyResult<Metadata> {
    let mut out = Metadata::new();
    let Some(md) = md else { return Ok(out) };
    if md.is_none() {
        return Ok(out);
    }
    for item in md.try_iter()? {
        let item = item?;
        let (key, value): (String, Bound<'_, PyAny>) =
            item.extract().map_err(|_| PyValueError::new_err("metadata must be a sequence of (key, value) pairs"))?;
        let r = if let Ok(b) = value.cast::<PyBytes>() {
            if key.to_ascii_lowercase().ends_with("-bin") {
                out.insert_bin(key, Bytes::copy_from_slice(b.as_bytes()))
            } else {
                out.append_raw(&key, b.as_bytes())
            }
        } else {
            let s: String =
                value.extract().map_err(|_| PyValueError::new_err("metadata values must be str or bytes"))?;
            if key.to_ascii_lowercase().ends_with("-bin") {
                out.insert_bin(key, Bytes::from(s.into_bytes()))
            } else {
                out.insert(key, s)
            }
        };
        r.map_err(|e| PyValueError::new_err(e.message().to_string()))?;
    }
    Ok(out)
}

/// `RpcStatus(code, details, trailing, initial)`: `initial` holds the
/// response headers of a call that failed after the server sent them
/// (empty on a trailers-only failure), as grpcio's `RpcError.initial_metadata()`.
fn status_err(py: Python<'_>, st: &Status) -> PyErr {
    match status_tuple(py, st) {
        Ok((code, details, trailing, initial)) => {
            RpcStatus::new_err((code, details, trailing.unbind(), initial.unbind()))
        }
        Err(e) => e,
    }
}

type StatusTuple<'py> = (i32, String, Bound<'py, PyTuple>, Bound<'py, PyTuple>);

/// `(code, details, trailing, initial)`, the same fields as `RpcStatus`'s args.
fn status_tuple<'py>(py: Python<'py>, st: &Status) -> PyResult<StatusTuple<'py>> {
    Ok((
        st.code().as_i32(),
        st.message().to_string(),
        md_to_py(py, st.metadata())?,
        md_to_py(py, st.initial_metadata())?,
    ))
}

fn compression_from(n: Option<u8>) -> PyResult<Option<Compression>> {
    Ok(match n {
        None => None,
        Some(0) => Some(Compression::Identity),
        Some(1) => Some(Compression::Deflate),
        Some(2) => Some(Compression::Gzip),
        Some(3) => Some(Compression::Zstd),
        Some(n) => return Err(PyValueError::new_err(format!("unknown compression {n}"))),
    })
}

fn duration_from(secs: Option<f64>) -> Option<Duration> {
    secs.filter(|s| s.is_finite()).map(|s| Duration::from_secs_f64(s.max(0.0)))
}

/// The options of one call, from the arguments every call-starting method
/// takes (sync and aio).
pub(crate) fn call_options(
    timeout: Option<f64>,
    metadata: Option<&Bound<'_, PyAny>>,
    compression: Option<u8>,
    wait_for_ready: bool,
    credentials: Option<PyRef<'_, auth::NativeCallCredentials>>,
) -> PyResult<CallOptions> {
    Ok(CallOptions {
        timeout: duration_from(timeout),
        metadata: md_from_py(metadata)?,
        compression: compression_from(compression)?,
        wait_for_ready,
        credentials: credentials.map(|c| c.creds.clone()),
        ..Default::default()
    })
}

fn ms(v: Option<u64>) -> Option<Duration> {
    v.map(Duration::from_millis)
}

fn limit(v: Option<i64>, default: usize) -> usize {
    match v {
        None => default,
        Some(n) if n < 0 => usize::MAX,
        Some(n) => n as usize,
    }
}

/// Set by `_at_exit` (an `atexit` handler grpc_core registers): the
/// interpreter is about to finalize, on the thread recorded here.
static EXITING: AtomicBool = AtomicBool::new(false);
static FINALIZING_THREAD: OnceLock<std::thread::ThreadId> = OnceLock::new();
/// Threads between "my wait is over, the interpreter is not exiting" and
/// "I hold the GIL again".
static RETURNING: AtomicUsize = AtomicUsize::new(0);

/// `py.detach(f)` that never hands a thread back to a finalizing
/// interpreter. Before 3.14, CPython ends a thread that takes the GIL after
/// finalization began with `pthread_exit`, whose forced unwind cannot pass
/// the Rust frames under us: glibc aborts the process ("FATAL: exception
/// not rethrown", exit 134). A daemon thread whose call completes during
/// exit would do that; instead it parks here for good, as CPython 3.14
/// itself does (python/cpython#87135), and the process exits around it.
/// A thread that saw no exit yet is counted in `RETURNING` until it holds
/// the GIL again, and `_at_exit` waits for those (see there).
fn detach<T, F>(py: Python<'_>, f: F) -> T
where
    F: Send + FnOnce() -> T,
    T: Send,
{
    let r = py.detach(|| {
        let r = f();
        RETURNING.fetch_add(1, Ordering::SeqCst);
        if EXITING.load(Ordering::SeqCst) && FINALIZING_THREAD.get() != Some(&std::thread::current().id()) {
            RETURNING.fetch_sub(1, Ordering::SeqCst);
            loop {
                std::thread::park();
            }
        }
        r
    });
    RETURNING.fetch_sub(1, Ordering::SeqCst);
    r
}

/// Marks the interpreter as exiting (see [`detach`]). grpc_core registers
/// it with `atexit`, which runs on the finalizing thread after non-daemon
/// threads were joined. From here on, threads whose wait ends park; the
/// ones already on their way back to the GIL get it now (this thread lets
/// go of it until they have, at most a second), before finalization starts.
#[pyfunction]
fn _at_exit(py: Python<'_>) {
    let _ = FINALIZING_THREAD.set(std::thread::current().id());
    EXITING.store(true, Ordering::SeqCst);
    for _ in 0..1000 {
        if RETURNING.load(Ordering::SeqCst) == 0 {
            break;
        }
        py.detach(|| std::thread::sleep(Duration::from_millis(1)));
    }
}

/// Runs `f` with the GIL from a thread that does not hold it (a runtime
/// thread): None, without touching Python, once the interpreter is exiting.
/// Counted in `RETURNING` like a thread on its way back from [`detach`], so
/// `_at_exit` lets it finish before finalization starts.
fn with_python<T>(f: impl FnOnce(Python<'_>) -> T) -> Option<T> {
    RETURNING.fetch_add(1, Ordering::SeqCst);
    if EXITING.load(Ordering::SeqCst) {
        RETURNING.fetch_sub(1, Ordering::SeqCst);
        return None;
    }
    let r = Python::attach(f);
    RETURNING.fetch_sub(1, Ordering::SeqCst);
    Some(r)
}

/// Runs `fut` on the core's runtime with the GIL released. (Polling it
/// here inside the runtime's context instead was measured slower: the
/// call's wake-ups then cross threads; on a worker they stay beside the
/// connection task.)
fn wait<F>(py: Python<'_>, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    detach(py, || surface::block_on(fut))
}

/// The CPU this thread is running on (Linux; -1 elsewhere).
pub(crate) fn current_cpu() -> i32 {
    #[cfg(target_os = "linux")]
    {
        extern "C" {
            fn sched_getcpu() -> i32;
        }
        // SAFETY: no arguments, no memory touched; glibc and musl both have it.
        unsafe { sched_getcpu() }
    }
    #[cfg(not(target_os = "linux"))]
    {
        -1
    }
}

/// Called by a runtime thread right after it woke a Python thread that last
/// ran on `cpu`: if that is this CPU, the woken thread would wait for it
/// until this one parks, and then wake this one again (the next call's
/// task or reply) only to be preempted by it. Yielding lets it run now;
/// what it hands back meanwhile finds this thread still awake (no wake-up,
/// no park). On another CPU (or unknown), nothing.
///
/// Off unless `GRPC_CORE_PY_YIELD=1` is set (read once, at the first call): on a CPU
/// shared with a busy process, the yielding thread waits behind it for a
/// scheduler slice (a sync server's unary calls/s fell from ~3 500 to ~530
/// with a CPU hog on its core), so it only suits a dedicated CPU.
pub(crate) fn yield_to(cpu: i32) {
    if cpu >= 0
        && *YIELD_TO_PYTHON.get_or_init(|| std::env::var("GRPC_CORE_PY_YIELD").is_ok_and(|v| v == "1"))
        && current_cpu() == cpu
    {
        std::thread::yield_now();
    }
}

/// Whether [`yield_to`] yields (`GRPC_CORE_PY_YIELD=1`).
static YIELD_TO_PYTHON: OnceLock<bool> = OnceLock::new();

/// Like [`wait`] (the future runs as a task on the runtime, the GIL
/// released), but the result comes back through a slot and
/// `thread::park`/`unpark` instead of a fresh `mpsc` channel per call: one
/// allocation and one lock fewer on a unary call's path.
fn wait_parked<F>(py: Python<'_>, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    struct Slot<T> {
        value: Mutex<(Option<T>, bool)>,
        thread: std::thread::Thread,
        cpu: i32,
    }
    /// Marks the slot closed when the task ends, also when the runtime drops it.
    struct Closer<T>(Arc<Slot<T>>);
    impl<T> Drop for Closer<T> {
        fn drop(&mut self) {
            self.0.value.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            self.0.thread.unpark();
            yield_to(self.0.cpu);
        }
    }
    detach(py, move || {
        let slot =
            Arc::new(Slot { value: Mutex::new((None, false)), thread: std::thread::current(), cpu: current_cpu() });
        let closer = Closer(slot.clone());
        surface::spawn(async move {
            let v = fut.await;
            closer.0.value.lock().unwrap_or_else(|e| e.into_inner()).0 = Some(v);
            drop(closer);
        });
        loop {
            {
                let mut g = slot.value.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(v) = g.0.take() {
                    return v;
                }
                assert!(!g.1, "the runtime dropped a blocking task");
            }
            std::thread::park();
        }
    })
}

/// Like [`wait_on`], but polls `fut` once here first (the call's runtime
/// entered, the GIL held): a stream operation is often ready at once (a
/// message already received, a send that fits h2's buffer, trailers that
/// came with the last message), and then no runtime task and no thread hop.
/// Only an operation that has to wait goes to the runtime.
fn wait_fast<F>(py: Python<'_>, crt: Option<&Arc<CallerRt>>, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut fut = Box::pin(fut);
    if let std::task::Poll::Ready(v) = poll_once(crt, fut.as_mut()) {
        return v;
    }
    wait_on(py, crt, fut)
}

/// The runtime `crt` is (None: the engine's).
fn runtime_handle(crt: Option<&Arc<CallerRt>>) -> &tokio::runtime::Handle {
    match crt {
        Some(c) => &c.handle,
        None => surface::handle(),
    }
}

/// Polls `fut` once, inside `crt`'s runtime (None: the engine's), with a
/// waker that does nothing: the first look of the poll-then-wait paths.
fn poll_once<F: Future + ?Sized>(
    crt: Option<&Arc<CallerRt>>,
    fut: std::pin::Pin<&mut F>,
) -> std::task::Poll<F::Output> {
    let _rt = runtime_handle(crt).enter();
    fut.poll(&mut std::task::Context::from_waker(&noop_waker()))
}

/// Wakes a thread parked in [`block_here`].
struct ThreadWaker(std::thread::Thread);

impl std::task::Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `fut` on this thread, parking between wake-ups. For server-call
/// operations, which wait only on h2 streams and channels (no tokio timers):
/// often ready at once (a pre-read request, a send into h2's buffer), they
/// skip the hop to a runtime task. The first poll keeps the GIL (ready at
/// once: no release and retake); only a wait releases it.
fn block_here<F>(py: Python<'_>, fut: F) -> F::Output
where
    F: Future + Send,
    F::Output: Send,
{
    let mut fut = std::pin::pin!(fut);
    if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut std::task::Context::from_waker(&noop_waker())) {
        return v;
    }
    detach(py, move || {
        let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = std::task::Context::from_waker(&waker);
        loop {
            if let std::task::Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    })
}

fn state_code(s: ConnectivityState) -> u8 {
    match s {
        ConnectivityState::Idle => 0,
        ConnectivityState::Connecting => 1,
        ConnectivityState::Ready => 2,
        ConnectivityState::TransientFailure => 3,
        ConnectivityState::Shutdown => 4,
    }
}

/// How long the driver thread stays out of a sync channel's runtime after
/// the last caller left it: a caller that comes back within this finds the
/// runtime free (no wake-up of the driver to hand it over).
const DRIVER_LINGER: Duration = Duration::from_millis(2);

/// A sync channel's own `current_thread` runtime (`ChannelOptions::runtime`:
/// every task of the channel runs on it). A Python thread that waits on the
/// channel (a unary call, a stream operation) runs the wait with
/// `Runtime::block_on` on its own thread, the GIL released: it then drives
/// the connection itself (writes the request, waits in epoll, reads the
/// response), with no hand-off to a runtime thread and back. While no caller
/// is inside (for [`DRIVER_LINGER`] after the last one left), a driver
/// thread holds the runtime so that what no Python thread waits for still
/// runs (futures and callbacks, which wait on the engine's runtime,
/// keepalive pings, GOAWAY, the idle timer, DNS refresh); a caller that
/// arrives while it is inside tells it to leave (`release`).
///
/// A sync server has one too (`ServerOptions::runtime`, see [`CallQueue`]):
/// there the callers are the pool threads waiting for their next call
/// (`CallQueue.pull`) or on a call's stream. The aio server has a
/// loop-driven one (`epfd`), and each asyncio loop one its aio channels
/// share (`aio::CompletionQueue`): the loop's thread runs turns of it
/// (`looprt`).
#[derive(Debug)]
struct CallerRt {
    /// None once the channel is closed; then calls wait on the engine's runtime.
    rt: Mutex<Option<Arc<tokio::runtime::Runtime>>>,
    handle: tokio::runtime::Handle,
    /// Callers inside `block_on`.
    active: AtomicUsize,
    /// When the last caller left, in ns since `epoch`.
    last_exit: std::sync::atomic::AtomicU64,
    epoch: Instant,
    /// The driver is inside `block_on` (or about to enter it).
    driver_in: AtomicBool,
    /// Makes the driver leave `block_on`.
    release: tokio::sync::Notify,
    stop: AtomicBool,
    driver: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// The process that started the driver (a forked child has no driver
    /// thread: it neither joins it nor tears the runtime down).
    pid: u32,
    /// A loop-driven runtime's epoll descriptor (a duplicate; see `looprt`).
    epfd: Option<std::os::fd::OwnedFd>,
    /// The thread of the loop that drives it (the last to run `drive`).
    loop_thread: Mutex<Option<std::thread::ThreadId>>,
    /// A loop-driven runtime's operations waiting for its next turn (`aio::queue`).
    queued: aio::Queued,
    /// Its operations started and not ended (`aio::submit`).
    inflight: Arc<AtomicUsize>,
}

impl CallerRt {
    /// `what` names its threads (`grpc-core-{what}-driver`): `chan`, `srv`,
    /// `aio`. `loop_driven`: an asyncio loop runs turns of it (`looprt`).
    fn new(what: &str, loop_driven: bool) -> PyResult<Arc<CallerRt>> {
        let mut b = tokio::runtime::Builder::new_current_thread();
        b.enable_all().thread_name(format!("grpc-core-{what}"));
        let built = if loop_driven { looprt::build(&mut b) } else { b.build().map(|rt| (rt, None)) };
        let (rt, epfd) =
            built.map_err(|e| PyRuntimeError::new_err(format!("cannot start a caller-driven runtime: {e}")))?;
        let c = Arc::new(CallerRt {
            epfd,
            loop_thread: Mutex::new(None),
            queued: Default::default(),
            inflight: Default::default(),
            handle: rt.handle().clone(),
            rt: Mutex::new(Some(Arc::new(rt))),
            active: AtomicUsize::new(0),
            last_exit: Default::default(),
            epoch: Instant::now(),
            driver_in: AtomicBool::new(false),
            release: tokio::sync::Notify::new(),
            stop: AtomicBool::new(false),
            driver: Mutex::new(None),
            pid: std::process::id(),
        });
        let d = c.clone();
        let t = std::thread::Builder::new()
            .name(format!("grpc-core-{what}-driver"))
            .spawn(move || d.drive())
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start a runtime's driver thread: {e}")))?;
        *c.driver.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
        Ok(c)
    }

    fn runtime(&self) -> Option<Arc<tokio::runtime::Runtime>> {
        self.rt.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The driver thread: inside the runtime whenever no caller has been
    /// for [`DRIVER_LINGER`].
    fn drive(&self) {
        while !self.stop.load(Ordering::SeqCst) {
            let Some(rt) = self.runtime() else { break };
            // Announce first, then look (a caller increments `active`, then
            // looks at `driver_in`): one of the two sees the other.
            self.driver_in.store(true, Ordering::SeqCst);
            let since = Duration::from_nanos(
                (self.epoch.elapsed().as_nanos() as u64).saturating_sub(self.last_exit.load(Ordering::SeqCst)),
            );
            if self.active.load(Ordering::SeqCst) == 0 && since >= DRIVER_LINGER {
                rt.block_on(self.release.notified());
                self.driver_in.store(false, Ordering::SeqCst);
            } else {
                self.driver_in.store(false, Ordering::SeqCst);
                drop(rt);
                std::thread::park_timeout(DRIVER_LINGER.saturating_sub(since).max(Duration::from_micros(100)));
            }
        }
    }

    /// The runtime, if this thread may enter it with [`block_on`](Self::block_on):
    /// not once the channel is closed, nor from a thread that is already in a
    /// runtime (a callback on a runtime thread, a call-credentials plugin).
    fn here(&self) -> Option<Arc<tokio::runtime::Runtime>> {
        if tokio::runtime::Handle::try_current().is_ok() {
            return None;
        }
        self.runtime()
    }

    /// Whether this thread is the loop thread of this loop-driven runtime.
    fn on_loop(&self) -> bool {
        self.epfd.is_some()
            && *self.loop_thread.lock().unwrap_or_else(|e| e.into_inner()) == Some(std::thread::current().id())
    }

    /// A turn of this loop-driven runtime on this thread (`looprt`), `first`
    /// run in it (the abort handle of its task if it has to wait after the
    /// turn); what the turn hands to asyncio loops is resolved right after.
    /// `first` comes back if this thread cannot enter the runtime.
    fn turn(
        &self,
        py: Python<'_>,
        readable: bool,
        first: Option<Deferred>,
    ) -> Result<(usize, Option<tokio::task::AbortHandle>), Option<Deferred>> {
        let (Some(fd), Some(rt)) = (looprt::raw(&self.epfd), self.here()) else { return Err(first) };
        let inline = aio::Inline::begin();
        let spawned = detach(py, || looprt::turn(self, rt, fd, readable, first));
        Ok((inline.finish(py), spawned))
    }

    /// The loop's reader callback (`drive`): records the loop's thread and runs a turn.
    fn drive_from_loop(&self, py: Python<'_>) -> usize {
        if self.epfd.is_none() {
            return 0;
        }
        *self.loop_thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::thread::current().id());
        self.turn(py, true, None).map_or(0, |(n, _)| n)
    }

    /// Runs `fut` on this thread inside the channel's runtime `rt` (from [`here`](Self::here)).
    fn block_on<F: Future>(&self, rt: Arc<tokio::runtime::Runtime>, fut: F) -> F::Output {
        self.active.fetch_add(1, Ordering::SeqCst);
        if self.driver_in.load(Ordering::SeqCst) {
            self.release.notify_one();
        }
        struct Leave<'a>(&'a CallerRt);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.last_exit.store(self.0.epoch.elapsed().as_nanos() as u64, Ordering::SeqCst);
                self.0.active.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let _leave = Leave(self);
        rt.block_on(fut)
    }

    /// [`shutdown`](Self::shutdown) from a plain thread of its own, for an
    /// owner dropped on a thread that may hold the GIL (a task on the
    /// runtime may be waiting for it).
    fn shutdown_elsewhere(self: Arc<Self>) {
        let _ = std::thread::Builder::new().name("grpc-core-rt-drop".into()).spawn(move || self.shutdown());
    }

    /// Stops the driver thread and lets the runtime go (its tasks are
    /// dropped once the last caller inside has left).
    fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.release.notify_one();
        let rt = self.rt.lock().unwrap_or_else(|e| e.into_inner()).take();
        let t = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take();
        if std::process::id() != self.pid {
            // A forked child: the driver thread and the runtime's state
            // belong to the parent.
            std::mem::forget(t);
            std::mem::forget(rt);
            return;
        }
        if let Some(t) = t {
            t.thread().unpark();
            let _ = t.join();
        }
        // The last handle on the runtime (else the last caller inside drops
        // it as it leaves): its tasks are dropped, not waited for. Refused
        // inside another runtime's context (a Python callback on a runtime
        // thread may close the channel): a plain thread does it then.
        if let Some(rt) = rt.and_then(|rt| Arc::try_unwrap(rt).ok()) {
            if tokio::runtime::Handle::try_current().is_ok() {
                let _ = std::thread::Builder::new()
                    .name("grpc-core-rt-drop".into())
                    .spawn(move || rt.shutdown_background());
            } else {
                rt.shutdown_background();
            }
        }
    }
}

/// Runs `fut` with the GIL released on the calling thread inside the sync
/// channel's runtime ([`CallerRt::block_on`]) when this thread may enter it
/// ([`CallerRt::here`]); else hands `fut` back.
fn run_here<F>(py: Python<'_>, crt: Option<&Arc<CallerRt>>, fut: F) -> Result<F::Output, F>
where
    F: Future + Send,
    F::Output: Send,
{
    match crt.and_then(|c| Some((c, c.here()?))) {
        Some((crt, rt)) => Ok(detach(py, || crt.block_on(rt, fut))),
        None => Err(fut),
    }
}

/// Runs `fut` with the GIL released: on the calling thread inside the sync
/// channel's runtime when there is one ([`run_here`]), else as a task on
/// the engine's runtime ([`wait`]).
fn wait_on<F>(py: Python<'_>, crt: Option<&Arc<CallerRt>>, fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    run_here(py, crt, fut).unwrap_or_else(|fut| wait(py, fut))
}

/// A client channel.
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug)]
struct NativeChannel {
    ch: Channel,
    /// A sync channel's own runtime, driven by the threads that wait on it
    /// (`caller_driven`), or the runtime of the asyncio loop the channel was
    /// made in (`loop_cq`, shared); None: the engine's runtime.
    crt: Option<Arc<CallerRt>>,
    /// `crt` is the channel's own (stopped with it).
    owns_rt: bool,
}

impl Drop for NativeChannel {
    fn drop(&mut self) {
        if let (Some(crt), true) = (&self.crt, self.owns_rt) {
            crt.shutdown();
        }
    }
}

impl NativeChannel {
    /// The runtime the channel's tasks run on.
    fn handle(&self) -> &tokio::runtime::Handle {
        runtime_handle(self.crt.as_ref())
    }

    /// One unary call, waited for with the GIL released. A lone caller runs
    /// the call's future inside the channel's runtime on its own thread
    /// ([`run_here`]). While other callers are inside, the call is a task of
    /// the runtime instead, and this thread waits for its end: a caller that
    /// cannot hold the runtime (one thread at a time does) polls the future
    /// it waits on itself, on every wake-up, and with many threads each of
    /// those polls takes h2's connection lock against the thread that holds
    /// the runtime (32 threads: 34 -> 22 CPU-µs per call as a task; see the
    /// README's sixth round). A task the runtime drops unfinished (the
    /// channel closed and its runtime stopped) ends the call UNAVAILABLE, as
    /// the engine ends the calls a close finds in flight.
    fn unary_call(&self, py: Python<'_>, method: String, request: &[u8], opts: CallOptions) -> PyResult<UnaryResponse> {
        let req = Bytes::copy_from_slice(request);
        let ch = self.ch.clone();
        let fut = async move { ch.unary(&method, req, opts).await };
        let crt = self.crt.as_ref();
        let r = match crt {
            Some(c) if c.active.load(Ordering::Relaxed) > 0 && c.here().is_some() => {
                let task = c.handle.spawn(fut);
                let joined = async move {
                    task.await.unwrap_or_else(|e| {
                        Err(if e.is_cancelled() {
                            Status::unavailable("channel closed")
                        } else {
                            Status::internal(format!("the call's task failed: {e}"))
                        })
                    })
                };
                run_here(py, crt, joined).unwrap_or_else(|j| wait_parked(py, j))
            }
            _ => run_here(py, crt, fut).unwrap_or_else(|fut| wait_parked(py, fut)),
        };
        r.map_err(|st| status_err(py, &st))
    }
}

#[pymethods]
impl NativeChannel {
    #[new]
    #[pyo3(signature = (target, *, tls=false, root_certs=None, private_key=None, cert_chain=None,
        server_name_override=None, authority=None, user_agent=None, max_recv=None, max_send=None,
        keepalive_time_ms=None, keepalive_timeout_ms=None, keepalive_permit_without_calls=false, compression=None,
        call_credentials=None, allow_insecure_call_credentials=false, service_config=None, manual_resolver=None,
        idle_timeout_ms=None, dns_refresh_ms=None, telemetry=None, caller_driven=false, loop_cq=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        target: &str,
        tls: bool,
        root_certs: Option<Vec<u8>>,
        private_key: Option<Vec<u8>>,
        cert_chain: Option<Vec<u8>>,
        server_name_override: Option<String>,
        authority: Option<String>,
        user_agent: Option<String>,
        max_recv: Option<i64>,
        max_send: Option<i64>,
        keepalive_time_ms: Option<u64>,
        keepalive_timeout_ms: Option<u64>,
        keepalive_permit_without_calls: bool,
        compression: Option<u8>,
        call_credentials: Option<PyRef<'_, auth::NativeCallCredentials>>,
        allow_insecure_call_credentials: bool,
        service_config: Option<String>,
        manual_resolver: Option<PyRef<'_, NativeManualResolver>>,
        idle_timeout_ms: Option<u64>,
        dns_refresh_ms: Option<u64>,
        telemetry: Option<PyRef<'_, telemetry::NativeTelemetry>>,
        caller_driven: bool,
        loop_cq: Option<PyRef<'_, aio::CompletionQueue>>,
    ) -> PyResult<Self> {
        let mut o = ChannelOptions {
            telemetry: telemetry.map(|t| t.otel.clone()),
            call_credentials: call_credentials.map(|c| c.creds.clone()),
            allow_insecure_call_credentials,
            service_config,
            manual_resolver: manual_resolver.map(|r| r.resolver.clone()),
            ..Default::default()
        };
        if let Some(t) = idle_timeout_ms {
            // grpcio: 0 (or INT_MAX) turns the idle timeout off.
            o.idle_timeout = (t > 0 && t < i32::MAX as u64).then(|| Duration::from_millis(t));
        }
        if let Some(t) = dns_refresh_ms {
            o.dns_refresh_interval = Duration::from_millis(t.max(1));
        }
        if tls {
            let identity = match (cert_chain, private_key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => return Err(PyValueError::new_err("private_key and certificate_chain go together")),
            };
            o.tls = Some(ClientTlsConfig { root_certs_pem: root_certs, identity_pem: identity, server_name_override });
        }
        o.authority = authority;
        o.user_agent = user_agent;
        o.max_recv_message_size = limit(max_recv, o.max_recv_message_size);
        o.max_send_message_size = limit(max_send, o.max_send_message_size);
        o.keepalive_time = ms(keepalive_time_ms).or(o.keepalive_time);
        if let Some(t) = ms(keepalive_timeout_ms) {
            o.keepalive_timeout = t;
        }
        o.keepalive_permit_without_calls = keepalive_permit_without_calls;
        o.default_compression = compression_from(compression)?;
        let shared = loop_cq.and_then(|cq| cq.runtime());
        let owns_rt = shared.is_none() && caller_driven;
        let crt = match shared {
            Some(c) => Some(c),
            None if caller_driven => Some(CallerRt::new("chan", false)?),
            None => None,
        };
        o.runtime = crt.as_ref().map(|c| c.handle.clone());
        let _rt = runtime_handle(crt.as_ref()).enter();
        let ch = Channel::new(target, o).map_err(|e| PyValueError::new_err(e.message().to_string()));
        match ch {
            Ok(ch) => Ok(NativeChannel { ch, crt, owns_rt }),
            Err(e) => {
                if let (Some(c), true) = (crt, owns_rt) {
                    c.shutdown();
                }
                Err(e)
            }
        }
    }

    /// One unary call: returns `(response, initial_metadata, trailing_metadata)`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (method, request, timeout=None, metadata=None, compression=None, wait_for_ready=false,
        credentials=None))]
    fn unary<'py>(
        &self,
        py: Python<'py>,
        method: String,
        request: &[u8],
        timeout: Option<f64>,
        metadata: Option<&Bound<'py, PyAny>>,
        compression: Option<u8>,
        wait_for_ready: bool,
        credentials: Option<PyRef<'py, auth::NativeCallCredentials>>,
    ) -> PyResult<(Bound<'py, PyBytes>, Bound<'py, PyTuple>, Bound<'py, PyTuple>)> {
        let opts = call_options(timeout, metadata, compression, wait_for_ready, credentials)?;
        let resp = self.unary_call(py, method, request, opts)?;
        Ok((
            PyBytes::new(py, &resp.message),
            md_to_py(py, &resp.initial_metadata)?,
            md_to_py(py, &resp.trailing_metadata)?,
        ))
    }

    /// One unary call, the response message only (the hot path of
    /// `UnaryUnaryMultiCallable.__call__`: no metadata tuples are built).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (method, request, timeout=None, metadata=None, compression=None, wait_for_ready=false,
        credentials=None))]
    fn unary_message<'py>(
        &self,
        py: Python<'py>,
        method: String,
        request: &[u8],
        timeout: Option<f64>,
        metadata: Option<&Bound<'py, PyAny>>,
        compression: Option<u8>,
        wait_for_ready: bool,
        credentials: Option<PyRef<'py, auth::NativeCallCredentials>>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let opts = call_options(timeout, metadata, compression, wait_for_ready, credentials)?;
        let resp = self.unary_call(py, method, request, opts)?;
        Ok(PyBytes::new(py, &resp.message))
    }

    /// Starts a call of any kind.
    #[pyo3(signature = (method, timeout=None, metadata=None, compression=None, wait_for_ready=false, credentials=None))]
    #[allow(clippy::too_many_arguments)]
    fn start(
        &self,
        py: Python<'_>,
        method: String,
        timeout: Option<f64>,
        metadata: Option<&Bound<'_, PyAny>>,
        compression: Option<u8>,
        wait_for_ready: bool,
        credentials: Option<PyRef<'_, auth::NativeCallCredentials>>,
    ) -> PyResult<NativeCall> {
        let opts = call_options(timeout, metadata, compression, wait_for_ready, credentials)?;
        let ch = self.ch.clone();
        let r = wait_on(py, self.crt.as_ref(), async move { ch.call(&method, opts).await });
        match r {
            Ok(call) => Ok(NativeCall::from_call(call, self.crt.clone())),
            Err(st) => Err(status_err(py, &st)),
        }
    }

    /// The descriptor of the loop runtime this channel runs on (its loop's,
    /// see `CompletionQueue.runtime_fd`); None otherwise.
    fn runtime_fd(&self) -> Option<i32> {
        looprt::raw(&self.crt.as_ref()?.epfd)
    }

    /// The connectivity state: 0 idle, 1 connecting, 2 ready, 3 transient failure, 4 shutdown.
    fn state(&self) -> u8 {
        state_code(self.ch.state())
    }

    /// The subchannels: `[(address, state code), ...]` (state READY only while healthy).
    fn subchannels(&self) -> Vec<(String, u8)> {
        self.ch.subchannels().into_iter().map(|s| (s.address.to_string(), state_code(s.state))).collect()
    }

    /// Starts connecting if idle.
    fn connect(&self) {
        let _rt = self.handle().enter();
        self.ch.connect();
    }

    /// Waits until the state differs from `state`; false on timeout.
    #[pyo3(signature = (state, timeout=None))]
    fn wait_for_state_change(&self, py: Python<'_>, state: u8, timeout: Option<f64>) -> bool {
        let from = match state {
            0 => ConnectivityState::Idle,
            1 => ConnectivityState::Connecting,
            2 => ConnectivityState::Ready,
            3 => ConnectivityState::TransientFailure,
            _ => ConnectivityState::Shutdown,
        };
        let deadline = duration_from(timeout).map(|d| Instant::now() + d);
        let ch = self.ch.clone();
        wait(py, async move { ch.wait_for_state_change(from, deadline).await })
    }

    /// Closes the channel.
    fn close(&self, py: Python<'_>) {
        {
            let _rt = self.handle().enter();
            self.ch.close();
        }
        // A loop's shared runtime runs the close in its next turns.
        let Some(crt) = self.crt.as_ref().filter(|_| self.owns_rt) else { return };
        // Let the runtime run the close (the connections dropped, calls in
        // flight failed), then stop its driver.
        let ch = self.ch.clone();
        wait_on(py, Some(crt), async move {
            let _ = tokio::time::timeout(Duration::from_secs(1), async {
                while ch.state() != ConnectivityState::Shutdown {
                    ch.wait_for_state_change(ch.state(), None).await;
                }
            })
            .await;
            tokio::task::yield_now().await;
        });
        detach(py, || crt.shutdown());
    }
}

/// The resolver of a `manual:///name` target: the addresses come from `update`.
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug)]
struct NativeManualResolver {
    resolver: ManualResolver,
}

#[pymethods]
impl NativeManualResolver {
    #[new]
    fn new() -> Self {
        NativeManualResolver { resolver: ManualResolver::new() }
    }

    /// Replaces the address list (`host:port`, `[v6]:port`, `unix:/path`); every
    /// channel on this resolver moves to it. A bad address raises ValueError and changes nothing.
    fn update(&self, addresses: Vec<String>) -> PyResult<()> {
        let _rt = surface::handle().enter();
        self.resolver.update_from_strs(addresses).map_err(|e| PyValueError::new_err(e.message().to_string()))
    }

    /// Reports a resolution failure: with no usable address, calls fail UNAVAILABLE with `message`.
    fn report_error(&self, message: String) {
        let _rt = surface::handle().enter();
        self.resolver.report_error(message);
    }

    /// The last list given, as strings; None before the first update.
    fn addresses(&self) -> Option<Vec<String>> {
        self.resolver.addresses().map(|v| v.iter().map(ToString::to_string).collect())
    }
}

/// A client call (any kind): send and receive halves usable from two threads.
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug)]
struct NativeCall {
    sender: Arc<tokio::sync::Mutex<CallSender>>,
    receiver: Arc<tokio::sync::Mutex<CallReceiver>>,
    handle: CallHandle,
    /// A sync channel's runtime: waits run inside it on the calling thread.
    crt: Option<Arc<CallerRt>>,
}

impl NativeCall {
    fn from_call(call: grpc_core::surface::ClientCall, crt: Option<Arc<CallerRt>>) -> Self {
        let handle = call.handle();
        let (s, r) = call.split();
        NativeCall {
            sender: Arc::new(tokio::sync::Mutex::new(s)),
            receiver: Arc::new(tokio::sync::Mutex::new(r)),
            handle,
            crt,
        }
    }
}

#[pymethods]
impl NativeCall {
    /// Sends one message (`last` half-closes too). False if the call is
    /// over: the receive side then tells how it ended.
    #[pyo3(signature = (message, last=false))]
    fn send(&self, py: Python<'_>, message: &[u8], last: bool) -> bool {
        let msg = Bytes::copy_from_slice(message);
        let s = self.sender.clone();
        wait_fast(py, self.crt.as_ref(), async move { s.lock().await.send_with(msg, true, last).await }).is_ok()
    }

    /// Half-closes the send side. False if the call is over.
    fn close_send(&self, py: Python<'_>) -> bool {
        let s = self.sender.clone();
        wait_fast(py, self.crt.as_ref(), async move { s.lock().await.close_send().await }).is_ok()
    }

    /// The response headers; raises `RpcStatus` if the call failed first.
    fn initial_metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let r = self.receiver.clone();
        match wait_fast(py, self.crt.as_ref(), async move { r.lock().await.initial_metadata().await }) {
            Ok(md) => md_to_py(py, &md),
            Err(st) => Err(status_err(py, &st)),
        }
    }

    /// The next message, None at the end of an OK call; raises `RpcStatus`.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let r = self.receiver.clone();
        match wait_fast(py, self.crt.as_ref(), async move { r.lock().await.recv().await }) {
            Ok(Some(b)) => Ok(Some(PyBytes::new(py, &b))),
            Ok(None) => Ok(None),
            Err(st) => Err(status_err(py, &st)),
        }
    }

    /// Drains the responses; returns `(code, details, trailing_metadata)`.
    fn finish<'py>(&self, py: Python<'py>) -> PyResult<StatusTuple<'py>> {
        let r = self.receiver.clone();
        let st = wait_fast(py, self.crt.as_ref(), async move { r.lock().await.finish().await });
        status_tuple(py, &st)
    }

    /// Cancels the call (CANCELLED); safe from any thread.
    fn cancel(&self) {
        self.handle.cancel();
    }
}

/// Incoming server calls, handed from the runtime to a Python dispatcher thread,
/// or straight to a pool thread waiting for its next call (`pull`).
#[derive(Debug, Default)]
struct Queued {
    calls: VecDeque<IncomingCall>,
    closed: bool,
    /// Pool threads waiting in `pull` on the condvar.
    pullers: usize,
    /// Pool threads waiting in `pull` inside the caller-driven runtime.
    async_pullers: usize,
}

#[derive(Debug, Default)]
struct QueueInner {
    calls: Mutex<Queued>,
    /// The dispatcher's wake-up (`next`).
    ready: Condvar,
    /// The pullers' wake-up: a call goes to a waiting puller first (one
    /// thread hop fewer than dispatcher, then pool).
    pulled: Condvar,
    /// Set by `aio.queue_attach`: calls go to this loop's completion queue.
    sink: Mutex<Option<aio::Sink>>,
    /// The CPU of the last thread that began waiting in `pull` (see `yield_to`).
    puller_cpu: AtomicI32,
    /// The async pullers' wake-up.
    pulled_async: tokio::sync::Notify,
    /// The servers' own runtime. A sync server's is driven by its pool
    /// threads: a thread in `pull` waits inside it, so that it reads the next
    /// request itself, and writes the reply it deferred, with no hand-off to
    /// a runtime thread. An aio server's is driven by turns of its loop
    /// (`drive`, `looprt`). None: the engine's runtime.
    crt: Option<Arc<CallerRt>>,
}

impl QueueInner {
    /// Waits (without the GIL) for the next call on `cv`; None once closed, or at `deadline`.
    fn wait_call(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        puller: bool,
        first: Option<Deferred>,
    ) -> Option<NativeServerCall> {
        let deadline = duration_from(timeout).map(|d| Instant::now() + d);
        let cv = if puller { &self.pulled } else { &self.ready };
        let call = detach(py, move || {
            if let Some(op) = first {
                spawn_on(self.crt.as_ref(), op);
            }
            let mut g = self.calls.lock().unwrap_or_else(|e| e.into_inner());
            if puller {
                g.pullers += 1;
                self.puller_cpu.store(current_cpu(), Ordering::Relaxed);
            }
            let r = loop {
                if let Some(c) = g.calls.pop_front() {
                    break Some(c);
                }
                if g.closed {
                    break None;
                }
                match deadline {
                    None => g = cv.wait(g).unwrap_or_else(|e| e.into_inner()),
                    Some(d) => {
                        let now = Instant::now();
                        if now >= d {
                            break None;
                        }
                        g = cv.wait_timeout(g, d - now).unwrap_or_else(|e| e.into_inner()).0;
                    }
                }
            };
            if puller {
                g.pullers -= 1;
            }
            r
        })?;
        Some(NativeServerCall::new(call, self.crt.clone()))
    }

    /// `pull` inside the caller-driven runtime: runs `first` there, then
    /// waits for the next call (driving the server's connections meanwhile).
    async fn pull_async(&self, deadline: Option<Instant>, first: Option<Deferred>) -> Option<IncomingCall> {
        // A reply is usually done in one poll (a send into h2's buffer):
        // then it needs no task.
        if let Some(mut op) = first {
            if std::future::poll_fn(|cx| std::task::Poll::Ready(op.as_mut().poll(cx).is_pending())).await {
                tokio::spawn(op);
            }
        }
        struct Leave<'a>(&'a QueueInner);
        impl Drop for Leave<'_> {
            fn drop(&mut self) {
                self.0.calls.lock().unwrap_or_else(|e| e.into_inner()).async_pullers -= 1;
            }
        }
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).async_pullers += 1;
        let _leave = Leave(self);
        loop {
            let notified = self.pulled_async.notified();
            let mut notified = std::pin::pin!(notified);
            notified.as_mut().enable();
            {
                let mut g = self.calls.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(c) = g.calls.pop_front() {
                    return Some(c);
                }
                if g.closed {
                    return None;
                }
            }
            match deadline {
                None => notified.await,
                Some(d) => tokio::time::timeout_at(d.into(), notified).await.ok()?,
            }
        }
    }
}

/// The queue every native server of one Python server delivers calls to.
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug, Default)]
struct CallQueue {
    inner: Arc<QueueInner>,
}

#[pymethods]
impl CallQueue {
    /// `caller_driven`: the servers on this queue run on a runtime of their
    /// own that the threads in `pull` drive (a sync server; see `QueueInner::crt`).
    /// `loop_driven` (an aio server): that runtime is driven by turns of the
    /// asyncio loop the server runs on (`drive`, see `looprt`).
    #[new]
    #[pyo3(signature = (caller_driven=false, loop_driven=false))]
    fn new(caller_driven: bool, loop_driven: bool) -> PyResult<Self> {
        let crt = match (caller_driven, loop_driven) {
            (_, true) => Some(CallerRt::new("aio", true)?),
            (true, false) => Some(CallerRt::new("srv", false)?),
            (false, false) => None,
        };
        Ok(CallQueue { inner: Arc::new(QueueInner { crt, ..Default::default() }) })
    }

    /// A loop-driven queue's runtime descriptor for `loop.add_reader(fd,
    /// queue.drive)`; None: the runtime runs on its own thread alone.
    fn runtime_fd(&self) -> Option<i32> {
        looprt::raw(&self.inner.crt.as_ref()?.epfd)
    }

    /// Runs one turn of the runtime on this (the loop's) thread, then hands
    /// what that turn produced (calls for `queue_attach`'s callback, results)
    /// to the loop at once. Returns how many results were handed over.
    fn drive(&self, py: Python<'_>) -> usize {
        self.inner.crt.as_ref().map_or(0, |c| c.drive_from_loop(py))
    }

    /// The next incoming call; None once the queue is closed and empty, or on timeout.
    #[pyo3(signature = (timeout=None))]
    fn next(&self, py: Python<'_>, timeout: Option<f64>) -> Option<NativeServerCall> {
        self.inner.wait_call(py, timeout, false, None)
    }

    /// Like `next`, for a pool thread that just served a call: calls go to
    /// waiting pullers before the dispatcher. None on timeout or once closed.
    /// `after`'s deferred reply (see `NativeServerCall.reply`) starts first,
    /// once the GIL is released.
    #[pyo3(signature = (timeout=None, after=None))]
    fn pull(
        &self,
        py: Python<'_>,
        timeout: Option<f64>,
        after: Option<PyRef<'_, NativeServerCall>>,
    ) -> Option<NativeServerCall> {
        let first = after.and_then(|c| c.take_deferred());
        let q = &self.inner;
        if let Some((crt, rt)) = q.crt.as_ref().and_then(|c| Some((c, c.here()?))) {
            let deadline = duration_from(timeout).map(|d| Instant::now() + d);
            let call = detach(py, || crt.block_on(rt, q.pull_async(deadline, first)))?;
            return Some(NativeServerCall::new(call, q.crt.clone()));
        }
        q.wait_call(py, timeout, true, first)
    }

    /// Closes the queue: calls still queued are dropped (UNKNOWN), later ones
    /// refused; the servers' runtime is stopped (after the servers were shut
    /// down), without the GIL: a task on it may be waiting for the GIL.
    fn close(&self, py: Python<'_>) {
        let dropped = {
            let mut g = self.inner.calls.lock().unwrap_or_else(|e| e.into_inner());
            g.closed = true;
            self.inner.sink.lock().unwrap_or_else(|e| e.into_inner()).take();
            std::mem::take(&mut g.calls)
        };
        drop(dropped);
        self.inner.ready.notify_all();
        self.inner.pulled.notify_all();
        self.inner.pulled_async.notify_waiters();
        if let Some(c) = &self.inner.crt {
            detach(py, || c.shutdown());
        }
    }
}

/// A queue dropped unclosed (a server never stopped) stops its runtime from
/// a plain thread: this one holds the GIL, which a task there may wait for.
impl Drop for CallQueue {
    fn drop(&mut self) {
        if let Some(c) = self.inner.crt.clone() {
            c.shutdown_elsewhere();
        }
    }
}

/// A server bound to its ports, delivering calls to a [`CallQueue`].
#[pyclass(frozen, module = "grpc_core._native")]
#[derive(Debug)]
struct NativeServer {
    server: Server,
    /// The engine's `grpc.health.v1.Health` service, when asked for.
    health: Option<HealthReporter>,
}

#[pymethods]
impl NativeServer {
    #[new]
    #[pyo3(signature = (queue, *, cert_chain=None, private_key=None, client_ca=None, require_client_auth=false,
        max_recv=None, max_send=None, max_concurrent_streams=None, keepalive_time_ms=None, keepalive_timeout_ms=None,
        keepalive_min_time_ms=None, keepalive_permit_without_calls=None, max_connection_idle_ms=None,
        max_connection_age_ms=None, max_connection_age_grace_ms=None, compression=None, reflection=None,
        reflection_methods=None, health=false, telemetry=None, methods=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        queue: &CallQueue,
        cert_chain: Option<Vec<u8>>,
        private_key: Option<Vec<u8>>,
        client_ca: Option<Vec<u8>>,
        require_client_auth: bool,
        max_recv: Option<i64>,
        max_send: Option<i64>,
        max_concurrent_streams: Option<u32>,
        keepalive_time_ms: Option<u64>,
        keepalive_timeout_ms: Option<u64>,
        keepalive_min_time_ms: Option<u64>,
        keepalive_permit_without_calls: Option<bool>,
        max_connection_idle_ms: Option<u64>,
        max_connection_age_ms: Option<u64>,
        max_connection_age_grace_ms: Option<u64>,
        compression: Option<u8>,
        reflection: Option<Vec<Vec<u8>>>,
        reflection_methods: Option<Vec<String>>,
        health: bool,
        telemetry: Option<PyRef<'_, telemetry::NativeTelemetry>>,
        methods: Option<Vec<String>>,
    ) -> PyResult<Self> {
        let mut o = ServerOptions { telemetry: telemetry.map(|t| t.otel.clone()), ..Default::default() };
        match (cert_chain, private_key) {
            (Some(c), Some(k)) => {
                o.tls = Some(ServerTlsConfig {
                    cert_chain_pem: c,
                    private_key_pem: k,
                    client_ca_pem: client_ca,
                    require_client_cert: require_client_auth,
                })
            }
            (None, None) => {}
            _ => return Err(PyValueError::new_err("cert_chain and private_key go together")),
        }
        o.max_recv_message_size = limit(max_recv, o.max_recv_message_size);
        o.max_send_message_size = limit(max_send, o.max_send_message_size);
        if let Some(n) = max_concurrent_streams {
            o.max_concurrent_streams = n;
        }
        o.keepalive_time = ms(keepalive_time_ms).or(o.keepalive_time);
        if let Some(t) = ms(keepalive_timeout_ms) {
            o.keepalive_timeout = t;
        }
        if let Some(t) = ms(keepalive_min_time_ms) {
            o.keepalive_min_time = t;
        }
        if let Some(p) = keepalive_permit_without_calls {
            o.keepalive_permit_without_calls = p;
        }
        o.max_connection_idle = ms(max_connection_idle_ms);
        o.max_connection_age = ms(max_connection_age_ms);
        o.max_connection_age_grace = ms(max_connection_age_grace_ms);
        o.default_compression = compression_from(compression)?;
        o.runtime = queue.inner.crt.as_ref().map(|c| c.handle.clone());
        let q = queue.inner.clone();
        let deliver = move |c: IncomingCall| {
            let mut g = q.calls.lock().unwrap_or_else(|e| e.into_inner());
            if g.closed {
                drop(g);
                drop(c);
                return;
            }
            if let Some((cq, cb)) = &*q.sink.lock().unwrap_or_else(|e| e.into_inner()) {
                cq.push_call(cb, c, q.crt.clone());
                return;
            }
            g.calls.push_back(c);
            let (pullers, async_pullers) = (g.pullers, g.async_pullers);
            drop(g);
            if async_pullers > 0 {
                q.pulled_async.notify_one();
            } else if pullers > 0 {
                q.pulled.notify_one();
                yield_to(q.puller_cpu.load(Ordering::Relaxed));
            } else {
                q.ready.notify_one();
            }
        };
        let deliver = Arc::new(deliver);
        let d = deliver.clone();
        let mut b = Server::builder(o).fallback(surface::dispatch(move |c| d(c)));
        let invalid = |e: grpc_core::surface::Error| PyValueError::new_err(e.message().to_string());
        let mut registered: std::collections::HashSet<String> = std::collections::HashSet::new();
        if let Some(sets) = reflection {
            for set in &sets {
                b = b.with_reflection(set).map_err(invalid)?;
            }
            // The engine lists the services that have registered methods;
            // the Python server's own are served through the fallback, so
            // the reflected ones are registered too, to the same queue (as
            // bidi streams: what the fallback does with every call).
            for path in reflection_methods.unwrap_or_default() {
                if !registered.insert(path.clone()) {
                    continue;
                }
                let d = deliver.clone();
                b = b.register(&path, MethodKind::BidiStreaming, surface::dispatch(move |c| d(c))).map_err(invalid)?;
            }
        }
        // The registered methods (grpcio's add_registered_method_handlers)
        // are the engine's too, to the same queue: A66 then names them in
        // the server metrics, where a generic handler's calls are "other".
        for path in methods.unwrap_or_default() {
            if !registered.insert(path.clone()) {
                continue;
            }
            let d = deliver.clone();
            b = b.register(&path, MethodKind::BidiStreaming, surface::dispatch(move |c| d(c))).map_err(invalid)?;
        }
        let mut reporter = None;
        if health {
            let (hb, r) = b.with_health();
            b = hb;
            reporter = Some(r);
        }
        let server = b.build().map_err(invalid)?;
        Ok(NativeServer { server, health: reporter })
    }

    /// Sets a service's health (`grpc.health.v1.HealthCheckResponse.ServingStatus`:
    /// 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN); `""` is the whole
    /// server. Watchers see the change. RuntimeError without `health=True`.
    fn health_set(&self, service: &str, status: i32) -> PyResult<()> {
        let Some(h) = &self.health else {
            return Err(PyRuntimeError::new_err("this server has no health service"));
        };
        let st = match status {
            0 => ServingStatus::Unknown,
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            3 => ServingStatus::ServiceUnknown,
            n => return Err(PyValueError::new_err(format!("unknown serving status {n}"))),
        };
        h.set(service, st);
        Ok(())
    }

    /// Listens on `address`; returns the bound port (the OS's pick for port 0).
    fn bind(&self, py: Python<'_>, address: String) -> PyResult<u16> {
        let s = self.server.clone();
        let r = wait(py, async move { s.bind(&address).await });
        match r {
            Ok(grpc_core::surface::Address::Tcp(a)) => Ok(a.port()),
            Ok(_) => Ok(0),
            Err(e) => Err(PyRuntimeError::new_err(e.message().to_string())),
        }
    }

    /// Starts serving.
    fn start(&self) {
        self.server.start();
    }

    /// Graceful shutdown with `grace` seconds for calls in flight; returns when done.
    fn shutdown(&self, py: Python<'_>, grace: f64) {
        let s = self.server.clone();
        let grace = duration_from(Some(grace)).unwrap_or_default();
        wait(py, async move { s.shutdown(grace).await });
    }
}

/// A server call handed to Python.
#[pyclass(frozen, module = "grpc_core._native")]
struct NativeServerCall {
    info: Arc<CallInfo>,
    receiver: Arc<tokio::sync::Mutex<Option<ServerReceiver>>>,
    sender: Arc<tokio::sync::Mutex<Option<ServerSender>>>,
    call: Arc<Mutex<IncomingCall>>,
    /// A reply `reply(defer=True)` left for `CallQueue.pull(after=...)` (or
    /// `flush`, or the drop of this object) to start.
    deferred: Mutex<Option<Deferred>>,
    /// The server's runtime the call lives on (None: the engine's).
    crt: Option<Arc<CallerRt>>,
}

type Deferred = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

/// A waker that does nothing, for a poll whose wake-up nobody waits for (a
/// future polled once here, then handed to a runtime that polls it again).
/// `Waker::noop` is Rust 1.85; the workspace's rust-version is 1.80.
fn noop_waker() -> std::task::Waker {
    use std::task::{RawWaker, RawWakerVTable, Waker};
    fn raw() -> RawWaker {
        RawWaker::new(std::ptr::null(), &VTABLE)
    }
    static VTABLE: RawWakerVTable = RawWakerVTable::new(|_| raw(), |_| {}, |_| {}, |_| {});
    // SAFETY: every function of the vtable ignores the (null) data pointer.
    unsafe { Waker::from_raw(raw()) }
}

/// Starts `op` as a task on the server's runtime.
fn spawn_on(crt: Option<&Arc<CallerRt>>, op: Deferred) {
    drop(runtime_handle(crt).spawn(op));
}

/// Starts `op` on `crt`'s runtime (None: the engine's): in a turn right here
/// when this is the loop thread of a loop-driven runtime (polled at once,
/// spawned from inside the turn if it has to wait; what the turn hands to
/// the loop is processed here too), else as a task. The abort handle of its
/// task, if it has one once this returns.
fn start_on(py: Python<'_>, crt: Option<&Arc<CallerRt>>, op: Deferred) -> Option<tokio::task::AbortHandle> {
    let op = match crt {
        Some(c) if c.on_loop() => match c.turn(py, false, Some(op)) {
            Ok((_, abort)) => return abort,
            Err(op) => op?,
        },
        _ => op,
    };
    Some(runtime_handle(crt).spawn(op).abort_handle())
}

impl std::fmt::Debug for NativeServerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeServerCall").field("info", &self.info).finish_non_exhaustive()
    }
}

impl Drop for NativeServerCall {
    fn drop(&mut self) {
        if let Some(op) = self.take_deferred() {
            spawn_on(self.crt.as_ref(), op);
        }
    }
}

impl NativeServerCall {
    fn new(mut call: IncomingCall, crt: Option<Arc<CallerRt>>) -> Self {
        let receiver = call.take_receiver();
        let sender = call.take_sender();
        NativeServerCall {
            info: call.info().clone(),
            receiver: Arc::new(tokio::sync::Mutex::new(receiver)),
            sender: Arc::new(tokio::sync::Mutex::new(sender)),
            call: Arc::new(Mutex::new(call)),
            deferred: Mutex::new(None),
            crt,
        }
    }

    fn take_deferred(&self) -> Option<Deferred> {
        self.deferred.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn lock_call(&self) -> std::sync::MutexGuard<'_, IncomingCall> {
        self.call.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `fut` unless the call ends first (then CANCELLED).
    fn guarded<T, F>(&self, fut: F) -> impl Future<Output = Result<T, Status>> + Send + 'static
    where
        F: Future<Output = Result<T, Status>> + Send + 'static,
        T: Send + 'static,
    {
        let done = self.lock_call().done();
        async move {
            tokio::select! {
                biased;
                r = fut => r,
                _ = done => Err(Status::cancelled("the call is over")),
            }
        }
    }

    /// Sends the one response and the OK status with `md` as trailers, as
    /// one task on the runtime: h2 then writes message and trailers in one
    /// flush, where sending them from this thread woke the connection task
    /// twice (and, on a busy core, wrote twice). Nothing to report back: if
    /// the call ended first, nothing is sent, as a failed send would.
    /// On a loop-driven runtime (the aio server's), from the loop's thread,
    /// the reply runs in a turn of the runtime right here instead (see
    /// `looprt`): written before this returns, no wake-up.
    pub(crate) fn spawn_reply(&self, py: Python<'_>, message: &[u8], compress: bool, md: Metadata) {
        self.start(py, self.reply_op(message, compress, md));
    }

    /// Starts `op` on the call's runtime ([`start_on`]).
    fn start(&self, py: Python<'_>, op: Deferred) {
        start_on(py, self.crt.as_ref(), op);
    }

    /// The task [`spawn_reply`](Self::spawn_reply) runs.
    fn reply_op(&self, message: &[u8], compress: bool, md: Metadata) -> Deferred {
        let msg = Bytes::copy_from_slice(message);
        let s = self.sender.clone();
        let r = self.receiver.clone();
        let whole = self.call.clone();
        let op = self.guarded(async move {
            // The h2 stream halves are dropped here, on the runtime, rather
            // than with the Python object: dropping the last reference to an
            // h2 stream wakes the connection task, from a Python thread a
            // thread hop more per call.
            let _receiver = r.lock().await.take();
            let Some(mut sender) = s.lock().await.take() else { return Err(Status::internal("no sender")) };
            sender.send_with(msg, compress).await?;
            // The trailers from this task, behind the message (one write),
            // then the handler side is let go (its status changes nothing).
            let st = Status::ok().with_metadata(md);
            sender.finish(&st);
            whole.lock().unwrap_or_else(|e| e.into_inner()).finish(st);
            Ok(())
        });
        Box::pin(async move {
            let _ = op.await;
        })
    }

    /// Runs `fut` here unless the call ends first (then CANCELLED): on a
    /// sync server's runtime, this thread drives it while it waits
    /// ([`run_here`]) unless `fut` is ready at once.
    fn run<T, F>(&self, py: Python<'_>, fut: F) -> Result<T, Status>
    where
        F: Future<Output = Result<T, Status>> + Send + 'static,
        T: Send + 'static,
    {
        let fut = self.guarded(fut);
        if self.crt.is_none() {
            return block_here(py, fut);
        }
        let mut fut = Box::pin(fut);
        if let std::task::Poll::Ready(v) = poll_once(self.crt.as_ref(), fut.as_mut()) {
            return v;
        }
        run_here(py, self.crt.as_ref(), fut).unwrap_or_else(|fut| block_here(py, fut))
    }
}

#[pymethods]
impl NativeServerCall {
    /// The full method path.
    #[getter]
    fn method(&self) -> &str {
        self.info.method()
    }

    /// The request metadata.
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        md_to_py(py, self.info.metadata())
    }

    /// The server span (`Recv.<method>`) as a `traceparent` value, when the
    /// server traces calls and this one is traced.
    fn traceparent(&self) -> Option<String> {
        grpc_core::telemetry::server_traceparent(&self.info)
    }

    /// The peer's address.
    #[getter]
    fn peer(&self) -> &str {
        self.info.peer()
    }

    /// The client's certificate chain (DER), when it presented one.
    fn peer_certificates<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.info.peer_certificates().iter().map(|c| PyBytes::new(py, c)))
    }

    /// The peer's auth properties under gRPC core's names, `[(name, bytes)]`.
    fn auth_properties<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let props = self.info.auth_context().properties();
        PyList::new(py, props.iter().map(|(k, v)| (*k, PyBytes::new(py, v))))
    }

    /// The verified client identity (SANs, else CN), None without one.
    fn peer_identities<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyList>>> {
        let ids = self.info.auth_context().peer_identity();
        if ids.is_empty() {
            return Ok(None);
        }
        PyList::new(py, ids.iter().map(|s| PyBytes::new(py, s.as_bytes()))).map(Some)
    }

    /// The name of the identity property, None without an identity.
    fn peer_identity_key(&self) -> Option<&'static str> {
        self.info.auth_context().peer_identity_property_name()
    }

    /// Seconds left before the deadline, None without one.
    fn time_remaining(&self) -> Option<f64> {
        self.info.time_remaining().map(|d| d.as_secs_f64())
    }

    /// The next request; None once the client half-closed; raises `RpcStatus` if the call is over.
    fn recv<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let r = self.receiver.clone();
        let res = self.run(py, async move {
            match r.lock().await.as_mut() {
                Some(r) => r.recv().await,
                None => Ok(None),
            }
        });
        match res {
            Ok(Some(b)) => Ok(Some(PyBytes::new(py, &b))),
            Ok(None) => Ok(None),
            Err(st) => Err(status_err(py, &st)),
        }
    }

    /// The next request if it is here already (bytes, or None once the client
    /// half-closed), else False: nothing waits (the aio server then awaits
    /// `scall_recv`). Raises `RpcStatus` if the call is over.
    fn try_recv<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let r = self.receiver.clone();
        let fut = self.guarded(async move {
            match r.lock().await.as_mut() {
                Some(r) => r.recv().await,
                None => Ok(None),
            }
        });
        let mut fut = std::pin::pin!(fut);
        match poll_once(self.crt.as_ref(), fut.as_mut()) {
            std::task::Poll::Pending => Ok(pyo3::types::PyBool::new(py, false).to_owned().into_any()),
            std::task::Poll::Ready(Ok(Some(b))) => Ok(PyBytes::new(py, &b).into_any()),
            std::task::Poll::Ready(Ok(None)) => Ok(py.None().into_bound(py)),
            std::task::Poll::Ready(Err(st)) => Err(status_err(py, &st)),
        }
    }

    /// Sends the response headers (once).
    fn send_initial_metadata(&self, py: Python<'_>, metadata: &Bound<'_, PyAny>) -> PyResult<()> {
        let md = md_from_py(Some(metadata))?;
        let s = self.sender.clone();
        let res = self.run(py, async move {
            match s.lock().await.as_mut() {
                Some(s) => s.send_initial_metadata(md).await,
                None => Err(Status::internal("no sender")),
            }
        });
        res.map_err(|st| status_err(py, &st))
    }

    /// Sends one response; raises `RpcStatus` if the call is over.
    #[pyo3(signature = (message, compress=true))]
    fn send(&self, py: Python<'_>, message: &[u8], compress: bool) -> PyResult<()> {
        let msg = Bytes::copy_from_slice(message);
        let s = self.sender.clone();
        let res = self.run(py, async move {
            match s.lock().await.as_mut() {
                Some(s) => s.send_with(msg, compress).await,
                None => Err(Status::internal("no sender")),
            }
        });
        res.map_err(|st| status_err(py, &st))
    }

    /// Sets the response compression (before the headers go out).
    fn set_compression(&self, py: Python<'_>, compression: u8) -> PyResult<()> {
        let Some(c) = compression_from(Some(compression))? else { return Ok(()) };
        let s = self.sender.clone();
        block_here(py, async move {
            if let Some(s) = s.lock().await.as_mut() {
                s.set_compression(c);
            }
        });
        Ok(())
    }

    /// Sends the one response of a unary call and ends it OK, as one task on
    /// the runtime (see `spawn_reply`); returns at once, True. With `defer`,
    /// the task starts only at `CallQueue.pull(after=this call)`, `flush` or
    /// when this object goes: a pool thread that goes on to wait for its next
    /// call then wakes the runtime as it parks, rather than being preempted
    /// by the runtime thread while it still has Python work to do.
    #[pyo3(signature = (message, compress=true, trailing_metadata=None, defer=false))]
    fn reply(
        &self,
        py: Python<'_>,
        message: &[u8],
        compress: bool,
        trailing_metadata: Option<&Bound<'_, PyAny>>,
        defer: bool,
    ) -> PyResult<bool> {
        let md = md_from_py(trailing_metadata)?;
        let op = self.reply_op(message, compress, md);
        if defer {
            if let Some(earlier) = self.deferred.lock().unwrap_or_else(|e| e.into_inner()).replace(op) {
                spawn_on(self.crt.as_ref(), earlier);
            }
        } else {
            self.start(py, op);
        }
        Ok(true)
    }

    /// Starts a deferred reply now (see `reply`).
    fn flush(&self) {
        if let Some(op) = self.take_deferred() {
            spawn_on(self.crt.as_ref(), op);
        }
    }

    /// Ends the call with this status; false if it was already over.
    #[pyo3(signature = (code, details, trailing_metadata=None))]
    fn finish(&self, code: i32, details: String, trailing_metadata: Option<&Bound<'_, PyAny>>) -> PyResult<bool> {
        let md = md_from_py(trailing_metadata)?;
        let st = Status::new(Code::from_i32(code), details).with_metadata(md);
        Ok(self.lock_call().finish(st))
    }

    /// True while the call is neither finished, cancelled nor past its deadline.
    fn is_active(&self) -> bool {
        !self.lock_call().is_done()
    }

    /// Waits until the call is over; false on timeout.
    #[pyo3(signature = (timeout=None))]
    fn wait_done(&self, py: Python<'_>, timeout: Option<f64>) -> bool {
        let done = self.lock_call().done();
        let t = duration_from(timeout);
        wait(py, async move {
            match t {
                Some(t) => tokio::time::timeout(t, done).await.is_ok(),
                None => {
                    done.await;
                    true
                }
            }
        })
    }
}

/// The compiled half of `grpc_core`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RpcStatus", m.py().get_type::<RpcStatus>())?;
    m.add_class::<NativeChannel>()?;
    m.add_class::<NativeManualResolver>()?;
    m.add_class::<NativeCall>()?;
    m.add_class::<CallQueue>()?;
    m.add_class::<NativeServer>()?;
    m.add_class::<NativeServerCall>()?;
    m.add_function(wrap_pyfunction!(_at_exit, m)?)?;
    m.add_class::<auth::NativeCallCredentials>()?;
    m.add_class::<auth::PluginCallback>()?;
    m.add_function(wrap_pyfunction!(logs::log_enable, m)?)?;
    m.add_function(wrap_pyfunction!(logs::log_disable, m)?)?;
    m.add_function(wrap_pyfunction!(logs::log_next, m)?)?;
    m.add_class::<telemetry::NativeTelemetry>()?;
    aio::register(m)?;
    m.add("VERSION", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
