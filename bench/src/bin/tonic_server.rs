//! The tonic peer: the benchmark service on tonic 0.14 with its generated
//! code, default settings except the message size limits (64 MiB, which
//! the large-message scenario needs) and TCP_NODELAY (on, as every peer).
//!
//! `bench-tonic-server [--port 0] [--tls-cert F --tls-key F]`; prints `PORT <n>`.

use std::pin::Pin;

use bench::pb::echo::echo_server::{Echo, EchoServer};
use bench::pb::echo::Payload;
use bench::pb::helloworld::greeter_server::{Greeter, GreeterServer};
use bench::pb::helloworld::{HelloReply, HelloRequest};
use bench::{ServerArgs, MAX_MESSAGE};
use clap::Parser;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

struct Svc;

#[tonic::async_trait]
impl Greeter for Svc {
    async fn say_hello(&self, req: Request<HelloRequest>) -> Result<Response<HelloReply>, Status> {
        Ok(Response::new(HelloReply { message: format!("Hello, {}!", req.into_inner().name) }))
    }
}

type PayloadStream = Pin<Box<dyn Stream<Item = Result<Payload, Status>> + Send>>;

#[tonic::async_trait]
impl Echo for Svc {
    async fn unary(&self, req: Request<Payload>) -> Result<Response<Payload>, Status> {
        Ok(Response::new(req.into_inner()))
    }

    type StreamStream = PayloadStream;

    async fn stream(&self, req: Request<Streaming<Payload>>) -> Result<Response<PayloadStream>, Status> {
        // tonic's examples answer a bidi stream by mapping the request stream.
        let input = req.into_inner();
        let out = input.map(|r| r.map(|p| Payload { data: p.data }));
        Ok(Response::new(Box::pin(out)))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = ServerArgs::parse();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    let port = listener.local_addr()?.port();
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let mut builder = tonic::transport::Server::builder();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        let identity = tonic::transport::Identity::from_pem(std::fs::read(cert)?, std::fs::read(key)?);
        builder = builder.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let greeter = GreeterServer::new(Svc).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    let echo = EchoServer::new(Svc).max_decoding_message_size(MAX_MESSAGE).max_encoding_message_size(MAX_MESSAGE);
    bench::announce_port(port);
    builder
        .add_service(greeter)
        .add_service(echo)
        .serve_with_incoming_shutdown(incoming, bench::until_signal())
        .await?;
    Ok(())
}
