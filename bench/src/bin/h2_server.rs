//! The physical-limit reference: a minimal HTTP/2 server on the same h2
//! crate and tokio runtime as grpc-core that answers gRPC requests with
//! bytes, without any gRPC layer: `SayHello` gets a fixed, pre-encoded
//! reply, any other path gets its request body back. Headers, one DATA
//! frame, trailers `grpc-status: 0`.
//!
//! `bench-h2-server [--port 0] [--tls-cert F --tls-key F]`; prints `PORT <n>`.

use std::sync::Arc;

use bench::pb::helloworld::HelloReply;
use bench::{ServerArgs, SAY_HELLO};
use bytes::{BufMut, Bytes, BytesMut};
use clap::Parser;
use http::{HeaderMap, HeaderValue, Response};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};

fn framed(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(msg);
    b.freeze()
}

async fn serve<T: AsyncRead + AsyncWrite + Unpin>(io: T, hello: Bytes) {
    let mut conn = match h2::server::Builder::new()
        .initial_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(64 << 10)
        .handshake::<_, Bytes>(io)
        .await
    {
        Ok(c) => c,
        Err(_) => return,
    };
    while let Some(Ok((req, mut respond))) = conn.accept().await {
        let hello = hello.clone();
        tokio::spawn(async move {
            let echo = req.uri().path() != SAY_HELLO;
            let mut body = req.into_body();
            let mut got = BytesMut::new();
            while let Some(chunk) = body.data().await {
                let Ok(chunk) = chunk else { return };
                let _ = body.flow_control().release_capacity(chunk.len());
                if echo {
                    got.extend_from_slice(&chunk);
                }
            }
            let mut resp = Response::new(());
            resp.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
            let Ok(mut stream) = respond.send_response(resp, false) else { return };
            let data = if echo { got.freeze() } else { hello };
            stream.reserve_capacity(data.len());
            if stream.send_data(data, false).is_err() {
                return;
            }
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", HeaderValue::from_static("0"));
            let _ = stream.send_trailers(trailers);
        });
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = ServerArgs::parse();
    let hello = framed(&HelloReply { message: "Hello, world!".into() }.encode_to_vec());
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tokio_rustls::TlsAcceptor::from(Arc::new(bench::rustls_server_config(c, k)?))),
        _ => None,
    };
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
    bench::announce_port(listener.local_addr()?.port());
    let accept = async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else { continue };
            let _ = sock.set_nodelay(true);
            let hello = hello.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(s) = acceptor.accept(sock).await {
                            serve(s, hello).await
                        }
                    }
                    None => serve(sock, hello).await,
                }
            });
        }
    };
    tokio::select! {
        _ = accept => {}
        _ = bench::until_signal() => {}
    }
    Ok(())
}
