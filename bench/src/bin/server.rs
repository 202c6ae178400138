//! Our server: the benchmark service on grpc-core's Rust API, written as a
//! user would (prost messages decoded and encoded in the handler; the echo
//! handlers encode with `typed::encode_parts`, so the echoed `bytes` field is
//! not copied).
//!
//! `bench-server [--port 0] [--tls-cert F --tls-key F]`; prints `PORT <n>`.

use std::time::Duration;

use bench::pb::echo::Payload;
use bench::pb::helloworld::{HelloReply, HelloRequest};
use bench::{ServerArgs, ECHO_STREAM, ECHO_UNARY, MAX_MESSAGE, SAY_HELLO};
use bytes::Bytes;
use clap::Parser;
use grpc_core::{MethodKind, Server, ServerCall, ServerOptions, ServerTlsConfig, Status};
use prost::Message;

fn decode<M: Message + Default>(b: Bytes) -> Result<M, Status> {
    M::decode(b).map_err(|e| Status::internal(format!("failed to decode the request: {e}")))
}

/// Encodes into grpc-core's recycled message buffer, as a user of the Rust
/// API with their own prost version would (`typed::encode` for core's prost).
fn encode<M: Message>(m: &M) -> Bytes {
    grpc_core::typed::encode_with(m.encoded_len(), |b| m.encode_raw(b))
}

/// Encodes a message whose large `bytes` fields (prost `Bytes`) are sent by
/// reference, not copied (`typed::encode_parts` for core's prost): the echo
/// handlers send the received payload back as it arrived.
fn encode_parts<M: Message>(m: &M) -> grpc_core::MessageParts {
    grpc_core::typed::encode_parts_with(m.encoded_len(), |b| m.encode_raw(b))
}

async fn say_hello(mut call: ServerCall) -> Status {
    let req: HelloRequest = match call.recv().await {
        Ok(Some(b)) => match decode(b) {
            Ok(r) => r,
            Err(s) => return s,
        },
        Ok(None) => return Status::internal("no request message"),
        Err(s) => return s,
    };
    let reply = HelloReply { message: format!("Hello, {}!", req.name) };
    match call.send(encode(&reply)).await {
        Ok(()) => Status::ok(),
        Err(s) => s,
    }
}

async fn echo_unary(mut call: ServerCall) -> Status {
    let req: Payload = match call.recv().await {
        Ok(Some(b)) => match decode(b) {
            Ok(r) => r,
            Err(s) => return s,
        },
        Ok(None) => return Status::internal("no request message"),
        Err(s) => return s,
    };
    match call.send_parts(encode_parts(&Payload { data: req.data })).await {
        Ok(()) => Status::ok(),
        Err(s) => s,
    }
}

async fn echo_stream(mut call: ServerCall) -> Status {
    loop {
        match call.recv().await {
            Ok(Some(b)) => {
                let req: Payload = match decode(b) {
                    Ok(r) => r,
                    Err(s) => return s,
                };
                if let Err(s) = call.send_parts(encode_parts(&Payload { data: req.data })).await {
                    return s;
                }
            }
            Ok(None) => return Status::ok(),
            Err(s) => return s,
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = ServerArgs::parse();
    grpc_core::rt::adopt(tokio::runtime::Handle::current())?;
    let mut opts = ServerOptions { max_recv_message_size: MAX_MESSAGE, ..ServerOptions::default() };
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        opts.tls = Some(ServerTlsConfig {
            cert_chain_pem: std::fs::read(cert)?,
            private_key_pem: std::fs::read(key)?,
            ..Default::default()
        });
    }
    let server = Server::builder(opts)
        .register(SAY_HELLO, MethodKind::Unary, say_hello)?
        .register(ECHO_UNARY, MethodKind::Unary, echo_unary)?
        .register(ECHO_STREAM, MethodKind::BidiStreaming, echo_stream)?
        .build()?;
    let addr = server.bind(&format!("127.0.0.1:{}", args.port)).await?;
    server.start();
    let port = match addr {
        grpc_core::Address::Tcp(a) => a.port(),
        _ => 0,
    };
    bench::announce_port(port);
    bench::until_signal().await;
    server.shutdown(Duration::from_millis(200)).await;
    Ok(())
}
