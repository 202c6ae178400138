//! The channel's connection: lazy connect, the gRPC connection-backoff spec,
//! connectivity states, keepalive pings. One HTTP/2 connection per channel for
//! now; the load-balancing seam is [`Connector::pick`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

use super::target::Target;
use super::{BackoffConfig, ChannelOptions, ConnectivityState};
use crate::status::{Code, Status};
use crate::transport::{self, Address};

#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) state: ConnectivityState,
    pub(crate) conn: Option<Ready>,
    pub(crate) error: Option<Status>,
}

/// A ready HTTP/2 connection.
#[derive(Clone, Debug)]
pub(crate) struct Ready {
    pub(crate) send: h2::client::SendRequest<Bytes>,
    /// Bumped to ask the driver to drop this connection (it turned out dead).
    pub(crate) generation: u64,
    pub(crate) active_calls: Arc<AtomicUsize>,
}

#[derive(Debug)]
pub(crate) struct Connector {
    target: Target,
    opts: Arc<ChannelOptions>,
    tls: Option<Arc<rustls::ClientConfig>>,
    server_name: String,
    state: watch::Sender<Snapshot>,
    kick: Notify,
    /// Set to a generation number to drop that connection.
    invalidate: watch::Sender<u64>,
    closed: watch::Sender<bool>,
}

impl Connector {
    pub(crate) fn new(
        target: Target,
        opts: Arc<ChannelOptions>,
        tls: Option<Arc<rustls::ClientConfig>>,
        server_name: String,
    ) -> Arc<Connector> {
        let c = Arc::new(Connector {
            target,
            opts,
            tls,
            server_name,
            state: watch::channel(Snapshot { state: ConnectivityState::Idle, conn: None, error: None }).0,
            kick: Notify::new(),
            invalidate: watch::channel(0).0,
            closed: watch::channel(false).0,
        });
        let driver = c.clone();
        crate::rt::spawn(async move { driver.run().await });
        c
    }

    pub(crate) fn state(&self) -> ConnectivityState {
        self.state.borrow().state
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.state.subscribe()
    }

    /// Leaves IDLE: starts connecting.
    pub(crate) fn connect(&self) {
        self.kick.notify_one();
    }

