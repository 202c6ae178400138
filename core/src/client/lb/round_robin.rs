//! round_robin: a subchannel (and connection) per address, all connected
//! eagerly; calls rotate over the READY ones. A subchannel that fails or
//! drops is reconnected in the background (after its backoff). The channel
//! is READY if any subchannel is; else CONNECTING if any is connecting for
//! the first time since it last failed; else TRANSIENT_FAILURE (a failed
//! subchannel counts as failed until it is READY again, gRFC A61). With
//! `healthCheckConfig`, a subchannel is READY only while its backend is
//! SERVING (gRFC A17).

use super::endpoint::{Entry, Reconnect};
use super::{Helper, SubchannelInfo};
use crate::client::conn::Ready;
use crate::client::ConnectivityState;
use crate::status::Status;
use crate::transport::Address;

#[derive(Debug)]
pub(crate) struct RoundRobin {
    health: Option<String>,
    entries: Vec<Entry>,
    last_error: Option<Status>,
    /// A resolver error while we had no addresses.
    resolver_error: Option<Status>,
}

impl RoundRobin {
    pub(crate) fn new(health: Option<String>) -> RoundRobin {
        RoundRobin { health, entries: Vec::new(), last_error: None, resolver_error: None }
    }

    pub(crate) fn resolved(&mut self, r: Result<Vec<Address>, Status>, h: &mut Helper<'_>) {
        let addrs = match r {
            Ok(a) if a.is_empty() => {
                self.entries.clear();
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
                None => {
                    let sc = h.new_subchannel(a, self.health.clone());
                    sc.connect();
                    self.entries.push(Entry::new(sc));
                }
            }
        }
        drop(old);
        self.publish(h);
    }

    pub(crate) fn exit_idle(&mut self, _h: &mut Helper<'_>) {
        for e in &self.entries {
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
            e.ready = None;
            e.state = ConnectivityState::Idle;
            // Reconnect once the subchannel has dropped the connection.
            e.sc.connect();
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
        e.update(state, ready, error, Reconnect::Always, &mut self.last_error, h);
        self.publish(h);
    }

    fn publish(&self, h: &mut Helper<'_>) {
        let ready: Vec<Ready> = self.entries.iter().filter_map(|e| e.ready.clone()).collect();
        if !ready.is_empty() {
            h.publish(ConnectivityState::Ready, ready, None);
        } else if self.entries.is_empty() {
            let err = self.resolver_error.clone().unwrap_or_else(|| Status::unavailable("no addresses"));
            h.publish(ConnectivityState::TransientFailure, Vec::new(), Some(err));
        } else if self.entries.iter().any(|e| !e.sticky_tf) {
            h.publish(ConnectivityState::Connecting, Vec::new(), None);
        } else {
            let err = self.last_error.clone().unwrap_or_else(|| Status::unavailable("all subchannels failed"));
            h.publish(ConnectivityState::TransientFailure, Vec::new(), Some(err));
        }
    }

    pub(crate) fn describe(&self) -> Vec<SubchannelInfo> {
        self.entries.iter().map(|e| SubchannelInfo { address: e.sc.addr.clone(), state: e.state }).collect()
    }
}
