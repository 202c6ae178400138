//! The channel's control plane: the resolver feeds addresses to the LB
//! policy, which owns one subchannel (connection) per address and publishes
//! the channel's connectivity state and a picker. Everything runs on one
//! control task per channel, so the policy needs no locks. Calls meet it in
//! [`Connector::pick`]: one connection per call (per attempt). An idle
//! timer drops everything after a quiet period (IDLE); the next call
//! restarts resolution and connecting.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::lb::{Helper, Picker, Policy, SubchannelInfo};
use super::resolver::Source;
use super::service_config::{LbPolicy, ServiceConfig};
use super::subchannel::ConnCtx;
use super::target::Target;
use super::{BackoffConfig, ChannelOptions, ConnectivityState};
use crate::error::Error;
use crate::status::{Code, Status};
use crate::transport::Address;

#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    pub(crate) state: ConnectivityState,
    pub(crate) picker: Option<Arc<Picker>>,
    pub(crate) error: Option<Status>,
}

/// A ready HTTP/2 connection.
#[derive(Clone, Debug)]
pub(crate) struct Ready {
    pub(crate) send: h2::client::SendRequest<Bytes>,
    /// Unique in the channel; `invalidate(generation)` drops this connection.
    pub(crate) generation: u64,
    pub(crate) active_calls: Arc<AtomicUsize>,
    /// The address connected to (`ip:port` or `unix:path`).
    pub(crate) peer: Arc<str>,
}

/// What reaches the control task.
#[derive(Debug)]
pub(crate) enum Event {
    /// A resolver result.
    Resolved(Result<Vec<Address>, Status>),
    /// A subchannel changed state.
    Subchannel { id: u64, state: ConnectivityState, ready: Option<Ready>, error: Option<Status> },
    /// A call (or `connect()`) wants a connection.
    ExitIdle,
    /// A connection turned out dead or full (GOAWAY).
    Invalidate(u64),
    /// A policy timer fired.
    Timer(u64),
    /// A pick wants this subchannel connected (ring_hash).
    Connect(u64),
}

#[derive(Debug)]
pub(crate) struct Connector {
    source: Source,
    ctx: Arc<ConnCtx>,
    service_config: ServiceConfig,
    state: watch::Sender<Snapshot>,
    events: mpsc::UnboundedSender<Event>,
    closed: watch::Sender<bool>,
    /// When the last pick happened, in ms since `epoch` (for the idle timer).
    last_pick: AtomicU64,
    epoch: Instant,
    /// Recently invalidated generations: never published again.
    invalidated: Mutex<Vec<u64>>,
    subchannels: Mutex<Vec<SubchannelInfo>>,
}

impl Connector {
    pub(crate) fn new(
        target: Target,
        opts: Arc<ChannelOptions>,
        tls: Option<Arc<rustls::ClientConfig>>,
        server_name: String,
        scheme: http::uri::Scheme,
        authority: http::uri::Authority,
        user_agent: http::HeaderValue,
    ) -> Result<Arc<Connector>, Error> {
        let service_config = match &opts.service_config {
            Some(json) => ServiceConfig::parse(json)?,
            None => ServiceConfig::default(),
        };
        let source = Source::new(target, opts.manual_resolver.clone(), opts.dns_refresh_interval)?;
        let closed = watch::channel(false).0;
        let ctx = Arc::new(ConnCtx::new(opts, tls, server_name, scheme, authority, user_agent, closed.subscribe()));
        let (events, rx) = mpsc::unbounded_channel();
        let c = Arc::new(Connector {
            source,
            ctx,
            service_config,
            state: watch::channel(Snapshot { state: ConnectivityState::Idle, picker: None, error: None }).0,
            events,
            closed,
            last_pick: AtomicU64::new(0),
            epoch: Instant::now(),
            invalidated: Mutex::new(Vec::new()),
            subchannels: Mutex::new(Vec::new()),
        });
        let driver = c.clone();
        c.ctx.opts.spawn(async move { driver.run(rx).await });
        Ok(c)
    }

