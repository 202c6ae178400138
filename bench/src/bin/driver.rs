//! The load driver: N connections × M streams against any gRPC server by
//! address, every response checked (HTTP 200, one well-formed message of the
//! expected size, trailers with `grpc-status: 0`), latency histograms, and
//! the server's CPU time from `/proc/PID/stat` around the measured window.
//!
//! Clients: `h2` (default) speaks gRPC over raw h2 with pre-encoded
//! requests, the cheapest driver; `core` uses grpc-core's Rust API and
//! `tonic` tonic's generated client, both encoding and decoding prost
//! messages per call as an application does (the binding-overhead scenario).
//!
//! Prints one JSON object on stdout (and a summary on stderr); exits 1 when
//! any call failed. `bench-driver certs DIR` writes test certificates.

use std::future::poll_fn;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bench::pb::echo::echo_client::EchoClient;
use bench::pb::echo::Payload;
use bench::pb::helloworld::greeter_client::GreeterClient;
use bench::pb::helloworld::{HelloReply, HelloRequest};
use bench::procfs;
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;
use http::{HeaderMap, HeaderValue, Method, Request};
use prost::Message;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, Semaphore};

#[derive(Parser, Debug)]
struct Args {
    /// Server address, `host:port`.
    #[arg(long, global = true, default_value = "127.0.0.1:50051")]
    target: String,
    /// Use TLS, trusting this CA (server name `localhost`).
    #[arg(long, global = true)]
    tls_ca: Option<PathBuf>,
    /// The server's process id, for its CPU time and RSS.
    #[arg(long, global = true)]
    server_pid: Option<u32>,
    /// Which client speaks to the server.
    #[arg(long, global = true, value_enum, default_value_t = ClientKind::H2)]
    client: ClientKind,
    /// Seconds measured.
    #[arg(long, global = true, default_value_t = 5.0)]
    duration: f64,
    /// Seconds of load before measuring.
    #[arg(long, global = true, default_value_t = 1.0)]
    warmup: f64,
    /// Stop measuring after this many calls (or messages), whichever comes first.
    #[arg(long, global = true, default_value_t = 10_000_000)]
    max_calls: u64,
    /// A label copied into the JSON output.
    #[arg(long, global = true, default_value = "")]
    label: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ClientKind {
    /// Raw h2 with pre-encoded requests.
    H2,
    /// grpc-core's Rust API.
    Core,
    /// tonic's generated client.
    Tonic,
}

#[derive(Subcommand, Debug)]
enum Mode {
    /// Unary calls: `--conns` connections × `--streams` calls in flight on each.
    Unary {
        #[arg(long, default_value_t = 1)]
        conns: usize,
        #[arg(long, default_value_t = 1)]
        streams: usize,
        /// 0: `SayHello("world")`; otherwise `Echo/Unary` with a payload of this many bytes.
        #[arg(long, default_value_t = 0)]
        size: usize,
    },
    /// One bidi stream (`Echo/Stream`) with up to `--window` messages in flight.
    Stream {
        #[arg(long, default_value_t = 64)]
        window: usize,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 16)]
        size: usize,
    },
    /// Memory per connection and per stream: opens `--conns` connections
    /// (one SayHello on each), then `--streams` open bidi streams on each
    /// (one echo on each), and reads the server's RSS at every step.
    Fanin {
        #[arg(long, default_value_t = 10)]
        conns: usize,
        #[arg(long, default_value_t = 100)]
        streams: usize,
    },
    /// Writes `ca.pem`, `server.pem`, `server.key` into a directory.
    Certs { dir: PathBuf },
}

// ---------------------------------------------------------------- wire ----

fn framed(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.put_u8(0);
    b.put_u32(msg.len() as u32);
    b.put_slice(msg);
    b.freeze()
}

/// Counts the gRPC messages in a response body without copying them,
/// checking each length against `expect`.
#[derive(Debug)]
struct Frames {
    expect: Option<u32>,
    hdr: [u8; 5],
    hdr_len: usize,
    remaining: u64,
    in_body: bool,
    msgs: u64,
}

impl Frames {
    fn new(expect: Option<u32>) -> Frames {
        Frames { expect, hdr: [0; 5], hdr_len: 0, remaining: 0, in_body: false, msgs: 0 }
    }

