//! gRPC interop testing for grpc-core: the `grpc.testing` messages (written
//! by hand with prost, field numbers as in grpc's `messages.proto` and
//! `empty.proto`), the `grpc.testing.TestService` method paths, a command line
//! parser that behaves like Go's `flag` package, and certificate helpers.
//!
//! The binaries `interop-server` and `interop-client` implement the server
//! and client of grpc's `doc/interop-test-descriptions.md`.

use std::collections::HashMap;
use std::path::PathBuf;

/// The `grpc.testing` protobuf messages.
pub mod pb {
    /// `grpc.testing.PayloadType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum PayloadType {
        /// Compressable text format.
        Compressable = 0,
    }

    /// `grpc.testing.GrpclbRouteType`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum GrpclbRouteType {
        /// Not known (no grpclb).
        Unknown = 0,
        /// Served by a fallback backend.
        Fallback = 1,
        /// Served by a grpclb backend.
        Backend = 2,
    }

    /// `grpc.testing.Empty`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct Empty {}

    /// `grpc.testing.BoolValue`: a bool whose presence can be told apart from `false`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct BoolValue {
        /// The value.
        #[prost(bool, tag = "1")]
        pub value: bool,
    }

    /// `grpc.testing.Payload`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Payload {
        /// A [`PayloadType`].
        #[prost(enumeration = "PayloadType", tag = "1")]
        pub r#type: i32,
        /// The payload bytes.
        #[prost(bytes = "vec", tag = "2")]
        pub body: Vec<u8>,
    }

    /// `grpc.testing.EchoStatus`: the status the server should end the call with.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct EchoStatus {
        /// The status code.
        #[prost(int32, tag = "1")]
        pub code: i32,
        /// The status message.
        #[prost(string, tag = "2")]
        pub message: String,
    }

    /// `grpc.testing.SimpleRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SimpleRequest {
        /// The [`PayloadType`] of the response.
        #[prost(enumeration = "PayloadType", tag = "1")]
        pub response_type: i32,
        /// The response payload size in bytes.
        #[prost(int32, tag = "2")]
        pub response_size: i32,
        /// The request payload.
        #[prost(message, optional, tag = "3")]
        pub payload: Option<Payload>,
        /// Whether the response should include the authenticated user name.
        #[prost(bool, tag = "4")]
        pub fill_username: bool,
        /// Whether the response should include the OAuth scope.
        #[prost(bool, tag = "5")]
        pub fill_oauth_scope: bool,
        /// Whether the server should compress the response.
        #[prost(message, optional, tag = "6")]
        pub response_compressed: Option<BoolValue>,
        /// The status the server should answer with.
        #[prost(message, optional, tag = "7")]
        pub response_status: Option<EchoStatus>,
        /// Whether the server should expect this request to be compressed.
        #[prost(message, optional, tag = "8")]
        pub expect_compressed: Option<BoolValue>,
        /// Whether the response should include the server id.
        #[prost(bool, tag = "9")]
        pub fill_server_id: bool,
        /// Whether the response should include the grpclb route type.
        #[prost(bool, tag = "10")]
        pub fill_grpclb_route_type: bool,
    }

    /// `grpc.testing.SimpleResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SimpleResponse {
        /// The response payload.
        #[prost(message, optional, tag = "1")]
        pub payload: Option<Payload>,
        /// The authenticated user name.
        #[prost(string, tag = "2")]
        pub username: String,
        /// The OAuth scope.
        #[prost(string, tag = "3")]
        pub oauth_scope: String,
        /// The server id.
        #[prost(string, tag = "4")]
        pub server_id: String,
        /// A [`GrpclbRouteType`].
        #[prost(enumeration = "GrpclbRouteType", tag = "5")]
        pub grpclb_route_type: i32,
        /// The server's host name.
        #[prost(string, tag = "6")]
        pub hostname: String,
    }

    /// `grpc.testing.StreamingInputCallRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamingInputCallRequest {
        /// The request payload.
        #[prost(message, optional, tag = "1")]
        pub payload: Option<Payload>,
        /// Whether the server should expect this message to be compressed.
        #[prost(message, optional, tag = "2")]
        pub expect_compressed: Option<BoolValue>,
    }

    /// `grpc.testing.StreamingInputCallResponse`.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct StreamingInputCallResponse {
        /// The sum of the payload sizes received.
        #[prost(int32, tag = "1")]
        pub aggregated_payload_size: i32,
    }

    /// `grpc.testing.ResponseParameters`: one response of a streaming call.
    #[derive(Clone, Copy, PartialEq, prost::Message)]
    pub struct ResponseParameters {
        /// The response payload size in bytes.
        #[prost(int32, tag = "1")]
        pub size: i32,
        /// Delay before sending this response, in microseconds.
        #[prost(int32, tag = "2")]
        pub interval_us: i32,
        /// Whether this response should be compressed.
        #[prost(message, optional, tag = "3")]
        pub compressed: Option<BoolValue>,
    }

    /// `grpc.testing.StreamingOutputCallRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamingOutputCallRequest {
        /// The [`PayloadType`] of the responses.
        #[prost(enumeration = "PayloadType", tag = "1")]
        pub response_type: i32,
        /// One entry per response to send.
        #[prost(message, repeated, tag = "2")]
        pub response_parameters: Vec<ResponseParameters>,
        /// The request payload.
        #[prost(message, optional, tag = "3")]
        pub payload: Option<Payload>,
        /// The status the server should answer with.
        #[prost(message, optional, tag = "7")]
        pub response_status: Option<EchoStatus>,
    }

    /// `grpc.testing.StreamingOutputCallResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct StreamingOutputCallResponse {
        /// The response payload.
        #[prost(message, optional, tag = "1")]
        pub payload: Option<Payload>,
    }

    /// A `COMPRESSABLE` payload of `size` zero bytes.
    pub fn zeros(size: usize) -> Payload {
        Payload { r#type: PayloadType::Compressable as i32, body: vec![0; size] }
    }
}

