//! `setLogger`: the engine's log records, delivered to a JS function.
//!
//! Records are made on runtime threads and queued to the JS thread through a threadsafe
//! function with a bounded queue, called without blocking: when JS falls behind, records
//! are dropped and counted, and the count is reported in a record of its own once one
//! gets through again. The function does not keep the process alive.

// napi-derive registers free functions only outside `cfg(test)`, so the lib test build sees
// `set_logger` and what it uses as unused.
#![cfg_attr(test, allow(dead_code))]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;

use crate::error::{BusError, Code};
use crate::log::{self, Record, Sink, Value};
use crate::napi::errors::throw;
use crate::napi::scope::Scope;

/// Records waiting for the JS thread before new ones are dropped.
const QUEUE: usize = 1024;

/// One log record.
#[napi(object)]
pub struct LogRecord {
  #[napi(ts_type = "'error' | 'warn' | 'info' | 'debug' | 'trace'")]
  pub level: String,
  /// The module that logged it, e.g. `ringbus::adapter::redis`.
  pub target: String,
  pub message: String,
  /// Structured context (shard, stream or key prefix, counts, reasons); never a secret.
  #[napi(ts_type = "Record<string, string | number | boolean>")]
  pub fields: serde_json::Map<String, serde_json::Value>,
  /// Milliseconds since the UNIX epoch.
  pub timestamp: f64,
}

// Declares the typings only: `setLogger` reads its options itself, so that anything else
// is a coded error.
/// Options of `setLogger`.
#[napi(object)]
#[allow(dead_code)]
pub struct LoggerOptions {
  /// The least severe level delivered. Default: the filter in `RINGBUS_LOG` when it is
  /// set, else `'info'`.
  #[napi(ts_type = "'error' | 'warn' | 'info' | 'debug' | 'trace' | 'off'")]
  pub level: Option<String>,
}

type Tsfn = ThreadsafeFunction<LogRecord, (), LogRecord, Status, false, true, QUEUE>;

struct JsSink {
  tsfn: Tsfn,
  dropped: AtomicU64,
}

fn to_js(r: Record) -> LogRecord {
  let fields = r
    .fields
    .into_iter()
    .map(|(k, v)| {
      let v = match v {
        Value::Str(s) => serde_json::Value::String(s),
        Value::Int(n) => n.into(),
        Value::Float(x) => {
          serde_json::Number::from_f64(x).map_or(serde_json::Value::Null, Into::into)
        }
        Value::Bool(b) => b.into(),
      };
      (k.to_string(), v)
    })
    .collect();
  LogRecord {
    level: r.level.to_string(),
    target: r.target,
    message: r.message,
    fields,
    timestamp: r.timestamp_ms as f64,
  }
}

impl JsSink {
  fn send(&self, record: LogRecord) -> bool {
    self
      .tsfn
      .call(record, ThreadsafeFunctionCallMode::NonBlocking)
      == Status::Ok
  }
}

impl Sink for JsSink {
  fn record(&self, record: Record) {
    let dropped = self.dropped.swap(0, Ordering::Relaxed);
    if dropped > 0 {
      let mut fields = serde_json::Map::new();
      fields.insert("dropped".into(), dropped.into());
      let note = LogRecord {
        level: "warn".into(),
        target: "ringbus::log".into(),
        message: format!("{dropped} log records were dropped: the logger fell behind"),
        fields,
        timestamp: record.timestamp_ms as f64,
      };
      if !self.send(note) {
        self.dropped.fetch_add(dropped + 1, Ordering::Relaxed);
        return;
      }
    }
    if !self.send(to_js(record)) {
      self.dropped.fetch_add(1, Ordering::Relaxed);
    }
  }
}

/// Wraps a sink so that what it throws goes nowhere: a logger must not crash its service.
const GUARD_JS: &str = include_str!("js/guard.js");

/// `sink` wrapped in [`GUARD_JS`].
fn guarded<'env>(
  env: &'env Env,
  sink: Function<'_, LogRecord, ()>,
) -> Result<Function<'env, LogRecord, ()>, Code> {
  let wrap = |scope: &mut Scope<'_>| {
    // SAFETY: the function belongs to this running call.
    let sink = unsafe { scope.adopt(sink.raw()) };
    let guard = scope.script(GUARD_JS)?;
    scope.call(guard, [sink]).map(|w| w.raw())
  };
  // SAFETY: called from a napi-rs function, on the JS thread, within the call of `env`.
  let raw = unsafe { Scope::with(env.raw(), wrap) }.map_err(|reason| internal(&reason))?;
  // SAFETY: `raw` is the function the guard returned, a value of this call.
  unsafe { Function::from_napi_value(env.raw(), raw) }.map_err(|e| internal(&e.reason))
}

