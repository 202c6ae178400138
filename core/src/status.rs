//! gRPC status codes and the [`Status`] an RPC ends with.
//!
//! A `Status` is how an RPC ended (code, message, details, trailers, and on a
//! client the response headers if the server sent any before failing); local
//! API misuse is an [`crate::Error`] instead.

use std::fmt;

use bytes::Bytes;

use crate::metadata::Metadata;

/// The canonical gRPC status codes (`grpc-status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum Code {
    /// Not an error.
    Ok = 0,
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// Unknown error.
    Unknown = 2,
    /// The client specified an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// Some requested entity was not found.
    NotFound = 5,
    /// The entity that a client attempted to create already exists.
    AlreadyExists = 6,
    /// The caller does not have permission.
    PermissionDenied = 7,
    /// Some resource has been exhausted.
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or supported.
    Unimplemented = 12,
    /// Internal error.
    Internal = 13,
    /// The service is currently unavailable.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Maps a numeric code; numbers outside 0..=16 become [`Code::Unknown`], as in grpc-go.
    pub fn from_i32(v: i32) -> Code {
        use Code::*;
        match v {
            0 => Ok,
            1 => Cancelled,
            2 => Unknown,
            3 => InvalidArgument,
            4 => DeadlineExceeded,
            5 => NotFound,
            6 => AlreadyExists,
            7 => PermissionDenied,
            8 => ResourceExhausted,
            9 => FailedPrecondition,
            10 => Aborted,
            11 => OutOfRange,
            12 => Unimplemented,
            13 => Internal,
            14 => Unavailable,
            15 => DataLoss,
            16 => Unauthenticated,
            _ => Unknown,
        }
    }

    /// The numeric value sent as `grpc-status`.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The upper-case name used by the gRPC spec, e.g. `DEADLINE_EXCEEDED`.
    pub fn name(self) -> &'static str {
        use Code::*;
        match self {
            Ok => "OK",
            Cancelled => "CANCELLED",
            Unknown => "UNKNOWN",
            InvalidArgument => "INVALID_ARGUMENT",
            DeadlineExceeded => "DEADLINE_EXCEEDED",
            NotFound => "NOT_FOUND",
            AlreadyExists => "ALREADY_EXISTS",
            PermissionDenied => "PERMISSION_DENIED",
            ResourceExhausted => "RESOURCE_EXHAUSTED",
            FailedPrecondition => "FAILED_PRECONDITION",
            Aborted => "ABORTED",
            OutOfRange => "OUT_OF_RANGE",
            Unimplemented => "UNIMPLEMENTED",
            Internal => "INTERNAL",
            Unavailable => "UNAVAILABLE",
            DataLoss => "DATA_LOSS",
            Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How an RPC ended: a code, a message, optional `grpc-status-details-bin`
/// bytes and the trailing metadata. A client call that failed after the
/// server sent response headers also carries those headers
/// ([`initial_metadata`](Status::initial_metadata)), as grpc-go's
/// `grpc.Header` and grpcio's `RpcError.initial_metadata()` keep them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    code: Code,
    message: String,
    details: Bytes,
    metadata: Metadata,
    initial_metadata: Metadata,
}

