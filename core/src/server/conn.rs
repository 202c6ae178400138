//! Accepting connections and driving one HTTP/2 server connection: TLS and
//! h2 handshakes under a deadline, every h2 limit set, keepalive, max idle and
//! age, graceful and forced shutdown.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinSet;
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
        .max_send_buffer_size(1024 * 1024);
    let io = BoxIo(Box::new(PingWatch::new(io, policy.clone())));
    let conn = b.handshake(io).await.map_err(|e| format!("HTTP/2 handshake: {e}"))?;
    Ok((conn, tls_info))
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
    let mut streams: JoinSet<()> = JoinSet::new();
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
    loop {
        let idle_deadline = match (o.max_connection_idle, idle_since) {
            (Some(d), Some(since)) if !shutting_down => Some(since + d),
            _ => None,
        };
        let age_deadline = if shutting_down { None } else { o.max_connection_age.map(|a| born + a) };
        let timer =
            [idle_deadline, age_deadline, next_ping, ping_deadline, age_grace_deadline].into_iter().flatten().min();
        let sleep = async {
            match timer {
                Some(t) => tokio::time::sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        let pong_fut = async {
            match pong.as_mut() {
                Some(p) => p.await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            accepted = conn.accept() => match accepted {
                Some(Ok((req, respond))) => {
                    idle_since = None;
                    let inner = inner.clone();
                    let peer = peer.clone();
                    streams.spawn(super::call::handle_stream(inner, peer, req, respond));
                    policy.active_calls.store(streams.len(), std::sync::atomic::Ordering::Relaxed);
                }
                Some(Err(e)) => {
                    tracing::debug!(error = %e, "connection error");
                    break;
                }
                None => break,
            },
            Some(_) = streams.join_next(), if !streams.is_empty() => {
                policy.active_calls.store(streams.len(), std::sync::atomic::Ordering::Relaxed);
                if streams.is_empty() {
                    idle_since = Some(Instant::now());
                }
            }
            (p, ok) = pong_fut => {
                pong = None;
                ping = Some(p);
                ping_deadline = None;
                if !ok {
                    tracing::debug!("keepalive ping failed; closing");
                    break;
                }
            }
            _ = crate::rt::wait_true(&mut draining), if !shutting_down => {
                shutting_down = true;
                conn.graceful_shutdown();
            }
            _ = crate::rt::wait_true(&mut force) => break,
            _ = policy.notify.notified() => {
                // too_many_pings: GOAWAY ENHANCE_YOUR_CALM, then close once it is flushed.
                conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
                let flush = async { while let Some(Ok(_)) = conn.accept().await {} };
                let _ = tokio::time::timeout(std::time::Duration::from_secs(1), flush).await;
                break;
            }
            _ = sleep => {
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
    // Dropping the JoinSet aborts every handler still running (forced close).
    streams.shutdown().await;
}
