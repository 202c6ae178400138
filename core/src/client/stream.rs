//! The public halves of a client call, [`CallSender`] and [`CallReceiver`].
//! Each is either one attempt (`call.rs`), or, while a call with a
//! `retryPolicy` is not yet committed, a front for the retry driver
//! (`retry_stream.rs`), which hands the committed attempt over to them.

use bytes::Bytes;

use super::call::{AttemptReceiver, AttemptSender, CallHandle};
use super::retry_stream::{Half, Op, Relayed, RetrySender};
use crate::codec::Received;
use crate::metadata::Metadata;
use crate::status::Status;

/// The sending half of a call.
#[derive(Debug)]
pub struct CallSender {
    of: SenderOf,
    /// The retry driver's control (cancel, throttle), for a retried call;
    /// dropping both halves cancels the call.
    ctl: Option<Half>,
}

#[derive(Debug)]
enum SenderOf {
    Attempt(AttemptSender),
    Retrying(RetrySender),
    /// The call ended before any attempt could take messages.
    Ended(Status),
}

impl CallSender {
    pub(crate) fn of_attempt(a: AttemptSender) -> CallSender {
        CallSender { of: SenderOf::Attempt(a), ctl: None }
    }

    pub(crate) fn retrying(r: RetrySender, ctl: Half) -> CallSender {
        CallSender { of: SenderOf::Retrying(r), ctl: Some(ctl) }
    }

    pub(crate) fn into_attempt(self) -> Option<AttemptSender> {
        match self.of {
            SenderOf::Attempt(a) => Some(a),
            _ => None,
        }
    }

    /// Sends one message (compressed if the call has an encoding).
    pub async fn send(&mut self, msg: Bytes) -> Result<(), Status> {
        self.send_with(msg, true, false).await
    }

    /// Sends a message; `compress: false` sends this one uncompressed even if
    /// the call compresses; `last: true` half-closes in the same frame.
    ///
    /// While a retried call is not committed, the message is kept for replay
    /// and `Ok` means it went out on the current attempt.
    pub async fn send_with(&mut self, msg: Bytes, compress: bool, last: bool) -> Result<(), Status> {
        self.run(Op::Send { msg, compress, last }).await
    }

    /// Half-closes: no more messages will be sent. Like grpc-go's CloseSend,
    /// it fails only if the call was cancelled here (cancel, deadline, a
    /// local error): when the server already ended the call (its trailers
    /// and RST_STREAM(NO_ERROR) may arrive before our END_STREAM goes out),
    /// recv/finish report how the call ended.
    pub async fn close_send(&mut self) -> Result<(), Status> {
        self.run(Op::Close).await
    }

    async fn run(&mut self, op: Op) -> Result<(), Status> {
        let op = match &mut self.of {
            SenderOf::Retrying(r) => match r.relay(op).await {
                Relayed::Done(res) => return res,
                Relayed::Attempt(a, op) => {
                    self.of = SenderOf::Attempt(a);
                    op
                }
                Relayed::Ended(st) => {
                    self.of = SenderOf::Ended(st.clone());
                    return Err(st);
                }
            },
            SenderOf::Ended(st) => return Err(st.clone()),
            SenderOf::Attempt(_) => op,
        };
        let SenderOf::Attempt(a) = &mut self.of else { unreachable!("set above") };
        match op {
            Op::Send { msg, compress, last } => a.send_with(msg, compress, last).await,
            Op::Close => a.close_send().await,
        }
    }

    /// A handle to cancel the call from anywhere.
    pub fn handle(&self) -> CallHandle {
        match (&self.ctl, &self.of) {
            (Some(c), _) => c.handle(),
            (None, SenderOf::Attempt(a)) => a.handle(),
            (None, _) => unreachable!("a retried call always has its control"),
        }
    }
}

/// The receiving half of a call.
#[derive(Debug)]
pub struct CallReceiver {
    of: ReceiverOf,
    ctl: Option<Half>,
}

#[derive(Debug)]
enum ReceiverOf {
    Attempt(AttemptReceiver),
    /// Waiting for the retry driver to hand over the committed (or last) attempt.
    Retrying(tokio::sync::oneshot::Receiver<RecvHandoff>),
    /// The call ended before any attempt started.
    Ended(Status),
}

/// What the retry driver hands the receiving half.
#[derive(Debug)]
pub(crate) enum RecvHandoff {
    Attempt(AttemptReceiver),
    Ended(Status),
}

