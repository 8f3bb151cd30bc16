//! Engine configuration, its defaults and validation.
//!
//! Key names in error messages use the JS option spelling, because these messages reach users.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::{BusError, Result};

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
  pub max_delay: Duration,
}

impl Default for BatchConfig {
  fn default() -> Self {
    BatchConfig {
      max_events: 1024,
      max_bytes: 1 << 20,
      max_delay: Duration::from_millis(2),
    }
  }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdapterConfig {
  /// Embedded store with retention bounded by events and payload bytes (all shards together).
  Memory { max_events: usize, max_bytes: usize },
  /// Accepts and discards every event.
  Noop,
  /// NATS JetStream: one stream, one subject per shard.
  JetStream(Box<JetStreamConfig>),
  /// Redis Streams: one stream per shard.
  Redis(Box<RedisConfig>),
}

impl AdapterConfig {
  /// Whether the adapter connects to a server (and so needs `EventBus.create`).
  pub fn is_network(&self) -> bool {
    matches!(self, AdapterConfig::JetStream(_) | AdapterConfig::Redis(_))
  }
}

/// Credentials for NATS. Never printed: `Debug` hides the secrets.
#[derive(Clone, PartialEq, Eq, Default)]
pub enum NatsAuth {
  #[default]
  None,
  UserPassword {
    user: String,
    password: String,
  },
  Token(String),
  CredsFile(PathBuf),
  NkeySeed(String),
}

impl std::fmt::Debug for NatsAuth {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    match self {
      NatsAuth::None => f.write_str("None"),
      NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword({user}, ***)"),
      NatsAuth::Token(_) => f.write_str("Token(***)"),
      NatsAuth::CredsFile(p) => write!(f, "CredsFile({})", p.display()),
      NatsAuth::NkeySeed(_) => f.write_str("NkeySeed(***)"),
    }
  }
}

/// TLS for a network adapter. `required` without files uses the system roots.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
  pub ca_file: Option<PathBuf>,
  pub cert_file: Option<PathBuf>,
  pub key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
  File,
  Memory,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JetStreamConfig {
  pub servers: Vec<String>,
  pub stream: String,
  pub auth: NatsAuth,
  pub tls: Option<TlsConfig>,
  pub replicas: usize,
  pub storage: StorageKind,
  pub max_age: Option<Duration>,
  pub max_bytes: Option<i64>,
  pub max_messages: Option<i64>,
  pub duplicate_window: Duration,
  pub connect_timeout: Duration,
  pub request_timeout: Duration,
  pub max_in_flight: usize,
}

impl JetStreamConfig {
  pub fn new(servers: Vec<String>, stream: impl Into<String>) -> Self {
    JetStreamConfig {
      servers,
      stream: stream.into(),
      auth: NatsAuth::None,
      tls: None,
      replicas: 1,
      storage: StorageKind::File,
      max_age: None,
      max_bytes: None,
      max_messages: None,
      duplicate_window: Duration::from_secs(120),
      connect_timeout: Duration::from_secs(5),
      request_timeout: Duration::from_secs(5),
      max_in_flight: 1024,
    }
  }

  pub fn validate(&self) -> Result<()> {
    if self.servers.is_empty() {
      return Err(BusError::config(
        "adapter.servers must name at least one server, e.g. 'nats://127.0.0.1:4222'",
      ));
    }
    for s in &self.servers {
      if s.trim().is_empty() {
        return Err(BusError::config(
          "adapter.servers contains an empty address",
        ));
      }
    }
    let valid_name = !self.stream.is_empty()
      && self.stream.len() <= 64
      && self
        .stream
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if !valid_name {
      return Err(BusError::config(format!(
        "adapter.stream {:?} is not a valid stream name: use 1-64 letters, digits, '-' or '_'",
        self.stream
      )));
    }
    check_range("adapter.replicas", self.replicas as u64, 1, 5)?;
    check_range("adapter.maxInFlight", self.max_in_flight as u64, 1, 65_536)?;
    check_ms("adapter.connectTimeoutMs", self.connect_timeout, 1, 600_000)?;
    check_ms("adapter.requestTimeoutMs", self.request_timeout, 1, 600_000)?;
    check_ms(
      "adapter.duplicateWindowMs",
      self.duplicate_window,
      100,
      7 * 24 * 3_600_000,
    )?;
    if let Some(age) = self.max_age {
      if age < self.duplicate_window {
        return Err(BusError::config(
          "adapter.maxAgeMs must be at least adapter.duplicateWindowMs (NATS requires it)",
        ));
      }
    }
    if let NatsAuth::UserPassword { user, .. } = &self.auth {
      if user.is_empty() {
        return Err(BusError::config(
          "adapter.user must not be empty when adapter.password is set",
        ));
      }
    }
    Ok(())
  }
}

/// Where the Redis adapter connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
  /// One server: `redis://` or `rediss://` URL (user, password and db may be in it).
  Url(String),
  /// Seed nodes of a Redis Cluster.
  Cluster(Vec<String>),
}

/// A password: kept out of `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
  fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
    f.write_str("***")
  }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
  pub target: RedisTarget,
  pub username: Option<String>,
  pub password: Option<Secret>,
  pub tls: Option<TlsConfig>,
  pub key_prefix: String,
  /// Approximate length each shard's stream is trimmed to (`MAXLEN ~`).
  pub max_len: Option<u64>,
  pub connect_timeout: Duration,
  pub command_timeout: Duration,
  /// Events per write command (one script call); a batch is sent as a pipeline of these.
  pub pipeline_size: usize,
  /// How long the server keeps a producer's per-shard high-water mark after its last write.
  pub dedup_window: Duration,
}