    /// Feeds bytes; returns how many messages completed.
    fn push(&mut self, mut data: &[u8]) -> Result<u64, String> {
        let before = self.msgs;
        while !data.is_empty() {
            if self.in_body {
                let n = (self.remaining as usize).min(data.len());
                self.remaining -= n as u64;
                data = &data[n..];
                if self.remaining == 0 {
                    self.in_body = false;
                    self.msgs += 1;
                }
                continue;
            }
            let n = (5 - self.hdr_len).min(data.len());
            self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&data[..n]);
            self.hdr_len += n;
            data = &data[n..];
            if self.hdr_len == 5 {
                self.hdr_len = 0;
                if self.hdr[0] != 0 {
                    return Err(format!("unexpected compressed flag {}", self.hdr[0]));
                }
                let len = u32::from_be_bytes([self.hdr[1], self.hdr[2], self.hdr[3], self.hdr[4]]);
                match self.expect {
                    Some(e) if e != len => return Err(format!("response message of {len} bytes, expected {e}")),
                    None if len == 0 => return Err("empty response message".into()),
                    _ => {}
                }
                if len == 0 {
                    self.msgs += 1;
                } else {
                    self.remaining = len as u64;
                    self.in_body = true;
                }
            }
        }
        Ok(self.msgs - before)
    }

    fn complete(&self) -> bool {
        self.hdr_len == 0 && !self.in_body
    }
}

fn check_status(h: &HeaderMap) -> Result<(), String> {
    match h.get("grpc-status").map(|v| v.as_bytes()) {
        Some(b"0") => Ok(()),
        Some(code) => {
            let msg = h.get("grpc-message").map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned());
            Err(format!("grpc-status {} {}", String::from_utf8_lossy(code), msg.unwrap_or_default()))
        }
        None => Err("no grpc-status".into()),
    }
}

fn e2s<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

// ------------------------------------------------------------ raw h2 ----

/// The parts of a request every call reuses.
#[derive(Debug)]
struct Template {
    uri: http::Uri,
    headers: HeaderMap,
}

impl Template {
    fn new(scheme: &str, authority: &str, path: &str) -> Template {
        let uri = format!("{scheme}://{authority}{path}").parse().expect("valid uri");
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
        headers.insert(http::header::USER_AGENT, HeaderValue::from_static("grpc-core-bench-driver"));
        Template { uri, headers }
    }

    fn request(&self) -> Request<()> {
        let mut r = Request::new(());
        *r.method_mut() = Method::POST;
        *r.uri_mut() = self.uri.clone();
        *r.headers_mut() = self.headers.clone();
        r
    }
}

type H2Send = h2::client::SendRequest<Bytes>;

