//! Local API errors: misuse of the API (invalid argument, wrong state, shut down),
//! as opposed to a [`crate::Status`], which is how an RPC ended.

use std::fmt;

/// What kind of API error happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// An argument was invalid (bad target, bad metadata key, bad PEM...).
    InvalidArgument,
    /// The operation is not allowed in the object's current state.
    WrongState,
    /// The object was shut down or closed.
    Shutdown,
    /// An I/O error (binding a port, reading a file).
    Io,
    /// TLS configuration error.
    Tls,
}

/// An API error: an opaque struct with accessors so kinds can grow.
#[derive(Clone, Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error { kind, message: message.into() }
    }
    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }
    /// The kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
    /// A human-readable explanation.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Error {
        Error::new(ErrorKind::Io, e.to_string())
    }
}
