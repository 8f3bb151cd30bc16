//! Where the engine's log records go. The engine logs with `tracing`; this module installs
//! one subscriber for the process that filters them (`RINGBUS_LOG`, `tracing-subscriber`
//! `EnvFilter` syntax, default `ringbus=warn`) and hands each to the current route: stderr, or a
//! sink the embedding sets (the JS `setLogger`). Routes and filters change at run time;
//! the route is read on every record, so it lives in an `ArcSwap` rather than a lock.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::Registry;
use tracing_subscriber::{reload, EnvFilter};

use crate::error::{BusError, Code, Result};

/// The environment variable read for the filter.
pub const ENV: &str = "RINGBUS_LOG";
/// The level logged to stderr when `RINGBUS_LOG` is unset.
pub const DEFAULT_LEVEL: &str = "warn";

/// A field's value as logged.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
  Str(String),
  Int(i64),
  Float(f64),
  Bool(bool),
}

/// One log record, as a sink receives it.
#[derive(Debug, Clone)]
pub struct Record {
  /// `error`, `warn`, `info`, `debug` or `trace`.
  pub level: &'static str,
  /// The module that logged it, e.g. `ringbus::adapter::redis`.
  pub target: String,
  pub message: String,
  pub fields: Vec<(&'static str, Value)>,
  /// Milliseconds since the UNIX epoch.
  pub timestamp_ms: u64,
}

/// Receives records on the thread that logged them; must not block.
pub trait Sink: Send + Sync {
  fn record(&self, record: Record);
}

struct Route {
  sink: Option<Arc<dyn Sink>>,
}

struct Logging {
  route: ArcSwap<Route>,
  filter: reload::Handle<EnvFilter, Registry>,
}

static LOGGING: OnceLock<Option<Logging>> = OnceLock::new();

/// Passwords and tokens of the adapters made in this process. Every record is scrubbed of
/// them, whichever crate logged it (async-nats logs server addresses with credentials).
static SECRETS: parking_lot::RwLock<Vec<String>> = parking_lot::RwLock::new(Vec::new());
/// Most secrets remembered: a process makes few adapters, but a loop making buses with
/// fresh credentials must not grow this without end (the oldest go first).
const MAX_SECRETS: usize = 256;

/// Adds secrets every later record is scrubbed of.
pub fn register_secrets(secrets: &[String]) {
  let mut known = SECRETS.write();
  for s in secrets {
    // As given, and as `{:?}` shows it inside quotes (async-nats logs its URL with Debug).
    for form in [s.clone(), s.escape_debug().to_string()] {
      if form.is_empty() {
        continue;
      }
      // One registered again moves to the newest end: dropping the oldest must never drop
      // a secret still in use.
      known.retain(|k| *k != form);
      known.push(form);
    }
  }
  let over = known.len().saturating_sub(MAX_SECRETS);
  known.drain(..over);
}

/// `text` without registered secrets and without the userinfo of any URL in it.
fn scrub_text(text: String) -> String {
  // Known secrets first: a password may itself look like part of a URL.
  let known = SECRETS.read();
  let text = match known.is_empty() {
    true => text,
    false => crate::secrets::scrub(&known, text),
  };
  crate::secrets::scrub_userinfo(text)
}

/// ringbus's own records at `level` and up; other crates' records are not ours to show.
fn level_filter(level: &str) -> EnvFilter {
  EnvFilter::new(format!("ringbus={level}"))
}

/// The filter `RINGBUS_LOG` asks for, or `default` when it is unset or unreadable (the
/// second value says why it was not used).
fn env_filter(default: &str) -> (EnvFilter, Option<String>) {
  match std::env::var(ENV) {
    Ok(spec) if !spec.trim().is_empty() => match EnvFilter::try_new(&spec) {
      Ok(f) => (f, None),
      Err(e) => (
        level_filter(default),
        Some(format!(
          "{ENV}={spec:?} is not a valid filter ({e}); logging ringbus={default}"
        )),
      ),
    },
    _ => (level_filter(default), None),
  }
}

/// Installs the process-wide subscriber once. When another one is installed already (an
/// embedding with its own `tracing` setup), records go there and routes have no effect.
pub fn init() {
  let mut problem = None;
  LOGGING.get_or_init(|| {
    let (filter, why) = env_filter(DEFAULT_LEVEL);
    problem = why;
    let (filter, handle) = reload::Layer::new(filter);
    let route = ArcSwap::from_pointee(Route { sink: None });
    let subscriber = Registry::default().with(filter).with(RouteLayer);
    tracing::subscriber::set_global_default(subscriber).ok()?;
    Some(Logging {
      route,
      filter: handle,
    })
  });
  // Logged once the route exists (records made while it is being set up go nowhere).
  if let Some(p) = problem {
    tracing::warn!("{p}");
  }
}

/// Sends records to `sink` (None: back to stderr), filtered at `level` when given (else by
/// `RINGBUS_LOG`, else at `default`).
pub fn set_sink(sink: Option<Arc<dyn Sink>>, level: Option<&str>, default: &str) -> Result<()> {
  let filter = match level {
    Some(l) => level_filter(check_level(l)?),
    None => env_filter(default).0,
  };
  init();
  let Some(Some(logging)) = LOGGING.get() else {
    return Err(BusError::new(
      Code::InvalidConfig,
      "another tracing subscriber is installed in this process; ringbus logs go to it",
    ));
  };
  logging.filter.reload(filter).map_err(|e| {
    BusError::new(
      Code::Internal,
      format!("could not change the log filter: {e}"),
    )
  })?;
  logging.route.store(Arc::new(Route { sink }));
  Ok(())
}

/// The process is exiting and JS will not run again: records go to stderr from now on.
pub fn exiting() {
  if let Some(Some(logging)) = LOGGING.get() {
    logging.route.store(Arc::new(Route { sink: None }));
  }
}

fn check_level(level: &str) -> Result<&str> {
  match level {
    "error" | "warn" | "info" | "debug" | "trace" | "off" => Ok(level),
    other => Err(BusError::new(
      Code::InvalidConfig,
      format!("level must be 'error', 'warn', 'info', 'debug', 'trace' or 'off', got {other:?}"),
    )),
  }
}

fn level_name(level: &Level) -> &'static str {
  match *level {
    Level::ERROR => "error",
    Level::WARN => "warn",
    Level::INFO => "info",
    Level::DEBUG => "debug",
    Level::TRACE => "trace",
  }
}