fn internal(reason: &str) -> Error<Code> {
  throw(BusError::new(
    Code::Internal,
    format!("setLogger: {reason}"),
  ))
}

/// Sends ringbus's log records to `sink` instead of stderr, or back to stderr with `null`.
/// `sink` runs on the JS thread, after the record was made; what it throws is ignored.
/// A sink that is not a function, or options that are not `{ level }`, are
/// `ERR_INVALID_CONFIG` (and change nothing).
#[napi(ts_args_type = "sink: ((record: LogRecord) => void) | null, options?: LoggerOptions")]
pub fn set_logger(env: &Env, sink: Unknown, options: Option<Unknown>) -> Result<(), Code> {
  let level = logger_level(env, options).map_err(throw)?;
  let sink: Option<Arc<dyn Sink>> = match sink.get_type().map_err(|e| internal(&e.reason))? {
    ValueType::Undefined | ValueType::Null => None,
    ValueType::Function => {
      // SAFETY: checked to be a function, a value of this call.
      let f: Function<LogRecord, ()> = unsafe { Function::from_napi_value(env.raw(), sink.raw()) }
        .map_err(|e| internal(&e.reason))?;
      let tsfn = guarded(env, f)?
        .build_threadsafe_function::<LogRecord>()
        .weak::<true>()
        .max_queue_size::<QUEUE>()
        .build()
        .map_err(|e| internal(&e.reason))?;
      Some(Arc::new(JsSink {
        tsfn,
        dropped: AtomicU64::new(0),
      }))
    }
    other => {
      return Err(throw(BusError::new(
        Code::InvalidConfig,
        format!("setLogger(sink): sink must be a function (record) => void, or null to log to stderr again; got {}", type_label(other)),
      )))
    }
  };
  let default = if sink.is_some() {
    "info"
  } else {
    log::DEFAULT_LEVEL
  };
  log::set_sink(sink, level.as_deref(), default).map_err(throw)
}

fn type_label(t: ValueType) -> &'static str {
  match t {
    ValueType::Boolean => "a boolean",
    ValueType::Number => "a number",
    ValueType::String => "a string",
    ValueType::Symbol => "a symbol",
    ValueType::BigInt => "a bigint",
    _ => "an object",
  }
}

/// `options.level` of `setLogger`, read without trusting the object (a getter may throw).
fn logger_level(
  env: &Env,
  options: Option<Unknown>,
) -> std::result::Result<Option<String>, BusError> {
  let Some(options) = options else {
    return Ok(None);
  };
  let read = |scope: &mut Scope<'_>| {
    // SAFETY: the value belongs to this running call.
    let o = unsafe { scope.adopt(options.raw()) };
    let bad = |what: String| BusError::new(Code::InvalidConfig, what);
    match scope.type_of(o) {
      napi::sys::ValueType::napi_undefined | napi::sys::ValueType::napi_null => return Ok(None),
      napi::sys::ValueType::napi_object => {}
      other => {
        return Err(bad(format!(
          "setLogger options must be an object {{ level }}, got {}",
          crate::napi::scope::type_name(other)
        )))
      }
    }
    let v = scope
      .named(o, c"level", "setLogger options.level")
      .map_err(|e| bad(e.message))?;
    match scope.type_of(v) {
      napi::sys::ValueType::napi_undefined | napi::sys::ValueType::napi_null => Ok(None),
      napi::sys::ValueType::napi_string => {
        let text = scope.string_bytes(v, "setLogger options.level", |n| {
          if n > 16 {
            return Err(bad("setLogger options.level must be 'error', 'warn', 'info', 'debug', 'trace' or 'off'".into()));
          }
          Ok(())
        })?;
        Ok(Some(String::from_utf8_lossy(&text).into_owned()))
      }
      other => Err(bad(format!(
        "setLogger options.level must be 'error', 'warn', 'info', 'debug', 'trace' or 'off', got {}",
        crate::napi::scope::type_name(other)
      ))),
    }
  };
  // SAFETY: called from a napi-rs function, on the JS thread, within the call of `env`.
  unsafe { Scope::with(env.raw(), read) }
}
