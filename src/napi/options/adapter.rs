//! The `adapter` option: one variant per backend, and their conversion into each
//! backend's configuration.

use super::*;

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

pub(super) fn jetstream_config(opts: AdapterOptions) -> Result<JetStreamConfig> {
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

pub(super) fn redis_config(opts: AdapterOptions) -> Result<RedisConfig> {
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
