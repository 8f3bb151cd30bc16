//! The stream: one per bus name, one subject per shard (`<stream>.<shard>`), created when
//! missing and otherwise required to match the options.

use std::sync::atomic::Ordering;
use std::time::Duration;

use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{
  Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::ErrorCode;

use super::{connect_err, JetStreamAdapter, JetStreamConfig, StorageKind};
use crate::adapter::AdapterError;
use crate::error::{BusError, Code};
use futures_util::StreamExt;

/// The subject of one shard's events.
pub fn shard_subject(stream: &str, shard: u32) -> String {
  format!("{stream}.{shard}")
}

/// The subjects of every shard (the stream's subject filter).
pub fn all_shards_subject(stream: &str) -> String {
  format!("{stream}.*")
}

/// The stream these options ask for.
fn wanted_stream(c: &JetStreamConfig) -> StreamConfig {
  StreamConfig {
    name: c.stream.clone(),
    subjects: vec![all_shards_subject(&c.stream)],
    retention: RetentionPolicy::Limits,
    discard: DiscardPolicy::Old,
    storage: match c.storage {
      StorageKind::File => StorageType::File,
      StorageKind::Memory => StorageType::Memory,
    },
    num_replicas: c.replicas,
    max_age: c.max_age.unwrap_or(Duration::ZERO),
    max_bytes: c.max_bytes.unwrap_or(-1),
    max_messages: c.max_messages.unwrap_or(-1),
    duplicate_window: c.duplicate_window,
    ..Default::default()
  }
}

impl JetStreamAdapter {
  /// Every shard whose subject holds messages, from the stream's per-subject state: what
  /// any producer wrote is there, so no separate record is needed and writes pay nothing.
  pub(super) async fn shards_in_stream(&self) -> Result<Vec<u32>, AdapterError> {
    let failed = |e: String| {
      self.adapter_error(
        true,
        format!(
          "could not list the shards of stream {}: {e}",
          self.config.stream
        ),
      )
    };
    let stream = self
      .js
      .get_stream_no_info(&self.config.stream)
      .await
      .map_err(|e| failed(e.to_string()))?;
    let mut subjects = stream
      .info_with_subjects(all_shards_subject(&self.config.stream))
      .await
      .map_err(|e| failed(e.to_string()))?;
    let prefix = format!("{}.", self.config.stream);
    let mut shards = Vec::new();
    while let Some(entry) = subjects.next().await {
      let (subject, _count) = entry.map_err(|e| failed(e.to_string()))?;
      if let Some(id) = subject
        .strip_prefix(&prefix)
        .and_then(|s| s.parse::<u32>().ok())
      {
        shards.push(id);
      }
    }
    shards.sort_unstable();
    Ok(shards)
  }

  /// The filter of a consumer reading `shard`. Every shard's reader has none when the
  /// stream holds nothing else: nats-server 2.9 serves a consumer filtered by the wildcard
  /// of every shard slowly in parts of a stream (measured with nats.js on a stream written
  /// with 4, then 8, then 6 shards: 1.1-2.2 s per 1,000 messages from a start in the
  /// 8-shard part, 4-17 ms unfiltered).
  pub(super) fn consumer_filter(&self, shard: u32) -> String {
    if shard == super::read::ALL && self.stream_is_shards.load(Ordering::Relaxed) {
      String::new()
    } else {
      self.subject(shard)
    }
  }

  /// The subject of `shard`, or of every shard for [`super::read::ALL`].
  pub(super) fn subject(&self, shard: u32) -> String {
    if shard == super::read::ALL {
      all_shards_subject(&self.config.stream)
    } else {
      shard_subject(&self.config.stream, shard)
    }
  }

  /// The shard a message subject belongs to.
  pub(super) fn shard_of_subject(&self, subject: &str) -> Option<u32> {
    let id = subject
      .strip_prefix(self.config.stream.as_str())?
      .strip_prefix('.')?;
    id.parse::<u32>().ok().filter(|n| n.to_string() == id)
  }

  pub(super) async fn ensure_stream(&self) -> Result<(), BusError> {
    if !self.config.create {
      return self.existing_stream().await;
    }
    let want = wanted_stream(&self.config);
    let err = match self.js.create_stream(want.clone()).await {
      // Creating with an identical configuration succeeds on an existing stream.
      Ok(_) => {
        self.stream_is_shards.store(true, Ordering::Relaxed);
        return Ok(());
      }
      Err(e) => e,
    };
    match err.kind() {
      CreateStreamErrorKind::JetStream(js) if js.error_code() == ErrorCode::STREAM_NAME_EXIST => {
        let stream = self.js.get_stream(&want.name).await.map_err(|e| {
          BusError::new(Code::Adapter, self.scrub(format!("could not read stream {}: {e}", want.name)))
        })?;
        let have = &stream.cached_info().config;
        let diff = describe_conflict(have, &want);
        Err(BusError::config(format!(
          "adapter.stream '{}' already exists with a different configuration ({}); use options that match it, or update or delete the stream with the nats tool",
          want.name,
          if diff.is_empty() { "server-side settings differ".into() } else { diff.join("; ") }
        )))
      }
      CreateStreamErrorKind::JetStreamUnavailable => Err(connect_err(
        "JetStream is not available on this NATS server; start nats-server with JetStream enabled (-js)".into(),
      )),
      CreateStreamErrorKind::JetStream(js)
        if js.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED
          || js.error_code() == ErrorCode::JETSTREAM_NOT_ENABLED_FOR_ACCOUNT =>
      {
        Err(connect_err(format!(
          "JetStream is not enabled for this account or server ({js}); enable JetStream (-js) or use an account that has it"
        )))
      }
      CreateStreamErrorKind::TimedOut => Err(BusError::new(
        Code::Timeout,
        format!(
          "creating stream {} timed out after requestTimeoutMs ({} ms); check the JetStream cluster",
          want.name,
          self.config.request_timeout.as_millis()
        ),
      )),
      _ => Err(BusError::new(
        Code::Adapter,
        self.scrub(format!("could not create stream {}: {err}; check the stream options and the account's JetStream limits", want.name)),
      )),
    }
  }
}

impl JetStreamAdapter {
  /// With `create: false`: the stream must exist; its settings are whatever they are.
  async fn existing_stream(&self) -> Result<(), BusError> {
    let name = &self.config.stream;
    match self.js.get_stream(name).await {
      Ok(stream) => {
        let only_shards = stream.cached_info().config.subjects == [all_shards_subject(name)];
        self.stream_is_shards.store(only_shards, Ordering::Relaxed);
        Ok(())
      }
      Err(e)
        if matches!(e.kind(), async_nats::jetstream::context::GetStreamErrorKind::JetStream(js)
          if js.error_code() == ErrorCode::STREAM_NOT_FOUND) =>
      {
        Err(BusError::config(format!(
          "stream '{name}' does not exist on this server (adapter.create is false, so it is not created); check the name (`nats stream ls` lists them)"
        )))
      }
      Err(e) => Err(BusError::new(
        Code::Adapter,
        self.scrub(format!("could not read stream {name}: {e}")),
      )),
    }
  }
}

fn describe_conflict(have: &StreamConfig, want: &StreamConfig) -> Vec<String> {
  let pairs: [(&str, String, String); 9] = [
    (
      "subjects",
      format!("{:?}", have.subjects),
      format!("{:?}", want.subjects),
    ),
    (
      "storage",
      format!("{:?}", have.storage),
      format!("{:?}", want.storage),
    ),
    (
      "replicas",
      have.num_replicas.to_string(),
      want.num_replicas.to_string(),
    ),
    (
      "maxAgeMs",
      have.max_age.as_millis().to_string(),
      want.max_age.as_millis().to_string(),
    ),
    (
      "maxBytes",
      have.max_bytes.to_string(),
      want.max_bytes.to_string(),
    ),
    (
      "maxMessages",
      have.max_messages.to_string(),
      want.max_messages.to_string(),
    ),
    (
      "duplicateWindowMs",
      have.duplicate_window.as_millis().to_string(),
      want.duplicate_window.as_millis().to_string(),
    ),
    (
      "retention",
      format!("{:?}", have.retention),
      format!("{:?}", want.retention),
    ),
    (
      "discard",
      format!("{:?}", have.discard),
      format!("{:?}", want.discard),
    ),
  ];
  pairs
    .into_iter()
    .filter(|(_, h, w)| h != w)
    .map(|(what, h, w)| format!("{what}: stream has {h}, options ask for {w}"))
    .collect()
}
