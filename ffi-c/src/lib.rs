//! The C ABI of grpc-core: `libgrpc_core.so` and `libgrpc_core.a`, declared
//! by `include/grpc_core.h` (generated from this crate by a pinned cbindgen;
//! see `ffi-c/cbindgen.toml` and `mk/c.mk`).
//!
//! Conventions (docs: `ARCHITECTURE.md`, "The C ABI"): a completion queue
//! with tags and a pollable fd, one operation per function, result codes
//! with fixed numbers, out-parameters written only on success, borrowed
//! inputs as pointer + length, owned outputs with their `_free`, and every
//! export's body run inside [`boundary::ffi_guard`] so a panic never
//! crosses into C. Handles are registry ids, not addresses ([`handle`]), so
//! double frees and stale handles are errors.
//!
//! Safety contract of every `unsafe extern "C"` function here (stated once
//! in the header's preamble, hence `missing_safety_doc` is allowed): each
//! pointer argument is NULL or valid for the access its documentation
//! describes, for the duration of the call.

#![allow(non_camel_case_types)]
#![allow(clippy::missing_safety_doc)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod boundary;
pub mod call;
pub mod channel;
pub mod cq;
pub mod credentials;
pub mod handle;
pub mod logging;
pub mod server;
pub mod telemetry;
pub mod unary;
pub mod values;

use std::ffi::c_char;

use boundary::{ffi_guard, grpc_core_result, static_cstr, FfiError, GRPC_CORE_ERROR_INTERNAL};

/// The library's major version (matches `Cargo.toml`; checked at build time).
pub const GRPC_CORE_VERSION_MAJOR: u32 = 0;
/// The library's minor version.
pub const GRPC_CORE_VERSION_MINOR: u32 = 1;
/// The library's patch version.
pub const GRPC_CORE_VERSION_PATCH: u32 = 0;