async fn h2_handshake<T: AsyncRead + AsyncWrite + Unpin + Send + 'static>(io: T) -> Result<H2Send, String> {
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(4 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(64 << 10)
        .handshake(io)
        .await
        .map_err(e2s)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

fn tls_connector(ca: &std::path::Path) -> Result<tokio_rustls::TlsConnector, String> {
    let pem = std::fs::read(ca).map_err(e2s)?;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(c.map_err(e2s)?).map_err(e2s)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(e2s)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

async fn h2_connect(target: &str, tls: Option<&tokio_rustls::TlsConnector>) -> Result<H2Send, String> {
    let tcp = tokio::net::TcpStream::connect(target).await.map_err(e2s)?;
    tcp.set_nodelay(true).map_err(e2s)?;
    match tls {
        Some(c) => {
            let name = rustls::pki_types::ServerName::try_from("localhost").map_err(e2s)?;
            h2_handshake(c.connect(name, tcp).await.map_err(e2s)?).await
        }
        None => h2_handshake(tcp).await,
    }
}

async fn h2_unary(send: &mut H2Send, tmpl: &Template, body: Bytes, expect: Option<u32>) -> Result<(), String> {
    poll_fn(|cx| send.poll_ready(cx)).await.map_err(e2s)?;
    let (resp, mut stream) = send.send_request(tmpl.request(), false).map_err(e2s)?;
    stream.send_data(body, true).map_err(e2s)?;
    let resp = resp.await.map_err(e2s)?;
    let (parts, mut body) = resp.into_parts();
    if parts.status != http::StatusCode::OK {
        return Err(format!("HTTP status {}", parts.status));
    }
    if body.is_end_stream() {
        check_status(&parts.headers)?;
        return Err("trailers-only response without a message".into());
    }
    let mut frames = Frames::new(expect);
    while let Some(chunk) = body.data().await {
        let chunk = chunk.map_err(e2s)?;
        let _ = body.flow_control().release_capacity(chunk.len());
        frames.push(&chunk)?;
    }
    let trailers = body.trailers().await.map_err(e2s)?.ok_or("no trailers")?;
    check_status(&trailers)?;
    if frames.msgs != 1 || !frames.complete() {
        return Err(format!("{} response messages (complete: {})", frames.msgs, frames.complete()));
    }
    Ok(())
}

// ------------------------------------------------------------ clients ----

/// One connection of the chosen client kind.
#[derive(Clone, Debug)]
enum Conn {
    H2(H2Send),
    Core(grpc_core::Channel),
    Tonic(tonic::transport::Channel),
}

/// What a unary call sends and expects back.
#[derive(Debug)]
struct UnaryWork {
    /// 0 = SayHello.
    size: usize,
    tmpl: Template,
    framed: Bytes,
    expect: Option<u32>,
    payload: Bytes,
}

async fn connect(args: &Args) -> Result<Conn, String> {
    let tls = args.tls_ca.as_deref();
    match args.client {
        ClientKind::H2 => {
            let c = tls.map(tls_connector).transpose()?;
            Ok(Conn::H2(h2_connect(&args.target, c.as_ref()).await?))
        }
        ClientKind::Core => {
            let mut opts =
                grpc_core::ChannelOptions { max_recv_message_size: bench::MAX_MESSAGE, ..Default::default() };
            if let Some(ca) = tls {
                opts.tls = Some(grpc_core::ClientTlsConfig {
                    root_certs_pem: Some(std::fs::read(ca).map_err(e2s)?),
                    server_name_override: Some("localhost".into()),
                    ..Default::default()
                });
            }
            let ch = grpc_core::Channel::new(&args.target, opts).map_err(e2s)?;
            ch.ready(Some(std::time::Instant::now() + Duration::from_secs(10))).await.map_err(e2s)?;
            Ok(Conn::Core(ch))
        }
        ClientKind::Tonic => {
            let scheme = if tls.is_some() { "https" } else { "http" };
            let mut ep = tonic::transport::Endpoint::from_shared(format!("{scheme}://{}", args.target))
                .map_err(e2s)?
                .tcp_nodelay(true);
            if let Some(ca) = tls {
                let ca = tonic::transport::Certificate::from_pem(std::fs::read(ca).map_err(e2s)?);
                ep = ep
                    .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca).domain_name("localhost"))
                    .map_err(e2s)?;
            }
            Ok(Conn::Tonic(ep.connect().await.map_err(e2s)?))
        }
    }
}

async fn unary_once(conn: &mut Conn, w: &UnaryWork) -> Result<(), String> {
    match conn {
        Conn::H2(send) => h2_unary(send, &w.tmpl, w.framed.clone(), w.expect).await,
        Conn::Core(ch) => {
            let opts = grpc_core::CallOptions::default();
            if w.size == 0 {
                let req = Bytes::from(HelloRequest { name: "world".into() }.encode_to_vec());
                let r = ch.unary(bench::SAY_HELLO, req, opts).await.map_err(e2s)?;
                let reply = HelloReply::decode(r.message).map_err(e2s)?;
                check_hello(&reply.message)
            } else {
                let req = Bytes::from(Payload { data: w.payload.clone() }.encode_to_vec());
                let r = ch.unary(bench::ECHO_UNARY, req, opts).await.map_err(e2s)?;
                check_len(Payload::decode(r.message).map_err(e2s)?.data.len(), w.size)
            }
        }
        Conn::Tonic(ch) => {
            if w.size == 0 {
                let mut c = GreeterClient::new(ch.clone());
                let r = c.say_hello(HelloRequest { name: "world".into() }).await.map_err(e2s)?;
                check_hello(&r.into_inner().message)
            } else {
                let mut c = EchoClient::new(ch.clone())
                    .max_decoding_message_size(bench::MAX_MESSAGE)
                    .max_encoding_message_size(bench::MAX_MESSAGE);
                let r = c.unary(Payload { data: w.payload.clone() }).await.map_err(e2s)?;
                check_len(r.into_inner().data.len(), w.size)
            }
        }
    }
}

