//! Option objects: typed for `index.d.ts`, parsed strictly (unknown keys are errors) and
//! validated into the engine's configuration.

use std::time::Duration;

use napi_derive::napi;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::adapter::jetstream::{JetStreamConfig, NatsAuth, NatsCredentials, StorageKind};
use crate::adapter::redis::{RedisConfig, RedisTarget, Secret};
use crate::adapter::tls::TlsConfig;
use crate::adapter::{memory, AdapterConfig};
use crate::config::{self, BatchConfig, BusConfig};
use crate::consume::filter::Filter;
use crate::error::{without_echoed_value, BusError, Code, Result};
use crate::group::worker::WorkerOptions as EngineWorkerOptions;
use crate::group::GroupOptions;

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

/// Where events are stored.
// Parsed once per bus; the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
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
  /// NATS JetStream: one stream (created if missing), one subject per shard:
  /// `<stream>.<shardId>`. Needs `EventBus.create()`.
  Jetstream {
    /// Server URL, or several for a cluster, e.g. `'nats://127.0.0.1:4222'`.
    #[napi(ts_type = "string | string[]")]
    servers: serde_json::Value,
    /// Stream name: 1-64 letters, digits, `-` or `_`. An existing stream must have the
    /// same configuration as these options, or `create()` fails with `ERR_INVALID_CONFIG`.
    stream: String,
    /// User name, with `password`.
    user: Option<String>,
    password: Option<String>,
    /// Authentication token.
    token: Option<String>,
    /// Path of a `.creds` file (JWT and nkey seed).
    creds_file: Option<String>,
    /// Nkey seed (`SU…`).
    nkey: Option<String>,
    /// TLS; present means required.
    tls: Option<TlsOptions>,
    /// Stream replicas in a cluster (1–5). Default: 1.
    replicas: Option<u32>,
    /// Stream storage. Default: `'file'`.
    storage: Option<StorageMode>,
    /// Discard messages older than this. Default: unlimited.
    max_age_ms: Option<f64>,
    /// Stream size limit in bytes; the oldest messages are discarded. Default: unlimited.
    max_bytes: Option<f64>,
    /// Stream message limit; the oldest are discarded. Default: unlimited.
    max_messages: Option<f64>,
    /// How long the server remembers message ids to drop duplicates of retried
    /// publishes. Default: 120000 (2 min).
    duplicate_window_ms: Option<u32>,
    /// Limit on connecting at `create()`. Default: 5000.
    connect_timeout_ms: Option<u32>,
    /// Limit on each JetStream request and publish acknowledgement. Default: 5000.
    request_timeout_ms: Option<u32>,
    /// Unacknowledged publishes per shard at any time (1–65536). Default: 1024.
    max_in_flight: Option<u32>,
  },
  /// Redis Streams: one stream per shard, key `{<keyPrefix>:<shardId>}`. Writes are
  /// idempotent (a retried event is stored once). Works with Redis Cluster. Needs
  /// `EventBus.create()`.
  Redis {
    /// One server: `redis://[user:password@]host:port[/db]`, or `rediss://…` for TLS.
    /// Give `url` or `nodes`.
    url: Option<String>,
    /// Seed nodes of a Redis Cluster, e.g. `['redis://127.0.0.1:7000']`.
    nodes: Option<Vec<String>>,
    /// ACL user name. Default: the one in the URL, else `default`.
    username: Option<String>,
    /// Password. Default: the one in the URL, else none.
    password: Option<String>,
    /// Certificate files for `rediss://` URLs. Default: the system's roots.
    tls: Option<TlsOptions>,
    /// First part of every key: 1-128 bytes without braces, spaces or control characters.
    /// Default: `'ringbus'`.
    key_prefix: Option<String>,
    /// Each shard's stream is trimmed to about this many entries (`MAXLEN ~`).
    /// Default: no trimming.
    max_len: Option<f64>,
    /// Limit on connecting at `create()`. Default: 5000.
    connect_timeout_ms: Option<u32>,
    /// Limit on each command (a write pipeline, a page read, PING). Default: 5000.
    command_timeout_ms: Option<u32>,
    /// Events per write command; a batch goes out as one pipeline of these (1–10000).
    /// Default: 256.
    pipeline_size: Option<u32>,
    /// How long Redis remembers what this producer stored on each shard, so a retried
    /// write is not stored twice. Must exceed the time retries can take,
    /// `(adapterTimeoutMs + 5000) × (retries + 1)`. Default: 3600000 (1 h).
    dedup_window_ms: Option<u32>,
  },
}

