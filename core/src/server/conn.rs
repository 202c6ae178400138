//! Accepting connections and driving one HTTP/2 server connection: TLS and
//! h2 handshakes under a deadline, every h2 limit set, keepalive, max idle and
//! age, graceful and forced shutdown.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::Poll;

use bytes::Bytes;
use tokio::sync::Notify;
use tokio::task::AbortHandle;
use tokio::time::Instant;

use super::ServerInner;
use crate::transport::pingwatch::{PingPolicy, PingWatch};
use crate::transport::{BoxIo, Io, Listener};

/// A keepalive ping in flight: gives the PingPong back with whether it was answered.
type PongFuture = std::pin::Pin<Box<dyn std::future::Future<Output = (h2::PingPong, bool)> + Send>>;

pub(super) async fn accept_loop(inner: Arc<ServerInner>, listener: Listener) {
    let mut started = inner.started.subscribe();
    crate::rt::wait_true(&mut started).await;
    if *inner.draining.borrow() {
        return;
    }
    loop {
        match listener.accept().await {
            Ok((io, peer)) => {
                inner.connections.fetch_add(1, Ordering::AcqRel);
                let inner = inner.clone();
                tokio::spawn(async move {
                    serve_connection(&inner, io, peer).await;
                    inner.connections.fetch_sub(1, Ordering::AcqRel);
                    inner.conn_done.notify_waiters();
                });
            }
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn handshake(
    inner: &ServerInner,
    io: Box<dyn Io>,
    policy: &Arc<PingPolicy>,
) -> Result<(h2::server::Connection<BoxIo, Bytes>, Option<(String, Vec<Vec<u8>>)>), String> {
    let (io, tls_info): (Box<dyn Io>, _) = match &inner.tls {
        Some(cfg) => {
            let s = tokio_rustls::TlsAcceptor::from(cfg.clone())
                .accept(io)
                .await
                .map_err(|e| format!("TLS handshake: {e}"))?;
            let (_, conn) = s.get_ref();
            if conn.alpn_protocol() != Some(b"h2") {
                return Err("client did not negotiate ALPN h2".into());
            }
            let info = (
                conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_default(),
                conn.peer_certificates().map(|c| c.iter().map(|c| c.to_vec()).collect()).unwrap_or_default(),
            );
            (Box::new(s), Some(info))
        }
        None => (io, None),
    };
    let o = &inner.opts;
    let mut b = h2::server::Builder::new();
    b.initial_window_size(o.initial_stream_window_size)
        .initial_connection_window_size(o.initial_connection_window_size)
        .max_concurrent_streams(o.max_concurrent_streams)
        .max_header_list_size(o.max_header_list_size)
        .max_frame_size(o.max_frame_size)
        .max_pending_accept_reset_streams(o.max_pending_accept_reset_streams)
        .max_local_error_reset_streams(o.max_local_error_reset_streams)
        .max_send_buffer_size(crate::transport::MAX_SEND_BUFFER_SIZE);
    let io = BoxIo(Box::new(PingWatch::new(io, policy.clone())));
    let conn = b.handshake(io).await.map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    Ok((conn, tls_info))
}

/// The handlers running on one connection: counted (keepalive policy, idle
/// timeout) and abortable (forced close). Cheaper than a `JoinSet`: a
/// finished handler removes itself and wakes the connection task only when
/// the connection becomes idle, instead of on every call.
struct Handlers {
    policy: Arc<PingPolicy>,
    registry: std::sync::Mutex<Registry>,
    /// The id of the last handler spawned.
    last_id: std::sync::atomic::AtomicU64,
    /// Signalled when the count drops to zero.
    idle: Notify,
}

#[derive(Default)]
struct Registry {
    running: std::collections::HashMap<u64, AbortHandle>,
    /// Handlers that ended before their spawner registered them.
    ended_early: std::collections::HashSet<u64>,
}

impl Handlers {
    fn new(policy: Arc<PingPolicy>) -> Arc<Handlers> {
        Arc::new(Handlers { policy, registry: Default::default(), last_id: Default::default(), idle: Notify::new() })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn active(&self) -> usize {
        self.policy.active_calls.load(Ordering::Acquire)
    }

    /// Runs `fut` as a handler: polled once here, on the connection task,
    /// and spawned only if it does not finish in that poll; a spawned handler
    /// deregisters itself when it ends or is aborted.
    fn spawn(
        self: &Arc<Self>,
        fut: impl std::future::Future<Output = ()> + Send + 'static,
        cx: &mut std::task::Context<'_>,
    ) {
        self.policy.active_calls.fetch_add(1, Ordering::AcqRel);
        let mut fut = Box::pin(fut);
        // A unary call's request has been read with its HEADERS (h2 reads
        // all that arrived before handing out a new stream), so a handler
        // that does not wait on anything else ends in this poll: no task,
        // no registration, no hand-off between tasks.
        let poll = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(cx)));
        if !matches!(poll, Ok(std::task::Poll::Pending)) {
            if let Err(p) = poll {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %msg, "call task panicked");
            }
            drop(fut);
            self.ended();
            return;
        }
        let id = self.last_id.fetch_add(1, Ordering::Relaxed) + 1;
        struct Done(Arc<Handlers>, u64);
        impl Drop for Done {
            fn drop(&mut self) {
                {
                    let mut r = self.0.lock();
                    if r.running.remove(&self.1).is_none() {
                        r.ended_early.insert(self.1);
                    }
                }
                self.0.ended();
            }
        }
        let done = Done(self.clone(), id);
        // Not under the lock: a runtime that is shutting down drops the
        // future inside `spawn`, and `Done` takes the lock.
        let task = tokio::spawn(async move {
            let _done = done;
            fut.await
        });
        let mut r = self.lock();
        if !r.ended_early.remove(&id) {
            r.running.insert(id, task.abort_handle());
        }
    }

    /// A handler ended: wakes the connection task if it was the last one.
    fn ended(&self) {
        if self.policy.active_calls.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.idle.notify_one();
        }
    }

    fn abort_all(&self) {
        let handles: Vec<AbortHandle> = self.lock().running.drain().map(|(_, h)| h).collect();
        for h in handles {
            h.abort();
        }
    }
}

