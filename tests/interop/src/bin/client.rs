//! The gRPC interop client on grpc-core: the test cases of grpc's
//! `doc/interop-test-descriptions.md` (plus grpc-java's extras), with
//! grpc-go's client flags:
//!
//! `--server_host` (localhost) `--server_port` (10000) `--test_case`
//! (large_unary) `--use_tls` `--use_test_ca` `--ca_file`
//! (`$GRPC_INTEROP_CERTS_DIR/ca.pem`) `--server_host_override` (with TLS and
//! the test CA: foo.test.google.fr) `--additional_metadata` (`k:v;k2:v2`) and
//! the `--soak_*` flags. Other flags are accepted and ignored.
//!
//! Prints `PASS <case>` and exits 0, or prints `FAIL <case>: <why>` and exits 1.

use std::process::ExitCode;
use std::time::Duration;

use grpc_core::typed::{decode, encode};
use grpc_core::{
    CallOptions, Channel, ChannelOptions, ClientCall, ClientTlsConfig, Code, Compression, Metadata, Status,
};
use interop::methods::*;
use interop::pb::{
    self, BoolValue, EchoStatus, Empty, Payload, PayloadType, ResponseParameters, SimpleRequest, SimpleResponse,
    StreamingInputCallRequest, StreamingInputCallResponse, StreamingOutputCallRequest, StreamingOutputCallResponse,
};
use interop::{Flags, ECHO_INITIAL_KEY, ECHO_TRAILING_KEY, MAX_MESSAGE_SIZE};
use tokio::time::Instant;

/// Every test case this client runs.
const CASES: &[&str] = &[
    "empty_unary",
    "large_unary",
    "client_compressed_unary",
    "client_compressed_unary_noprobe",
    "server_compressed_unary",
    "client_streaming",
    "client_compressed_streaming",
    "client_compressed_streaming_noprobe",
    "server_streaming",
    "server_compressed_streaming",
    "ping_pong",
    "empty_stream",
    "timeout_on_sleeping_server",
    "cancel_after_begin",
    "cancel_after_first_response",
    "status_code_and_message",
    "special_status_message",
    "custom_metadata",
    "unimplemented_method",
    "unimplemented_service",
    "very_large_request",
    "pick_first_unary",
    "rpc_soak",
    "channel_soak",
    "half_duplex",
];

const BOOL_FLAGS: &[&str] = &["use_tls", "use_test_ca", "use_alts"];
const KNOWN_FLAGS: &[&str] = &[
    "server_host",
    "server_port",
    "test_case",
    "ca_file",
    "server_host_override",
    "additional_metadata",
    "soak_iterations",
    "soak_max_failures",
    "soak_per_iteration_max_acceptable_latency_ms",
    "soak_overall_timeout_seconds",
    "soak_min_time_ms_between_rpcs",
    "soak_request_size",
    "soak_response_size",
    "soak_num_threads",
];

const REQ_SIZES: [usize; 4] = [27182, 8, 1828, 45904];
const RESP_SIZES: [usize; 4] = [31415, 9, 2653, 58979];
const LARGE_REQ: usize = 271828;
const LARGE_RESP: usize = 314159;

