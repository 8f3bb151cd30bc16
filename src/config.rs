//! The bus's own settings (shards, rings, batches, retries, scaling), their defaults and
//! validation. Each adapter's settings live in its own folder (`adapter::AdapterConfig`).
//!
//! Key names in error messages use the JS option spelling, because these messages reach users.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{without_echoed_value, BusError, Code, Result};

/// What `ingest` does when the target shard's ring is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
  /// Throw `ERR_BACKPRESSURE`; the event is not accepted.
  Reject,
  /// Accept the event and evict the oldest queued one (counted as dropped).
  DropOldest,
  /// Discard the new event (counted as dropped); `ingest` still returns.
  DropNewest,
}

#[derive(Debug, Clone)]
pub struct BatchConfig {
  pub max_events: usize,
  pub max_bytes: usize,
  /// Longest a partial batch waits for more events; None: adaptive (`dispatch.rs`).
  pub max_delay: Option<Duration>,
}

impl Default for BatchConfig {
  fn default() -> Self {
    BatchConfig {
      max_events: 1024,
      max_bytes: 1 << 20,
      max_delay: None,
    }
  }
}

/// Bounds for `scaleUp`/`scaleDown` and, when `auto` is set, the policy that scales by
/// itself. Decisions use the mean fill ratio (queued / ringCapacity) of the active shards
/// over each metrics window.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingConfig {
  pub min_shards: u32,
  pub max_shards: u32,
  /// Whether the policy below runs (a monitor task, one tick per window).
  pub auto: bool,
  pub window: Duration,
  /// A window whose mean fill ratio is at least this counts towards scaling up.
  pub scale_up_fill: f64,
  /// A window whose mean fill ratio is at most this counts towards scaling down.
  pub scale_down_fill: f64,
  /// Consecutive such windows before acting.
  pub up_windows: u32,
  pub down_windows: u32,
  /// Least time between two changes of the shard count (manual ones included).
  pub cooldown: Duration,
  /// Most shards one decision adds or removes.
  pub max_step: u32,
}

impl ScalingConfig {
  pub fn new(min_shards: u32, max_shards: u32) -> Self {
    ScalingConfig {
      min_shards,
      max_shards,
      auto: false,
      window: Duration::from_secs(1),
      scale_up_fill: 0.75,
      scale_down_fill: 0.05,
      up_windows: 2,
      down_windows: 10,
      cooldown: Duration::from_secs(5),
      max_step: 2,
    }
  }

  fn validate(&self, shards: u32) -> Result<()> {
    check_range(
      "scaling.minShards",
      self.min_shards as u64,
      1,
      MAX_SHARDS as u64,
    )?;
    check_range(
      "scaling.maxShards",
      self.max_shards as u64,
      self.min_shards as u64,
      MAX_SHARDS as u64,
    )?;
    if shards < self.min_shards || shards > self.max_shards {
      return Err(BusError::config(format!(
        "shards ({shards}) must be between scaling.minShards ({}) and scaling.maxShards ({})",
        self.min_shards, self.max_shards
      )));
    }
    check_ms("scaling.windowMs", self.window, 10, 3_600_000)?;
    check_ms("scaling.cooldownMs", self.cooldown, 0, 86_400_000)?;
    let fill_ok = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
    if !fill_ok(self.scale_up_fill) || !fill_ok(self.scale_down_fill) {
      return Err(BusError::config(
        "scaling.scaleUpFillRatio and scaling.scaleDownFillRatio must be between 0 and 1",
      ));
    }
    // The gap between the thresholds is the hysteresis that keeps the policy from flapping.
    if self.scale_down_fill >= self.scale_up_fill {
      return Err(BusError::config(format!(
        "scaling.scaleDownFillRatio ({}) must be below scaling.scaleUpFillRatio ({})",
        self.scale_down_fill, self.scale_up_fill
      )));
    }
    check_range("scaling.upWindows", self.up_windows as u64, 1, 1000)?;
    check_range("scaling.downWindows", self.down_windows as u64, 1, 1000)?;
    check_range(
      "scaling.maxStep",
      self.max_step as u64,
      1,
      MAX_SHARDS as u64,
    )?;
    Ok(())
  }
}

#[derive(Debug, Clone)]
pub struct BusConfig {
  pub shards: u32,
  pub ring_capacity: usize,
  /// Payload and key bytes each shard's ring holds at most.
  pub ring_max_bytes: usize,
  pub backpressure: Backpressure,
  pub max_event_bytes: usize,
  pub batch: BatchConfig,
  pub adapter_timeout: Duration,
  pub retries: u32,
  pub producer_nonce_path: Option<PathBuf>,
  pub shutdown_timeout: Duration,
  pub scaling: Option<ScalingConfig>,
}

pub const MAX_SHARDS: u32 = 1024;
pub const MAX_RING_CAPACITY: usize = 1 << 24;
pub const MAX_EVENT_BYTES_LIMIT: usize = 64 << 20;

impl Default for BusConfig {
  fn default() -> Self {
    BusConfig {
      shards: 4,
      ring_capacity: 65_536,
      ring_max_bytes: 64 << 20,
      backpressure: Backpressure::Reject,
      max_event_bytes: 1 << 20,
      batch: BatchConfig::default(),
      adapter_timeout: Duration::from_secs(5),
      retries: 5,
      producer_nonce_path: None,
      shutdown_timeout: Duration::from_secs(10),
      scaling: None,
    }
  }
}

/// Worker threads of the process-wide runtime when `RINGBUS_THREADS` is not set: the
/// dispatchers and readers mostly wait on I/O, and more threads would compete with Node's
/// own thread for the CPU.
pub const DEFAULT_RUNTIME_THREADS: usize = 2;
const MAX_RUNTIME_THREADS: usize = 64;

