//! NATS JetStream: one stream, one subject per shard (`<stream>.<shard>`).
//!
//! `stream.rs` creates or checks the stream, `write.rs` publishes (with `acks.rs` routing
//! the acknowledgements), `read.rs` reads pages and waits for new events, `decode.rs` holds
//! the record format. Event metadata travels in headers and the payload is the event
//! itself, so the stream reads naturally with the `nats` tools.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::connection::State as ConnState;
use async_nats::jetstream::{self, Context};
use async_nats::ConnectOptions;
use async_trait::async_trait;
use parking_lot::Mutex;

mod acks;
mod config;
mod decode;
pub use decode::record as decode_record;
mod groups;
mod letters;
mod read;
mod signals;
mod stream;
mod write;

use acks::AckRouter;
pub use config::{JetStreamConfig, JetStreamOptions, NatsAuth, NatsCredentials, StorageKind};
use read::Pool;
pub use stream::{all_shards_subject, shard_subject};

use super::{Adapter, AdapterError, Positions, ReadPage, ShardInfo, WriteBatch, WriteResult};
use crate::error::{BusError, Code};
use crate::secrets::{redact_url, scrub};

pub struct JetStreamAdapter {
  config: JetStreamConfig,
  client: async_nats::Client,
  js: Context,
  acks: AckRouter,
  pool: std::sync::Arc<Pool>,
  corrupt: AtomicU64,
  logged: Mutex<HashSet<u64>>,
  secrets: Vec<String>,
  /// The shards the stream holds messages for, as last read.
  shards_seen: super::Cached<Vec<u32>>,
  /// Until when reads go through the stream leader instead of consumers.
  fallback_until: Mutex<Option<std::time::Instant>>,
  /// The consumer-group bucket, opened on first use.
  /// The group bucket, once opened; emptied when it is found gone (see `kv_err`).
  groups_kv: arc_swap::ArcSwapOption<async_nats::jetstream::kv::Store>,
  groups_kv_open: tokio::sync::Mutex<()>,
  /// The stream's only subjects are the shards': a reader over every shard needs no
  /// filter (see `consumer_filter`).
  stream_is_shards: std::sync::atomic::AtomicBool,
}

fn connect_err(msg: String) -> BusError {
  BusError::new(Code::Connect, msg)
}

impl JetStreamAdapter {
  /// Connects, then creates the stream or checks that the existing one matches.
  pub async fn connect(config: JetStreamConfig) -> Result<Self, BusError> {
    config.validate()?;
    let secrets = config.secrets();
    // Before connecting: async-nats logs the server address it dials, credentials and all.
    crate::log::register_secrets(&secrets);
    let shown: Vec<String> = config.servers.iter().map(|s| redact_url(s)).collect();
    let pool: std::sync::Arc<Pool> = Default::default();
    let watched = std::sync::Arc::downgrade(&pool);
    let stream_name = config.stream.clone();
    // While disconnected, every failed reconnect attempt reports an error: the disconnect
    // is the `warn` line and those are `debug`, so an outage logs two lines, not hundreds.
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut opts = ConnectOptions::new()
      .name("ringbus")
      .event_callback(move |event| {
        let pool = watched.clone();
        let stream = stream_name.clone();
        let down = down.clone();
        async move {
          use async_nats::Event;
          use std::sync::atomic::Ordering::AcqRel;
          match &event {
            Event::Connected if down.swap(false, AcqRel) => {
              tracing::info!(stream = %stream, "reconnected to NATS")
            }
            Event::Connected => tracing::info!(stream = %stream, "connected to NATS"),
            Event::Disconnected => {
              down.store(true, std::sync::atomic::Ordering::Release);
              tracing::warn!(stream = %stream, "disconnected from NATS; reconnecting")
            }
            Event::Closed => tracing::info!(stream = %stream, "NATS connection closed"),
            // Part of every shutdown.
            Event::Draining => tracing::debug!(stream = %stream, "NATS connection draining"),
            Event::ClientError(_) if down.load(std::sync::atomic::Ordering::Acquire) => {
              tracing::debug!(stream = %stream, "NATS connection: {event}")
            }
            other => tracing::warn!(stream = %stream, "NATS connection: {other}"),
          }
          if let (Event::Connected, Some(pool)) = (event, pool.upgrade()) {
            pool.reconnected();
          }
        }
      })
      .connection_timeout(config.connect_timeout)
      .request_timeout(Some(config.request_timeout))
      // Reconnect forever after a successful start; the dispatcher's retries bound writes.
      .max_reconnects(None);
    opts = match &config.auth {
      NatsAuth::None => opts,
      NatsAuth::UserPassword { user, password } => {
        opts.user_and_password(user.clone(), password.clone())
      }
      NatsAuth::Token(t) => opts.token(t.clone()),
      NatsAuth::NkeySeed(seed) => opts.nkey(seed.clone()),
      NatsAuth::CredsFile(path) => opts.credentials_file(path).await.map_err(|e| {
        BusError::config(format!(
          "adapter.credsFile {} cannot be used ({e}); check the path and its contents",
          path.display()
        ))
      })?,
    };
    if let Some(tls) = &config.tls {
      opts = opts.require_tls(true);
      if let Some(ca) = &tls.ca_file {
        opts = opts.add_root_certificates(ca.clone());
      }
      match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => opts = opts.add_client_certificate(cert.clone(), key.clone()),
        (None, None) => {}
        _ => {
          return Err(BusError::config(
            "adapter.tls needs both certFile and keyFile for a client certificate",
          ))
        }
      }
    }
    let connect = opts.connect(config.servers.clone());
    let client = match tokio::time::timeout(config.connect_timeout, connect).await {
      Err(_) => {
        return Err(connect_err(format!(
          "could not connect to NATS at {} within connectTimeoutMs ({} ms); check that the server is running and reachable",
          shown.join(", "),
          config.connect_timeout.as_millis()
        )))
      }
      Ok(Err(e)) => {
        return Err(connect_err(scrub(
          &secrets,
          format!(
            "could not connect to NATS at {}: {e}; check the address, TLS settings and credentials",
            shown.join(", ")
          ),
        )))
      }
      Ok(Ok(c)) => c,
    };
    // Streams, consumers and reads; writes publish through `acks` instead.
    let js = jetstream::ContextBuilder::new()
      .timeout(config.request_timeout)
      .build(client.clone());
    let acks = AckRouter::start(&client).await.map_err(|e| {
      connect_err(scrub(
        &secrets,
        format!("could not subscribe to publish acknowledgements: {e}"),
      ))
    })?;
    let adapter = JetStreamAdapter {
      config,
      client,
      js,
      acks,
      pool,
      corrupt: AtomicU64::new(0),
      logged: Mutex::new(HashSet::new()),
      secrets,
      fallback_until: Mutex::new(None),
      shards_seen: Default::default(),
      groups_kv: Default::default(),
      groups_kv_open: Default::default(),
      stream_is_shards: Default::default(),
    };
    if let Err(e) = adapter.ensure_stream().await {
      let _ = tokio::time::timeout(Duration::from_secs(1), adapter.client.drain()).await;
      return Err(e);
    }
    Ok(adapter)
  }

  fn scrub(&self, msg: String) -> String {
    scrub(&self.secrets, msg)
  }

  fn adapter_error(&self, retryable: bool, msg: String) -> AdapterError {
    AdapterError {
      code: Code::Adapter,
      retryable,
      message: self.scrub(msg),
    }
  }
}

