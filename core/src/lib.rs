//! grpc-core: one gRPC engine (tokio + h2 + rustls) for every language.
//!
//! The Rust API is byte-level: [`Channel`] starts calls of every kind,
//! [`Server`] dispatches calls by method path to [`server::Handler`]s, and
//! messages cross as [`bytes::Bytes`]. [`typed`] adds prost messages on top.
//! Bindings use [`surface`], which is the same API plus the runtime helpers.

pub mod client;
pub mod codec;
mod error;
mod h2io;
pub mod health;
pub mod metadata;
pub mod rt;
pub mod server;
pub mod status;
pub mod transport;
pub mod typed;
mod wire;

pub use client::{CallOptions, Channel, ChannelOptions, ClientCall, ConnectivityState};
pub use codec::{Compression, Received};
pub use error::{Error, ErrorKind};
pub use metadata::{Metadata, MetadataValue};
pub use server::{MethodKind, Server, ServerCall, ServerOptions};
pub use status::{Code, Status};
pub use transport::{Address, ClientTlsConfig, ServerTlsConfig};

/// The crate version (matches Cargo.toml; the C ABI reports the same).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The binding-facing surface: the only module `ffi-c/` and `bindings/` use.
pub mod surface {
    pub use crate::client::{
        CallHandle, CallOptions, CallReceiver, CallSender, Channel, ChannelOptions, ClientCall, ConnectivityState,
        UnaryResponse,
    };
    pub use crate::codec::{Compression, Received};
    pub use crate::error::{Error, ErrorKind};
    pub use crate::health::{HealthReporter, ServingStatus};
    pub use crate::metadata::{Metadata, MetadataValue};
    pub use crate::rt::{block_on, configure, handle, spawn, RuntimeConfig};
    pub use crate::server::{Handler, HandlerFuture, MethodKind, Server, ServerBuilder, ServerCall, ServerOptions};
    pub use crate::status::{Code, Status};
    pub use crate::transport::{Address, ClientTlsConfig, ServerTlsConfig};
}
