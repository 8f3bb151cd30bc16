//! NATS JetStream: one stream, one subject per shard (`<stream>.<shard>`).
//!
//! Writes publish each event with `Nats-Msg-Id` = its message id, pipelined through a
//! bounded window of unacknowledged publishes; the server's duplicate window turns
//! retries into exactly-once storage, and an ack flagged duplicate counts as stored.
//! Event metadata travels in headers (`Rb`: timestamp, sequence, kind; `Rb-Key`); the payload
//! is the event itself, so the stream reads naturally with the `nats` tools.
//!
//! Reads use ephemeral pull consumers (no acks, filtered by the shard's subject, starting
//! after the cursor's stream sequence) and fetch many messages per round trip. An idle
//! consumer is kept per shard and reused when the next read starts where it stopped.
//! Subscribers wait with a pull request that expires on the server, never a polling loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::client::PublishErrorKind;
use async_nats::connection::State as ConnState;
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::context::CreateStreamErrorKind;
use async_nats::jetstream::stream::{
  Config as StreamConfig, DiscardPolicy, RetentionPolicy, StorageType,
};
use async_nats::jetstream::ErrorCode;
use async_nats::jetstream::{self, Context};
use async_nats::{ConnectOptions, HeaderMap};
use async_trait::async_trait;
use futures_util::StreamExt;
use parking_lot::Mutex;

mod acks;

use acks::{Ack, AckRouter};

use super::secrets::{redact_url, scrub, url_secrets};
use super::{Adapter, AdapterError, Outcome, Positions, ReadPage, WriteBatch, WriteResult};
use crate::config::{JetStreamConfig, NatsAuth, StorageKind};
use crate::error::{BusError, Code};
use crate::event::StoredEvent;

/// `<timestamp ms> <sequence> <json|bytes>`: one header, because every header line costs
/// the server parsing time on each publish.
const H_META: &str = "Rb";
const H_KEY: &str = "Rb-Key";
const H_MSG_ID: &str = "Nats-Msg-Id";

/// Ephemeral read consumers are removed by the server after this much idleness.
const READER_IDLE: Duration = Duration::from_secs(60);
/// Corrupt records logged individually before going quiet (the count keeps growing).
const MAX_LOGGED_CORRUPT: usize = 1024;
/// How long reads avoid creating consumers after a creation failed.
const FALLBACK_PERIOD: Duration = Duration::from_secs(30);
/// Most messages one request-per-message read returns.
const FALLBACK_PAGE: usize = 256;
/// Idle readers kept per shard.
const MAX_IDLE_READERS: usize = 4;
/// Messages fetched per round trip when a read asks for fewer.
const PREFETCH: usize = 512;

/// A read consumer positioned after stream sequence `position` of one shard's subject.
struct Reader {
  consumer: Consumer<pull::Config>,
  position: u64,
  /// Consumer sequence of the last delivered message: a jump means a lost delivery.
  consumer_seq: u64,
  /// Messages pulled (ahead, or by a wait) but not yet returned by a read.
  buffer: VecDeque<jetstream::Message>,
  /// Messages the server still holds for this consumer after the last one pulled.
  server_pending: u64,
}

/// A reader between reads: ready, or fetching the next messages in the background.
enum Idle {
  Ready(Box<Reader>),
  /// Started when a read returned and the server holds more: the next page's fetch runs
  /// while JS converts this one. Resolves to the reader, with whatever it fetched.
  Fetching {
    position: u64,
    task: FetchTask,
  },
}

/// The background fetch of an idle reader, stopped when it is dropped unused.
struct FetchTask(tokio::task::JoinHandle<Reader>);

impl Drop for FetchTask {
  fn drop(&mut self) {
    self.0.abort();
  }
}

impl Idle {
  fn position(&self) -> u64 {
    match self {
      Idle::Ready(r) => r.position,
      Idle::Fetching { position, .. } => *position,
    }
  }
}

impl Reader {
  /// Pulls up to `want` more messages into the buffer in one round trip.
  async fn fill(&mut self, want: usize) -> Result<(), String> {
    let batch = self
      .consumer
      .fetch()
      .max_messages(want)
      .messages()
      .await
      .map_err(|e| e.to_string())?;
    self.take(batch).await
  }