async fn serve_connection(inner: &Arc<ServerInner>, io: Box<dyn Io>, peer: String) {
    let mut draining = inner.draining.subscribe();
    let mut force = inner.force.subscribe();
    let policy = PingPolicy::new(inner.opts.keepalive_min_time, inner.opts.keepalive_permit_without_calls);
    let hs = tokio::select! {
        r = tokio::time::timeout(inner.opts.handshake_timeout, handshake(inner, io, &policy)) => r,
        _ = crate::rt::wait_true(&mut force) => return,
    };
    let (mut conn, tls) = match hs {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "handshake timed out");
            return;
        }
    };
    let peer = Arc::new(super::call::Peer::new(peer, tls));
    let handlers = Handlers::new(policy.clone());
    let mut ping = conn.ping_pong();
    let o = &inner.opts;
    let born = Instant::now();
    let mut idle_since = Some(Instant::now());
    let mut next_ping = o.keepalive_time.map(|k| Instant::now() + k);
    let mut ping_deadline: Option<Instant> = None;
    let mut pong: Option<PongFuture> = None;
    let mut shutting_down = false;
    let mut age_grace_deadline: Option<Instant> = None;
    if *draining.borrow() {
        conn.graceful_shutdown();
        shutting_down = true;
    }
    // The long-lived waits are created once and stay pinned across loop
    // turns (a turn per accepted and per finished stream): re-creating a
    // 2-hour keepalive timer and three watchers on every turn cost more than
    // the rest of the loop.
    let force_wait = crate::rt::wait_true(&mut force);
    tokio::pin!(force_wait);
    let drain_wait = crate::rt::wait_true(&mut draining);
    tokio::pin!(drain_wait);
    let calm = policy.notify.notified();
    tokio::pin!(calm);
    let idle_wait = handlers.idle.notified();
    tokio::pin!(idle_wait);
    let far = || Instant::now() + std::time::Duration::from_secs(365 * 24 * 3600);
    let sleep = tokio::time::sleep_until(far());
    tokio::pin!(sleep);
    let mut armed: Option<Instant> = None;
    // Streams accepted in one turn, before their handlers run (kept for its buffer).
    let mut batch = Vec::new();
    loop {
        let idle_deadline = match (o.max_connection_idle, idle_since) {
            (Some(d), Some(since)) if !shutting_down => Some(since + d),
            _ => None,
        };
        let age_deadline = if shutting_down { None } else { o.max_connection_age.map(|a| born + a) };
        let timer =
            [idle_deadline, age_deadline, next_ping, ping_deadline, age_grace_deadline].into_iter().flatten().min();
        if timer != armed {
            if let Some(t) = timer {
                sleep.as_mut().reset(t);
            }
            armed = timer;
        }
        tokio::select! {
            biased;
            _ = &mut force_wait => break,
            _ = &mut idle_wait => {
                idle_wait.set(handlers.idle.notified());
                if handlers.active() == 0 && idle_since.is_none() {
                    idle_since = Some(Instant::now());
                }
            }
            accepted = conn.accept() => {
                // Every stream h2 has ready is taken before any is run:
                // running one buffers its response in h2, and the next
                // `accept` would write it out alone (a writev per call
                // instead of one per batch).
                let mut next = Poll::Ready(accepted);
                while let Poll::Ready(Some(Ok(stream))) = next {
                    batch.push(stream);
                    next = std::future::poll_fn(|cx| Poll::Ready(std::pin::pin!(conn.accept()).poll(cx))).await;
                }
                if !batch.is_empty() {
                    idle_since = None;
                    std::future::poll_fn(|cx| {
                        for (req, respond) in batch.drain(..) {
                            let call = super::call::handle_stream(inner.clone(), peer.clone(), req, respond);
                            handlers.spawn(call, cx);
                        }
                        Poll::Ready(())
                    })
                    .await;
                }
                match next {
                    Poll::Ready(Some(Err(e))) => {
                        tracing::debug!(error = %e, "connection error");
                        break;
                    }
                    Poll::Ready(None) => break,
                    _ => {}
                }
            }
            (p, ok) = async { pong.as_mut().expect("guarded").await }, if pong.is_some() => {
                pong = None;
                ping = Some(p);
                ping_deadline = None;
                if !ok {
                    tracing::debug!("keepalive ping failed; closing");
                    break;
                }
            }
            _ = &mut drain_wait, if !shutting_down => {
                shutting_down = true;
                conn.graceful_shutdown();
            }
            _ = &mut calm => {
                // too_many_pings: GOAWAY ENHANCE_YOUR_CALM, then close once it is flushed.
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                let flush = async { while let Some(Ok(_)) = conn.accept().await {} };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush).await;
                break;
            }
            _ = &mut sleep, if armed.is_some() => {
                armed = None; // re-armed (reset) on the next turn
                let now = Instant::now();
                if ping_deadline.is_some_and(|d| d <= now) || age_grace_deadline.is_some_and(|d| d <= now) {
                    break;
                }
                if idle_deadline.is_some_and(|d| d <= now) || age_deadline.is_some_and(|d| d <= now) {
                    shutting_down = true;
                    conn.graceful_shutdown();
                    age_grace_deadline = o.max_connection_age_grace.map(|g| now + g);
                }
                if next_ping.is_some_and(|d| d <= now) {
                    next_ping = o.keepalive_time.map(|k| now + k);
                    if pong.is_none() {
                        if let Some(p) = ping.take() {
                            ping_deadline = Some(now + o.keepalive_timeout);
                            pong = Some(Box::pin(async move {
                                let mut p = p;
                                let ok = p.ping(h2::Ping::opaque()).await.is_ok();
                                (p, ok)
                            }));
                        }
                    }
                }
            }
        }
    }
    // Forced close (or the connection is gone): abort every handler still running.
    handlers.abort_all();
    // ...and wait until they are gone, as `JoinSet::shutdown` did. `idle_wait`
    // is the one waiter registered on `idle` (a second `notified()` would not
    // be the one woken).
    while handlers.active() > 0 {
        idle_wait.as_mut().await;
        idle_wait.set(handlers.idle.notified());
    }
}
