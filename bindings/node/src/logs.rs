//! The engine's log records, delivered to JavaScript (`setLogger` /
//! `setLogVerbosity` in `index.js`). Off until JS calls [`log_verbosity`]
//! with something other than NONE: no sink, so every engine callsite stays
//! disabled.
//!
//! The sink runs on engine threads and never waits for JS: a record goes
//! into a bounded queue (dropped, and counted, when the queue is full), and
//! the first record of a batch wakes the JS thread once through a weak
//! threadsafe function, which takes the whole queue.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use grpc_core::logging::{self, LogLevel, LogRecord};
use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status as NapiStatus;
use napi_derive::napi;

type LogTsfn = ThreadsafeFunction<(), (), Vec<JsLogRecord>, NapiStatus, false, true>;

/// Records waiting for the JS thread at most; more are dropped and counted.
const QUEUE_MAX: usize = 4096;

/// grpc-js's `LogVerbosity` numbers.
const DEBUG: u32 = 0;
const INFO: u32 = 1;
const ERROR: u32 = 2;

static WAKER: OnceLock<LogTsfn> = OnceLock::new();
static QUEUE: Mutex<Queue> = Mutex::new(Queue { records: Vec::new(), dropped: 0 });

struct Queue {
    records: Vec<JsLogRecord>,
    dropped: u64,
}

/// One engine record as JavaScript sees it.
#[napi(object, object_from_js = false)]
pub struct JsLogRecord {
    /// grpc-js severity: 0 DEBUG, 1 INFO, 2 ERROR.
    pub severity: u32,
    /// The engine module that logged it (`grpc_core::client::subchannel`).
    pub target: String,
    /// The message, then the fields as ` key=value`.
    pub message: String,
    /// When it was logged, ms since the epoch.
    pub time: f64,
}

/// The grpc-js severity of an engine level: warnings count as INFO (as
/// gRPC C core's GRPC_VERBOSITY has it), DEBUG and TRACE as DEBUG.
fn severity(l: LogLevel) -> u32 {
    match l {
        LogLevel::Error => ERROR,
        LogLevel::Warn | LogLevel::Info => INFO,
        LogLevel::Debug | LogLevel::Trace => DEBUG,
    }
}

fn now_ms() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs_f64() * 1000.0
}

fn sink(rec: &LogRecord) {
    let js = JsLogRecord {
        severity: severity(rec.level),
        target: rec.target.clone(),
        message: rec.message.clone(),
        time: now_ms(),
    };
    // Held for a push only: the engine thread never waits on JavaScript.
    let first = {
        let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
        if q.records.len() >= QUEUE_MAX {
            q.dropped += 1;
            return;
        }
        q.records.push(js);
        q.records.len() == 1
    };
    if first {
        if let Some(w) = WAKER.get() {
            w.call((), ThreadsafeFunctionCallMode::NonBlocking);
        }
    }
}

/// Installs the function that receives each batch of records (once).
#[napi]
pub fn log_init(callback: Function<'_, Vec<JsLogRecord>, ()>) -> napi::Result<()> {
    if WAKER.get().is_some() {
        return Ok(());
    }
    let tsfn: LogTsfn =
        callback.build_threadsafe_function::<()>().callee_handled::<false>().weak::<true>().build_callback(|_ctx| {
            let (mut records, dropped) = {
                let mut q = QUEUE.lock().unwrap_or_else(|e| e.into_inner());
                (std::mem::take(&mut q.records), std::mem::take(&mut q.dropped))
            };
            if dropped > 0 {
                records.push(JsLogRecord {
                    severity: ERROR,
                    target: "grpc_core_node".to_string(),
                    message: format!("{dropped} engine log records dropped (the queue was full)"),
                    time: now_ms(),
                });
            }
            Ok(records)
        })?;
    let _ = WAKER.set(tsfn);
    Ok(())
}

/// Sends the engine's records at grpc-js `verbosity` and above (0 DEBUG,
/// 1 INFO, 2 ERROR) to the callback of [`log_init`]; 3 (NONE) or more stops.
#[napi]
pub fn log_verbosity(verbosity: u32) -> napi::Result<()> {
    let level = match verbosity {
        DEBUG => LogLevel::Trace,
        INFO => LogLevel::Info,
        ERROR => LogLevel::Error,
        _ => {
            logging::clear_log_sink();
            return Ok(());
        }
    };
    logging::set_log_sink(level, Arc::new(sink)).map_err(|e| napi::Error::from_reason(e.message().to_string()))
}
