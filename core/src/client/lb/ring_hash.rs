//! ring_hash (gRFC A42, with A76's `requestHashHeader`), as grpc-go does it:
//! every address gets ring entries at xxHash64(`"<address>_<index>"`), as
//! many as its share of the ring (weights are equal: our resolvers give
//! none); the ring has between `minRingSize` and `maxRingSize` entries. A
//! call hashes the `requestHashHeader` values (joined with ","), or takes a
//! random hash when the header is not configured or not sent (A76), and
//! walks the ring from there. Subchannels connect on demand: a pick that
//! lands on an IDLE one asks it to connect and waits.
//!
//! With a request hash, the pick is the first entry that is READY,
//! CONNECTING (wait) or IDLE (connect, wait), skipping TRANSIENT_FAILURE
//! ones (A42, A61). With a random hash it is the first READY entry, and at
//! most one IDLE subchannel is asked to connect along the way (none if one
//! is already connecting), so header-less calls do not connect everything
//! (A76). A failed subchannel stays TRANSIENT_FAILURE and reconnects after
//! its backoff until it is READY again (sticky, as pick_first children in
//! grpc-go).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::endpoint::{Entry, Reconnect};
use super::xxh64::xxh64;
use super::{Helper, SubchannelInfo};
use crate::client::conn::{Event, Ready};
use crate::client::ConnectivityState;
use crate::status::Status;
use crate::transport::Address;

/// `minRingSize` when not set (grpc-go, A42).
pub(crate) const DEFAULT_MIN_RING_SIZE: u64 = 1024;
/// `maxRingSize` when not set (grpc-go's default cap).
pub(crate) const DEFAULT_MAX_RING_SIZE: u64 = 4096;
/// Ring sizes above this are rejected (A42).
pub(crate) const RING_SIZE_LIMIT: u64 = 8 * 1024 * 1024;
/// Both sizes are capped at this (grpc-go's `GRPC_RING_HASH_CAP` default).
pub(crate) const RING_SIZE_CAP: u64 = 4096;

/// One point on the ring: a hash and the endpoint (index) it belongs to.
#[derive(Clone, Copy, Debug)]
struct Point {
    hash: u64,
    endpoint: usize,
}

#[derive(Debug)]
pub(crate) struct RingHash {
    min_ring_size: u64,
    max_ring_size: u64,
    entries: Vec<Entry>,
    ring: Arc<[Point]>,
    last_error: Option<Status>,
    resolver_error: Option<Status>,
}

impl RingHash {
    pub(crate) fn new(min_ring_size: u64, max_ring_size: u64) -> RingHash {
        RingHash {
            min_ring_size,
            max_ring_size,
            entries: Vec::new(),
            ring: Arc::from(Vec::new()),
            last_error: None,
            resolver_error: None,
        }
    }

    pub(crate) fn resolved(&mut self, r: Result<Vec<Address>, Status>, h: &mut Helper<'_>) {
        let addrs = match r {
            Ok(a) if a.is_empty() => {
                self.entries.clear();
                self.ring = Arc::from(Vec::new());
                self.resolver_error = Some(Status::unavailable("name resolver returned no addresses"));
                self.publish(h);
                return;
            }
            Ok(a) => a,
            Err(e) => {
                if self.entries.is_empty() {
                    self.resolver_error = Some(e);
                    self.publish(h);
                }
                return;
            }
        };
        self.resolver_error = None;
        let mut old = std::mem::take(&mut self.entries);
        for a in addrs {
            match old.iter().position(|e| e.sc.addr == a) {
                Some(i) => self.entries.push(old.swap_remove(i)),
                // Connected on demand, when a pick lands on it.
                None => self.entries.push(Entry::new(h.new_subchannel(a, None))),
            }
        }
        drop(old);
        let keys: Vec<String> = self.entries.iter().map(|e| e.sc.addr.to_string()).collect();
        self.ring = build_ring(&keys, self.min_ring_size, self.max_ring_size).into();
        self.publish(h);
    }

