//! Option objects: typed for `index.d.ts`, parsed strictly (unknown keys are errors) and
//! validated into the engine's configuration.

use std::time::Duration;

use napi_derive::napi;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::adapter::AdapterConfig;
use crate::config::{self, ms_or, BatchConfig, BusConfig};
use crate::consume::filter::Filter;
use crate::error::{BusError, Code, Result};
use crate::group::worker::WorkerOptions as EngineWorkerOptions;
use crate::group::GroupOptions;

mod adapter;
mod group;
mod read;
mod telemetry;

pub use self::group::{
  process_options, ConsumerOptions, DeadLettersOptions, PurgeDeadLettersOptions, RedeliverOptions,
  ResetGroupOptions,
};
pub use self::read::{PollRequest, SubscribeOptions};
pub use self::telemetry::{parse_format, MetricsOptions};

/// What `ingest` does when the target shard's ring is full.
#[napi(string_enum)]
#[derive(Debug, Deserialize)]
pub enum BackpressureMode {
  /// Throw `ERR_BACKPRESSURE`; the event is not accepted.
  #[napi(value = "reject")]
  #[serde(rename = "reject")]
  Reject,
  /// Accept the event and evict the oldest queued event of that shard (counted in `droppedOldest`).
  #[napi(value = "dropOldest")]
  #[serde(rename = "dropOldest")]
  DropOldest,
  /// Discard the new event (counted in `droppedNewest`); `ingest` still returns.
  #[napi(value = "dropNewest")]
  #[serde(rename = "dropNewest")]
  DropNewest,
}

/// How dispatchers cut batches for the adapter.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BatchOptions {
  /// Most events in one adapter write (1–100000). Default: 1024.
  pub max_events: Option<u32>,
  /// Most payload bytes in one adapter write (at least 1024). Default: 1048576 (1 MiB).
  pub max_bytes: Option<u32>,
  /// Longest a partial batch waits for more events, in ms (0–60000); a full batch, a
  /// backlog or `flush()` sends at once. Set it to trade latency for fewer, larger writes
  /// at moderate rates. Default: none, adaptive: a shard writes its first event at once and
  /// batches what arrives while a write is in flight, and waits 2 ms for more only while
  /// events arrive faster than 20,000/s on that shard.
  pub max_delay_ms: Option<u32>,
}

/// Shard-count bounds and the optional scaling policy.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScalingOptions {
  /// Fewest shards `scaleDown` and the policy leave (1–1024). Default: 1.
  pub min_shards: Option<u32>,
  /// Most shards `scaleUp` and the policy reach (minShards–1024). Default: 1024.
  pub max_shards: Option<u32>,
  /// Run the policy: a task that, every `windowMs`, compares the active shards' mean fill
  /// ratio (queued / ringCapacity) with the thresholds below and adds or removes shards,
  /// logging each decision with its reason on stderr. Default: false (manual scaling only;
  /// the policy options below are then refused).
  pub auto: Option<bool>,
  /// Metrics window in ms (10–3600000). Default: 1000.
  pub window_ms: Option<u32>,
  /// A window with a mean fill ratio at or above this counts towards scaling up. Default: 0.75.
  pub scale_up_fill_ratio: Option<f64>,
  /// A window with a mean fill ratio at or below this counts towards scaling down; must be
  /// below `scaleUpFillRatio`. Default: 0.05.
  pub scale_down_fill_ratio: Option<f64>,
  /// Consecutive windows over `scaleUpFillRatio` before adding shards (1–1000). Default: 2.
  pub up_windows: Option<u32>,
  /// Consecutive windows under `scaleDownFillRatio` before removing shards (1–1000). Default: 10.
  pub down_windows: Option<u32>,
  /// Least time between two changes of the shard count, in ms (manual ones count too).
  /// Default: 5000.
  pub cooldown_ms: Option<u32>,
  /// Most shards one decision adds or removes (1–1024). Default: 2.
  pub max_step: Option<u32>,
}

impl ScalingOptions {
  fn into_config(self) -> Result<config::ScalingConfig> {
    let min = self.min_shards.unwrap_or(1);
    let max = self.max_shards.unwrap_or(config::MAX_SHARDS);
    let mut c = config::ScalingConfig::new(min, max);
    c.auto = self.auto.unwrap_or(false);
    let policy_given = self.window_ms.is_some()
      || self.scale_up_fill_ratio.is_some()
      || self.scale_down_fill_ratio.is_some()
      || self.up_windows.is_some()
      || self.down_windows.is_some()
      || self.cooldown_ms.is_some()
      || self.max_step.is_some();
    if policy_given && !c.auto {
      return Err(BusError::config(
        "scaling: the policy options (windowMs, scaleUpFillRatio, scaleDownFillRatio, upWindows, downWindows, cooldownMs, maxStep) only apply with auto: true",
      ));
    }
    c.window = ms_or(self.window_ms, c.window);
    c.scale_up_fill = self.scale_up_fill_ratio.unwrap_or(c.scale_up_fill);
    c.scale_down_fill = self.scale_down_fill_ratio.unwrap_or(c.scale_down_fill);
    c.up_windows = self.up_windows.unwrap_or(c.up_windows);
    c.down_windows = self.down_windows.unwrap_or(c.down_windows);
    c.cooldown = ms_or(self.cooldown_ms, c.cooldown);
    c.max_step = self.max_step.unwrap_or(c.max_step);
    Ok(c)
  }
}

