//! The boundary between C and Rust: result codes, the thread-local last
//! error, the one guard every export runs its body in (panics never cross),
//! and the checked readers of C arguments.

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The result of every fallible function. The numbers are fixed forever:
/// new codes get new numbers, old ones are never reused.
#[repr(i32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum grpc_core_result {
    /// Success; out-parameters were written.
    GRPC_CORE_OK = 0,
    /// `grpc_core_cq_next` waited the whole timeout and no event came.
    GRPC_CORE_TIMEOUT = 1,
    /// A lookup (e.g. `grpc_core_metadata_find`) found nothing.
    GRPC_CORE_NOT_FOUND = 2,
    /// A required pointer argument was NULL.
    GRPC_CORE_ERROR_NULL_ARGUMENT = 10,
    /// An argument was invalid (bad UTF-8, bad metadata key, bad target, bad PEM, ...).
    GRPC_CORE_ERROR_INVALID_ARGUMENT = 11,
    /// The handle is not a live object of the expected type (already freed,
    /// freed twice, never created, or an object of another type).
    GRPC_CORE_ERROR_INVALID_HANDLE = 12,
    /// The operation is not allowed in the object's current state (out of
    /// order: e.g. a send after the half-close, a second status receive,
    /// registering a method after bind). Nothing was changed.
    GRPC_CORE_ERROR_WRONG_STATE = 13,
    /// An operation of the same kind is still in flight on this object (one
    /// send-side and one receive-side operation at a time). Nothing was changed.
    GRPC_CORE_ERROR_BUSY = 14,
    /// The object (completion queue, server, channel) was shut down.
    GRPC_CORE_ERROR_SHUTDOWN = 15,
    /// An I/O error (e.g. the address to bind is in use).
    GRPC_CORE_ERROR_IO = 16,
    /// A TLS configuration error (bad certificate or key).
    GRPC_CORE_ERROR_TLS = 17,
    /// A bug inside the library was caught at the boundary (a Rust panic).
    GRPC_CORE_ERROR_PANIC = 18,
    /// Any other internal failure.
    GRPC_CORE_ERROR_INTERNAL = 19,
}

pub(crate) use grpc_core_result::*;

/// A failed call: the code returned to C and the message behind
/// `grpc_core_last_error()`.
#[derive(Debug)]
pub(crate) struct FfiError {
    code: grpc_core_result,
    message: String,
}

impl FfiError {
    pub(crate) fn new(code: grpc_core_result, message: impl Into<String>) -> FfiError {
        FfiError { code, message: message.into() }
    }
    pub(crate) fn null(what: &str) -> FfiError {
        FfiError::new(GRPC_CORE_ERROR_NULL_ARGUMENT, format!("{what} is NULL"))
    }
    pub(crate) fn invalid(message: impl Into<String>) -> FfiError {
        FfiError::new(GRPC_CORE_ERROR_INVALID_ARGUMENT, message)
    }
    pub(crate) fn wrong_state(message: impl Into<String>) -> FfiError {
        FfiError::new(GRPC_CORE_ERROR_WRONG_STATE, message)
    }
    pub(crate) fn busy(message: impl Into<String>) -> FfiError {
        FfiError::new(GRPC_CORE_ERROR_BUSY, message)
    }
    pub(crate) fn shutdown(message: impl Into<String>) -> FfiError {
        FfiError::new(GRPC_CORE_ERROR_SHUTDOWN, message)
    }
    #[cfg(test)]
    pub(crate) fn code_for_test(&self) -> grpc_core_result {
        self.code
    }
}

impl From<engine::Error> for FfiError {
    fn from(e: engine::Error) -> FfiError {
        use engine::ErrorKind;
        let code = match e.kind() {
            ErrorKind::InvalidArgument => GRPC_CORE_ERROR_INVALID_ARGUMENT,
            ErrorKind::WrongState => GRPC_CORE_ERROR_WRONG_STATE,
            ErrorKind::Shutdown => GRPC_CORE_ERROR_SHUTDOWN,
            ErrorKind::Io => GRPC_CORE_ERROR_IO,
            ErrorKind::Tls => GRPC_CORE_ERROR_TLS,
            _ => GRPC_CORE_ERROR_INTERNAL,
        };
        FfiError::new(code, e.message().to_string())
    }
}

pub(crate) type FfiResult<T = ()> = Result<T, FfiError>;

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// The message of the last failure on this thread.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ptr())
}

/// What an export's body returns, and how it becomes the C return value.
pub(crate) trait Boundary {
    /// The C return type.
    type C;
    fn into_c(self) -> Self::C;
    /// What to return when the body panicked.
    fn panicked() -> Self::C;
}

impl Boundary for FfiResult<()> {
    type C = grpc_core_result;
    fn into_c(self) -> grpc_core_result {
        match self {
            Ok(()) => GRPC_CORE_OK,
            Err(e) => {
                set_last_error(&e.message);
                e.code
            }
        }
    }
    fn panicked() -> grpc_core_result {
        GRPC_CORE_ERROR_PANIC
    }
}

/// Status-like results that are not failures (TIMEOUT, NOT_FOUND) pass through.
impl Boundary for FfiResult<grpc_core_result> {
    type C = grpc_core_result;
    fn into_c(self) -> grpc_core_result {
        match self {
            Ok(code) => code,
            Err(e) => Err::<(), _>(e).into_c(),
        }
    }
    fn panicked() -> grpc_core_result {
        GRPC_CORE_ERROR_PANIC
    }
}