impl CallReceiver {
    pub(crate) fn of_attempt(a: AttemptReceiver) -> CallReceiver {
        CallReceiver { of: ReceiverOf::Attempt(a), ctl: None }
    }

    pub(crate) fn retrying(rx: tokio::sync::oneshot::Receiver<RecvHandoff>, ctl: Half) -> CallReceiver {
        CallReceiver { of: ReceiverOf::Retrying(rx), ctl: Some(ctl) }
    }

    pub(crate) fn into_attempt(self) -> Option<AttemptReceiver> {
        match self.of {
            ReceiverOf::Attempt(a) => Some(a),
            _ => None,
        }
    }

    /// The attempt, once there is one to read from (waits for the retry
    /// driver to commit); `Err` when the call ended without one.
    pub(crate) async fn attempt(&mut self) -> Result<&mut AttemptReceiver, Status> {
        if let ReceiverOf::Retrying(rx) = &mut self.of {
            self.of = match rx.await {
                Ok(RecvHandoff::Attempt(a)) => ReceiverOf::Attempt(a),
                Ok(RecvHandoff::Ended(st)) => ReceiverOf::Ended(st),
                Err(_) => ReceiverOf::Ended(Status::internal("the retry driver stopped")),
            };
        }
        match &mut self.of {
            ReceiverOf::Attempt(a) => Ok(a),
            ReceiverOf::Ended(st) => Err(st.clone()),
            ReceiverOf::Retrying(_) => unreachable!("replaced above"),
        }
    }

    pub(crate) fn attempt_ref(&self) -> Option<&AttemptReceiver> {
        match &self.of {
            ReceiverOf::Attempt(a) => Some(a),
            _ => None,
        }
    }

    pub(crate) fn attempt_mut(&mut self) -> Option<&mut AttemptReceiver> {
        match &mut self.of {
            ReceiverOf::Attempt(a) => Some(a),
            _ => None,
        }
    }

    /// Gives the retry throttle its token when a retried call ends OK.
    fn ended(&self, st: Option<&Status>) {
        if let (Some(c), Some(st)) = (&self.ctl, st) {
            if st.is_ok() {
                c.ctl().succeeded();
            }
        }
    }

    /// The server address this call went to (`ip:port` or `unix:path`);
    /// empty while a retried call has not committed to an attempt.
    pub fn peer(&self) -> &str {
        self.attempt_ref().map_or("", AttemptReceiver::peer)
    }

    /// True once response headers arrived; false for a trailers-only
    /// response (whose `initial_metadata` is empty) and before headers.
    pub fn headers_received(&self) -> bool {
        self.attempt_ref().is_some_and(AttemptReceiver::headers_received)
    }

    /// The response headers (waits for them). Empty for a trailers-only response.
    pub async fn initial_metadata(&mut self) -> Result<Metadata, Status> {
        self.attempt().await?.initial_metadata().await
    }

    /// The next message; `Ok(None)` at the end of an OK call; `Err(status)` when
    /// the call ended with any other status.
    pub async fn recv(&mut self) -> Result<Option<Bytes>, Status> {
        Ok(self.recv_message().await?.map(|m| m.data))
    }

    /// Like [`recv`](Self::recv), also telling whether the message was compressed.
    pub async fn recv_message(&mut self) -> Result<Option<Received>, Status> {
        let r = self.attempt().await?.recv_message().await;
        if let Ok(None) = r {
            self.ended(self.status());
        }
        r
    }

    /// Reads (and drops) any remaining messages and returns the final status
    /// with the trailing metadata.
    pub async fn finish(&mut self) -> Status {
        let st = match self.attempt().await {
            Ok(a) => a.finish().await,
            Err(st) => st,
        };
        self.ended(Some(&st));
        st
    }

    /// The status if the call has ended (after `recv` returned `None` or an error).
    pub fn status(&self) -> Option<&Status> {
        match &self.of {
            ReceiverOf::Attempt(a) => a.status(),
            ReceiverOf::Ended(st) => Some(st),
            ReceiverOf::Retrying(_) => None,
        }
    }

    /// A handle to cancel the call from anywhere.
    pub fn handle(&self) -> CallHandle {
        match (&self.ctl, &self.of) {
            (Some(c), _) => c.handle(),
            (None, ReceiverOf::Attempt(a)) => a.handle(),
            (None, _) => unreachable!("a retried call always has its control"),
        }
    }
}
