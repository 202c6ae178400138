//! The engine's structured logs, delivered to a callback: off by default.
//!
//! The engine logs through `tracing` (connection failures, handshakes,
//! keepalive, GOAWAY, handler panics). A Rust program can install any
//! `tracing` subscriber it likes. Bindings, which have no subscriber of
//! their own, call [`set_log_sink`] with a level and a callback that hands
//! each record to Python's `logging`, a Node callback, a C function...
//! With no sink installed every engine callsite is disabled (one relaxed
//! atomic load), so logs cost nothing until asked for.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata as TMeta, Subscriber};

/// Log levels, most severe first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Failures.
    Error = 1,
    /// Something odd the engine recovered from.
    Warn = 2,
    /// Lifecycle events.
    Info = 3,
    /// Connection and call details.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

impl LogLevel {
    fn of(l: &tracing::Level) -> LogLevel {
        match *l {
            tracing::Level::ERROR => LogLevel::Error,
            tracing::Level::WARN => LogLevel::Warn,
            tracing::Level::INFO => LogLevel::Info,
            tracing::Level::DEBUG => LogLevel::Debug,
            _ => LogLevel::Trace,
        }
    }

    /// `ERROR`, `WARN`, `INFO`, `DEBUG` or `TRACE`.
    pub fn name(self) -> &'static str {
        match self {
            LogLevel::Error => "ERROR",
            LogLevel::Warn => "WARN",
            LogLevel::Info => "INFO",
            LogLevel::Debug => "DEBUG",
            LogLevel::Trace => "TRACE",
        }
    }
}

/// One log record.
#[derive(Clone, Debug)]
pub struct LogRecord {
    /// How severe.
    pub level: LogLevel,
    /// The module that logged it (`grpc_core::client::conn`).
    pub target: String,
    /// The message, followed by the fields as ` key=value`.
    pub message: String,
    /// The structured fields (`error`, `peer`...), values formatted.
    pub fields: Vec<(String, String)>,
}

/// A log callback. Called on engine threads; must not block for long.
pub type LogSink = Arc<dyn Fn(&LogRecord) + Send + Sync>;

static LEVEL: AtomicU8 = AtomicU8::new(0);
static SINK: RwLock<Option<LogSink>> = RwLock::new(None);
static INSTALLED: OnceLock<bool> = OnceLock::new();

/// Sends the engine's records at `level` and above to `sink` (replacing any
/// earlier sink). Fails if the process already has a different global
/// `tracing` subscriber (then use that subscriber instead).
pub fn set_log_sink(level: LogLevel, sink: LogSink) -> Result<(), crate::Error> {
    let ok = *INSTALLED.get_or_init(|| tracing::subscriber::set_global_default(SinkSubscriber).is_ok());
    if !ok {
        return Err(crate::Error::invalid("a global tracing subscriber is already installed"));
    }
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = Some(sink);
    LEVEL.store(level as u8, Ordering::Release);
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}

/// Stops delivering logs.
pub fn clear_log_sink() {
    LEVEL.store(0, Ordering::Release);
    *SINK.write().unwrap_or_else(|e| e.into_inner()) = None;
}

struct SinkSubscriber;

fn wanted(meta: &TMeta<'_>) -> bool {
    let max = LEVEL.load(Ordering::Relaxed);
    max != 0 && (LogLevel::of(meta.level()) as u8) <= max && meta.target().starts_with("grpc_core")
}

#[derive(Default)]
struct Fields {
    message: String,
    fields: Vec<(String, String)>,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            self.fields.push((field.name().to_string(), format!("{value:?}")));
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            self.fields.push((field.name().to_string(), value.to_string()));
        }
    }
}

impl Subscriber for SinkSubscriber {
    fn register_callsite(&self, meta: &'static TMeta<'static>) -> tracing::subscriber::Interest {
        // Decided per event: the level can change at run time.
        if meta.target().starts_with("grpc_core") {
            tracing::subscriber::Interest::sometimes()
        } else {
            tracing::subscriber::Interest::never()
        }
    }
    fn enabled(&self, meta: &TMeta<'_>) -> bool {
        wanted(meta) && meta.is_event()
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let Some(sink) = SINK.read().unwrap_or_else(|e| e.into_inner()).clone() else { return };
        let mut f = Fields::default();
        event.record(&mut f);
        let mut message = f.message;
        for (k, v) in &f.fields {
            let _ = write!(message, " {k}={v}");
        }
        let rec = LogRecord {
            level: LogLevel::of(event.metadata().level()),
            target: event.metadata().target().to_string(),
            message,
            fields: f.fields,
        };
        // A sink that panics must not take an engine thread down.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(&rec)));
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}
