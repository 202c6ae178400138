//! Helpers shared by the behaviour suites: an in-process server, a raw HTTP/2
//! client and server (to send and answer what the engine never would), a test
//! PKI made with rcgen, and bounded waits.
#![allow(dead_code)]

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use grpc_core::server::ServerBuilder;
use grpc_core::{Channel, ChannelOptions, Server, ServerCall, Status};
use http::{HeaderMap, Request};
use tokio::net::{TcpListener, TcpStream};

/// The bound for anything that should happen "soon": generous, so a loaded
/// 2-core machine still passes, but every test ends.
pub(crate) const BOUND: Duration = Duration::from_secs(20);

/// Builds, binds on 127.0.0.1:0 and starts a server; returns it and its address.
pub(crate) async fn start(builder: ServerBuilder) -> (Server, String) {
    let server = builder.build().unwrap();
    let addr = server.bind("127.0.0.1:0").await.unwrap();
    server.start();
    (server, addr.to_string())
}

/// A plaintext channel with default options.
pub(crate) fn channel(addr: &str) -> Channel {
    Channel::new(addr, ChannelOptions::default()).unwrap()
}

/// Echoes every request message back, then OK.
pub(crate) async fn echo(mut call: ServerCall) -> Status {
    loop {
        match call.recv().await {
            Ok(Some(m)) => {
                if let Err(s) = call.send(m).await {
                    return s;
                }
            }
            Ok(None) => return Status::ok(),
            Err(s) => return s,
        }
    }
}

/// A port nothing listens on (bound, then released).
pub(crate) fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Awaits `f`, failing the test if it takes longer than [`BOUND`].
pub(crate) async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(BOUND, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {BOUND:?}: {what}"),
    }
}

/// Polls `cond` every 10 ms until it holds, failing after [`BOUND`].
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < BOUND, "timed out after {BOUND:?} waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sets its flag when dropped: proves a handler future was dropped.
#[derive(Debug)]
pub(crate) struct DropFlag(pub(crate) Arc<AtomicBool>);

impl Drop for DropFlag {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A fresh flag and a guard that sets it on drop.
pub(crate) fn drop_flag() -> (Arc<AtomicBool>, impl Fn() -> DropFlag + Send + Sync + Clone + 'static) {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    (flag, move || DropFlag(f.clone()))
}

/// One gRPC length-prefixed frame.
pub(crate) fn frame(flag: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + payload.len());
    b.put_u8(flag);
    b.put_u32(payload.len() as u32);
    b.extend_from_slice(payload);
    b.freeze()
}

/// Splits a body into gRPC frames: (flag, payload).
pub(crate) fn parse_frames(mut body: &[u8]) -> Vec<(u8, Bytes)> {
    let mut out = Vec::new();
    while body.len() >= 5 {
        let flag = body.get_u8();
        let len = body.get_u32() as usize;
        assert!(body.len() >= len, "truncated frame in response body");
        out.push((flag, Bytes::copy_from_slice(&body[..len])));
        body.advance(len);
    }
    assert!(body.is_empty(), "trailing bytes in response body");
    out
}

// ---------------------------------------------------------------------------
// Raw HTTP/2 client
// ---------------------------------------------------------------------------

/// Opens a plain HTTP/2 connection (no gRPC layer) to `addr`.
pub(crate) async fn raw_connect(addr: &str) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(async move {
        let _ = conn.await;
    });
    send
}

/// A POST request for `path` with the gRPC headers (content-type, te).
pub(crate) fn grpc_request(path: &str) -> http::request::Builder {
    let uri = http::Uri::builder().scheme("http").authority("localhost").path_and_query(path).build().unwrap();
    Request::builder().method("POST").uri(uri).header("content-type", "application/grpc").header("te", "trailers")
}

/// What a raw call got back.
#[derive(Debug)]
pub(crate) struct RawResponse {
    /// The HTTP status.
    pub(crate) status: u16,
    /// The response headers.
    pub(crate) headers: HeaderMap,
    /// The whole body.
    pub(crate) body: Vec<u8>,
    /// The trailers (`None` for a trailers-only response).
    pub(crate) trailers: Option<HeaderMap>,
}

impl RawResponse {
    /// Where the status lives: the trailers, or the headers of a trailers-only response.
    pub(crate) fn status_headers(&self) -> &HeaderMap {
        self.trailers.as_ref().unwrap_or(&self.headers)
    }
    /// `grpc-status` as a number.
    pub(crate) fn grpc_status(&self) -> Option<i32> {
        self.status_headers().get("grpc-status").map(|v| v.to_str().unwrap().parse().unwrap())
    }
    /// `grpc-message`, percent-decoded.
    pub(crate) fn grpc_message(&self) -> String {
        self.status_headers()
            .get("grpc-message")
            .map(|v| grpc_core::metadata::decode_grpc_message(v.as_bytes()))
            .unwrap_or_default()
    }
    /// The body's gRPC frames.
    pub(crate) fn frames(&self) -> Vec<(u8, Bytes)> {
        parse_frames(&self.body)
    }
    /// A response header as a string.
    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_string())
    }
}