/// Method paths.
pub mod methods {
    /// `grpc.testing.TestService/EmptyCall` (unary).
    pub const EMPTY_CALL: &str = "/grpc.testing.TestService/EmptyCall";
    /// `grpc.testing.TestService/UnaryCall` (unary).
    pub const UNARY_CALL: &str = "/grpc.testing.TestService/UnaryCall";
    /// `grpc.testing.TestService/CacheableUnaryCall` (unary).
    pub const CACHEABLE_UNARY_CALL: &str = "/grpc.testing.TestService/CacheableUnaryCall";
    /// `grpc.testing.TestService/StreamingOutputCall` (server streaming).
    pub const STREAMING_OUTPUT_CALL: &str = "/grpc.testing.TestService/StreamingOutputCall";
    /// `grpc.testing.TestService/StreamingInputCall` (client streaming).
    pub const STREAMING_INPUT_CALL: &str = "/grpc.testing.TestService/StreamingInputCall";
    /// `grpc.testing.TestService/FullDuplexCall` (bidi).
    pub const FULL_DUPLEX_CALL: &str = "/grpc.testing.TestService/FullDuplexCall";
    /// `grpc.testing.TestService/HalfDuplexCall` (bidi).
    pub const HALF_DUPLEX_CALL: &str = "/grpc.testing.TestService/HalfDuplexCall";
    /// `grpc.testing.TestService/UnimplementedCall`: registered, answers UNIMPLEMENTED.
    pub const UNIMPLEMENTED_CALL: &str = "/grpc.testing.TestService/UnimplementedCall";
    /// `grpc.testing.UnimplementedService/UnimplementedCall`: a service no server has.
    pub const UNIMPLEMENTED_SERVICE_CALL: &str = "/grpc.testing.UnimplementedService/UnimplementedCall";
}

/// Request metadata key whose value the server echoes in its initial metadata.
pub const ECHO_INITIAL_KEY: &str = "x-grpc-test-echo-initial";
/// Request metadata key whose value the server echoes in its trailers.
pub const ECHO_TRAILING_KEY: &str = "x-grpc-test-echo-trailing-bin";

/// The largest message our interop server and client accept (16 MiB, as
/// grpc-java's interop peers: `very_large_request` sends 10 MiB).
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// Command-line flags parsed like Go's `flag` package (what grpc-go's
/// interop binaries use): `-name` and `--name` are the same, values are given
/// as `--name=value` or `--name value`, and a boolean flag given alone means
/// true. Unknown flags are accepted and reported by [`Flags::unknown`].
#[derive(Debug, Default)]
pub struct Flags {
    values: HashMap<String, String>,
    unknown: Vec<String>,
}