struct RouteLayer;

impl<S: Subscriber> Layer<S> for RouteLayer {
  fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
    let Some(Some(logging)) = LOGGING.get() else {
      return;
    };
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let record = Record {
      level: level_name(meta.level()),
      target: meta.target().to_string(),
      message: scrub_text(fields.message),
      fields: fields
        .fields
        .into_iter()
        .map(|(k, v)| match v {
          Value::Str(s) => (k, Value::Str(scrub_text(s))),
          other => (k, other),
        })
        .collect(),
      timestamp_ms: crate::clock::now_ms(),
    };
    match &logging.route.load().sink {
      Some(sink) => sink.record(record),
      None => write_stderr(&record),
    }
  }
}

/// One line: `ringbus WARN target: message key=value ...`.
fn write_stderr(r: &Record) {
  let mut line = format!(
    "ringbus {} {}: {}",
    r.level.to_uppercase(),
    r.target,
    r.message
  );
  for (k, v) in &r.fields {
    let _ = match v {
      Value::Str(s) => write!(line, " {k}={s:?}"),
      Value::Int(n) => write!(line, " {k}={n}"),
      Value::Float(x) => write!(line, " {k}={x}"),
      Value::Bool(b) => write!(line, " {k}={b}"),
    };
  }
  line.push('\n');
  let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[derive(Default)]
struct Fields {
  message: String,
  fields: Vec<(&'static str, Value)>,
}

impl Visit for Fields {
  fn record_str(&mut self, field: &Field, value: &str) {
    if field.name() == "message" {
      self.message = value.to_string();
    } else {
      self
        .fields
        .push((field.name(), Value::Str(value.to_string())));
    }
  }

  fn record_i64(&mut self, field: &Field, value: i64) {
    self.fields.push((field.name(), Value::Int(value)));
  }

  fn record_u64(&mut self, field: &Field, value: u64) {
    let v = i64::try_from(value).map_or(Value::Float(value as f64), Value::Int);
    self.fields.push((field.name(), v));
  }

  fn record_f64(&mut self, field: &Field, value: f64) {
    self.fields.push((field.name(), Value::Float(value)));
  }

  fn record_bool(&mut self, field: &Field, value: bool) {
    self.fields.push((field.name(), Value::Bool(value)));
  }

  fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
    if field.name() == "message" {
      self.message = format!("{value:?}");
    } else {
      self
        .fields
        .push((field.name(), Value::Str(format!("{value:?}"))));
    }
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn a_secret_registered_again_outlives_newer_ones() {
    let x = "reused-Secret-8c1f".to_string();
    let fresh = |tag: &str, n: usize| {
      (0..n)
        .map(|i| format!("{tag}-{i}-unique-secret"))
        .collect::<Vec<_>>()
    };
    register_secrets(std::slice::from_ref(&x));
    register_secrets(&fresh("a", 100));
    // A second adapter with the same password, then more adapters: the password is still
    // in use, so it must still be scrubbed.
    register_secrets(std::slice::from_ref(&x));
    register_secrets(&fresh("b", 200));
    let out = scrub_text(format!("dialing as {x}"));
    assert!(!out.contains(&x), "{out}");
  }
}
