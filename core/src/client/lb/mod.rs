//! Load-balancing policies. A policy owns the channel's subchannels (one per
//! address), turns resolver updates and subchannel state changes into the
//! channel's connectivity state and a [`Picker`] over READY connections. It
//! runs on the channel's control task, so it needs no locks.

mod pick_first;
mod round_robin;

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

/// Picks a connection per call: rotates over the READY connections.
#[derive(Debug)]
pub(crate) struct Picker {
    pub(crate) ready: Vec<Ready>,
    next: AtomicUsize,
}

impl Picker {
    pub(crate) fn new(ready: Vec<Ready>) -> Picker {
        // Start at a random index so channels do not all hit the first backend.
        let start = if ready.len() > 1 { (super::conn::rand_unit() * ready.len() as f64) as usize } else { 0 };
        Picker { ready, next: AtomicUsize::new(start) }
    }

    pub(crate) fn pick(&self) -> Option<Ready> {
        if self.ready.is_empty() {
            return None;
        }
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.ready.len();
        Some(self.ready[i].clone())
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

    pub(crate) fn resolve_now(&self) {
        self.resolver.resolve_now();
    }

    /// Arms a timer; returns its token, delivered to `on_timer`.
    pub(crate) fn timer(&mut self, after: Duration) -> u64 {
        *self.timers += 1;
        let token = *self.timers;
        let events = self.events.clone();
        crate::rt::spawn(async move {
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
}

impl Policy {
    pub(crate) fn new(kind: &LbPolicy, health: Option<String>) -> Policy {
        match kind {
            LbPolicy::PickFirst { shuffle_address_list } => {
                // gRFC A17: pick_first does not use health checking.
                Policy::PickFirst(pick_first::PickFirst::new(*shuffle_address_list))
            }
            LbPolicy::RoundRobin => Policy::RoundRobin(round_robin::RoundRobin::new(health)),
        }
    }

    pub(crate) fn resolved(&mut self, r: Result<Vec<Address>, Status>, h: &mut Helper<'_>) {
        let r = r.map(dedup);
        match self {
            Policy::PickFirst(p) => p.resolved(r, h),
            Policy::RoundRobin(p) => p.resolved(r, h),
        }
    }

    pub(crate) fn exit_idle(&mut self, h: &mut Helper<'_>) {
        match self {
            Policy::PickFirst(p) => p.exit_idle(h),
            Policy::RoundRobin(p) => p.exit_idle(h),
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
        }
    }

    pub(crate) fn describe(&self) -> Vec<SubchannelInfo> {
        match self {
            Policy::PickFirst(p) => p.describe(),
            Policy::RoundRobin(p) => p.describe(),
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