/// The runtime's thread count from the `RINGBUS_THREADS` environment variable's value.
pub fn runtime_threads(var: Option<&str>) -> Result<usize> {
  let Some(v) = var else {
    return Ok(DEFAULT_RUNTIME_THREADS);
  };
  match v.trim().parse::<usize>() {
    Ok(n) if (1..=MAX_RUNTIME_THREADS).contains(&n) => Ok(n),
    _ => Err(BusError::config(format!(
      "RINGBUS_THREADS={v:?} is not a thread count; set it to a whole number from 1 to {MAX_RUNTIME_THREADS}, or unset it for the default ({DEFAULT_RUNTIME_THREADS})"
    ))),
  }
}

/// Refuses a duration outside `min..=max` ms, naming `key`.
pub fn check_ms(key: &str, value: Duration, min: u64, max: u64) -> Result<()> {
  check_range(key, value.as_millis() as u64, min, max)
}

/// Refuses a value outside `min..=max`, naming `key`.
pub fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<()> {
  if value < min || value > max {
    return Err(BusError::config(format!(
      "{key} must be between {min} and {max}, got {value}"
    )));
  }
  Ok(())
}

impl BusConfig {
  /// The range `scaleUp`/`scaleDown` keep the shard count in.
  pub fn shard_bounds(&self) -> (u32, u32) {
    match &self.scaling {
      Some(s) => (s.min_shards, s.max_shards),
      None => (1, MAX_SHARDS),
    }
  }

  /// Checks every value; the first failure names the offending option.
  pub fn validate(&self) -> Result<()> {
    check_range("shards", self.shards as u64, 1, MAX_SHARDS as u64)?;
    if let Some(scaling) = &self.scaling {
      scaling.validate(self.shards)?;
    }
    check_range(
      "ringCapacity",
      self.ring_capacity as u64,
      16,
      MAX_RING_CAPACITY as u64,
    )?;
    check_range(
      "ringMaxBytes",
      self.ring_max_bytes as u64,
      1024,
      u32::MAX as u64,
    )?;
    check_range(
      "maxEventBytes",
      self.max_event_bytes as u64,
      16,
      MAX_EVENT_BYTES_LIMIT as u64,
    )?;
    check_range("batch.maxEvents", self.batch.max_events as u64, 1, 100_000)?;
    check_range(
      "batch.maxBytes",
      self.batch.max_bytes as u64,
      1024,
      MAX_EVENT_BYTES_LIMIT as u64 * 4,
    )?;
    if let Some(d) = self.batch.max_delay {
      check_ms("batch.maxDelayMs", d, 0, 60_000)?;
    }
    check_ms("adapterTimeoutMs", self.adapter_timeout, 1, 600_000)?;
    check_range("retries", self.retries as u64, 0, 100)?;
    check_ms("shutdownTimeoutMs", self.shutdown_timeout, 1, 600_000)?;
    if let Some(path) = &self.producer_nonce_path {
      if path.as_os_str().is_empty() {
        return Err(BusError::config(
          "producerNoncePath must be a non-empty file path",
        ));
      }
    }
    Ok(())
  }
}

/// Deserializes a user's option value into `T`; errors name the offending key as
/// `what.path` (e.g. `options.adapter.replicas`) and never echo the value given.
pub fn parse_at<'de, T, D>(de: D, what: &str, code: Code) -> Result<T>
where
  T: serde::Deserialize<'de>,
  D: serde::Deserializer<'de>,
  D::Error: std::fmt::Display,
{
  serde_path_to_error::deserialize(de).map_err(|e| {
    let path = e.path().to_string();
    let inner = e.into_inner().to_string();
    let inner = without_echoed_value(inner.split(" at line ").next().unwrap_or(&inner));
    let at = if path == "." {
      what.to_string()
    } else {
      format!("{what}.{path}")
    };
    BusError::new(code, format!("{at}: {inner}"))
  })
}

/// A JS number option that must be a whole number from 0 to 2^53 - 1.
pub fn whole_number(key: &str, v: Option<f64>) -> Result<Option<i64>> {
  match v {
    None => Ok(None),
    Some(x) if x.fract() == 0.0 && (0.0..=9.007_199_254_740_991e15).contains(&x) => {
      Ok(Some(x as i64))
    }
    Some(x) => Err(BusError::config(format!(
      "{key} must be a whole number of at least 0, got {x}"
    ))),
  }
}

/// A millisecond option, or `default` when absent.
pub fn ms_or(v: Option<u32>, default: Duration) -> Duration {
  v.map_or(default, |v| Duration::from_millis(v as u64))
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn defaults_are_valid() {
    BusConfig::default().validate().unwrap();
  }

  #[test]
  fn runtime_threads_from_the_environment() {
    assert_eq!(runtime_threads(None).unwrap(), DEFAULT_RUNTIME_THREADS);
    assert_eq!(runtime_threads(Some("8")).unwrap(), 8);
    for bad in ["0", "65", "two", ""] {
      let e = runtime_threads(Some(bad)).unwrap_err();
      assert!(e.message.contains("RINGBUS_THREADS"), "{}", e.message);
    }
  }

  #[test]
  fn out_of_range_names_the_key() {
    let cfg = BusConfig {
      shards: 0,
      ..BusConfig::default()
    };
    let err = cfg.validate().unwrap_err();
    assert_eq!(err.code, crate::error::Code::InvalidConfig);
    assert!(err.message.contains("shards"), "{}", err.message);

    let cfg = BusConfig {
      batch: BatchConfig {
        max_events: 0,
        ..BatchConfig::default()
      },
      ..BusConfig::default()
    };
    assert!(cfg
      .validate()
      .unwrap_err()
      .message
      .contains("batch.maxEvents"));
  }
}
