//! A unary server for Kotlin and Swift: methods served by a foreign
//! [`UnaryHandler`] (a suspend / async function of the call's context and
//! request bytes returning the response bytes). Enough for services written
//! in the app and for tests; streaming handlers are not exposed yet.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use grpc_core::surface as core;

use crate::{api, metadata_out, run, telemetry::Telemetry, GrpcError, MetadataEntry};

/// TLS for a server: PEM chain and key; with `client_ca_pem` client
/// certificates are verified (and required with `require_client_cert`).
#[derive(Clone, Debug, uniffi::Record)]
pub struct ServerTlsOptions {
    pub cert_chain_pem: String,
    pub private_key_pem: String,
    #[uniffi(default = None)]
    pub client_ca_pem: Option<String>,
    #[uniffi(default = false)]
    pub require_client_cert: bool,
}

/// Server settings; every field is optional and defaults to the engine's.
#[derive(Clone, Debug, Default, uniffi::Record)]
pub struct ServerOptions {
    /// TLS; none means plaintext (h2c).
    #[uniffi(default = None)]
    pub tls: Option<ServerTlsOptions>,
    #[uniffi(default = None)]
    pub max_recv_message_size: Option<u64>,
    #[uniffi(default = None)]
    pub max_send_message_size: Option<u64>,
    /// A66 metrics and `Recv.` spans of every call (see `Telemetry`).
    #[uniffi(default = None)]
    pub telemetry: Option<Arc<Telemetry>>,
}

/// What a handler is told about its call.
#[derive(Clone, Debug, uniffi::Record)]
pub struct ServerCallContext {
    /// The full method path (`/package.Service/Method`).
    pub method: String,
    /// The request metadata.
    pub metadata: Vec<MetadataEntry>,
    /// The client's address.
    pub peer: String,
    /// Time left before the client's deadline, in milliseconds (null without one).
    pub time_remaining_ms: Option<u64>,
    /// The call's `Recv.` span as a W3C `traceparent` value when the server
    /// records spans (`ServerOptions.telemetry` with tracing): put it in the
    /// metadata of the calls the handler makes to continue the trace, or use
    /// it as the remote parent of your own spans.
    pub traceparent: Option<String>,
}

/// A unary method implemented in Kotlin or Swift. Returning normally sends
/// the response with OK; throwing `GrpcException.Status` ends the call with
/// that status (code, message, details, trailers), sent after its
/// `initialMetadata` as response headers when that is not empty (a failure
/// after the headers, else trailers-only); any other exception ends it
/// with UNKNOWN. Runs as a suspend / async function: it may make calls of its
/// own (pass `context.traceparent` along).
#[uniffi::export(with_foreign)]
#[async_trait::async_trait]
pub trait UnaryHandler: Send + Sync {
    async fn handle(&self, context: ServerCallContext, request: Vec<u8>) -> Result<Vec<u8>, GrpcError>;
}

/// A gRPC server: `addUnary` its methods, then `start` it on an address.
#[derive(Debug, uniffi::Object)]
pub struct Server {
    /// Until `start`.
    builder: Mutex<Option<core::ServerBuilder>>,
    /// After `start`.
    server: Mutex<Option<core::Server>>,
}

fn status_of(e: GrpcError) -> core::Status {
    match e {
        GrpcError::Status { code, status_message, details, trailers, .. } => {
            let mut s = core::Status::new(code.into(), status_message);
            if !details.is_empty() {
                s = s.with_details(details);
            }
            match crate::metadata_in(trailers) {
                Ok(md) => {
                    *s.metadata_mut() = md;
                    s
                }
                Err(e) => core::Status::new(core::Code::Internal, format!("handler returned bad trailers: {e}")),
            }
        }
        GrpcError::Api { reason } => core::Status::new(core::Code::Unknown, reason),
    }
}