  /// Moves the messages of one pull request into the buffer, noting what the server holds
  /// after them.
  async fn take(&mut self, mut batch: pull::Batch) -> Result<(), String> {
    while let Some(msg) = batch.next().await {
      let msg = msg.map_err(|e| e.to_string())?;
      self.server_pending = delivery_info(&msg).map_or(self.server_pending, |i| i.2);
      self.buffer.push_back(msg);
    }
    if self.buffer.is_empty() {
      self.server_pending = 0;
    }
    Ok(())
  }
}

pub struct JetStreamAdapter {
  config: JetStreamConfig,
  client: async_nats::Client,
  js: Context,
  acks: AckRouter,
  readers: Mutex<HashMap<u32, Vec<Idle>>>,
  corrupt: AtomicU64,
  logged: Mutex<HashSet<u64>>,
  secrets: Vec<String>,
  /// Until when reads go through the stream leader instead of consumers.
  fallback_until: Mutex<Option<std::time::Instant>>,
}

fn connect_err(msg: String) -> BusError {
  BusError::new(Code::Connect, msg)
}

fn secrets_of(config: &JetStreamConfig) -> Vec<String> {
  let mut out = Vec::new();
  match &config.auth {
    NatsAuth::UserPassword { password, .. } => out.push(password.clone()),
    NatsAuth::Token(t) => out.push(t.clone()),
    NatsAuth::NkeySeed(s) => out.push(s.clone()),
    NatsAuth::None | NatsAuth::CredsFile(_) => {}
  }
  for url in &config.servers {
    out.extend(url_secrets(url));
  }
  out.retain(|s| !s.is_empty());
  out
}

fn header_escape(key: &str) -> String {
  let mut out = String::with_capacity(key.len());
  for c in key.chars() {
    if c == '%' || c.is_control() || !c.is_ascii() {
      let mut buf = [0u8; 4];
      for b in c.encode_utf8(&mut buf).bytes() {
        out.push_str(&format!("%{b:02X}"));
      }
    } else {
      out.push(c);
    }
  }
  out
}

fn header_unescape(s: &str) -> Option<String> {
  let bytes = s.as_bytes();
  let mut out = Vec::with_capacity(bytes.len());
  let mut i = 0;
  while i < bytes.len() {
    if bytes[i] == b'%' {
      let hex = s.get(i + 1..i + 3)?;
      out.push(u8::from_str_radix(hex, 16).ok()?);
      i += 3;
    } else {
      out.push(bytes[i]);
      i += 1;
    }
  }
  String::from_utf8(out).ok()
}