fn check_hello(m: &str) -> Result<(), String> {
    if m == "Hello, world!" {
        Ok(())
    } else {
        Err(format!("unexpected reply {m:?}"))
    }
}

fn check_len(got: usize, want: usize) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("echo of {got} bytes, expected {want}"))
    }
}

// --------------------------------------------------------- measuring ----

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// Phase and counters shared by every load task.
#[derive(Debug)]
struct Run {
    phase: AtomicU8,
    calls: AtomicU64,
    errors: AtomicU64,
    max_calls: u64,
    full: Notify,
    first_error: Mutex<Option<String>>,
}

impl Run {
    fn new(max_calls: u64) -> Arc<Run> {
        Arc::new(Run {
            phase: AtomicU8::new(WARMUP),
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            max_calls,
            full: Notify::new(),
            first_error: Mutex::new(None),
        })
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Relaxed)
    }

    /// Records one finished call; true if it counts (measure phase).
    fn done(&self, hist: &mut Histogram<u64>, started: Instant, r: Result<(), String>) -> bool {
        if let Err(e) = r {
            // Errors count in every phase: a broken server must not look fast.
            self.errors.fetch_add(1, Ordering::Relaxed);
            let mut f = self.first_error.lock().unwrap_or_else(|e| e.into_inner());
            if f.is_none() {
                *f = Some(e);
            }
            return false;
        }
        if self.phase() != MEASURE {
            return false;
        }
        let _ = hist.record(started.elapsed().as_nanos().max(1) as u64);
        if self.calls.fetch_add(1, Ordering::Relaxed) + 1 >= self.max_calls {
            self.full.notify_one();
        }
        true
    }
}

fn new_hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000_000, 3).expect("histogram bounds")
}

/// CPU and wall time around the measured window.
#[derive(Debug, Default)]
struct Window {
    secs: f64,
    server_cpu: Option<Duration>,
    self_cpu: Duration,
}

/// Warms up, measures until `duration` or `max_calls`, then stops the tasks.
async fn supervise(args: &Args, run: &Run) -> Window {
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let pid = args.server_pid.map(|p| p.to_string());
    let srv0 = pid.as_deref().and_then(|p| procfs::cpu_time(p).ok());
    let me0 = procfs::cpu_time("self").unwrap_or_default();
    let t0 = Instant::now();
    run.phase.store(MEASURE, Ordering::Relaxed);
    tokio::select! {
        _ = tokio::time::sleep(Duration::from_secs_f64(args.duration)) => {}
        _ = run.full.notified() => {}
    }
    run.phase.store(STOP, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let srv1 = pid.as_deref().and_then(|p| procfs::cpu_time(p).ok());
    let me1 = procfs::cpu_time("self").unwrap_or_default();
    Window { secs, server_cpu: srv0.zip(srv1).map(|(a, b)| b.saturating_sub(a)), self_cpu: me1.saturating_sub(me0) }
}

// ------------------------------------------------------------- output ----

#[derive(Debug, Default)]
struct Report {
    fields: Vec<(String, String)>,
}

impl Report {
    fn str(&mut self, k: &str, v: &str) {
        let esc = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', " ");
        self.fields.push((k.into(), format!("\"{esc}\"")));
    }
    fn num(&mut self, k: &str, v: f64) {
        let s = if v.is_finite() { format!("{v:.3}") } else { "null".into() };
        self.fields.push((k.into(), s));
    }
    fn raw(&mut self, k: &str, v: String) {
        self.fields.push((k.into(), v));
    }
    fn json(&self) -> String {
        let body: Vec<String> = self.fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }
}

const QUANTILES: [f64; 8] = [0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 0.9999, 1.0];

fn report_common(rep: &mut Report, args: &Args, run: &Run, w: &Window, hist: &Histogram<u64>, per: &str) -> u64 {
    let calls = run.calls.load(Ordering::Relaxed);
    let errors = run.errors.load(Ordering::Relaxed);
    rep.str("label", &args.label);
    rep.str("client", &format!("{:?}", args.client).to_lowercase());
    rep.num("calls", calls as f64);
    rep.num("errors", errors as f64);
    if let Some(e) = run.first_error.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
        rep.str("first_error", e);
    }
    rep.num("secs", w.secs);
    rep.num("rate", calls as f64 / w.secs);
    let us = |ns: u64| ns as f64 / 1000.0;
    if !hist.is_empty() {
        rep.num("p50_us", us(hist.value_at_quantile(0.5)));
        rep.num("p90_us", us(hist.value_at_quantile(0.9)));
        rep.num("p99_us", us(hist.value_at_quantile(0.99)));
        rep.num("p999_us", us(hist.value_at_quantile(0.999)));
        rep.num("max_us", us(hist.max()));
        rep.num("mean_us", hist.mean() / 1000.0);
        let qs: Vec<String> =
            QUANTILES.iter().map(|q| format!("[{q},{:.3}]", us(hist.value_at_quantile(*q)))).collect();
        rep.raw("percentiles_us", format!("[{}]", qs.join(",")));
    }
    let per_call = |d: Duration| if calls > 0 { d.as_secs_f64() * 1e6 / calls as f64 } else { f64::NAN };
    if let Some(c) = w.server_cpu {
        rep.num("server_cpu_s", c.as_secs_f64());
        rep.num("server_cpu_util", c.as_secs_f64() / w.secs);
        rep.num(&format!("server_cpu_us_per_{per}"), per_call(c));
    }
    rep.num("driver_cpu_util", w.self_cpu.as_secs_f64() / w.secs);
    rep.num(&format!("driver_cpu_us_per_{per}"), per_call(w.self_cpu));
    eprintln!(
        "{} {:?}: {calls} {per}s in {:.2}s = {:.0}/s, errors {errors}, p50 {:.1} µs, p99 {:.1} µs, server CPU {} µs/{per}, driver CPU {:.0}%",
        args.label,
        args.client,
        w.secs,
        calls as f64 / w.secs,
        us(hist.value_at_quantile(0.5)),
        us(hist.value_at_quantile(0.99)),
        w.server_cpu.map(|c| format!("{:.2}", per_call(c))).unwrap_or_else(|| "?".into()),
        100.0 * w.self_cpu.as_secs_f64() / w.secs,
    );
    errors
}