impl RedisConfig {
  pub fn new(target: RedisTarget) -> Self {
    RedisConfig {
      target,
      username: None,
      password: None,
      tls: None,
      key_prefix: "ringbus".into(),
      max_len: None,
      connect_timeout: Duration::from_secs(5),
      command_timeout: Duration::from_secs(5),
      pipeline_size: 256,
      dedup_window: Duration::from_secs(3600),
    }
  }

  pub fn validate(&self) -> Result<()> {
    let urls: Vec<&String> = match &self.target {
      RedisTarget::Url(u) => vec![u],
      RedisTarget::Cluster(nodes) if nodes.is_empty() => {
        return Err(BusError::config(
          "adapter.nodes must list at least one cluster node, e.g. ['redis://127.0.0.1:7000']",
        ))
      }
      RedisTarget::Cluster(nodes) => nodes.iter().collect(),
    };
    for u in urls {
      if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
        return Err(BusError::config(format!(
          "adapter: {:?} is not a Redis URL; use redis://host:port or rediss://host:port",
          crate::adapter::secrets::redact_url(u)
        )));
      }
      if self.tls.is_some() && !u.starts_with("rediss://") {
        return Err(BusError::config(
          "adapter.tls is set but a URL uses redis://; use rediss:// URLs for TLS",
        ));
      }
    }
    // Braces would change the hash tag that keeps a shard's keys in one cluster slot.
    let valid_prefix = !self.key_prefix.is_empty()
      && self.key_prefix.len() <= 128
      && !self
        .key_prefix
        .chars()
        .any(|c| c == '{' || c == '}' || c.is_whitespace() || c.is_control());
    if !valid_prefix {
      return Err(BusError::config(format!(
        "adapter.keyPrefix {:?} is not usable: give 1-128 characters without braces or spaces",
        self.key_prefix
      )));
    }
    if let Some(n) = self.max_len {
      check_range("adapter.maxLen", n, 1, 1 << 53)?;
    }
    check_ms("adapter.connectTimeoutMs", self.connect_timeout, 1, 600_000)?;
    check_ms("adapter.commandTimeoutMs", self.command_timeout, 1, 600_000)?;
    check_range("adapter.pipelineSize", self.pipeline_size as u64, 1, 10_000)?;
    check_ms(
      "adapter.dedupWindowMs",
      self.dedup_window,
      1_000,
      30 * 24 * 3_600_000,
    )?;
    if self.password.is_some() && self.username.as_deref() == Some("") {
      return Err(BusError::config(
        "adapter.username must not be empty; omit it to use the default user",
      ));
    }
    Ok(())
  }
}

pub const DEFAULT_MEMORY_MAX_EVENTS: usize = 1 << 20;
pub const DEFAULT_MEMORY_MAX_BYTES: usize = 256 << 20;

impl Default for AdapterConfig {
  fn default() -> Self {
    AdapterConfig::Memory {
      max_events: DEFAULT_MEMORY_MAX_EVENTS,
      max_bytes: DEFAULT_MEMORY_MAX_BYTES,
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
  pub backpressure: Backpressure,
  pub max_event_bytes: usize,
  pub batch: BatchConfig,
  pub adapter_timeout: Duration,
  pub retries: u32,
  pub producer_nonce_path: Option<PathBuf>,
  pub shutdown_timeout: Duration,
  pub adapter: AdapterConfig,
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
      backpressure: Backpressure::Reject,
      max_event_bytes: 1 << 20,
      batch: BatchConfig::default(),
      adapter_timeout: Duration::from_secs(5),
      retries: 5,
      producer_nonce_path: None,
      shutdown_timeout: Duration::from_secs(10),
      adapter: AdapterConfig::default(),
      scaling: None,
    }
  }
}

fn check_ms(key: &str, value: Duration, min: u64, max: u64) -> Result<()> {
  check_range(key, value.as_millis() as u64, min, max)
}

fn check_range(key: &str, value: u64, min: u64, max: u64) -> Result<()> {
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
    check_ms("batch.maxDelayMs", self.batch.max_delay, 0, 60_000)?;
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
    if let AdapterConfig::Memory {
      max_events,
      max_bytes,
    } = &self.adapter
    {
      check_range("adapter.maxEvents", *max_events as u64, 1, 1 << 32)?;
      check_range("adapter.maxBytes", *max_bytes as u64, 1024, 1 << 40)?;
    }
    if let AdapterConfig::JetStream(js) = &self.adapter {
      js.validate()?;
    }
    if let AdapterConfig::Redis(redis) = &self.adapter {
      redis.validate()?;
      // A retry skipped by the dedup window's expiry would be stored twice.
      let retry_span = (self.adapter_timeout + crate::dispatch::MAX_BACKOFF) * (self.retries + 1);
      if redis.dedup_window <= retry_span {
        return Err(BusError::config(format!(
          "adapter.dedupWindowMs ({} ms) must exceed the time retries can take ({} ms = (adapterTimeoutMs + 5000) x (retries + 1)); raise it or lower retries",
          redis.dedup_window.as_millis(),
          retry_span.as_millis()
        )));
      }
    }
    Ok(())
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn defaults_are_valid() {
    BusConfig::default().validate().unwrap();
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