/// Stream storage of the JetStream adapter.
#[napi(string_enum)]
#[derive(Debug, Deserialize)]
pub enum StorageMode {
  #[napi(value = "file")]
  #[serde(rename = "file")]
  File,
  #[napi(value = "memory")]
  #[serde(rename = "memory")]
  Memory,
}

/// TLS settings. Omit the files to verify the server against the system's roots.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsOptions {
  /// PEM file of the certificate authorities that sign the server's certificate.
  pub ca_file: Option<String>,
  /// PEM client certificate (with `keyFile`) for mutual TLS.
  pub cert_file: Option<String>,
  /// PEM private key of `certFile`.
  pub key_file: Option<String>,
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
    c.window = ms(self.window_ms, c.window);
    c.scale_up_fill = self.scale_up_fill_ratio.unwrap_or(c.scale_up_fill);
    c.scale_down_fill = self.scale_down_fill_ratio.unwrap_or(c.scale_down_fill);
    c.up_windows = self.up_windows.unwrap_or(c.up_windows);
    c.down_windows = self.down_windows.unwrap_or(c.down_windows);
    c.cooldown = ms(self.cooldown_ms, c.cooldown);
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
  pub adapter: Option<AdapterOptions>,
  /// Bounds for `scaleUp`/`scaleDown` and the optional policy. Default: manual scaling
  /// between 1 and 1024 shards, no policy.
  pub scaling: Option<ScalingOptions>,
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
  let de = &mut serde_json::Deserializer::from_str(json);
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