    /// Closes the channel: SHUTDOWN at once (as grpc-go's `Close`), so no
    /// new call picks a connection; the driver task then drains and exits.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
        self.state.send_replace(Snapshot { state: ConnectivityState::Shutdown, conn: None, error: None });
    }

    pub(crate) fn invalidate(&self, generation: u64) {
        // Stop handing out this connection at once (IDLE, so the next pick
        // asks for a new one): a retry must not get it again before the
        // driver task has seen the invalidation.
        self.state.send_if_modified(|s| {
            let hit = s.conn.as_ref().is_some_and(|c| c.generation == generation);
            if hit {
                *s = Snapshot { state: ConnectivityState::Idle, conn: None, error: None };
            }
            hit
        });
        self.invalidate.send_replace(generation);
    }

    /// Waits for a ready connection (the pick). Fails fast in TRANSIENT_FAILURE
    /// unless `wait_for_ready`; `deadline` bounds the wait.
    pub(crate) async fn pick(&self, wait_for_ready: bool, deadline: Option<Instant>) -> Result<Ready, Status> {
        let mut rx = self.state.subscribe();
        loop {
            // close() takes effect at once, before the driver task has
            // dropped the connection and published SHUTDOWN.
            if *self.closed.borrow() {
                return Err(Status::new(Code::Cancelled, "grpc: the client connection is closing"));
            }
            {
                let snap = rx.borrow_and_update();
                match snap.state {
                    ConnectivityState::Ready => {
                        if let Some(c) = &snap.conn {
                            return Ok(c.clone());
                        }
                    }
                    ConnectivityState::Idle => self.connect(),
                    ConnectivityState::TransientFailure if !wait_for_ready => {
                        let e = snap.error.clone().unwrap_or_else(|| Status::unavailable("connection failed"));
                        return Err(Status::new(Code::Unavailable, e.message().to_string()));
                    }
                    ConnectivityState::Shutdown => {
                        return Err(Status::new(Code::Cancelled, "grpc: the client connection is closing"))
                    }
                    _ => {}
                }
            }
            let changed = rx.changed();
            match deadline {
                Some(d) => match tokio::time::timeout_at(d, changed).await {
                    Ok(r) => r.map_err(|_| Status::unavailable("channel closed"))?,
                    Err(_) => {
                        return Err(Status::deadline_exceeded("context deadline exceeded while waiting for connection"))
                    }
                },
                None => changed.await.map_err(|_| Status::unavailable("channel closed"))?,
            }
        }
    }

    /// Publishes a new state. SHUTDOWN is final: the driver, still winding
    /// down after `close`, never moves the channel out of it.
    fn set(&self, state: ConnectivityState, conn: Option<Ready>, error: Option<Status>) {
        self.state.send_if_modified(|s| {
            if s.state == ConnectivityState::Shutdown {
                return false;
            }
            *s = Snapshot { state, conn, error };
            true
        });
    }

    async fn resolve(&self) -> Result<Vec<Address>, Status> {
        match &self.target {
            Target::Static(a) => Ok(a.clone()),
            Target::Dns { host, port } => {
                let addrs: Vec<_> = tokio::net::lookup_host((host.as_str(), *port))
                    .await
                    .map_err(|e| Status::unavailable(format!("name resolution failed for {host}: {e}")))?
                    .map(Address::Tcp)
                    .collect();
                if addrs.is_empty() {
                    return Err(Status::unavailable(format!("name resolution for {host} returned no addresses")));
                }
                Ok(addrs)
            }
        }
    }

    /// One attempt: resolve, then try each address in order (pick_first).
    async fn connect_once(
        &self,
    ) -> Result<(h2::client::SendRequest<Bytes>, h2::client::Connection<transport::BoxIo, Bytes>), Status> {
        let addrs = self.resolve().await?;
        let mut last = None;
        for addr in &addrs {
            let tls = self.tls.as_ref().map(|c| (c, self.server_name.as_str()));
            match transport::connect(addr, tls).await {
                Ok(io) => {
                    let o = &self.opts;
                    let mut b = h2::client::Builder::new();
                    b.initial_window_size(o.initial_stream_window_size)
                        .initial_connection_window_size(o.initial_connection_window_size)
                        .max_header_list_size(o.max_header_list_size)
                        .max_frame_size(o.max_frame_size)
                        .max_send_buffer_size(1024 * 1024)
                        // Until the server's SETTINGS arrive, open one stream
                        // and queue the rest: streams opened before we know its
                        // MAX_CONCURRENT_STREAMS would be refused (UNAVAILABLE).
                        .initial_max_send_streams(1)
                        .enable_push(false);
                    match b.handshake(io).await {
                        Ok(pair) => return Ok(pair),
                        Err(e) => last = Some(Status::unavailable(format!("HTTP/2 handshake with {addr} failed: {e}"))),
                    }
                }
                Err(e) => last = Some(Status::unavailable(format!("connection to {addr} failed: {e}"))),
            }
        }
        Err(last.unwrap_or_else(|| Status::unavailable("no addresses to connect to")))
    }

    async fn run(self: Arc<Self>) {
        let mut closed = self.closed.subscribe();
        let mut invalidate = self.invalidate.subscribe();
        let mut generation = 0u64;
        loop {
            // IDLE until a call (or connect()) asks for a connection.
            tokio::select! {
                _ = self.kick.notified() => {}
                _ = crate::rt::wait_true(&mut closed) => break,
            }
            let mut backoff = Backoff::new(&self.opts.backoff);
            let (send, conn) = loop {
                self.set(ConnectivityState::Connecting, None, None);
                // connection-backoff.md: the attempt may run until
                // max(backoff deadline, now + MIN_CONNECT_TIMEOUT); after a
                // failure, sleep until the backoff deadline.
                let now = Instant::now();
                let backoff_deadline = now + backoff.next_delay();
                let attempt_deadline = backoff_deadline.max(now + self.opts.connect_timeout);
                let res = tokio::select! {
                    r = tokio::time::timeout_at(attempt_deadline, self.connect_once()) => r,
                    _ = crate::rt::wait_true(&mut closed) => { self.set(ConnectivityState::Shutdown, None, None); return; }
                };
                let err = match res {
                    Ok(Ok(pair)) => break pair,
                    Ok(Err(e)) => e,
                    Err(_) => Status::unavailable("connection attempt timed out"),
                };
                tracing::debug!(error = %err, "connect failed");
                self.set(ConnectivityState::TransientFailure, None, Some(err));
                tokio::select! {
                    _ = tokio::time::sleep_until(backoff_deadline) => {}
                    _ = crate::rt::wait_true(&mut closed) => { self.set(ConnectivityState::Shutdown, None, None); return; }
                }
            };
            generation += 1;
            let active_calls = Arc::new(AtomicUsize::new(0));
            let ready = Ready { send, generation, active_calls: active_calls.clone() };
            self.set(ConnectivityState::Ready, Some(ready), None);
            let ended = self.drive(conn, generation, &active_calls, &mut closed, &mut invalidate).await;
            if ended {
                self.set(ConnectivityState::Shutdown, None, None);
                return;
            }
            // Connection lost: IDLE again; the next call reconnects. Wake a
            // waiter that raced with the drop so it does not wait forever.
            self.set(ConnectivityState::Idle, None, None);
        }
        self.set(ConnectivityState::Shutdown, None, None);
    }

    /// Runs the connection until it ends. Returns true if the channel closed.
    async fn drive(
        &self,
        mut conn: h2::client::Connection<transport::BoxIo, Bytes>,
        generation: u64,
        active_calls: &AtomicUsize,
        closed: &mut watch::Receiver<bool>,
        invalidate: &mut watch::Receiver<u64>,
    ) -> bool {
        let mut ping = conn.ping_pong();
        let keepalive = self.opts.keepalive_time;
        let mut next_ping = keepalive.map(|k| Instant::now() + k);
        loop {
            let ping_due = async {
                match next_ping {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection ended");
                    }
                    return false;
                }
                _ = crate::rt::wait_true(closed) => return true,
                _ = crate::rt::wait_value(invalidate, generation) => {
                    // No new streams fit on this connection (GOAWAY received):
                    // let its calls finish in the background, connect anew.
                    crate::rt::spawn(async move {
                        let _ = conn.await;
                    });
                    return false;
                }
                _ = ping_due => {
                    let k = keepalive.expect("ping only with keepalive");
                    next_ping = Some(Instant::now() + k);
                    if !self.opts.keepalive_permit_without_calls && active_calls.load(Ordering::Relaxed) == 0 {
                        continue;
                    }
                    let Some(p) = ping.as_mut() else { continue };
                    let pong = tokio::time::timeout(self.opts.keepalive_timeout, p.ping(h2::Ping::opaque()));
                    // Keep driving the connection while the ping is in flight.
                    let ok = tokio::select! {
                        r = pong => matches!(r, Ok(Ok(_))),
                        r = &mut conn => { let _ = r; return false; }
                    };
                    if !ok {
                        tracing::debug!("keepalive ping timed out; closing the connection");
                        return false;
                    }
                }
            }
        }
    }
}