impl Status {
    /// A status with a code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: Bytes::new(),
            metadata: Metadata::new(),
            initial_metadata: Metadata::new(),
        }
    }

    /// The OK status.
    pub fn ok() -> Status {
        Status::new(Code::Ok, "")
    }

    /// Shorthand for `Status::new(Code::Cancelled, msg)`.
    pub fn cancelled(msg: impl Into<String>) -> Status {
        Status::new(Code::Cancelled, msg)
    }
    /// Shorthand for `Status::new(Code::Internal, msg)`.
    pub fn internal(msg: impl Into<String>) -> Status {
        Status::new(Code::Internal, msg)
    }
    /// Shorthand for `Status::new(Code::Unavailable, msg)`.
    pub fn unavailable(msg: impl Into<String>) -> Status {
        Status::new(Code::Unavailable, msg)
    }
    /// Shorthand for `Status::new(Code::Unimplemented, msg)`.
    pub fn unimplemented(msg: impl Into<String>) -> Status {
        Status::new(Code::Unimplemented, msg)
    }
    /// Shorthand for `Status::new(Code::InvalidArgument, msg)`.
    pub fn invalid_argument(msg: impl Into<String>) -> Status {
        Status::new(Code::InvalidArgument, msg)
    }
    /// Shorthand for `Status::new(Code::DeadlineExceeded, msg)`.
    pub fn deadline_exceeded(msg: impl Into<String>) -> Status {
        Status::new(Code::DeadlineExceeded, msg)
    }
    /// Shorthand for `Status::new(Code::ResourceExhausted, msg)`.
    pub fn resource_exhausted(msg: impl Into<String>) -> Status {
        Status::new(Code::ResourceExhausted, msg)
    }

    /// Attaches `grpc-status-details-bin` bytes (typically a serialized `google.rpc.Status`).
    pub fn with_details(mut self, details: impl Into<Bytes>) -> Status {
        self.details = details.into();
        self
    }

    /// Attaches trailing metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Status {
        self.metadata = metadata;
        self
    }

    /// Attaches the response headers (initial metadata) of the call.
    pub fn with_initial_metadata(mut self, metadata: Metadata) -> Status {
        self.initial_metadata = metadata;
        self
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }
    /// The message (`grpc-message`, decoded).
    pub fn message(&self) -> &str {
        &self.message
    }
    /// The `grpc-status-details-bin` bytes; empty when absent.
    pub fn details(&self) -> &Bytes {
        &self.details
    }
    /// The trailing metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }
    /// Mutable trailing metadata.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        &mut self.metadata
    }
    /// The response headers (initial metadata) a client call received before
    /// it failed; empty when the server sent none (a trailers-only answer,
    /// or the call ended before headers) and on statuses a client did not
    /// receive. A successful call's headers are in its response instead
    /// (e.g. [`UnaryResponse::initial_metadata`](crate::client::UnaryResponse)).
    pub fn initial_metadata(&self) -> &Metadata {
        &self.initial_metadata
    }
    /// True when the code is OK.
    pub fn is_ok(&self) -> bool {
        self.code == Code::Ok
    }

    /// Maps an h2 error (RST_STREAM, GOAWAY or I/O) to a status as PROTOCOL-HTTP2.md says.
    pub(crate) fn from_h2(err: &h2::Error) -> Status {
        if let (true, Some(reason)) = (err.is_go_away(), err.reason()) {
            // A connection-level GOAWAY ends the call as UNAVAILABLE.
            return Status::unavailable(format!("connection closed by GOAWAY with error code {reason:?}"));
        }
        if let Some(reason) = err.reason() {
            let code = match reason {
                h2::Reason::REFUSED_STREAM => Code::Unavailable,
                h2::Reason::CANCEL => Code::Cancelled,
                h2::Reason::ENHANCE_YOUR_CALM => Code::ResourceExhausted,
                h2::Reason::INADEQUATE_SECURITY => Code::PermissionDenied,
                _ => Code::Internal,
            };
            return Status::new(code, format!("stream terminated by RST_STREAM with error code {reason:?}"));
        }
        if err.is_io() {
            return Status::unavailable(format!("connection error: {err}"));
        }
        Status::internal(format!("transport error: {err}"))
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "status: {}, message: {:?}", self.code, self.message)
    }
}

impl std::error::Error for Status {}

/// Maps the HTTP status of a response without `grpc-status` to a code
/// (the table in gRPC's http-grpc-status-mapping.md).
pub(crate) fn code_from_http(status: u16) -> Code {
    match status {
        400 => Code::Internal,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::Unimplemented,
        429 | 502 | 503 | 504 => Code::Unavailable,
        _ => Code::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_maps() {
        for i in 0..=16 {
            assert_eq!(Code::from_i32(i).as_i32(), i);
        }
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::DeadlineExceeded.name(), "DEADLINE_EXCEEDED");
    }

    #[test]
    fn http_mapping() {
        assert_eq!(code_from_http(400), Code::Internal);
        assert_eq!(code_from_http(401), Code::Unauthenticated);
        assert_eq!(code_from_http(403), Code::PermissionDenied);
        assert_eq!(code_from_http(404), Code::Unimplemented);
        for s in [429, 502, 503, 504] {
            assert_eq!(code_from_http(s), Code::Unavailable);
        }
        assert_eq!(code_from_http(500), Code::Unknown);
    }
}