// -------------------------------------------------------------- modes ----

async fn run_unary(args: &Args, conns: usize, streams: usize, size: usize) -> Result<u64, String> {
    let scheme = if args.tls_ca.is_some() { "https" } else { "http" };
    let (path, msg, expect) = if size == 0 {
        (bench::SAY_HELLO, HelloRequest { name: "world".into() }.encode_to_vec(), None)
    } else {
        let m = Payload { data: Bytes::from(vec![b'x'; size]) }.encode_to_vec();
        let len = m.len() as u32;
        (bench::ECHO_UNARY, m, Some(len))
    };
    let work = Arc::new(UnaryWork {
        size,
        tmpl: Template::new(scheme, &args.target, path),
        framed: framed(&msg),
        expect,
        payload: Bytes::from(vec![b'x'; size]),
    });
    let run = Run::new(args.max_calls);
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let conn = connect(args).await?;
        for _ in 0..streams {
            let (mut conn, work, run) = (conn.clone(), work.clone(), run.clone());
            tasks.push(tokio::spawn(async move {
                let mut hist = new_hist();
                while run.phase() != STOP {
                    let t = Instant::now();
                    let r = unary_once(&mut conn, &work).await;
                    run.done(&mut hist, t, r);
                }
                hist
            }));
        }
    }
    let w = supervise(args, &run).await;
    let mut hist = new_hist();
    for t in tasks {
        if let Ok(h) = tokio::time::timeout(Duration::from_secs(30), t).await.map_err(e2s)? {
            hist.add(h).map_err(e2s)?;
        }
    }
    let mut rep = Report::default();
    rep.str("mode", "unary");
    rep.num("conns", conns as f64);
    rep.num("streams", streams as f64);
    rep.num("size", size as f64);
    let errors = report_common(&mut rep, args, &run, &w, &hist, "call");
    if size > 0 {
        let calls = run.calls.load(Ordering::Relaxed) as f64;
        rep.num("gb_per_s_each_way", calls * size as f64 / w.secs / 1e9);
    }
    println!("{}", rep.json());
    Ok(errors)
}

