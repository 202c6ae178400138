//! Greeter client: `greeter-client --target 127.0.0.1:PORT [--ca ca.pem] [--name NAME]`.

use clap::Parser;
use examples_rust::{HelloReply, HelloRequest, SAY_HELLO, SAY_HELLO_STREAM};
use grpc_core::typed::{decode, encode};
use grpc_core::{CallOptions, Channel, ChannelOptions, ClientTlsConfig, Metadata};

#[derive(Parser)]
struct Args {
    /// Server target (host:port, dns:///host:port, unix:/path ...).
    #[arg(long)]
    target: String,
    /// Trust this CA and use TLS.
    #[arg(long)]
    ca: Option<std::path::PathBuf>,
    /// Name to greet.
    #[arg(long, default_value = "world")]
    name: String,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut opts = ChannelOptions::default();
    if let Some(ca) = &args.ca {
        opts.tls = Some(ClientTlsConfig {
            root_certs_pem: Some(std::fs::read(ca)?),
            server_name_override: Some("localhost".into()),
            ..Default::default()
        });
    }
    let channel = Channel::new(&args.target, opts)?;
    let mut md = Metadata::new();
    md.insert("x-client", "rust-greeter")?;
    let call_opts =
        CallOptions { metadata: md, timeout: Some(std::time::Duration::from_secs(10)), ..Default::default() };
    let reply: HelloReply =
        grpc_core::typed::unary(&channel, SAY_HELLO, &HelloRequest { name: args.name.clone() }, call_opts.clone())
            .await?;
    println!("client: SayHello -> {:?}", reply.message);
    let mut call = channel.call(SAY_HELLO_STREAM, call_opts).await?;
    call.send_last(encode(&HelloRequest { name: args.name.clone() })).await?;
    while let Some(b) = call.recv().await? {
        let r: HelloReply = decode(&b)?;
        println!("client: SayHelloStreamReply -> {:?}", r.message);
    }
    println!("client: status {}", call.finish().await.code());
    Ok(())
}