    pub(crate) fn state(&self) -> ConnectivityState {
        self.state.borrow().state
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Snapshot> {
        self.state.subscribe()
    }

    /// The channel's service config (empty if none was given).
    pub(crate) fn service_config(&self) -> &ServiceConfig {
        &self.service_config
    }

    /// The subchannels of the current policy and their states.
    pub(crate) fn subchannels(&self) -> Vec<SubchannelInfo> {
        self.subchannels.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Leaves IDLE: starts resolving and connecting.
    pub(crate) fn connect(&self) {
        let _ = self.events.send(Event::ExitIdle);
    }

    /// Closes the channel: SHUTDOWN at once (as grpc-go's `Close`), so no
    /// new call picks a connection; the control task then drops everything.
    pub(crate) fn close(&self) {
        self.closed.send_replace(true);
        self.state.send_replace(Snapshot { state: ConnectivityState::Shutdown, picker: None, error: None });
    }

    /// Stops handing out this connection at once (a retry must not get it
    /// again before the control task has seen the invalidation); its
    /// subchannel then drops it and reconnects.
    pub(crate) fn invalidate(&self, generation: u64) {
        {
            let mut inv = self.invalidated.lock().unwrap_or_else(|e| e.into_inner());
            if inv.len() >= 64 {
                inv.remove(0);
            }
            inv.push(generation);
        }
        self.state.send_if_modified(|s| {
            let Some(p) = &s.picker else { return false };
            if !p.has(generation) {
                return false;
            }
            match p.without(&[generation]) {
                Some(rest) if rest.has_ready() => s.picker = Some(Arc::new(rest)),
                // IDLE, so the next pick asks for a new connection.
                rest => *s = Snapshot { state: ConnectivityState::Idle, picker: rest.map(Arc::new), error: None },
            }
            true
        });
        let _ = self.events.send(Event::Invalidate(generation));
    }

    /// The request hash of a call with `metadata` for ring_hash (gRFC A76):
    /// xxHash64 of the `requestHashHeader` values joined with ","; None
    /// (a random hash per pick) without the header or another policy.
    pub(crate) fn request_hash(&self, metadata: &crate::metadata::Metadata) -> Option<u64> {
        let LbPolicy::RingHash { request_hash_header: Some(header), .. } = self.service_config.lb_policy() else {
            return None;
        };
        let mut values = metadata.get_all(header).peekable();
        values.peek()?;
        let mut key = Vec::new();
        for (i, v) in values.enumerate() {
            if i > 0 {
                key.push(b',');
            }
            key.extend_from_slice(v.as_bytes());
        }
        Some(super::lb::xxh64(&key))
    }

    /// Waits for a ready connection (the pick). Fails fast in TRANSIENT_FAILURE
    /// unless `wait_for_ready`; `deadline` bounds the wait. `hash`: the
    /// call's request hash (ring_hash; see [`request_hash`](Self::request_hash)).
    pub(crate) async fn pick(
        &self,
        wait_for_ready: bool,
        deadline: Option<Instant>,
        hash: Option<u64>,
    ) -> Result<Ready, Status> {
        let now = self.epoch.elapsed().as_millis() as u64;
        if self.last_pick.load(Ordering::Relaxed) != now {
            self.last_pick.store(now, Ordering::Relaxed);
        }
        let mut rx = self.state.subscribe();
        loop {
            // close() takes effect at once.
            if *self.closed.borrow() {
                return Err(Status::new(Code::Cancelled, "grpc: the client connection is closing"));
            }
            {
                let snap = rx.borrow_and_update();
                if let Some(r) = snap.picker.as_ref().and_then(|p| p.pick(hash)) {
                    return Ok(r);
                }
                match snap.state {
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

    /// Publishes the channel's state and picker (from the policy). SHUTDOWN
    /// is final: the control task, still winding down after `close`, never
    /// moves the channel out of it.
    pub(crate) fn publish(&self, state: ConnectivityState, ready: Vec<Ready>, error: Option<Status>) {
        self.publish_picker(state, Some(Picker::new(ready)), error);
    }

    /// [`publish`](Self::publish) with the policy's own picker. A READY
    /// channel whose connections were all invalidated meanwhile is IDLE.
    pub(crate) fn publish_picker(&self, state: ConnectivityState, picker: Option<Picker>, error: Option<Status>) {
        let picker = {
            let inv = self.invalidated.lock().unwrap_or_else(|e| e.into_inner());
            picker.and_then(|p| p.without(&inv))
        };
        let state = match (state, picker.as_ref().is_some_and(Picker::has_ready)) {
            (ConnectivityState::Ready, false) => ConnectivityState::Idle,
            (s, _) => s,
        };
        let picker = picker.map(Arc::new);
        self.state.send_if_modified(|s| {
            if s.state == ConnectivityState::Shutdown {
                return false;
            }
            *s = Snapshot { state, picker, error };
            true
        });
    }

    async fn run(self: Arc<Self>, mut rx: mpsc::UnboundedReceiver<Event>) {
        let mut closed = self.closed.subscribe();
        let mut timers = 0u64;
        loop {
            // IDLE until a call (or connect()) asks for a connection.
            loop {
                tokio::select! {
                    ev = rx.recv() => match ev {
                        Some(Event::ExitIdle) => break,
                        Some(_) => continue,
                        None => return,
                    },
                    _ = crate::rt::wait_true(&mut closed) => return self.publish(ConnectivityState::Shutdown, Vec::new(), None),
                }
            }
            self.publish(ConnectivityState::Connecting, Vec::new(), None);
            let resolver = self.source.start(self.events.clone(), &self.ctx.opts);
            let health = self.service_config.health_check_service().map(str::to_string);
            let mut policy = Policy::new(self.service_config.lb_policy(), health);
            self.last_pick.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
            let idle_timeout = self.ctx.opts.idle_timeout.filter(|d| !d.is_zero());
            loop {
                let idle_at = idle_timeout
                    .map(|t| self.epoch + Duration::from_millis(self.last_pick.load(Ordering::Relaxed)) + t);
                let idle_due = async {
                    match idle_at {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                };
                let ev = tokio::select! {
                    ev = rx.recv() => match ev { Some(ev) => ev, None => return },
                    _ = crate::rt::wait_true(&mut closed) => {
                        drop(policy);
                        self.subchannels.lock().unwrap_or_else(|e| e.into_inner()).clear();
                        return self.publish(ConnectivityState::Shutdown, Vec::new(), None);
                    }
                    _ = idle_due => {
                        if self.ctx.active_calls() > 0 {
                            // Calls in flight are activity.
                            self.last_pick.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
                            continue;
                        }
                        let since = (self.epoch.elapsed().as_millis() as u64)
                            .saturating_sub(self.last_pick.load(Ordering::Relaxed));
                        if Duration::from_millis(since) < idle_timeout.unwrap_or_default() {
                            continue;
                        }
                        tracing::debug!("channel idle timeout: dropping connections");
                        break;
                    }
                };
                let mut h = Helper {
                    connector: &self,
                    ctx: &self.ctx,
                    events: &self.events,
                    resolver: &resolver,
                    timers: &mut timers,
                };
                match ev {
                    Event::Resolved(r) => policy.resolved(r, &mut h),
                    Event::Subchannel { id, state, ready, error } => {
                        policy.subchannel_state(id, state, ready, error, &mut h)
                    }
                    Event::ExitIdle => policy.exit_idle(&mut h),
                    Event::Invalidate(g) => policy.invalidate(g, &mut h),
                    Event::Timer(t) => policy.timer(t, &mut h),
                    Event::Connect(id) => policy.connect(id, &mut h),
                }
                *self.subchannels.lock().unwrap_or_else(|e| e.into_inner()) = policy.describe();
            }
            // Idle timeout: drop the policy (its subchannels and connections)
            // and the resolver; IDLE until the next call.
            drop(policy);
            drop(resolver);
            self.subchannels.lock().unwrap_or_else(|e| e.into_inner()).clear();
            self.publish(ConnectivityState::Idle, Vec::new(), None);
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
pub(crate) fn rand_unit() -> f64 {
    (rand_u64() >> 11) as f64 / (1u64 << 53) as f64
}

/// A cheap random u64 (jitter, shuffles, ring_hash's random request hash).
pub(crate) fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0),
    );
    h.finish()
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
