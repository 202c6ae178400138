//! Load-balancing policies. A policy owns the channel's subchannels (one per
//! address), turns resolver updates and subchannel state changes into the
//! channel's connectivity state and a [`Picker`] over READY connections. It
//! runs on the channel's control task, so it needs no locks.

mod endpoint;
mod pick_first;
mod ring_hash;
mod round_robin;
mod xxh64;

pub(crate) use ring_hash::{DEFAULT_MAX_RING_SIZE, DEFAULT_MIN_RING_SIZE, RING_SIZE_CAP, RING_SIZE_LIMIT};
pub(crate) use xxh64::xxh64;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::conn::{Connector, Event, Ready};
use super::resolver;
use super::service_config::LbPolicy;
use super::subchannel::{ConnCtx, Subchannel};
use super::ConnectivityState;
use crate::status::Status;
use crate::transport::Address;

/// Picks a connection per call: rotates over the READY connections
/// (pick_first, round_robin), or walks ring_hash's ring.
#[derive(Debug)]
pub(crate) enum Picker {
    Rotate { ready: Vec<Ready>, next: AtomicUsize },
    Ring(ring_hash::RingPicker),
}

impl Picker {
    pub(crate) fn new(ready: Vec<Ready>) -> Picker {
        // Start at a random index so channels do not all hit the first backend.
        let start = if ready.len() > 1 { (super::conn::rand_unit() * ready.len() as f64) as usize } else { 0 };
        Picker::Rotate { ready, next: AtomicUsize::new(start) }
    }

    /// A connection for a call; `hash` is its request hash (ring_hash only;
    /// None: random). None: wait for the next picker (or fail fast).
    pub(crate) fn pick(&self, hash: Option<u64>) -> Option<Ready> {
        match self {
            Picker::Rotate { ready, next } => {
                if ready.is_empty() {
                    return None;
                }
                let i = next.fetch_add(1, Ordering::Relaxed) % ready.len();
                Some(ready[i].clone())
            }
            Picker::Ring(r) => r.pick(hash),
        }
    }

    /// Whether a connection of this generation may be picked.
    pub(crate) fn has(&self, generation: u64) -> bool {
        match self {
            Picker::Rotate { ready, .. } => ready.iter().any(|r| r.generation == generation),
            Picker::Ring(r) => r.ready().any(|r| r.generation == generation),
        }
    }

    /// This picker without the connections of `generations`; None when a
    /// rotating picker has nothing left (a ring picker is kept: its picks
    /// reconnect what they need).
    pub(crate) fn without(&self, generations: &[u64]) -> Option<Picker> {
        match self {
            Picker::Rotate { ready, .. } => {
                let rest: Vec<Ready> = ready.iter().filter(|r| !generations.contains(&r.generation)).cloned().collect();
                (!rest.is_empty()).then(|| Picker::new(rest))
            }
            Picker::Ring(r) => Some(Picker::Ring(r.without(generations))),
        }
    }

    /// Whether any connection is READY.
    pub(crate) fn has_ready(&self) -> bool {
        match self {
            Picker::Rotate { ready, .. } => !ready.is_empty(),
            Picker::Ring(r) => r.ready().next().is_some(),
        }
    }
}

/// What a policy may do: make subchannels, publish state, ask for
/// re-resolution, set timers.
pub(crate) struct Helper<'a> {
    pub(crate) connector: &'a Connector,
    pub(crate) ctx: &'a Arc<ConnCtx>,
    pub(crate) events: &'a mpsc::UnboundedSender<Event>,
    pub(crate) resolver: &'a resolver::Running,
    pub(crate) timers: &'a mut u64,
}