/// Options of `new EventBus()` and `EventBus.create()`. Unknown keys are rejected.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventBusOptions {
  /// Number of shards, each with its own ring and dispatcher (1–1024). Default: 4.
  pub shards: Option<u32>,
  /// Events each shard's ring holds before backpressure applies (16–16777216). Default: 65536.
  pub ring_capacity: Option<u32>,
  /// Payload and key bytes each shard's ring holds before backpressure applies
  /// (1024–4294967295); a lone event always fits. With `batch.maxBytes` for the write in
  /// flight, it bounds the events a shard holds in memory. Default: 67108864 (64 MiB).
  pub ring_max_bytes: Option<u32>,
  /// What `ingest` does when a ring is full. Default: `'reject'`.
  pub backpressure: Option<BackpressureMode>,
  /// Largest accepted event payload in bytes (16–67108864). Default: 1048576 (1 MiB).
  pub max_event_bytes: Option<u32>,
  /// Batching of adapter writes.
  pub batch: Option<BatchOptions>,
  /// Time limit of one adapter write, in ms (1–600000). Default: 5000.
  pub adapter_timeout_ms: Option<u32>,
  /// Retries of a failed write before its events count as dropped (0–100), with
  /// exponential backoff and jitter. Default: 5.
  pub retries: Option<u32>,
  /// File that keeps this producer's nonce and a generation counter across restarts, so
  /// message ids are never reused. Locked while the bus runs. Default: none (a random
  /// nonce per bus).
  pub producer_nonce_path: Option<String>,
  /// Bound on `shutdown()`'s drain, in ms (1–600000); what is still undelivered then is
  /// counted in `droppedShutdown`. Default: 10000.
  pub shutdown_timeout_ms: Option<u32>,
  /// The backend. Default: `{ type: 'memory' }`.
  #[napi(ts_type = "AdapterOptions")]
  pub adapter: Option<serde_json::Value>,
  /// Bounds for `scaleUp`/`scaleDown` and the optional policy. Default: manual scaling
  /// between 1 and 1024 shards, no policy.
  pub scaling: Option<ScalingOptions>,
  /// Spans, metrics and trace propagation through `@opentelemetry/api` (see
  /// `TelemetryOptions`); `false` turns them off even when a global provider is registered.
  /// Default: the global providers registered when the bus is created, no propagation.
  #[napi(ts_type = "TelemetryOptions | boolean")]
  pub telemetry: Option<serde_json::Value>,
}

// Declares the typings only: the hot path in `napi/ingest/` reads both properties itself.
/// Options of `ingest` and `ingestBatch`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[allow(dead_code)]
pub struct IngestOptions {
  /// Partition key: events with the same key go to the same shard, in order. Without a
  /// key, the payload's hash picks the shard.
  pub key: Option<String>,
  /// `ingestBatch` only: one key per event (same length as the events array).
  pub keys: Option<Vec<String>>,
  /// A small string map stored with the event and returned on read as `ev.headers`, e.g.
  /// W3C `traceparent` and `tracestate`. At most 16; names 1-64 of `A-Z a-z 0-9 - _ .`,
  /// not starting with `Rb-` or `Nats-`; values without line breaks; names and values
  /// together at most 4096 bytes. `ingestBatch` gives them to every event. Default: none.
  pub headers: Option<std::collections::HashMap<String, String>>,
}

/// Parses JSON text of a user's option object into `T`, naming the offending key.
pub fn parse_json<T: DeserializeOwned>(json: &str, what: &str, code: Code) -> Result<T> {
  crate::config::parse_at(&mut serde_json::Deserializer::from_str(json), what, code)
}

impl EventBusOptions {
  /// The bus's settings and its adapter's, both validated.
  pub fn into_config(self) -> Result<(BusConfig, AdapterConfig)> {
    if let Some(t) = &self.telemetry {
      telemetry::check(t)?;
    }
    let d = BusConfig::default();
    let batch = match self.batch {
      Some(b) => BatchConfig {
        max_events: b.max_events.map_or(d.batch.max_events, |v| v as usize),
        max_bytes: b.max_bytes.map_or(d.batch.max_bytes, |v| v as usize),
        max_delay: b.max_delay_ms.map(|v| Duration::from_millis(v as u64)),
      },
      None => d.batch.clone(),
    };
    let adapter = match self.adapter {
      None => AdapterConfig::default(),
      Some(v) => AdapterConfig::from_options(v, "options.adapter")?,
    };
    let shards = self.shards.unwrap_or(d.shards);
    let scaling = match self.scaling {
      Some(s) => Some(s.into_config()?),
      None => None,
    };
    let cfg = BusConfig {
      shards,
      ring_capacity: self.ring_capacity.map_or(d.ring_capacity, |v| v as usize),
      ring_max_bytes: self.ring_max_bytes.map_or(d.ring_max_bytes, |v| v as usize),
      backpressure: match self.backpressure {
        None => d.backpressure,
        Some(BackpressureMode::Reject) => config::Backpressure::Reject,
        Some(BackpressureMode::DropOldest) => config::Backpressure::DropOldest,
        Some(BackpressureMode::DropNewest) => config::Backpressure::DropNewest,
      },
      max_event_bytes: self
        .max_event_bytes
        .map_or(d.max_event_bytes, |v| v as usize),
      batch,
      adapter_timeout: ms_or(self.adapter_timeout_ms, d.adapter_timeout),
      retries: self.retries.unwrap_or(d.retries),
      producer_nonce_path: self.producer_nonce_path.map(Into::into),
      shutdown_timeout: ms_or(self.shutdown_timeout_ms, d.shutdown_timeout),
      scaling,
    };
    cfg.validate()?;
    adapter.validate(&cfg)?;
    Ok((cfg, adapter))
  }
}