async fn serve_unary(handler: Arc<dyn UnaryHandler>, mut call: core::ServerCall) -> core::Status {
    let request = match call.recv().await {
        Ok(Some(m)) => m,
        Ok(None) => return core::Status::new(core::Code::Unimplemented, "unary call without a request message"),
        Err(s) => return s,
    };
    let info = call.info().clone();
    let context = ServerCallContext {
        method: info.method().to_string(),
        metadata: metadata_out(info.metadata()),
        peer: info.peer().to_string(),
        time_remaining_ms: info.time_remaining().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        traceparent: grpc_core::telemetry::server_traceparent(&info),
    };
    match handler.handle(context, request.to_vec()).await {
        Ok(response) => match call.send(Bytes::from(response)).await {
            Ok(()) => core::Status::ok(),
            Err(s) => s,
        },
        Err(e) => {
            // Headers first when the thrown status carries them: the client
            // sees a failure after the response headers, not trailers-only.
            if let GrpcError::Status { initial_metadata, .. } = &e {
                if !initial_metadata.is_empty() {
                    let sent = match crate::metadata_in(initial_metadata.clone()) {
                        Ok(md) => call.send_initial_metadata(md).await,
                        Err(e) => Err(core::Status::new(
                            core::Code::Internal,
                            format!("handler returned bad initial metadata: {e}"),
                        )),
                    };
                    if let Err(s) = sent {
                        return s;
                    }
                }
            }
            status_of(e)
        }
    }
}

#[uniffi::export]
impl Server {
    #[uniffi::constructor]
    pub fn new(options: ServerOptions) -> Result<Arc<Server>, GrpcError> {
        let mut o = core::ServerOptions::default();
        if let Some(t) = options.tls {
            o.tls = Some(core::ServerTlsConfig {
                cert_chain_pem: t.cert_chain_pem.into_bytes(),
                private_key_pem: t.private_key_pem.into_bytes(),
                client_ca_pem: t.client_ca_pem.map(String::into_bytes),
                require_client_cert: t.require_client_cert,
            });
        }
        if let Some(n) = options.max_recv_message_size {
            o.max_recv_message_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        if let Some(n) = options.max_send_message_size {
            o.max_send_message_size = usize::try_from(n).unwrap_or(usize::MAX);
        }
        o.telemetry = options.telemetry.map(|t| t.otel.clone());
        Ok(Arc::new(Server { builder: Mutex::new(Some(core::Server::builder(o))), server: Mutex::new(None) }))
    }

    /// Serves the unary method `method` (`/package.Service/Method`) with `handler`. Before `start` only.
    pub fn add_unary(&self, method: String, handler: Arc<dyn UnaryHandler>) -> Result<(), GrpcError> {
        let mut slot = self.builder.lock().unwrap_or_else(|e| e.into_inner());
        let b = slot.take().ok_or_else(|| GrpcError::Api { reason: "server already started".into() })?;
        let registered = b.register(&method, core::MethodKind::Unary, move |call: core::ServerCall| {
            serve_unary(handler.clone(), call)
        });
        match registered {
            Ok(b) => {
                *slot = Some(b);
                Ok(())
            }
            // The builder is consumed by a failed registration: the server cannot start.
            Err(e) => Err(api(e)),
        }
    }

    /// Listens on `address` (`127.0.0.1:0`, `[::]:50051`, `unix:/path`) and
    /// serves; returns the bound address (`127.0.0.1:<port>` for port 0).
    pub async fn start(&self, address: String) -> Result<String, GrpcError> {
        let builder = self.builder.lock().unwrap_or_else(|e| e.into_inner()).take();
        let b = builder.ok_or_else(|| GrpcError::Api {
            reason: "server already started (or a method failed to register)".into(),
        })?;
        let server = b.build().map_err(api)?;
        *self.server.lock().unwrap_or_else(|e| e.into_inner()) = Some(server.clone());
        run(async move {
            let bound = server.bind(&address).await.map_err(api)?;
            server.start();
            Ok(bound.to_string())
        })
        .await
    }

    /// Graceful shutdown: stops accepting, lets calls finish for up to
    /// `grace_ms`, then cancels the rest.
    pub async fn shutdown(&self, grace_ms: u64) {
        let server = self.server.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(s) = server {
            let _ = run(async move {
                s.shutdown(Duration::from_millis(grace_ms)).await;
                Ok(())
            })
            .await;
        }
    }
}