/// Sends `req` with these DATA chunks (END_STREAM on the last one when
/// `end`), then reads the whole response.
pub(crate) async fn raw_call(
    send: &h2::client::SendRequest<Bytes>,
    req: Request<()>,
    body: Vec<Bytes>,
    end: bool,
) -> Result<RawResponse, h2::Error> {
    let mut send = send.clone().ready().await?;
    let (resp, mut stream) = send.send_request(req, body.is_empty() && end)?;
    let n = body.len();
    for (i, chunk) in body.into_iter().enumerate() {
        stream.send_data(chunk, end && i + 1 == n)?;
    }
    let resp = resp.await?;
    let out = read_response(resp).await;
    drop(stream);
    out
}

/// Reads status, headers, body and trailers.
pub(crate) async fn read_response(resp: http::Response<h2::RecvStream>) -> Result<RawResponse, h2::Error> {
    let (parts, mut recv) = resp.into_parts();
    let mut body = Vec::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        body.extend_from_slice(&chunk);
    }
    let trailers = recv.trailers().await?;
    Ok(RawResponse { status: parts.status.as_u16(), headers: parts.headers, body, trailers })
}

// ---------------------------------------------------------------------------
// Raw HTTP/2 server
// ---------------------------------------------------------------------------

/// The request a raw server handler gets and the way to answer it.
pub(crate) type RawRespond = h2::server::SendResponse<Bytes>;

/// Serves HTTP/2 on 127.0.0.1:0, calling `handler` for every request; the
/// handler answers through the `SendResponse` (spawn to keep a stream going).
pub(crate) async fn raw_server(
    handler: impl Fn(Request<h2::RecvStream>, RawRespond) + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let handler = handler.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else { return };
                while let Some(Ok((req, respond))) = conn.accept().await {
                    handler(req, respond);
                }
            });
        }
    });
    addr
}

/// A response head with `:status` and these headers.
pub(crate) fn response(status: u16, headers: &[(&str, &str)]) -> http::Response<()> {
    let mut b = http::Response::builder().status(status);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap()
}

// ---------------------------------------------------------------------------
// Test PKI
// ---------------------------------------------------------------------------

/// The DNS name in the server certificate.
pub(crate) const SERVER_NAME: &str = "foo.test.example";

/// A CA, a server certificate for [`SERVER_NAME`] and a client certificate, made at test time.
#[derive(Debug)]
pub(crate) struct Pki {
    pub(crate) ca_pem: String,
    pub(crate) ca_der: Vec<u8>,
    pub(crate) server_cert_pem: String,
    pub(crate) server_key_pem: String,
    pub(crate) server_cert_der: Vec<u8>,
    pub(crate) server_key_der: Vec<u8>,
    pub(crate) client_cert_pem: String,
    pub(crate) client_key_pem: String,
    pub(crate) client_cert_der: Vec<u8>,
}

/// Generates a fresh [`Pki`].
pub(crate) fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "grpc-core test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf = |names: Vec<String>, cn: &str, eku: ExtendedKeyUsagePurpose| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.extended_key_usages = vec![eku];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &ca_cert, &ca_key).unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec(), key.serialize_der())
    };
    let (server_cert_pem, server_key_pem, server_cert_der, server_key_der) =
        leaf(vec![SERVER_NAME.to_string()], SERVER_NAME, ExtendedKeyUsagePurpose::ServerAuth);
    let (client_cert_pem, client_key_pem, client_cert_der, _) =
        leaf(vec!["client.test.example".to_string()], "test client", ExtendedKeyUsagePurpose::ClientAuth);
    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().to_vec(),
        server_cert_pem,
        server_key_pem,
        server_cert_der,
        server_key_der,
        client_cert_pem,
        client_key_pem,
        client_cert_der,
    }
}

/// The ring crypto provider (the engine uses ring too).
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Pki {
    /// A rustls client config trusting this CA, limited to `versions`, offering `alpn`.
    pub(crate) fn raw_client_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(rustls::pki_types::CertificateDer::from(self.ca_der.clone())).unwrap();
        let mut c = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(c)
    }

    /// A rustls server config with the server certificate, limited to `versions`, offering `alpn`.
    pub(crate) fn raw_server_config(
        &self,
        versions: &[&'static rustls::SupportedProtocolVersion],
        alpn: &[&[u8]],
    ) -> Arc<rustls::ServerConfig> {
        let mut c = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![rustls::pki_types::CertificateDer::from(self.server_cert_der.clone())],
                rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key_der.clone().into()),
            )
            .unwrap();
        c.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        Arc::new(c)
    }
}
