//! The binding-facing surface: the only module `ffi-c/` and `bindings/` use.
//!
//! It is the Rust API plus what a foreign language needs: the runtime
//! helpers, and [`IncomingCall`], a server call handed out of the handler so
//! that code on any thread (C, Python, Node) can drive it and finish it
//! later. Client futures use tokio timers: run them on the engine's runtime
//! ([`spawn`], [`block_on`]). The [`IncomingCall`] halves wait only on h2
//! streams and channels, so they can be polled from any executor.

pub use crate::auth::{AuthContext, AuthMetadataContext, BoxFuture, CallCredentials, MetadataProvider};
pub use crate::client::{
    parse_address, CallConfig, LbPolicy, ManualResolver, MethodConfig, ServiceConfig, SubchannelInfo,
};
pub use crate::client::{
    CallHandle, CallOptions, CallReceiver, CallSender, Channel, ChannelOptions, ClientCall, ConnectivityState,
    UnaryResponse,
};
pub use crate::codec::{Compression, Received};
pub use crate::error::{Error, ErrorKind};
pub use crate::health::{HealthReporter, ServingStatus};
pub use crate::interceptor::{CallObserver, ClientCallHead, ClientInterceptor, ServerCallHead, ServerInterceptor};
pub use crate::metadata::{Metadata, MetadataValue};
pub use crate::rt::{block_on, configure, handle, spawn, RuntimeConfig};
pub use crate::server::{
    CallInfo, Handler, HandlerFuture, MethodKind, Server, ServerBuilder, ServerCall, ServerOptions, ServerReceiver,
    ServerSender,
};
pub use crate::status::{Code, Status};
pub use crate::transport::{Address, ClientTlsConfig, ServerTlsConfig};

use std::sync::Arc;

use tokio::sync::{oneshot, watch};

/// A server call handed to a binding. Drive it from anywhere: receive with
/// [`IncomingCall::receiver`], send with [`IncomingCall::sender`], then
/// [`IncomingCall::finish`]. Dropping it unfinished ends the call with
/// UNKNOWN ("handler dropped the call without a status").
#[derive(Debug)]
pub struct IncomingCall {
    info: Arc<CallInfo>,
    receiver: Option<ServerReceiver>,
    sender: Option<ServerSender>,
    finish: Option<oneshot::Sender<Status>>,
    /// Closed (its sender dropped) once the handler side of the call is over.
    done: watch::Receiver<()>,
}

impl IncomingCall {
    /// Method, metadata, deadline, peer.
    pub fn info(&self) -> &Arc<CallInfo> {
        &self.info
    }
    /// Takes the receiving half (once).
    pub fn take_receiver(&mut self) -> Option<ServerReceiver> {
        self.receiver.take()
    }
    /// Takes the sending half (once).
    pub fn take_sender(&mut self) -> Option<ServerSender> {
        self.sender.take()
    }
    /// The receiving half, if not taken.
    pub fn receiver(&mut self) -> Option<&mut ServerReceiver> {
        self.receiver.as_mut()
    }
    /// The sending half, if not taken.
    pub fn sender(&mut self) -> Option<&mut ServerSender> {
        self.sender.as_mut()
    }
    /// Ends the call with `status` (its metadata are the trailers). Returns
    /// false if the call was already finished or is gone (cancelled).
    pub fn finish(&mut self, status: Status) -> bool {
        match self.finish.take() {
            Some(tx) => tx.send(status).is_ok(),
            None => false,
        }
    }
    /// True once the call was finished here.
    pub fn is_finished(&self) -> bool {
        self.finish.is_none()
    }
    /// Resolves once the call is over on the server: finished here, cancelled
    /// by the client, past its deadline, or cut by a forced shutdown. Pending
    /// receives and sends may block until then, so bindings race them
    /// against this to report cancellation. Needs no tokio context.
    pub fn done(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.done.clone();
        async move { while rx.changed().await.is_ok() {} }
    }
    /// True once [`IncomingCall::done`] has resolved (without waiting).
    pub fn is_done(&self) -> bool {
        self.done.has_changed().is_err()
    }
}

/// A finisher that outlives the halves: lets a binding finish a call after
/// it moved the receiver and sender elsewhere.
impl Drop for IncomingCall {
    fn drop(&mut self) {
        if let Some(tx) = self.finish.take() {
            let _ = tx.send(Status::new(Code::Unknown, "handler dropped the call without a status"));
        }
    }
}

/// A handler that hands every call to `deliver` (which must not block) and
/// waits for the binding to finish it. If the client cancels or the deadline
/// passes, the waiting stops and the halves report CANCELLED.
pub fn dispatch<F>(deliver: F) -> impl Handler
where
    F: Fn(IncomingCall) + Send + Sync + 'static,
{
    let deliver = Arc::new(deliver);
    move |call: ServerCall| {
        let deliver = deliver.clone();
        async move {
            let (info, receiver, sender) = call.split();
            let (tx, rx) = oneshot::channel();
            // Dropped with this future: when the call is finished, cancelled
            // or past its deadline, which is what `IncomingCall::done` reports.
            let (_done_tx, done) = watch::channel(());
            deliver(IncomingCall { info, receiver: Some(receiver), sender: Some(sender), finish: Some(tx), done });
            rx.await.unwrap_or_else(|_| Status::new(Code::Unknown, "handler dropped the call without a status"))
        }
    }
}