impl Flags {
    /// Parses `args` (without the program name). `bools` are the boolean
    /// flags (they take a value only when the next argument is a boolean
    /// literal); `known` are the other flags this program understands.
    pub fn parse<I: IntoIterator<Item = String>>(args: I, bools: &[&str], known: &[&str]) -> Flags {
        let mut flags = Flags::default();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            if arg == "--" {
                break;
            }
            let Some(body) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')).filter(|b| !b.is_empty()) else {
                flags.unknown.push(arg);
                continue;
            };
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n.to_string(), Some(v.to_string())),
                None => (body.to_string(), None),
            };
            let value = match inline {
                Some(v) => v,
                None if bools.contains(&name.as_str()) => {
                    if args.peek().is_some_and(|n| parse_bool(n).is_some()) {
                        args.next().unwrap_or_default()
                    } else {
                        "true".to_string()
                    }
                }
                None => {
                    if args.peek().is_some_and(|n| !n.starts_with('-') || n.parse::<f64>().is_ok()) {
                        args.next().unwrap_or_default()
                    } else {
                        String::new()
                    }
                }
            };
            if !bools.contains(&name.as_str()) && !known.contains(&name.as_str()) {
                flags.unknown.push(format!("--{name}"));
            }
            flags.values.insert(name, value);
        }
        flags
    }

    /// Flags (and stray arguments) that were given but are not known.
    pub fn unknown(&self) -> &[String] {
        &self.unknown
    }

    /// True if the flag was given.
    pub fn has(&self, name: &str) -> bool {
        self.values.contains_key(name)
    }

    /// A string flag.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.values.get(name).cloned().unwrap_or_else(|| default.to_string())
    }

    /// A string flag that is absent or empty → `None`.
    pub fn opt_string(&self, name: &str) -> Option<String> {
        self.values.get(name).filter(|v| !v.is_empty()).cloned()
    }

    /// A boolean flag (Go's literals: 1 t T TRUE true True 0 f F FALSE false False).
    pub fn bool(&self, name: &str, default: bool) -> Result<bool, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => parse_bool(v).ok_or_else(|| format!("invalid boolean value {v:?} for flag --{name}")),
        }
    }

    /// An integer flag.
    pub fn int(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| format!("invalid integer value {v:?} for flag --{name}")),
        }
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// The directory of the interop test certificates (`ca.pem`, `server1.pem`,
/// `server1.key`): `$GRPC_INTEROP_CERTS_DIR`.
pub fn certs_dir() -> Result<PathBuf, String> {
    match std::env::var_os("GRPC_INTEROP_CERTS_DIR") {
        Some(d) if !d.is_empty() => Ok(PathBuf::from(d)),
        _ => Err("GRPC_INTEROP_CERTS_DIR is not set (it must hold ca.pem, server1.pem, server1.key)".to_string()),
    }
}

/// Reads a file, naming it in the error.
pub fn read_file(path: &std::path::Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Flags {
        Flags::parse(args.iter().map(|s| s.to_string()), &["use_tls", "use_test_ca"], &["port", "test_case"])
    }

    #[test]
    fn go_style_flags() {
        let f = parse(&["--port=1", "-use_tls", "--test_case", "x", "--use_test_ca", "false", "--other=3", "stray"]);
        assert_eq!(f.int("port", 0).unwrap(), 1);
        assert!(f.bool("use_tls", false).unwrap());
        assert!(!f.bool("use_test_ca", true).unwrap());
        assert_eq!(f.string("test_case", ""), "x");
        assert_eq!(f.unknown(), ["--other", "stray"]);
        let f = parse(&["--use_tls", "--port", "7"]);
        assert!(f.bool("use_tls", false).unwrap());
        assert_eq!(f.int("port", 0).unwrap(), 7);
        assert!(parse(&["--use_tls=maybe"]).bool("use_tls", false).is_err());
    }

    #[test]
    fn messages_encode_with_the_official_field_numbers() {
        use prost::Message;
        let req = pb::SimpleRequest {
            response_size: 1,
            expect_compressed: Some(pb::BoolValue { value: true }),
            fill_grpclb_route_type: true,
            ..Default::default()
        };
        // field 2 varint 1; field 8 (len 2: field 1 varint 1); field 10 varint 1.
        assert_eq!(req.encode_to_vec(), [0x10, 1, 0x42, 2, 0x08, 1, 0x50, 1]);
        let r = pb::StreamingOutputCallRequest {
            response_status: Some(pb::EchoStatus { code: 2, message: "m".into() }),
            ..Default::default()
        };
        assert_eq!(r.encode_to_vec(), [0x3a, 5, 0x08, 2, 0x12, 1, b'm']);
    }
}