/// Waits for room in the window; false once the run stops.
async fn next_send(run: &Run, sem: &Semaphore, sent_at: &Mutex<std::collections::VecDeque<Instant>>) -> bool {
    if run.phase() == STOP {
        return false;
    }
    let Ok(p) = sem.acquire().await else { return false };
    p.forget();
    if run.phase() == STOP {
        sem.add_permits(1);
        return false;
    }
    sent_at.lock().unwrap_or_else(|e| e.into_inner()).push_back(Instant::now());
    true
}

/// The send and receive halves of one bidi stream, for any client.
async fn run_stream(args: &Args, window: usize, size: usize) -> Result<u64, String> {
    let conn = connect(args).await?;
    let run = Run::new(args.max_calls);
    let sem = Arc::new(Semaphore::new(window));
    let sent_at: Arc<Mutex<std::collections::VecDeque<Instant>>> = Default::default();
    let payload = Bytes::from(vec![b'x'; size]);
    let msg = Payload { data: payload.clone() }.encode_to_vec();
    let expect = msg.len() as u32;
    let frame = framed(&msg);

    // Each half loops until STOP; the sender then half-closes and the
    // receiver drains the rest and checks the final status.
    let task: tokio::task::JoinHandle<Result<Histogram<u64>, String>> = {
        let (run, sem, sent_at) = (run.clone(), sem.clone(), sent_at.clone());
        let scheme = if args.tls_ca.is_some() { "https" } else { "http" };
        let tmpl = Template::new(scheme, &args.target, bench::ECHO_STREAM);
        tokio::spawn(async move {
            let mut hist = new_hist();
            let on_msg = |hist: &mut Histogram<u64>, sem: &Semaphore| {
                let t = sent_at.lock().unwrap_or_else(|e| e.into_inner()).pop_front();
                sem.add_permits(1);
                if let Some(t) = t {
                    run.done(hist, t, Ok(()));
                }
            };
            let sending = || next_send(&run, &sem, &sent_at);
            match conn {
                Conn::H2(mut send) => {
                    poll_fn(|cx| send.poll_ready(cx)).await.map_err(e2s)?;
                    let (resp, mut tx) = send.send_request(tmpl.request(), false).map_err(e2s)?;
                    let sender = async {
                        while sending().await {
                            tx.send_data(frame.clone(), false).map_err(e2s)?;
                        }
                        tx.send_data(Bytes::new(), true).map_err(e2s)
                    };
                    let receiver = async {
                        let resp = resp.await.map_err(e2s)?;
                        let (parts, mut body) = resp.into_parts();
                        if parts.status != http::StatusCode::OK {
                            return Err(format!("HTTP status {}", parts.status));
                        }
                        let mut frames = Frames::new(Some(expect));
                        while let Some(chunk) = body.data().await {
                            let chunk = chunk.map_err(e2s)?;
                            let _ = body.flow_control().release_capacity(chunk.len());
                            for _ in 0..frames.push(&chunk)? {
                                on_msg(&mut hist, &sem);
                            }
                        }
                        let trailers = body.trailers().await.map_err(e2s)?.ok_or("no trailers")?;
                        check_status(&trailers)
                    };
                    let (a, b) = tokio::join!(sender, receiver);
                    a.and(b)?;
                }
                Conn::Core(ch) => {
                    let call = ch.call(bench::ECHO_STREAM, Default::default()).await.map_err(e2s)?;
                    let (mut tx, mut rx) = call.split();
                    let sender = async {
                        while sending().await {
                            let m = Bytes::from(Payload { data: payload.clone() }.encode_to_vec());
                            tx.send(m).await.map_err(e2s)?;
                        }
                        tx.close_send().await.map_err(e2s)
                    };
                    let receiver = async {
                        while let Some(m) = rx.recv().await.map_err(e2s)? {
                            check_len(Payload::decode(m).map_err(e2s)?.data.len(), size)?;
                            on_msg(&mut hist, &sem);
                        }
                        Ok::<(), String>(())
                    };
                    let (a, b) = tokio::join!(sender, receiver);
                    a.and(b)?;
                }
                Conn::Tonic(ch) => {
                    let (qtx, qrx) = tokio::sync::mpsc::channel::<Payload>(window.max(1));
                    let mut client = EchoClient::new(ch);
                    let sender = async {
                        while sending().await {
                            if qtx.send(Payload { data: payload.clone() }).await.is_err() {
                                break;
                            }
                        }
                        drop(qtx);
                        Ok::<(), String>(())
                    };
                    let receiver = async {
                        let mut resp = client
                            .stream(tokio_stream::wrappers::ReceiverStream::new(qrx))
                            .await
                            .map_err(e2s)?
                            .into_inner();
                        while let Some(m) = resp.message().await.map_err(e2s)? {
                            check_len(m.data.len(), size)?;
                            on_msg(&mut hist, &sem);
                        }
                        Ok::<(), String>(())
                    };
                    let (a, b) = tokio::join!(sender, receiver);
                    a.and(b)?;
                }
            }
            Ok(hist)
        })
    };
    let w = supervise(args, &run).await;
    let hist = match tokio::time::timeout(Duration::from_secs(30), task).await {
        Ok(Ok(Ok(h))) => h,
        Ok(Ok(Err(e))) => {
            run.done(&mut new_hist(), Instant::now(), Err(e));
            new_hist()
        }
        Ok(Err(e)) => return Err(e2s(e)),
        Err(_) => return Err("the stream did not finish within 30 s".into()),
    };
    let mut rep = Report::default();
    rep.str("mode", "stream");
    rep.num("window", window as f64);
    rep.num("size", size as f64);
    let errors = report_common(&mut rep, args, &run, &w, &hist, "msg");
    println!("{}", rep.json());
    Ok(errors)
}

