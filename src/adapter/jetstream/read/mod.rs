//! Reads: ephemeral pull consumers (no acks, filtered by the shard's subject, starting after
//! the cursor's stream sequence) fetching many messages per round trip. Idle readers are
//! kept per shard and reused when the next read starts where one stopped; a reader given
//! back fetches the next page in the background. When consumers cannot be placed (a
//! cluster settling), reads go message by message through the stream leader for a while.
//! Subscribers wait with a pull request that expires on the server, never a polling loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Weak;
use std::time::Duration;

use async_nats::jetstream::consumer::{pull, AckPolicy, Consumer, DeliverPolicy};
use async_nats::jetstream::{self, Context};
use futures_util::StreamExt;
use parking_lot::Mutex;
use tokio::sync::watch;

mod fallback;
mod pool;
mod wait;

pub(super) use self::pool::Pool;
use self::pool::{give_up, push_idle, Background, Found, Idle, Reader};
use super::JetStreamAdapter;
use crate::adapter::{parse_numeric_position, AdapterError, Positions, ReadPage, ShardInfo};

/// Ephemeral read consumers are removed by the server after this much idleness.
const READER_IDLE: Duration = Duration::from_secs(60);
/// How long reads avoid creating consumers after a creation failed.
const FALLBACK_PERIOD: Duration = Duration::from_secs(30);
/// Most messages one request-per-message read returns.
const FALLBACK_PAGE: usize = 256;
/// Idle readers kept per shard.
const MAX_IDLE_READERS: usize = 4;
/// How long a tailing reader's pull waits on the server before it is renewed.
const TAIL_WAIT: Duration = Duration::from_secs(30);
/// Messages fetched per round trip when a read asks for fewer.
const PREFETCH: usize = 512;
/// Longest a fetch may go unanswered, and how long a wait may outlive its expiry. A pull
/// whose server died is never answered after the reconnect (its request is gone with the
/// server) and nothing on the client ends it: without a bound, a read or a subscriber
/// stuck on one waits forever.
const ANSWER_BOUND: Duration = Duration::from_secs(10);
/// The pseudo-shard of reads over every shard in stream order: one consumer filtered by
/// the stream's whole subject space. A filtered consumer on one shard's subject is slow
/// on nats-server 2.9 where that subject is sparse (measured: 0.7-1.2 s for 512
/// messages after a scale-up, against 6 ms where it is dense); one over all subjects
/// never skips.
pub(in crate::adapter::jetstream) const ALL: u32 = u32::MAX;

/// How errors name what was read.
pub(super) fn what(shard: u32) -> String {
  if shard == ALL {
    "every shard".to_string()
  } else {
    format!("shard {shard}")
  }
}

