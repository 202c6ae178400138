//! pick_first: one connection, to the first address that connects. Happy
//! eyeballs (gRFC A61): addresses are tried in order, the next one started
//! when the current attempt has not connected within 250 ms or failed; the
//! first to be READY wins and the other attempts are dropped. Sticky: the
//! channel keeps that connection until it drops, then goes IDLE and the next
//! call starts a new pass from the first address. When every address failed
//! the channel is TRANSIENT_FAILURE and each subchannel reconnects when its
//! backoff ends (gRFC A62), showing CONNECTING while it tries.

use std::time::Duration;

use super::{Helper, SubchannelInfo};
use crate::client::conn::Ready;
use crate::client::subchannel::Subchannel;
use crate::client::ConnectivityState;
use crate::status::Status;
use crate::transport::Address;

/// gRFC A61's Connection Attempt Delay.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

#[derive(Debug)]
struct Entry {
    addr: Address,
    sc: Option<Subchannel>,
    state: ConnectivityState,
    /// Failed (or was in backoff) during the current pass.
    failed: bool,
}

#[derive(Debug)]
pub(crate) struct PickFirst {
    shuffle: bool,
    entries: Vec<Entry>,
    addrs: Vec<Address>,
    selected: Option<(usize, Ready)>,
    /// The next entry to start in the current pass, if a pass is on.
    pass: Option<usize>,
    timer: u64,
    /// Every address failed: reconnect each as its backoff ends.
    in_tf: bool,
    /// The connection dropped: wait for a call to exit IDLE.
    idle: bool,
    last_error: Option<Status>,
}

impl PickFirst {
    pub(crate) fn new(shuffle: bool) -> PickFirst {
        PickFirst {
            shuffle,
            entries: Vec::new(),
            addrs: Vec::new(),
            selected: None,
            pass: None,
            timer: 0,
            in_tf: false,
            idle: false,
            last_error: None,
        }
    }

    pub(crate) fn resolved(&mut self, r: Result<Vec<Address>, Status>, h: &mut Helper<'_>) {
        let mut addrs = match r {
            Ok(a) if a.is_empty() => {
                self.entries.clear();
                self.addrs.clear();
                self.selected = None;
                self.pass = None;
                h.publish(
                    ConnectivityState::TransientFailure,
                    Vec::new(),
                    Some(Status::unavailable("name resolver returned no addresses")),
                );
                return;
            }
            Ok(a) => a,
            Err(e) => {
                // Keep using what we have; without addresses, fail calls.
                if self.entries.is_empty() {
                    self.last_error = Some(e.clone());
                    h.publish(ConnectivityState::TransientFailure, Vec::new(), Some(e));
                }
                return;
            }
        };
        if addrs == self.addrs {
            return;
        }
        self.addrs = addrs.clone();
        if self.shuffle {
            shuffle(&mut addrs);
        }
        let selected_addr = self.selected.as_ref().map(|(i, _)| self.entries[*i].addr.clone());
        let mut old = std::mem::take(&mut self.entries);
        for a in addrs {
            let prev = old.iter().position(|e| e.addr == a).map(|i| old.swap_remove(i));
            self.entries.push(prev.unwrap_or(Entry {
                addr: a,
                sc: None,
                state: ConnectivityState::Idle,
                failed: false,
            }));
        }
        drop(old);
        if let Some(sa) = selected_addr {
            if let Some(i) = self.entries.iter().position(|e| e.addr == sa) {
                // The connected address is still listed: keep it.
                let ready = self.selected.take().expect("selected").1;
                self.selected = Some((i, ready));
                return;
            }
            self.selected = None;
        }
        if !self.idle {
            self.start_pass(h);
        }
    }

    pub(crate) fn exit_idle(&mut self, h: &mut Helper<'_>) {
        if self.idle {
            self.idle = false;
            self.start_pass(h);
        }
    }

    fn start_pass(&mut self, h: &mut Helper<'_>) {
        self.selected = None;
        self.in_tf = false;
        if self.entries.is_empty() {
            return;
        }
        for e in &mut self.entries {
            e.failed = false;
        }
        self.pass = Some(0);
        h.publish(ConnectivityState::Connecting, Vec::new(), None);
        self.advance(h);
    }