fn whole(key: &str, v: Option<f64>) -> Result<Option<i64>> {
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

fn jetstream_config(opts: AdapterOptions) -> Result<JetStreamConfig> {
  let AdapterOptions::Jetstream {
    servers,
    stream,
    user,
    password,
    token,
    creds_file,
    nkey,
    tls,
    replicas,
    storage,
    max_age_ms,
    max_bytes,
    max_messages,
    duplicate_window_ms,
    connect_timeout_ms,
    request_timeout_ms,
    max_in_flight,
  } = opts
  else {
    unreachable!("called for the jetstream variant only")
  };
  let servers = match servers {
    serde_json::Value::String(s) => vec![s],
    serde_json::Value::Array(items) => items
      .into_iter()
      .map(|v| match v {
        serde_json::Value::String(s) => Ok(s),
        _ => Err(BusError::config(
          "adapter.servers must be a URL string or an array of URL strings",
        )),
      })
      .collect::<Result<Vec<_>>>()?,
    _ => {
      return Err(BusError::config(
        "adapter.servers must be a URL string or an array of URL strings",
      ))
    }
  };
  let auth = NatsAuth::from_credentials(NatsCredentials {
    user,
    password,
    token,
    creds_file: creds_file.map(Into::into),
    nkey,
  })?;
  let mut c = JetStreamConfig::new(servers, stream);
  c.auth = auth;
  c.tls = tls.map(tls_config);
  if let Some(r) = replicas {
    c.replicas = r as usize;
  }
  if let Some(StorageMode::Memory) = storage {
    c.storage = StorageKind::Memory;
  }
  c.max_age = whole("adapter.maxAgeMs", max_age_ms)?.map(|v| Duration::from_millis(v as u64));
  c.max_bytes = whole("adapter.maxBytes", max_bytes)?;
  c.max_messages = whole("adapter.maxMessages", max_messages)?;
  c.duplicate_window = ms(duplicate_window_ms, c.duplicate_window);
  c.connect_timeout = ms(connect_timeout_ms, c.connect_timeout);
  c.request_timeout = ms(request_timeout_ms, c.request_timeout);
  if let Some(n) = max_in_flight {
    c.max_in_flight = n as usize;
  }
  Ok(c)
}

fn redis_config(opts: AdapterOptions) -> Result<RedisConfig> {
  let AdapterOptions::Redis {
    url,
    nodes,
    username,
    password,
    tls,
    key_prefix,
    max_len,
    connect_timeout_ms,
    command_timeout_ms,
    pipeline_size,
    dedup_window_ms,
  } = opts
  else {
    unreachable!("called for the redis variant only")
  };
  let target = match (url, nodes) {
    (Some(url), None) => RedisTarget::Url(url),
    (None, Some(nodes)) => RedisTarget::Cluster(nodes),
    _ => {
      return Err(BusError::config(
        "adapter: give either url (one Redis server) or nodes (a Redis Cluster)",
      ))
    }
  };
  let mut c = RedisConfig::new(target);
  c.username = username;
  c.password = password.map(Secret);
  c.tls = tls.map(tls_config);
  if let Some(p) = key_prefix {
    c.key_prefix = p;
  }
  c.max_len = whole("adapter.maxLen", max_len)?.map(|v| v as u64);
  c.connect_timeout = ms(connect_timeout_ms, c.connect_timeout);
  c.command_timeout = ms(command_timeout_ms, c.command_timeout);
  if let Some(n) = pipeline_size {
    c.pipeline_size = n as usize;
  }
  c.dedup_window = ms(dedup_window_ms, c.dedup_window);
  Ok(c)
}

fn tls_config(t: TlsOptions) -> TlsConfig {
  TlsConfig {
    ca_file: t.ca_file.map(Into::into),
    cert_file: t.cert_file.map(Into::into),
    key_file: t.key_file.map(Into::into),
  }
}

fn ms(v: Option<u32>, default: Duration) -> Duration {
  v.map(|v| Duration::from_millis(v as u64))
    .unwrap_or(default)
}

impl EventBusOptions {
  /// The bus's settings and its adapter's, both validated.
  pub fn into_config(self) -> Result<(BusConfig, AdapterConfig)> {
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
      Some(AdapterOptions::Memory {
        max_events,
        max_bytes,
      }) => AdapterConfig::Memory {
        max_events: max_events.map_or(memory::DEFAULT_MAX_EVENTS, |v| v as usize),
        max_bytes: max_bytes.map_or(memory::DEFAULT_MAX_BYTES, |v| v as usize),
      },
      Some(AdapterOptions::Noop {}) => AdapterConfig::Noop,
      Some(js @ AdapterOptions::Jetstream { .. }) => {
        AdapterConfig::JetStream(Box::new(jetstream_config(js)?))
      }
      Some(r @ AdapterOptions::Redis { .. }) => AdapterConfig::Redis(Box::new(redis_config(r)?)),
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
      adapter_timeout: ms(self.adapter_timeout_ms, d.adapter_timeout),
      retries: self.retries.unwrap_or(d.retries),
      producer_nonce_path: self.producer_nonce_path.map(Into::into),
      shutdown_timeout: ms(self.shutdown_timeout_ms, d.shutdown_timeout),
      scaling,
    };
    cfg.validate()?;
    adapter.validate(&cfg)?;
    Ok((cfg, adapter))
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
  /// `'shard'` (default): each shard gets a fair share of the page (on JetStream: the
  /// stream's own order). `'timestamp'`: merged across shards by timestamp. Both keep
  /// each producer's keys in ingest order, also across its scaling.
  #[napi(ts_type = "'shard' | 'timestamp'")]
  pub ordering: Option<String>,
  /// Only these shard ids (order across shards then holds within them only). Default: every
  /// shard the store holds events for.
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

/// Options of `bus.consumer()`: a member of a consumer group.
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConsumerOptions {
  /// Required. The group's name: 1-64 of `A-Z a-z 0-9 _ -`. Members of one group share
  /// its events; each group gets every event.
  pub group: String,
  /// This member's name, unique among live members (same charset). Default: random.
  pub member: Option<String>,
  /// Only matching events are delivered; the others count as acked. Default: all.
  #[napi(ts_type = "Record<string, unknown>")]
  pub filter: Option<serde_json::Value>,
  /// Where a NEW group starts: `'earliest'` (default, every stored event) or `'latest'`
  /// (events stored after it is created). An existing group continues where it was.
  #[napi(ts_type = "'earliest' | 'latest'")]
  pub from: Option<String>,
  /// A delivered event not acked within this is delivered again (100 ms to 1 day).
  /// Default: 30000.
  pub ack_wait_ms: Option<u32>,
  /// After this many deliveries an event becomes a dead letter (1 to 1000000). Default: 5.
  pub max_deliveries: Option<u32>,
  /// Events this member holds unacked at most (1 to 100000). Default: 1000.
  pub max_in_flight: Option<u32>,
  /// How long this member's hold on its shards lasts without renewal (renewed every
  /// third of it): a crashed member's shards move within about this (1000 to 600000).
  /// Default: 10000.
  pub lease_ms: Option<u32>,
}

impl ConsumerOptions {
  pub fn into_group(self) -> Result<GroupOptions> {
    let mut g = GroupOptions::new(&self.group);
    if let Some(m) = self.member {
      g.member = m;
    }
    g.filter = self.filter.as_ref().map(Filter::parse).transpose()?;
    g.from_latest = crate::group::parse_from(self.from.as_deref())?;
    g.ack_wait = ms(self.ack_wait_ms, g.ack_wait);
    g.max_deliveries = self.max_deliveries.unwrap_or(g.max_deliveries);
    g.max_in_flight = self.max_in_flight.map_or(g.max_in_flight, |n| n as usize);
    g.lease = ms(self.lease_ms, g.lease);
    g.validate()?;
    Ok(g)
  }
}

/// Options of `bus.process()` beside those of a consumer (all but `group`).
#[napi(object)]
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkerOptions {
  /// Handlers running at once, across keys (1 to 10000); one at a time per key.
  /// Default: 16.
  pub concurrency: Option<u32>,
  /// Wait before a failed event's first retry; doubles with each further retry, up to
  /// 30 s (0 to 3600000). Default: 100.
  pub backoff_ms: Option<u32>,
}

/// Splits `process()` options into the worker's and the member's (`group` given apart).
pub fn process_options(
  json: Option<&str>,
  group: &str,
) -> Result<(GroupOptions, EngineWorkerOptions)> {
  let mut map = match json {
    Some(j) => match serde_json::from_str::<serde_json::Value>(j) {
      Ok(serde_json::Value::Object(m)) => m,
      _ => return Err(BusError::config("process options must be an object")),
    },
    None => serde_json::Map::new(),
  };
  if map.contains_key("group") {
    return Err(BusError::config(
      "process options.group: give the group as process()'s first argument",
    ));
  }
  let mut own = serde_json::Map::new();
  for k in ["concurrency", "backoffMs"] {
    if let Some(v) = map.remove(k) {
      own.insert(k.to_string(), v);
    }
  }
  map.insert("group".into(), serde_json::Value::String(group.to_string()));
  let text = serde_json::Value::Object(map).to_string();
  let member: ConsumerOptions = parse_json(&text, "process options", Code::InvalidConfig)?;
  let own_text = serde_json::Value::Object(own).to_string();
  let own: WorkerOptions = parse_json(&own_text, "process options", Code::InvalidConfig)?;
  let d = EngineWorkerOptions::default();
  let worker = EngineWorkerOptions {
    concurrency: own.concurrency.map_or(d.concurrency, |n| n as usize),
    backoff: ms(own.backoff_ms, d.backoff),
  };
  worker.validate()?;
  Ok((member.into_group()?, worker))
}

/// Options of `bus.deadLetters()`.
#[napi(object, object_to_js = false, object_from_js = false)]
#[derive(Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeadLettersOptions {
  /// Most letters in the page (1–10000). Default: 100.
  pub limit: Option<u32>,
  /// Where the previous page ended.
  pub cursor: Option<String>,
}