impl JetStreamAdapter {
  pub(in crate::adapter::jetstream) async fn read_page(
    &self,
    shard: u32,
    after: Option<&str>,
    limit: usize,
  ) -> Result<ReadPage, AdapterError> {
    let position = parse_numeric_position(shard, after, "JetStream sequence")?;
    if self.fallback_active() {
      return self.read_by_request(shard, position, limit).await;
    }
    if matches!(self.look(shard, position), Found::Waiting) {
      // A pending pull proves the shard has nothing after `position`; no round trip.
      return Ok(ReadPage {
        remaining: Some(0),
        ..ReadPage::default()
      });
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
    // With messages at hand and none left on the server (a wait's pull just brought one),
    // the page goes out without another round trip.
    let more_on_server = reader.server_pending > 0;
    if reader.buffer.is_empty() || (reader.buffer.len() < limit && more_on_server) {
      // Fetch ahead: the rest waits in the reader for the next page of this shard.
      let want = (limit - reader.buffer.len()).max(PREFETCH);
      reader.fill(want).await.map_err(|e| {
        self.adapter_error(
          true,
          format!("JetStream read on {} failed: {e}", what(shard)),
        )
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
          if let Some(of) = self.shard_of(shard, seq, &msg.subject) {
            if let Some(ev) = self.decode(of, seq, msg.headers.as_ref(), &msg.payload) {
              page.events.push(ev);
            }
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
    // The consumer reports what the server still holds for its subject after the last
    // delivery; what was delivered but not yet paged out waits in the buffer.
    page.remaining = Some(reader.server_pending + reader.buffer.len() as u64);
    if reader.tailing && reader.buffer.is_empty() && reader.server_pending == 0 {
      self.start_wait(shard, reader, TAIL_WAIT);
    } else {
      // The next page of this shard likely asks for as many.
      self.give_back(shard, reader, limit);
    }
    Ok(page)
  }

  pub(in crate::adapter::jetstream) async fn end_positions_of(
    &self,
    shards: &[u32],
  ) -> Result<Positions, AdapterError> {
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

  /// The shard of a message read for `shard` (for [`ALL`]: from its subject).
  pub(super) fn shard_of(&self, shard: u32, seq: u64, subject: &str) -> Option<u32> {
    if shard != ALL {
      return Some(shard);
    }
    let of = self.shard_of_subject(subject);
    if of.is_none() {
      self.note_corrupt(seq, "its subject names no shard");
    }
    of
  }

  /// Accepts a delivered message into `reader`, or reports a lost delivery.
  pub(super) fn accept(&self, reader: &mut Reader, msg: &jetstream::Message) -> Result<u64, ()> {
    let (stream_seq, consumer_seq, _) = delivery_info(msg).ok_or(())?;
    if consumer_seq != reader.consumer_seq + 1 {
      return Err(());
    }
    reader.consumer_seq = consumer_seq;
    reader.position = stream_seq;
    Ok(stream_seq)
  }
}

impl JetStreamAdapter {
  /// The stream sequence before the first message stored at or after `time_ms`, for every
  /// shard (one order over the stream): the server finds it from its time index, for a
  /// consumer started `ByStartTime`, which delivers that message first. With none that
  /// recent, the end of the stream.
  pub(in crate::adapter::jetstream) async fn positions_at_time(
    &self,
    shards: &[u32],
    time_ms: u64,
  ) -> Result<Positions, AdapterError> {
    let start_time = time::OffsetDateTime::from_unix_timestamp_nanos(time_ms as i128 * 1_000_000)
      .map_err(|e| {
      self.adapter_error(false, format!("time {time_ms} ms is out of range: {e}"))
    })?;
    let config = pull::Config {
      deliver_policy: DeliverPolicy::ByStartTime { start_time },
      ack_policy: AckPolicy::None,
      filter_subject: self.consumer_filter(ALL),
      inactive_threshold: READER_IDLE,
      memory_storage: true,
      num_replicas: 1,
      ..Default::default()
    };
    let failed = |e: String| {
      self.adapter_error(
        true,
        format!("could not find the messages stored after a time: {e}"),
      )
    };
    let consumer = self
      .js
      .create_consumer_on_stream(config, &self.config.stream)
      .await
      .map_err(|e| failed(e.to_string()))?;
    let name = consumer.cached_info().name.clone();
    let first = tokio::time::timeout(ANSWER_BOUND, async {
      let mut batch = consumer
        .fetch()
        .max_messages(1)
        .messages()
        .await
        .map_err(|e| e.to_string())?;
      match batch.next().await {
        Some(Ok(msg)) => Ok(delivery_info(&msg).map(|i| i.0)),
        Some(Err(e)) => Err(e.to_string()),
        None => Ok(None),
      }
    })
    .await;
    let (js, stream) = (self.js.clone(), self.config.stream.clone());
    tokio::spawn(async move {
      let _ = js.delete_consumer_from_stream(name, stream).await;
    });
    let position = match first {
      Ok(Ok(Some(seq))) => seq.saturating_sub(1),
      Ok(Ok(None)) => return self.end_positions_of(shards).await,
      Ok(Err(e)) => return Err(failed(e)),
      Err(_) => {
        return Err(failed(format!(
          "no answer within {} s",
          ANSWER_BOUND.as_secs()
        )))
      }
    };
    Ok(shards.iter().map(|s| (*s, position.to_string())).collect())
  }
}

impl JetStreamAdapter {
  /// Messages per shard subject from the stream's subject state, and the store times of
  /// each shard's first and last message (two direct lookups per shard that holds any).
  pub(in crate::adapter::jetstream) async fn shard_info_of(
    &self,
    shards: &[u32],
  ) -> Result<Vec<ShardInfo>, AdapterError> {
    let failed =
      |e: String| self.adapter_error(true, format!("could not read the stream's shards: {e}"));
    let stream = self
      .js
      .get_stream(&self.config.stream)
      .await
      .map_err(|e| failed(e.to_string()))?;
    let mut counts = HashMap::new();
    let mut subjects = stream
      .info_with_subjects(self.subject(ALL))
      .await
      .map_err(|e| failed(e.to_string()))?;
    while let Some(item) = subjects.next().await {
      let (subject, count) = item.map_err(|e| failed(e.to_string()))?;
      counts.insert(subject, count as u64);
    }
    let ms = |t: time::OffsetDateTime| u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok();
    let mut out = Vec::with_capacity(shards.len());
    for &shard in shards {
      let subject = self.subject(shard);
      let count = counts.get(&subject).copied().unwrap_or(0);
      let mut info = ShardInfo {
        id: shard,
        count,
        ..ShardInfo::default()
      };
      if count > 0 {
        let first = stream.get_first_raw_message_by_subject(&subject, 0).await;
        info.first_at = first.ok().and_then(|m| ms(m.time));
        let last = stream.get_last_raw_message_by_subject(&subject).await;
        info.last_at = last.ok().and_then(|m| ms(m.time));
      }
      out.push(info);
    }
    Ok(out)
  }
}

/// (stream sequence, consumer sequence, pending) of a JetStream delivery.
pub(super) fn delivery_info(msg: &jetstream::Message) -> Option<(u64, u64, u64)> {
  let info = msg.info().ok()?;
  Some((info.stream_sequence, info.consumer_sequence, info.pending))
}
