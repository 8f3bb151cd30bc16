//! The typings of the `adapter` option: one variant per backend. Each backend parses its
//! own options (`adapter::AdapterConfig::from_options`, the `*Options` of each backend's
//! `config.rs`); `__test__/adapter-options.test.ts` checks that both name the same keys.

use super::*;

// Declares the typings only: the engine parses the option.
/// Where events are stored.
#[allow(clippy::large_enum_variant, dead_code)]
#[napi(discriminant = "type", discriminant_case = "lowercase")]
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
    /// Create the stream when it is missing and check that its settings match these
    /// options. `false`: use an existing stream as it is, whatever its settings (missing:
    /// `ERR_INVALID_CONFIG`); what the `ringbus` command does. Default: true.
    create: Option<bool>,
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
#[allow(dead_code)]
pub enum StorageMode {
  #[napi(value = "file")]
  File,
  #[napi(value = "memory")]
  Memory,
}

/// TLS settings. Omit the files to verify the server against the system's roots.
#[napi(object)]
pub struct TlsOptions {
  /// PEM file of the certificate authorities that sign the server's certificate.
  pub ca_file: Option<String>,
  /// PEM client certificate (with `keyFile`) for mutual TLS.
  pub cert_file: Option<String>,
  /// PEM private key of `certFile`.
  pub key_file: Option<String>,
}
