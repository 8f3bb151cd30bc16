//! Option objects: typed for `index.d.ts`, parsed strictly (unknown keys are errors) and
//! validated into the engine's configuration.

use std::time::Duration;

use napi_derive::napi;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::config::{self, AdapterConfig, BatchConfig, BusConfig};
use crate::error::{BusError, Code, Result};

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
  /// Longest a partial batch waits for more events, in ms (0–60000). A full batch, a
  /// backlog or `flush()` sends at once. Default: 2.
  pub max_delay_ms: Option<u32>,
}

/// Where events are stored.
#[napi(discriminant = "type", discriminant_case = "lowercase")]
#[derive(Debug, Deserialize)]
#[serde(
  tag = "type",
  rename_all = "lowercase",
  rename_all_fields = "camelCase",
  deny_unknown_fields
)]
pub enum AdapterOptions {
  /// The embedded store (default): pollable, wakes subscribers, bounded retention.
  Memory {
    /// Events kept across all shards; the oldest are evicted first. Default: 1048576.
    max_events: Option<u32>,
    /// Payload bytes kept across all shards. Default: 268435456 (256 MiB).
    max_bytes: Option<u32>,
  },
  /// Accepts and discards every event (for measuring the bus itself).
  Noop {},
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
  pub adapter: Option<AdapterOptions>,
}

/// Options of `ingest` and `ingestBatch`.
#[napi(object)]
pub struct IngestOptions {
  /// Partition key: events with the same key go to the same shard, in order. Without a
  /// key, the payload's hash picks the shard.
  pub key: Option<String>,
  /// `ingestBatch` only: one key per event (same length as the events array).
  pub keys: Option<Vec<String>>,
}

/// Parses JSON text of a user's option object into `T`, naming the offending key.
pub fn parse_json<T: DeserializeOwned>(json: &str, what: &str, code: Code) -> Result<T> {
  let de = &mut serde_json::Deserializer::from_str(json);
  serde_path_to_error::deserialize(de).map_err(|e| {
    let path = e.path().to_string();
    let inner = e.into_inner().to_string();
    let inner = inner
      .split(" at line ")
      .next()
      .unwrap_or(&inner)
      .to_string();
    let at = if path == "." {
      what.to_string()
    } else {
      format!("{what}.{path}")
    };
    BusError::new(code, format!("{at}: {inner}"))
  })
}

fn ms(v: Option<u32>, default: Duration) -> Duration {
  v.map(|v| Duration::from_millis(v as u64))
    .unwrap_or(default)
}

impl EventBusOptions {
  pub fn into_config(self) -> Result<BusConfig> {
    let d = BusConfig::default();
    let batch = match self.batch {
      Some(b) => BatchConfig {
        max_events: b.max_events.map_or(d.batch.max_events, |v| v as usize),
        max_bytes: b.max_bytes.map_or(d.batch.max_bytes, |v| v as usize),
        max_delay: ms(b.max_delay_ms, d.batch.max_delay),
      },
      None => d.batch.clone(),
    };
    let adapter = match self.adapter {
      None => d.adapter.clone(),
      Some(AdapterOptions::Memory {
        max_events,
        max_bytes,
      }) => AdapterConfig::Memory {
        max_events: max_events.map_or(config::DEFAULT_MEMORY_MAX_EVENTS, |v| v as usize),
        max_bytes: max_bytes.map_or(config::DEFAULT_MEMORY_MAX_BYTES, |v| v as usize),
      },
      Some(AdapterOptions::Noop {}) => AdapterConfig::Noop,
    };
    let cfg = BusConfig {
      shards: self.shards.unwrap_or(d.shards),
      ring_capacity: self.ring_capacity.map_or(d.ring_capacity, |v| v as usize),
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
      adapter_timeout: ms(self.adapter_timeout_ms, d.adapter_timeout),
      retries: self.retries.unwrap_or(d.retries),
      producer_nonce_path: self.producer_nonce_path.map(Into::into),
      shutdown_timeout: ms(self.shutdown_timeout_ms, d.shutdown_timeout),
      adapter,
    };
    cfg.validate()?;
    Ok(cfg)
  }
}

/// A page request for `poll()`.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PollRequest {
  /// Most events in the page (1–10000). Default: 100.
  pub limit: Option<u32>,
  /// Where the previous page ended; omit to start at the oldest stored event.
  pub cursor: Option<String>,
  /// Mongo-like filter on JSON events, e.g. `{ type: 'order', total: { $gt: 100 } }`.
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// `'shard'` (default): each shard gets a fair share of the page, in per-shard order.
  /// `'timestamp'`: merged across shards by timestamp.
  #[napi(ts_type = "'shard' | 'timestamp'")]
  pub ordering: Option<String>,
  /// Only these shard ids. Default: all shards.
  pub shards: Option<Vec<u32>>,
}

/// Options of `subscribe()`.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SubscribeOptions {
  /// Mongo-like filter on JSON events (see `poll`).
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// `'earliest'` (default), `'latest'` (events stored after iteration starts) or a cursor
  /// from `poll()`.
  pub from: Option<String>,
}
