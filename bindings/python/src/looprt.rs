//! An asyncio loop thread as the driver of a `current_thread` runtime (the
//! aio server's): the loop watches the runtime's epoll descriptor
//! (`loop.add_reader`) and, when it is readable, runs a *turn*: it enters
//! the runtime with `block_on` and runs what is ready (the connections' I/O,
//! the tasks it wakes, tasks spawned from outside, which make the runtime's
//! eventfd, and so the descriptor, readable) until nothing is, then goes
//! back to the loop. A request is then read, and its reply written, on the
//! loop thread: no hand-off to a runtime thread and back. The runtime's
//! driver thread ([`super::CallerRt`]) still holds it whenever no turn has
//! run for its linger time (timers, a loop busy elsewhere).
//!
//! tokio does not hand out its epoll descriptor: [`build`] finds the one the
//! runtime creates (the new `anon_inode:[eventpoll]` descriptors while it is
//! built, mio's and its duplicate, checked to watch an eventfd created with
//! them) and keeps a duplicate, so that the loop's registration never
//! outlives it. Where that fails, there
//! is no descriptor and the driver thread runs the runtime alone.
//!
//! A turn ends in tokio's `on_thread_park` hook: when the scheduler has no
//! task left and is about to park, the hook looks at the descriptor
//! (`poll`, nothing consumed); if nothing is ready it wakes the turn's
//! future, so that tokio polls I/O once without blocking and returns. An
//! event that lands between that look and tokio's last poll leaves the task
//! it wakes queued after the turn: the next turn (the next readable event)
//! or the driver thread (within its linger time) runs it.

use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};

use tokio::task::AbortHandle;

use super::CallerRt;

/// The descriptors of this process whose link reads `kind`.
fn fds(kind: &str) -> HashSet<RawFd> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return HashSet::new() };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let fd = e.file_name().to_str()?.parse().ok()?;
        (std::fs::read_link(e.path()).ok()?.to_str()? == kind).then_some(fd)
    })
    .collect()
}

/// The descriptors epoll `ep` watches (`tfd:` lines of its fdinfo).
fn watched(ep: RawFd) -> HashSet<RawFd> {
    let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{ep}")).unwrap_or_default();
    info.lines().filter_map(|l| l.strip_prefix("tfd:")?.split_whitespace().next()?.parse().ok()).collect()
}

/// Builds the runtime with the turn hook; returns it with a duplicate of its
/// epoll descriptor when that was found (see the module's notes).
pub(crate) fn build(
    builder: &mut tokio::runtime::Builder,
) -> std::io::Result<(tokio::runtime::Runtime, Option<OwnedFd>)> {
    const EPOLL: &str = "anon_inode:[eventpoll]";
    const EVENTFD: &str = "anon_inode:[eventfd]";
    static BUILDING: Mutex<()> = Mutex::new(());
    let _one = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let (ep0, ev0) = (fds(EPOLL), fds(EVENTFD));
    let rt = builder.on_thread_park(on_park).build()?;
    let new_ep: Vec<RawFd> = fds(EPOLL).difference(&ep0).copied().collect();
    let new_ev: HashSet<RawFd> = fds(EVENTFD).difference(&ev0).copied().collect();
    // mio keeps a duplicate of its epoll descriptor (its registry's): every
    // new one must watch the same descriptors, among them a new eventfd.
    let watch = new_ep.first().map(|&ep| watched(ep)).unwrap_or_default();
    let fd = if !watch.is_disjoint(&new_ev) && new_ep.iter().all(|&ep| watched(ep) == watch) {
        // SAFETY: `new_ep[0]` is open (the runtime just made it and holds
        // it); it is only borrowed to be duplicated.
        unsafe { BorrowedFd::borrow_raw(new_ep[0]) }.try_clone_to_owned().ok()
    } else {
        None
    };
    Ok((rt, fd))
}

/// Whether `fd` is readable now (`poll` with no timeout; nothing consumed).
fn readable(fd: RawFd) -> bool {
    #[repr(C)]
    struct PollFd {
        fd: i32,
        events: i16,
        revents: i16,
    }
    extern "C" {
        fn poll(fds: *mut PollFd, nfds: std::ffi::c_ulong, timeout: i32) -> i32;
    }
    const POLLIN: i16 = 1;
    let mut p = PollFd { fd, events: POLLIN, revents: 0 };
    // SAFETY: one valid pollfd, no timeout.
    unsafe { poll(&mut p, 1, 0) > 0 && p.revents != 0 }
}

/// The turn this thread is running, if any.
struct Turn {
    epfd: RawFd,
    /// The next park skips the look at the descriptor: the turn was started
    /// because it was readable (`drive`), so tokio polls its I/O at once
    /// (without blocking) instead of after a `poll` that would say so.
    fresh: Cell<bool>,
    idle: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

thread_local! {
    static TURN: RefCell<Option<Rc<Turn>>> = const { RefCell::new(None) };
}

/// tokio's `on_thread_park` hook: ends this thread's turn when nothing is
/// ready (see the module's notes). Other threads (the driver) park as usual.
fn on_park() {
    let _ = TURN.try_with(|t| {
        let Ok(t) = t.try_borrow() else { return };
        let Some(turn) = &*t else { return };
        // Waking the turn's future keeps tokio from blocking: it polls its
        // I/O once with no timeout, then polls the future, which ends the
        // turn if `idle`.
        let fresh = turn.fresh.replace(false);
        if fresh || !readable(turn.epfd) {
            turn.idle.set(!fresh);
            if let Some(w) = &*turn.waker.borrow() {
                w.wake_by_ref();
            }
        }
    });
}

/// Runs one turn of `rt` (from `crt.here()`) on this thread; `epfd` is the
/// runtime's epoll descriptor, `readable` whether it was just seen readable.
/// `first` runs in it: polled at once, and spawned from inside the turn if
/// it has to wait (no wake-up of the runtime); the abort handle of that
/// task is returned.
pub(crate) fn turn(
    crt: &CallerRt,
    rt: Arc<tokio::runtime::Runtime>,
    epfd: RawFd,
    readable: bool,
    first: Option<super::Deferred>,
) -> Option<AbortHandle> {
    let mut first = first;
    let mut spawned = None;
    let turn = Rc::new(Turn { epfd, fresh: Cell::new(readable), idle: Cell::new(false), waker: RefCell::new(None) });
    TURN.with(|t| *t.borrow_mut() = Some(turn.clone()));
    struct Clear;
    impl Drop for Clear {
        fn drop(&mut self) {
            let _ = TURN.try_with(|t| t.borrow_mut().take());
        }
    }
    let _clear = Clear;
    crt.block_on(
        rt,
        std::future::poll_fn(|cx| {
            if let Some(mut op) = first.take() {
                if op.as_mut().poll(cx).is_pending() {
                    spawned = Some(tokio::spawn(op).abort_handle());
                }
            }
            if turn.idle.get() {
                return Poll::Ready(());
            }
            *turn.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }),
    );
    spawned
}

/// The raw descriptor of a runtime's epoll duplicate.
pub(crate) fn raw(fd: &Option<OwnedFd>) -> Option<RawFd> {
    fd.as_ref().map(|f| f.as_raw_fd())
}