#[async_trait]
impl Adapter for JetStreamAdapter {
  fn kind(&self) -> &'static str {
    "jetstream"
  }

  fn groups(&self) -> Option<&dyn crate::adapter::group_store::GroupStore> {
    Some(self)
  }

  fn cursor_scope(&self) -> String {
    format!("jetstream:{}", self.config.stream)
  }

  async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    self.write_batch(batch).await
  }

  async fn read(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    self.read_page(shard, after, limit).await
  }

  async fn end_positions(&self, shards: &[u32]) -> Result<Positions, AdapterError> {
    self.end_positions_of(shards).await
  }

  fn total_order(&self) -> bool {
    true
  }

  async fn read_all(&self, after: Option<&str>, limit: usize) -> Result<ReadPage, AdapterError> {
    self.read_page(read::ALL, after, limit).await
  }

  async fn wait_all(&self, after: Option<&str>, max_wait: Duration) {
    let after: Positions = after
      .map(|p| (read::ALL, p.to_string()))
      .into_iter()
      .collect();
    self.wait_for_data_on(&[read::ALL], &after, max_wait).await
  }

  async fn shard_info(&self, shards: &[u32]) -> Result<Vec<ShardInfo>, AdapterError> {
    self.shard_info_of(shards).await
  }

  async fn positions_at(&self, shards: &[u32], time_ms: u64) -> Result<Positions, AdapterError> {
    self.positions_at_time(shards, time_ms).await
  }

  async fn wait_for_data(&self, shards: &[u32], after: &Positions, max_wait: Duration) {
    self.wait_for_data_on(shards, after, max_wait).await
  }

  async fn flush(&self) -> Result<(), AdapterError> {
    // Every write already waited for its acks; a round trip to the server confirms the
    // connection is still there (the bus bounds this with adapterTimeoutMs).
    self
      .client
      .flush()
      .await
      .map_err(|e| self.adapter_error(true, format!("NATS connection flush failed: {e}")))
  }

  async fn close(&self) -> Result<(), AdapterError> {
    // The readers' consumers go with the bus, not READER_IDLE later.
    let deletes = self.pool.close().into_iter().map(|name| {
      let js = self.js.clone();
      let stream = self.config.stream.clone();
      async move { js.delete_consumer_from_stream(name, stream).await }
    });
    let _ = tokio::time::timeout(
      self.config.request_timeout,
      futures_util::future::join_all(deletes),
    )
    .await;
    match tokio::time::timeout(self.config.request_timeout, self.client.drain()).await {
      Ok(Ok(())) => Ok(()),
      Ok(Err(e)) => {
        Err(self.adapter_error(false, format!("closing the NATS connection failed: {e}")))
      }
      Err(_) => Err(self.adapter_error(false, "closing the NATS connection timed out".into())),
    }
  }

  async fn is_healthy(&self) -> bool {
    if self.client.connection_state() != ConnState::Connected {
      return false;
    }
    // Reading the stream's info proves both JetStream and the stream are available.
    matches!(
      tokio::time::timeout(
        self.config.request_timeout,
        self.js.get_stream(&self.config.stream)
      )
      .await,
      Ok(Ok(_))
    )
  }

  fn corrupt_skipped(&self) -> u64 {
    self.corrupt.load(Ordering::Relaxed)
  }

  async fn stored_shards(&self) -> Result<Vec<u32>, AdapterError> {
    self.shards_seen.get_or(self.shards_in_stream()).await
  }
}
