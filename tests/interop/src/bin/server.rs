//! The gRPC interop server on grpc-core: `grpc.testing.TestService` as the
//! "Server" section of grpc's `doc/interop-test-descriptions.md` describes.
//!
//! Flags (as grpc-go's interop server): `--port N` (10000), `--use_tls`
//! (false). TLS uses `$GRPC_INTEROP_CERTS_DIR/server1.pem` and `server1.key`,
//! or `--tls_cert_file` / `--tls_key_file`. Listens on every interface.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use grpc_core::server::ServerBuilder;
use grpc_core::typed::{decode, encode};
use grpc_core::Status;
use grpc_core::{
    Code, Compression, Metadata, MethodKind, Received, Server, ServerCall, ServerOptions, ServerTlsConfig,
};
use interop::methods::*;
use interop::pb::{
    self, BoolValue, EchoStatus, Empty, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use interop::{Flags, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, MAX_MESSAGE_SIZE};

fn main() -> ExitCode {
    let flags = Flags::parse(
        std::env::args().skip(1),
        &["use_tls", "use_alts"],
        &["port", "tls_cert_file", "tls_key_file", "host", "alts_handshaker_service_address"],
    );
    for f in flags.unknown() {
        eprintln!("interop-server: ignoring unknown argument {f}");
    }
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("interop-server: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One runtime in the process: the engine runs on ours.
    let _ = grpc_core::rt::adopt(rt.handle().clone());
    match rt.block_on(run(flags)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("interop-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(flags: Flags) -> Result<(), String> {
    let port = flags.int("port", 10000)?;
    let port = u16::try_from(port).map_err(|_| format!("invalid --port {port}"))?;
    if flags.bool("use_alts", false)? {
        return Err("--use_alts is not supported".into());
    }
    let use_tls = flags.bool("use_tls", false)?;
    let tls = if use_tls {
        let (cert, key) = match (flags.opt_string("tls_cert_file"), flags.opt_string("tls_key_file")) {
            (Some(c), Some(k)) => (c.into(), k.into()),
            _ => {
                let dir = interop::certs_dir()?;
                (dir.join("server1.pem"), dir.join("server1.key"))
            }
        };
        Some(ServerTlsConfig {
            cert_chain_pem: interop::read_file(&cert)?,
            private_key_pem: interop::read_file(&key)?,
            ..Default::default()
        })
    } else {
        None
    };
    let opts = ServerOptions { tls, max_recv_message_size: MAX_MESSAGE_SIZE, ..Default::default() };
    let server = build(Server::builder(opts)).map_err(|e| format!("cannot build the server: {e}"))?;
    let host = flags.opt_string("host");
    let addrs = match &host {
        Some(h) if h.contains(':') && !h.starts_with('[') => vec![format!("[{h}]:{port}")],
        Some(h) => vec![format!("{h}:{port}")],
        None => vec![format!("[::]:{port}"), format!("0.0.0.0:{port}")],
    };
    let mut bound = None;
    let mut errors = Vec::new();
    for a in &addrs {
        match server.bind(a).await {
            Ok(addr) => {
                bound = Some(addr);
                break;
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let Some(addr) = bound else { return Err(format!("cannot listen: {}", errors.join("; "))) };
    server.start();
    println!("grpc-core interop server listening on {addr} (tls: {use_tls})");
    wait_for_signal().await;
    server.shutdown(Duration::from_secs(2)).await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = ctrl_c.await;
}

fn build(builder: ServerBuilder) -> Result<Server, grpc_core::Error> {
    let (builder, _health) = builder.with_health();
    builder
        .register(EMPTY_CALL, MethodKind::Unary, empty_call)?
        .register(UNARY_CALL, MethodKind::Unary, unary_call)?
        .register(CACHEABLE_UNARY_CALL, MethodKind::Unary, cacheable_unary_call)?
        .register(STREAMING_OUTPUT_CALL, MethodKind::ServerStreaming, streaming_output_call)?
        .register(STREAMING_INPUT_CALL, MethodKind::ClientStreaming, streaming_input_call)?
        .register(FULL_DUPLEX_CALL, MethodKind::BidiStreaming, full_duplex_call)?
        .register(HALF_DUPLEX_CALL, MethodKind::BidiStreaming, half_duplex_call)?
        .register(UNIMPLEMENTED_CALL, MethodKind::Unary, unimplemented_call)?
        .build()
}

/// What the Echo Metadata feature sends back: the request's
/// `x-grpc-test-echo-initial` in the response headers and its
/// `x-grpc-test-echo-trailing-bin` in the trailers.
struct Echo {
    initial: Metadata,
    trailing: Metadata,
}

impl Echo {
    fn of(call: &ServerCall) -> Echo {
        let md = call.metadata();
        let mut initial = Metadata::new();
        if let Some(v) = md.get_all(ECHO_INITIAL_KEY).next() {
            let _ = initial.append_raw(ECHO_INITIAL_KEY, v.as_bytes());
        }
        let mut trailing = Metadata::new();
        if let Some(v) = md.get_all(ECHO_TRAILING_KEY).next() {
            let _ = trailing.append_raw(ECHO_TRAILING_KEY, v.as_bytes());
        }
        Echo { initial, trailing }
    }

    /// Sends the response headers now if there is initial metadata to echo.
    async fn send_initial(&self, call: &mut ServerCall) -> Result<(), Status> {
        if self.initial.is_empty() {
            return Ok(());
        }
        call.send_initial_metadata(self.initial.clone()).await
    }

    /// The final status with the echoed trailers.
    fn finish(&self, result: Result<(), Status>) -> Status {
        let st = result.err().unwrap_or_else(Status::ok);
        if self.trailing.is_empty() {
            return st;
        }
        let mut md = st.metadata().clone();
        md.extend(self.trailing.clone());
        st.with_metadata(md)
    }
}

/// Runs a handler body and attaches the echoed trailers to whatever status it ends with.
async fn with_echo<F, Fut>(mut call: ServerCall, body: F) -> Status
where
    F: FnOnce(ServerCall) -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    let echo = Echo::of(&call);
    if let Err(st) = echo.send_initial(&mut call).await {
        return echo.finish(Err(st));
    }
    let r = body(call).await;
    echo.finish(r)
}

async fn recv_required(call: &mut ServerCall) -> Result<Received, Status> {
    call.recv_message().await?.ok_or_else(|| Status::internal("no request message"))
}

/// The CompressedRequest feature: a request that says it is (or is not)
/// compressed must have arrived that way.
fn check_compressed(expect: Option<BoolValue>, compressed: bool) -> Result<(), Status> {
    match expect {
        Some(BoolValue { value: true }) if !compressed => {
            Err(Status::invalid_argument("expected compressed request, got an uncompressed one"))
        }
        Some(BoolValue { value: false }) if compressed => {
            Err(Status::invalid_argument("expected an uncompressed request, got a compressed one"))
        }
        _ => Ok(()),
    }
}

/// The Echo Status feature.
fn echo_status(s: Option<&EchoStatus>) -> Result<(), Status> {
    match s {
        Some(s) if s.code != 0 => Err(Status::new(Code::from_i32(s.code), s.message.clone())),
        _ => Ok(()),
    }
}

fn new_payload(response_type: i32, size: i32) -> Result<pb::Payload, Status> {
    if response_type != PayloadType::Compressable as i32 {
        return Err(Status::invalid_argument(format!("unsupported response payload type {response_type}")));
    }
    let size = usize::try_from(size)
        .map_err(|_| Status::invalid_argument(format!("requested a response with invalid length {size}")))?;
    Ok(pb::zeros(size))
}

fn server_id() -> String {
    format!("grpc-core-interop-server-{}", std::process::id())
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_string()))
        .unwrap_or_default()
}

async fn empty_call(call: ServerCall) -> Status {
    with_echo(call, |mut call| async move {
        let m = recv_required(&mut call).await?;
        let _: Empty = decode(&m.data)?;
        call.send(encode(&Empty {})).await
    })
    .await
}

async fn unimplemented_call(_call: ServerCall) -> Status {
    Status::unimplemented("grpc.testing.TestService/UnimplementedCall is not implemented")
}

async fn unary_call(mut call: ServerCall) -> Status {
    let echo = Echo::of(&call);
    let r = async {
        let m = recv_required(&mut call).await?;
        let req: SimpleRequest = decode(&m.data)?;
        check_compressed(req.expect_compressed, m.compressed)?;
        let compress = req.response_compressed.is_some_and(|b| b.value);
        if compress {
            // Before the headers go out: they announce the encoding.
            call.set_compression(Compression::Gzip);
        }
        echo.send_initial(&mut call).await?;
        echo_status(req.response_status.as_ref())?;
        let mut resp =
            SimpleResponse { payload: Some(new_payload(req.response_type, req.response_size)?), ..Default::default() };
        if req.fill_server_id {
            resp.server_id = server_id();
            resp.hostname = hostname();
        }
        call.send_with(encode(&resp), compress).await
    }
    .await;
    echo.finish(r)
}

async fn cacheable_unary_call(mut call: ServerCall) -> Status {
    let echo = Echo::of(&call);
    let r = async {
        let m = recv_required(&mut call).await?;
        let _: SimpleRequest = decode(&m.data)?;
        let mut md = echo.initial.clone();
        let _ = md.insert("cache-control", "max-age=60, public");
        call.send_initial_metadata(md).await?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let payload = pb::Payload { r#type: PayloadType::Compressable as i32, body: now.to_string().into_bytes() };
        call.send(encode(&SimpleResponse { payload: Some(payload), ..Default::default() })).await
    }
    .await;
    echo.finish(r)
}

/// Sends the responses one `StreamingOutputCallRequest` asks for, honouring
/// `interval_us` and the per-response `compressed` flag.
async fn send_responses(
    call: &mut ServerCall,
    response_type: i32,
    params: &[ResponseParameters],
) -> Result<(), Status> {
    for p in params {
        if p.interval_us > 0 {
            tokio::time::sleep(Duration::from_micros(p.interval_us as u64)).await;
        }
        let payload = new_payload(response_type, p.size)?;
        let compress = p.compressed.is_some_and(|b| b.value);
        call.send_with(encode(&StreamingOutputCallResponse { payload: Some(payload) }), compress).await?;
    }
    Ok(())
}

async fn streaming_output_call(mut call: ServerCall) -> Status {
    let echo = Echo::of(&call);
    let r = async {
        let m = recv_required(&mut call).await?;
        let req: StreamingOutputCallRequest = decode(&m.data)?;
        if req.response_parameters.iter().any(|p| p.compressed.is_some_and(|b| b.value)) {
            call.set_compression(Compression::Gzip);
        }
        echo.send_initial(&mut call).await?;
        echo_status(req.response_status.as_ref())?;
        send_responses(&mut call, req.response_type, &req.response_parameters).await
    }
    .await;
    echo.finish(r)
}

async fn streaming_input_call(call: ServerCall) -> Status {
    with_echo(call, |mut call| async move {
        let mut sum = 0usize;
        while let Some(m) = call.recv_message().await? {
            let req: StreamingInputCallRequest = decode(&m.data)?;
            check_compressed(req.expect_compressed, m.compressed)?;
            sum += req.payload.map_or(0, |p| p.body.len());
        }
        let sum = i32::try_from(sum).map_err(|_| Status::invalid_argument("aggregated payload size overflows"))?;
        call.send(encode(&StreamingInputCallResponse { aggregated_payload_size: sum })).await
    })
    .await
}

/// Whether the response headers are out; the encoding can only be chosen before.
struct Opened(bool);

impl Opened {
    /// Before the first response of a bidi call: compress the call's
    /// responses if that first response asks for it.
    fn before_send(&mut self, call: &mut ServerCall, req: &StreamingOutputCallRequest) {
        if !self.0 {
            if req.response_parameters.first().is_some_and(|p| p.compressed.is_some_and(|b| b.value)) {
                call.set_compression(Compression::Gzip);
            }
            self.0 = !req.response_parameters.is_empty();
        }
    }
}

async fn full_duplex_call(mut call: ServerCall) -> Status {
    let echo = Echo::of(&call);
    let r = async {
        let mut opened = Opened(!echo.initial.is_empty());
        echo.send_initial(&mut call).await?;
        while let Some(m) = call.recv_message().await? {
            let req: StreamingOutputCallRequest = decode(&m.data)?;
            echo_status(req.response_status.as_ref())?;
            opened.before_send(&mut call, &req);
            send_responses(&mut call, req.response_type, &req.response_parameters).await?;
        }
        Ok(())
    }
    .await;
    echo.finish(r)
}

async fn half_duplex_call(mut call: ServerCall) -> Status {
    let echo = Echo::of(&call);
    let r = async {
        let mut opened = Opened(!echo.initial.is_empty());
        echo.send_initial(&mut call).await?;
        let mut buffered = Vec::new();
        while let Some(m) = call.recv_message().await? {
            buffered.push(decode::<StreamingOutputCallRequest>(&m.data)?);
        }
        for req in &buffered {
            echo_status(req.response_status.as_ref())?;
            opened.before_send(&mut call, req);
            send_responses(&mut call, req.response_type, &req.response_parameters).await?;
        }
        Ok(())
    }
    .await;
    echo.finish(r)
}