/// Holds `conns` connections and `streams` open bidi streams on each; reports RSS deltas.
async fn run_fanin(args: &Args, conns: usize, streams: usize) -> Result<u64, String> {
    let pid = args.server_pid.ok_or("fanin needs --server-pid")?.to_string();
    let settle = || tokio::time::sleep(Duration::from_millis(500));
    let rss = |pid: &str| procfs::rss_bytes(pid).map_err(e2s);
    let tls = args.tls_ca.as_deref().map(tls_connector).transpose()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let hello = Template::new(scheme, &args.target, bench::SAY_HELLO);
    let echo_t = Template::new(scheme, &args.target, bench::ECHO_STREAM);
    let hello_body = framed(&HelloRequest { name: "world".into() }.encode_to_vec());
    let msg = Payload { data: Bytes::from_static(b"fan-in") }.encode_to_vec();
    let echo_body = framed(&msg);
    let mut errors = 0u64;
    let mut first_error: Option<String> = None;
    let mut fail = |e: String| {
        errors += 1;
        first_error.get_or_insert(e);
    };

    // One connection first, so lazy initialisation is not counted.
    let mut warm = h2_connect(&args.target, tls.as_ref()).await?;
    if let Err(e) = h2_unary(&mut warm, &hello, hello_body.clone(), None).await {
        fail(e);
    }
    settle().await;
    let rss_base = rss(&pid)?;

    let t0 = Instant::now();
    let mut held = Vec::with_capacity(conns);
    let mut opening = tokio::task::JoinSet::new();
    // At most 100 handshakes at once: a ramp, not a SYN flood (tonic's
    // default listener has a backlog of 128 and resets a burst of 1,000).
    let ramp = Arc::new(Semaphore::new(100));
    for _ in 0..conns {
        let (target, tls, body) = (args.target.clone(), tls.clone(), hello_body.clone());
        let hello = Template { uri: hello.uri.clone(), headers: hello.headers.clone() };
        let ramp = ramp.clone();
        opening.spawn(async move {
            let _permit = ramp.acquire_owned().await.map_err(e2s)?;
            let mut c = h2_connect(&target, tls.as_ref()).await?;
            h2_unary(&mut c, &hello, body, None).await?;
            Ok::<H2Send, String>(c)
        });
    }
    while let Some(r) = opening.join_next().await {
        match r.map_err(e2s).and_then(|r| r) {
            Ok(c) => held.push(c),
            Err(e) => fail(e),
        }
    }
    let conn_secs = t0.elapsed().as_secs_f64();
    settle().await;
    let rss_conns = rss(&pid)?;

    // Open streams: each sends one message and waits for its echo, then
    // stays open (no END_STREAM) until every stream is up and RSS is read.
    let mut open_streams = Vec::new();
    let mut opened = tokio::task::JoinSet::new();
    for c in &held {
        for _ in 0..streams {
            let mut send = c.clone();
            let req = echo_t.request();
            let body = echo_body.clone();
            let expect = msg.len() as u32;
            opened.spawn(async move {
                poll_fn(|cx| send.poll_ready(cx)).await.map_err(e2s)?;
                let (resp, mut tx) = send.send_request(req, false).map_err(e2s)?;
                tx.send_data(body, false).map_err(e2s)?;
                let resp = resp.await.map_err(e2s)?;
                let mut rx = resp.into_body();
                let mut frames = Frames::new(Some(expect));
                while frames.msgs == 0 {
                    match rx.data().await {
                        Some(Ok(chunk)) => {
                            let _ = rx.flow_control().release_capacity(chunk.len());
                            frames.push(&chunk)?;
                        }
                        Some(Err(e)) => return Err(e2s(e)),
                        None => return Err("stream ended before the echo".into()),
                    }
                }
                Ok::<_, String>((tx, rx))
            });
        }
    }
    while let Some(r) = opened.join_next().await {
        match r.map_err(e2s).and_then(|r| r) {
            Ok(s) => open_streams.push(s),
            Err(e) => fail(e),
        }
    }
    settle().await;
    let rss_streams = rss(&pid)?;
    let n_streams = open_streams.len();

    // Close every stream properly and check its status.
    let mut closing = tokio::task::JoinSet::new();
    for (mut tx, mut rx) in open_streams {
        closing.spawn(async move {
            tx.send_data(Bytes::new(), true).map_err(e2s)?;
            while let Some(chunk) = rx.data().await {
                let chunk = chunk.map_err(e2s)?;
                let _ = rx.flow_control().release_capacity(chunk.len());
            }
            check_status(&rx.trailers().await.map_err(e2s)?.ok_or("no trailers")?)
        });
    }
    while let Some(r) = closing.join_next().await {
        if let Err(e) = r.map_err(e2s).and_then(|r| r) {
            fail(e);
        }
    }
    let n_conns = held.len();
    drop(held);

    let mut rep = Report::default();
    rep.str("mode", "fanin");
    rep.str("label", &args.label);
    rep.num("conns", n_conns as f64);
    rep.num("streams", n_streams as f64);
    rep.num("errors", errors as f64);
    if let Some(e) = &first_error {
        rep.str("first_error", e);
    }
    rep.num("connect_secs", conn_secs);
    rep.num("rss_base_kib", rss_base as f64 / 1024.0);
    rep.num("rss_conns_kib", rss_conns as f64 / 1024.0);
    rep.num("rss_streams_kib", rss_streams as f64 / 1024.0);
    let per = |d: u64, n: usize| if n > 0 { d as f64 / n as f64 / 1024.0 } else { f64::NAN };
    let per_conn = per(rss_conns.saturating_sub(rss_base), n_conns);
    let per_stream = per(rss_streams.saturating_sub(rss_conns), n_streams);
    rep.num("kib_per_conn", per_conn);
    rep.num("kib_per_stream", per_stream);
    eprintln!(
        "{}: {n_conns} conns, {n_streams} streams, errors {errors}: base {} KiB, {per_conn:.1} KiB/conn, {per_stream:.1} KiB/stream",
        args.label,
        rss_base / 1024
    );
    println!("{}", rep.json());
    Ok(errors)
}

fn main() {
    let args = Args::parse();
    if let Mode::Certs { dir } = &args.mode {
        if let Err(e) = bench::write_certs(dir) {
            eprintln!("certs: {e}");
            std::process::exit(2);
        }
        return;
    }
    // One thread: pin the driver with taskset so its cost is one known core.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    grpc_core::rt::adopt(rt.handle().clone()).expect("adopt the runtime");
    let r = rt.block_on(async {
        match &args.mode {
            Mode::Unary { conns, streams, size } => run_unary(&args, *conns, *streams, *size).await,
            Mode::Stream { window, size } => run_stream(&args, *window, *size).await,
            Mode::Fanin { conns, streams } => run_fanin(&args, *conns, *streams).await,
            Mode::Certs { .. } => Ok(0),
        }
    });
    match r {
        Ok(0) => {}
        Ok(n) => {
            eprintln!("FAILED: {n} calls failed");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            std::process::exit(1);
        }
    }
}
