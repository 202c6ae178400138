//! Name resolution: turns the target into address lists for the LB policy.
//! `dns:` resolves A/AAAA through the system resolver, periodically and when
//! the policy asks (a connection failed); `ipv4:`/`ipv6:`/`unix:` are fixed
//! lists; `manual:` targets take addresses from a [`ManualResolver`] that the
//! application (or a binding) feeds at run time.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::time::Instant;

use super::conn::Event;
use super::target::Target;
use super::{BackoffConfig, ChannelOptions};
use crate::error::Error;
use crate::status::Status;
use crate::transport::Address;

/// Re-resolutions a failing connection asks for are at most this frequent
/// (grpc-go's DNS resolver waits 30 s; we also refresh periodically, so a
/// shorter floor only guards against a flapping backend storming DNS).
pub(crate) const MIN_RERESOLVE_INTERVAL: Duration = Duration::from_secs(5);

/// One resolver result.
type Resolution = Result<Vec<Address>, Status>;

/// A resolver whose addresses the application sets. Cheap to clone; every
/// clone is the same resolver, and several channels may use it. Give it to
/// a channel with [`ChannelOptions::manual_resolver`](super::ChannelOptions::manual_resolver)
/// and a `manual:///name` target (the name becomes the default `:authority`).
///
/// Until the first [`update`](ManualResolver::update) the channel has no
/// addresses: calls wait (wait-for-ready) or stay queued in CONNECTING.
#[derive(Clone, Debug)]
pub struct ManualResolver {
    state: Arc<watch::Sender<Option<Resolution>>>,
    resolve_now: Arc<watch::Sender<u64>>,
}

impl Default for ManualResolver {
    fn default() -> Self {
        ManualResolver::new()
    }
}

impl ManualResolver {
    /// A resolver with no addresses yet.
    pub fn new() -> ManualResolver {
        ManualResolver { state: Arc::new(watch::channel(None).0), resolve_now: Arc::new(watch::channel(0).0) }
    }

    /// Replaces the address list; channels using this resolver update their
    /// LB policy (connections to addresses still listed are kept).
    pub fn update(&self, addrs: Vec<Address>) {
        self.state.send_replace(Some(Ok(addrs)));
    }

    /// Like [`update`](Self::update), from strings: `ip:port`, `[ipv6]:port`
    /// or `unix:/path`.
    pub fn update_from_strs<I, S>(&self, addrs: I) -> Result<(), Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let addrs = addrs.into_iter().map(|a| parse_address(a.as_ref())).collect::<Result<Vec<_>, _>>()?;
        self.update(addrs);
        Ok(())
    }

    /// Reports a resolution error: a channel with no usable addresses fails
    /// fast calls with UNAVAILABLE and this message.
    pub fn report_error(&self, message: impl Into<String>) {
        self.state.send_replace(Some(Err(Status::unavailable(message.into()))));
    }

    /// The current address list (`None` before the first update or after an error).
    pub fn addresses(&self) -> Option<Vec<Address>> {
        self.state.borrow().as_ref().and_then(|r| r.as_ref().ok().cloned())
    }

    /// How many times a channel asked for a re-resolution (a connection
    /// failed or dropped). A feeder may poll this to refresh its list.
    pub fn resolve_now_count(&self) -> u64 {
        *self.resolve_now.borrow()
    }
}

/// Parses `ip:port`, `[ipv6]:port` or `unix:/path` into an [`Address`].
pub fn parse_address(s: &str) -> Result<Address, Error> {
    if let Some(p) = s.strip_prefix("unix:") {
        let p = p.strip_prefix("//").unwrap_or(p);
        if p.is_empty() {
            return Err(Error::invalid(format!("invalid address {s:?}: empty unix socket path")));
        }
        return Ok(Address::Unix(p.into()));
    }
    s.parse().map(Address::Tcp).map_err(|_| Error::invalid(format!("invalid address {s:?}: expected ip:port")))
}