/// The gRPC connection-backoff algorithm (connection-backoff.md).
#[derive(Debug)]
pub(crate) struct Backoff {
    cfg: BackoffConfig,
    current: Duration,
}

impl Backoff {
    pub(crate) fn new(cfg: &BackoffConfig) -> Backoff {
        Backoff { cfg: cfg.clone(), current: cfg.initial }
    }
    #[cfg(test)]
    pub(crate) fn current(&self) -> Duration {
        self.current
    }
    /// The jittered delay before the next attempt; advances the backoff.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let j = self.cfg.jitter;
        let factor = 1.0 + j * (2.0 * rand_unit() - 1.0);
        let delay = self.current.mul_f64(factor.max(0.0));
        self.current = self.current.mul_f64(self.cfg.multiplier).min(self.cfg.max);
        delay
    }
}

/// A cheap uniform number in [0, 1) (jitter needs no cryptographic quality).
fn rand_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_follows_spec() {
        let cfg = BackoffConfig::default();
        let mut b = Backoff::new(&cfg);
        let mut prev = Duration::ZERO;
        for _ in 0..30 {
            let base = b.current();
            let d = b.next_delay();
            assert!(
                d >= base.mul_f64(0.8) - Duration::from_millis(1) && d <= base.mul_f64(1.2) + Duration::from_millis(1)
            );
            assert!(base >= prev);
            prev = base;
        }
        assert_eq!(b.current(), Duration::from_secs(120));
    }
}
