//! The Redis adapter's configuration, its defaults and validation.

use std::time::Duration;

use serde::Deserialize;

use crate::adapter::tls::{TlsConfig, TlsOptions};
use crate::config::{check_ms, check_range, ms_or, whole_number};
use crate::error::{BusError, Result};
use crate::secrets::redact_url;

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

/// The `adapter` option of `type: 'redis'` as given. Its typings and documented defaults
/// are in `napi/options/adapter.rs`; `__test__/adapter-options.test.ts` checks that both
/// name the same keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RedisOptions {
  url: Option<String>,
  nodes: Option<Vec<String>>,
  username: Option<String>,
  password: Option<String>,
  tls: Option<TlsOptions>,
  key_prefix: Option<String>,
  max_len: Option<f64>,
  connect_timeout_ms: Option<u32>,
  command_timeout_ms: Option<u32>,
  pipeline_size: Option<u32>,
  dedup_window_ms: Option<u32>,
}

impl RedisOptions {
  /// The configuration these options give, defaults filled in (validated later, with the
  /// bus's settings).
  pub fn into_config(self) -> Result<RedisConfig> {
    let target = match (self.url, self.nodes) {
      (Some(url), None) => RedisTarget::Url(url),
      (None, Some(nodes)) => RedisTarget::Cluster(nodes),
      _ => {
        return Err(BusError::config(
          "adapter: give either url (one Redis server) or nodes (a Redis Cluster)",
        ))
      }
    };
    let mut c = RedisConfig::new(target);
    c.username = self.username;
    c.password = self.password.map(Secret);
    c.tls = self.tls.map(Into::into);
    if let Some(p) = self.key_prefix {
      c.key_prefix = p;
    }
    c.max_len = whole_number("adapter.maxLen", self.max_len)?.map(|v| v as u64);
    c.connect_timeout = ms_or(self.connect_timeout_ms, c.connect_timeout);
    c.command_timeout = ms_or(self.command_timeout_ms, c.command_timeout);
    if let Some(n) = self.pipeline_size {
      c.pipeline_size = n as usize;
    }
    c.dedup_window = ms_or(self.dedup_window_ms, c.dedup_window);
    Ok(c)
  }
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

  /// The server URLs, one or the cluster's seeds.
  pub fn urls(&self) -> Vec<&String> {
    match &self.target {
      RedisTarget::Url(u) => vec![u],
      RedisTarget::Cluster(nodes) => nodes.iter().collect(),
    }
  }

  pub fn validate(&self) -> Result<()> {
    if matches!(&self.target, RedisTarget::Cluster(nodes) if nodes.is_empty()) {
      return Err(BusError::config(
        "adapter.nodes must list at least one cluster node, e.g. ['redis://127.0.0.1:7000']",
      ));
    }
    for u in self.urls() {
      if !(u.starts_with("redis://") || u.starts_with("rediss://")) {
        return Err(BusError::config(format!(
          "adapter: {:?} is not a Redis URL; use redis://host:port or rediss://host:port",
          redact_url(u)
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
        "adapter.keyPrefix {:?} is not usable: give 1-128 bytes without braces, spaces or control characters",
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

  /// A retry that comes after the dedup window expired would be stored twice, so the window
  /// must outlast `span`, the longest a write can keep retrying (`retry::max_span`).
  pub fn check_retry_span(&self, span: Duration, stated: &str) -> Result<()> {
    if self.dedup_window <= span {
      return Err(BusError::config(format!(
        "adapter.dedupWindowMs ({} ms) must exceed the time retries can take ({} ms = {stated}); raise it or lower retries",
        self.dedup_window.as_millis(),
        span.as_millis()
      )));
    }
    Ok(())
  }
}
