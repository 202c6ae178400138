//! The engine's logs, delivered to a C callback (off until set).

use std::ffi::{c_char, c_void};
use std::sync::Arc;

use engine::logging::{clear_log_sink, set_log_sink, LogLevel, LogRecord};

use crate::boundary::{ffi_guard, grpc_core_result, FfiError, GRPC_CORE_ERROR_INVALID_ARGUMENT};

/// Errors only.
pub const GRPC_CORE_LOG_ERROR: i32 = 1;
/// Warnings and errors.
pub const GRPC_CORE_LOG_WARN: i32 = 2;
/// Lifecycle events and above.
pub const GRPC_CORE_LOG_INFO: i32 = 3;
/// Connection and call details and above.
pub const GRPC_CORE_LOG_DEBUG: i32 = 4;
/// Everything.
pub const GRPC_CORE_LOG_TRACE: i32 = 5;

/// A log callback: `level` is a `GRPC_CORE_LOG_*` value; `target` (the
/// engine module, e.g. "grpc_core::client::subchannel") and `message` (the
/// text followed by ` key=value` fields) are UTF-8, not NUL-terminated, and
/// borrowed for the duration of the call only.
pub type grpc_core_log_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        level: i32,
        target: *const c_char,
        target_len: usize,
        message: *const c_char,
        message_len: usize,
    ),
>;

struct Sink {
    f: unsafe extern "C" fn(*mut c_void, i32, *const c_char, usize, *const c_char, usize),
    user_data: *mut c_void,
}

// SAFETY: the caller of grpc_core_set_log_callback promises that the callback
// and user_data may be used from any thread (documented there).
unsafe impl Send for Sink {}
// SAFETY: as above; the sink only passes user_data back to the callback.
unsafe impl Sync for Sink {}

/// Sends the engine's log records at `max_level` (`GRPC_CORE_LOG_*`) and
/// more severe to `callback`, replacing any earlier callback. The callback
/// runs on library threads, possibly several at once: it must be
/// thread-safe, return quickly and not call back into the library.
/// `user_data` is passed through untouched and must stay valid until the
/// callback is replaced or cleared. Logging is off until this is called.
/// Errors: NULL_ARGUMENT (callback), INVALID_ARGUMENT (level out of 1..=5,
/// or the process already installed another `tracing` subscriber).
#[no_mangle]
pub unsafe extern "C" fn grpc_core_set_log_callback(
    max_level: i32,
    callback: grpc_core_log_fn,
    user_data: *mut c_void,
) -> grpc_core_result {
    ffi_guard! {{
        let f = callback.ok_or_else(|| FfiError::null("callback"))?;
        let level = match max_level {
            GRPC_CORE_LOG_ERROR => LogLevel::Error,
            GRPC_CORE_LOG_WARN => LogLevel::Warn,
            GRPC_CORE_LOG_INFO => LogLevel::Info,
            GRPC_CORE_LOG_DEBUG => LogLevel::Debug,
            GRPC_CORE_LOG_TRACE => LogLevel::Trace,
            _ => return Err(FfiError::new(GRPC_CORE_ERROR_INVALID_ARGUMENT, format!("log level {max_level} is not 1..=5"))),
        };
        let sink = Arc::new(Sink { f, user_data });
        set_log_sink(
            level,
            Arc::new(move |r: &LogRecord| {
                // SAFETY: the pointers are valid for this call; the callback's contract is above.
                unsafe {
                    (sink.f)(
                        sink.user_data,
                        r.level as i32,
                        r.target.as_ptr().cast(),
                        r.target.len(),
                        r.message.as_ptr().cast(),
                        r.message.len(),
                    )
                }
            }),
        )
        .map_err(|e| FfiError::new(GRPC_CORE_ERROR_INVALID_ARGUMENT, e.message().to_string()))?;
        Ok(())
    }}
}

/// Stops delivering logs; the previous callback is not called after this
/// returns (records already being delivered on other threads may finish).
#[no_mangle]
pub extern "C" fn grpc_core_clear_log_callback() -> grpc_core_result {
    ffi_guard! {{
        clear_log_sink();
        Ok(())
    }}
}