/// What to resolve and how.
#[derive(Clone, Debug)]
pub(crate) enum Source {
    Static(Vec<Address>),
    Dns { host: String, port: u16, refresh: Duration },
    Manual(ManualResolver),
}

impl Source {
    pub(crate) fn new(target: Target, manual: Option<ManualResolver>, refresh: Duration) -> Result<Source, Error> {
        match (target, manual) {
            (Target::Manual(_), Some(m)) => Ok(Source::Manual(m)),
            (Target::Manual(name), None) => {
                Err(Error::invalid(format!("target manual:///{name} needs ChannelOptions::manual_resolver")))
            }
            (_, Some(_)) => Err(Error::invalid("ChannelOptions::manual_resolver needs a manual:///name target")),
            (Target::Static(a), None) => Ok(Source::Static(a)),
            (Target::Dns { host, port }, None) => Ok(Source::Dns { host, port, refresh }),
        }
    }

    /// Starts resolving; results arrive as [`Event::Resolved`].
    pub(crate) fn start(&self, events: mpsc::UnboundedSender<Event>, opts: &ChannelOptions) -> Running {
        let now = Arc::new(Notify::new());
        let task = match self.clone() {
            Source::Static(a) => {
                let _ = events.send(Event::Resolved(Ok(a)));
                None
            }
            Source::Dns { host, port, refresh } => {
                let now2 = now.clone();
                let backoff = opts.backoff.clone();
                Some(opts.spawn(dns(host, port, refresh, backoff, now2, events)))
            }
            Source::Manual(m) => {
                let now2 = now.clone();
                Some(opts.spawn(async move {
                    let mut rx = m.state.subscribe();
                    loop {
                        let cur = rx.borrow_and_update().clone();
                        if let Some(r) = cur {
                            if events.send(Event::Resolved(r)).is_err() {
                                return;
                            }
                        }
                        tokio::select! {
                            r = rx.changed() => if r.is_err() { return },
                            _ = now2.notified() => { m.resolve_now.send_modify(|n| *n += 1); continue }
                        }
                    }
                }))
            }
        };
        Running { task, now }
    }
}

async fn dns(
    host: String,
    port: u16,
    refresh: Duration,
    cfg: BackoffConfig,
    now: Arc<Notify>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut backoff = super::conn::Backoff::new(&cfg);
    loop {
        let started = Instant::now();
        let r = match tokio::net::lookup_host((host.as_str(), port)).await {
            Ok(it) => {
                let addrs: Vec<_> = it.map(Address::Tcp).collect();
                if addrs.is_empty() {
                    Err(Status::unavailable(format!("name resolution for {host} returned no addresses")))
                } else {
                    Ok(addrs)
                }
            }
            Err(e) => Err(Status::unavailable(format!("name resolution failed for {host}: {e}"))),
        };
        let failed = r.is_err();
        if let Err(e) = &r {
            tracing::debug!(error = %e, "DNS resolution failed");
        }
        if events.send(Event::Resolved(r)).is_err() {
            return;
        }
        let next = if failed {
            started + backoff.next_delay()
        } else {
            backoff = super::conn::Backoff::new(&cfg);
            started + refresh
        };
        // Wait for the refresh (or the retry after a failure), or an early
        // request, which is honoured no sooner than MIN_RERESOLVE_INTERVAL.
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = now.notified() => {
                tokio::time::sleep_until((started + MIN_RERESOLVE_INTERVAL).min(next)).await;
            }
        }
    }
}

/// A started resolver; stops when dropped.
#[derive(Debug)]
pub(crate) struct Running {
    task: Option<tokio::task::JoinHandle<()>>,
    now: Arc<Notify>,
}

impl Running {
    /// Asks for a re-resolution (a connection failed or dropped).
    pub(crate) fn resolve_now(&self) {
        self.now.notify_one();
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}