fn main() -> ExitCode {
    let flags = Flags::parse(std::env::args().skip(1), BOOL_FLAGS, KNOWN_FLAGS);
    for f in flags.unknown() {
        eprintln!("interop-client: ignoring unsupported argument {f}");
    }
    let case = flags.string("test_case", "large_unary");
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("FAIL {case}: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let _ = grpc_core::rt::adopt(rt.handle().clone());
    let result = rt.block_on(async {
        let client = Client::new(&flags)?;
        client.run(&case).await
    });
    match result {
        Ok(()) => {
            println!("PASS {case}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("FAIL {case}: {e}");
            ExitCode::FAILURE
        }
    }
}

type R = Result<(), String>;

macro_rules! ensure {
    ($cond:expr, $($msg:tt)*) => {
        if !$cond {
            return Err(format!($($msg)*));
        }
    };
}

/// Maps an RPC failure to the test failure message.
trait Ctx<T> {
    fn ctx(self, what: &str) -> Result<T, String>;
}

impl<T> Ctx<T> for Result<T, Status> {
    fn ctx(self, what: &str) -> Result<T, String> {
        self.map_err(|s| format!("{what}: {s}"))
    }
}

#[derive(Clone, Debug)]
struct Soak {
    iterations: usize,
    max_failures: usize,
    max_latency: Duration,
    overall_timeout: Duration,
    min_between: Duration,
    request_size: usize,
    response_size: usize,
    threads: usize,
}

struct Client {
    target: String,
    channel_opts: ChannelOptions,
    channel: Channel,
    /// `--additional_metadata`, sent with every call.
    metadata: Metadata,
    soak: Soak,
}

fn usize_flag(flags: &Flags, name: &str, default: i64) -> Result<usize, String> {
    let v = flags.int(name, default)?;
    usize::try_from(v).map_err(|_| format!("--{name} must not be negative"))
}

fn ms_flag(flags: &Flags, name: &str, default: i64) -> Result<Duration, String> {
    Ok(Duration::from_millis(usize_flag(flags, name, default)? as u64))
}

impl Client {
    fn new(flags: &Flags) -> Result<Client, String> {
        if flags.bool("use_alts", false)? {
            return Err("--use_alts is not supported".into());
        }
        let host = flags.string("server_host", "localhost");
        let port = flags.int("server_port", 10000)?;
        let target = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else if port != 0 {
            format!("{host}:{port}")
        } else {
            host.clone()
        };
        let use_tls = flags.bool("use_tls", false)?;
        let use_test_ca = flags.bool("use_test_ca", false)?;
        let tls = if use_tls {
            let root_certs_pem = if use_test_ca {
                let path = match flags.opt_string("ca_file") {
                    Some(p) => p.into(),
                    None => interop::certs_dir()?.join("ca.pem"),
                };
                Some(interop::read_file(&path)?)
            } else {
                None
            };
            // Like grpc-java: the test certificate is for *.test.google.fr.
            let server_name_override = flags
                .opt_string("server_host_override")
                .or_else(|| use_test_ca.then(|| "foo.test.google.fr".to_string()));
            Some(ClientTlsConfig { root_certs_pem, server_name_override, identity_pem: None })
        } else {
            None
        };
        let channel_opts = ChannelOptions { tls, max_recv_message_size: MAX_MESSAGE_SIZE, ..ChannelOptions::default() };
        let channel = Channel::new(&target, channel_opts.clone()).map_err(|e| format!("bad channel: {e}"))?;
        let mut metadata = Metadata::new();
        if let Some(extra) = flags.opt_string("additional_metadata") {
            for pair in extra.split(';').filter(|p| !p.is_empty()) {
                let (k, v) =
                    pair.split_once(':').ok_or_else(|| format!("--additional_metadata: {pair:?} is not key:value"))?;
                metadata.append_raw(k, v.as_bytes()).map_err(|e| format!("--additional_metadata: {e}"))?;
            }
        }
        let soak = Soak {
            iterations: usize_flag(flags, "soak_iterations", 10)?,
            max_failures: usize_flag(flags, "soak_max_failures", 0)?,
            max_latency: ms_flag(flags, "soak_per_iteration_max_acceptable_latency_ms", 1000)?,
            overall_timeout: Duration::from_secs(usize_flag(flags, "soak_overall_timeout_seconds", 10)? as u64),
            min_between: ms_flag(flags, "soak_min_time_ms_between_rpcs", 0)?,
            request_size: usize_flag(flags, "soak_request_size", LARGE_REQ as i64)?,
            response_size: usize_flag(flags, "soak_response_size", LARGE_RESP as i64)?,
            threads: usize_flag(flags, "soak_num_threads", 1)?.max(1),
        };
        Ok(Client { target, channel_opts, channel, metadata, soak })
    }

    fn opts(&self) -> CallOptions {
        CallOptions { metadata: self.metadata.clone(), ..CallOptions::default() }
    }

    fn gzip_opts(&self) -> CallOptions {
        CallOptions { compression: Some(Compression::Gzip), ..self.opts() }
    }

    async fn call(&self, method: &str, opts: CallOptions) -> Result<ClientCall, String> {
        self.channel.call(method, opts).await.ctx(&format!("starting {method}"))
    }

    async fn run(&self, case: &str) -> R {
        match case {
            "empty_unary" => self.empty_unary().await,
            "large_unary" => self.large_unary().await,
            "client_compressed_unary" => self.client_compressed_unary(true).await,
            "client_compressed_unary_noprobe" => self.client_compressed_unary(false).await,
            "server_compressed_unary" => self.server_compressed_unary().await,
            "client_streaming" => self.client_streaming().await,
            "client_compressed_streaming" => self.client_compressed_streaming(true).await,
            "client_compressed_streaming_noprobe" => self.client_compressed_streaming(false).await,
            "server_streaming" => self.server_streaming().await,
            "server_compressed_streaming" => self.server_compressed_streaming().await,
            "ping_pong" => self.ping_pong().await,
            "empty_stream" => self.empty_stream().await,
            "timeout_on_sleeping_server" => self.timeout_on_sleeping_server().await,
            "cancel_after_begin" => self.cancel_after_begin().await,
            "cancel_after_first_response" => self.cancel_after_first_response().await,
            "status_code_and_message" => self.status_code_and_message().await,
            "special_status_message" => self.special_status_message().await,
            "custom_metadata" => self.custom_metadata().await,
            "unimplemented_method" => self.unimplemented(UNIMPLEMENTED_CALL).await,
            "unimplemented_service" => self.unimplemented(UNIMPLEMENTED_SERVICE_CALL).await,
            "very_large_request" => self.very_large_request().await,
            "pick_first_unary" => self.pick_first_unary().await,
            "rpc_soak" => self.soak(false).await,
            "channel_soak" => self.soak(true).await,
            "half_duplex" => self.half_duplex().await,
            other => Err(format!("unsupported test case {other:?}; supported: {}", CASES.join(" "))),
        }
    }

    // ------------------------------------------------------------- cases --

    async fn empty_unary(&self) -> R {
        let _: Unary<Empty> = unary(&self.channel, EMPTY_CALL, &Empty {}, self.opts(), false).await.ctx("EmptyCall")?;
        Ok(())
    }

    async fn large_unary(&self) -> R {
        let r: Unary<SimpleResponse> =
            unary(&self.channel, UNARY_CALL, &simple_request(LARGE_REQ, LARGE_RESP), self.opts(), false)
                .await
                .ctx("UnaryCall")?;
        check_payload(&r.msg.payload, LARGE_RESP)
    }

    async fn client_compressed_unary(&self, probe: bool) -> R {
        let expect = |v: bool| SimpleRequest {
            expect_compressed: Some(BoolValue { value: v }),
            ..simple_request(LARGE_REQ, LARGE_RESP)
        };
        if probe {
            let r = unary::<_, SimpleResponse>(&self.channel, UNARY_CALL, &expect(true), self.opts(), false).await;
            match r {
                Err(st) if st.code() == Code::InvalidArgument => {}
                Err(st) => return Err(format!("probe: want INVALID_ARGUMENT, got {st}")),
                Ok(_) => return Err("probe: the server accepted an uncompressed request with expect_compressed=true (want INVALID_ARGUMENT)".into()),
            }
        }
        let r: Unary<SimpleResponse> = unary(&self.channel, UNARY_CALL, &expect(true), self.gzip_opts(), true)
            .await
            .ctx("compressed UnaryCall")?;
        check_payload(&r.msg.payload, LARGE_RESP)?;
        let r: Unary<SimpleResponse> =
            unary(&self.channel, UNARY_CALL, &expect(false), self.opts(), false).await.ctx("uncompressed UnaryCall")?;
        check_payload(&r.msg.payload, LARGE_RESP)
    }

    async fn server_compressed_unary(&self) -> R {
        for compressed in [true, false] {
            let req = SimpleRequest {
                response_compressed: Some(BoolValue { value: compressed }),
                ..simple_request(LARGE_REQ, LARGE_RESP)
            };
            let r: Unary<SimpleResponse> = unary(&self.channel, UNARY_CALL, &req, self.opts(), false)
                .await
                .ctx(&format!("UnaryCall with response_compressed={compressed}"))?;
            ensure!(
                r.compressed == compressed,
                "response_compressed={compressed}: the response's compressed flag is {}",
                r.compressed
            );
            check_payload(&r.msg.payload, LARGE_RESP)?;
        }
        Ok(())
    }

    async fn client_streaming(&self) -> R {
        let mut call = self.call(STREAMING_INPUT_CALL, self.opts()).await?;
        for size in REQ_SIZES {
            let req = StreamingInputCallRequest { payload: Some(pb::zeros(size)), expect_compressed: None };
            call.send(encode(&req)).await.ctx("send")?;
        }
        call.close_send().await.ctx("close_send")?;
        let r = call.recv_unary().await.ctx("StreamingInputCall")?;
        let resp: StreamingInputCallResponse = decode(&r.message).ctx("decode")?;
        let want: usize = REQ_SIZES.iter().sum();
        ensure!(
            resp.aggregated_payload_size as usize == want,
            "aggregated_payload_size {} want {want}",
            resp.aggregated_payload_size
        );
        Ok(())
    }

    async fn client_compressed_streaming(&self, probe: bool) -> R {
        let expect = |v: bool, size: usize| StreamingInputCallRequest {
            payload: Some(pb::zeros(size)),
            expect_compressed: Some(BoolValue { value: v }),
        };
        if probe {
            // One uncompressed message that says it is compressed, without
            // half-closing: the server must fail the call on it.
            let mut call = self.call(STREAMING_INPUT_CALL, self.opts()).await?;
            let st = match call.send(encode(&expect(true, 27182))).await {
                Err(st) => st,
                Ok(()) => match tokio::time::timeout(Duration::from_secs(10), call.finish()).await {
                    Ok(st) => st,
                    Err(_) => return Err("probe: no INVALID_ARGUMENT from the server within 10s".into()),
                },
            };
            ensure!(st.code() == Code::InvalidArgument, "probe: want INVALID_ARGUMENT, got {st}");
        }
        let mut call = self.call(STREAMING_INPUT_CALL, self.gzip_opts()).await?;
        call.send_with(encode(&expect(true, 27182)), true, false).await.ctx("send compressed")?;
        call.send_with(encode(&expect(false, 45904)), false, false).await.ctx("send uncompressed")?;
        call.close_send().await.ctx("close_send")?;
        let r = call.recv_unary().await.ctx("StreamingInputCall")?;
        let resp: StreamingInputCallResponse = decode(&r.message).ctx("decode")?;
        ensure!(
            resp.aggregated_payload_size == 73086,
            "aggregated_payload_size {} want 73086",
            resp.aggregated_payload_size
        );
        Ok(())
    }

    async fn server_streaming(&self) -> R {
        let req = StreamingOutputCallRequest {
            response_parameters: RESP_SIZES.iter().map(|&s| params(s)).collect(),
            ..Default::default()
        };
        let mut call = self.call(STREAMING_OUTPUT_CALL, self.opts()).await?;
        call.send_last(encode(&req)).await.ctx("send")?;
        let mut n = 0;
        while let Some(m) = call.recv().await.ctx("StreamingOutputCall")? {
            ensure!(n < RESP_SIZES.len(), "more than {} responses", RESP_SIZES.len());
            let resp: StreamingOutputCallResponse = decode(&m).ctx("decode")?;
            check_payload(&resp.payload, RESP_SIZES[n]).map_err(|e| format!("response {n}: {e}"))?;
            n += 1;
        }
        ensure!(n == RESP_SIZES.len(), "got {n} responses, want {}", RESP_SIZES.len());
        Ok(())
    }

    async fn server_compressed_streaming(&self) -> R {
        let want = [(31415, true), (92653, false)];
        let req = StreamingOutputCallRequest {
            response_parameters: want
                .iter()
                .map(|&(size, c)| ResponseParameters { compressed: Some(BoolValue { value: c }), ..params(size) })
                .collect(),
            ..Default::default()
        };
        let mut call = self.call(STREAMING_OUTPUT_CALL, self.opts()).await?;
        call.send_last(encode(&req)).await.ctx("send")?;
        let mut n = 0;
        while let Some(m) = call.recv_message().await.ctx("StreamingOutputCall")? {
            ensure!(n < want.len(), "more than {} responses", want.len());
            let (size, compressed) = want[n];
            ensure!(m.compressed == compressed, "response {n}: compressed flag {} want {compressed}", m.compressed);
            let resp: StreamingOutputCallResponse = decode(&m.data).ctx("decode")?;
            check_payload(&resp.payload, size).map_err(|e| format!("response {n}: {e}"))?;
            n += 1;
        }
        ensure!(n == want.len(), "got {n} responses, want {}", want.len());
        Ok(())
    }

    async fn ping_pong(&self) -> R {
        let mut call = self.call(FULL_DUPLEX_CALL, self.opts()).await?;
        for (i, (&req_size, &resp_size)) in REQ_SIZES.iter().zip(RESP_SIZES.iter()).enumerate() {
            call.send(encode(&streaming_request(req_size, resp_size))).await.ctx(&format!("send {i}"))?;
            let m = call.recv().await.ctx(&format!("recv {i}"))?.ok_or_else(|| format!("no response {i}"))?;
            let resp: StreamingOutputCallResponse = decode(&m).ctx("decode")?;
            check_payload(&resp.payload, resp_size).map_err(|e| format!("response {i}: {e}"))?;
        }
        call.close_send().await.ctx("close_send")?;
        ensure!(call.recv().await.ctx("end of FullDuplexCall")?.is_none(), "a response after the last one");
        Ok(())
    }

    /// Not an interop-spec case (after grpc-java's halfDuplexCallShouldSucceed):
    /// ten HalfDuplexCall requests of four responses each, answered in order.
    async fn half_duplex(&self) -> R {
        let sizes = [50, 100, 150, 200];
        let req = StreamingOutputCallRequest {
            response_parameters: sizes.iter().map(|&s| params(s)).collect(),
            ..Default::default()
        };
        let mut call = self.call(HALF_DUPLEX_CALL, self.opts()).await?;
        for i in 0..10 {
            call.send(encode(&req)).await.ctx(&format!("send {i}"))?;
        }
        call.close_send().await.ctx("close_send")?;
        let mut n = 0;
        while let Some(m) = call.recv().await.ctx("HalfDuplexCall")? {
            let resp: StreamingOutputCallResponse = decode(&m).ctx("decode")?;
            check_payload(&resp.payload, sizes[n % sizes.len()]).map_err(|e| format!("response {n}: {e}"))?;
            n += 1;
        }
        ensure!(n == 10 * sizes.len(), "got {n} responses, want {}", 10 * sizes.len());
        Ok(())
    }

    async fn empty_stream(&self) -> R {
        let mut call = self.call(FULL_DUPLEX_CALL, self.opts()).await?;
        call.close_send().await.ctx("close_send")?;
        ensure!(call.recv().await.ctx("FullDuplexCall")?.is_none(), "got a response, want none");
        Ok(())
    }

    async fn timeout_on_sleeping_server(&self) -> R {
        // Connect first, so the 1 ms deadline is spent on the call, not the handshake.
        let _ = self.channel.ready(Some(std::time::Instant::now() + Duration::from_secs(10))).await;
        let opts = CallOptions { timeout: Some(Duration::from_millis(1)), ..self.opts() };
        let mut call = match self.channel.call(FULL_DUPLEX_CALL, opts).await {
            Ok(c) => c,
            Err(st) if st.code() == Code::DeadlineExceeded => return Ok(()),
            Err(st) => return Err(format!("starting FullDuplexCall: {st}")),
        };
        let req = StreamingOutputCallRequest { payload: Some(pb::zeros(27182)), ..Default::default() };
        if let Err(st) = call.send(encode(&req)).await {
            ensure!(st.code() == Code::DeadlineExceeded, "send: want DEADLINE_EXCEEDED, got {st}");
        }
        match call.recv().await {
            Err(st) if st.code() == Code::DeadlineExceeded => Ok(()),
            Err(st) => Err(format!("want DEADLINE_EXCEEDED, got {st}")),
            Ok(m) => Err(format!("want DEADLINE_EXCEEDED, got {}", if m.is_some() { "a response" } else { "OK" })),
        }
    }

    async fn cancel_after_begin(&self) -> R {
        let mut call = self.call(STREAMING_INPUT_CALL, self.opts()).await?;
        call.cancel();
        let st = call.finish().await;
        ensure!(st.code() == Code::Cancelled, "want CANCELLED, got {st}");
        Ok(())
    }

    async fn cancel_after_first_response(&self) -> R {
        let mut call = self.call(FULL_DUPLEX_CALL, self.opts()).await?;
        call.send(encode(&streaming_request(27182, 31415))).await.ctx("send")?;
        let m = call.recv().await.ctx("recv")?.ok_or("no response")?;
        let resp: StreamingOutputCallResponse = decode(&m).ctx("decode")?;
        check_payload(&resp.payload, 31415)?;
        call.cancel();
        match call.recv().await {
            Err(st) if st.code() == Code::Cancelled => Ok(()),
            Err(st) => Err(format!("after cancel: want CANCELLED, got {st}")),
            Ok(_) => Err("after cancel: want CANCELLED, got a message or OK".into()),
        }
    }

    async fn echo_status_both(&self, code: i32, message: &str, bidi: bool) -> R {
        let status = EchoStatus { code, message: message.to_string() };
        let check = |what: &str, st: Status| -> R {
            ensure!(
                st.code().as_i32() == code && st.message() == message,
                "{what}: want code {code} message {message:?}, got {} {:?}",
                st.code().as_i32(),
                st.message()
            );
            Ok(())
        };
        let req = SimpleRequest { response_status: Some(status.clone()), ..Default::default() };
        match unary::<_, SimpleResponse>(&self.channel, UNARY_CALL, &req, self.opts(), false).await {
            Ok(_) => return Err("UnaryCall succeeded, want an error status".into()),
            Err(st) => check("UnaryCall", st)?,
        }
        if bidi {
            let mut call = self.call(FULL_DUPLEX_CALL, self.opts()).await?;
            let req = StreamingOutputCallRequest { response_status: Some(status), ..Default::default() };
            let sent = call.send(encode(&req)).await;
            let sent = match sent {
                Ok(()) => call.close_send().await,
                Err(e) => Err(e),
            };
            let st = match sent {
                Err(st) => st,
                Ok(()) => call.finish().await,
            };
            check("FullDuplexCall", st)?;
        }
        Ok(())
    }

    async fn status_code_and_message(&self) -> R {
        self.echo_status_both(2, "test status message", true).await
    }

    async fn special_status_message(&self) -> R {
        self.echo_status_both(2, "\t\ntest with whitespace\r\nand Unicode BMP ☺ and non-BMP 😈\t\n", false).await
    }

    async fn custom_metadata(&self) -> R {
        const INITIAL_VALUE: &str = "test_initial_metadata_value";
        const TRAILING_VALUE: &[u8] = &[0xab, 0xab, 0xab];
        let mut opts = self.opts();
        opts.metadata.insert(ECHO_INITIAL_KEY, INITIAL_VALUE).map_err(|e| e.to_string())?;
        opts.metadata.insert_bin(ECHO_TRAILING_KEY, TRAILING_VALUE).map_err(|e| e.to_string())?;
        let check = |what: &str, initial: &Metadata, trailing: &Metadata| -> R {
            let got: Vec<_> = initial.get_all(ECHO_INITIAL_KEY).map(|v| v.as_bytes().to_vec()).collect();
            ensure!(
                got == [INITIAL_VALUE.as_bytes()],
                "{what}: initial metadata {ECHO_INITIAL_KEY} = {:?}, want [{INITIAL_VALUE:?}]",
                got.iter().map(|v| String::from_utf8_lossy(v).into_owned()).collect::<Vec<_>>()
            );
            let got: Vec<_> = trailing.get_all(ECHO_TRAILING_KEY).map(|v| v.as_bytes().to_vec()).collect();
            ensure!(
                got == [TRAILING_VALUE],
                "{what}: trailing metadata {ECHO_TRAILING_KEY} = {got:x?}, want [{TRAILING_VALUE:x?}]"
            );
            Ok(())
        };

        let r: Unary<SimpleResponse> =
            unary(&self.channel, UNARY_CALL, &simple_request(LARGE_REQ, LARGE_RESP), opts.clone(), false)
                .await
                .ctx("UnaryCall")?;
        check_payload(&r.msg.payload, LARGE_RESP)?;
        check("UnaryCall", &r.initial, &r.trailing)?;

        let mut call = self.call(FULL_DUPLEX_CALL, opts).await?;
        call.send(encode(&streaming_request(LARGE_REQ, LARGE_RESP))).await.ctx("send")?;
        let initial = call.initial_metadata().await.ctx("FullDuplexCall headers")?;
        let m = call.recv().await.ctx("recv")?.ok_or("no response")?;
        let resp: StreamingOutputCallResponse = decode(&m).ctx("decode")?;
        check_payload(&resp.payload, LARGE_RESP)?;
        call.close_send().await.ctx("close_send")?;
        ensure!(call.recv().await.ctx("end of FullDuplexCall")?.is_none(), "a response after the last one");
        let trailing = call.status().map(|s| s.metadata().clone()).unwrap_or_default();
        check("FullDuplexCall", &initial, &trailing)
    }

    async fn unimplemented(&self, method: &str) -> R {
        match unary::<_, Empty>(&self.channel, method, &Empty {}, self.opts(), false).await {
            Err(st) if st.code() == Code::Unimplemented => Ok(()),
            Err(st) => Err(format!("{method}: want UNIMPLEMENTED, got {st}")),
            Ok(_) => Err(format!("{method}: succeeded, want UNIMPLEMENTED")),
        }
    }

    async fn very_large_request(&self) -> R {
        let r: Unary<SimpleResponse> =
            unary(&self.channel, UNARY_CALL, &simple_request(10 * 1024 * 1024, 10), self.opts(), false)
                .await
                .ctx("UnaryCall")?;
        check_payload(&r.msg.payload, 10)
    }

    async fn pick_first_unary(&self) -> R {
        let req = SimpleRequest { fill_server_id: true, ..simple_request(1, 1) };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut first = None;
        for i in 0..100 {
            let opts = CallOptions { deadline: Some(deadline), ..self.opts() };
            let r: Unary<SimpleResponse> =
                unary(&self.channel, UNARY_CALL, &req, opts, false).await.ctx(&format!("iteration {i}"))?;
            let id = r.msg.server_id;
            ensure!(!id.is_empty(), "iteration {i}: empty server_id");
            match &first {
                None => first = Some(id),
                Some(f) => ensure!(*f == id, "iteration {i}: server_id {id:?} differs from {f:?}"),
            }
        }
        Ok(())
    }

    /// rpc_soak (one channel) and channel_soak (a new channel per RPC), as grpc-go runs them.
    async fn soak(&self, new_channel_each: bool) -> R {
        let cfg = self.soak.clone();
        let start = Instant::now();
        let overall_deadline = std::time::Instant::now() + cfg.overall_timeout;
        let per_worker = cfg.iterations / cfg.threads;
        if cfg.iterations % cfg.threads != 0 {
            eprintln!("soak_iterations must be evenly divisible by soak_num_threads");
        }
        let mut workers = Vec::new();
        for worker in 0..cfg.threads {
            let cfg = cfg.clone();
            let shared = self.channel.clone();
            let target = self.target.clone();
            let channel_opts = self.channel_opts.clone();
            let opts = CallOptions { deadline: Some(overall_deadline), ..self.opts() };
            workers.push(tokio::spawn(async move {
                let (mut ok, mut failed) = (0usize, 0usize);
                let req = simple_request(cfg.request_size, cfg.response_size);
                for i in 0..per_worker {
                    if start.elapsed() >= cfg.overall_timeout {
                        eprintln!("Test exceeded overall timeout of {:?}, stopping...", cfg.overall_timeout);
                        break;
                    }
                    let earliest_next = Instant::now() + cfg.min_between;
                    let channel = if new_channel_each {
                        match Channel::new(&target, channel_opts.clone()) {
                            Ok(c) => c,
                            Err(e) => {
                                eprintln!("Worker {worker}: soak iteration: {i} failed: cannot create a channel: {e}");
                                failed += 1;
                                tokio::time::sleep_until(earliest_next).await;
                                continue;
                            }
                        }
                    } else {
                        shared.clone()
                    };
                    let t0 = Instant::now();
                    let r = unary::<_, SimpleResponse>(&channel, UNARY_CALL, &req, opts.clone(), false).await;
                    let latency = t0.elapsed();
                    if new_channel_each {
                        channel.close();
                    }
                    let outcome = match r {
                        Err(st) => Err(format!("/TestService/UnaryCall RPC failed: {st}")),
                        Ok(r) => check_payload(&r.msg.payload, cfg.response_size),
                    };
                    match outcome {
                        Err(e) => {
                            eprintln!("Worker {worker}: soak iteration: {i} server_uri: {target} failed: {e}");
                            failed += 1;
                        }
                        Ok(()) if latency > cfg.max_latency => {
                            eprintln!(
                                "Worker {worker}: soak iteration: {i} elapsed_ms: {} server_uri: {target} exceeds max acceptable latency: {}",
                                latency.as_millis(),
                                cfg.max_latency.as_millis()
                            );
                            failed += 1;
                        }
                        Ok(()) => {
                            eprintln!(
                                "Worker {worker}: soak iteration: {i} elapsed_ms: {} server_uri: {target} succeeded",
                                latency.as_millis()
                            );
                            ok += 1;
                        }
                    }
                    tokio::time::sleep_until(earliest_next).await;
                }
                (ok, failed)
            }));
        }
        let (mut ok, mut failed) = (0, 0);
        for w in workers {
            let (o, f) = w.await.map_err(|e| format!("soak worker panicked: {e}"))?;
            ok += o;
            failed += f;
        }
        eprintln!(
            "(server_uri: {}) soak test successes: {ok} / {} iterations. Total failures: {failed}.",
            self.target, cfg.iterations
        );
        ensure!(
            ok + failed == cfg.iterations,
            "soak test consumed all {:?} of time and quit early, ran {} out of {} iterations",
            cfg.overall_timeout,
            ok + failed,
            cfg.iterations
        );
        ensure!(
            failed <= cfg.max_failures,
            "soak test total failures: {failed} exceeded max failures threshold: {}",
            cfg.max_failures
        );
        Ok(())
    }
}

// ------------------------------------------------------------- helpers --

/// A unary response with what the tests check besides the message.
struct Unary<T> {
    msg: T,
    /// The response message's compressed flag.
    compressed: bool,
    initial: Metadata,
    trailing: Metadata,
}

/// A unary call through the streaming API, to see the compressed flag and
/// both metadata sets. `compress` compresses the request when the call has
/// an encoding.
async fn unary<Req, Resp>(
    channel: &Channel,
    method: &str,
    req: &Req,
    opts: CallOptions,
    compress: bool,
) -> Result<Unary<Resp>, Status>
where
    Req: prost::Message,
    Resp: prost::Message + Default,
{
    let mut call = channel.call(method, opts).await?;
    call.send_with(encode(req), compress, true).await?;
    let initial = call.initial_metadata().await?;
    let first = call
        .recv_message()
        .await?
        .ok_or_else(|| Status::internal("cardinality violation: the call ended OK without a response"))?;
    if call.recv_message().await?.is_some() {
        return Err(Status::internal("cardinality violation: more than one response to a unary call"));
    }
    let trailing = call.status().map(|s| s.metadata().clone()).unwrap_or_default();
    let msg = decode(&first.data)?;
    Ok(Unary { msg, compressed: first.compressed, initial, trailing })
}

fn simple_request(req_size: usize, resp_size: usize) -> SimpleRequest {
    SimpleRequest {
        response_type: PayloadType::Compressable as i32,
        response_size: resp_size as i32,
        payload: Some(pb::zeros(req_size)),
        ..Default::default()
    }
}

fn params(size: usize) -> ResponseParameters {
    ResponseParameters { size: size as i32, ..Default::default() }
}

fn streaming_request(req_size: usize, resp_size: usize) -> StreamingOutputCallRequest {
    StreamingOutputCallRequest {
        response_type: PayloadType::Compressable as i32,
        response_parameters: vec![params(resp_size)],
        payload: Some(pb::zeros(req_size)),
        ..Default::default()
    }
}

/// A COMPRESSABLE payload of `size` zeros.
fn check_payload(p: &Option<Payload>, size: usize) -> R {
    let Some(p) = p else { return Err(format!("no payload, want {size} bytes")) };
    ensure!(p.r#type == PayloadType::Compressable as i32, "payload type {} want COMPRESSABLE", p.r#type);
    ensure!(p.body.len() == size, "payload of {} bytes, want {size}", p.body.len());
    ensure!(p.body.iter().all(|&b| b == 0), "payload bytes are not all zero");
    Ok(())
}