    /// A call wants a connection: picks connect what they need, so nothing here.
    pub(crate) fn exit_idle(&mut self, _h: &mut Helper<'_>) {}

    /// The picker asks subchannel `id` to leave IDLE.
    pub(crate) fn connect(&mut self, id: u64, _h: &mut Helper<'_>) {
        if let Some(e) = self.entries.iter().find(|e| e.sc.id == id) {
            if e.state == ConnectivityState::Idle {
                e.sc.connect();
            }
        }
    }

    pub(crate) fn invalidate(&mut self, generation: u64, h: &mut Helper<'_>) {
        for e in &self.entries {
            e.sc.invalidate(generation);
        }
        if let Some(e) = self.entries.iter_mut().find(|e| e.ready.as_ref().is_some_and(|r| r.generation == generation))
        {
            // The subchannel drops the connection and goes IDLE; the next
            // pick that lands here reconnects it.
            e.ready = None;
            e.state = ConnectivityState::Idle;
            self.publish(h);
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
        let Some(e) = self.entries.iter_mut().find(|e| e.sc.id == id) else { return };
        e.update(state, ready, error, Reconnect::AfterFailure, &mut self.last_error, h);
        self.publish(h);
    }

    /// The aggregated state (A42 as updated by A61).
    fn aggregate(&self) -> ConnectivityState {
        let count = |s| self.entries.iter().filter(|e| e.reported() == s).count();
        let (ready, connecting, idle, tf) = (
            count(ConnectivityState::Ready),
            count(ConnectivityState::Connecting),
            count(ConnectivityState::Idle),
            count(ConnectivityState::TransientFailure),
        );
        if ready > 0 {
            ConnectivityState::Ready
        } else if tf >= 2 {
            ConnectivityState::TransientFailure
        } else if connecting > 0 || (tf == 1 && self.entries.len() > 1) {
            ConnectivityState::Connecting
        } else if idle > 0 {
            ConnectivityState::Idle
        } else {
            ConnectivityState::TransientFailure
        }
    }

    fn publish(&self, h: &mut Helper<'_>) {
        if self.entries.is_empty() {
            let err = self.resolver_error.clone().unwrap_or_else(|| Status::unavailable("no addresses"));
            h.publish(ConnectivityState::TransientFailure, Vec::new(), Some(err));
            return;
        }
        let state = self.aggregate();
        let mut error = None;
        if state == ConnectivityState::TransientFailure {
            error = Some(
                self.last_error.clone().unwrap_or_else(|| Status::unavailable("all ring_hash subchannels failed")),
            );
            // Make progress without picks: connect one subchannel that has
            // not been tried yet, if none is connecting (A42).
            if !self.entries.iter().any(|e| e.state == ConnectivityState::Connecting) {
                if let Some(e) = self.entries.iter().find(|e| !e.sticky_tf && e.state == ConnectivityState::Idle) {
                    e.sc.connect();
                }
            }
        }
        let endpoints = self
            .entries
            .iter()
            .map(|e| Endpoint { id: e.sc.id, state: e.reported(), ready: e.ready.clone() })
            .collect();
        let picker = RingPicker { ring: self.ring.clone(), endpoints, events: h.events.clone() };
        h.publish_ring(state, picker, error);
    }

    pub(crate) fn describe(&self) -> Vec<SubchannelInfo> {
        self.entries.iter().map(|e| SubchannelInfo { address: e.sc.addr.clone(), state: e.state }).collect()
    }
}

/// Builds the sorted ring for endpoints of equal weight keyed by address
/// (grpc-go's `newRing`): the smallest weight gets a whole number of entries
/// within `min_size`, the ring at most `max_size` entries.
fn build_ring(keys: &[String], min_size: u64, max_size: u64) -> Vec<Point> {
    if keys.is_empty() {
        return Vec::new();
    }
    let weight = 1.0 / keys.len() as f64;
    let scale = ((weight * min_size as f64).ceil() / weight).min(max_size as f64);
    let mut ring = Vec::with_capacity(scale.ceil() as usize);
    let (mut current, mut target) = (0.0f64, 0.0f64);
    for (endpoint, key) in keys.iter().enumerate() {
        target += scale * weight;
        let mut index = 0u64;
        while current < target {
            ring.push(Point { hash: xxh64(format!("{key}_{index}").as_bytes()), endpoint });
            index += 1;
            current += 1.0;
        }
    }
    ring.sort_by_key(|p| p.hash);
    ring
}

#[derive(Clone, Debug)]
struct Endpoint {
    id: u64,
    state: ConnectivityState,
    ready: Option<Ready>,
}

/// The ring and a snapshot of its endpoints' states, for picks.
#[derive(Clone, Debug)]
pub(crate) struct RingPicker {
    ring: Arc<[Point]>,
    endpoints: Vec<Endpoint>,
    events: mpsc::UnboundedSender<Event>,
}

impl RingPicker {
    /// The connection for a call with request hash `hash` (None: random,
    /// A76); None queues the call (or fails it, in TRANSIENT_FAILURE).
    pub(crate) fn pick(&self, hash: Option<u64>) -> Option<Ready> {
        let n = self.ring.len();
        if n == 0 {
            return None;
        }
        let (h, random) = match hash {
            Some(h) => (h, false),
            None => (crate::client::conn::rand_u64(), true),
        };
        let start = self.ring.partition_point(|p| p.hash < h) % n;
        let at = |i: usize| &self.endpoints[self.ring[(start + i) % n].endpoint];
        if !random {
            for i in 0..n {
                let ep = at(i);
                match ep.state {
                    ConnectivityState::Ready => return ep.ready.clone(),
                    ConnectivityState::Connecting => return None,
                    ConnectivityState::Idle => {
                        self.connect(ep.id);
                        return None;
                    }
                    ConnectivityState::TransientFailure | ConnectivityState::Shutdown => {}
                }
            }
            return None;
        }
        let mut requested = self.endpoints.iter().any(|e| e.state == ConnectivityState::Connecting);
        for i in 0..n {
            let ep = at(i);
            if ep.state == ConnectivityState::Ready {
                if let Some(r) = &ep.ready {
                    return Some(r.clone());
                }
            }
            if !requested && ep.state == ConnectivityState::Idle {
                requested = true;
                self.connect(ep.id);
            }
        }
        None
    }

    fn connect(&self, id: u64) {
        let _ = self.events.send(Event::Connect(id));
    }

    /// The READY connections.
    pub(crate) fn ready(&self) -> impl Iterator<Item = &Ready> {
        self.endpoints.iter().filter_map(|e| e.ready.as_ref())
    }

    /// This picker with the connections of `generations` gone (IDLE).
    pub(crate) fn without(&self, generations: &[u64]) -> RingPicker {
        let mut p = self.clone();
        for e in &mut p.endpoints {
            if e.ready.as_ref().is_some_and(|r| generations.contains(&r.generation)) {
                e.ready = None;
                e.state = ConnectivityState::Idle;
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_and_shares() {
        let keys: Vec<String> = (0..3).map(|i| format!("10.0.0.{i}:443")).collect();
        let ring = build_ring(&keys, 1024, 4096);
        // About ceil(1024/3) per endpoint (float rounding as in grpc-go).
        assert!((1024..=1030).contains(&ring.len()), "{}", ring.len());
        for e in 0..3 {
            let n = ring.iter().filter(|p| p.endpoint == e).count();
            assert!((341..=343).contains(&n), "endpoint {e}: {n}");
        }
        assert!(ring.windows(2).all(|w| w[0].hash <= w[1].hash));
        // The first entry of endpoint 0 is at xxh64("10.0.0.0:443_0").
        let h0 = xxh64(b"10.0.0.0:443_0");
        assert!(ring.iter().any(|p| p.hash == h0 && p.endpoint == 0));
        // The max wins over the min.
        assert_eq!(build_ring(&keys, 1024, 10).len(), 10);
        assert!(build_ring(&[], 1024, 4096).is_empty());
    }
}