    /// Starts the next address of the pass.
    fn advance(&mut self, h: &mut Helper<'_>) {
        while let Some(i) = self.pass {
            if i >= self.entries.len() {
                self.check_all_failed(h);
                return;
            }
            self.pass = Some(i + 1);
            let e = &mut self.entries[i];
            let sc = e.sc.get_or_insert_with(|| h.new_subchannel(e.addr.clone(), None));
            match e.state {
                ConnectivityState::Idle | ConnectivityState::Connecting => {
                    sc.connect();
                    self.timer = h.timer(ATTEMPT_DELAY);
                    return;
                }
                // Still in backoff from an earlier failure: counts as failed.
                _ => e.failed = true,
            }
        }
    }

    fn check_all_failed(&mut self, h: &mut Helper<'_>) {
        let done = self.pass.is_some_and(|n| n >= self.entries.len());
        if !done || !self.entries.iter().all(|e| e.failed) {
            return;
        }
        self.pass = None;
        self.in_tf = true;
        let err = self.last_error.clone().unwrap_or_else(|| Status::unavailable("all addresses failed"));
        h.publish(ConnectivityState::TransientFailure, Vec::new(), Some(err));
        h.resolve_now();
        for e in &self.entries {
            if e.state == ConnectivityState::Idle {
                if let Some(sc) = &e.sc {
                    sc.connect();
                }
            }
        }
    }

    pub(crate) fn timer(&mut self, token: u64, h: &mut Helper<'_>) {
        if token == self.timer && self.pass.is_some() && self.selected.is_none() {
            self.advance(h);
        }
    }

    pub(crate) fn invalidate(&mut self, generation: u64, h: &mut Helper<'_>) {
        for sc in self.entries.iter().filter_map(|e| e.sc.as_ref()) {
            sc.invalidate(generation);
        }
        if let Some((i, _)) = self.selected.as_ref().filter(|(_, r)| r.generation == generation) {
            // The subchannel drops the connection and goes IDLE; a connect
            // sent after this is handled after that.
            self.entries[*i].state = ConnectivityState::Idle;
            self.selected = None;
            self.idle = true;
            h.publish(ConnectivityState::Idle, Vec::new(), None);
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
        let Some(i) = self.entries.iter().position(|e| e.sc.as_ref().is_some_and(|s| s.id == id)) else { return };
        self.entries[i].state = state;
        let is_selected = self.selected.as_ref().is_some_and(|(s, _)| *s == i);
        match state {
            ConnectivityState::Ready => {
                let Some(ready) = ready else { return };
                self.selected = Some((i, ready.clone()));
                self.pass = None;
                self.in_tf = false;
                self.idle = false;
                // The others are not needed: drop them (and their attempts).
                for (j, e) in self.entries.iter_mut().enumerate() {
                    if j != i {
                        e.sc = None;
                        e.state = ConnectivityState::Idle;
                    }
                }
                h.publish(ConnectivityState::Ready, vec![ready], None);
            }
            ConnectivityState::Idle => {
                if is_selected {
                    // The connection dropped: IDLE; the next call reconnects.
                    self.selected = None;
                    self.idle = true;
                    h.publish(ConnectivityState::Idle, Vec::new(), None);
                    h.resolve_now();
                } else if self.in_tf {
                    if let Some(sc) = &self.entries[i].sc {
                        sc.connect();
                    }
                }
            }
            ConnectivityState::Connecting => {
                if self.in_tf && self.selected.is_none() {
                    h.publish(ConnectivityState::Connecting, Vec::new(), None);
                }
            }
            ConnectivityState::TransientFailure => {
                self.entries[i].failed = true;
                if let Some(e) = error {
                    self.last_error = Some(e);
                }
                if is_selected {
                    self.selected = None;
                    self.idle = true;
                    h.publish(ConnectivityState::Idle, Vec::new(), None);
                } else if let Some(next) = self.pass {
                    if next == i + 1 {
                        // The latest attempt failed: start the next at once.
                        self.advance(h);
                    } else {
                        self.check_all_failed(h);
                    }
                } else if self.in_tf {
                    let err = self.last_error.clone();
                    h.publish(ConnectivityState::TransientFailure, Vec::new(), err);
                }
            }
            ConnectivityState::Shutdown => {}
        }
    }

    pub(crate) fn describe(&self) -> Vec<SubchannelInfo> {
        self.entries
            .iter()
            .map(|e| SubchannelInfo {
                address: e.addr.clone(),
                state: if e.sc.is_some() { e.state } else { ConnectivityState::Idle },
            })
            .collect()
    }
}

fn shuffle(v: &mut [Address]) {
    for i in (1..v.len()).rev() {
        let j = (crate::client::conn::rand_unit() * (i + 1) as f64) as usize;
        v.swap(i, j.min(i));
    }
}