const fn parse_u32(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    let mut v = 0u32;
    while i < b.len() {
        assert!(b[i].is_ascii_digit(), "version component is not a number");
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

// The header's version macros (and GRPC_CORE_VERSION, the string built from
// them in the header's trailer) come from the constants above; these make
// the build fail if they drift from Cargo.toml.
const _: () = assert!(GRPC_CORE_VERSION_MAJOR == parse_u32(env!("CARGO_PKG_VERSION_MAJOR")));
const _: () = assert!(GRPC_CORE_VERSION_MINOR == parse_u32(env!("CARGO_PKG_VERSION_MINOR")));
const _: () = assert!(GRPC_CORE_VERSION_PATCH == parse_u32(env!("CARGO_PKG_VERSION_PATCH")));

const VERSION_C: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

/// The library version as "MAJOR.MINOR.PATCH" (static storage; never free
/// it). Compare with `GRPC_CORE_VERSION_*` to detect a header/library mismatch.
#[no_mangle]
pub extern "C" fn grpc_core_version() -> *const c_char {
    ffi_guard! { VERSION_C.as_ptr().cast::<c_char>() }
}

/// The message of the most recent failure on the calling thread (UTF-8,
/// NUL-terminated; empty if none yet). Borrowed: valid until the next
/// library call on this thread. Never NULL.
#[no_mangle]
pub extern "C" fn grpc_core_last_error() -> *const c_char {
    ffi_guard! { boundary::last_error_ptr() }
}

/// The name of a result code, e.g. "GRPC_CORE_ERROR_WRONG_STATE" (static
/// storage; "UNKNOWN_RESULT" for numbers that are not result codes).
#[no_mangle]
pub extern "C" fn grpc_core_result_name(result: i32) -> *const c_char {
    ffi_guard! {
        static_cstr(match result {
            0 => c"GRPC_CORE_OK",
            1 => c"GRPC_CORE_TIMEOUT",
            2 => c"GRPC_CORE_NOT_FOUND",
            10 => c"GRPC_CORE_ERROR_NULL_ARGUMENT",
            11 => c"GRPC_CORE_ERROR_INVALID_ARGUMENT",
            12 => c"GRPC_CORE_ERROR_INVALID_HANDLE",
            13 => c"GRPC_CORE_ERROR_WRONG_STATE",
            14 => c"GRPC_CORE_ERROR_BUSY",
            15 => c"GRPC_CORE_ERROR_SHUTDOWN",
            16 => c"GRPC_CORE_ERROR_IO",
            17 => c"GRPC_CORE_ERROR_TLS",
            18 => c"GRPC_CORE_ERROR_PANIC",
            19 => c"GRPC_CORE_ERROR_INTERNAL",
            _ => c"UNKNOWN_RESULT",
        })
    }
}

/// The canonical name of a gRPC status code, e.g. "DEADLINE_EXCEEDED"
/// (static storage; codes outside 0..=16 give "UNKNOWN").
#[no_mangle]
pub extern "C" fn grpc_core_status_code_name(code: i32) -> *const c_char {
    ffi_guard! {
        static_cstr(match code {
            0 => c"OK",
            1 => c"CANCELLED",
            2 => c"UNKNOWN",
            3 => c"INVALID_ARGUMENT",
            4 => c"DEADLINE_EXCEEDED",
            5 => c"NOT_FOUND",
            6 => c"ALREADY_EXISTS",
            7 => c"PERMISSION_DENIED",
            8 => c"RESOURCE_EXHAUSTED",
            9 => c"FAILED_PRECONDITION",
            10 => c"ABORTED",
            11 => c"OUT_OF_RANGE",
            12 => c"UNIMPLEMENTED",
            13 => c"INTERNAL",
            14 => c"UNAVAILABLE",
            15 => c"DATA_LOSS",
            16 => c"UNAUTHENTICATED",
            _ => c"UNKNOWN",
        })
    }
}

/// The runtime the library starts: the core's runtime settings plus one
/// thing a C process needs. Rust programs ignore SIGPIPE from `main`; a C
/// program does not, and a peer closing a TLS connection mid-write (rustls
/// writes with `writev`, which has no MSG_NOSIGNAL) would kill it. So every
/// runtime thread blocks SIGPIPE: the write fails with EPIPE instead, and the
/// process's own signal dispositions are left alone.
static RUNTIME: std::sync::Mutex<Option<tokio::runtime::Runtime>> = std::sync::Mutex::new(None);
static RUNTIME_READY: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn block_sigpipe() {
    // SAFETY: plain libc calls on a local, zero-initialised sigset_t; they
    // change only the calling thread's signal mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// Starts the library's runtime (once) and makes it the engine's. If a
/// runtime already exists (another binding in the process made one), that
/// one is used.
fn start_runtime(worker_threads: Option<usize>) -> Result<(), FfiError> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if RUNTIME_READY.load(std::sync::atomic::Ordering::Acquire) {
        return Err(FfiError::wrong_state("the runtime is already running; configure it before first use"));
    }
    let mut b = tokio::runtime::Builder::new_multi_thread();
    b.enable_all().thread_name("grpc-core").on_thread_start(block_sigpipe);
    if let Some(n) = worker_threads {
        b.worker_threads(n.max(1));
    }
    let rt =
        b.build().map_err(|e| FfiError::new(GRPC_CORE_ERROR_INTERNAL, format!("cannot start the runtime: {e}")))?;
    let adopted = engine::rt::adopt(rt.handle().clone());
    RUNTIME_READY.store(true, std::sync::atomic::Ordering::Release);
    match adopted {
        Ok(()) => {
            *slot = Some(rt);
            Ok(())
        }
        Err(e) => {
            drop(slot);
            // Not ours to configure; shut ours down off any runtime thread.
            rt.shutdown_background();
            Err(FfiError::from(e))
        }
    }
}

/// Makes sure the runtime exists before anything is spawned on it (called
/// by the constructors of channels and servers, the only ways to start work).
pub(crate) fn ensure_runtime() {
    if !RUNTIME_READY.load(std::sync::atomic::Ordering::Acquire) {
        let _ = start_runtime(None);
    }
}

/// Configures the process-wide runtime (the one the engine and every binding
/// share) before first use: `worker_threads` I/O threads, 0 for one per CPU
/// core. Optional; without it the runtime starts with defaults when the
/// first channel or server is created. `GRPC_CORE_ERROR_WRONG_STATE` once
/// the runtime is running. Runtime threads block SIGPIPE, so a peer that
/// closes a connection never kills the process; the process's own signal
/// handling is not changed.
#[no_mangle]
pub extern "C" fn grpc_core_runtime_configure(worker_threads: u32) -> grpc_core_result {
    ffi_guard! {
        start_runtime(if worker_threads == 0 { None } else { Some(worker_threads as usize) })
    }
}
