//! Reads: ephemeral pull consumers (no acks, filtered by the shard's subject, starting after
//! the cursor's stream sequence) fetching many messages per round trip. Idle readers are
//! kept per shard and reused when the next read starts where one stopped; a reader given
//! back fetches the next page in the background. When consumers cannot be placed (a
//! cluster settling), reads go message by message through the stream leader for a while.
//! Subscribers wait with a pull request that expires on the server, never a polling loop.

use std::collections::VecDeque;
use std::time::Duration;

use async_nats::jetstream;
use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use futures_util::StreamExt;

use super::JetStreamAdapter;
use crate::adapter::{parse_numeric_position, AdapterError, Positions, ReadPage};

/// Ephemeral read consumers are removed by the server after this much idleness.
const READER_IDLE: Duration = Duration::from_secs(60);
/// How long reads avoid creating consumers after a creation failed.
const FALLBACK_PERIOD: Duration = Duration::from_secs(30);
/// Most messages one request-per-message read returns.
const FALLBACK_PAGE: usize = 256;
/// Idle readers kept per shard.
const MAX_IDLE_READERS: usize = 4;
/// Messages fetched per round trip when a read asks for fewer.
const PREFETCH: usize = 512;

/// A read consumer positioned after stream sequence `position` of one shard's subject.
pub(super) struct Reader {
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
pub(super) enum Idle {
  Ready(Box<Reader>),
  /// Started when a read returned and the server holds more: the next page's fetch runs
  /// while JS converts this one. Resolves to the reader, with whatever it fetched.
  Fetching {
    position: u64,
    task: FetchTask,
  },
}

/// The background fetch of an idle reader, stopped when it is dropped unused.
pub(super) struct FetchTask(tokio::task::JoinHandle<Reader>);

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

impl JetStreamAdapter {
  pub(super) async fn read_page(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let position = parse_numeric_position(shard, after, "JetStream sequence")?;
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

  pub(super) async fn end_positions_of(&self, shards: &[u32]) -> Result<Positions, AdapterError> {
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

  pub(super) async fn wait_for_data_on(
    &self,
    shards: &[u32],
    after: &Positions,
    max_wait: Duration,
  ) {
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
}

/// (stream sequence, consumer sequence, pending) of a JetStream delivery.
fn delivery_info(msg: &jetstream::Message) -> Option<(u64, u64, u64)> {
  let info = msg.info().ok()?;
  Some((info.stream_sequence, info.consumer_sequence, info.pending))
}
