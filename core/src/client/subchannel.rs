//! A subchannel: one address, its own HTTP/2 connection, driven by its own
//! task: IDLE until the LB policy asks it to connect, then CONNECTING, READY
//! or TRANSIENT_FAILURE (connection-backoff.md; after the backoff it goes
//! back to IDLE and the policy decides whether to reconnect). It sends
//! keepalive pings and, with a health-check service configured, only reports
//! READY while the backend is SERVING (gRFC A17). Dropping the handle shuts
//! it down.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::conn::{Backoff, Event, Ready};
use super::health_check::{self, Health};
use super::{ChannelOptions, ConnectivityState};
use crate::status::Status;
use crate::transport::{self, Address};

/// What every subchannel of a channel shares: settings and counters.
#[derive(Debug)]
pub(crate) struct ConnCtx {
    pub(crate) opts: Arc<ChannelOptions>,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) server_name: String,
    pub(crate) scheme: http::uri::Scheme,
    pub(crate) authority: http::uri::Authority,
    pub(crate) user_agent: http::HeaderValue,
    /// Connection generations, unique in the channel (for `invalidate`).
    generation: AtomicU64,
    /// Subchannel ids, unique in the channel.
    ids: AtomicU64,
    /// Every connection's call counter, for the idle timer.
    calls: Mutex<Vec<Weak<AtomicUsize>>>,
    /// The channel was closed: connections are dropped at once rather than
    /// drained (a subchannel removed by the policy lets its calls finish).
    closed: watch::Receiver<bool>,
}

impl ConnCtx {
    pub(crate) fn new(
        opts: Arc<ChannelOptions>,
        tls: Option<Arc<rustls::ClientConfig>>,
        server_name: String,
        scheme: http::uri::Scheme,
        authority: http::uri::Authority,
        user_agent: http::HeaderValue,
        closed: watch::Receiver<bool>,
    ) -> ConnCtx {
        ConnCtx {
            opts,
            tls,
            server_name,
            scheme,
            authority,
            user_agent,
            generation: AtomicU64::new(0),
            ids: AtomicU64::new(0),
            calls: Mutex::new(Vec::new()),
            closed,
        }
    }

    /// Calls in flight on any connection of the channel (live or draining).
    pub(crate) fn active_calls(&self) -> usize {
        let mut v = self.calls.lock().unwrap_or_else(|e| e.into_inner());
        v.retain(|w| w.strong_count() > 0);
        v.iter().filter_map(Weak::upgrade).map(|c| c.load(Ordering::Relaxed)).sum()
    }
}

enum Cmd {
    Connect,
    Invalidate(u64),
}

/// The LB policy's handle on a subchannel.
#[derive(Debug)]
pub(crate) struct Subchannel {
    pub(crate) id: u64,
    pub(crate) addr: Address,
    cmd: mpsc::UnboundedSender<Cmd>,
}

impl std::fmt::Debug for Cmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cmd::Connect => f.write_str("Connect"),
            Cmd::Invalidate(g) => write!(f, "Invalidate({g})"),
        }
    }
}

impl Subchannel {
    /// Starts an IDLE subchannel for `addr`; its state changes arrive as
    /// [`Event::Subchannel`]. `health`: the service to watch (gRFC A17).
    pub(crate) fn new(
        addr: Address,
        ctx: &Arc<ConnCtx>,
        health: Option<String>,
        events: mpsc::UnboundedSender<Event>,
    ) -> Subchannel {
        let id = ctx.ids.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = Task { id, addr: addr.clone(), ctx: ctx.clone(), health, events, cmd: rx };
        ctx.opts.spawn(task.run());
        Subchannel { id, addr, cmd: tx }
    }

    /// Leaves IDLE (no effect in any other state).
    pub(crate) fn connect(&self) {
        let _ = self.cmd.send(Cmd::Connect);
    }

