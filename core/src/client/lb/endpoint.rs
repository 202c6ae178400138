//! The per-address state round_robin and ring_hash keep for a subchannel.

use super::Helper;
use crate::client::conn::Ready;
use crate::client::subchannel::Subchannel;
use crate::client::ConnectivityState;
use crate::status::Status;

/// When a subchannel that went IDLE connects again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reconnect {
    /// At once (round_robin keeps every address connected).
    Always,
    /// Only while it counts as failed, when its backoff ended (ring_hash,
    /// A42: an IDLE subchannel otherwise connects when a pick lands on it).
    AfterFailure,
}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) sc: Subchannel,
    pub(super) state: ConnectivityState,
    /// Failed and not READY since: counts as TRANSIENT_FAILURE (A61).
    pub(super) sticky_tf: bool,
    pub(super) ready: Option<Ready>,
}

impl Entry {
    pub(super) fn new(sc: Subchannel) -> Entry {
        Entry { sc, state: ConnectivityState::Idle, sticky_tf: false, ready: None }
    }

    /// The state the picker and the aggregation see.
    pub(super) fn reported(&self) -> ConnectivityState {
        if self.sticky_tf {
            ConnectivityState::TransientFailure
        } else {
            self.state
        }
    }

    /// Applies a state report from the subchannel. A failure's error goes to
    /// `last_error`; losing a connection or failing asks the resolver to
    /// re-resolve.
    pub(super) fn update(
        &mut self,
        state: ConnectivityState,
        ready: Option<Ready>,
        error: Option<Status>,
        reconnect: Reconnect,
        last_error: &mut Option<Status>,
        h: &mut Helper<'_>,
    ) {
        let was_ready = self.ready.is_some();
        self.state = state;
        self.ready = None;
        match state {
            ConnectivityState::Ready => {
                self.sticky_tf = false;
                self.ready = ready;
            }
            ConnectivityState::Idle => {
                if reconnect == Reconnect::Always || self.sticky_tf {
                    self.sc.connect();
                }
                if was_ready {
                    h.resolve_now();
                }
            }
            ConnectivityState::TransientFailure => {
                self.sticky_tf = true;
                if let Some(err) = error {
                    *last_error = Some(err);
                }
                h.resolve_now();
            }
            ConnectivityState::Connecting | ConnectivityState::Shutdown => {}
        }
    }
}