impl Helper<'_> {
    pub(crate) fn new_subchannel(&self, addr: Address, health: Option<String>) -> Subchannel {
        Subchannel::new(addr, self.ctx, health, self.events.clone())
    }

    pub(crate) fn publish(&self, state: ConnectivityState, ready: Vec<Ready>, error: Option<Status>) {
        self.connector.publish(state, ready, error);
    }

    pub(crate) fn publish_ring(&self, state: ConnectivityState, picker: ring_hash::RingPicker, error: Option<Status>) {
        self.connector.publish_picker(state, Some(Picker::Ring(picker)), error);
    }

    pub(crate) fn resolve_now(&self) {
        self.resolver.resolve_now();
    }

    /// Arms a timer; returns its token, delivered to `on_timer`.
    pub(crate) fn timer(&mut self, after: Duration) -> u64 {
        *self.timers += 1;
        let token = *self.timers;
        let events = self.events.clone();
        self.ctx.opts.spawn(async move {
            tokio::time::sleep(after).await;
            let _ = events.send(Event::Timer(token));
        });
        token
    }
}

/// A subchannel's address and state, for [`Channel::subchannels`](super::Channel::subchannels).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubchannelInfo {
    /// The address.
    pub address: Address,
    /// Its connectivity state (READY only while healthy, with health checking).
    pub state: ConnectivityState,
}

/// The channel's policy.
#[derive(Debug)]
pub(crate) enum Policy {
    PickFirst(pick_first::PickFirst),
    RoundRobin(round_robin::RoundRobin),
    RingHash(ring_hash::RingHash),
}

impl Policy {
    pub(crate) fn new(kind: &LbPolicy, health: Option<String>) -> Policy {
        match kind {
            LbPolicy::PickFirst { shuffle_address_list } => {
                // gRFC A17: pick_first does not use health checking.
                Policy::PickFirst(pick_first::PickFirst::new(*shuffle_address_list))
            }
            LbPolicy::RoundRobin => Policy::RoundRobin(round_robin::RoundRobin::new(health)),
            LbPolicy::RingHash { min_ring_size, max_ring_size, .. } => {
                Policy::RingHash(ring_hash::RingHash::new(*min_ring_size, *max_ring_size))
            }
        }
    }

    pub(crate) fn resolved(&mut self, r: Result<Vec<Address>, Status>, h: &mut Helper<'_>) {
        let r = r.map(dedup);
        match self {
            Policy::PickFirst(p) => p.resolved(r, h),
            Policy::RoundRobin(p) => p.resolved(r, h),
            Policy::RingHash(p) => p.resolved(r, h),
        }
    }

    pub(crate) fn exit_idle(&mut self, h: &mut Helper<'_>) {
        match self {
            Policy::PickFirst(p) => p.exit_idle(h),
            Policy::RoundRobin(p) => p.exit_idle(h),
            Policy::RingHash(p) => p.exit_idle(h),
        }
    }

    pub(crate) fn subchannel_state(
        &mut self,
        id: u64,
        state: ConnectivityState,
        ready: Option<Ready>,
        error: Option<Status>,
        h: &mut Helper<'_>,
    ) {
        match self {
            Policy::PickFirst(p) => p.subchannel_state(id, state, ready, error, h),
            Policy::RoundRobin(p) => p.subchannel_state(id, state, ready, error, h),
            Policy::RingHash(p) => p.subchannel_state(id, state, ready, error, h),
        }
    }

    /// A ring_hash pick asks subchannel `id` to connect.
    pub(crate) fn connect(&mut self, id: u64, h: &mut Helper<'_>) {
        if let Policy::RingHash(p) = self {
            p.connect(id, h)
        }
    }

    pub(crate) fn timer(&mut self, token: u64, h: &mut Helper<'_>) {
        if let Policy::PickFirst(p) = self {
            p.timer(token, h)
        }
    }

    pub(crate) fn invalidate(&mut self, generation: u64, h: &mut Helper<'_>) {
        match self {
            Policy::PickFirst(p) => p.invalidate(generation, h),
            Policy::RoundRobin(p) => p.invalidate(generation, h),
            Policy::RingHash(p) => p.invalidate(generation, h),
        }
    }

    pub(crate) fn describe(&self) -> Vec<SubchannelInfo> {
        match self {
            Policy::PickFirst(p) => p.describe(),
            Policy::RoundRobin(p) => p.describe(),
            Policy::RingHash(p) => p.describe(),
        }
    }
}

fn dedup(addrs: Vec<Address>) -> Vec<Address> {
    let mut out: Vec<Address> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !out.contains(&a) {
            out.push(a);
        }
    }
    out
}
