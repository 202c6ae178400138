//! Greeter server: `greeter-server [--addr 127.0.0.1:0] [--tls-dir DIR]`.
//! With `--tls-dir` it makes a demo CA and serves TLS; it prints its address.

use std::time::Duration;

use clap::Parser;
use examples_rust::{HelloReply, HelloRequest, SAY_HELLO, SAY_HELLO_STREAM};
use grpc_core::typed::{encode, recv_one, unary_handler};
use grpc_core::{MethodKind, Server, ServerCall, ServerOptions, ServerTlsConfig, Status};

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free one).
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: String,
    /// Generate a demo CA + certificate here and serve TLS.
    #[arg(long)]
    tls_dir: Option<std::path::PathBuf>,
    /// Exit after this many seconds (0 = run until killed).
    #[arg(long, default_value_t = 0)]
    exit_after: u64,
}

async fn stream_reply(mut call: ServerCall) -> Status {
    let req: HelloRequest = match recv_one(&mut call).await {
        Ok(r) => r,
        Err(s) => return s,
    };
    for greeting in ["Hello", "Bonjour", "Hallo", "Hola"] {
        let reply = HelloReply { message: format!("{greeting}, {}!", req.name) };
        if let Err(s) = call.send(encode(&reply)).await {
            return s;
        }
    }
    Status::ok()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut opts = ServerOptions::default();
    if let Some(dir) = &args.tls_dir {
        examples_rust::write_demo_certs(dir)?;
        opts.tls = Some(ServerTlsConfig {
            cert_chain_pem: std::fs::read(dir.join("server.pem"))?,
            private_key_pem: std::fs::read(dir.join("server.key"))?,
            ..Default::default()
        });
    }
    let (builder, _health) = Server::builder(opts)
        .register(
            SAY_HELLO,
            MethodKind::Unary,
            unary_handler(|req: HelloRequest, md| async move {
                let from = md.get("x-client").unwrap_or("someone").to_string();
                println!("server: SayHello(name={:?}) from {from}", req.name);
                Ok(HelloReply { message: format!("Hello, {}!", req.name) })
            }),
        )?
        .register(SAY_HELLO_STREAM, MethodKind::ServerStreaming, stream_reply)?
        .with_reflection(&examples_rust::descriptor_set())?
        .with_health();
    let server = builder.build()?;
    let addr = server.bind(&args.addr).await?;
    server.start();
    println!("listening on {addr}{}", if args.tls_dir.is_some() { " (TLS)" } else { "" });
    if args.exit_after > 0 {
        tokio::time::sleep(Duration::from_secs(args.exit_after)).await;
    } else {
        tokio::signal::ctrl_c().await?;
    }
    server.shutdown(Duration::from_secs(2)).await;
    Ok(())
}
