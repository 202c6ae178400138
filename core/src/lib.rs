//! grpc-core: one gRPC engine (tokio + h2 + rustls) for every language.
//!
//! The Rust API is byte-level: [`Channel`] starts calls of every kind,
//! [`Server`] dispatches calls by method path to [`server::Handler`]s, and
//! messages cross as [`bytes::Bytes`]. [`typed`] adds prost messages on top.
//! Bindings use [`surface`], which is the same API plus the runtime helpers.

pub mod auth;
pub mod client;
pub mod codec;
mod error;
mod h2io;
pub mod health;
pub mod interceptor;
pub mod logging;
pub mod metadata;
pub mod reflection;
pub mod rt;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod transport;
pub mod typed;
mod wire;

pub use client::{CallOptions, Channel, ChannelOptions, ClientCall, ConnectivityState};
pub use client::{ManualResolver, ServiceConfig};
pub use codec::{Compression, MessageParts, Received};
pub use error::{Error, ErrorKind};
pub use metadata::{Metadata, MetadataValue};
pub use server::{MethodKind, Server, ServerCall, ServerOptions};
pub use status::{Code, Status};
pub use transport::{Address, ClientTlsConfig, ServerTlsConfig};

/// The crate version (matches Cargo.toml; the C ABI reports the same).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

pub mod surface;