impl JetStreamAdapter {
  /// Connects, then creates the stream or checks that the existing one matches.
  pub async fn connect(config: JetStreamConfig) -> Result<Self, BusError> {
    config.validate()?;
    let secrets = secrets_of(&config);
    let shown: Vec<String> = config.servers.iter().map(|s| redact_url(s)).collect();
    let mut opts = ConnectOptions::new()
      .name("ringbus")
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
      readers: Mutex::new(HashMap::new()),
      corrupt: AtomicU64::new(0),
      logged: Mutex::new(HashSet::new()),
      secrets,
      fallback_until: Mutex::new(None),
    };
    if let Err(e) = adapter.ensure_stream().await {
      let _ = tokio::time::timeout(Duration::from_secs(1), adapter.client.drain()).await;
      return Err(e);
    }
    Ok(adapter)
  }

  fn subject(&self, shard: u32) -> String {
    format!("{}.{shard}", self.config.stream)
  }

  fn wanted_stream(&self) -> StreamConfig {
    let c = &self.config;
    StreamConfig {
      name: c.stream.clone(),
      subjects: vec![format!("{}.*", c.stream)],
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

  async fn ensure_stream(&self) -> Result<(), BusError> {
    let want = self.wanted_stream();
    let err = match self.js.create_stream(want.clone()).await {
      // Creating with an identical configuration succeeds on an existing stream.
      Ok(_) => return Ok(()),
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

  fn outcome_of_send(&self, kind: Option<PublishErrorKind>, text: String) -> Outcome {
    match kind {
      Some(PublishErrorKind::MaxPayloadExceeded) => Outcome::Reject(self.adapter_error(
        false,
        format!(
          "event rejected by NATS ({text}); lower maxEventBytes below the server's max_payload"
        ),
      )),
      _ if text.contains("Permissions Violation") || text.contains("authorization") => {
        Outcome::Reject(self.adapter_error(
          false,
          format!("publish refused by NATS: {text}; check the account's permissions"),
        ))
      }
      _ => Outcome::Retry(self.adapter_error(true, format!("JetStream publish failed: {text}"))),
    }
  }

  fn note_corrupt(&self, stream_seq: u64, reason: &str) {
    self.corrupt.fetch_add(1, Ordering::Relaxed);
    let mut logged = self.logged.lock();
    if logged.len() < MAX_LOGGED_CORRUPT && logged.insert(stream_seq) {
      eprintln!(
        "ringbus: skipped a corrupt record in JetStream stream {} at sequence {stream_seq}: {reason}",
        self.config.stream
      );
    }
  }

  /// Turns a delivered message into an event, or None (counted) when it cannot be read.
  fn decode(
    &self,
    shard: u32,
    stream_seq: u64,
    headers: Option<&HeaderMap>,
    payload: &bytes::Bytes,
  ) -> Option<StoredEvent> {
    let headers = match headers {
      Some(h) => h,
      None => {
        self.note_corrupt(stream_seq, "no ringbus headers");
        return None;
      }
    };
    let get = |name: &str| headers.get(name).map(|v| v.as_str().to_string());
    let meta = get(H_META).unwrap_or_default();
    let key = match get(H_KEY) {
      Some(k) => match header_unescape(&k) {
        Some(k) => Some(std::sync::Arc::from(k)),
        None => {
          self.note_corrupt(stream_seq, "undecodable Rb-Key header");
          return None;
        }
      },
      None => None,
    };
    let Some((ts, seq, kind, _)) = super::meta::parse(&meta) else {
      self.note_corrupt(stream_seq, "missing or invalid Rb header");
      return None;
    };
    if !super::meta::payload_is_valid(kind, payload) {
      self.note_corrupt(stream_seq, "payload marked JSON is not valid JSON");
      return None;
    }
    Some(StoredEvent {
      id: stream_seq.to_string(),
      position: stream_seq.to_string(),
      shard,
      seq,
      timestamp_ms: ts,
      kind,
      key,
      payload: payload.clone(),
      message_id: get(H_MSG_ID).unwrap_or_default(),
    })
  }

  /// An idle reader at `position`, or a new consumer starting after it.
  async fn lease(&self, shard: u32, position: u64) -> Result<Reader, AdapterError> {
    let idle = {
      let mut readers = self.readers.lock();
      readers.get_mut(&shard).and_then(|list| {
        let i = list.iter().position(|r| r.position() == position)?;
        Some(list.remove(i))
      })
    };
    match idle {
      Some(Idle::Ready(r)) => return Ok(*r),
      Some(Idle::Fetching { mut task, .. }) => {
        // A fetch ahead that failed left what it got; the read fetches the rest itself.
        if let Ok(reader) = (&mut task.0).await {
          return Ok(reader);
        }
      }
      None => {}
    }
    let config = pull::Config {
      deliver_policy: DeliverPolicy::ByStartSequence {
        start_sequence: position + 1,
      },
      ack_policy: AckPolicy::None,
      filter_subject: self.subject(shard),
      inactive_threshold: READER_IDLE,
      memory_storage: true,
      num_replicas: 1,
      ..Default::default()
    };
    let consumer = self
      .js
      .create_consumer_on_stream(config, &self.config.stream)
      .await
      .map_err(|e| {
        self.adapter_error(
          true,
          format!("could not open a JetStream reader on shard {shard}: {e}"),
        )
      })?;
    Ok(Reader {
      consumer,
      position,
      consumer_seq: 0,
      buffer: VecDeque::new(),
      server_pending: 0,
    })
  }

  /// Returns a reader to the idle list. When the server holds more for it and fewer than
  /// `next_page` messages are buffered, the rest of the next page is fetched meanwhile.
  fn give_back(&self, shard: u32, mut reader: Reader, next_page: usize) {
    let want = next_page.max(PREFETCH);
    let idle = if reader.buffer.len() < want && reader.server_pending > 0 {
      let position = reader.position;
      let want = want - reader.buffer.len();
      let task = tokio::spawn(async move {
        let _ = reader.fill(want).await;
        reader
      });
      Idle::Fetching {
        position,
        task: FetchTask(task),
      }
    } else {
      Idle::Ready(Box::new(reader))
    };
    let mut readers = self.readers.lock();
    let list = readers.entry(shard).or_default();
    // A few idle readers per shard (one per concurrent consumer of this bus) is plenty.
    // The least recently used one goes: keeping old ones instead would make a reader that
    // is in use start a new consumer on every page.
    if list.len() >= MAX_IDLE_READERS {
      list.remove(0);
    }
    list.push(idle);
  }

  /// Accepts a delivered message into `reader`, or reports a lost delivery.
  fn accept(&self, reader: &mut Reader, msg: &jetstream::Message) -> Result<u64, ()> {
    let (stream_seq, consumer_seq, _) = delivery_info(msg).ok_or(())?;
    if consumer_seq != reader.consumer_seq + 1 {
      return Err(());
    }
    reader.consumer_seq = consumer_seq;
    reader.position = stream_seq;
    Ok(stream_seq)
  }
}

/// (stream sequence, consumer sequence, pending) of a JetStream delivery.
fn delivery_info(msg: &jetstream::Message) -> Option<(u64, u64, u64)> {
  let info = msg.info().ok()?;
  Some((info.stream_sequence, info.consumer_sequence, info.pending))
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

#[async_trait]
impl Adapter for JetStreamAdapter {
  fn kind(&self) -> &'static str {
    "jetstream"
  }

  fn cursor_scope(&self) -> String {
    format!("jetstream:{}", self.config.stream)
  }

  async fn write(&self, batch: WriteBatch<'_>) -> Result<WriteResult, AdapterError> {
    let subject = async_nats::Subject::from(self.subject(batch.shard));
    let mut route = self.acks.route(batch.events.len());
    let mut outcomes: Vec<Option<Outcome>> = vec![None; batch.events.len()];
    let (mut sent, mut settled) = (0usize, 0usize);
    let mut failed_at: Option<usize> = None;
    let mut silent = false;
    let timeout = self.config.request_timeout;
    for (i, ev) in batch.events.iter().enumerate() {
      // A bounded window: wait for acks while `maxInFlight` are unanswered.
      while sent - settled >= self.config.max_in_flight {
        match tokio::time::timeout(timeout, route.acks.recv()).await {
          Ok(Some((j, ack))) => settled += self.settle(&mut outcomes, j, ack),
          _ => {
            silent = true;
            break;
          }
        }
      }
      if silent {
        failed_at = Some(i);
        break;
      }
      let mut headers = HeaderMap::new();
      headers.insert(
        H_MSG_ID,
        batch
          .producer
          .message_id(batch.shard, ev.seq)
          .to_string()
          .as_str(),
      );
      let mut meta = String::with_capacity(40);
      super::meta::write(&mut meta, ev.timestamp_ms, ev.seq, ev.kind);
      headers.insert(H_META, meta.as_str());
      if let Some(k) = &ev.key {
        headers.insert(H_KEY, header_escape(k).as_str());
      }
      let publish = self.client.publish_with_reply_and_headers(
        subject.clone(),
        route.reply(i),
        headers,
        ev.payload.clone(),
      );
      match tokio::time::timeout(timeout, publish).await {
        Ok(Ok(())) => sent += 1,
        failed => {
          let (kind, text) = match failed {
            Ok(Err(e)) => (Some(e.kind()), e.to_string()),
            _ => (
              None,
              "the connection did not take the message in time".to_string(),
            ),
          };
          outcomes[i] = Some(self.outcome_of_send(kind, text));
          // Later events are not sent: sending them now could store them ahead of this one.
          failed_at = Some(i);
          break;
        }
      }
    }
    // After a silent window, waiting again would only double the delay before the retry.
    while settled < sent && !silent {
      match tokio::time::timeout(timeout, route.acks.recv()).await {
        Ok(Some((j, ack))) => settled += self.settle(&mut outcomes, j, ack),
        _ => break,
      }
    }
    let unanswered = self.adapter_error(
      true,
      format!(
        "JetStream did not acknowledge within requestTimeoutMs ({} ms)",
        timeout.as_millis()
      ),
    );
    let not_sent = AdapterError::retryable("not sent: an earlier event of the batch failed");
    Ok(WriteResult::PerEvent(
      outcomes
        .into_iter()
        .enumerate()
        .map(|(i, o)| match o {
          Some(o) => o,
          None if i < sent => Outcome::Retry(unanswered.clone()),
          None => {
            debug_assert!(failed_at.is_some_and(|f| i >= f));
            Outcome::Retry(not_sent.clone())
          }
        })
        .collect(),
    ))
  }

  async fn read(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let position = super::parse_numeric_position(shard, after, "JetStream sequence")?;
    if self.fallback_active() {
      return self.read_by_request(shard, position, limit).await;
    }
    let mut reader = match self.lease(shard, position).await {
      Ok(r) => r,
      Err(e) => {
        // Readers cannot be placed (e.g. a cluster still settling after losing a node):
        // read through the stream leader until they can again.
        *self.fallback_until.lock() = Some(std::time::Instant::now() + FALLBACK_PERIOD);
        return self
          .read_by_request(shard, position, limit)
          .await
          .map_err(|_| e);
      }
    };
    if reader.buffer.len() < limit {
      // Fetch ahead: the rest waits in the reader for the next page of this shard.
      let want = (limit - reader.buffer.len()).max(PREFETCH);
      reader.fill(want).await.map_err(|e| {
        self.adapter_error(true, format!("JetStream read on shard {shard} failed: {e}"))
      })?;
    }
    let mut page = ReadPage::default();
    let mut examined = 0usize;
    while examined < limit {
      let Some(msg) = reader.buffer.pop_front() else {
        break;
      };
      examined += 1;
      match self.accept(&mut reader, &msg) {
        Ok(seq) => {
          if let Some(ev) = self.decode(shard, seq, msg.headers.as_ref(), &msg.payload) {
            page.events.push(ev);
          }
          page.next = Some(seq.to_string());
        }
        Err(()) => {
          // A delivery went missing: drop this reader; the next read restarts after the
          // last good position.
          page.has_more = true;
          return Ok(page);
        }
      }
    }
    page.has_more = !reader.buffer.is_empty() || reader.server_pending > 0;
    // The next page of this shard likely asks for as many.
    self.give_back(shard, reader, limit);
    Ok(page)
  }

  async fn end_positions(&self, shards: &[u32]) -> Result<Positions, AdapterError> {
    let mut stream = self
      .js
      .get_stream(&self.config.stream)
      .await
      .map_err(|e| self.adapter_error(true, format!("could not read stream state: {e}")))?;
    let last = stream
      .info()
      .await
      .map_err(|e| self.adapter_error(true, format!("could not read stream state: {e}")))?
      .state
      .last_sequence;
    Ok(shards.iter().map(|s| (*s, last.to_string())).collect())
  }

  async fn wait_for_data(&self, shards: &[u32], after: &Positions, max_wait: Duration) {
    // One pull with expiry per shard; the first shard with data ends the wait. The pulled
    // message stays in the reader's buffer for the next read.
    let waits = shards.iter().map(|&shard| {
      let position = after
        .get(&shard)
        .and_then(|p| p.parse::<u64>().ok())
        .unwrap_or(0);
      Box::pin(async move {
        let Ok(mut reader) = self.lease(shard, position).await else {
          tokio::time::sleep(max_wait.min(Duration::from_secs(1))).await;
          return;
        };
        if !reader.buffer.is_empty() {
          self.give_back(shard, reader, PREFETCH);
          return;
        }
        let pulled = reader
          .consumer
          .batch()
          .max_messages(1)
          .expires(max_wait)
          .messages()
          .await;
        if let Ok(batch) = pulled {
          // An error ends the wait like an expiry: the next read asks again.
          let _ = reader.take(batch).await;
        } else {
          tokio::time::sleep(max_wait.min(Duration::from_secs(1))).await;
        }
        self.give_back(shard, reader, PREFETCH);
      })
    });
    let waits: Vec<_> = waits.collect();
    if waits.is_empty() {
      tokio::time::sleep(max_wait).await;
      return;
    }
    futures_util::future::select_all(waits).await;
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
    self.readers.lock().clear();
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
}

impl JetStreamAdapter {
  fn fallback_active(&self) -> bool {
    let mut until = self.fallback_until.lock();
    match *until {
      Some(t) if t > std::time::Instant::now() => true,
      Some(_) => {
        *until = None;
        false
      }
      None => false,
    }
  }

  /// Reads message by message through the stream leader (`next_by_subj` requests): slower
  /// than a consumer, but needs no consumer placement.
  async fn read_by_request(
    &self,
    shard: u32,
    position: u64,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let stream = self
      .js
      .get_stream_no_info(&self.config.stream)
      .await
      .map_err(|e| {
        self.adapter_error(true, format!("JetStream read on shard {shard} failed: {e}"))
      })?;
    let subject = self.subject(shard);
    let mut page = ReadPage::default();
    let mut next = position + 1;
    for _ in 0..limit.min(FALLBACK_PAGE) {
      let got = stream
        .raw_message_builder()
        .sequence(next)
        .next_by_subject(subject.clone())
        .send()
        .await;
      match got {
        Ok(msg) => {
          if let Some(ev) = self.decode(shard, msg.sequence, Some(&msg.headers), &msg.payload) {
            page.events.push(ev);
          }
          page.next = Some(msg.sequence.to_string());
          next = msg.sequence + 1;
        }
        Err(e)
          if e.kind() == async_nats::jetstream::stream::RawMessageErrorKind::NoMessageFound =>
        {
          page.has_more = false;
          return Ok(page);
        }
        Err(e) if page.next.is_none() => {
          return Err(
            self.adapter_error(true, format!("JetStream read on shard {shard} failed: {e}")),
          )
        }
        Err(_) => break,
      }
    }
    page.has_more = true;
    Ok(page)
  }

  /// Records the ack of event `index`; 1 when it is the first answer for it.
  fn settle(&self, outcomes: &mut [Option<Outcome>], index: usize, ack: Ack) -> usize {
    let Some(slot) = outcomes.get_mut(index) else {
      return 0;
    };
    if slot.is_some() {
      return 0;
    }
    *slot = Some(match ack {
      Ack::Stored => Outcome::Stored,
      Ack::NoStream => Outcome::Retry(self.adapter_error(
        true,
        format!(
          "no JetStream stream takes {}; was stream {} deleted?",
          self.subject(0).trim_end_matches('0'),
          self.config.stream
        ),
      )),
      Ack::Refused(text) => {
        Outcome::Retry(self.adapter_error(true, format!("JetStream refused the publish: {text}")))
      }
    });
    1
  }
}

#[cfg(test)]
mod tests {
  use super::*;

  #[test]
  fn config_secrets_are_scrubbed() {
    let mut c = JetStreamConfig::new(vec!["nats://bob:s3cret@h:1".into()], "x");
    c.auth = NatsAuth::Token("tok-123".into());
    let s = secrets_of(&c);
    assert_eq!(
      scrub(&s, "auth failed for tok-123 and s3cret".into()),
      "auth failed for *** and ***"
    );
  }

  #[test]
  fn keys_survive_header_escaping() {
    for k in ["plain", "with space", "π/ü", "line\nbreak", "100%"] {
      let e = header_escape(k);
      assert!(!e.contains('\n') && e.is_ascii());
      assert_eq!(header_unescape(&e).as_deref(), Some(k));
    }
  }
}