    /// Drops the connection of this generation if it is this subchannel's.
    pub(crate) fn invalidate(&self, generation: u64) {
        let _ = self.cmd.send(Cmd::Invalidate(generation));
    }
}

struct Task {
    id: u64,
    addr: Address,
    ctx: Arc<ConnCtx>,
    health: Option<String>,
    events: mpsc::UnboundedSender<Event>,
    cmd: mpsc::UnboundedReceiver<Cmd>,
}

enum Ended {
    /// The connection was lost or replaced: back to IDLE.
    Lost,
    /// The subchannel was shut down.
    Shutdown,
}

impl Task {
    fn report(&self, state: ConnectivityState, ready: Option<Ready>, error: Option<Status>) {
        let _ = self.events.send(Event::Subchannel { id: self.id, state, ready, error });
    }

    /// Resolves when the handle is dropped; other commands are ignored.
    async fn shutdown(cmd: &mut mpsc::UnboundedReceiver<Cmd>) {
        while cmd.recv().await.is_some() {}
    }

    async fn run(mut self) {
        let mut backoff = Backoff::new(&self.ctx.opts.backoff);
        'idle: loop {
            // IDLE until the policy asks for a connection.
            loop {
                match self.cmd.recv().await {
                    Some(Cmd::Connect) => break,
                    Some(Cmd::Invalidate(_)) => continue,
                    None => return,
                }
            }
            let (send, conn) = {
                self.report(ConnectivityState::Connecting, None, None);
                // connection-backoff.md: the attempt may run until
                // max(backoff deadline, now + MIN_CONNECT_TIMEOUT); after a
                // failure, wait until the backoff deadline, then go IDLE.
                let now = Instant::now();
                let backoff_deadline = now + backoff.next_delay();
                let attempt_deadline = backoff_deadline.max(now + self.ctx.opts.connect_timeout);
                let res = tokio::select! {
                    r = tokio::time::timeout_at(attempt_deadline, connect(&self.addr, &self.ctx)) => r,
                    _ = Self::shutdown(&mut self.cmd) => return,
                };
                match res {
                    Ok(Ok(pair)) => pair,
                    other => {
                        let err = match other {
                            Ok(Err(e)) => e,
                            _ => Status::unavailable(format!("connection attempt to {} timed out", self.addr)),
                        };
                        tracing::debug!(addr = %self.addr, error = %err, "connect failed");
                        self.report(ConnectivityState::TransientFailure, None, Some(err));
                        tokio::select! {
                            _ = tokio::time::sleep_until(backoff_deadline) => {}
                            _ = Self::shutdown(&mut self.cmd) => return,
                        }
                        self.report(ConnectivityState::Idle, None, None);
                        continue 'idle;
                    }
                }
            };
            backoff = Backoff::new(&self.ctx.opts.backoff);
            match self.drive(send, conn).await {
                Ended::Shutdown => return,
                Ended::Lost => self.report(ConnectivityState::Idle, None, None),
            }
        }
    }

    /// Runs a connection until it ends, reporting READY (while healthy).
    async fn drive(
        &mut self,
        send: h2::client::SendRequest<Bytes>,
        mut conn: h2::client::Connection<transport::BoxIo, Bytes>,
    ) -> Ended {
        let generation = self.ctx.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let active_calls = Arc::new(AtomicUsize::new(0));
        {
            let mut calls = self.ctx.calls.lock().unwrap_or_else(|e| e.into_inner());
            calls.retain(|w| w.strong_count() > 0);
            calls.push(Arc::downgrade(&active_calls));
        }
        let ready = Ready {
            send: send.clone(),
            generation,
            active_calls: active_calls.clone(),
            peer: self.addr.to_string().into(),
        };

        let (htx, mut hrx) = watch::channel(if self.health.is_some() { Health::Pending } else { Health::Serving });
        let mut health_open = self.health.is_some();
        let health_task =
            self.health.clone().map(|svc| self.ctx.opts.spawn(health_check::run(send, self.ctx.clone(), svc, htx)));
        let _abort = AbortOnDrop(health_task);
        let publish = |t: &Task, h: &Health| match h {
            Health::Serving => t.report(ConnectivityState::Ready, Some(ready.clone()), None),
            Health::Pending => t.report(ConnectivityState::Connecting, None, None),
            Health::Unhealthy(st) => t.report(ConnectivityState::TransientFailure, None, Some(st.clone())),
        };
        publish(self, &hrx.borrow_and_update().clone());

        let mut ping = conn.ping_pong();
        let keepalive = self.ctx.opts.keepalive_time;
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
                        tracing::debug!(addr = %self.addr, error = %e, "connection ended");
                    }
                    return Ended::Lost;
                }
                c = self.cmd.recv() => match c {
                    None => {
                        // Removed by the policy: let calls in flight finish
                        // (h2 closes the connection when the last handle and
                        // stream are gone). Closing the channel drops it now.
                        if !*self.ctx.closed.borrow() {
                            self.ctx.opts.spawn(async move {
                                let _ = conn.await;
                            });
                        }
                        return Ended::Shutdown;
                    }
                    Some(Cmd::Invalidate(g)) if g == generation => {
                        // No new streams fit on this connection (GOAWAY received):
                        // let its calls finish in the background, connect anew.
                        self.ctx.opts.spawn(async move {
                            let _ = conn.await;
                        });
                        return Ended::Lost;
                    }
                    Some(_) => {}
                },
                r = hrx.changed(), if health_open => match r {
                    Ok(()) => {
                        let h = hrx.borrow_and_update().clone();
                        publish(self, &h);
                    }
                    Err(_) => health_open = false,
                },
                _ = ping_due => {
                    let k = keepalive.expect("ping only with keepalive");
                    next_ping = Some(Instant::now() + k);
                    if !self.ctx.opts.keepalive_permit_without_calls && active_calls.load(Ordering::Relaxed) == 0 {
                        continue;
                    }
                    let Some(p) = ping.as_mut() else { continue };
                    let pong = tokio::time::timeout(self.ctx.opts.keepalive_timeout, p.ping(h2::Ping::opaque()));
                    // Keep driving the connection while the ping is in flight.
                    let ok = tokio::select! {
                        r = pong => matches!(r, Ok(Ok(_))),
                        r = &mut conn => { let _ = r; return Ended::Lost; }
                    };
                    if !ok {
                        tracing::debug!(addr = %self.addr, "keepalive ping timed out; closing the connection");
                        return Ended::Lost;
                    }
                }
            }
        }
    }
}