impl Boundary for *const c_char {
    type C = *const c_char;
    fn into_c(self) -> *const c_char {
        self
    }
    fn panicked() -> *const c_char {
        std::ptr::null()
    }
}

/// Runs an export's body, catching any panic: the panic's message becomes
/// the last error and the export returns `GRPC_CORE_ERROR_PANIC` (or NULL).
pub(crate) fn run<B: Boundary>(body: impl FnOnce() -> B) -> B::C {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(b) => b.into_c(),
        Err(p) => {
            let msg = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic): {msg}"));
            B::panicked()
        }
    }
}

/// The guard every `extern "C"` function runs its body in.
macro_rules! ffi_guard {
    ($($body:tt)*) => {
        $crate::boundary::run(move || { $($body)* })
    };
}
pub(crate) use ffi_guard;

/// An out-parameter checked non-NULL up front and written only on success.
pub(crate) struct Out<T>(*mut T);

impl<T> Out<T> {
    /// # Safety
    /// `p` is NULL or valid for writing a `T` until `write` is called.
    pub(crate) unsafe fn new(p: *mut T, what: &str) -> FfiResult<Out<T>> {
        if p.is_null() {
            Err(FfiError::null(what))
        } else {
            Ok(Out(p))
        }
    }
    pub(crate) fn write(self, v: T) {
        // SAFETY: non-NULL (checked in `new`) and writable for a `T`, as
        // `new`'s caller promised.
        unsafe { self.0.write(v) }
    }
}

/// A borrowed byte input: `len` bytes at `ptr` (`ptr` may be NULL when `len` is 0).
///
/// # Safety
/// `ptr` is NULL or points to `len` readable bytes that stay unchanged for `'a`.
pub(crate) unsafe fn bytes_arg<'a>(ptr: *const u8, len: usize, what: &str) -> FfiResult<&'a [u8]> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(FfiError::null(what));
    }
    if len > isize::MAX as usize {
        return Err(FfiError::invalid(format!("{what}: length {len} is too large")));
    }
    // SAFETY: non-NULL, length bounded, and the caller promised `len`
    // readable bytes that stay unchanged for `'a`.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A borrowed UTF-8 string input given as pointer + length.
///
/// # Safety
/// As [`bytes_arg`].
pub(crate) unsafe fn str_arg<'a>(ptr: *const c_char, len: usize, what: &str) -> FfiResult<&'a str> {
    // SAFETY: forwarded from our caller.
    let b = unsafe { bytes_arg(ptr.cast::<u8>(), len, what)? };
    std::str::from_utf8(b).map_err(|_| FfiError::invalid(format!("{what} is not valid UTF-8")))
}

/// A NUL-terminated string constant with 'static lifetime.
pub(crate) fn static_cstr(s: &'static CStr) -> *const c_char {
    s.as_ptr()
}

/// Milliseconds from C: negative means "no limit".
pub(crate) fn timeout_arg(ms: i64) -> Option<std::time::Duration> {
    u64::try_from(ms).ok().map(std::time::Duration::from_millis)
}

/// A Duration option from C milliseconds where 0 or negative means "off".
pub(crate) fn optional_ms(ms: i64) -> Option<std::time::Duration> {
    if ms <= 0 {
        None
    } else {
        Some(std::time::Duration::from_millis(ms as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: `last_error_ptr` returns this thread's NUL-terminated message.
        unsafe { CStr::from_ptr(last_error_ptr()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn a_panic_becomes_a_result_code_and_a_message() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = run(|| -> FfiResult<()> { panic!("boom") });
        let p = run(|| -> *const c_char { panic!("boom too") });
        std::panic::set_hook(prev);
        assert_eq!(r, GRPC_CORE_ERROR_PANIC);
        assert!(p.is_null());
        assert!(last_error().contains("boom too"), "{}", last_error());
    }

    #[test]
    fn errors_set_the_last_error_and_pass_through_codes() {
        assert_eq!(run(|| -> FfiResult<()> { Err(FfiError::busy("in flight")) }), GRPC_CORE_ERROR_BUSY);
        assert_eq!(last_error(), "in flight");
        assert_eq!(run(|| -> FfiResult<grpc_core_result> { Ok(GRPC_CORE_TIMEOUT) }), GRPC_CORE_TIMEOUT);
        assert_eq!(run(|| -> FfiResult<()> { Ok(()) }), GRPC_CORE_OK);
    }

    #[test]
    fn arguments_are_checked() {
        // SAFETY: NULL with a non-zero length is rejected before any read.
        let e = unsafe { bytes_arg(std::ptr::null(), 3, "data") }.unwrap_err();
        assert_eq!(e.code, GRPC_CORE_ERROR_NULL_ARGUMENT);
        // SAFETY: NULL with length 0 is the empty slice; nothing is read.
        assert!(unsafe { bytes_arg(std::ptr::null(), 0, "data") }.unwrap().is_empty());
        let bad = [0xffu8, 0xfe];
        // SAFETY: `bad` is a live 2-byte array.
        let e = unsafe { str_arg(bad.as_ptr().cast(), 2, "s") }.unwrap_err();
        assert_eq!(e.code, GRPC_CORE_ERROR_INVALID_ARGUMENT);
        assert_eq!(timeout_arg(-1), None);
        assert_eq!(optional_ms(0), None);
    }
}