struct AbortOnDrop(Option<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(t) = &self.0 {
            t.abort();
        }
    }
}

/// One connection attempt: transport (TCP/Unix, TLS) and the HTTP/2 handshake.
async fn connect(
    addr: &Address,
    ctx: &ConnCtx,
) -> Result<(h2::client::SendRequest<Bytes>, h2::client::Connection<transport::BoxIo, Bytes>), Status> {
    let tls = ctx.tls.as_ref().map(|c| (c, ctx.server_name.as_str()));
    let io = transport::connect(addr, tls)
        .await
        .map_err(|e| Status::unavailable(format!("connection to {addr} failed: {e}")))?;
    let o = &ctx.opts;
    let mut b = h2::client::Builder::new();
    b.initial_window_size(o.initial_stream_window_size)
        .initial_connection_window_size(o.initial_connection_window_size)
        .max_header_list_size(o.max_header_list_size)
        .max_frame_size(o.max_frame_size)
        .max_send_buffer_size(transport::MAX_SEND_BUFFER_SIZE)
        // Until the server's SETTINGS arrive, open one stream and queue the
        // rest: streams opened before we know its MAX_CONCURRENT_STREAMS
        // would be refused (UNAVAILABLE).
        .initial_max_send_streams(1)
        .enable_push(false);
    b.handshake(io).await.map_err(|e| Status::unavailable(format!("HTTP/2 handshake with {addr} failed: {e}")))
}
